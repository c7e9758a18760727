//! `dense(UNITS[, relu|linear])`: a fully connected layer, y = act(x W + b), Keras' Dense (default
//! linear): kernel [in, out], then the bias. It takes a flat input (after gap or another dense).
//! On the GPU it is a 1x1 convolution of 1x1 images, with the same parameter layout, computed by the
//! convolution engine (`conv2d_gemm.wgsl`).

use super::{activation_name, grad_z, parse_activation, Backward, Init, Io, Layer, LayerKind, Pass, PlanContext, Shape, TensorSpec};
use super::conv2d::{Conv2dDims, Padding};
use crate::gpu::{Dispatch, Kernel, Kernels};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub units: usize,
    pub relu: bool,
}

impl LayerKind for Dense {
    const NAME: &'static str = "dense";
    type Dims = DenseDims;

    fn parse(args: &Args) -> Result<Dense, SpecError> {
        args.expect_count(1, 2, "dense(UNITS[, relu|linear])")?;
        let units = args.positive(0, "the number of units")?;
        let relu = if args.len() > 1 { parse_activation(args, 1)? } else { false };
        Ok(Dense { units, relu })
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.relu {
            write!(f, "dense({},{})", self.units, activation_name(self.relu))
        } else {
            write!(f, "dense({})", self.units)
        }
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<DenseDims, String> {
        if !input.flat {
            return Err("a dense layer needs a flat input: put gap before it".into());
        }
        Ok(DenseDims { batch: at.batch, in_dim: input.c, out_dim: self.units, relu: self.relu })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseDims {
    pub batch: usize,
    pub in_dim: usize,
    pub out_dim: usize,
    pub relu: bool,
}

impl DenseDims {
    /// Kernel [in_dim, out_dim].
    pub fn kernel_len(&self) -> usize {
        self.in_dim * self.out_dim
    }
    /// Kernel then bias, the layer's parameter region.
    pub fn param_len(&self) -> usize {
        self.kernel_len() + self.out_dim
    }

    /// The layer as the 1x1 convolution of 1x1 images it is: the same sums, the same parameters.
    pub fn as_conv(&self) -> Conv2dDims {
        Conv2dDims {
            stride: 1,
            batch: self.batch,
            in_h: 1,
            in_w: 1,
            in_c: self.in_dim,
            out_c: self.out_dim,
            kernel_h: 1,
            kernel_w: 1,
            padding: Padding::Valid,
            relu: self.relu,
        }
    }
}

impl Layer for DenseDims {
    const KERNELS: &'static [Kernel] = &[];

    fn output(&self) -> Shape {
        Shape::vector(self.out_dim)
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn params(&self) -> Vec<TensorSpec> {
        vec![
            TensorSpec::new("kernel", vec![self.in_dim, self.out_dim], Init::GlorotUniform),
            TensorSpec::new("bias", vec![self.out_dim], Init::Zeros),
        ]
    }
    fn forward<T: Real>(&self, x: &[T], params: &[T], _state: &[T], _pass: &Pass) -> Vec<T> {
        dense_forward(x, params, self)
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        let dparams = dense_backward_weight(b.x, b.dy, b.y, self, b.pass.branches);
        let dx = if b.need_dx { dense_backward_input(b.dy, b.y, b.params, self) } else { Vec::new() };
        (dx, dparams)
    }
    fn aux_len(&self) -> usize {
        self.as_conv().aux_len()
    }
    fn partials_len(&self, branches: usize, whole_batch: usize) -> usize {
        self.as_conv().partials_len(branches, whole_batch)
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        self.as_conv().record_forward(kernels, &Io { exact: false, ..io.clone() })
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        self.as_conv().record_backward(kernels, io)
    }
    fn record_gradient(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        self.as_conv().record_gradient(kernels, io)
    }
}

// The CPU reference.

/// y[n, o] = act(sum over i of x[n, i] * W[i, o] + b[o]).  `wb` is the kernel [in, out] then the bias.
pub fn dense_forward<T: Real>(x: &[T], wb: &[T], d: &DenseDims) -> Vec<T> {
    let mut y = vec![T::zero(); d.batch * d.out_dim];
    for n in 0..d.batch {
        for o in 0..d.out_dim {
            let mut acc = T::zero();
            for i in 0..d.in_dim {
                acc = x[n * d.in_dim + i].mul_add(wb[i * d.out_dim + o], acc);
            }
            acc += wb[d.kernel_len() + o];
            if d.relu {
                acc = acc.max(T::zero());
            }
            y[n * d.out_dim + o] = acc;
        }
    }
    y
}

/// dx[n, i] = sum over o of dz[n, o] * W[i, o]
pub fn dense_backward_input<T: Real>(dy: &[T], y: &[T], wb: &[T], d: &DenseDims) -> Vec<T> {
    let mut dx = vec![T::zero(); d.batch * d.in_dim];
    for n in 0..d.batch {
        for i in 0..d.in_dim {
            let mut acc = T::zero();
            for o in 0..d.out_dim {
                let k = n * d.out_dim + o;
                acc = grad_z(dy[k], y[k], d.relu).mul_add(wb[i * d.out_dim + o], acc);
            }
            dx[n * d.in_dim + i] = acc;
        }
    }
    dx
}

/// dW[i, o] = sum over n of x[n, i] * dz[n, o], then db[o] = sum over n of dz[n, o]; each of the
/// `branches` equal parts of the batch is summed on its own, then the parts are added. Accumulated in
/// f64, like the convolution's weight gradient.
pub fn dense_backward_weight<T: Real>(x: &[T], dy: &[T], y: &[T], d: &DenseDims, branches: usize) -> Vec<T> {
    let rows = d.batch / branches;
    let mut total = vec![0.0f64; d.param_len()];
    for branch in 0..branches {
        let mut dwb = vec![0.0f64; d.param_len()];
        for n in branch * rows..(branch + 1) * rows {
            for o in 0..d.out_dim {
                let k = n * d.out_dim + o;
                let g = grad_z(dy[k], y[k], d.relu).to_f64();
                for i in 0..d.in_dim {
                    dwb[i * d.out_dim + o] += x[n * d.in_dim + i].to_f64() * g;
                }
                dwb[d.kernel_len() + o] += g;
            }
        }
        for (t, v) in total.iter_mut().zip(dwb) {
            *t += v;
        }
    }
    total.into_iter().map(T::from_f64).collect()
}
