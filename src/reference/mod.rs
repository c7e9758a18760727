//! The CPU reference: every operation of the twin network as plain loops, forward and backward, under
//! the same names as the WGSL kernels in `shaders/`. It is the specification the GPU is tested against,
//! so it is written to be read, not to be fast. Every function is generic over [`Real`] so the same code
//! runs in f32 (to compare with the GPU) and in f64 (to check its gradients by finite differences).

mod adam;
mod batch_loss;
mod contrastive;
mod conv2d;
mod dense;
mod distance;
mod dropout;
mod gap;
mod gather;
mod maxpool;
mod twin;

pub use adam::adam_update;
pub use contrastive::{contrastive_backward, contrastive_forward};
pub use conv2d::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward};
pub use dense::{dense_backward_input, dense_backward_weight, dense_forward};
pub use distance::{distance_backward, distance_forward};
pub use dropout::{dropout_backward, dropout_forward, dropout_hash, dropout_keeps, pcg_hash};
pub use gap::{gap_backward, gap_forward};
pub use batch_loss::*;
pub use gather::{augment_draw, augment_image, byte_value, gather_pairs, AugmentDraw};
pub use maxpool::{maxpool2_backward, maxpool2_forward};
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

/// The gradient reaching a pre-activation: with a fused ReLU it is masked where the output is not
/// positive (ReLU's derivative at 0 is 0, as in TensorFlow).
fn grad_z<T: Real>(dy: T, y: T, relu: bool) -> T {
    if relu && y <= T::zero() {
        T::zero()
    } else {
        dy
    }
}
