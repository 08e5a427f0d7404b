//! fxtwin's signal-processing core.
//!
//! Everything here runs without any training framework: audio file input and output,
//! resampling, level analysis, alignment of recordings, the profiling stimulus, the dataset
//! manifest, the model file (the one contract between training and the real-time engine) and
//! the engine that plays model files back.

pub mod align;
pub mod audio;
pub mod check;
pub mod dataset;
pub mod engine;
pub mod fastmath;
pub mod fsutil;
pub mod knob;
pub mod levels;
pub mod model;
pub mod stimulus;
