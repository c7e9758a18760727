//! `l2norm`: each embedding scaled to unit length, as Keras' UnitNormalization: y = x * r with
//! r = min(1 / sqrt(sum x^2), 1e12). Distances between unit vectors lie in [0, 2], so the contrastive
//! margin and thresholds do too. Gradient: dx = r dy - r^3 x (dy . x) (r dy where the bound holds).
//! Shader: `l2norm.wgsl`.

use super::{Backward, Io, Layer, LayerKind, Pass, PlanContext, Shape};
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

/// The largest scale: Keras' 1 / epsilon with epsilon 1e-12.
pub const MAX_SCALE: f64 = 1e12;

#[derive(Clone, Debug, PartialEq)]
pub struct L2Norm;

impl LayerKind for L2Norm {
    const NAME: &'static str = "l2norm";
    type Dims = L2NormDims;

    fn parse(args: &Args) -> Result<L2Norm, SpecError> {
        args.expect_count(0, 0, "l2norm without arguments")?;
        Ok(L2Norm)
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "l2norm")
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<L2NormDims, String> {
        if !input.flat {
            return Err("l2norm scales embeddings: put it after gap, flatten or dense".into());
        }
        Ok(L2NormDims { batch: at.batch, dim: input.c })
    }
}

/// `batch` rows of `dim` values, each scaled to unit length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2NormDims {
    pub batch: usize,
    pub dim: usize,
}

impl L2NormDims {
    pub fn count(&self) -> usize {
        self.batch * self.dim
    }
}

impl Layer for L2NormDims {
    const KERNELS: &'static [Kernel] = &[L2NORM_FORWARD, L2NORM_BACKWARD];

    fn output(&self) -> Shape {
        Shape::vector(self.dim)
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn forward<T: Real>(&self, x: &[T], _params: &[T], _state: &[T], _pass: &Pass) -> Vec<T> {
        l2norm_forward(x, self)
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        (if b.need_dx { l2norm_backward(b.dy, b.x, self) } else { Vec::new() }, Vec::new())
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        vec![kernels.l2norm_forward(self, io.x.clone(), io.y.clone())]
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        io.dx.iter().map(|dx| kernels.l2norm_backward(self, io.x.clone(), io.dy.clone(), dx.clone())).collect()
    }
}

// The CPU reference.

/// min(1 / sqrt(sum of squares), MAX_SCALE) of a row, and whether the bound is what holds.
fn row_scale<T: Real>(row: &[T]) -> (T, bool) {
    let mut ss = T::zero();
    for &v in row {
        ss = v.mul_add(v, ss);
    }
    let r = T::from_f64(1.0) / ss.sqrt();
    if r.to_f64() < MAX_SCALE {
        (r, false)
    } else {
        (T::from_f64(MAX_SCALE), true)
    }
}

pub fn l2norm_forward<T: Real>(x: &[T], d: &L2NormDims) -> Vec<T> {
    x.chunks(d.dim).flat_map(|row| {
        let (r, _) = row_scale(row);
        row.iter().map(move |&v| v * r)
    })
    .collect()
}

pub fn l2norm_backward<T: Real>(dy: &[T], x: &[T], d: &L2NormDims) -> Vec<T> {
    let mut dx = Vec::with_capacity(x.len());
    for (row, g) in x.chunks(d.dim).zip(dy.chunks(d.dim)) {
        let (r, bounded) = row_scale(row);
        let mut dot = T::zero();
        for (&v, &gv) in row.iter().zip(g) {
            dot = v.mul_add(gv, dot);
        }
        let r3 = if bounded { T::zero() } else { r * r * r };
        dx.extend(row.iter().zip(g).map(|(&v, &gv)| gv * r - v * r3 * dot));
    }
    dx
}

// The GPU launches.

const SHADER: &str = include_str!("../../shaders/l2norm.wgsl");
pub const L2NORM_FORWARD: Kernel = Kernel::new("l2norm", &[("l2norm", SHADER)], "l2norm_forward");
pub const L2NORM_BACKWARD: Kernel = Kernel::new("l2norm", &[("l2norm", SHADER)], "l2norm_backward");

impl Kernels {
    pub fn l2norm_forward(&self, d: &L2NormDims, x: Region, y: Region) -> Dispatch {
        let c = [("BATCH", d.batch as f64), ("DIM", d.dim as f64)];
        self.dispatch(L2NORM_FORWARD, &c, &[(1, x), (2, y)], d.batch).with_work(3 * d.count(), 2 * d.count())
    }

    pub fn l2norm_backward(&self, d: &L2NormDims, x: Region, dy: Region, dx: Region) -> Dispatch {
        let c = [("BATCH", d.batch as f64), ("DIM", d.dim as f64)];
        self.dispatch(L2NORM_BACKWARD, &c, &[(1, x), (3, dy), (4, dx)], d.batch).with_work(8 * d.count(), 3 * d.count())
    }
}
