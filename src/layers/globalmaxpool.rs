//! `globalmaxpool`: each channel's largest value over the whole map, [batch, h, w, c] to a flat
//! [batch, c], as Keras' GlobalMaxPooling2D. The gradient is TensorFlow's for a maximum: shared equally
//! by every position that ties for it. Shader: `globalmaxpool.wgsl`.

use super::{Backward, Io, Layer, LayerKind, Pass, PlanContext, Shape};
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalMaxPool;

impl LayerKind for GlobalMaxPool {
    const NAME: &'static str = "globalmaxpool";
    type Dims = GlobalMaxPoolDims;

    fn parse(args: &Args) -> Result<GlobalMaxPool, SpecError> {
        args.expect_count(0, 0, "globalmaxpool without arguments")?;
        Ok(GlobalMaxPool)
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "globalmaxpool")
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<GlobalMaxPoolDims, String> {
        if input.flat {
            return Err("global max-pooling needs an image, but the input is already flat".into());
        }
        Ok(GlobalMaxPoolDims { batch: at.batch, h: input.h, w: input.w, channels: input.c })
    }
}

/// The maximum of each channel of [batch, h, w, channels], to [batch, channels].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalMaxPoolDims {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub channels: usize,
}

impl GlobalMaxPoolDims {
    pub fn input_len(&self) -> usize {
        self.batch * self.h * self.w * self.channels
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.channels
    }
}

impl Layer for GlobalMaxPoolDims {
    const KERNELS: &'static [Kernel] = &[GLOBALMAXPOOL_FORWARD, GLOBALMAXPOOL_BACKWARD];

    fn output(&self) -> Shape {
        Shape::vector(self.channels)
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn forward<T: Real>(&self, x: &[T], _params: &[T], _state: &[T], _pass: &Pass) -> Vec<T> {
        globalmaxpool_forward(x, self)
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        (if b.need_dx { globalmaxpool_backward(b.dy, b.x, b.y, self) } else { Vec::new() }, Vec::new())
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        vec![kernels.globalmaxpool_forward(self, io.x.clone(), io.y.clone())]
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        io.dx.iter().map(|dx| kernels.globalmaxpool_backward(self, io.x.clone(), io.y.clone(), io.dy.clone(), dx.clone())).collect()
    }
}

// The CPU reference.

pub fn globalmaxpool_forward<T: Real>(x: &[T], d: &GlobalMaxPoolDims) -> Vec<T> {
    let area = d.h * d.w;
    let mut y = Vec::with_capacity(d.output_len());
    for n in 0..d.batch {
        for c in 0..d.channels {
            let mut best = x[n * area * d.channels + c];
            for i in 1..area {
                best = best.max(x[(n * area + i) * d.channels + c]);
            }
            y.push(best);
        }
    }
    y
}

/// dy / (the positions equal to the maximum) at each of them, 0 elsewhere.
pub fn globalmaxpool_backward<T: Real>(dy: &[T], x: &[T], y: &[T], d: &GlobalMaxPoolDims) -> Vec<T> {
    let area = d.h * d.w;
    let mut dx = vec![T::zero(); d.input_len()];
    for n in 0..d.batch {
        for c in 0..d.channels {
            let o = n * d.channels + c;
            let at = |i: usize| (n * area + i) * d.channels + c;
            let ties = (0..area).filter(|&i| x[at(i)] == y[o]).count();
            let share = T::from_f64(1.0) / T::from_f64(ties as f64);
            for i in (0..area).filter(|&i| x[at(i)] == y[o]) {
                dx[at(i)] = share * dy[o];
            }
        }
    }
    dx
}

// The GPU launches.

const SHADER: &str = include_str!("../../shaders/globalmaxpool.wgsl");
pub const GLOBALMAXPOOL_FORWARD: Kernel = Kernel::new("globalmaxpool", &[("globalmaxpool", SHADER)], "globalmaxpool_forward");
pub const GLOBALMAXPOOL_BACKWARD: Kernel = Kernel::new("globalmaxpool", &[("globalmaxpool", SHADER)], "globalmaxpool_backward");

fn constants(d: &GlobalMaxPoolDims) -> [(&'static str, f64); 3] {
    [("BATCH", d.batch as f64), ("AREA", (d.h * d.w) as f64), ("CHANNELS", d.channels as f64)]
}

impl Kernels {
    pub fn globalmaxpool_forward(&self, d: &GlobalMaxPoolDims, x: Region, y: Region) -> Dispatch {
        self.dispatch(GLOBALMAXPOOL_FORWARD, &constants(d), &[(1, x), (2, y)], d.output_len())
            .with_work(d.input_len(), d.input_len() + d.output_len())
    }

    pub fn globalmaxpool_backward(&self, d: &GlobalMaxPoolDims, x: Region, y: Region, dy: Region, dx: Region) -> Dispatch {
        self.dispatch(GLOBALMAXPOOL_BACKWARD, &constants(d), &[(1, x), (5, y), (3, dy), (4, dx)], d.output_len())
            .with_work(2 * d.input_len(), 2 * d.input_len() + 2 * d.output_len())
    }
}
