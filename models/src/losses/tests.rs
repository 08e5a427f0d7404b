use super::*;
use candle_core::{DType, Device, Var};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::f64::consts::PI;

const SAMPLE_RATE_HZ: f64 = 48_000.0;

fn uniform(len: usize, amplitude: f32, seed: u64) -> Vec<f32> {
    let mut rng = Pcg64::seed_from_u64(seed);
    (0..len)
        .map(|_| rng.random_range(-amplitude..amplitude))
        .collect()
}

fn sine(len: usize, freq_hz: f64, amplitude: f64) -> Vec<f32> {
    (0..len)
        .map(|n| (amplitude * (2.0 * PI * freq_hz * n as f64 / SAMPLE_RATE_HZ).sin()) as f32)
        .collect()
}

fn batch(data: Vec<f32>, b_sz: usize) -> Tensor {
    let len = data.len() / b_sz;
    Tensor::from_vec(data, (b_sz, len), &Device::Cpu).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn esr_of_target_scaled_by_0_9_is_one_percent() {
    let target_data = uniform(4 * 2000, 0.5, 1);
    let pred_data: Vec<f32> = target_data.iter().map(|x| 0.9 * x).collect();
    let (target, pred) = (batch(target_data.clone(), 4), batch(pred_data.clone(), 4));
    for pre in [None, Some(DEFAULT_PRE_EMPHASIS)] {
        let value = scalar(&esr(&pred, &target, pre).unwrap());
        assert!(
            (value - 0.01).abs() <= 1e-6,
            "ESR with pre-emphasis {pre:?}: {value}"
        );
    }
    let value = esr_f64(&pred_data, &target_data);
    // Only the f32 rounding of 0.9 x separates this from 0.01.
    assert!((value - 0.01).abs() <= 1e-7, "esr_f64: {value}");
}

#[test]
fn pre_emphasis_discounts_low_frequency_error() {
    // White-noise target, 30 Hz error. The filter 1 - a z^-1 has power gain |1 - a e^{-jω}|²
    // at the error frequency and 1 + a² on white noise, so pre-emphasis scales the ESR by
    // their ratio (about 0.013 for a = 0.85).
    let len = 48_000;
    let target_data = uniform(len, 0.5, 2);
    let error = sine(len, 30.0, 0.1);
    let pred_data: Vec<f32> = target_data.iter().zip(&error).map(|(t, e)| t + e).collect();
    let (target, pred) = (batch(target_data, 1), batch(pred_data, 1));
    let plain = scalar(&esr(&pred, &target, None).unwrap());
    let emphasised = scalar(&esr(&pred, &target, Some(DEFAULT_PRE_EMPHASIS)).unwrap());

    let a = f64::from(DEFAULT_PRE_EMPHASIS);
    let omega = 2.0 * PI * 30.0 / SAMPLE_RATE_HZ;
    let gain_at_error = 1.0 - 2.0 * a * omega.cos() + a * a;
    let expected_ratio = gain_at_error / (1.0 + a * a);
    let ratio = emphasised / plain;
    assert!(
        (ratio / expected_ratio - 1.0).abs() <= 0.05,
        "pre-emphasised / plain ESR = {ratio}, expected {expected_ratio} (plain {plain})"
    );
    assert!(
        ratio < 0.02,
        "low-frequency error must be heavily discounted: ratio {ratio}"
    );
}

#[test]
fn l1_of_constant_offset_is_the_offset() {
    let target_data = uniform(3 * 500, 0.5, 3);
    let pred_data: Vec<f32> = target_data.iter().map(|x| x - 0.25).collect();
    let value = scalar(&l1(&batch(pred_data, 3), &batch(target_data, 3)).unwrap());
    assert!((value - 0.25).abs() <= 1e-6, "L1 {value}");
}

#[test]
fn dc_loss_of_offset_sine_is_offset_power_over_signal_power() {
    // 1 kHz at 48 kHz: 48 samples a period, 960 samples = 20 whole periods, so mean 0 and
    // mean square 0.5; an offset of 0.1 gives 0.01 / 0.5 = 0.02 in every segment.
    let target_data: Vec<f32> = (0..2).flat_map(|_| sine(960, 1000.0, 1.0)).collect();
    let pred_data: Vec<f32> = target_data.iter().map(|x| x + 0.1).collect();
    let value = scalar(&dc(&batch(pred_data, 2), &batch(target_data, 2)).unwrap());
    assert!((value - 0.02).abs() <= 1e-5, "DC loss {value}");
}

#[test]
fn losses_reject_mismatched_shapes() {
    let a = batch(vec![0.0; 20], 2);
    let b = batch(vec![0.0; 20], 4);
    assert!(matches!(esr(&a, &b, None), Err(LossError::Shape { .. })));
    assert!(matches!(l1(&a, &b), Err(LossError::Shape { .. })));
    assert!(matches!(dc(&a, &b), Err(LossError::Shape { .. })));
    let short = batch(vec![0.0; 200], 1);
    let res = [StftResolution::new(512, 50, 240)];
    assert!(matches!(
        mr_stft(&short, &short, &res),
        Err(LossError::TooShort { .. })
    ));
}

#[test]
fn stft_of_sine_at_bin_centre_has_analytic_magnitude() {
    // A sine of amplitude A at the centre of bin k gives |X[k]| = A Σw / 2 in every frame
    // away from the edges; Σw = win_len / 2 for the periodic Hann window.
    let res = StftResolution::DEFAULTS[0];
    let (bin, amplitude) = (100, 0.7);
    let freq_hz = bin as f64 * SAMPLE_RATE_HZ / res.fft_size as f64;
    let len = 8192;
    let stft = Stft::new(res, &Device::Cpu).unwrap();
    let mag = stft
        .magnitude(&batch(sine(len, freq_hz, amplitude), 1))
        .unwrap();
    assert_eq!(mag.dims(), &[1, res.num_frames(len), res.num_bins()]);
    let window_sum = res.win_len_samples as f64 / 2.0;
    let expected = amplitude * window_sum / 2.0;
    for frame in [10, 30, 50] {
        let got = f64::from(
            mag.get(0)
                .unwrap()
                .get(frame)
                .unwrap()
                .get(bin)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        );
        assert!(
            (got / expected - 1.0).abs() <= 0.01,
            "frame {frame}: |X[{bin}]| = {got}, expected {expected}"
        );
    }
}

#[test]
fn mr_stft_is_zero_for_identical_signals_and_grows_with_noise() {
    let len = 4096;
    let target_data = sine(len, 440.0, 0.5);
    let target = batch(target_data.clone(), 1);
    let loss = MrStftLoss::new(&StftResolution::DEFAULTS, &Device::Cpu).unwrap();
    let same = scalar(&loss.compute(&target, &target).unwrap());
    assert!(same.abs() <= 1e-6, "identical signals give {same}");
    let mut previous = same;
    for (i, level) in [0.001f32, 0.01, 0.1].into_iter().enumerate() {
        let noise = uniform(len, level, 10 + i as u64);
        let pred: Vec<f32> = target_data.iter().zip(&noise).map(|(t, n)| t + n).collect();
        let value = scalar(&loss.compute(&batch(pred, 1), &target).unwrap());
        assert!(
            value > previous * 1.5,
            "noise {level}: loss {value} after {previous}"
        );
        previous = value;
    }
}

#[test]
fn candle_mr_stft_matches_f64_reference() {
    let len = 3000;
    let target_data = uniform(len, 0.5, 4);
    let pred_data: Vec<f32> = target_data
        .iter()
        .zip(uniform(len, 0.1, 5))
        .map(|(t, n)| 0.8 * t + n)
        .collect();
    let res = StftResolution::DEFAULTS;
    let candle_value = scalar(
        &mr_stft(
            &batch(pred_data.clone(), 1),
            &batch(target_data.clone(), 1),
            &res,
        )
        .unwrap(),
    );
    let reference = mr_stft_f64_with(&pred_data, &target_data, &res).unwrap();
    let defaults = mr_stft_f64(&pred_data, &target_data);
    assert_eq!(
        defaults, reference,
        "mr_stft_f64 uses the default resolutions"
    );
    assert!(mr_stft_f64(&pred_data[..1000], &target_data[..1000]).is_nan());
    assert!(
        (candle_value / reference - 1.0).abs() <= 1e-4,
        "candle {candle_value}, f64 reference {reference}"
    );
}

/// Checks d loss / d pred of a candle loss against central differences, all in f64.
fn check_gradient(name: &str, loss: impl Fn(&Tensor, &Tensor) -> Tensor) {
    let (b_sz, len) = (2, 40);
    let dev = Device::Cpu;
    let to_f64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    let target = Tensor::from_vec(to_f64(uniform(b_sz * len, 0.5, 6)), (b_sz, len), &dev).unwrap();
    let pred_data = to_f64(uniform(b_sz * len, 0.5, 7));
    let pred = Var::from_vec(pred_data.clone(), (b_sz, len), &dev).unwrap();
    let grads = loss(pred.as_tensor(), &target).backward().unwrap();
    let analytic: Vec<f64> = grads
        .get(pred.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let step = 1e-6;
    let eval = |data: Vec<f64>| {
        let p = Tensor::from_vec(data, (b_sz, len), &dev).unwrap();
        loss(&p, &target).to_scalar::<f64>().unwrap()
    };
    for (i, &g) in analytic.iter().enumerate() {
        let mut plus = pred_data.clone();
        plus[i] += step;
        let mut minus = pred_data.clone();
        minus[i] -= step;
        let numeric = (eval(plus) - eval(minus)) / (2.0 * step);
        assert!(
            (g - numeric).abs() <= 1e-6 + 1e-4 * numeric.abs(),
            "{name}: element {i}, analytic {g}, numeric {numeric}"
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    check_gradient("ESR", |p, t| esr(p, t, None).unwrap());
    check_gradient("pre-emphasised ESR", |p, t| esr(p, t, Some(0.85)).unwrap());
    check_gradient("L1", |p, t| l1(p, t).unwrap());
    check_gradient("DC", |p, t| dc(p, t).unwrap());
    let res = [StftResolution::new(16, 4, 12), StftResolution::new(8, 2, 8)];
    let mr = MrStftLoss::new(&res, &Device::Cpu).unwrap();
    check_gradient("MR-STFT", |p, t| mr.compute(p, t).unwrap());
}

#[test]
fn loss_total_is_weighted_sum_of_parts() {
    let cfg = LossConfig {
        esr: 1.0,
        esr_pre_emphasis: Some(0.85),
        esr_per_recording: false,
        l1: 0.5,
        mr_stft: 2.0,
        dc: 0.25,
    };
    let res = [StftResolution::new(256, 64, 256)];
    let loss = Loss::with_resolutions(&cfg, &res, &Device::Cpu).unwrap();
    let target_data = uniform(2 * 1024, 0.5, 8);
    let pred_data: Vec<f32> = target_data.iter().map(|x| 0.7 * x + 0.01).collect();
    let (pred, target) = (batch(pred_data, 2), batch(target_data, 2));
    let (total, parts) = loss.compute(&pred, &target).unwrap();
    let expected = f64::from(parts.esr)
        + 0.5 * f64::from(parts.l1)
        + 2.0 * f64::from(parts.mr_stft)
        + 0.25 * f64::from(parts.dc);
    let total = scalar(&total);
    assert!(
        (total / expected - 1.0).abs() <= 1e-5,
        "total {total}, weighted parts {expected}"
    );
    let mr_alone = scalar(&mr_stft(&pred, &target, &res).unwrap());
    assert!((f64::from(parts.mr_stft) / mr_alone - 1.0).abs() <= 1e-5);
    assert!(parts.esr > 0.0 && parts.l1 > 0.0 && parts.dc > 0.0);
}

#[test]
fn loss_config_fills_defaults_and_rejects_bad_values() {
    let cfg: LossConfig =
        serde_json::from_str(r#"{ "mr_stft": 1.0, "esr_pre_emphasis": null }"#).unwrap();
    assert_eq!(
        cfg,
        LossConfig {
            mr_stft: 1.0,
            esr_pre_emphasis: None,
            ..LossConfig::default()
        }
    );
    assert!(serde_json::from_str::<LossConfig>(r#"{ "esrr": 1.0 }"#).is_err());
    assert!(LossConfig::default().validate().is_ok());
    let negative = LossConfig {
        l1: -1.0,
        ..LossConfig::default()
    };
    assert!(matches!(
        negative.validate(),
        Err(LossError::Config { field: "l1", .. })
    ));
    let unstable = LossConfig {
        esr_pre_emphasis: Some(1.0),
        ..LossConfig::default()
    };
    assert!(matches!(
        unstable.validate(),
        Err(LossError::Config {
            field: "esr_pre_emphasis",
            ..
        })
    ));
    let all_off = LossConfig {
        esr: 0.0,
        l1: 0.0,
        mr_stft: 0.0,
        dc: 0.0,
        esr_pre_emphasis: None,
        esr_per_recording: false,
    };
    assert!(Loss::new(&all_off, &Device::Cpu).is_err());
}

#[test]
fn fft_and_matmul_magnitudes_agree() {
    let res = StftResolution::new(64, 10, 48);
    let stft = Stft::new(res, &Device::Cpu).unwrap();
    let x = batch(uniform(2 * 500, 0.5, 11), 2);
    let fft = stft.magnitude_fft(&x).unwrap();
    let matmul = stft.magnitude_matmul(&x).unwrap();
    assert_eq!(fft.dims(), &[2, res.num_frames(500), res.num_bins()]);
    let err = scalar(
        &(fft - matmul)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap(),
    );
    assert!(
        err <= 1e-4,
        "FFT vs DFT-matrix magnitude max difference {err}"
    );
}

#[test]
fn matmul_magnitude_gradient_matches_finite_differences() {
    // The device-generic path (used off the CPU) must differentiate too.
    let res = StftResolution::new(16, 4, 12);
    let stft = Stft::new(res, &Device::Cpu).unwrap();
    check_gradient("DFT-matrix magnitude", |p, _| {
        stft.magnitude_matmul(p)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
    });
}
