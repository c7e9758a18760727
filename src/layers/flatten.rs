//! `flatten`: an image's map as one flat vector, [batch, h, w, c] to [batch, h * w * c], in NHWC order
//! as Keras' Flatten on channels-last images. The values already lie in that order, so the layer is a
//! view: it launches nothing, and its output and gradient are its input's buffers (twin.rs, tower.rs).

use super::{Backward, Io, Layer, LayerKind, Pass, PlanContext, Shape};
use crate::gpu::{Dispatch, Kernel, Kernels};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct Flatten;

impl LayerKind for Flatten {
    const NAME: &'static str = "flatten";
    type Dims = FlattenDims;

    fn parse(args: &Args) -> Result<Flatten, SpecError> {
        args.expect_count(0, 0, "flatten without arguments")?;
        Ok(Flatten)
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "flatten")
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<FlattenDims, String> {
        if input.flat {
            return Err("the input is already flat".into());
        }
        Ok(FlattenDims { batch: at.batch, features: input.len() })
    }
}

/// `batch` images of `features` values each, as flat vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlattenDims {
    pub batch: usize,
    pub features: usize,
}

impl Layer for FlattenDims {
    const KERNELS: &'static [Kernel] = &[];

    fn output(&self) -> Shape {
        Shape::vector(self.features)
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn is_view(&self) -> bool {
        true
    }
    fn forward<T: Real>(&self, x: &[T], _params: &[T], _state: &[T], _pass: &Pass) -> Vec<T> {
        x.to_vec()
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        (if b.need_dx { b.dy.to_vec() } else { Vec::new() }, Vec::new())
    }
    fn record_forward(&self, _kernels: &Kernels, _io: &Io) -> Vec<Dispatch> {
        Vec::new()
    }
    fn record_backward(&self, _kernels: &Kernels, _io: &Io) -> Vec<Dispatch> {
        Vec::new()
    }
}
