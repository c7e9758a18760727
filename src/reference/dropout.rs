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
/// The element index is hashed before it meets the step's key: one PCG round over `element ^ key`
/// leaves elements a fixed stride apart slightly alike (the keep count of one channel over a 14x14 map,
/// elements 128 apart, varied 2% more than independent draws would), a second round removes that.
pub fn dropout_hash(seed: u32, step: u32, element: u32) -> u32 {
    pcg_hash(pcg_hash(element) ^ pcg_hash(step ^ pcg_hash(seed)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The masks behave as independent draws where it matters to the tutorial's tower: over the
    /// dropout input of a training step (128 images of 14x14x128, NHWC), each channel's keep count over
    /// its 196 positions varies as a binomial count does, and one step's mask tells nothing of the
    /// next. A single hash round over `element ^ key` failed the first (variance 48.1 for 47.04).
    #[test]
    fn masks_are_independent_draws() {
        let (images, positions, channels) = (128usize, 14 * 14, 128usize);
        let d = DropoutDims { count: images * positions * channels, rate: 0.4, seed: 0 };
        let (keep, steps) = (1.0 - d.rate as f64, 20u32);
        let binomial_var = positions as f64 * keep * (1.0 - keep);
        for seed in [1u32, 0xdead_beef] {
            let d = DropoutDims { seed, ..d };
            let (mut variance_sum, mut kept_sum, mut both_sum) = (0.0, 0usize, 0usize);
            let mut previous: Vec<bool> = Vec::new();
            for step in 1..=steps {
                let mask: Vec<bool> = (0..d.count).map(|i| dropout_keeps(&d, step, i)).collect();
                let mut counts = vec![0u32; images * channels];
                for (i, &k) in mask.iter().enumerate() {
                    let (image, channel) = (i / (positions * channels), i % channels);
                    counts[image * channels + channel] += k as u32;
                }
                let mean = counts.iter().map(|&c| c as f64).sum::<f64>() / counts.len() as f64;
                variance_sum += counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / counts.len() as f64;
                kept_sum += mask.iter().filter(|&&k| k).count();
                if !previous.is_empty() {
                    both_sum += mask.iter().zip(&previous).filter(|(a, b)| **a && **b).count();
                }
                previous = mask;
            }
            // Each step's variance estimate has a standard error of about var * sqrt(2 / 16383) = 0.52;
            // the mean of 20 about 0.12. Four of those: chance does not fail it, a 2% excess does.
            let variance = variance_sum / steps as f64;
            assert!((variance - binomial_var).abs() < 0.47, "seed {seed}: keep-count variance {variance:.3}, binomial {binomial_var:.3}");
            let kept = kept_sum as f64 / (steps as f64 * d.count as f64);
            assert!((kept - keep).abs() < 1e-3, "seed {seed}: kept {kept}");
            let both = both_sum as f64 / ((steps - 1) as f64 * d.count as f64);
            assert!((both - keep * keep).abs() < 1e-3, "seed {seed}: kept in consecutive steps {both}, independent {}", keep * keep);
        }
    }
}
