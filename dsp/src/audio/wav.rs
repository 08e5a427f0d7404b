//! WAV files block by block, in constant memory, through `hound`.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use super::AudioError;
use crate::fsutil::temp_path_for;

/// What an audio file's header says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioInfo {
    /// Sample rate, in Hz.
    pub sample_rate_hz: u32,
    /// Number of interleaved channels, at least 1.
    pub channels: usize,
    /// Length of each channel, in samples.
    pub len_samples: u64,
    /// Bits per sample (8, 16, 24 or 32).
    pub bits_per_sample: u16,
    /// `true` for IEEE float samples, `false` for integer PCM.
    pub is_float: bool,
}

/// Reads a WAV header only: rate, channels, length and sample format.
///
/// # Errors
/// As [`super::read_wav`], except that truncated sample data is not detected (it is not read).
pub fn probe_wav(path: &Path) -> Result<AudioInfo, AudioError> {
    let (_, info) = open_checked(path)?;
    Ok(info)
}

/// How the samples of a file become `f32`.
#[derive(Debug, Clone, Copy)]
enum Decode {
    /// Integer PCM; multiply by this to reach full scale ±1.0.
    Int {
        scale: f32,
    },
    Float,
}

/// Opens a WAV file and checks that fxtwin can decode its samples.
fn open_checked(path: &Path) -> Result<(hound::WavReader<BufReader<File>>, AudioInfo), AudioError> {
    let owned = || path.to_path_buf();

    // Existence and emptiness first: hound would report both as a bare I/O error.
    super::check_nonempty_file(path)?;

    let reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::NotWav {
                path: owned(),
                reason: "the header ends before the audio data starts".to_string(),
            }
        }
        hound::Error::IoError(source) => AudioError::Io {
            path: owned(),
            source,
        },
        hound::Error::Unsupported => AudioError::Unsupported {
            path: owned(),
            what: "a WAV encoding other than integer PCM or 32-bit float".to_string(),
        },
        other => AudioError::NotWav {
            path: owned(),
            reason: other.to_string(),
        },
    })?;

    let spec = reader.spec();
    let supported = match spec.sample_format {
        hound::SampleFormat::Float => spec.bits_per_sample == 32,
        hound::SampleFormat::Int => (1..=32).contains(&spec.bits_per_sample),
    };
    if !supported {
        return Err(AudioError::Unsupported {
            path: owned(),
            what: format!(
                "{}-bit {} samples",
                spec.bits_per_sample,
                if spec.sample_format == hound::SampleFormat::Float {
                    "float"
                } else {
                    "integer"
                }
            ),
        });
    }
    if spec.channels == 0 {
        return Err(AudioError::NotWav {
            path: owned(),
            reason: "the header declares zero channels".to_string(),
        });
    }
    let info = AudioInfo {
        sample_rate_hz: spec.sample_rate,
        channels: usize::from(spec.channels),
        len_samples: u64::from(reader.duration()),
        bits_per_sample: spec.bits_per_sample,
        is_float: spec.sample_format == hound::SampleFormat::Float,
    };
    Ok((reader, info))
}

/// Reads one channel of a WAV file in blocks, holding only one block in memory.
///
/// A file cut short (its header announces more samples than it holds) gives
/// [`AudioError::Truncated`] when the reader reaches the cut, never a silently shorter signal.
pub struct WavBlockReader {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    info: AudioInfo,
    channel: usize,
    decode: Decode,
    /// Samples of the chosen channel handed out so far.
    read_samples: u64,
}

impl WavBlockReader {
    /// Opens `path` and checks its header; `channel` counts from 0.
    ///
    /// # Errors
    /// Missing, empty, non-WAV or unsupported files, and a channel the file lacks.
    pub fn open(path: &Path, channel: usize) -> Result<Self, AudioError> {
        let (reader, info) = open_checked(path)?;
        if channel >= info.channels {
            return Err(AudioError::ChannelOutOfRange {
                path: path.to_path_buf(),
                channel,
                channels: info.channels,
            });
        }
        let decode = if info.is_float {
            Decode::Float
        } else {
            // Integer PCM of b bits spans -2^(b-1) ..= 2^(b-1) - 1.
            Decode::Int {
                scale: 1.0 / (1u64 << (info.bits_per_sample - 1)) as f32,
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            info,
            channel,
            decode,
            read_samples: 0,
        })
    }

    /// Sample rate of the file, in Hz.
    pub fn sample_rate_hz(&self) -> u32 {
        self.info.sample_rate_hz
    }

    /// Length of the channel as announced by the header, in samples.
    pub fn len_samples(&self) -> u64 {
        self.info.len_samples
    }

    /// The header's description of the file.
    pub fn info(&self) -> AudioInfo {
        self.info
    }

    /// Replaces the contents of `out` with the next samples of the chosen channel, at most
    /// `max` of them, and returns how many were read; 0 means the end of the file.
    ///
    /// # Errors
    /// [`AudioError::Truncated`] when the file ends before its header says it should, and
    /// [`AudioError::Io`] for other read failures.
    pub fn read_block(&mut self, out: &mut Vec<f32>, max: usize) -> Result<usize, AudioError> {
        out.clear();
        let left = self.info.len_samples - self.read_samples;
        let frames = left.min(max as u64) as usize;
        if frames == 0 {
            return Ok(0);
        }
        out.reserve(frames);
        let wanted = frames * self.info.channels;
        let result = match self.decode {
            Decode::Int { scale } => pick_channel(
                self.reader.samples::<i32>().take(wanted),
                self.info.channels,
                self.channel,
                out,
                |v| v as f32 * scale,
            ),
            Decode::Float => pick_channel(
                self.reader.samples::<f32>().take(wanted),
                self.info.channels,
                self.channel,
                out,
                |v| v,
            ),
        };
        let truncated = || AudioError::Truncated {
            path: self.path.clone(),
            frames_read: self.read_samples + out.len() as u64,
            frames_expected: self.info.len_samples,
        };
        match result {
            Ok(()) if out.len() == frames => {}
            // hound stops early only at the header's length; anything else is a cut file.
            Ok(()) => return Err(truncated()),
            Err(hound::Error::IoError(e)) if is_short_read(&e) => return Err(truncated()),
            Err(hound::Error::UnfinishedSample) => return Err(truncated()),
            Err(hound::Error::IoError(source)) => {
                return Err(AudioError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
            Err(other) => {
                return Err(AudioError::NotWav {
                    path: self.path.clone(),
                    reason: other.to_string(),
                })
            }
        }
        self.read_samples += frames as u64;
        Ok(frames)
    }
}

/// The message hound 3.5 gives the `io::Error` (of kind `Other`) it makes when the file ends
/// in the middle of the data; the truncation test pins it, so a hound upgrade that changes it
/// fails loudly rather than turning truncation into a vague I/O error.
const HOUND_SHORT_READ_MESSAGE: &str = "Failed to read enough bytes.";

/// Whether a read error means that the file ended early.
fn is_short_read(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::UnexpectedEof
        || (error.kind() == std::io::ErrorKind::Other
            && error.to_string() == HOUND_SHORT_READ_MESSAGE)
}

/// Appends the samples of `channel` from interleaved `samples` to `out`, converted to `f32`.
/// Stops at the first error, leaving the samples before it in `out`.
fn pick_channel<S>(
    samples: impl Iterator<Item = Result<S, hound::Error>>,
    channels: usize,
    channel: usize,
    out: &mut Vec<f32>,
    convert: impl Fn(S) -> f32,
) -> Result<(), hound::Error> {
    for (i, sample) in samples.enumerate() {
        let value = sample?;
        if i % channels == channel {
            out.push(convert(value));
        }
    }
    Ok(())
}

/// Writes a mono 32-bit float WAV file block by block, atomically.
///
/// Samples go to a temporary file beside the target; [`WavBlockWriter::finish`] completes the
/// header and renames the temporary file over the target. Dropping the writer without
/// finishing removes the temporary file and leaves any existing target untouched.
pub struct WavBlockWriter {
    path: PathBuf,
    temp_path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    written_samples: u64,
}

impl WavBlockWriter {
    /// Starts writing a mono 32-bit float file that will become `path`.
    ///
    /// # Errors
    /// [`AudioError::BadSampleRate`] for a rate of 0 Hz, [`AudioError::Write`] when the
    /// temporary file cannot be created (missing directory, permissions).
    pub fn create(path: &Path, sample_rate_hz: u32) -> Result<Self, AudioError> {
        if sample_rate_hz == 0 {
            return Err(AudioError::BadSampleRate {
                path: path.to_path_buf(),
                sample_rate_hz,
            });
        }
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: sample_rate_hz,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let temp_path = temp_path_for(path);
        let writer =
            hound::WavWriter::create(&temp_path, spec).map_err(|e| write_error(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            temp_path,
            writer: Some(writer),
            written_samples: 0,
        })
    }

    /// Appends samples (full scale ±1.0; larger values are stored as they are).
    pub fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        let writer = self
            .writer
            .as_mut()
            .expect("writer is present until finish() consumes self");
        for &sample in samples {
            writer
                .write_sample(sample)
                .map_err(|e| write_error(&self.path, e))?;
        }
        self.written_samples += samples.len() as u64;
        Ok(())
    }

    /// Samples written so far.
    pub fn len_samples(&self) -> u64 {
        self.written_samples
    }

    /// Completes the file and renames it over the target.
    pub fn finish(mut self) -> Result<(), AudioError> {
        let writer = self
            .writer
            .take()
            .expect("writer is present until finish() consumes self");
        writer.finalize().map_err(|e| write_error(&self.path, e))?;
        std::fs::rename(&self.temp_path, &self.path).map_err(|source| AudioError::Write {
            path: self.path.clone(),
            source,
        })?;
        // Nothing left for Drop to clean up.
        self.temp_path = PathBuf::new();
        Ok(())
    }
}

impl Drop for WavBlockWriter {
    fn drop(&mut self) {
        // Close the file before removing it; errors here have no one to go to.
        drop(self.writer.take());
        if !self.temp_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

fn write_error(path: &Path, error: hound::Error) -> AudioError {
    let source = match error {
        hound::Error::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    };
    AudioError::Write {
        path: path.to_path_buf(),
        source,
    }
}
