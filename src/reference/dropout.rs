use super::Real;
use crate::dims::DropoutDims;

/// PCG-style integer hash (Jarzynski and Olano, "Hash Functions for GPU Rendering", 2020), in wrapping
/// u32 arithmetic exactly as WGSL does it.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The counter-based hash that decides dropout: a function of (layer seed, training step, element).
pub fn dropout_hash(seed: u32, step: u32, element: u32) -> u32 {
    pcg_hash(element ^ pcg_hash(step ^ pcg_hash(seed)))
}

/// Whether element `i` is kept at training step `step`.
pub fn dropout_keeps(d: &DropoutDims, step: u32, i: usize) -> bool {
    dropout_hash(d.seed, step, i as u32) >= d.threshold()
}

fn dropout_factor<T: Real>(d: &DropoutDims, step: u32, training: bool, i: usize) -> T {
    if !training {
        T::from_f64(1.0)
    } else if dropout_keeps(d, step, i) {
        T::from_f64(d.scale() as f64)
    } else {
        T::zero()
    }
}

/// Inverted dropout: kept elements are scaled by 1 / (1 - rate); off (identity) when not training.
pub fn dropout_forward<T: Real>(x: &[T], d: &DropoutDims, step: u32, training: bool) -> Vec<T> {
    x.iter().enumerate().map(|(i, &v)| v * dropout_factor(d, step, training, i)).collect()
}

pub fn dropout_backward<T: Real>(dy: &[T], d: &DropoutDims, step: u32, training: bool) -> Vec<T> {
    dy.iter().enumerate().map(|(i, &g)| g * dropout_factor(d, step, training, i)).collect()
}
