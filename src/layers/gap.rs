//! `gap`: global average pooling of [batch, h, w, channels] to [batch, channels], a flat vector.
//! Shader: `gap.wgsl`.

use super::{Backward, Io, Layer, LayerKind, Pass, PlanContext, Shape};
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct Gap;

impl LayerKind for Gap {
    const NAME: &'static str = "gap";
    type Dims = GapDims;

    fn parse(args: &Args) -> Result<Gap, SpecError> {
        args.expect_count(0, 0, "gap without arguments")?;
        Ok(Gap)
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "gap")
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<GapDims, String> {
        if input.flat {
            return Err("global average pooling needs an image, but the input is already flat".into());
        }
        Ok(GapDims { batch: at.batch, h: input.h, w: input.w, channels: input.c })
    }
}

/// Global average pooling of [batch, h, w, channels] to [batch, channels].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapDims {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub channels: usize,
}

impl GapDims {
    pub fn input_len(&self) -> usize {
        self.batch * self.h * self.w * self.channels
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.channels
    }
}

impl Layer for GapDims {
    const KERNELS: &'static [Kernel] = &[GAP_FORWARD, GAP_BACKWARD];

    fn output(&self) -> Shape {
        Shape::vector(self.channels)
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn forward<T: Real>(&self, x: &[T], _params: &[T], _state: &[T], _pass: &Pass) -> Vec<T> {
        gap_forward(x, self)
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        (if b.need_dx { gap_backward(b.dy, self) } else { Vec::new() }, Vec::new())
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        vec![kernels.gap_forward(self, io.x.clone(), io.y.clone())]
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        io.dx.iter().map(|dx| kernels.gap_backward(self, io.dy.clone(), dx.clone())).collect()
    }
}

// The CPU reference.

/// y[n, c] = mean over (y, x) of x[n, y, x, c]
pub fn gap_forward<T: Real>(x: &[T], d: &GapDims) -> Vec<T> {
    let area = d.h * d.w;
    let mut y = vec![T::zero(); d.output_len()];
    for n in 0..d.batch {
        for c in 0..d.channels {
            let mut acc = T::zero();
            for i in 0..area {
                acc += x[(n * area + i) * d.channels + c];
            }
            y[n * d.channels + c] = acc / T::from_f64(area as f64);
        }
    }
    y
}

/// Every position of a channel gets an equal share of its gradient.
pub fn gap_backward<T: Real>(dy: &[T], d: &GapDims) -> Vec<T> {
    let area = d.h * d.w;
    let mut dx = vec![T::zero(); d.input_len()];
    for n in 0..d.batch {
        for i in 0..area {
            for c in 0..d.channels {
                dx[(n * area + i) * d.channels + c] = dy[n * d.channels + c] / T::from_f64(area as f64);
            }
        }
    }
    dx
}

// The GPU launches.

const SHADER: &str = include_str!("../../shaders/gap.wgsl");
pub const GAP_FORWARD: Kernel = Kernel::new("gap", &[("gap", SHADER)], "gap_forward");
pub const GAP_BACKWARD: Kernel = Kernel::new("gap", &[("gap", SHADER)], "gap_backward");

fn gap_constants(d: &GapDims) -> [(&'static str, f64); 4] {
    let f = |v: usize| v as f64;
    [("BATCH", f(d.batch)), ("H", f(d.h)), ("W", f(d.w)), ("CHANNELS", f(d.channels))]
}

impl Kernels {
    pub fn gap_forward(&self, d: &GapDims, x: Region, y: Region) -> Dispatch {
        self.dispatch(GAP_FORWARD, &gap_constants(d), &[(1, x), (2, y)], d.output_len())
            .with_work(d.input_len(), d.input_len() + d.output_len())
    }

    pub fn gap_backward(&self, d: &GapDims, dy: Region, dx: Region) -> Dispatch {
        self.dispatch(GAP_BACKWARD, &gap_constants(d), &[(3, dy), (4, dx)], d.input_len())
            .with_work(d.input_len(), d.input_len() + d.output_len())
    }
}
