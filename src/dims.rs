//! The shape of each operation, shared by the CPU reference and the GPU kernels so that both read the
//! same numbers. Activations are NHWC (Keras' layout), row-major.

/// Keras' two padding modes for a stride-1 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output as large as the input: total padding k - 1, floor((k - 1) / 2) before and the rest after.
    Same,
    /// No padding: output = input - k + 1.
    Valid,
}

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

/// 2x2 max-pooling with stride 2; odd sizes are floored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolDims {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
}

impl PoolDims {
    pub fn out_h(&self) -> usize {
        self.in_h / 2
    }
    pub fn out_w(&self) -> usize {
        self.in_w / 2
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.channels
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseDims {
    pub batch: usize,
    pub in_dim: usize,
    pub out_dim: usize,
    pub relu: bool,
}

impl DenseDims {
    /// Kernel [in_dim, out_dim].
    pub fn kernel_len(&self) -> usize {
        self.in_dim * self.out_dim
    }
    /// Kernel then bias, the layer's parameter region.
    pub fn param_len(&self) -> usize {
        self.kernel_len() + self.out_dim
    }
}

/// Inverted dropout's settings: the rate, and the threshold a hash must reach for an element to be kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutDims {
    pub count: usize,
    pub rate: f32,
    pub seed: u32,
}

impl DropoutDims {
    /// An element is kept when its 32-bit hash is >= this: round(rate * 2^32), so P(keep) = 1 - rate.
    pub fn threshold(&self) -> u32 {
        (self.rate as f64 * 4294967296.0).round().min(u32::MAX as f64) as u32
    }
    /// Kept elements are scaled by 1 / (1 - rate), in f32 as Keras computes it.
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.rate)
    }
}

/// The most kernel taps (kernel_h * kernel_w * in_c) a fused block's convolution may have (MAX_TAPS in
/// conv_block.wgsl): its kernels keep each lane's taps and inputs in registers and are unrolled over
/// them, which a CPU adapter takes tens of seconds to compile for a few dozen taps. 3x3 on grayscale,
/// 2x2 on two channels, 1x1 on nine.
pub const MAX_FUSED_TAPS: usize = 9;

/// The fused block: conv2d -> 2x2 max-pool -> dropout (if any) -> global average pool, run as one kernel
/// forward (`conv2d_maxpool_gap_forward`) and one backward. Only the averages and a 4-bit code per
/// pooled element (the window's winner, and whether a gradient flows through it) are stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dMaxPoolGapDims {
    pub conv: Conv2dDims,
    pub dropout: Option<DropoutDims>,
}

impl Conv2dMaxPoolGapDims {
    pub fn pool(&self) -> PoolDims {
        let c = &self.conv;
        PoolDims { batch: c.batch, in_h: c.out_h(), in_w: c.out_w(), channels: c.out_c }
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

/// Keras' `K.epsilon()`, the floor of the squared distance.
pub const DISTANCE_EPSILON: f32 = 1e-7;

/// What a training step minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// The tutorial's: the contrastive loss of each pair, a batch's first images against its second.
    Pairs,
    /// The contrastive loss over every pair of a class-balanced batch, rows in classes of `k`.
    BatchContrastive { k: usize },
    /// The triplet loss over every triplet of a class-balanced batch, rows in classes of `k`.
    BatchTriplet { k: usize },
}

/// Random changes to each training image, drawn afresh every step (evaluation sees the images as they
/// are): a horizontal flip, a shift of up to `shift` pixels each way (edges repeated), a contrast
/// factor in [1 - contrast, 1 + contrast] about mid-grey, then a brightness offset in
/// [-brightness, brightness], the result kept in [0, 1]. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    pub flip: bool,
    pub shift: u32,
    pub brightness: f32,
    pub contrast: f32,
}

impl Augment {
    pub fn is_off(&self) -> bool {
        !self.flip && self.shift == 0 && self.brightness == 0.0 && self.contrast == 0.0
    }
}

/// Adam's hyper-parameters; the defaults are Keras'. Kept in double precision, as Keras keeps them in
/// Python floats, and rounded to f32 exactly where Keras casts them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { learning_rate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }
    }
}

impl AdamConfig {
    /// The step size of update `t` (1-based), in f32 as Keras computes it:
    /// lr * sqrt(1 - beta2^t) / (1 - beta1^t).
    pub fn alpha(&self, t: u64) -> f32 {
        let t = t as f32;
        let beta1_power = (self.beta1 as f32).powf(t);
        let beta2_power = (self.beta2 as f32).powf(t);
        self.learning_rate as f32 * (1.0 - beta2_power).sqrt() / (1.0 - beta1_power)
    }
    /// 1 - beta1, taken in double precision and rounded once, as Python computes it before Keras casts it.
    pub fn one_minus_beta1(&self) -> f32 {
        (1.0 - self.beta1) as f32
    }
    pub fn one_minus_beta2(&self) -> f32 {
        (1.0 - self.beta2) as f32
    }
}
