//! Fused candle ops for training: each runs a whole recurrence over a sequence as one custom
//! op with a hand-written backward pass, instead of a graph of thousands of tiny ops.
//!
//! - [`lstm`](lstm::lstm) and [`gru`](gru::gru): recurrent layers in PyTorch's weight layout,
//!   batch-major `[B, T, features]`, CPU and f32 only.
//! - [`dilated_conv1d`](conv::dilated_conv1d): a dilated 1-D convolution as shifted GEMMs,
//!   `[B, C, T]` like candle's `conv1d`, CPU and f32 only.
//! - [`tanh`](gate::tanh) and [`gated`](gate::gated): the conv networks' activations as
//!   one-pass ops.

pub mod conv;
mod cpu;
pub mod gate;
pub mod gru;
pub mod lstm;
pub mod scan;
#[cfg(test)]
mod test_support;

pub use conv::dilated_conv1d;
pub use gate::{activate, gated, tanh};
pub use gru::gru;
pub use lstm::lstm;
