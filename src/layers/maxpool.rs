//! `maxpool` (2x2 windows, stride 2), or `maxpool(SIZE[, STRIDE])` (SIZE x SIZE windows, stride
//! STRIDE, SIZE by default): max-pooling over NHWC with Keras' 'valid' padding, so the output is
//! floor((in - SIZE) / STRIDE) + 1 and what no window reaches is dropped. The gradient of each window goes
//! to its first maximum in row-major order (TensorFlow's choice); where windows overlap, an input adds
//! the gradients of every window it wins, in window order. Shader: `maxpool.wgsl` (2x2 windows with
//! stride 2, the common case, have kernels of their own; convs fuse them into their epilogue).

use super::{Backward, Io, Layer, LayerKind, Pass, PlanContext, Shape};
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct MaxPool {
    pub size: usize,
    pub stride: usize,
}

impl LayerKind for MaxPool {
    const NAME: &'static str = "maxpool";
    type Dims = PoolDims;

    fn parse(args: &Args) -> Result<MaxPool, SpecError> {
        args.expect_count(0, 2, "maxpool, or maxpool(SIZE[, STRIDE])")?;
        let size = if args.is_empty() { 2 } else { args.positive(0, "the window size")? };
        let stride = if args.len() > 1 { args.positive(1, "the stride")? } else { size };
        Ok(MaxPool { size, stride })
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.size, self.stride) {
            (2, 2) => write!(f, "maxpool"),
            (size, stride) if size == stride => write!(f, "maxpool({size})"),
            (size, stride) => write!(f, "maxpool({size},{stride})"),
        }
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<PoolDims, String> {
        let k = self.size;
        if input.flat || input.h < k || input.w < k {
            return Err(format!("{k}x{k} max-pooling needs an image of at least {k}x{k}, not {}x{}", input.h, input.w));
        }
        Ok(PoolDims { batch: at.batch, in_h: input.h, in_w: input.w, channels: input.c, size: k, stride: self.stride })
    }
}

/// Max-pooling with `size` x `size` windows every `stride` positions ('valid': what no window reaches
/// is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolDims {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub size: usize,
    pub stride: usize,
}

impl PoolDims {
    /// 2x2 windows with stride 2, the pooling convolutions fuse.
    pub fn two_by_two(batch: usize, in_h: usize, in_w: usize, channels: usize) -> PoolDims {
        PoolDims { batch, in_h, in_w, channels, size: 2, stride: 2 }
    }
    pub fn is_two_by_two(&self) -> bool {
        (self.size, self.stride) == (2, 2)
    }
    pub fn out_h(&self) -> usize {
        (self.in_h - self.size) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.in_w - self.size) / self.stride + 1
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.channels
    }
}

impl Layer for PoolDims {
    const KERNELS: &'static [Kernel] = &[MAXPOOL2_FORWARD, MAXPOOL2_BACKWARD, MAXPOOL_FORWARD, MAXPOOL_BACKWARD, MAXPOOL2_FORWARD4, MAXPOOL2_BACKWARD4];

    fn output(&self) -> Shape {
        Shape::map(self.out_h(), self.out_w(), self.channels)
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn forward<T: Real>(&self, x: &[T], _params: &[T], _state: &[T], _pass: &Pass) -> Vec<T> {
        maxpool_forward(x, self)
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        (if b.need_dx { maxpool_backward(b.dy, b.x, self) } else { Vec::new() }, Vec::new())
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        vec![kernels.maxpool_forward(self, io.x.clone(), io.y.clone())]
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        io.dx.iter().map(|dx| kernels.maxpool_backward(self, io.dy.clone(), io.x.clone(), dx.clone())).collect()
    }
}

// The CPU reference.

/// Index into x of the first maximum, in row-major order, of output (n, oy, ox, c)'s window.
fn window_argmax<T: Real>(x: &[T], d: &PoolDims, n: usize, oy: usize, ox: usize, c: usize) -> usize {
    let at = |wy: usize, wx: usize| ((n * d.in_h + d.stride * oy + wy) * d.in_w + d.stride * ox + wx) * d.channels + c;
    let mut best = at(0, 0);
    for wy in 0..d.size {
        for wx in 0..d.size {
            if x[at(wy, wx)] > x[best] {
                best = at(wy, wx);
            }
        }
    }
    best
}

/// Each window's largest value.
pub fn maxpool_forward<T: Real>(x: &[T], d: &PoolDims) -> Vec<T> {
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

/// Each window's gradient goes to its first maximum (added up where windows overlap, in window order);
/// every other input gets zero.
pub fn maxpool_backward<T: Real>(dy: &[T], x: &[T], d: &PoolDims) -> Vec<T> {
    let mut dx = vec![T::zero(); d.input_len()];
    let mut o = 0;
    for n in 0..d.batch {
        for oy in 0..d.out_h() {
            for ox in 0..d.out_w() {
                for c in 0..d.channels {
                    let i = window_argmax(x, d, n, oy, ox, c);
                    dx[i] += dy[o];
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
pub const MAXPOOL_FORWARD: Kernel = Kernel::new("maxpool", &[("maxpool", SHADER)], "maxpool_forward");
/// maxpool2 four channels a lane, for channel counts in multiples of 4.
pub const MAXPOOL2_FORWARD4: Kernel = Kernel::new("maxpool", &[("maxpool", SHADER)], "maxpool2_forward4");
pub const MAXPOOL2_BACKWARD4: Kernel = Kernel::new("maxpool", &[("maxpool", SHADER)], "maxpool2_backward4");
pub const MAXPOOL_BACKWARD: Kernel = Kernel::new("maxpool", &[("maxpool", SHADER)], "maxpool_backward");

fn pool_constants(d: &PoolDims) -> [(&'static str, f64); 8] {
    let f = |v: usize| v as f64;
    [
        ("BATCH", f(d.batch)),
        ("IN_H", f(d.in_h)),
        ("IN_W", f(d.in_w)),
        ("CHANNELS", f(d.channels)),
        ("OUT_H", f(d.out_h())),
        ("OUT_W", f(d.out_w())),
        ("SIZE", f(d.size)),
        ("STRIDE", f(d.stride)),
    ]
}

impl Kernels {
    /// 2x2 windows with stride 2 take the kernels written for them.
    pub fn maxpool_forward(&self, d: &PoolDims, x: Region, y: Region) -> Dispatch {
        if d.is_two_by_two() {
            return self.maxpool2_forward(d, x, y);
        }
        self.dispatch(MAXPOOL_FORWARD, &pool_constants(d), &[(1, x), (2, y)], d.output_len())
            .with_work(d.size * d.size * d.output_len(), d.input_len() + d.output_len())
    }

    /// One lane per input: the windows that hold it, in order, each adding its gradient if the input
    /// is the window's first maximum.
    pub fn maxpool_backward(&self, d: &PoolDims, dy: Region, x: Region, dx: Region) -> Dispatch {
        if d.is_two_by_two() {
            return self.maxpool2_backward(d, dy, x, dx);
        }
        self.dispatch(MAXPOOL_BACKWARD, &pool_constants(d), &[(1, x), (3, dy), (4, dx)], d.input_len())
            .with_work(d.size * d.size * d.input_len(), 2 * d.input_len() + d.output_len())
    }

    pub fn maxpool2_forward(&self, d: &PoolDims, x: Region, y: Region) -> Dispatch {
        let work = (3 * d.output_len(), d.input_len() + d.output_len());
        if d.channels.is_multiple_of(4) {
            return self.dispatch(MAXPOOL2_FORWARD4, &pool_constants(d), &[(5, x), (6, y)], d.output_len() / 4).with_work(work.0, work.1);
        }
        self.dispatch(MAXPOOL2_FORWARD, &pool_constants(d), &[(1, x), (2, y)], d.output_len()).with_work(work.0, work.1)
    }

    pub fn maxpool2_backward(&self, d: &PoolDims, dy: Region, x: Region, dx: Region) -> Dispatch {
        let work = (3 * d.output_len(), 2 * d.input_len() + d.output_len());
        if d.channels.is_multiple_of(4) {
            return self.dispatch(MAXPOOL2_BACKWARD4, &pool_constants(d), &[(5, x), (7, dy), (8, dx)], d.output_len() / 4).with_work(work.0, work.1);
        }
        self.dispatch(MAXPOOL2_BACKWARD, &pool_constants(d), &[(1, x), (3, dy), (4, dx)], d.output_len()).with_work(work.0, work.1)
    }
}
