//! `maxpool` (or `maxpool(2)`): 2x2 max-pooling with stride 2 over NHWC; odd heights and widths are
//! floored, as in Keras, the last row or column dropped. The gradient of each window goes to its first
//! maximum in row-major order (TensorFlow's choice). Shader: `maxpool.wgsl`.

use super::{Backward, Io, Layer, LayerKind, Pass, PlanContext, Shape};
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct MaxPool;

impl LayerKind for MaxPool {
    const NAME: &'static str = "maxpool";
    type Dims = PoolDims;

    fn parse(args: &Args) -> Result<MaxPool, SpecError> {
        args.expect_count(0, 1, "maxpool or maxpool(2): only 2x2 windows with stride 2")?;
        if args.len() == 1 && args.get(0) != "2" {
            return Err(args.error_at(0, "only 2x2 max-pooling is supported"));
        }
        Ok(MaxPool)
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "maxpool")
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<PoolDims, String> {
        if input.flat || input.h < 2 || input.w < 2 {
            return Err(format!("2x2 max-pooling needs an image of at least 2x2, not {}x{}", input.h, input.w));
        }
        Ok(PoolDims { batch: at.batch, in_h: input.h, in_w: input.w, channels: input.c })
    }
}

/// 2x2 max-pooling with stride 2; odd sizes are floored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolDims {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
}

impl PoolDims {
    pub fn out_h(&self) -> usize {
        self.in_h / 2
    }
    pub fn out_w(&self) -> usize {
        self.in_w / 2
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.channels
    }
}

impl Layer for PoolDims {
    const KERNELS: &'static [Kernel] = &[MAXPOOL2_FORWARD, MAXPOOL2_BACKWARD];

    fn output(&self) -> Shape {
        Shape::map(self.out_h(), self.out_w(), self.channels)
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn forward<T: Real>(&self, x: &[T], _params: &[T], _state: &[T], _pass: &Pass) -> Vec<T> {
        maxpool2_forward(x, self)
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        (if b.need_dx { maxpool2_backward(b.dy, b.x, self) } else { Vec::new() }, Vec::new())
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        vec![kernels.maxpool2_forward(self, io.x.clone(), io.y.clone())]
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        io.dx.iter().map(|dx| kernels.maxpool2_backward(self, io.dy.clone(), io.x.clone(), dx.clone())).collect()
    }
}

// The CPU reference.

/// Index into x of the first maximum, in row-major order, of output (n, oy, ox, c)'s 2x2 window.
fn window_argmax<T: Real>(x: &[T], d: &PoolDims, n: usize, oy: usize, ox: usize, c: usize) -> usize {
    let at = |wy: usize, wx: usize| ((n * d.in_h + 2 * oy + wy) * d.in_w + 2 * ox + wx) * d.channels + c;
    let mut best = at(0, 0);
    for (wy, wx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        if x[at(wy, wx)] > x[best] {
            best = at(wy, wx);
        }
    }
    best
}

/// 2x2 max-pooling, stride 2; an odd last row/column is dropped.
pub fn maxpool2_forward<T: Real>(x: &[T], d: &PoolDims) -> Vec<T> {
    let mut y = Vec::with_capacity(d.output_len());
    for n in 0..d.batch {
        for oy in 0..d.out_h() {
            for ox in 0..d.out_w() {
                for c in 0..d.channels {
                    y.push(x[window_argmax(x, d, n, oy, ox, c)]);
                }
            }
        }
    }
    y
}

/// Each window's gradient goes to its first maximum; every other input gets zero.
pub fn maxpool2_backward<T: Real>(dy: &[T], x: &[T], d: &PoolDims) -> Vec<T> {
    let mut dx = vec![T::zero(); d.input_len()];
    let mut o = 0;
    for n in 0..d.batch {
        for oy in 0..d.out_h() {
            for ox in 0..d.out_w() {
                for c in 0..d.channels {
                    dx[window_argmax(x, d, n, oy, ox, c)] = dy[o];
                    o += 1;
                }
            }
        }
    }
    dx
}

// The GPU launches.

const SHADER: &str = include_str!("../../shaders/maxpool.wgsl");
pub const MAXPOOL2_FORWARD: Kernel = Kernel::new("maxpool", &[("maxpool", SHADER)], "maxpool2_forward");
pub const MAXPOOL2_BACKWARD: Kernel = Kernel::new("maxpool", &[("maxpool", SHADER)], "maxpool2_backward");

fn pool_constants(d: &PoolDims) -> [(&'static str, f64); 6] {
    let f = |v: usize| v as f64;
    [
        ("BATCH", f(d.batch)),
        ("IN_H", f(d.in_h)),
        ("IN_W", f(d.in_w)),
        ("CHANNELS", f(d.channels)),
        ("OUT_H", f(d.out_h())),
        ("OUT_W", f(d.out_w())),
    ]
}

impl Kernels {
    pub fn maxpool2_forward(&self, d: &PoolDims, x: Region, y: Region) -> Dispatch {
        self.dispatch(MAXPOOL2_FORWARD, &pool_constants(d), &[(1, x), (2, y)], d.output_len())
            .with_work(3 * d.output_len(), d.input_len() + d.output_len())
    }

    pub fn maxpool2_backward(&self, d: &PoolDims, dy: Region, x: Region, dx: Region) -> Dispatch {
        self.dispatch(MAXPOOL2_BACKWARD, &pool_constants(d), &[(1, x), (3, dy), (4, dx)], d.output_len())
            .with_work(3 * d.output_len(), 2 * d.input_len() + d.output_len())
    }
}
