//! Each operation's launch, under the CPU reference's names: the constants its shape gives the shader
//! and the buffers it binds. Binding numbers follow the `@binding` attributes of the shaders.

use super::kernels::{Dispatch, Kernel, Kernels, Region};
use crate::model::InputShape;
use crate::dims::{AdamConfig, Augment, Conv2dDims, Conv2dMaxPoolGapDims, DenseDims, DropoutDims, GapDims, PoolDims};
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
    /// The index, in the GPU's pair list, of this batch's first pair (gather_pairs).
    pub batch_start: u32,
    /// How many of the batch's pairs are real; the rest pad a last, partial batch.
    pub valid_pairs: u32,
    pub _pad: [u32; 2],
}

fn conv2d_constants(d: &Conv2dDims, branches: usize, chunks: usize) -> [(&'static str, f64); 14] {
    let f = |v: usize| v as f64;
    [
        ("BATCH", f(d.batch)),
        ("IN_H", f(d.in_h)),
        ("IN_W", f(d.in_w)),
        ("IN_C", f(d.in_c)),
        ("OUT_H", f(d.out_h())),
        ("OUT_W", f(d.out_w())),
        ("OUT_C", f(d.out_c)),
        ("KERNEL_H", f(d.kernel_h)),
        ("KERNEL_W", f(d.kernel_w)),
        ("PAD_TOP", f(d.pad_top())),
        ("PAD_LEFT", f(d.pad_left())),
        ("RELU", d.relu as u8 as f64),
        ("BRANCHES", f(branches)),
        ("CHUNKS", f(chunks)),
    ]
}

/// The fused block's constants: the conv's, then its dropout's (without one, nothing is dropped).
fn conv2d_maxpool_gap_constants(d: &Conv2dMaxPoolGapDims, branches: usize, chunks: usize) -> Vec<(&'static str, f64)> {
    let mut c = conv2d_constants(&d.conv, branches, chunks).to_vec();
    let dropout = d.dropout.map_or([0.0, 0.0, 0.0, 1.0], |d| [1.0, d.seed as f64, d.threshold() as f64, d.scale() as f64]);
    c.extend(["HAS_DROPOUT", "DROPOUT_SEED", "DROPOUT_THRESHOLD", "DROPOUT_SCALE"].into_iter().zip(dropout));
    c
}

/// Kernel taps one conv2d_backward_weight invocation sums (TAPS_PER_INVOCATION in conv2d.wgsl).
const TAPS_PER_INVOCATION: usize = 8;

/// How many chunks each branch's output positions, taken in 2x2 blocks, are split into for the weight
/// gradient: enough invocations (one per chunk, channel and group of taps) to keep about 16k busy, but
/// never more chunks than blocks. The fused block's backward uses the same chunks, so that its partial
/// sums are the same.
pub fn conv2d_weight_chunks(d: &Conv2dDims, branches: usize) -> usize {
    if d.tiled() {
        let positions = d.batch / branches * d.out_h() * d.out_w();
        return (16384usize).div_ceil(branches * tiled_weight_lanes_per_chunk(d)).clamp(1, positions.max(1));
    }
    let blocks = d.batch / branches * d.out_h().div_ceil(2) * d.out_w().div_ceil(2);
    (16384usize).div_ceil(branches * d.out_c * conv2d_tap_groups(d)).clamp(1, blocks.max(1))
}

/// conv2d_backward_weight_tiled's lanes per chunk: one per tap and 8x8 tile of channels.
fn tiled_weight_lanes_per_chunk(d: &Conv2dDims) -> usize {
    d.kernel_h * d.kernel_w * (d.in_c / 8) * (d.out_c / 8)
}

/// Positions along a row one tiled lane computes (ROW in conv2d_tiled.wgsl).
const TILED_ROW: usize = 4;

fn conv2d_tap_groups(d: &Conv2dDims) -> usize {
    (d.kernel_h * d.kernel_w * d.in_c).div_ceil(TAPS_PER_INVOCATION)
}

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

fn dropout_constants(d: &DropoutDims) -> [(&'static str, f64); 4] {
    [
        ("COUNT", d.count as f64),
        ("SEED", d.seed as f64),
        ("THRESHOLD", d.threshold() as f64),
        ("SCALE", d.scale() as f64),
    ]
}

fn gap_constants(d: &GapDims) -> [(&'static str, f64); 4] {
    let f = |v: usize| v as f64;
    [("BATCH", f(d.batch)), ("H", f(d.h)), ("W", f(d.w)), ("CHANNELS", f(d.channels))]
}

/// Outputs (or inputs) one dense lane computes (GROUP in dense.wgsl).
const DENSE_GROUP: usize = 4;

fn dense_constants(d: &DenseDims, branches: usize) -> [(&'static str, f64); 5] {
    let f = |v: usize| v as f64;
    [
        ("BATCH", f(d.batch)),
        ("IN_DIM", f(d.in_dim)),
        ("OUT_DIM", f(d.out_dim)),
        ("RELU", d.relu as u8 as f64),
        ("BRANCHES", f(branches)),
    ]
}

impl Kernels {
    /// With `exact`, the direct kernel rounds each multiply-add once, as a fused multiply-add does,
    /// whatever the adapter's `fma` does (the tutorial's first layer, to match Keras and the fused block);
    /// otherwise it uses the adapter's `fma`, as the tiled kernel always does.
    pub fn conv2d_forward(&self, d: &Conv2dDims, exact: bool, x: Region, wb: Region, y: Region) -> Dispatch {
        let mut c = conv2d_constants(d, 1, 1).to_vec();
        if !exact && !d.tiled() {
            c.push(("EXACT", 0.0));
        }
        let taps = d.kernel_h * d.kernel_w * d.in_c;
        let (kernel, lanes) = if d.tiled() {
            (Kernel::Conv2dForwardTiled, d.batch * d.out_h() * d.out_w().div_ceil(TILED_ROW) * d.out_c / 8)
        } else {
            (Kernel::Conv2dForward, d.output_len())
        };
        self.dispatch(kernel, &c, &[(1, x), (2, wb), (3, y)], lanes)
            .with_work(2 * d.output_len() * taps, d.input_len() + d.param_len() + d.output_len())
    }

    pub fn conv2d_backward_input(&self, d: &Conv2dDims, dy: Region, y: Region, wb: Region, dx: Region) -> Dispatch {
        let c = conv2d_constants(d, 1, 1);
        let (kernel, lanes) = if d.tiled() {
            (Kernel::Conv2dBackwardInputTiled, d.batch * d.in_h * d.in_w.div_ceil(TILED_ROW) * d.in_c / 8)
        } else {
            (Kernel::Conv2dBackwardInput, d.input_len())
        };
        self.dispatch(kernel, &c, &[(2, wb), (3, y), (4, dy), (5, dx)], lanes)
            .with_work(2 * d.output_len() * d.kernel_h * d.kernel_w * d.in_c, 2 * d.output_len() + d.param_len() + d.input_len())
    }

    /// The kernel-and-bias gradient: partial sums into `partial` (at least
    /// `branches * conv2d_weight_chunks * param_len` f32s), then their fixed-order sum into `dwb`.
    #[allow(clippy::too_many_arguments)]
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
        let (kernel, lanes) = if d.tiled() {
            (Kernel::Conv2dBackwardWeightTiled, branches * chunks * tiled_weight_lanes_per_chunk(d))
        } else {
            (Kernel::Conv2dBackwardWeight, branches * chunks * conv2d_tap_groups(d) * d.out_c)
        };
        let partials = self
            .dispatch(kernel, &conv2d_constants(d, branches, chunks), &[(1, x), (3, y), (4, dy), (6, partial.clone())], lanes)
        .with_work(2 * d.output_len() * (d.kernel_h * d.kernel_w * d.in_c + 1), d.input_len() + 2 * d.output_len() + branches * chunks * d.param_len());
        [partials, self.sum_partials(d.param_len(), branches, chunks, partial, dwb)]
    }

    fn sum_partials(&self, count: usize, branches: usize, chunks: usize, partial: Region, out: Region) -> Dispatch {
        let r = [("COUNT", count as f64), ("BRANCHES", branches as f64), ("CHUNKS", chunks as f64)];
        self.dispatch(Kernel::SumPartials, &r, &[(1, partial), (2, out)], count)
            .with_work(branches * chunks * count, (branches * chunks + 1) * count)
    }

    /// The fused block forward: the averages into `y` ([batch, out_c]) and the windows' codes into
    /// `codes` (`d.codes_len()` u32s), for `d.conv.batch` images of `x`.
    pub fn conv2d_maxpool_gap_forward(
        &self,
        d: &Conv2dMaxPoolGapDims,
        step: Region,
        x: Region,
        wb: Region,
        y: Region,
        codes: Region,
    ) -> Dispatch {
        let bindings = [(1, x), (2, wb), (3, y), (6, step), (7, codes)];
        let lanes = d.conv.batch * d.conv.out_c.div_ceil(8);
        let c = &d.conv;
        // The convolution's products; pooling, dropout and the average are a few operations per output.
        let flops = 2 * c.output_len() * c.kernel_h * c.kernel_w * c.in_c;
        self.dispatch(Kernel::Conv2dMaxPoolGapForward, &conv2d_maxpool_gap_constants(d, 1, 1), &bindings, lanes)
            .with_work(flops, c.input_len() + c.param_len() + d.output_len() + d.codes_len())
    }

    /// The fused block's kernel-and-bias gradient from the averages' gradient `dy` and the forward's
    /// `codes`, through partial sums as [`Kernels::conv2d_backward_weight`]: the same sums, bit for bit.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_maxpool_gap_backward_weight(
        &self,
        d: &Conv2dMaxPoolGapDims,
        branches: usize,
        x: Region,
        dy: Region,
        codes: Region,
        partial: Region,
        dwb: Region,
    ) -> [Dispatch; 2] {
        let conv = &d.conv;
        let chunks = conv2d_weight_chunks(conv, branches);
        let bindings = [(1, x), (4, dy), (5, partial.clone()), (7, codes)];
        let constants = conv2d_maxpool_gap_constants(d, branches, chunks);
        let lanes = branches * chunks * conv.out_c.div_ceil(8);
        // Products at the winners only: a quarter of the conv's outputs.
        let flops = 2 * d.pool().output_len() * (conv.kernel_h * conv.kernel_w * conv.in_c + 1);
        let floats = conv.input_len() + d.codes_len() + d.output_len() + branches * chunks * conv.param_len();
        let partials = self.dispatch(Kernel::Conv2dMaxPoolGapBackwardWeight, &constants, &bindings, lanes).with_work(flops, floats);
        [partials, self.sum_partials(conv.param_len(), branches, chunks, partial, dwb)]
    }

    pub fn maxpool2_forward(&self, d: &PoolDims, x: Region, y: Region) -> Dispatch {
        self.dispatch(Kernel::MaxPool2Forward, &pool_constants(d), &[(1, x), (2, y)], d.output_len())
            .with_work(3 * d.output_len(), d.input_len() + d.output_len())
    }

    pub fn maxpool2_backward(&self, d: &PoolDims, dy: Region, x: Region, dx: Region) -> Dispatch {
        self.dispatch(Kernel::MaxPool2Backward, &pool_constants(d), &[(1, x), (3, dy), (4, dx)], d.output_len())
            .with_work(3 * d.output_len(), 2 * d.input_len() + d.output_len())
    }

    pub fn dropout_forward(&self, d: &DropoutDims, step: Region, x: Region, y: Region) -> Dispatch {
        self.dispatch(Kernel::DropoutForward, &dropout_constants(d), &[(1, step), (2, x), (3, y)], d.count)
            .with_work(d.count, 2 * d.count)
    }

    pub fn dropout_backward(&self, d: &DropoutDims, step: Region, dy: Region, dx: Region) -> Dispatch {
        self.dispatch(Kernel::DropoutBackward, &dropout_constants(d), &[(1, step), (4, dy), (5, dx)], d.count)
            .with_work(d.count, 2 * d.count)
    }

    pub fn gap_forward(&self, d: &GapDims, x: Region, y: Region) -> Dispatch {
        self.dispatch(Kernel::GapForward, &gap_constants(d), &[(1, x), (2, y)], d.output_len())
            .with_work(d.input_len(), d.input_len() + d.output_len())
    }

    pub fn gap_backward(&self, d: &GapDims, dy: Region, dx: Region) -> Dispatch {
        self.dispatch(Kernel::GapBackward, &gap_constants(d), &[(3, dy), (4, dx)], d.input_len())
            .with_work(d.input_len(), d.input_len() + d.output_len())
    }

    pub fn dense_forward(&self, d: &DenseDims, x: Region, wb: Region, y: Region) -> Dispatch {
        let c = dense_constants(d, 1);
        self.dispatch(Kernel::DenseForward, &c, &[(1, x), (2, wb), (3, y)], d.batch * d.out_dim.div_ceil(DENSE_GROUP))
            .with_work(2 * d.batch * d.kernel_len(), d.batch * (d.in_dim + d.out_dim) + d.param_len())
    }

    pub fn dense_backward_input(&self, d: &DenseDims, dy: Region, y: Region, wb: Region, dx: Region) -> Dispatch {
        let c = dense_constants(d, 1);
        self.dispatch(Kernel::DenseBackwardInput, &c, &[(2, wb), (3, y), (4, dy), (5, dx)], d.batch * d.in_dim.div_ceil(DENSE_GROUP))
            .with_work(2 * d.batch * d.kernel_len(), d.batch * (d.in_dim + 2 * d.out_dim) + d.param_len())
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
        let c = dense_constants(d, branches);
        let lanes = (d.in_dim.div_ceil(DENSE_GROUP) + 1) * d.out_dim;
        self.dispatch(Kernel::DenseBackwardWeight, &c, &[(1, x), (3, y), (4, dy), (6, dwb)], lanes)
            .with_work(2 * d.batch * d.param_len(), d.batch * (d.in_dim + 2 * d.out_dim) + d.param_len())
    }

    pub fn distance_forward(&self, pairs: usize, dim: usize, emb: Region, dist: Region) -> Dispatch {
        let c = [("PAIRS", pairs as f64), ("DIM", dim as f64)];
        self.dispatch(Kernel::DistanceForward, &c, &[(1, emb), (2, dist)], pairs).with_work(3 * pairs * dim, 2 * pairs * dim + pairs)
    }

    pub fn distance_backward(&self, pairs: usize, dim: usize, ddist: Region, emb: Region, demb: Region) -> Dispatch {
        let c = [("PAIRS", pairs as f64), ("DIM", dim as f64)];
        self.dispatch(Kernel::DistanceBackward, &c, &[(1, emb), (3, ddist), (4, demb)], pairs)
            .with_work(3 * pairs * dim, 4 * pairs * dim + pairs)
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
        let c = [("PAIRS", pairs as f64), ("MARGIN", margin as f64)];
        let bindings = [(1, step), (2, dist), (3, label), (4, losses)];
        self.dispatch(Kernel::ContrastiveForward, &c, &bindings, super::WORKGROUP_SIZE as usize).with_work(6 * pairs, 2 * pairs)
    }

    pub fn contrastive_backward(
        &self,
        pairs: usize,
        margin: f32,
        step: Region,
        dist: Region,
        label: Region,
        ddist: Region,
    ) -> Dispatch {
        let c = [("PAIRS", pairs as f64), ("MARGIN", margin as f64)];
        self.dispatch(Kernel::ContrastiveBackward, &c, &[(1, step), (2, dist), (3, label), (5, ddist)], pairs).with_work(6 * pairs, 3 * pairs)
    }

    /// Distances between every two of `rows` embeddings: `dist` and the squared sums `ss`, rows x rows.
    pub fn pairwise_distance_forward(&self, rows: usize, dim: usize, emb: Region, dist: Region, ss: Region) -> Dispatch {
        let c = [("ROWS", rows as f64), ("DIM", dim as f64)];
        self.dispatch(Kernel::PairwiseDistanceForward, &c, &[(2, emb), (3, dist), (4, ss)], rows * rows)
            .with_work(3 * rows * rows * dim, 2 * rows * rows * dim + 2 * rows * rows)
    }

    pub fn pairwise_distance_backward(&self, rows: usize, dim: usize, emb: Region, ss: Region, ddist: Region, demb: Region) -> Dispatch {
        let c = [("ROWS", rows as f64), ("DIM", dim as f64)];
        self.dispatch(Kernel::PairwiseDistanceBackward, &c, &[(2, emb), (4, ss), (6, ddist), (7, demb)], rows * dim)
            .with_work(6 * rows * rows * dim, 4 * rows * rows * dim)
    }

    /// The loss over every pair (`Kernel::BatchContrastiveForward`) or triplet
    /// (`Kernel::BatchTripletForward`) of a batch of `rows` in classes of `k`, into
    /// `losses[step.loss_slot]`; one workgroup.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_loss_forward(&self, kernel: Kernel, rows: usize, k: usize, margin: f32, step: Region, dist: Region, losses: Region) -> Dispatch {
        let c = [("ROWS", rows as f64), ("K", k as f64), ("MARGIN", margin as f64)];
        let terms = if kernel == Kernel::BatchTripletForward { rows * rows * rows } else { rows * rows };
        self.dispatch(kernel, &c, &[(1, step), (3, dist), (5, losses)], super::WORKGROUP_SIZE as usize).with_work(3 * terms, 4 * rows * rows)
    }

    /// The distances' gradient of that loss (`Kernel::BatchContrastiveBackward` or
    /// `Kernel::BatchTripletBackward`).
    pub fn batch_loss_backward(&self, kernel: Kernel, rows: usize, k: usize, margin: f32, dist: Region, ddist: Region) -> Dispatch {
        let c = [("ROWS", rows as f64), ("K", k as f64), ("MARGIN", margin as f64)];
        let terms = if kernel == Kernel::BatchTripletBackward { rows * rows * rows } else { rows * rows };
        self.dispatch(kernel, &c, &[(3, dist), (6, ddist)], rows * rows).with_work(3 * terms, 8 * rows * rows)
    }

    /// Gathers the step's batch of `pairs` pairs of images of `shape` into `inputs` and `labels`,
    /// augmenting them in training steps when `augment` (with its seed) is given.
    #[allow(clippy::too_many_arguments)]
    pub fn gather_pairs(
        &self,
        pairs: usize,
        shape: InputShape,
        augment: Option<(&Augment, u32)>,
        step: Region,
        images: Region,
        pair_images: Region,
        pair_labels: Region,
        byte_values: Region,
        inputs: Region,
        labels: Region,
    ) -> Dispatch {
        let pixels = shape.len();
        let mut c = vec![("PAIRS", pairs as f64), ("PIXELS", pixels as f64)];
        if let Some((a, seed)) = augment.filter(|(a, _)| !a.is_off()) {
            c.extend([
                ("AUGMENT", 1.0),
                ("HEIGHT", shape.h as f64),
                ("WIDTH", shape.w as f64),
                ("CHANNELS", shape.c as f64),
                ("AUG_SEED", seed as f64),
                ("FLIP", a.flip as u8 as f64),
                ("SHIFT", a.shift as f64),
                ("CONTRAST", a.contrast as f64),
                ("BRIGHTNESS", a.brightness as f64),
            ]);
        }
        let bindings =
            [(1, step), (2, images), (3, pair_images), (4, pair_labels), (5, byte_values), (6, inputs), (7, labels)];
        // Reads a byte per pixel (a quarter of an f32) and two indices per pair; writes f32 pixels.
        self.dispatch(Kernel::GatherPairs, &c, &bindings, 2 * pairs * pixels).with_work(0, 2 * pairs * pixels * 5 / 4 + 4 * pairs)
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
        let c = [
            ("COUNT", count as f64),
            ("ONE_MINUS_BETA1", config.one_minus_beta1() as f64),
            ("ONE_MINUS_BETA2", config.one_minus_beta2() as f64),
            ("EPSILON", config.epsilon as f32 as f64),
        ];
        self.dispatch(Kernel::AdamUpdate, &c, &[(1, step), (2, grad), (3, w), (4, m), (5, v)], count).with_work(12 * count, 7 * count)
    }
}
