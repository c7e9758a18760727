use super::Real;
use crate::optimizer::AdamConfig;

/// Adam update `t` (1-based) in Keras 3's form:
///   m += (g - m) * (1 - beta1);  v += (g^2 - v) * (1 - beta2);  w -= (m * alpha) / (sqrt(v) + epsilon)
/// with alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t) as Keras computes it in f32.
pub fn adam_update<T: Real>(w: &mut [T], g: &[T], m: &mut [T], v: &mut [T], config: &AdamConfig, t: u64) {
    let alpha = T::from_f64(config.alpha(t) as f64);
    let one_minus_beta1 = T::from_f64(config.one_minus_beta1() as f64);
    let one_minus_beta2 = T::from_f64(config.one_minus_beta2() as f64);
    let epsilon = T::from_f64(config.epsilon as f32 as f64);
    for i in 0..w.len() {
        m[i] += (g[i] - m[i]) * one_minus_beta1;
        v[i] += (g[i] * g[i] - v[i]) * one_minus_beta2;
        w[i] = w[i] - (m[i] * alpha) / (v[i].sqrt() + epsilon);
    }
}
