//! The fused block: a tower that starts with conv -> 2x2 maxpool -> dropout (optional) -> gap runs that
//! block as one kernel forward (`conv2d_maxpool_gap_forward`) and one backward, in `conv_block.wgsl`.
//! Only the averages and a 4-bit code per pooled element (the window's winner, and whether a gradient
//! flows through it) are stored: the conv's output is never written. Both kernels perform the unfused
//! layers' operations in the same order, so the two paths give the same bits. Only a leading block
//! fuses: nothing before it trains, so its input gradient is never needed.

use super::conv2d::{conv2d_constants, Conv2dDims, WeightChunks};
use super::dropout::DropoutDims;
use super::gap::GapDims;
use super::maxpool::PoolDims;
use super::LayerOp;
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::Plan;

/// The most kernel taps (kernel_h * kernel_w * in_c) a fused block's convolution may have (MAX_TAPS in
/// conv_block.wgsl): its kernels keep each lane's taps and inputs in registers and are unrolled over
/// them. 3x3 on colour; 2x2 on colour (the tutorial's tower on colour pictures) has 12.
pub const MAX_FUSED_TAPS: usize = 27;

/// The fused block: conv2d -> 2x2 max-pool -> dropout (if any) -> global average pool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dMaxPoolGapDims {
    pub conv: Conv2dDims,
    pub dropout: Option<DropoutDims>,
    /// The convolution rounded as a fused multiply-add rounds (the plan's `exact`).
    pub exact: bool,
}

impl Conv2dMaxPoolGapDims {
    pub fn pool(&self) -> PoolDims {
        let c = &self.conv;
        PoolDims::two_by_two(c.batch, c.out_h(), c.out_w(), c.out_c)
    }
    pub fn gap(&self) -> GapDims {
        let p = self.pool();
        GapDims { batch: p.batch, h: p.out_h(), w: p.out_w(), channels: p.channels }
    }
    /// The codes buffer's length in u32s: [batch, pooled position, group of eight channels], one 4-bit
    /// code per channel.
    pub fn codes_len(&self) -> usize {
        let p = self.pool();
        p.batch * p.out_h() * p.out_w() * p.channels.div_ceil(8)
    }
    pub fn output_len(&self) -> usize {
        self.gap().output_len()
    }
}

impl Plan {
    /// The fused block the tower starts with, if it does, with at most MAX_FUSED_TAPS taps per output
    /// channel, and how many layers it covers.
    pub fn fused_head(&self) -> Option<(Conv2dMaxPoolGapDims, usize)> {
        let op = |i: usize| self.layers.get(i).map(|l| &l.op);
        let Some(LayerOp::Conv2d(conv)) = op(0) else { return None };
        if conv.taps() > MAX_FUSED_TAPS || conv.stride != 1 || !matches!(op(1), Some(LayerOp::MaxPool(p)) if p.is_two_by_two()) {
            return None;
        }
        let (dropout, gap_index) = match op(2) {
            Some(LayerOp::Dropout(d)) => (Some(*d), 3),
            _ => (None, 2),
        };
        match op(gap_index) {
            Some(LayerOp::Gap(_)) => Some((Conv2dMaxPoolGapDims { conv: *conv, dropout, exact: self.exact }, gap_index + 1)),
            _ => None,
        }
    }
}

const SHADER: &str = include_str!("../../shaders/conv_block.wgsl");
const SHARE_SUBGROUP: &str = include_str!("../../shaders/conv2d_share_subgroup.wgsl");
const SHARE_DIRECT: &str = include_str!("../../shaders/conv2d_share_direct.wgsl");
const BLOCK_SUBGROUP: &[(&str, &str)] = &[("conv2d_share_subgroup", SHARE_SUBGROUP), ("conv_block", SHADER)];
const BLOCK_DIRECT: &[(&str, &str)] = &[("conv2d_share_direct", SHARE_DIRECT), ("conv_block", SHADER)];
/// The fused block's kernels, with its eights of lanes sharing a window's loads through subgroups, or
/// each loading its own (adapters without subgroups).
pub const CONV2D_MAXPOOL_GAP_FORWARD: [Kernel; 2] = [
    Kernel::new("conv_block+subgroup", BLOCK_SUBGROUP, "conv2d_maxpool_gap_forward"),
    Kernel::new("conv_block+direct", BLOCK_DIRECT, "conv2d_maxpool_gap_forward"),
];
pub const CONV2D_MAXPOOL_GAP_BACKWARD_WEIGHT: [Kernel; 2] = [
    Kernel::new("conv_block+subgroup", BLOCK_SUBGROUP, "conv2d_maxpool_gap_backward_weight"),
    Kernel::new("conv_block+direct", BLOCK_DIRECT, "conv2d_maxpool_gap_backward_weight"),
];
pub const KERNELS: &[Kernel] = &[
    CONV2D_MAXPOOL_GAP_FORWARD[0],
    CONV2D_MAXPOOL_GAP_FORWARD[1],
    CONV2D_MAXPOOL_GAP_BACKWARD_WEIGHT[0],
    CONV2D_MAXPOOL_GAP_BACKWARD_WEIGHT[1],
];

/// The fused block's constants: the conv's, then its dropout's (without one, nothing is dropped).
fn conv2d_maxpool_gap_constants(d: &Conv2dMaxPoolGapDims, branches: usize) -> Vec<(&'static str, f64)> {
    let mut c = conv2d_constants(&d.conv, branches);
    let dropout = d.dropout.map_or([0.0, 0.0, 0.0, 1.0], |d| [1.0, d.seed as f64, d.threshold() as f64, d.scale() as f64]);
    c.extend(["HAS_DROPOUT", "DROPOUT_SEED", "DROPOUT_THRESHOLD", "DROPOUT_SCALE"].into_iter().zip(dropout));
    c.push(("EXACT", d.exact as u8 as f64));
    c
}

impl Kernels {
    /// The fused block forward: the averages into `y` ([batch, out_c]) and the windows' codes into
    /// `codes` (`d.codes_len()` u32s), for `d.conv.batch` images of `x`.
    pub fn conv2d_maxpool_gap_forward(&self, d: &Conv2dMaxPoolGapDims, step: Region, x: Region, wb: Region, y: Region, codes: Region) -> Dispatch {
        let bindings = [(1, x), (2, wb), (3, y), (6, step), (7, codes)];
        let lanes = d.conv.batch * d.conv.out_c.div_ceil(8);
        let c = &d.conv;
        // The convolution's products; pooling, dropout and the average are a few operations per output.
        let flops = 2 * c.output_len() * c.kernel_h * c.kernel_w * c.in_c;
        let kernel = CONV2D_MAXPOOL_GAP_FORWARD[!self.subgroups as usize];
        self.dispatch(kernel, &conv2d_maxpool_gap_constants(d, 1), &bindings, lanes)
            .with_work(flops, c.input_len() + c.param_len() + d.output_len() + d.codes_len())
    }

    /// The fused block's kernel-and-bias gradient's partial sums from the averages' gradient `dy` and
    /// the forward's `codes`, chunked as [`Kernels::conv2d_gemm_backward_weight`]'s (a micro-batch from
    /// pair `first`): the same sums, bit for bit, which `sum_partials` then adds up.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_maxpool_gap_backward_weight(
        &self,
        d: &Conv2dMaxPoolGapDims,
        branches: usize,
        chunks: &WeightChunks,
        first: usize,
        step: Region,
        x: Region,
        dy: Region,
        codes: Region,
        partial: Region,
    ) -> Dispatch {
        let conv = &d.conv;
        let micro_chunks = chunks.of_micro(first, conv.batch / branches);
        let bindings = [(1, x), (4, dy), (5, partial), (6, step), (7, codes)];
        let mut constants = conv2d_maxpool_gap_constants(d, branches);
        constants.extend(chunks.constants());
        let lanes = branches * micro_chunks * conv.out_c.div_ceil(8);
        // Products at the winners only: a quarter of the conv's outputs.
        let flops = 2 * d.pool().output_len() * (conv.kernel_h * conv.kernel_w * conv.in_c + 1);
        let floats = conv.input_len() + d.codes_len() + d.output_len() + branches * micro_chunks * conv.param_len();
        let kernel = CONV2D_MAXPOOL_GAP_BACKWARD_WEIGHT[!self.subgroups as usize];
        self.dispatch(kernel, &constants, &bindings, lanes).with_work(flops, floats)
    }
}
