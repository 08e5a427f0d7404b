//! Audio files in and out, and sample-rate conversion.
//!
//! Everything fxtwin reads or writes is mono `f32` at full scale ±1.0: [`read_audio`] picks one
//! channel of a WAV or FLAC file, [`resample`] converts rates, [`load_mono`] does both, and
//! [`write_wav_f32`] writes 32-bit float WAV files atomically. For files of any length in
//! constant memory there are [`WavBlockReader`], [`WavBlockWriter`] and
//! [`StreamingResampler`].
//!
//! Errors are [`AudioError`]s that name the file and what is wrong with it.

mod flac;
mod resample;
#[cfg(test)]
pub(crate) mod testdir;
mod wav;

use std::path::{Path, PathBuf};

pub use resample::{resample, StreamingResampler};
pub use wav::{probe_wav, AudioInfo, WavBlockReader, WavBlockWriter};

/// A mono signal at a known sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioBuffer {
    /// Sample rate, in Hz.
    pub sample_rate_hz: u32,
    /// Samples at full scale ±1.0 (values beyond are kept, not clipped).
    pub samples: Vec<f32>,
}

impl AudioBuffer {
    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate_hz)
    }
}

/// An audio file that cannot be read or written, or a conversion that cannot be done.
///
/// Every variant that concerns a file names it. Retrying helps only for [`AudioError::Io`]
/// and [`AudioError::Write`] when the cause is transient (disk full, permissions fixed).
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{}: no such file", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: the file is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{}: the file holds a valid header but no audio samples", path.display())]
    NoSamples { path: PathBuf },
    #[error("{}: not a WAV file or its header is corrupt: {reason}", path.display())]
    NotWav { path: PathBuf, reason: String },
    #[error("{}: not a valid {format} file: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error(
        "{}: the audio data is truncated: the header announces {frames_expected} frames but the \
         file ends after {frames_read}",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        frames_read: u64,
        frames_expected: u64,
    },
    #[error(
        "{}: channel {channel} was asked for but the file has {channels} channel(s) \
         (channels count from 0)",
        path.display()
    )]
    ChannelOutOfRange {
        path: PathBuf,
        channel: usize,
        channels: usize,
    },
    #[error("{}: unsupported audio format: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot write a WAV file at sample rate {sample_rate_hz} Hz", path.display())]
    BadSampleRate { path: PathBuf, sample_rate_hz: u32 },
    #[error("cannot resample from {from_hz} Hz to {to_hz} Hz: {reason}")]
    Resample {
        from_hz: u32,
        to_hz: u32,
        reason: String,
    },
}

/// Reads one channel of a WAV file into memory.
///
/// Supports integer PCM of 8, 16, 24 and 32 bits (scaled so that full scale is ±1.0) and
/// 32-bit float, mono or with any number of channels; `channel` counts from 0.
///
/// # Errors
/// A missing, empty, non-WAV, truncated or unsupported file, a channel the file lacks, or a
/// file with no samples at all: each as its own [`AudioError`] variant naming the file.
pub fn read_wav(path: &Path, channel: usize) -> Result<AudioBuffer, AudioError> {
    let mut reader = WavBlockReader::open(path, channel)?;
    if reader.len_samples() == 0 {
        return Err(AudioError::NoSamples {
            path: path.to_path_buf(),
        });
    }
    let mut samples = Vec::with_capacity(reader.len_samples() as usize);
    let mut block = Vec::new();
    while reader.read_block(&mut block, 1 << 16)? > 0 {
        samples.extend_from_slice(&block);
    }
    Ok(AudioBuffer {
        sample_rate_hz: reader.sample_rate_hz(),
        samples,
    })
}

/// Fails with [`AudioError::NotFound`], [`AudioError::Empty`] or [`AudioError::Io`] unless
/// `path` is an existing file holding at least one byte: decoders report these cases as bare
/// I/O errors that do not tell the user what is wrong.
fn check_nonempty_file(path: &Path) -> Result<(), AudioError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == 0 => Err(AudioError::Empty {
            path: path.to_path_buf(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AudioError::NotFound {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(AudioError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The audio formats fxtwin reads, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Wav,
    Flac,
}

impl Format {
    /// The format of `path`, from its extension (case-insensitive).
    fn of(path: &Path) -> Result<Self, AudioError> {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "wav" | "wave" => Ok(Self::Wav),
            "flac" => Ok(Self::Flac),
            other => Err(AudioError::Unsupported {
                path: path.to_path_buf(),
                what: if other.is_empty() {
                    "no file extension; .wav and .flac files can be read".to_string()
                } else {
                    format!(".{other} files cannot be read; convert to .wav or .flac")
                },
            }),
        }
    }
}

/// Whether `path` names a file fxtwin can read, judging by its extension only.
pub fn is_audio_file_name(path: &Path) -> bool {
    Format::of(path).is_ok()
}

/// Reads one channel of an audio file, choosing the decoder by the file's extension
/// (case-insensitive): WAV (`.wav`, `.wave`) as [`read_wav`] does, or FLAC (`.flac`, integer
/// samples of up to 24 bits, read exactly as a WAV file of the same depth would be).
///
/// # Errors
/// Those of [`read_wav`], for either format, plus [`AudioError::Invalid`] for a FLAC stream
/// that cannot be decoded or fails its MD5 check.
pub fn read_audio(path: &Path, channel: usize) -> Result<AudioBuffer, AudioError> {
    match Format::of(path)? {
        Format::Wav => read_wav(path, channel),
        Format::Flac => flac::read_flac(path, channel),
    }
}

/// Reads the header of a WAV or FLAC file only (see [`probe_wav`]). A FLAC header may leave
/// the length unknown; [`AudioInfo::len_samples`] is then 0.
pub fn probe_audio(path: &Path) -> Result<AudioInfo, AudioError> {
    match Format::of(path)? {
        Format::Wav => probe_wav(path),
        Format::Flac => flac::probe_flac(path),
    }
}

/// Reads one channel of an audio file and converts it to `target_rate_hz` (see [`resample`]).
pub fn load_mono(
    path: &Path,
    channel: usize,
    target_rate_hz: u32,
) -> Result<AudioBuffer, AudioError> {
    let buffer = read_audio(path, channel)?;
    let samples = resample(&buffer.samples, buffer.sample_rate_hz, target_rate_hz)?;
    Ok(AudioBuffer {
        sample_rate_hz: target_rate_hz,
        samples,
    })
}

/// Writes a mono 32-bit float WAV file atomically: a temporary file in the same directory is
/// written and renamed over `path` only when complete. On error the temporary file is removed
/// and an existing `path` stays as it was.
pub fn write_wav_f32(path: &Path, sample_rate_hz: u32, samples: &[f32]) -> Result<(), AudioError> {
    let mut writer = WavBlockWriter::create(path, sample_rate_hz)?;
    writer.write(samples)?;
    writer.finish()
}

#[cfg(test)]
mod tests;
