//! `dropout(RATE)`: inverted dropout. In training each element is kept with probability 1 - rate and
//! scaled by 1 / (1 - rate); at evaluation it passes through. The mask is not stored: it is a
//! counter-based hash of (layer seed, training step, element), so the backward pass, the CPU reference
//! and a resumed run all draw the same mask without any state. Shader: `dropout.wgsl`.

use super::{Backward, Io, Layer, LayerKind, Pass, PlanContext, Shape};
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::{Args, SpecError};
use crate::reference::{pcg_hash, Real};
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    pub rate: f32,
}

impl LayerKind for Dropout {
    const NAME: &'static str = "dropout";
    type Dims = DropoutDims;

    fn parse(args: &Args) -> Result<Dropout, SpecError> {
        args.expect_count(1, 1, "dropout(RATE)")?;
        match args.get(0).parse::<f32>() {
            Ok(rate) if (0.0..1.0).contains(&rate) => Ok(Dropout { rate }),
            _ => Err(args.error_at(0, "the dropout rate must be a number in [0, 1)")),
        }
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "dropout({})", self.rate)
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<DropoutDims, String> {
        Ok(DropoutDims { batch: at.batch, shape: input, rate: self.rate, seed: dropout_seed(at.seed, at.index) })
    }
}

/// The seed of the dropout layer at `layer_index`, derived from the run's seed.
pub fn dropout_seed(seed: u64, layer_index: usize) -> u32 {
    pcg_hash((seed as u32) ^ pcg_hash((seed >> 32) as u32 ^ pcg_hash(layer_index as u32)))
}

/// Dropout over `batch` activations of `shape`: its rate, and the seed its masks are drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutDims {
    pub batch: usize,
    pub shape: Shape,
    pub rate: f32,
    pub seed: u32,
}

impl DropoutDims {
    /// Elements over the batch: the masks' element indices run over these.
    pub fn count(&self) -> usize {
        self.batch * self.shape.len()
    }
    /// An element is kept when its 32-bit hash is >= this: round(rate * 2^32), so P(keep) = 1 - rate.
    pub fn threshold(&self) -> u32 {
        (self.rate as f64 * 4294967296.0).round().min(u32::MAX as f64) as u32
    }
    /// Kept elements are scaled by 1 / (1 - rate), in f32 as Keras computes it.
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.rate)
    }
}

impl Layer for DropoutDims {
    const KERNELS: &'static [Kernel] = &[DROPOUT_FORWARD, DROPOUT_BACKWARD];

    fn output(&self) -> Shape {
        self.shape
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn forward<T: Real>(&self, x: &[T], _params: &[T], _state: &[T], pass: &Pass) -> Vec<T> {
        dropout_forward(x, self, pass.step, pass.training)
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        (if b.need_dx { dropout_backward(b.dy, self, b.pass.step, b.pass.training) } else { Vec::new() }, Vec::new())
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        vec![kernels.dropout_forward(self, io.step.clone(), io.x.clone(), io.y.clone())]
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        io.dx.iter().map(|dx| kernels.dropout_backward(self, io.step.clone(), io.dy.clone(), dx.clone())).collect()
    }
}

// The CPU reference.

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

// The GPU launches.

const SHADER: &str = include_str!("../../shaders/dropout.wgsl");
pub const DROPOUT_FORWARD: Kernel = Kernel::new("dropout", &[("dropout", SHADER)], "dropout_forward");
pub const DROPOUT_BACKWARD: Kernel = Kernel::new("dropout", &[("dropout", SHADER)], "dropout_backward");

fn dropout_constants(d: &DropoutDims) -> [(&'static str, f64); 5] {
    [
        ("COUNT", d.count() as f64),
        ("PER_IMAGE", d.shape.len() as f64),
        ("SEED", d.seed as f64),
        ("THRESHOLD", d.threshold() as f64),
        ("SCALE", d.scale() as f64),
    ]
}

impl Kernels {
    pub fn dropout_forward(&self, d: &DropoutDims, step: Region, x: Region, y: Region) -> Dispatch {
        self.dispatch(DROPOUT_FORWARD, &dropout_constants(d), &[(1, step), (2, x), (3, y)], d.count())
            .with_work(d.count(), 2 * d.count())
    }

    pub fn dropout_backward(&self, d: &DropoutDims, step: Region, dy: Region, dx: Region) -> Dispatch {
        self.dispatch(DROPOUT_BACKWARD, &dropout_constants(d), &[(1, step), (4, dy), (5, dx)], d.count())
            .with_work(d.count(), 2 * d.count())
    }
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
        let d = DropoutDims { batch: images, shape: Shape::map(14, 14, channels), rate: 0.4, seed: 0 };
        let (keep, steps) = (1.0 - d.rate as f64, 20u32);
        let binomial_var = positions as f64 * keep * (1.0 - keep);
        for seed in [1u32, 0xdead_beef] {
            let d = DropoutDims { seed, ..d };
            let (mut variance_sum, mut kept_sum, mut both_sum) = (0.0, 0usize, 0usize);
            let mut previous: Vec<bool> = Vec::new();
            for step in 1..=steps {
                let mask: Vec<bool> = (0..d.count()).map(|i| dropout_keeps(&d, step, i)).collect();
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
            let kept = kept_sum as f64 / (steps as f64 * d.count() as f64);
            assert!((kept - keep).abs() < 1e-3, "seed {seed}: kept {kept}");
            let both = both_sum as f64 / ((steps - 1) as f64 * d.count() as f64);
            assert!((both - keep * keep).abs() < 1e-3, "seed {seed}: kept in consecutive steps {both}, independent {}", keep * keep);
        }
    }

    #[test]
    fn dropout_layers_get_distinct_seeds() {
        assert_ne!(dropout_seed(0, 2), dropout_seed(0, 5));
        assert_ne!(dropout_seed(0, 2), dropout_seed(1, 2));
    }
}
