//! Tests of WAV reading and writing with files made here by hound.

use super::testdir::TestDir;
use super::*;

/// A seeded pseudo-random signal in -0.9..0.9 (xorshift64).
fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 0.9
        })
        .collect()
}

/// Writes interleaved `channels` with hound in the given format; integer samples are rounded
/// to the nearest step.
fn write_with_hound(path: &Path, channels: &[Vec<f32>], bits: u16, float: bool) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: 44_100,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..channels[0].len() {
        for channel in channels {
            let x = channel[n];
            if float {
                writer.write_sample(x).unwrap();
            } else {
                let full_scale = (1i64 << (bits - 1)) as f64;
                let v = (f64::from(x) * full_scale).round() as i32;
                if bits == 8 {
                    writer.write_sample(v as i8).unwrap();
                } else {
                    writer.write_sample(v).unwrap();
                }
            }
        }
    }
    writer.finalize().unwrap();
}

#[test]
fn round_trip_per_bit_depth_within_half_a_step() {
    let dir = TestDir::new("wav-depths");
    let signal = noise(5000, 7);
    // (bits, float, tolerance): half a quantisation step for integers, exact for float.
    let cases = [
        (8u16, false, 0.5 / 128.0),
        (16, false, 0.5 / 32_768.0),
        (24, false, 0.5 / 8_388_608.0),
        (32, false, 1e-9),
        (32, true, 0.0),
    ];
    for (bits, float, tolerance) in cases {
        let path = dir.path().join(format!("s{bits}{float}.wav"));
        write_with_hound(&path, std::slice::from_ref(&signal), bits, float);
        let read = read_wav(&path, 0).unwrap();
        assert_eq!(read.sample_rate_hz, 44_100);
        assert_eq!(read.samples.len(), signal.len());
        let worst = read
            .samples
            .iter()
            .zip(&signal)
            .map(|(a, b)| f64::from((a - b).abs()))
            .fold(0.0, f64::max);
        // f32 arithmetic adds up to one ulp near 1.0 on top of the quantisation step.
        assert!(
            worst <= tolerance + 1.2e-7,
            "{bits}-bit float={float}: error {worst} above {tolerance}"
        );
    }
}

#[test]
fn write_wav_f32_round_trips_exactly_as_mono_float() {
    let dir = TestDir::new("wav-f32");
    let path = dir.path().join("out.wav");
    let signal = noise(3000, 11);
    write_wav_f32(&path, 48_000, &signal).unwrap();
    let info = probe_wav(&path).unwrap();
    assert_eq!(
        info,
        AudioInfo {
            sample_rate_hz: 48_000,
            channels: 1,
            len_samples: 3000,
            bits_per_sample: 32,
            is_float: true
        }
    );
    assert_eq!(read_wav(&path, 0).unwrap().samples, signal);
    // Only the target is left in the directory: no temporary file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn picks_the_asked_channel_of_a_stereo_file() {
    let dir = TestDir::new("wav-stereo");
    let path = dir.path().join("stereo.wav");
    let (left, right) = (noise(2000, 1), noise(2000, 2));
    write_with_hound(&path, &[left.clone(), right.clone()], 32, true);
    assert_eq!(read_wav(&path, 0).unwrap().samples, left);
    assert_eq!(read_wav(&path, 1).unwrap().samples, right);
    let err = read_wav(&path, 2).unwrap_err();
    assert!(matches!(
        err,
        AudioError::ChannelOutOfRange {
            channel: 2,
            channels: 2,
            ..
        }
    ));
    assert!(err.to_string().contains("stereo.wav"), "{err}");
}

#[test]
fn truncated_file_is_an_error_naming_the_file() {
    let dir = TestDir::new("wav-truncated");
    let path = dir.path().join("cut.wav");
    write_with_hound(&path, &[noise(1000, 3)], 16, false);
    let bytes = std::fs::read(&path).unwrap();
    // Cut mid-sample: header (44 bytes) plus 600.5 samples of 2 bytes.
    std::fs::write(&path, &bytes[..44 + 1201]).unwrap();
    let err = read_wav(&path, 0).unwrap_err();
    match &err {
        AudioError::Truncated {
            frames_read,
            frames_expected,
            ..
        } => {
            assert_eq!(*frames_expected, 1000);
            assert_eq!(*frames_read, 600);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert!(err.to_string().contains("cut.wav"), "{err}");

    // Cut exactly between samples: still an error, not a shorter signal.
    std::fs::write(&path, &bytes[..44 + 1200]).unwrap();
    assert!(matches!(
        read_wav(&path, 0),
        Err(AudioError::Truncated {
            frames_read: 600,
            ..
        })
    ));
}

#[test]
fn bad_files_give_their_own_errors() {
    let dir = TestDir::new("wav-bad");
    let missing = dir.path().join("missing.wav");
    assert!(matches!(
        read_wav(&missing, 0),
        Err(AudioError::NotFound { .. })
    ));

    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(read_wav(&empty, 0), Err(AudioError::Empty { .. })));

    let text = dir.path().join("text.wav");
    std::fs::write(&text, b"this is not a RIFF file at all").unwrap();
    let err = read_wav(&text, 0).unwrap_err();
    assert!(matches!(err, AudioError::NotWav { .. }), "{err:?}");
    assert!(err.to_string().contains("text.wav"), "{err}");

    let no_samples = dir.path().join("nothing.wav");
    write_with_hound(&no_samples, &[Vec::new()], 16, false);
    assert!(matches!(
        read_wav(&no_samples, 0),
        Err(AudioError::NoSamples { .. })
    ));

    // A FLAC signature with nothing after it: the stream header is missing.
    let flac = dir.path().join("song.flac");
    std::fs::write(&flac, b"fLaC").unwrap();
    let err = read_audio(&flac, 0).unwrap_err();
    assert!(matches!(err, AudioError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("song.flac"), "{err}");

    // A WAV file under a FLAC name is not decoded as anything.
    let misnamed = dir.path().join("really-a-wav.flac");
    write_with_hound(&misnamed, &[vec![0.25, -0.25]], 16, false);
    let err = read_audio(&misnamed, 0).unwrap_err();
    assert!(matches!(err, AudioError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("really-a-wav.flac"), "{err}");

    let ogg = dir.path().join("song.ogg");
    std::fs::write(&ogg, b"OggS").unwrap();
    let err = read_audio(&ogg, 0).unwrap_err();
    assert!(matches!(err, AudioError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("song.ogg"), "{err}");
}

#[test]
fn block_reader_gives_the_same_samples_as_read_wav() {
    let dir = TestDir::new("wav-blocks");
    let path = dir.path().join("blocks.wav");
    write_with_hound(&path, &[noise(10_001, 5), noise(10_001, 6)], 24, false);
    let whole = read_wav(&path, 1).unwrap().samples;
    let mut reader = WavBlockReader::open(&path, 1).unwrap();
    assert_eq!(reader.len_samples(), 10_001);
    let (mut joined, mut block) = (Vec::new(), Vec::new());
    while reader.read_block(&mut block, 999).unwrap() > 0 {
        assert!(block.len() <= 999);
        joined.extend_from_slice(&block);
    }
    assert_eq!(joined, whole);
}

#[test]
fn unfinished_writer_leaves_existing_target_untouched() {
    let dir = TestDir::new("wav-unfinished");
    let path = dir.path().join("target.wav");
    write_wav_f32(&path, 48_000, &[0.25; 100]).unwrap();
    {
        let mut writer = WavBlockWriter::create(&path, 48_000).unwrap();
        writer.write(&[0.5; 1000]).unwrap();
        assert_eq!(writer.len_samples(), 1000);
        // Dropped without finish().
    }
    assert_eq!(read_wav(&path, 0).unwrap().samples, vec![0.25; 100]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let err = write_wav_f32(&dir.path().join("no/such/dir.wav"), 48_000, &[0.0]).unwrap_err();
    assert!(matches!(err, AudioError::Write { .. }));
    assert!(err.to_string().contains("dir.wav"), "{err}");
}

#[test]
fn load_mono_resamples_to_the_target_rate() {
    let dir = TestDir::new("wav-load");
    let path = dir.path().join("in.wav");
    write_with_hound(&path, &[noise(4410, 9)], 16, false);
    let loaded = load_mono(&path, 0, 48_000).unwrap();
    assert_eq!(loaded.sample_rate_hz, 48_000);
    assert_eq!(loaded.samples.len(), 4800);
    assert!((loaded.duration_s() - 0.1).abs() < 1e-12);
}
