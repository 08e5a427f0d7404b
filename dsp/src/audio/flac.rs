//! FLAC files through symphonia's pure-Rust decoder.
//!
//! Samples come out as they would from the same audio in an integer WAV file: a FLAC file of
//! `b` bits per sample gives exactly the values `read_wav` gives for a `b`-bit WAV file of the
//! same samples. The decoder checks the stream's MD5 signature at the end, so a file whose
//! frames were altered is refused rather than read with wrong samples.

use std::fs::File;
use std::path::Path;

use symphonia::core::audio::{AudioBufferRef, Signal};
use symphonia::core::codecs::{Decoder, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::default::codecs::FlacDecoder;
use symphonia::default::formats::FlacReader;

use super::{AudioBuffer, AudioError, AudioInfo};

/// symphonia's FLAC decoder shifts every sample to the top of an `i32`, whatever the file's bit
/// depth; this brings full scale to ±1.0. Exact in `f32` for depths up to 24 bits.
const I32_TO_UNIT: f32 = 1.0 / 2_147_483_648.0;

/// An open FLAC stream and what its header says.
struct OpenFlac {
    reader: FlacReader,
    decoder: FlacDecoder,
    info: AudioInfo,
}

/// A FLAC stream that cannot be decoded, and why.
fn invalid_flac(path: &Path, reason: String) -> AudioError {
    AudioError::Invalid {
        path: path.to_path_buf(),
        format: "FLAC",
        reason,
    }
}

/// Opens a FLAC file and reads its stream header.
fn open(path: &Path) -> Result<OpenFlac, AudioError> {
    let owned = || path.to_path_buf();
    let invalid = |reason: String| invalid_flac(path, reason);
    super::check_nonempty_file(path)?;
    let file = File::open(path).map_err(|source| AudioError::Io {
        path: owned(),
        source,
    })?;

    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let reader = FlacReader::try_new(stream, &FormatOptions::default())
        .map_err(|e| invalid(format!("the stream header cannot be read ({e})")))?;
    let track = reader
        .default_track()
        .ok_or_else(|| invalid("the stream holds no audio track".to_string()))?;
    let params = &track.codec_params;
    let sample_rate_hz = params
        .sample_rate
        .ok_or_else(|| invalid("the header gives no sample rate".to_string()))?;
    let channels = params
        .channels
        .map(|c| c.count())
        .filter(|&c| c > 0)
        .ok_or_else(|| invalid("the header gives no channel layout".to_string()))?;
    let bits_per_sample = params
        .bits_per_sample
        .ok_or_else(|| invalid("the header gives no bit depth".to_string()))?;
    if bits_per_sample > 24 {
        return Err(AudioError::Unsupported {
            path: owned(),
            what: format!("{bits_per_sample}-bit FLAC (up to 24 bits can be read)"),
        });
    }
    // An unknown length (0 or absent in the header) is allowed; the decoded length then counts.
    let len_samples = params.n_frames.unwrap_or(0);
    let decoder = FlacDecoder::try_new(params, &DecoderOptions { verify: true })
        .map_err(|e| invalid(format!("the decoder refuses the stream ({e})")))?;
    Ok(OpenFlac {
        reader,
        decoder,
        info: AudioInfo {
            sample_rate_hz,
            channels,
            len_samples,
            bits_per_sample: bits_per_sample as u16,
            is_float: false,
        },
    })
}

/// Reads a FLAC stream header only: rate, channels, length (0 when the header leaves it
/// unknown) and bit depth.
pub(super) fn probe_flac(path: &Path) -> Result<AudioInfo, AudioError> {
    open(path).map(|flac| flac.info)
}

/// Reads one channel of a FLAC file into memory.
pub(super) fn read_flac(path: &Path, channel: usize) -> Result<AudioBuffer, AudioError> {
    let OpenFlac {
        mut reader,
        mut decoder,
        info,
    } = open(path)?;
    let owned = || path.to_path_buf();
    let invalid = |reason: String| invalid_flac(path, reason);
    if channel >= info.channels {
        return Err(AudioError::ChannelOutOfRange {
            path: owned(),
            channel,
            channels: info.channels,
        });
    }

    let mut samples = Vec::with_capacity(info.len_samples as usize);
    loop {
        let packet = match reader.next_packet() {
            Ok(packet) => packet,
            // The demuxer reports the end of the stream as an unexpected end of file.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::IoError(source)) => {
                return Err(AudioError::Io {
                    path: owned(),
                    source,
                })
            }
            Err(e) => return Err(invalid(format!("a frame cannot be read ({e})"))),
        };
        let decoded = decoder
            .decode(&packet)
            .map_err(|e| invalid(format!("a frame cannot be decoded ({e})")))?;
        match decoded {
            AudioBufferRef::S32(buffer) => {
                samples.extend(buffer.chan(channel).iter().map(|&s| s as f32 * I32_TO_UNIT))
            }
            _ => {
                return Err(AudioError::Unsupported {
                    path: owned(),
                    what: "a FLAC sample format other than integer PCM".to_string(),
                })
            }
        }
    }

    if info.len_samples > 0 && (samples.len() as u64) < info.len_samples {
        return Err(AudioError::Truncated {
            path: owned(),
            frames_read: samples.len() as u64,
            frames_expected: info.len_samples,
        });
    }
    if samples.is_empty() {
        return Err(AudioError::NoSamples { path: owned() });
    }
    if decoder.finalize().verify_ok == Some(false) {
        return Err(invalid(
            "the decoded audio does not match the file's MD5 signature: the file is corrupt"
                .to_string(),
        ));
    }
    Ok(AudioBuffer {
        sample_rate_hz: info.sample_rate_hz,
        samples,
    })
}
