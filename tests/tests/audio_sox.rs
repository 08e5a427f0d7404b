//! Audio files written by a third-party encoder: SoX converts one recording to integer WAV and
//! to FLAC at the same bit depth, and fxtwin must read both to the same samples, bit for bit,
//! on every channel; damaged FLAC files must be refused with an error that names them.
//!
//! Needs SoX on the PATH (`scripts/test.sh` installs it).

// Only the dry music and the work folder of the shared SoX helpers are used here.
#[allow(dead_code)]
#[path = "common/sox.rs"]
mod sox;

use std::path::{Path, PathBuf};
use std::process::Command;

use dsp::audio::{self, AudioError};
use sox::WorkDir;

/// Seconds of the dry music each file holds.
const SECONDS: usize = 3;

/// Runs `sox -D -R ARGS...` (no dither, repeatable) and panics with SoX's message on failure.
fn sox(args: &[&str]) {
    let result = Command::new("sox")
        .args(["-D", "-R"])
        .args(args)
        .output()
        .expect("SoX runs (scripts/test.sh installs it)");
    assert!(
        result.status.success(),
        "sox {args:?} failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// Writes the dry music as 32-bit float mono WAV, then asks SoX for a stereo file of `bits`
/// integer bits at `rate` Hz in both WAV and FLAC: channel 0 the music, channel 1 the music
/// at -6 dB and inverted, so a reader that mixes up channels or polarity is caught.
fn wav_and_flac(dir: &Path, bits: u32, rate: u32) -> (PathBuf, PathBuf) {
    let mut music = sox::dry_music();
    music.truncate(SECONDS * sox::SAMPLE_RATE_HZ as usize);
    let source = dir.join("source.wav");
    audio::write_wav_f32(&source, sox::SAMPLE_RATE_HZ, &music).expect("source written");
    let (bits, rate) = (bits.to_string(), rate.to_string());
    let mut outputs = Vec::new();
    for extension in ["wav", "flac"] {
        let out = dir.join(format!("music-{bits}bit-{rate}.{extension}"));
        let out_str = out.to_str().expect("UTF-8 path");
        sox(&[
            source.to_str().expect("UTF-8 path"),
            "-e",
            "signed-integer",
            "-b",
            &bits,
            out_str,
            "remix",
            "1",
            "1v-0.5",
            "rate",
            "-v",
            &rate,
        ]);
        outputs.push(out);
    }
    (outputs[0].clone(), outputs[1].clone())
}

#[test]
fn flac_reads_bit_identical_to_wav_of_the_same_depth() {
    let work = WorkDir::new("audio_sox_identical");
    for (bits, rate) in [(16, 48_000), (24, 44_100)] {
        let (wav, flac) = wav_and_flac(&work.path, bits, rate);
        let flac_info = audio::probe_audio(&flac).expect("FLAC header");
        let wav_info = audio::probe_audio(&wav).expect("WAV header");
        assert_eq!(
            flac_info, wav_info,
            "{bits}-bit at {rate} Hz: headers differ"
        );
        assert_eq!(flac_info.channels, 2);
        assert_eq!(flac_info.sample_rate_hz, rate);

        for channel in 0..2 {
            let from_wav = audio::read_audio(&wav, channel).expect("WAV reads");
            let from_flac = audio::read_audio(&flac, channel).expect("FLAC reads");
            assert_eq!(from_flac.sample_rate_hz, rate);
            assert_eq!(from_flac.samples.len(), from_wav.samples.len());
            let mismatch = from_flac
                .samples
                .iter()
                .zip(&from_wav.samples)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(
                mismatch, None,
                "{bits}-bit at {rate} Hz, channel {channel}: first differing sample"
            );
        }

        // Not silence read twice: channel 0 is the music at its level, channel 1 the same
        // music at half the amplitude and inverted, within the quantisation of both.
        let left = audio::read_audio(&flac, 0).unwrap().samples;
        let right = audio::read_audio(&flac, 1).unwrap().samples;
        let peak = |x: &[f32]| x.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        let music_peak = peak(&sox::dry_music()[..SECONDS * sox::SAMPLE_RATE_HZ as usize]);
        assert!(
            (peak(&left) - music_peak).abs() < 0.05 * music_peak,
            "{bits}-bit at {rate} Hz: peak {} but the music peaks at {music_peak}",
            peak(&left)
        );
        let lsb = 2.0f32.powi(1 - bits as i32);
        let worst = left
            .iter()
            .zip(&right)
            .map(|(l, r)| (r + 0.5 * l).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1.5 * lsb,
            "{bits}-bit at {rate} Hz: channel 1 departs from -0.5 x channel 0 by {worst}"
        );

        // Resampled to the model rate, both formats still give the same signal.
        let a = audio::load_mono(&wav, 1, 48_000).expect("WAV loads");
        let b = audio::load_mono(&flac, 1, 48_000).expect("FLAC loads");
        assert_eq!(a, b, "{bits}-bit at {rate} Hz: resampled signals differ");
    }
    let channel_error = audio::read_audio(&work.path.join("music-16bit-48000.flac"), 2)
        .expect_err("a stereo file has no channel 2");
    assert!(
        matches!(
            channel_error,
            AudioError::ChannelOutOfRange { channels: 2, .. }
        ),
        "{channel_error:?}"
    );
}

#[test]
fn damaged_flac_files_are_refused_with_their_name() {
    let work = WorkDir::new("audio_sox_damaged");
    let (_, flac) = wav_and_flac(&work.path, 16, 48_000);
    let bytes = std::fs::read(&flac).expect("FLAC written");

    // Cut off after 60 % of its bytes, as by an interrupted copy.
    let truncated = work.path.join("truncated.flac");
    std::fs::write(&truncated, &bytes[..bytes.len() * 6 / 10]).unwrap();
    // Bytes overwritten in the middle of the audio frames.
    let corrupt = work.path.join("corrupt.flac");
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    for byte in &mut damaged[middle..middle + 64] {
        *byte ^= 0x5a;
    }
    std::fs::write(&corrupt, &damaged).unwrap();
    // Only the stream header.
    let header_only = work.path.join("header-only.flac");
    std::fs::write(&header_only, &bytes[..8192.min(bytes.len())]).unwrap();

    for path in [&truncated, &corrupt, &header_only] {
        let err = audio::read_audio(path, 0).expect_err("a damaged file is refused");
        let message = err.to_string();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(message.contains(name), "{name}: {message}");
        assert!(!message.contains('\n'), "{name}: not one line: {message}");
        assert!(
            matches!(
                err,
                AudioError::Truncated { .. } | AudioError::Invalid { .. }
            ),
            "{name}: {err:?}"
        );
    }
    let err = audio::read_audio(&truncated, 0).unwrap_err();
    assert!(
        matches!(err, AudioError::Truncated { frames_expected, .. }
            if frames_expected == (SECONDS * sox::SAMPLE_RATE_HZ as usize) as u64),
        "{err:?}"
    );
}

#[test]
fn a_folder_of_flac_recordings_becomes_a_dataset() {
    let work = WorkDir::new("audio_sox_dataset");
    let mut music = sox::dry_music();
    music.truncate(SECONDS * sox::SAMPLE_RATE_HZ as usize);
    let source = work.path.join("source.wav");
    audio::write_wav_f32(&source, sox::SAMPLE_RATE_HZ, &music).unwrap();
    let dir = work.path.join("pedal");
    std::fs::create_dir_all(&dir).unwrap();
    let source_str = source.to_str().unwrap();
    let dry = dir.join("dry.flac");
    sox(&[source_str, "-b", "24", dry.to_str().unwrap()]);
    for gain in [10, 30] {
        let wet = dir.join(format!("wet__gain={gain}.flac"));
        sox(&[
            source_str,
            "-b",
            "24",
            wet.to_str().unwrap(),
            "overdrive",
            &gain.to_string(),
        ]);
    }
    // A stray file of another kind is not taken for a recording.
    std::fs::write(dir.join("notes.txt"), "gain knob at 10 and 30").unwrap();

    let manifest = dsp::dataset::init_from_dir(&dir).expect("manifest from FLAC names");
    assert_eq!(manifest.pairs.len(), 2);
    manifest.check_audio().expect("every FLAC header reads");
    for index in 0..2 {
        let (dry_path, wet_path) = manifest.pair_paths(index);
        assert_eq!(dry_path, dry);
        let wet = audio::read_audio(&wet_path, 0).expect("wet reads");
        assert_eq!(wet.samples.len(), music.len());
        // Overdrive is loud: the wet file is not the dry one.
        let dry_audio = audio::read_audio(&dry_path, 0).unwrap();
        let differs = wet
            .samples
            .iter()
            .zip(&dry_audio.samples)
            .filter(|(w, d)| (*w - *d).abs() > 1e-3)
            .count();
        assert!(differs > music.len() / 10, "pair {index}: wet equals dry");
    }
}
