//! Real-time safety of the player: no allocation on the audio thread for any architecture,
//! subnormals flushed, and the caller's floating-point mode left as it was.

use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count, AllocDisabler};

use super::*;
use crate::model::tests::{random_model, TestRng};
use crate::model::{Cell, RecurrentNet};

// Counts allocations made inside `assert_no_alloc` on the calling thread; elsewhere (the rest
// of this test binary) it is the system allocator.
#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

/// Every architecture the engine plays, from both engine test files.
fn every_network() -> Vec<(&'static str, Network)> {
    let mut all = super::tests::networks();
    all.extend(super::tests_arch::networks());
    all
}

#[test]
fn the_audio_thread_calls_allocate_nothing_for_any_architecture() {
    let mut rng = TestRng::new(31);
    let input: Vec<f32> = (0..12_000).map(|_| rng.uniform(0.5)).collect();
    let mut output = vec![0.0f32; input.len()];
    let mut poisoned = input[..600].to_vec();
    poisoned[10] = f32::NAN;
    poisoned[11] = f32::NEG_INFINITY;
    let mut poisoned_out = vec![0.0f32; poisoned.len()];

    let architectures = every_network();
    assert!(architectures.len() >= 10, "every architecture is covered");
    for (seed, (name, network)) in architectures.into_iter().enumerate() {
        let model = random_model(network, 2, 40 + seed as u64);
        // Preparing may allocate: it happens off the audio thread.
        let mut player = Player::new(&model, 512).unwrap();

        reset_violation_count();
        assert_no_alloc(|| {
            // Block sizes from 1 to beyond the prepared maximum (split internally).
            let mut done = 0;
            for block in [1, 7, 64, 512, 4096, 1000] {
                let end = (done + block).min(input.len());
                player.process(&input[done..end], &mut output[done..end]);
                done = end;
            }
            // A knob move mid-stream: the glide refreshes the conditioning block by block.
            player.set_knobs_normalized(&[0.9, 0.1]);
            player.process(&input[done..], &mut output[done..]);
            // Non-finite input, and a reset as a host sends on transport start.
            player.process(&poisoned, &mut poisoned_out);
            player.reset();
            player.process(&poisoned, &mut poisoned_out);
        });
        assert_eq!(
            violation_count(),
            0,
            "{name}: the player allocated or freed memory while processing"
        );
        // The calls above did work: the output is a signal, not untouched zeros.
        let energy: f32 = output.iter().map(|v| v * v).sum();
        assert!(energy > 1.0, "{name}: output energy {energy}");
        assert!(poisoned_out.iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn subnormal_results_are_flushed_while_processing() {
    // An LSTM whose read-out scales its state by 1e-38: every output sample lies in the
    // subnormal range unless the player flushes it to zero.
    let network = Network::Recurrent(RecurrentNet {
        cell: Cell::Lstm,
        hidden_size: 4,
        skip: false,
        gain_head: false,
        level_inputs: Vec::new(),
    });
    let mut model = random_model(network, 0, 7);
    let head = model.weights.get_mut("head.w").unwrap();
    head.data.fill(1e-38 / 4.0);
    model.weights.get_mut("head.b").unwrap().data.fill(0.0);

    let input: Vec<f32> = (0..256).map(|i| (i as f32 * 0.05).sin() * 0.8).collect();
    let mut output = vec![1.0f32; input.len()];
    let mut player = Player::new(&model, 64).unwrap();
    player.process(&input, &mut output);
    assert!(
        output.iter().all(|&v| v == 0.0),
        "subnormal outputs escaped: {:?}",
        output.iter().find(|v| **v != 0.0)
    );

    // The same arithmetic outside the player keeps its subnormal result: the player restored
    // the caller's mode.
    let h = std::hint::black_box(0.5f32);
    let outside = std::hint::black_box(1e-38f32 / 4.0) * h;
    assert!(outside.is_subnormal(), "{outside:e}");
}
