//! gpu-siamese: Siamese (twin) convolutional networks trained with WGSL compute shaders through wgpu.
//!
//! - [`reference`]: the CPU reference, plain loops that read like the spec.
//! - [`gpu`]: the adapter, the device and the kernels (one pipeline per WGSL entry point, built once).
//! - [`model`]: the tower's spec, its layout for an input and batch, its parameters.
//! - [`twin`]: the whole training step recorded as GPU dispatches, mirroring `reference::TwinReference`.

pub mod data;
pub mod dims;
pub mod gpu;
pub mod model;
pub mod reference;
pub mod twin;
pub mod synthetic;
pub mod metrics;
pub mod checkpoint;
pub mod train;
