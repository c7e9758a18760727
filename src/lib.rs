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

// The core: compiles for every target, the browser's included; no threads, and files only as bytes.
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod feed;
pub mod gpu;
pub mod layer_check;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod objective;
pub mod onnx;
pub mod optimizer;
pub mod plot;
pub mod reference;
pub mod run;
pub mod tower;
pub mod trained;
pub mod trainer;
pub mod twin;

// The command line's host: files, folders, threads, the terminal (src/main.rs is its entry point).
// The page's host is the crate in web/.
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod compare;
#[cfg(not(target_arch = "wasm32"))]
pub mod dedup;
#[cfg(not(target_arch = "wasm32"))]
pub mod embed;
#[cfg(not(target_arch = "wasm32"))]
pub mod evaluate;
#[cfg(not(target_arch = "wasm32"))]
pub mod gallery;
#[cfg(not(target_arch = "wasm32"))]
pub mod inputs;
#[cfg(not(target_arch = "wasm32"))]
pub mod outputs;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;
#[cfg(not(target_arch = "wasm32"))]
pub mod search;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
#[cfg(not(target_arch = "wasm32"))]
pub mod summary;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
