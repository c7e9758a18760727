//! The CPU reference: every operation of the twin network as plain loops, forward and backward, under
//! the same names as the WGSL kernels in `shaders/`. It is the specification the GPU is tested against,
//! so it is written to be read, not to be fast. Every function is generic over [`Real`] so the same code
//! runs in f32 (to compare with the GPU) and in f64 (to check its gradients by finite differences).
//! Each layer's reference lives in its module under `crate::layers`; here are the rest of the twin
//! (gathering a batch, the distances, the losses, Adam) and the whole training step.

mod adam;
mod batch_loss;
mod contrastive;
mod distance;
mod gather;
mod search;
mod twin;

pub use adam::adam_update;
pub use batch_loss::*;
pub use contrastive::{contrastive_backward, contrastive_forward};
pub use distance::{distance_backward, distance_forward};
pub use gather::{augment_draw, augment_image, byte_value, gather_pairs, AugmentDraw};
pub use search::knn;
pub use twin::{TwinBatch, TwinReference, TwinTrace};

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// The two floating-point types the reference runs in.
pub trait Real:
    Copy
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + Send
    + Sync
    + 'static
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn sqrt(self) -> Self;
    /// self * a + b with one rounding (a fused multiply-add).
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn max(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
}

/// Converts a slice between the reference's float types.
pub fn convert<A: Real, B: Real>(values: &[A]) -> Vec<B> {
    values.iter().map(|&v| B::from_f64(v.to_f64())).collect()
}

/// PCG-style integer hash (Jarzynski and Olano, "Hash Functions for GPU Rendering", 2020), in wrapping
/// u32 arithmetic exactly as WGSL does it (`pcg_hash` in shaders/common.wgsl).
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}
