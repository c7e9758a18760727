//! gpu-siamese: Siamese (twin) convolutional networks trained with WGSL compute shaders through wgpu.
//!
//! - [`reference`]: the CPU reference, plain loops that read like the spec.
//! - [`gpu`]: the adapter, the device and the kernels (one pipeline per kernel and shape, built once).
//! - [`layers`]: one module per layer kind: its syntax, shape, parameters, reference and GPU recording.
//! - [`model`]: the tower's spec, its layers laid out for an input and batch, its parameters.
//! - [`twin`]: the whole training step recorded as GPU dispatches, mirroring `reference::TwinReference`;
//!   datasets kept on the GPU.
//! - [`data`]: IDX files, where Fashion-MNIST is found, the tutorial's pairs.
//! - [`train`]: the training run; [`checkpoint`] its files; [`metrics`] its scores.
//! - [`evaluate`]: a trained model put to use: embeddings, distances, evaluation.
//! - [`report`]: a run's pictures, drawn with [`plot`]; [`npy`] writes embeddings for NumPy.
//! - [`inputs`]: files read with bounds; [`outputs`]: the guard every command's outputs pass before any work.
//! - [`bench`]: the step's time and each kernel's, for `gpu-siamese bench`.

pub mod bench;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod data;
pub mod dedup;
pub mod embed;
pub mod evaluate;
pub mod feed;
pub mod gallery;
pub mod gpu;
pub mod inputs;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod objective;
pub mod onnx;
pub mod optimizer;
pub mod outputs;
pub mod plot;
pub mod reference;
pub mod report;
pub mod run;
pub mod search;
pub mod summary;
pub mod tower;
pub mod train;
pub mod twin;
