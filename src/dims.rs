//! Settings shared by the CPU reference and the GPU kernels outside the layers (each layer's shape is
//! in its module): the distance's floor, the objective, the augmentation, Adam's hyper-parameters.

/// Keras' `K.epsilon()`, the floor of the squared distance.
pub const DISTANCE_EPSILON: f32 = 1e-7;

/// What a training step minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// The tutorial's: the contrastive loss of each pair, a batch's first images against its second.
    Pairs,
    /// The contrastive loss over every pair of a class-balanced batch, rows in classes of `k`.
    BatchContrastive { k: usize },
    /// The triplet loss over every triplet of a class-balanced batch, rows in classes of `k`.
    BatchTriplet { k: usize },
}

/// Random changes to each training image, drawn afresh every step (evaluation sees the images as they
/// are): a horizontal flip, a shift of up to `shift` pixels each way (edges repeated), a contrast
/// factor in [1 - contrast, 1 + contrast] about mid-grey, then a brightness offset in
/// [-brightness, brightness], the result kept in [0, 1]. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    pub flip: bool,
    pub shift: u32,
    pub brightness: f32,
    pub contrast: f32,
}

impl Augment {
    pub fn is_off(&self) -> bool {
        !self.flip && self.shift == 0 && self.brightness == 0.0 && self.contrast == 0.0
    }
}

/// Adam's hyper-parameters; the defaults are Keras'. Kept in double precision, as Keras keeps them in
/// Python floats, and rounded to f32 exactly where Keras casts them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { learning_rate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }
    }
}

impl AdamConfig {
    /// The step size of update `t` (1-based), in f32 as Keras computes it:
    /// lr * sqrt(1 - beta2^t) / (1 - beta1^t).
    pub fn alpha(&self, t: u64) -> f32 {
        let t = t as f32;
        let beta1_power = (self.beta1 as f32).powf(t);
        let beta2_power = (self.beta2 as f32).powf(t);
        self.learning_rate as f32 * (1.0 - beta2_power).sqrt() / (1.0 - beta1_power)
    }
    /// 1 - beta1, taken in double precision and rounded once, as Python computes it before Keras casts it.
    pub fn one_minus_beta1(&self) -> f32 {
        (1.0 - self.beta1) as f32
    }
    pub fn one_minus_beta2(&self) -> f32 {
        (1.0 - self.beta2) as f32
    }
}
