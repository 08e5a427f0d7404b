//! fxtwin's trainable models: candle definitions, losses, datasets and the training loop.
//!
//! Trained models leave this crate only as model files written through `dsp::model`.

pub mod bench;
pub mod data;
pub mod losses;
pub mod net;
pub mod ops;
pub mod optim;
pub mod presets;
pub mod train;
