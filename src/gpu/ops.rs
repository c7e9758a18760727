//! Each operation's launch, under the CPU reference's names: the uniform it reads and the buffers it
//! binds. Binding numbers follow the `@binding` attributes of the shaders.

use super::kernels::{Dispatch, Kernel, Kernels, Region};
use crate::dims::{AdamConfig, Conv2dDims, DenseDims, DropoutDims, GapDims, PoolDims};
use bytemuck::{Pod, Zeroable};

/// The values that change every step, one small uniform buffer written before each submission
/// (`Step` in dropout.wgsl, contrastive.wgsl and adam.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct StepUniform {
    /// The training step, 0-based: dropout's masks are drawn from it.
    pub step: u32,
    /// 1 while training (dropout on), 0 at evaluation.
    pub training: u32,
    /// Where contrastive_forward writes this step's loss.
    pub loss_slot: u32,
    /// Adam's step size for update step + 1.
    pub alpha: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Conv2dParams {
    batch: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    out_c: u32,
    kernel_h: u32,
    kernel_w: u32,
    pad_top: u32,
    pad_left: u32,
    relu: u32,
    branches: u32,
    chunks: u32,
    _pad: [u32; 2],
}

fn conv2d_params(d: &Conv2dDims, branches: usize, chunks: usize) -> Conv2dParams {
    let u = |v: usize| v as u32;
    Conv2dParams {
        batch: u(d.batch),
        in_h: u(d.in_h),
        in_w: u(d.in_w),
        in_c: u(d.in_c),
        out_h: u(d.out_h()),
        out_w: u(d.out_w()),
        out_c: u(d.out_c),
        kernel_h: u(d.kernel_h),
        kernel_w: u(d.kernel_w),
        pad_top: u(d.pad_top()),
        pad_left: u(d.pad_left()),
        relu: d.relu as u32,
        branches: u(branches),
        chunks: u(chunks),
        _pad: [0; 2],
    }
}

/// How many chunks each branch's output positions are split into for the weight gradient: enough
/// partial sums to keep about 128k invocations busy, but never more chunks than positions.
pub fn conv2d_weight_chunks(d: &Conv2dDims, branches: usize) -> usize {
    let positions = d.batch / branches * d.out_h() * d.out_w();
    (131072usize).div_ceil(branches * d.param_len()).clamp(1, positions.max(1))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    count: u32,
    branches: u32,
    chunks: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PoolParams {
    batch: u32,
    in_h: u32,
    in_w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    _pad: [u32; 2],
}

fn pool_params(d: &PoolDims) -> PoolParams {
    let u = |v: usize| v as u32;
    PoolParams {
        batch: u(d.batch),
        in_h: u(d.in_h),
        in_w: u(d.in_w),
        channels: u(d.channels),
        out_h: u(d.out_h()),
        out_w: u(d.out_w()),
        _pad: [0; 2],
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DropoutParams {
    count: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
}

fn dropout_params(d: &DropoutDims) -> DropoutParams {
    DropoutParams { count: d.count as u32, seed: d.seed, threshold: d.threshold(), scale: d.scale() }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GapParams {
    batch: u32,
    h: u32,
    w: u32,
    channels: u32,
}

fn gap_params(d: &GapDims) -> GapParams {
    GapParams { batch: d.batch as u32, h: d.h as u32, w: d.w as u32, channels: d.channels as u32 }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DenseParams {
    batch: u32,
    in_dim: u32,
    out_dim: u32,
    relu: u32,
    branches: u32,
    _pad: [u32; 3],
}

fn dense_params(d: &DenseDims, branches: usize) -> DenseParams {
    DenseParams {
        batch: d.batch as u32,
        in_dim: d.in_dim as u32,
        out_dim: d.out_dim as u32,
        relu: d.relu as u32,
        branches: branches as u32,
        _pad: [0; 3],
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DistanceParams {
    pairs: u32,
    dim: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ContrastiveParams {
    pairs: u32,
    margin: f32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AdamParams {
    count: u32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    epsilon: f32,
}

impl Kernels {
    pub fn conv2d_forward(&self, d: &Conv2dDims, x: Region, wb: Region, y: Region) -> Dispatch {
        let p = conv2d_params(d, 1, 1);
        self.dispatch(Kernel::Conv2dForward, &p, &[(1, x), (2, wb), (3, y)], d.output_len())
    }

    pub fn conv2d_backward_input(&self, d: &Conv2dDims, dy: Region, y: Region, wb: Region, dx: Region) -> Dispatch {
        let p = conv2d_params(d, 1, 1);
        self.dispatch(Kernel::Conv2dBackwardInput, &p, &[(2, wb), (3, y), (4, dy), (5, dx)], d.input_len())
    }

    /// The kernel-and-bias gradient: partial sums into `partial` (at least
    /// `branches * conv2d_weight_chunks * param_len` f32s), then their fixed-order sum into `dwb`.
    pub fn conv2d_backward_weight(
        &self,
        d: &Conv2dDims,
        branches: usize,
        x: Region,
        dy: Region,
        y: Region,
        partial: Region,
        dwb: Region,
    ) -> [Dispatch; 2] {
        let chunks = conv2d_weight_chunks(d, branches);
        let p = conv2d_params(d, branches, chunks);
        let count = d.param_len();
        let partials = self.dispatch(
            Kernel::Conv2dBackwardWeight,
            &p,
            &[(1, x), (3, y), (4, dy), (6, partial.clone())],
            branches * chunks * count,
        );
        let r = ReduceParams { count: count as u32, branches: branches as u32, chunks: chunks as u32, _pad: 0 };
        let sum = self.dispatch(Kernel::SumPartials, &r, &[(1, partial), (2, dwb)], count);
        [partials, sum]
    }

    pub fn maxpool2_forward(&self, d: &PoolDims, x: Region, y: Region) -> Dispatch {
        self.dispatch(Kernel::MaxPool2Forward, &pool_params(d), &[(1, x), (2, y)], d.output_len())
    }

    pub fn maxpool2_backward(&self, d: &PoolDims, dy: Region, x: Region, dx: Region) -> Dispatch {
        self.dispatch(Kernel::MaxPool2Backward, &pool_params(d), &[(1, x), (3, dy), (4, dx)], d.input_len())
    }

    pub fn dropout_forward(&self, d: &DropoutDims, step: Region, x: Region, y: Region) -> Dispatch {
        self.dispatch(Kernel::DropoutForward, &dropout_params(d), &[(1, step), (2, x), (3, y)], d.count)
    }

    pub fn dropout_backward(&self, d: &DropoutDims, step: Region, dy: Region, dx: Region) -> Dispatch {
        self.dispatch(Kernel::DropoutBackward, &dropout_params(d), &[(1, step), (4, dy), (5, dx)], d.count)
    }

    pub fn gap_forward(&self, d: &GapDims, x: Region, y: Region) -> Dispatch {
        self.dispatch(Kernel::GapForward, &gap_params(d), &[(1, x), (2, y)], d.output_len())
    }

    pub fn gap_backward(&self, d: &GapDims, dy: Region, dx: Region) -> Dispatch {
        self.dispatch(Kernel::GapBackward, &gap_params(d), &[(3, dy), (4, dx)], d.input_len())
    }

    pub fn dense_forward(&self, d: &DenseDims, x: Region, wb: Region, y: Region) -> Dispatch {
        let p = dense_params(d, 1);
        self.dispatch(Kernel::DenseForward, &p, &[(1, x), (2, wb), (3, y)], d.batch * d.out_dim)
    }

    pub fn dense_backward_input(&self, d: &DenseDims, dy: Region, y: Region, wb: Region, dx: Region) -> Dispatch {
        let p = dense_params(d, 1);
        self.dispatch(Kernel::DenseBackwardInput, &p, &[(2, wb), (3, y), (4, dy), (5, dx)], d.batch * d.in_dim)
    }

    pub fn dense_backward_weight(
        &self,
        d: &DenseDims,
        branches: usize,
        x: Region,
        dy: Region,
        y: Region,
        dwb: Region,
    ) -> Dispatch {
        let p = dense_params(d, branches);
        self.dispatch(Kernel::DenseBackwardWeight, &p, &[(1, x), (3, y), (4, dy), (6, dwb)], d.param_len())
    }

    pub fn distance_forward(&self, pairs: usize, dim: usize, emb: Region, dist: Region) -> Dispatch {
        let p = DistanceParams { pairs: pairs as u32, dim: dim as u32, _pad: [0; 2] };
        self.dispatch(Kernel::DistanceForward, &p, &[(1, emb), (2, dist)], pairs)
    }

    pub fn distance_backward(&self, pairs: usize, dim: usize, ddist: Region, emb: Region, demb: Region) -> Dispatch {
        let p = DistanceParams { pairs: pairs as u32, dim: dim as u32, _pad: [0; 2] };
        self.dispatch(Kernel::DistanceBackward, &p, &[(1, emb), (3, ddist), (4, demb)], pairs * dim)
    }

    /// Writes the mean loss into `losses[step.loss_slot]`; one workgroup.
    pub fn contrastive_forward(
        &self,
        pairs: usize,
        margin: f32,
        step: Region,
        dist: Region,
        label: Region,
        losses: Region,
    ) -> Dispatch {
        let p = ContrastiveParams { pairs: pairs as u32, margin, _pad: [0; 2] };
        let bindings = [(1, step), (2, dist), (3, label), (4, losses)];
        self.dispatch(Kernel::ContrastiveForward, &p, &bindings, super::WORKGROUP_SIZE as usize)
    }

    pub fn contrastive_backward(&self, pairs: usize, margin: f32, dist: Region, label: Region, ddist: Region) -> Dispatch {
        let p = ContrastiveParams { pairs: pairs as u32, margin, _pad: [0; 2] };
        self.dispatch(Kernel::ContrastiveBackward, &p, &[(2, dist), (3, label), (5, ddist)], pairs)
    }

    /// Adam over `count` parameters; the step size comes from `step.alpha`.
    #[allow(clippy::too_many_arguments)]
    pub fn adam_update(
        &self,
        count: usize,
        config: &AdamConfig,
        step: Region,
        grad: Region,
        w: Region,
        m: Region,
        v: Region,
    ) -> Dispatch {
        let p = AdamParams {
            count: count as u32,
            one_minus_beta1: config.one_minus_beta1(),
            one_minus_beta2: config.one_minus_beta2(),
            epsilon: config.epsilon as f32,
        };
        self.dispatch(Kernel::AdamUpdate, &p, &[(1, step), (2, grad), (3, w), (4, m), (5, v)], count)
    }
}
