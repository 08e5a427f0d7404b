//! fxtwin's trainable models: candle definitions, losses, datasets and the training loop.
//!
//! Trained models leave this crate only as model files written through `dsp::model`.

pub mod losses;
pub mod ops;
pub mod net;
pub mod presets;
pub mod optim;
pub mod data;
pub mod train;
pub mod bench;
