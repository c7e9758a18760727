//! `bn`: batch normalisation over the channels (the last axis), as Keras' BatchNormalization with
//! momentum 0.99 and epsilon 1e-3: in training, each branch of the twin's batch is normalised with its
//! own batch statistics, as the tutorial's Keras model calls the tower once per branch, and the moving
//! mean and variance move once per branch, first branch first; at inference the moving averages
//! normalise. gamma and beta are trained (checkpoint names `gamma`, `beta`); the moving averages are
//! the layer's state (`moving_mean`, `moving_variance`). A step run in micro-batches normalises each
//! micro-batch's branches with their own statistics, and moves the averages once per micro-batch and
//! branch. Shader: `bn.wgsl`.

use super::{Backward, Init, Io, Layer, LayerKind, Pass, PlanContext, Shape, TensorSpec};
use super::conv2d::quads;
use crate::gpu::{Dispatch, Kernel, Kernels};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

/// Keras' defaults.
pub const MOMENTUM: f64 = 0.99;
pub const EPSILON: f64 = 1e-3;

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm;

impl LayerKind for BatchNorm {
    const NAME: &'static str = "bn";
    type Dims = BatchNormDims;

    fn parse(args: &Args) -> Result<BatchNorm, SpecError> {
        args.expect_count(0, 0, "bn without arguments (momentum 0.99, epsilon 1e-3, as Keras)")?;
        Ok(BatchNorm)
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "bn")
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<BatchNormDims, String> {
        Ok(BatchNormDims { batch: at.batch, shape: input })
    }
}

/// Batch normalisation of `batch` activations of `shape` over its channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNormDims {
    pub batch: usize,
    pub shape: Shape,
}

impl BatchNormDims {
    pub fn channels(&self) -> usize {
        self.shape.c
    }
    /// Positions per image (1 for a flat vector).
    pub fn positions(&self) -> usize {
        self.shape.h * self.shape.w
    }
    pub fn count(&self) -> usize {
        self.batch * self.shape.len()
    }
    /// Runs each branch's positions are summed in, about 128 positions each.
    fn chunks(&self, branches: usize) -> usize {
        (self.batch / branches * self.positions()).div_ceil(128).clamp(1, 1024)
    }
}

/// Each branch's statistics per channel, in f64: mean and variance over its images and positions.
fn branch_moments<T: Real>(x: &[T], d: &BatchNormDims, branches: usize) -> Vec<(Vec<f64>, Vec<f64>)> {
    let (c, per_branch) = (d.channels(), d.batch / branches * d.positions());
    (0..branches)
        .map(|b| {
            let values = |ch: usize| (0..per_branch).map(move |p| x[(b * per_branch + p) * c + ch].to_f64());
            let mean: Vec<f64> = (0..c).map(|ch| values(ch).sum::<f64>() / per_branch as f64).collect();
            let variance = (0..c).map(|ch| values(ch).map(|v| (v - mean[ch]) * (v - mean[ch])).sum::<f64>() / per_branch as f64).collect();
            (mean, variance)
        })
        .collect()
}

/// Per branch and channel, the statistics that normalise: (mean, 1 / sqrt(variance + epsilon)), from
/// the batch in training and from the moving averages otherwise.
fn normalisers<T: Real>(x: &[T], state: &[T], d: &BatchNormDims, pass: &Pass) -> Vec<Vec<(T, T)>> {
    let c = d.channels();
    let rstd = |variance: T| T::from_f64(1.0) / (variance + T::from_f64(EPSILON)).sqrt();
    if pass.training {
        branch_moments(x, d, pass.branches)
            .into_iter()
            .map(|(mean, variance)| (0..c).map(|ch| (T::from_f64(mean[ch]), rstd(T::from_f64(variance[ch])))).collect())
            .collect()
    } else {
        vec![(0..c).map(|ch| (state[ch], rstd(state[c + ch]))).collect(); pass.branches]
    }
}

impl Layer for BatchNormDims {
    const KERNELS: &'static [Kernel] = &[BN_SUM_X, BN_MEAN, BN_SUM_SQUARES, BN_FINISH, BN_APPLY, BN_GRAD_SUMS, BN_GRAD_REDUCE, BN_BACKWARD_INPUT, BN_GRADIENT, BN_APPLY4, BN_BACKWARD_INPUT4, BN_SUM_X4, BN_SUM_SQUARES4, BN_GRAD_SUMS4];

    fn output(&self) -> Shape {
        self.shape
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn params(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::new("gamma", vec![self.channels()], Init::Ones), TensorSpec::new("beta", vec![self.channels()], Init::Zeros)]
    }
    fn state(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::new("moving_mean", vec![self.channels()], Init::Zeros), TensorSpec::new("moving_variance", vec![self.channels()], Init::Ones)]
    }
    /// y = x * inv + (beta - mean * inv), inv = gamma / sqrt(variance + epsilon), per branch.
    fn forward<T: Real>(&self, x: &[T], params: &[T], state: &[T], pass: &Pass) -> Vec<T> {
        let c = self.channels();
        let per_branch = self.batch / pass.branches * self.positions() * c;
        let norms = normalisers(x, state, self, pass);
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let (mean, rstd) = norms[i / per_branch][i % c];
                let inv = rstd * params[i % c];
                v * inv + (params[c + i % c] - mean * inv)
            })
            .collect()
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        let c = self.channels();
        let per_branch = self.batch / b.pass.branches * self.positions();
        let norms = normalisers(b.x, b.state, self, &b.pass);
        let n = per_branch as f64;
        let (mut dgamma, mut dbeta) = (vec![0.0f64; c], vec![0.0f64; c]);
        let mut dx = vec![T::zero(); if b.need_dx { b.x.len() } else { 0 }];
        for (branch, norm) in norms.iter().enumerate() {
            let (mut sum_dy, mut sum_dy_xhat) = (vec![0.0f64; c], vec![0.0f64; c]);
            let range = branch * per_branch * c..(branch + 1) * per_branch * c;
            for i in range.clone() {
                let (mean, rstd) = norm[i % c];
                sum_dy[i % c] += b.dy[i].to_f64();
                sum_dy_xhat[i % c] += b.dy[i].to_f64() * ((b.x[i] - mean) * rstd).to_f64();
            }
            for ch in 0..c {
                dgamma[ch] += sum_dy_xhat[ch];
                dbeta[ch] += sum_dy[ch];
            }
            if b.need_dx {
                for i in range {
                    let (mean, rstd) = norm[i % c];
                    let inv = rstd * b.params[i % c];
                    dx[i] = if b.pass.training {
                        let xhat = ((b.x[i] - mean) * rstd).to_f64();
                        inv * T::from_f64(b.dy[i].to_f64() - sum_dy[i % c] / n - xhat * sum_dy_xhat[i % c] / n)
                    } else {
                        inv * b.dy[i]
                    };
                }
            }
        }
        (dx, dgamma.into_iter().chain(dbeta).map(T::from_f64).collect())
    }
    /// m = m * momentum + statistic * (1 - momentum), once per branch in order, as Keras rounds it.
    fn update_state<T: Real>(&self, x: &[T], state: &mut [T], pass: &Pass) {
        if !pass.training {
            return;
        }
        let c = self.channels();
        let (momentum, rest) = (T::from_f64(MOMENTUM), T::from_f64(1.0 - MOMENTUM));
        for (mean, variance) in branch_moments(x, self, pass.branches) {
            for ch in 0..c {
                state[ch] = state[ch] * momentum + T::from_f64(mean[ch]) * rest;
                state[c + ch] = state[c + ch] * momentum + T::from_f64(variance[ch]) * rest;
            }
        }
    }
    /// The statistics, the chunks' partial sums and the backward's sums (bn.wgsl's layout).
    fn aux_len(&self) -> usize {
        let (b, c) = (2, self.channels());
        4 * b * c + 2 * b * self.chunks(b).max(self.chunks(1)) * c + 2 * b * c
    }
    fn inference_aux_len(&self) -> usize {
        self.aux_len()
    }
    /// A slot of gamma's and beta's gradient sums per pair of the whole batch and branch.
    fn partials_len(&self, branches: usize, whole_batch: usize) -> usize {
        whole_batch / branches * branches * 2 * self.channels()
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        kernels.bn_forward(self, io)
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        kernels.bn_backward(self, io)
    }
    fn record_gradient(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        vec![kernels.bn_gradient(self, io)]
    }
}

// The GPU launches.

const SHADER: &str = include_str!("../../shaders/bn.wgsl");
const fn bn_kernel(entry: &'static str) -> Kernel {
    Kernel::new("bn", &[("bn", SHADER)], entry)
}
pub const BN_SUM_X: Kernel = bn_kernel("bn_sum_x");
pub const BN_MEAN: Kernel = bn_kernel("bn_mean");
pub const BN_SUM_SQUARES: Kernel = bn_kernel("bn_sum_squares");
pub const BN_FINISH: Kernel = bn_kernel("bn_finish");
pub const BN_APPLY: Kernel = bn_kernel("bn_apply");
pub const BN_GRAD_SUMS: Kernel = bn_kernel("bn_grad_sums");
pub const BN_GRAD_REDUCE: Kernel = bn_kernel("bn_grad_reduce");
pub const BN_BACKWARD_INPUT: Kernel = bn_kernel("bn_backward_input");
pub const BN_GRADIENT: Kernel = bn_kernel("bn_gradient");
/// bn_apply and bn_backward_input a vec4 a lane, for channel counts in multiples of 4 (the statistics'
/// rows then start on whole vec4s too): a CPU adapter turns each load into a loop over the lanes, so
/// one vec4 load in place of four scalar ones is most of their time saved.
pub const BN_APPLY4: Kernel = bn_kernel("bn_apply4");
pub const BN_BACKWARD_INPUT4: Kernel = bn_kernel("bn_backward_input4");
/// The chunked sums four channels a lane, for channel counts in multiples of 4.
pub const BN_SUM_X4: Kernel = bn_kernel("bn_sum_x4");
pub const BN_SUM_SQUARES4: Kernel = bn_kernel("bn_sum_squares4");
pub const BN_GRAD_SUMS4: Kernel = bn_kernel("bn_grad_sums4");

fn constants(d: &BatchNormDims, io: &Io) -> Vec<(&'static str, f64)> {
    let f = |v: usize| v as f64;
    vec![
        ("BATCH", f(d.batch)),
        ("POSITIONS", f(d.positions())),
        ("CHANNELS", f(d.channels())),
        ("BRANCHES", f(io.branches)),
        ("CHUNKS", f(d.chunks(io.branches))),
        ("EPSILON", EPSILON as f32 as f64),
        ("MOMENTUM", MOMENTUM as f32 as f64),
        ("ONE_MINUS_MOMENTUM", (1.0 - MOMENTUM) as f32 as f64),
        ("WHOLE_PAIRS", f(io.whole_batch / io.branches)),
    ]
}

impl Kernels {
    /// Training: the branches' statistics, the moving averages moved, then the normalisation; at
    /// inference (the step's `training` 0) the sums do nothing and the moving averages normalise.
    pub fn bn_forward(&self, d: &BatchNormDims, io: &Io) -> Vec<Dispatch> {
        let c = constants(d, io);
        let aux = io.aux.clone().expect("bn is given its statistics' buffer");
        let state = io.state.clone().expect("bn is given its moving averages");
        let (chunk_lanes, channel_lanes) = (io.branches * d.chunks(io.branches) * d.channels(), io.branches * d.channels());
        let n = d.count();
        let fours = d.channels().is_multiple_of(4);
        let sums = |(kernel, kernel4): (Kernel, Kernel)| {
            if fours {
                self.dispatch(kernel4, &c, &[(11, quads(&io.x)), (7, aux.clone()), (9, io.step.clone())], chunk_lanes / 4)
            } else {
                self.dispatch(kernel, &c, &[(1, io.x.clone()), (7, aux.clone()), (9, io.step.clone())], chunk_lanes)
            }
        };
        vec![
            sums((BN_SUM_X, BN_SUM_X4)).with_work(n, n),
            self.dispatch(BN_MEAN, &c, &[(7, aux.clone()), (9, io.step.clone())], channel_lanes),
            sums((BN_SUM_SQUARES, BN_SUM_SQUARES4)).with_work(3 * n, n),
            self.dispatch(BN_FINISH, &c, &[(5, io.params()), (6, state), (7, aux.clone()), (9, io.step.clone())], d.channels()),
            if fours {
                self.dispatch(BN_APPLY4, &c, &[(11, quads(&io.x)), (12, quads(&io.y)), (15, quads(&aux))], n / 4)
            } else {
                self.dispatch(BN_APPLY, &c, &[(1, io.x.clone()), (2, io.y.clone()), (7, aux)], n)
            }
            .with_work(2 * n, 2 * n),
        ]
    }

    /// The sums of dy and dy * xhat, gamma's and beta's gradient slot, and the input's gradient.
    pub fn bn_backward(&self, d: &BatchNormDims, io: &Io) -> Vec<Dispatch> {
        let c = constants(d, io);
        let aux = io.aux.clone().expect("bn is given its statistics' buffer");
        let n = d.count();
        let chunk_lanes = io.branches * d.chunks(io.branches) * d.channels();
        let grad_sums = if d.channels().is_multiple_of(4) {
            self.dispatch(BN_GRAD_SUMS4, &c, &[(11, quads(&io.x)), (13, quads(&io.dy)), (7, aux.clone())], chunk_lanes / 4)
        } else {
            self.dispatch(BN_GRAD_SUMS, &c, &[(1, io.x.clone()), (3, io.dy.clone()), (7, aux.clone())], chunk_lanes)
        };
        let mut dispatches = vec![
            grad_sums.with_work(4 * n, 2 * n),
            self.dispatch(BN_GRAD_REDUCE, &c, &[(7, aux.clone()), (8, io.partials()), (9, io.step.clone())], io.branches * d.channels()),
        ];
        if let Some(dx) = &io.dx {
            let input = if d.channels().is_multiple_of(4) {
                let bindings = [(11, quads(&io.x)), (13, quads(&io.dy)), (14, quads(dx)), (15, quads(&aux))];
                self.dispatch(BN_BACKWARD_INPUT4, &c, &bindings, n / 4)
            } else {
                self.dispatch(BN_BACKWARD_INPUT, &c, &[(1, io.x.clone()), (3, io.dy.clone()), (4, dx.clone()), (7, aux)], n)
            };
            dispatches.push(input.with_work(7 * n, 3 * n));
        }
        dispatches
    }

    /// gamma's and beta's gradients from the micro-batches' slots.
    pub fn bn_gradient(&self, d: &BatchNormDims, io: &Io) -> Dispatch {
        self.dispatch(BN_GRADIENT, &constants(d, io), &[(8, io.partials()), (10, io.grads())], 2 * d.channels())
    }
}
