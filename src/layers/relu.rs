//! `relu`: max(x, 0) as a layer of its own, for towers that normalise between a convolution and its
//! activation (`conv(32,3,same,linear),bn,relu`). Its gradient passes where the output is positive
//! (TensorFlow's: 0 at 0). Shader: `relu.wgsl`.

use super::{grad_z, Backward, Io, Layer, LayerKind, Pass, PlanContext, Shape};
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct Relu;

impl LayerKind for Relu {
    const NAME: &'static str = "relu";
    type Dims = ReluDims;

    fn parse(args: &Args) -> Result<Relu, SpecError> {
        args.expect_count(0, 0, "relu without arguments")?;
        Ok(Relu)
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "relu")
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<ReluDims, String> {
        Ok(ReluDims { batch: at.batch, shape: input })
    }
}

/// max(x, 0) over `batch` activations of `shape`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReluDims {
    pub batch: usize,
    pub shape: Shape,
}

impl ReluDims {
    pub fn count(&self) -> usize {
        self.batch * self.shape.len()
    }
}

impl Layer for ReluDims {
    const KERNELS: &'static [Kernel] = &[RELU_FORWARD, RELU_BACKWARD, RELU_FORWARD4, RELU_BACKWARD4];

    fn output(&self) -> Shape {
        self.shape
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn forward<T: Real>(&self, x: &[T], _params: &[T], _state: &[T], _pass: &Pass) -> Vec<T> {
        relu_forward(x)
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        (if b.need_dx { relu_backward(b.dy, b.y) } else { Vec::new() }, Vec::new())
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        vec![kernels.relu_forward(self, io.x.clone(), io.y.clone())]
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        io.dx.iter().map(|dx| kernels.relu_backward(self, io.y.clone(), io.dy.clone(), dx.clone())).collect()
    }
}

// The CPU reference.

pub fn relu_forward<T: Real>(x: &[T]) -> Vec<T> {
    x.iter().map(|&v| v.max(T::zero())).collect()
}

/// dy where the output is positive, 0 elsewhere.
pub fn relu_backward<T: Real>(dy: &[T], y: &[T]) -> Vec<T> {
    dy.iter().zip(y).map(|(&g, &v)| grad_z(g, v, true)).collect()
}

// The GPU launches.

const SHADER: &str = include_str!("../../shaders/relu.wgsl");
pub const RELU_FORWARD: Kernel = Kernel::new("relu", &[("relu", SHADER)], "relu_forward");
pub const RELU_BACKWARD: Kernel = Kernel::new("relu", &[("relu", SHADER)], "relu_backward");
/// Four elements a lane, for counts in multiples of 4.
pub const RELU_FORWARD4: Kernel = Kernel::new("relu", &[("relu", SHADER)], "relu_forward4");
pub const RELU_BACKWARD4: Kernel = Kernel::new("relu", &[("relu", SHADER)], "relu_backward4");

impl Kernels {
    pub fn relu_forward(&self, d: &ReluDims, x: Region, y: Region) -> Dispatch {
        let c = [("COUNT", d.count() as f64)];
        if d.count().is_multiple_of(4) {
            return self.dispatch(RELU_FORWARD4, &c, &[(5, x), (6, y)], d.count() / 4).with_work(d.count(), 2 * d.count());
        }
        self.dispatch(RELU_FORWARD, &c, &[(1, x), (2, y)], d.count()).with_work(d.count(), 2 * d.count())
    }

    pub fn relu_backward(&self, d: &ReluDims, y: Region, dy: Region, dx: Region) -> Dispatch {
        let c = [("COUNT", d.count() as f64)];
        if d.count().is_multiple_of(4) {
            return self.dispatch(RELU_BACKWARD4, &c, &[(9, y), (7, dy), (8, dx)], d.count() / 4).with_work(d.count(), 3 * d.count());
        }
        self.dispatch(RELU_BACKWARD, &c, &[(2, y), (3, dy), (4, dx)], d.count()).with_work(d.count(), 3 * d.count())
    }
}
