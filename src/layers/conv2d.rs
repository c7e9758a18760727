//! `conv(FILTERS, K[xK][, same|valid][, relu|linear][, stride=S])`: a 2-D convolution over NHWC
//! activations, as Keras' Conv2D: kernel [kh, kw, in, out], then a bias, then the activation (default
//! `same` padding, `relu`, stride 1). TensorFlow's `same` pads max((out - 1) * stride + k - in, 0) in
//! all, the smaller half before, so a 2x2 kernel at stride 1 reads one past the bottom and right edges.
//!
//! Every output sums its products in the order (ky, kx, ci), then adds the bias, as oneDNN does under
//! Keras. Shaders: `conv2d_gemm.wgsl`, the engine that computes the forward pass, the input gradient
//! and the weight gradient (in chunks that `reduce.wgsl` sums in a fixed order) as implicit matrix
//! products, after one of its ways of sharing loads (`conv2d_share_*.wgsl`); `conv2d.wgsl`, the forward
//! pass rounded as a fused multiply-add rounds, for `--exact`.

use super::{activation_name, grad_z, parse_activation, Backward, Init, Io, Layer, LayerKind, Pass, PlanContext, Shape, TensorSpec};
use super::dropout::DropoutDims;
use super::LayerOp;
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::Plan;
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

/// Keras' two padding modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// Output ceil(input / stride): total padding max((out - 1) * stride + k - input, 0), the smaller
    /// half before (for stride 1, floor((k - 1) / 2) before and the rest after).
    Same,
    /// No padding: output floor((input - k) / stride) + 1.
    Valid,
}

/// The layer as a spec writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub filters: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub padding: Padding,
    pub relu: bool,
    pub stride: usize,
}

impl LayerKind for Conv2d {
    const NAME: &'static str = "conv";
    type Dims = Conv2dDims;

    fn parse(args: &Args) -> Result<Conv2d, SpecError> {
        args.expect_count(2, 5, "conv(FILTERS, K or KxK[, same|valid][, relu|linear][, stride=S])")?;
        let filters = args.positive(0, "the number of filters")?;
        let k = args.get(1);
        let (kernel_h, kernel_w) = match k.split_once('x') {
            Some((h, w)) => (args.positive_part(1, h, "kernel height")?, args.positive_part(1, w, "kernel width")?),
            None => {
                let s = args.positive(1, "the kernel size")?;
                (s, s)
            }
        };
        let mut conv = Conv2d { filters, kernel_h, kernel_w, padding: Padding::Same, relu: true, stride: 1 };
        // Each option once: `conv(16,3,same,valid)` or two strides would leave the user guessing which won.
        let mut given: [Option<&str>; 3] = [None; 3];
        for i in 2..args.len() {
            let arg = args.get(i);
            let (slot, option) = if matches!(arg, "same" | "valid") {
                (0, "padding")
            } else if arg.starts_with("stride") {
                (2, "stride")
            } else {
                (1, "activation")
            };
            if let Some(earlier) = given[slot].replace(arg) {
                return Err(args.error_at(i, format!("the {option} is given twice ('{earlier}' and '{arg}'): give it once")));
            }
            match arg {
                "same" => conv.padding = Padding::Same,
                "valid" => conv.padding = Padding::Valid,
                arg if arg.starts_with("stride") => match arg.split_once('=') {
                    Some((name, value)) if name.trim() == "stride" => conv.stride = args.positive_part(i, value.trim(), "the stride")?,
                    _ => return Err(args.error_at(i, "expected stride=S")),
                },
                _ => {
                    conv.relu = parse_activation(args, i)
                        .map_err(|_| args.error_at(i, "expected 'same', 'valid', 'relu', 'linear' or stride=S"))?
                }
            }
        }
        Ok(conv)
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let k = if self.kernel_h == self.kernel_w { self.kernel_h.to_string() } else { format!("{}x{}", self.kernel_h, self.kernel_w) };
        let pad = if self.padding == Padding::Same { "same" } else { "valid" };
        write!(f, "conv({},{k},{pad},{}", self.filters, activation_name(self.relu))?;
        if self.stride != 1 {
            write!(f, ",stride={}", self.stride)?;
        }
        write!(f, ")")
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<Conv2dDims, String> {
        if input.flat {
            return Err("a convolution needs an image, but the input is already flat (after gap or dense)".into());
        }
        let (kh, kw) = (self.kernel_h, self.kernel_w);
        // Larger than its input, a kernel reads mostly padding ('same') or nothing at all ('valid').
        if kh > input.h || kw > input.w {
            let padding = if self.padding == Padding::Same { "same" } else { "valid" };
            return Err(format!("a {kh}x{kw} '{padding}' kernel does not fit a {}x{} input", input.h, input.w));
        }
        Ok(Conv2dDims {
            stride: self.stride,
            batch: at.batch,
            in_h: input.h,
            in_w: input.w,
            in_c: input.c,
            out_c: self.filters,
            kernel_h: kh,
            kernel_w: kw,
            padding: self.padding,
            relu: self.relu,
        })
    }
}

/// The convolution laid out for its input and batch; the reference and the kernels read the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dDims {
    pub stride: usize,
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub padding: Padding,
    pub relu: bool,
}

/// Output size along one axis of `input` values, and the padding before it.
fn axis(padding: Padding, input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    match padding {
        Padding::Same => {
            let out = input.div_ceil(stride);
            (out, ((out - 1) * stride + kernel).saturating_sub(input) / 2)
        }
        Padding::Valid => ((input - kernel) / stride + 1, 0),
    }
}

impl Conv2dDims {
    pub fn pad_top(&self) -> usize {
        axis(self.padding, self.in_h, self.kernel_h, self.stride).1
    }
    pub fn pad_left(&self) -> usize {
        axis(self.padding, self.in_w, self.kernel_w, self.stride).1
    }
    pub fn out_h(&self) -> usize {
        axis(self.padding, self.in_h, self.kernel_h, self.stride).0
    }
    pub fn out_w(&self) -> usize {
        axis(self.padding, self.in_w, self.kernel_w, self.stride).0
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.out_c
    }
    /// Kernel [kernel_h, kernel_w, in_c, out_c].
    pub fn kernel_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.in_c * self.out_c
    }
    /// Kernel then bias, the layer's parameter region.
    pub fn param_len(&self) -> usize {
        self.kernel_len() + self.out_c
    }
    /// Taps per output channel: kernel_h * kernel_w * in_c, the products' inner dimension.
    pub fn taps(&self) -> usize {
        self.kernel_h * self.kernel_w * self.in_c
    }
}

impl Layer for Conv2dDims {
    const KERNELS: &'static [Kernel] = &[
        CONV2D_FORWARD,
        GEMM_FORWARD[0],
        GEMM_FORWARD[1],
        GEMM_FORWARD[2],
        GEMM_FORWARD_POOLED[0],
        GEMM_FORWARD_POOLED[1],
        GEMM_FORWARD_POOLED[2],
        GEMM_BACKWARD_INPUT[0],
        GEMM_BACKWARD_INPUT[1],
        GEMM_BACKWARD_INPUT[2],
        GEMM_BACKWARD_WEIGHT[0],
        GEMM_BACKWARD_WEIGHT[1],
        GEMM_BACKWARD_WEIGHT[2],
        CONV2D_GRAD_Z,
        CONV2D_POOL_GRAD_Z,
        CONV2D_POOL_GRAD_Z4,
        SUM_PARTIALS,
        SUM_PARTIALS4,
    ];

    fn output(&self) -> Shape {
        Shape::map(self.out_h(), self.out_w(), self.out_c)
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn params(&self) -> Vec<TensorSpec> {
        vec![
            TensorSpec::new("kernel", vec![self.kernel_h, self.kernel_w, self.in_c, self.out_c], Init::GlorotUniform),
            TensorSpec::new("bias", vec![self.out_c], Init::Zeros),
        ]
    }
    fn forward<T: Real>(&self, x: &[T], params: &[T], _state: &[T], _pass: &Pass) -> Vec<T> {
        conv2d_forward(x, params, self)
    }
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        let dparams = conv2d_backward_weight(b.x, b.dy, b.y, self, b.pass.branches);
        let dx = if b.need_dx { conv2d_backward_input(b.dy, b.y, b.params, self) } else { Vec::new() };
        (dx, dparams)
    }
    /// With a ReLU (or a pooling epilogue, whichever it is given), the gradient at the pre-activation,
    /// which both backward products read.
    fn aux_len(&self) -> usize {
        self.output_len()
    }
    fn partials_len(&self, branches: usize, whole_batch: usize) -> usize {
        WeightChunks::of(self, branches, whole_batch).partials_len(branches, self.param_len())
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        if let Some(pool) = &io.pool {
            return vec![kernels.conv2d_gemm_forward_pooled(self, pool, io.step.clone(), io.x.clone(), io.params(), io.y.clone())];
        }
        if io.exact {
            vec![kernels.conv2d_forward_exact(self, io.x.clone(), io.params(), io.y.clone())]
        } else {
            vec![kernels.conv2d_gemm_forward(self, io.x.clone(), io.params(), io.y.clone())]
        }
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        if let (Some(pool), None) = (&io.pool, &io.dx) {
            // No input gradient to feed: the weight gradient reads the pooled gradient and the codes
            // itself, and the pass that makes the conv's gradient map is not run.
            let chunks = WeightChunks::of(self, io.branches, io.whole_batch);
            let v = kernels.conv2d_variant(self, Product::BackwardWeight);
            return vec![kernels.conv2d_gemm_backward_weight_from(self, v, io.branches, &chunks, io.first_pair, io.step.clone(), io.x.clone(), io.dy.clone(), Some(pool), io.partials())];
        }
        let mut dispatches = Vec::new();
        let dz = if let Some(pool) = &io.pool {
            let dz = io.aux.clone().expect("a pooled conv is given its pre-activation gradient's buffer");
            dispatches.push(kernels.conv2d_pool_grad_z(self, pool, io.dy.clone(), dz.clone()));
            dz
        } else if self.relu {
            let dz = io.aux.clone().expect("a ReLU conv is given its pre-activation gradient's buffer");
            dispatches.push(kernels.conv2d_grad_z(self, io.y.clone(), io.dy.clone(), dz.clone()));
            dz
        } else {
            io.dy.clone()
        };
        let chunks = WeightChunks::of(self, io.branches, io.whole_batch);
        dispatches.push(kernels.conv2d_gemm_backward_weight(self, io.branches, &chunks, io.first_pair, io.step.clone(), io.x.clone(), dz.clone(), io.partials()));
        if let Some(dx) = &io.dx {
            dispatches.push(kernels.conv2d_gemm_backward_input(self, dz, io.params(), dx.clone()));
        }
        dispatches
    }
    fn record_gradient(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        let chunks = WeightChunks::of(self, io.branches, io.whole_batch);
        vec![kernels.sum_partials(self.param_len(), io.branches, chunks.per_branch, io.partials(), io.grads())]
    }
}

// The CPU reference.

fn kernel_index(d: &Conv2dDims, ky: usize, kx: usize, ci: usize, co: usize) -> usize {
    ((ky * d.kernel_w + kx) * d.in_c + ci) * d.out_c + co
}

/// The input pixel that kernel tap (ky, kx) reads for output (oy, ox), or None in the zero padding.
fn input_pixel(d: &Conv2dDims, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
    let iy = (oy * d.stride + ky).checked_sub(d.pad_top())?;
    let ix = (ox * d.stride + kx).checked_sub(d.pad_left())?;
    (iy < d.in_h && ix < d.in_w).then_some((iy, ix))
}

/// y[n, oy, ox, co] = act(sum over (ky, kx, ci) of x[n, oy + ky - pad_top, ox + kx - pad_left, ci]
///                        * w[ky, kx, ci, co] + b[co]).  `wb` is the kernel followed by the bias.
/// Products accumulate in this order with fused multiply-adds, then the bias is added: the order and
/// the roundings of oneDNN under Keras. Max-pooling and ReLU make discrete choices on these values, so a
/// near-tie in a pooling window goes the same way as in Keras only if they are computed the same way.
pub fn conv2d_forward<T: Real>(x: &[T], wb: &[T], d: &Conv2dDims) -> Vec<T> {
    let (out_h, out_w) = (d.out_h(), d.out_w());
    let bias = &wb[d.kernel_len()..];
    let mut y = vec![T::zero(); d.output_len()];
    for n in 0..d.batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for co in 0..d.out_c {
                    let mut acc = T::zero();
                    for ky in 0..d.kernel_h {
                        for kx in 0..d.kernel_w {
                            let Some((iy, ix)) = input_pixel(d, oy, ox, ky, kx) else { continue };
                            for ci in 0..d.in_c {
                                let xv = x[((n * d.in_h + iy) * d.in_w + ix) * d.in_c + ci];
                                acc = xv.mul_add(wb[kernel_index(d, ky, kx, ci, co)], acc);
                            }
                        }
                    }
                    acc += bias[co];
                    if d.relu {
                        acc = acc.max(T::zero());
                    }
                    y[((n * out_h + oy) * out_w + ox) * d.out_c + co] = acc;
                }
            }
        }
    }
    y
}

/// The gradient with respect to the input, scattered from each output through the kernel taps.
pub fn conv2d_backward_input<T: Real>(dy: &[T], y: &[T], wb: &[T], d: &Conv2dDims) -> Vec<T> {
    let (out_h, out_w) = (d.out_h(), d.out_w());
    let mut dx = vec![T::zero(); d.input_len()];
    for n in 0..d.batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for co in 0..d.out_c {
                    let o = ((n * out_h + oy) * out_w + ox) * d.out_c + co;
                    let g = grad_z(dy[o], y[o], d.relu);
                    for ky in 0..d.kernel_h {
                        for kx in 0..d.kernel_w {
                            let Some((iy, ix)) = input_pixel(d, oy, ox, ky, kx) else { continue };
                            for ci in 0..d.in_c {
                                let i = ((n * d.in_h + iy) * d.in_w + ix) * d.in_c + ci;
                                dx[i] = g.mul_add(wb[kernel_index(d, ky, kx, ci, co)], dx[i]);
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

/// The gradient of the kernel then the bias. The batch is `branches` equal parts (the twin's towers):
/// each part's sum is taken on its own and the parts are added, as Keras adds a shared layer's gradients.
/// These sums run over every output position of the batch (tens of thousands of terms), so the
/// reference accumulates them in f64: it is the accurate side of every comparison.
pub fn conv2d_backward_weight<T: Real>(x: &[T], dy: &[T], y: &[T], d: &Conv2dDims, branches: usize) -> Vec<T> {
    let (out_h, out_w) = (d.out_h(), d.out_w());
    let per_branch = d.batch / branches;
    let mut total = vec![0.0f64; d.param_len()];
    for branch in 0..branches {
        let mut dwb = vec![0.0f64; d.param_len()];
        for n in branch * per_branch..(branch + 1) * per_branch {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    for co in 0..d.out_c {
                        let o = ((n * out_h + oy) * out_w + ox) * d.out_c + co;
                        let g = grad_z(dy[o], y[o], d.relu).to_f64();
                        dwb[d.kernel_len() + co] += g;
                        for ky in 0..d.kernel_h {
                            for kx in 0..d.kernel_w {
                                let Some((iy, ix)) = input_pixel(d, oy, ox, ky, kx) else { continue };
                                for ci in 0..d.in_c {
                                    let xv = x[((n * d.in_h + iy) * d.in_w + ix) * d.in_c + ci].to_f64();
                                    dwb[kernel_index(d, ky, kx, ci, co)] += xv * g;
                                }
                            }
                        }
                    }
                }
            }
        }
        for (t, v) in total.iter_mut().zip(dwb) {
            *t += v;
        }
    }
    total.into_iter().map(T::from_f64).collect()
}

// The GPU launches.

const SHADER: &str = include_str!("../../shaders/conv2d.wgsl");
const GEMM: &str = include_str!("../../shaders/conv2d_gemm.wgsl");
const SHARE_SUBGROUP: &str = include_str!("../../shaders/conv2d_share_subgroup.wgsl");
const SHARE_WORKGROUP: &str = include_str!("../../shaders/conv2d_share_workgroup.wgsl");
const SHARE_DIRECT: &str = include_str!("../../shaders/conv2d_share_direct.wgsl");
const REDUCE_SHADER: &str = include_str!("../../shaders/reduce.wgsl");
/// The exactly rounded forward pass, for --exact.
pub const CONV2D_FORWARD: Kernel = Kernel::new("conv2d", &[("conv2d", SHADER)], "conv2d_forward");
pub const CONV2D_GRAD_Z: Kernel = Kernel::new("conv2d_gemm+direct", GEMM_DIRECT, "conv2d_grad_z");
pub const CONV2D_POOL_GRAD_Z: Kernel = Kernel::new("conv2d_gemm+direct", GEMM_DIRECT, "conv2d_pool_grad_z");
pub const CONV2D_POOL_GRAD_Z4: Kernel = Kernel::new("conv2d_gemm+direct", GEMM_DIRECT, "conv2d_pool_grad_z4");
/// The fixed-order sum of a weight gradient's partial sums.
pub const SUM_PARTIALS: Kernel = Kernel::new("reduce", &[("reduce", REDUCE_SHADER)], "sum_partials");
/// The same, four parameters a lane, for counts in multiples of 4.
pub const SUM_PARTIALS4: Kernel = Kernel::new("reduce", &[("reduce", REDUCE_SHADER)], "sum_partials4");

const GEMM_SUBGROUP: &[(&str, &str)] = &[("conv2d_share_subgroup", SHARE_SUBGROUP), ("conv2d_gemm", GEMM)];
const GEMM_WORKGROUP: &[(&str, &str)] = &[("conv2d_share_workgroup", SHARE_WORKGROUP), ("conv2d_gemm", GEMM)];
const GEMM_DIRECT: &[(&str, &str)] = &[("conv2d_share_direct", SHARE_DIRECT), ("conv2d_gemm", GEMM)];
const fn gemm_kernels(entry: &'static str) -> [Kernel; 3] {
    [
        Kernel::new("conv2d_gemm+subgroup", GEMM_SUBGROUP, entry),
        Kernel::new("conv2d_gemm+workgroup", GEMM_WORKGROUP, entry),
        Kernel::new("conv2d_gemm+direct", GEMM_DIRECT, entry),
    ]
}
/// Each engine kernel in each of its ways of sharing loads, in [`Share`]'s order.
pub const GEMM_FORWARD: [Kernel; 3] = gemm_kernels("conv2d_gemm_forward");
pub const GEMM_BACKWARD_INPUT: [Kernel; 3] = gemm_kernels("conv2d_gemm_backward_input");
pub const GEMM_BACKWARD_WEIGHT: [Kernel; 3] = gemm_kernels("conv2d_gemm_backward_weight");
pub const GEMM_FORWARD_POOLED: [Kernel; 3] = gemm_kernels("conv2d_gemm_forward_pooled");

/// A 2x2 max-pooling (and the dropout after it, if any) run in the conv's forward epilogue: the conv's
/// output, and the pooled map before dropout, are never stored. `codes` holds, per pooled position
/// and quad of channels, the four channels' 4-bit codes (pooled positions x ceil(out_c / 4) u32s).
#[derive(Clone, Debug)]
pub struct PoolEpilogue {
    pub dropout: Option<DropoutDims>,
    pub codes: Region,
}

impl Conv2dDims {
    /// Pooled positions of the batch: the conv's output, 2x2 windows, odd sizes floored.
    pub fn pooled_positions(&self) -> usize {
        self.batch * (self.out_h() / 2) * (self.out_w() / 2)
    }
    /// The codes buffer's length in u32s, with a pooling epilogue.
    pub fn codes_len(&self) -> usize {
        self.pooled_positions() * self.out_c.div_ceil(4)
    }
}

impl Plan {
    /// For each layer, whether it is a conv whose following 2x2 max-pooling (and the dropout after it,
    /// if any) runs in its forward epilogue, with that dropout and the fused run's last layer: every
    /// such conv outside the fused head (conv_block.rs), whose output is at least 2x2.
    pub fn fused_pools(&self) -> Vec<Option<(Option<DropoutDims>, usize)>> {
        // The exact path keeps its own forward kernel, unfused.
        let head = if self.exact { self.layers.len() } else { self.fused_head().map_or(0, |(_, layers)| layers) };
        let op = |i: usize| self.layers.get(i).map(|l| &l.op);
        (0..self.layers.len())
            .map(|i| match (op(i), op(i + 1), op(i + 2)) {
                _ if i < head => None,
                (Some(LayerOp::Conv2d(c)), Some(LayerOp::MaxPool(p)), next) if p.is_two_by_two() && c.out_h() >= 2 && c.out_w() >= 2 => match next {
                    Some(LayerOp::Dropout(d)) => Some((Some(*d), i + 2)),
                    _ => Some((None, i + 1)),
                },
                _ => None,
            })
            .collect()
    }
}

/// How the engine's neighbouring lanes share the values they all need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Share {
    /// Subgroup shuffles (the adapter must have subgroups of a multiple of 8 lanes).
    Subgroup,
    /// Workgroup memory and barriers.
    Workgroup,
    /// None: each lane loads what it needs itself.
    Direct,
}

impl Share {
    /// The most column quads a lane's tile may have with this sharing: eight with shuffles, four
    /// otherwise. With no sharing a lane holds the whole shared tile itself (16 quads,
    /// conv2d_share_direct.wgsl): a 32-quad private array, which its loops index, took Mesa's GL
    /// compiler over a second a pipeline; and on the adapters without subgroups (GL) measuring the
    /// 32-accumulator tiles made a first tuning take minutes. Workgroup sharing keeps its 8 KiB.
    pub fn most_col_quads(self) -> usize {
        match self {
            Share::Subgroup => 8,
            Share::Workgroup | Share::Direct => 4,
        }
    }
}

/// One of the engine's variants: its sharing and its register tile (positions by column quads per
/// lane). Every variant adds each output's terms in the same order, so all give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Variant {
    pub share: Share,
    pub rows: usize,
    pub col_quads: usize,
}

impl Variant {
    /// Floats a lane loads a step of its product (a k-quad, or a block): a quad for each of `rows`
    /// rows, and its part of the shared tile of 4 * col_quads quads (all of it, with no sharing).
    pub fn loads_a_step(&self, rows: usize) -> usize {
        let tile = 4 * self.col_quads;
        let held = if self.share == Share::Direct { tile } else { tile.div_ceil(8) };
        4 * (rows + held)
    }
}

impl std::fmt::Display for Variant {
    /// As `bench` names it: the sharing, then positions by output channels a lane.
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:?} {}x{}", self.share, self.rows, 4 * self.col_quads)
    }
}

/// The engine's products: the forward pass (alone, or with its pooling epilogue) and the two gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Product {
    Forward,
    /// The forward pass with its pooling epilogue: a lane a 2x2 window (four rows).
    ForwardPooled,
    BackwardInput,
    BackwardWeight,
}

impl Product {
    fn kernel(self, share: Share) -> Kernel {
        let kernels = match self {
            Product::Forward => GEMM_FORWARD,
            Product::ForwardPooled => GEMM_FORWARD_POOLED,
            Product::BackwardInput => GEMM_BACKWARD_INPUT,
            Product::BackwardWeight => GEMM_BACKWARD_WEIGHT,
        };
        kernels[share as usize]
    }

    /// The product's columns: output channels, or input channels for the input gradient.
    fn columns(self, d: &Conv2dDims) -> usize {
        match self {
            Product::BackwardInput => d.in_c,
            _ => d.out_c,
        }
    }

    /// Whether a lane's rows are fixed at four: a pooling window's, or a weight-gradient block's.
    fn four_rows(self) -> bool {
        matches!(self, Product::ForwardPooled | Product::BackwardWeight)
    }

    /// The tile shapes worth trying for this layer: rows 1, 2 or 4 (the weight gradient's are its
    /// block's four positions), column quads up to what the layer has (at most 8), and 4 and 2.
    /// Eight column quads by four rows is 32 vec4 accumulators, more than a CPU adapter keeps in
    /// registers, but a third fewer loads a multiply-add than 4 by 4; the tuner measures which wins.
    pub fn tiles(self, d: &Conv2dDims) -> Vec<(usize, usize)> {
        let most_quads = self.columns(d).div_ceil(4).min(8);
        let rows: &[usize] = if self.four_rows() { &[4] } else { &[1, 2, 4] };
        let mut tiles = Vec::new();
        for &r in rows {
            for c in (1..=most_quads).rev() {
                if c == most_quads || c == 4 || c == 2 {
                    tiles.push((r, c));
                }
            }
        }
        tiles.dedup();
        tiles
    }

    /// The variant used when none was measured: shuffles where the adapter has subgroups, two rows by
    /// as many column quads as the layer fills up to four.
    pub fn default_variant(self, d: &Conv2dDims, subgroups: bool) -> Variant {
        let col_quads = self.columns(d).div_ceil(4).min(4);
        let rows = if self.four_rows() { 4 } else { 2 };
        Variant { share: if subgroups { Share::Subgroup } else { Share::Direct }, rows, col_quads }
    }
}

pub(crate) fn conv2d_constants(d: &Conv2dDims, branches: usize) -> Vec<(&'static str, f64)> {
    let f = |v: usize| v as f64;
    vec![
        ("BATCH", f(d.batch)),
        ("IN_H", f(d.in_h)),
        ("IN_W", f(d.in_w)),
        ("IN_C", f(d.in_c)),
        ("OUT_H", f(d.out_h())),
        ("OUT_W", f(d.out_w())),
        ("OUT_C", f(d.out_c)),
        ("KERNEL_H", f(d.kernel_h)),
        ("KERNEL_W", f(d.kernel_w)),
        ("STRIDE", f(d.stride)),
        ("PAD_TOP", f(d.pad_top())),
        ("PAD_LEFT", f(d.pad_left())),
        ("RELU", d.relu as u8 as f64),
        ("BRANCHES", f(branches)),
    ]
}

/// How the weight gradient's sum over a branch's output positions (in 2x2 blocks, image by image) is
/// cut into chunks, each a lane's partial sum, that `reduce.wgsl` then adds in a fixed order: enough
/// chunks to keep about 16k lanes busy (one per chunk, group of 16 output channels and k-quad, the
/// k-quads padded to eights), but at least 8 blocks a chunk (the partial sums, and adding them up,
/// cost what the chunks hold: a dense layer's 1x1 images make one block each). Laid out over the
/// step's whole batch: a micro-batch adds its blocks to the chunks they meet, going on from the sum an
/// earlier one stored, so that the sums are the whole batch's bits (`weight_chunk` in common.wgsl). The
/// same for every variant and for the fused block, so that their partial sums are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightChunks {
    /// Chunks a branch has over the whole batch.
    pub per_branch: usize,
    /// Images a branch has in the whole batch.
    pub branch_images: usize,
    /// 2x2 blocks of output positions an image has.
    pub per_image: usize,
}

impl WeightChunks {
    /// The chunks of `d` when the step's whole batch is `whole_batch` images in `branches` branches.
    pub fn of(d: &Conv2dDims, branches: usize, whole_batch: usize) -> WeightChunks {
        let per_image = d.out_h().div_ceil(2) * d.out_w().div_ceil(2);
        let branch_images = whole_batch / branches;
        let blocks = branch_images * per_image;
        let lanes_per_chunk = d.taps().div_ceil(4).div_ceil(8) * 8 * d.out_c.div_ceil(16);
        let per_branch = 16384usize.div_ceil(branches * lanes_per_chunk).clamp(1, blocks.div_ceil(8).max(1));
        WeightChunks { per_branch, branch_images, per_image }
    }

    /// The chunks a micro-batch of `images` images a branch from image `first` adds to (the last one
    /// also the empty chunks after the end): `micro_chunks` in common.wgsl.
    pub fn of_micro(&self, first: usize, images: usize) -> usize {
        let len = (self.branch_images * self.per_image).div_ceil(self.per_branch);
        let end = (first + images) * self.per_image;
        let last = if first + images >= self.branch_images { self.per_branch } else { end.div_ceil(len) };
        last - first * self.per_image / len
    }

    /// f32s of partial sums for a layer of `param_len` parameters.
    pub fn partials_len(&self, branches: usize, param_len: usize) -> usize {
        branches * self.per_branch * param_len
    }

    pub(crate) fn constants(&self) -> [(&'static str, f64); 2] {
        [("CHUNKS", self.per_branch as f64), ("WHOLE_IMAGES", self.branch_images as f64)]
    }
}

/// A region as a vec4 view: its length rounded up to whole quads (buffers are allocated in quads).
pub(crate) fn quads(region: &Region) -> Region {
    Region::new(&region.buffer, region.offset, region.len.div_ceil(4) * 4)
}

impl Kernels {
    /// The exactly rounded forward pass (conv2d.wgsl), one output per lane.
    pub fn conv2d_forward_exact(&self, d: &Conv2dDims, x: Region, wb: Region, y: Region) -> Dispatch {
        self.dispatch(CONV2D_FORWARD, &conv2d_constants(d, 1), &[(1, x), (2, wb), (3, y)], d.output_len())
            .with_work(2 * d.output_len() * d.taps(), d.input_len() + d.param_len() + d.output_len())
    }

    /// The engine's forward pass, in the variant chosen for this layer on this adapter.
    pub fn conv2d_gemm_forward(&self, d: &Conv2dDims, x: Region, wb: Region, y: Region) -> Dispatch {
        self.conv2d_gemm_forward_as(d, self.conv2d_variant(d, Product::Forward), x, wb, y)
    }

    pub fn conv2d_gemm_forward_as(&self, d: &Conv2dDims, v: Variant, x: Region, wb: Region, y: Region) -> Dispatch {
        let positions = d.batch * d.out_h() * d.out_w();
        let lanes = workgroup_lanes(positions, v.rows);
        let groups = [positions.div_ceil(lanes * v.rows), d.out_c.div_ceil(4 * v.col_quads)];
        let bindings = [(1, x.clone()), (7, quads(&x)), (2, wb.clone()), (8, quads(&wb)), (3, y)];
        let mut c = variant_constants(d, 1, v);
        c.push(("LANES", lanes as f64));
        self.dispatch_groups(Product::Forward.kernel(v.share), &c, &bindings, groups)
            .with_work(2 * d.output_len() * d.taps(), d.input_len() + d.param_len() + d.output_len())
            .with_lane_loads(groups[0] * lanes * groups[1] * d.taps().div_ceil(4) * v.loads_a_step(v.rows))
            .with_variant(v.to_string())
    }

    /// The forward pass with a pooling epilogue: the pooled (and dropped) map into `y`, the codes into
    /// `pool.codes`. Lanes take a 2x2 window each, in the variant chosen for this product.
    pub fn conv2d_gemm_forward_pooled(&self, d: &Conv2dDims, pool: &PoolEpilogue, step: Region, x: Region, wb: Region, y: Region) -> Dispatch {
        self.conv2d_gemm_forward_pooled_as(d, self.conv2d_variant(d, Product::ForwardPooled), pool, step, x, wb, y)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_gemm_forward_pooled_as(&self, d: &Conv2dDims, v: Variant, pool: &PoolEpilogue, step: Region, x: Region, wb: Region, y: Region) -> Dispatch {
        let groups = [d.pooled_positions().div_ceil(256), d.out_c.div_ceil(4 * v.col_quads)];
        let bindings = [(1, x.clone()), (7, quads(&x)), (2, wb.clone()), (8, quads(&wb)), (3, y), (13, step), (14, pool.codes.clone())];
        let mut c = variant_constants(d, 1, v);
        c.extend(pool_constants(pool));
        let pooled = d.pooled_positions() * d.out_c;
        self.dispatch_groups(GEMM_FORWARD_POOLED[v.share as usize], &c, &bindings, groups)
            .with_work(2 * 4 * pooled * d.taps(), d.input_len() + d.param_len() + pooled + d.codes_len())
            .with_lane_loads(groups[0] * 256 * groups[1] * d.taps().div_ceil(4) * v.loads_a_step(4))
            .with_variant(v.to_string())
    }

    /// The pre-activation's gradient `dz` from the pooled (and dropped) output's `dy` and the codes.
    pub fn conv2d_pool_grad_z(&self, d: &Conv2dDims, pool: &PoolEpilogue, dy: Region, dz: Region) -> Dispatch {
        let mut c = conv2d_constants(d, 1);
        c.extend(pool_constants(pool));
        let floats = d.output_len() + d.pooled_positions() * d.out_c + d.codes_len();
        if d.out_c.is_multiple_of(4) {
            let bindings = [(15, quads(&dy)), (16, quads(&dz)), (14, pool.codes.clone())];
            return self.dispatch(CONV2D_POOL_GRAD_Z4, &c, &bindings, d.output_len() / 4).with_work(d.output_len(), floats);
        }
        self.dispatch(CONV2D_POOL_GRAD_Z, &c, &[(11, dy), (12, dz), (14, pool.codes.clone())], d.output_len()).with_work(d.output_len(), floats)
    }

    /// dz = dy masked by the ReLU's output `y`.
    pub fn conv2d_grad_z(&self, d: &Conv2dDims, y: Region, dy: Region, dz: Region) -> Dispatch {
        self.dispatch(CONV2D_GRAD_Z, &conv2d_constants(d, 1), &[(10, y), (11, dy), (12, dz)], d.output_len())
            .with_work(d.output_len(), 3 * d.output_len())
    }

    /// The input gradient from the pre-activation's gradient `dz`.
    pub fn conv2d_gemm_backward_input(&self, d: &Conv2dDims, dz: Region, wb: Region, dx: Region) -> Dispatch {
        self.conv2d_gemm_backward_input_as(d, self.conv2d_variant(d, Product::BackwardInput), dz, wb, dx)
    }

    pub fn conv2d_gemm_backward_input_as(&self, d: &Conv2dDims, v: Variant, dz: Region, wb: Region, dx: Region) -> Dispatch {
        let positions = d.batch * d.in_h * d.in_w;
        let lanes = workgroup_lanes(positions, v.rows);
        let groups = [positions.div_ceil(lanes * v.rows), d.in_c.div_ceil(4 * v.col_quads)];
        let bindings = [(4, dz.clone()), (9, quads(&dz)), (2, wb.clone()), (8, quads(&wb)), (5, dx)];
        let mut c = variant_constants(d, 1, v);
        c.push(("LANES", lanes as f64));
        self.dispatch_groups(Product::BackwardInput.kernel(v.share), &c, &bindings, groups)
            .with_work(2 * d.output_len() * d.taps(), d.output_len() + d.param_len() + d.input_len())
            .with_lane_loads(groups[0] * lanes * groups[1] * d.kernel_h * d.kernel_w * d.out_c.div_ceil(4) * v.loads_a_step(v.rows))
            .with_variant(v.to_string())
    }

    /// The kernel-and-bias gradient's partial sums from the pre-activation's gradient `dz`, into the
    /// chunks of `partial` (`chunks.partials_len` f32s) that a micro-batch from pair `first` meets (its
    /// step uniform's `micro_start`; 0 for a whole batch); `sum_partials` then adds them into the
    /// gradient, once every micro-batch has run.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_gemm_backward_weight(
        &self,
        d: &Conv2dDims,
        branches: usize,
        chunks: &WeightChunks,
        first: usize,
        step: Region,
        x: Region,
        dz: Region,
        partial: Region,
    ) -> Dispatch {
        self.conv2d_gemm_backward_weight_as(d, self.conv2d_variant(d, Product::BackwardWeight), branches, chunks, first, step, x, dz, partial)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_gemm_backward_weight_as(
        &self,
        d: &Conv2dDims,
        v: Variant,
        branches: usize,
        chunks: &WeightChunks,
        first: usize,
        step: Region,
        x: Region,
        dz: Region,
        partial: Region,
    ) -> Dispatch {
        self.conv2d_gemm_backward_weight_from(d, v, branches, chunks, first, step, x, dz, None, partial)
    }

    /// The weight gradient's partial sums from `dz`, the pre-activation's gradient, or with `pool`,
    /// from the pooled (and dropped) output's gradient and the forward's codes (conv2d_pool_grad_z's
    /// values, made block by block).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_gemm_backward_weight_from(
        &self,
        d: &Conv2dDims,
        v: Variant,
        branches: usize,
        chunks: &WeightChunks,
        first: usize,
        step: Region,
        x: Region,
        dz: Region,
        pool: Option<&PoolEpilogue>,
        partial: Region,
    ) -> Dispatch {
        let micro_chunks = chunks.of_micro(first, d.batch / branches);
        // conv2d_gemm.wgsl's k_lanes(): k-quads padded to eights where lanes share a block's loads.
        let k_lanes = if v.share == Share::Direct { d.taps().div_ceil(4) } else { d.taps().div_ceil(4).div_ceil(8) * 8 };
        let lanes = branches * micro_chunks * d.out_c.div_ceil(4 * v.col_quads) * k_lanes;
        // Without a pool the codes are never read: dz stands in for them.
        let codes = pool.map_or(dz.clone(), |p| p.codes.clone());
        let bindings = [(1, x.clone()), (7, quads(&x)), (4, dz.clone()), (9, quads(&dz)), (6, partial), (13, step), (17, codes)];
        let mut c = variant_constants(d, branches, v);
        c.extend(chunks.constants());
        if let Some(pool) = pool {
            c.push(("POOLED_DZ", 1.0));
            c.extend(pool_constants(pool));
        }
        // conv2d_gemm.wgsl's steps: a chunk's blocks, four a step on a 1x1 map.
        let blocks_a_step = if d.out_h() == 1 && d.out_w() == 1 { 4 } else { 1 };
        let steps = (chunks.branch_images * chunks.per_image).div_ceil(chunks.per_branch).div_ceil(blocks_a_step);
        self.dispatch(Product::BackwardWeight.kernel(v.share), &c, &bindings, lanes)
            .with_work(2 * d.output_len() * (d.taps() + 1), d.input_len() + d.output_len() + branches * micro_chunks * d.param_len())
            .with_lane_loads(lanes.div_ceil(256) * 256 * steps * v.loads_a_step(4))
            .with_variant(v.to_string())
    }

    /// out[j] = the fixed-order sum over branches of the pairwise sum over chunks of partial[b][c][j],
    /// `chunks` per branch.
    pub fn sum_partials(&self, count: usize, branches: usize, chunks: usize, partial: Region, out: Region) -> Dispatch {
        let r = [("COUNT", count as f64), ("BRANCHES", branches as f64), ("CHUNKS", chunks as f64)];
        let work = (branches * chunks * count, (branches * chunks + 1) * count);
        if count.is_multiple_of(4) {
            return self.dispatch(SUM_PARTIALS4, &r, &[(3, partial), (4, out)], count / 4).with_work(work.0, work.1);
        }
        self.dispatch(SUM_PARTIALS, &r, &[(1, partial), (2, out)], count).with_work(work.0, work.1)
    }
}

/// The lanes of a forward or input-gradient workgroup (conv2d_gemm.wgsl's LANES) over `positions`
/// positions, `rows` a lane: 256, or the lanes the positions need rounded up to a power of two, at
/// least 32 (four groups of eight sharing lanes). A dense layer's batch of 128 in four-row tiles then
/// runs 32-lane workgroups, one per column group, where a 256-lane one would leave 7 in 8 lanes idle.
fn workgroup_lanes(positions: usize, rows: usize) -> usize {
    positions.div_ceil(rows).next_power_of_two().clamp(32, 256)
}

fn pool_constants(pool: &PoolEpilogue) -> Vec<(&'static str, f64)> {
    let dropout = pool.dropout.map_or([0.0, 0.0, 0.0, 1.0], |d| [1.0, d.seed as f64, d.threshold() as f64, d.scale() as f64]);
    ["HAS_DROPOUT", "DROPOUT_SEED", "DROPOUT_THRESHOLD", "DROPOUT_SCALE"].into_iter().zip(dropout).collect()
}

fn variant_constants(d: &Conv2dDims, branches: usize, v: Variant) -> Vec<(&'static str, f64)> {
    let mut c = conv2d_constants(d, branches);
    c.extend([("ROWS", v.rows as f64), ("COL_QUADS", v.col_quads as f64)]);
    c
}
