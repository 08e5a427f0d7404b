//! The input buffer of a dilated causal convolution, kept across calls.
//!
//! Channel-major: each channel's row holds, before `pos`, the last `history` samples of the
//! previous calls, and from `pos` on the current call's samples. `pos` moves on after every
//! call; when the next call might not fit, the history moves back to the front of its row.
//! Each row has room for at least `history` samples after the history, so that move happens at
//! most once per `history` samples: the cost per sample does not depend on the block size.

#[derive(Clone)]
pub(super) struct History {
    /// `[channels, stride]`.
    data: Vec<f32>,
    /// Past samples each output needs.
    history: usize,
    /// Samples per channel row: `history` plus room for one call or more.
    stride: usize,
    /// Where the current call's samples go in each row; at least `history`.
    pos: usize,
}

impl History {
    /// A silent history of `channels` rows for calls of up to `max_block` samples.
    pub(super) fn new(channels: usize, history: usize, max_block: usize) -> Self {
        let stride = history + max_block.max(history);
        Self {
            data: vec![0.0; channels * stride],
            history,
            stride,
            pos: history,
        }
    }

    /// Channel `ch`'s slot for the current call's `n` samples.
    #[inline(always)]
    pub(super) fn slot_mut(&mut self, ch: usize, n: usize) -> &mut [f32] {
        &mut self.data[ch * self.stride + self.pos..][..n]
    }

    /// Channel `ch`'s `n` samples starting `back` samples before the current call
    /// (`back <= history`); `back = 0` is the current call's own samples.
    #[inline(always)]
    pub(super) fn delayed(&self, ch: usize, back: usize, n: usize) -> &[f32] {
        debug_assert!(back <= self.history);
        &self.data[ch * self.stride + self.pos - back..][..n]
    }

    /// Moves past a call of `n` samples, making room for the next call of up to `max_block`.
    #[inline(always)]
    pub(super) fn advance(&mut self, n: usize, max_block: usize) {
        self.pos += n;
        if self.pos + max_block > self.stride {
            self.move_to_front();
        }
    }

    /// Silence: every sample zero.
    pub(super) fn clear(&mut self) {
        self.data.fill(0.0);
        self.pos = self.history;
    }

    /// Fills each channel's history with its newest sample: a constant past, which is what a
    /// stack settling on silence feeds its later blocks (non-zero through biases and FiLM).
    pub(super) fn hold_newest(&mut self) {
        self.move_to_front();
        if self.history == 0 {
            return;
        }
        for row in self.data.chunks_exact_mut(self.stride) {
            let newest = row[self.history - 1];
            row[..self.history].fill(newest);
        }
    }

    pub(super) fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    /// Copies each row's history to its front.
    fn move_to_front(&mut self) {
        let (hist, pos) = (self.history, self.pos);
        if pos != hist {
            for row in self.data.chunks_exact_mut(self.stride) {
                row.copy_within(pos - hist..pos, 0);
            }
            self.pos = hist;
        }
    }
}
