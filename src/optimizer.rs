//! The optimiser: Adam in Keras 3's form, its hyper-parameters and the step size of each update.

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
