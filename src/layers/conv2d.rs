//! `conv(FILTERS, K[xK][, same|valid][, relu|linear])`: a 2-D convolution with stride 1 over NHWC
//! activations, as Keras' Conv2D: kernel [kh, kw, in, out], then a bias, then the activation (default
//! `same` padding and `relu`). Keras' `same` pads floor((k - 1) / 2) before and the rest after, so a
//! 2x2 kernel reads one past the bottom and right edges.
//!
//! The forward pass accumulates products with fused multiply-adds in the order (ky, kx, ci), then adds
//! the bias, as oneDNN does under Keras. Shaders: `conv2d.wgsl` (one output per lane, and the weight
//! gradient in chunks summed by `reduce.wgsl`), `conv2d_tiled.wgsl` (channels in multiples of 8, as
//! register-tiled products).

use super::{activation_name, grad_z, parse_activation, Backward, Init, Io, Layer, LayerKind, Pass, PlanContext, Shape, TensorSpec};
use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

/// Keras' two padding modes for a stride-1 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output as large as the input: total padding k - 1, floor((k - 1) / 2) before and the rest after.
    Same,
    /// No padding: output = input - k + 1.
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
}

impl LayerKind for Conv2d {
    const NAME: &'static str = "conv";
    type Dims = Conv2dDims;

    fn parse(args: &Args) -> Result<Conv2d, SpecError> {
        args.expect_count(2, 4, "conv(FILTERS, K or KxK[, same|valid][, relu|linear])")?;
        let filters = args.positive(0, "the number of filters")?;
        let k = args.get(1);
        let (kernel_h, kernel_w) = match k.split_once('x') {
            Some((h, w)) => (args.positive_part(1, h, "kernel height")?, args.positive_part(1, w, "kernel width")?),
            None => {
                let s = args.positive(1, "the kernel size")?;
                (s, s)
            }
        };
        let mut conv = Conv2d { filters, kernel_h, kernel_w, padding: Padding::Same, relu: true };
        for i in 2..args.len() {
            match args.get(i) {
                "same" => conv.padding = Padding::Same,
                "valid" => conv.padding = Padding::Valid,
                _ => {
                    conv.relu = parse_activation(args, i).map_err(|_| args.error_at(i, "expected 'same', 'valid', 'relu' or 'linear'"))?
                }
            }
        }
        Ok(conv)
    }

    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let k = if self.kernel_h == self.kernel_w { self.kernel_h.to_string() } else { format!("{}x{}", self.kernel_h, self.kernel_w) };
        let pad = if self.padding == Padding::Same { "same" } else { "valid" };
        write!(f, "conv({},{k},{pad},{})", self.filters, activation_name(self.relu))
    }

    fn plan(&self, input: Shape, at: &PlanContext) -> Result<Conv2dDims, String> {
        if input.flat {
            return Err("a convolution needs an image, but the input is already flat (after gap or dense)".into());
        }
        let (kh, kw) = (self.kernel_h, self.kernel_w);
        if self.padding == Padding::Valid && (kh > input.h || kw > input.w) {
            return Err(format!("a {kh}x{kw} 'valid' kernel does not fit a {}x{} input", input.h, input.w));
        }
        Ok(Conv2dDims {
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
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

impl Conv2dDims {
    pub fn pad_top(&self) -> usize {
        match self.padding {
            Padding::Same => (self.kernel_h - 1) / 2,
            Padding::Valid => 0,
        }
    }
    pub fn pad_left(&self) -> usize {
        match self.padding {
            Padding::Same => (self.kernel_w - 1) / 2,
            Padding::Valid => 0,
        }
    }
    pub fn out_h(&self) -> usize {
        match self.padding {
            Padding::Same => self.in_h,
            Padding::Valid => self.in_h + 1 - self.kernel_h,
        }
    }
    pub fn out_w(&self) -> usize {
        match self.padding {
            Padding::Same => self.in_w,
            Padding::Valid => self.in_w + 1 - self.kernel_w,
        }
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
    /// Whether the tiled kernels (conv2d_tiled.wgsl) run this layer: channels in multiples of 8.
    pub fn tiled(&self) -> bool {
        self.in_c.is_multiple_of(8) && self.out_c.is_multiple_of(8)
    }
}

impl Layer for Conv2dDims {
    const KERNELS: &'static [Kernel] = &[
        CONV2D_FORWARD,
        CONV2D_BACKWARD_INPUT,
        CONV2D_BACKWARD_WEIGHT,
        CONV2D_FORWARD_TILED,
        CONV2D_BACKWARD_INPUT_TILED,
        CONV2D_BACKWARD_WEIGHT_TILED,
        SUM_PARTIALS,
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
    fn scratch_len(&self, branches: usize) -> usize {
        branches * conv2d_weight_chunks(self, branches) * self.param_len()
    }
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        vec![kernels.conv2d_forward(self, io.exact, io.x.clone(), io.params(), io.y.clone())]
    }
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        let mut dispatches = Vec::from(kernels.conv2d_backward_weight(
            self,
            io.branches,
            io.x.clone(),
            io.dy.clone(),
            io.y.clone(),
            io.scratch.clone(),
            io.grads(),
        ));
        if let Some(dx) = &io.dx {
            dispatches.push(kernels.conv2d_backward_input(self, io.dy.clone(), io.y.clone(), io.params(), dx.clone()));
        }
        dispatches
    }
}

// The CPU reference.

fn kernel_index(d: &Conv2dDims, ky: usize, kx: usize, ci: usize, co: usize) -> usize {
    ((ky * d.kernel_w + kx) * d.in_c + ci) * d.out_c + co
}

/// The input pixel that kernel tap (ky, kx) reads for output (oy, ox), or None in the zero padding.
fn input_pixel(d: &Conv2dDims, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
    let iy = (oy + ky).checked_sub(d.pad_top())?;
    let ix = (ox + kx).checked_sub(d.pad_left())?;
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
const TILED_SHADER: &str = include_str!("../../shaders/conv2d_tiled.wgsl");
const REDUCE_SHADER: &str = include_str!("../../shaders/reduce.wgsl");
pub const CONV2D_FORWARD: Kernel = Kernel::new("conv2d", SHADER, "conv2d_forward");
pub const CONV2D_BACKWARD_INPUT: Kernel = Kernel::new("conv2d", SHADER, "conv2d_backward_input");
pub const CONV2D_BACKWARD_WEIGHT: Kernel = Kernel::new("conv2d", SHADER, "conv2d_backward_weight");
pub const CONV2D_FORWARD_TILED: Kernel = Kernel::new("conv2d_tiled", TILED_SHADER, "conv2d_forward_tiled");
pub const CONV2D_BACKWARD_INPUT_TILED: Kernel = Kernel::new("conv2d_tiled", TILED_SHADER, "conv2d_backward_input_tiled");
pub const CONV2D_BACKWARD_WEIGHT_TILED: Kernel = Kernel::new("conv2d_tiled", TILED_SHADER, "conv2d_backward_weight_tiled");
/// The fixed-order sum of a weight gradient's partial sums.
pub const SUM_PARTIALS: Kernel = Kernel::new("reduce", REDUCE_SHADER, "sum_partials");

pub(crate) fn conv2d_constants(d: &Conv2dDims, branches: usize, chunks: usize) -> [(&'static str, f64); 14] {
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
            (CONV2D_FORWARD_TILED, d.batch * d.out_h() * d.out_w().div_ceil(TILED_ROW) * d.out_c / 8)
        } else {
            (CONV2D_FORWARD, d.output_len())
        };
        self.dispatch(kernel, &c, &[(1, x), (2, wb), (3, y)], lanes)
            .with_work(2 * d.output_len() * taps, d.input_len() + d.param_len() + d.output_len())
    }

    pub fn conv2d_backward_input(&self, d: &Conv2dDims, dy: Region, y: Region, wb: Region, dx: Region) -> Dispatch {
        let c = conv2d_constants(d, 1, 1);
        let (kernel, lanes) = if d.tiled() {
            (CONV2D_BACKWARD_INPUT_TILED, d.batch * d.in_h * d.in_w.div_ceil(TILED_ROW) * d.in_c / 8)
        } else {
            (CONV2D_BACKWARD_INPUT, d.input_len())
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
            (CONV2D_BACKWARD_WEIGHT_TILED, branches * chunks * tiled_weight_lanes_per_chunk(d))
        } else {
            (CONV2D_BACKWARD_WEIGHT, branches * chunks * conv2d_tap_groups(d) * d.out_c)
        };
        let partials = self
            .dispatch(kernel, &conv2d_constants(d, branches, chunks), &[(1, x), (3, y), (4, dy), (6, partial.clone())], lanes)
            .with_work(2 * d.output_len() * (d.kernel_h * d.kernel_w * d.in_c + 1), d.input_len() + 2 * d.output_len() + branches * chunks * d.param_len());
        [partials, self.sum_partials(d.param_len(), branches, chunks, partial, dwb)]
    }

    /// out[j] = the fixed-order sum over branches of the pairwise sum over chunks of partial[b][c][j].
    pub fn sum_partials(&self, count: usize, branches: usize, chunks: usize, partial: Region, out: Region) -> Dispatch {
        let r = [("COUNT", count as f64), ("BRANCHES", branches as f64), ("CHUNKS", chunks as f64)];
        self.dispatch(SUM_PARTIALS, &r, &[(1, partial), (2, out)], count)
            .with_work(branches * chunks * count, (branches * chunks + 1) * count)
    }
}
