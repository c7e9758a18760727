//! The tower's layers, one module per kind. A module owns everything about its kind: its syntax in a
//! tower spec (parse and print), its output shape, its parameters and non-trainable state with their
//! initialisation, its CPU reference forward and backward, and its GPU recording (the launches of its
//! shader, forward and backward). The CPU reference twin and the GPU twin walk the same list of layers
//! through the two enums below, so a new layer is one module, one shader, its tests and one line in
//! `layer_kinds!`.

pub mod bn;
pub mod conv2d;
pub mod conv_block;
pub mod dense;
pub mod dropout;
pub mod flatten;
pub mod gap;
pub mod globalmaxpool;
pub mod l2norm;
pub mod maxpool;
pub mod relu;

use crate::gpu::{Dispatch, Kernel, Kernels, Region};
use crate::model::{Args, SpecError};
use crate::reference::Real;
use std::fmt;

/// What flows between layers, per image: a map of `h` x `w` positions of `c` channels (NHWC), or,
/// once `flat`, a vector of `c` features (h = w = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub flat: bool,
}

impl Shape {
    pub fn map(h: usize, w: usize, c: usize) -> Shape {
        Shape { h, w, c, flat: false }
    }
    pub fn vector(c: usize) -> Shape {
        Shape { h: 1, w: 1, c, flat: true }
    }
    /// Values per image (saturating: a plan refuses a shape this large).
    pub fn len(&self) -> usize {
        self.h.saturating_mul(self.w).saturating_mul(self.c)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a layer sits when a spec is laid out: its 0-based index in the tower, the batch of images it
/// runs on, and the run's seed (dropout derives its masks' seed from both).
#[derive(Clone, Copy, Debug)]
pub struct PlanContext {
    pub index: usize,
    pub batch: usize,
    pub seed: u64,
}

/// How a forward or backward pass runs: in training (dropout on, batch statistics) or not, at which
/// training step (dropout's masks), and over how many branches the batch is made of (the twin runs
/// both images of every pair as one batch of two equal branches; each branch's weight gradient is
/// summed on its own, as Keras adds a shared layer's gradients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass {
    pub training: bool,
    pub step: u32,
    pub branches: usize,
}

/// How a parameter or state tensor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Keras' default for kernels: U(-l, l), l = sqrt(6 / (fan_in + fan_out)).
    GlorotUniform,
    Zeros,
    Ones,
}

/// One tensor of a layer's parameters or state, in Keras' layout: named `layerN.<name>` in checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl TensorSpec {
    pub fn new(name: &'static str, shape: Vec<usize>, init: Init) -> TensorSpec {
        TensorSpec { name, shape, init }
    }
    /// Values in the tensor (saturating: a plan refuses a tensor this large).
    pub fn len(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a layer's backward pass reads: its input and output, the gradient reaching its output, its
/// parameters, the pass, and whether its input's gradient is wanted (the first layer's never is).
pub struct Backward<'a, T> {
    pub x: &'a [T],
    pub y: &'a [T],
    pub dy: &'a [T],
    pub params: &'a [T],
    pub state: &'a [T],
    pub pass: Pass,
    pub need_dx: bool,
}

/// The GPU buffers one layer's launches bind: its input and output, their gradients, its parameters'
/// and their gradients' regions of the flat buffers, its state, what its forward keeps for its
/// backward (`aux`), its weight gradient's partial sums, and the step's uniform. A step may run in
/// micro-batches (twin.rs): the layer is then laid out for one micro-batch, and its partial sums, laid
/// out over the whole batch, gather every micro-batch's before `record_gradient` adds them up.
#[derive(Clone)]
pub struct Io {
    pub step: Region,
    pub x: Region,
    pub y: Region,
    pub dy: Region,
    /// None when nothing before the layer trains: its input's gradient is never needed.
    pub dx: Option<Region>,
    pub params: Option<Region>,
    pub grads: Option<Region>,
    pub state: Option<Region>,
    pub aux: Option<Region>,
    /// The weight gradient's partial sums (`Layer::partials_len`), the layer's own.
    pub partials: Option<Region>,
    pub branches: usize,
    /// Images in the step's whole batch (the layer's own batch unless the step runs in micro-batches),
    /// and the first pair of the micro-batch the launches are for.
    pub whole_batch: usize,
    pub first_pair: usize,
    /// Round each convolution multiply-add once, as a fused multiply-add, whatever the adapter's fma
    /// does (see conv2d.rs).
    pub exact: bool,
    /// A conv's pooling epilogue, when the plan fuses the max-pooling after it (`Plan::fused_pools`):
    /// then `y` and `dy` are the last fused layer's.
    pub pool: Option<conv2d::PoolEpilogue>,
}

impl Io {
    fn params(&self) -> Region {
        self.params.clone().expect("a layer with parameters is given its region")
    }
    fn grads(&self) -> Region {
        self.grads.clone().expect("a layer with parameters is given its gradients' region")
    }
    fn partials(&self) -> Region {
        self.partials.clone().expect("a layer with parameters is given its partial sums' buffer")
    }
}

/// A kind of layer as a tower spec writes it: its name and arguments, and how it is laid out.
pub trait LayerKind: Clone + fmt::Debug + PartialEq {
    /// The layer's name in a spec.
    const NAME: &'static str;
    /// The layer laid out for an input shape and batch.
    type Dims: Layer + Clone + fmt::Debug + PartialEq;
    /// The layer from its arguments (`conv(32,3)` gives "32" and "3").
    fn parse(args: &Args) -> Result<Self, SpecError>;
    /// The layer as a spec writes it; `parse` reads it back.
    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result;
    /// The layer on images of `input`, or why it cannot take them.
    fn plan(&self, input: Shape, at: &PlanContext) -> Result<Self::Dims, String>;
}

/// A layer laid out for its input and batch: what it computes, on the CPU and on the GPU.
pub trait Layer {
    /// The kernels its recordings launch.
    const KERNELS: &'static [Kernel];
    /// Its output, per image.
    fn output(&self) -> Shape;
    /// The images it runs on at once.
    fn batch(&self) -> usize;
    /// Whether its output is its input as it lies in memory (a reshape): it launches nothing, and its
    /// output and gradient are its input's buffers.
    fn is_view(&self) -> bool {
        false
    }
    /// Its trainable tensors, in the order they lie in its region of the flat parameter buffer.
    fn params(&self) -> Vec<TensorSpec> {
        Vec::new()
    }
    /// Its non-trainable tensors (moving statistics), in the order they lie in the state buffer.
    fn state(&self) -> Vec<TensorSpec> {
        Vec::new()
    }
    /// The CPU reference's forward pass over the batch `x`.
    fn forward<T: Real>(&self, x: &[T], params: &[T], state: &[T], pass: &Pass) -> Vec<T>;
    /// The CPU reference's backward pass: the input's gradient (empty unless `need_dx`) and the
    /// parameters' (empty for a layer without).
    fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>);
    /// What a training forward pass changes in the layer's state (moving statistics).
    fn update_state<T: Real>(&self, _x: &[T], _state: &mut [T], _pass: &Pass) {}
    /// f32s its forward keeps for its backward on the GPU.
    fn aux_len(&self) -> usize {
        0
    }
    /// f32s of that its forward needs at inference (statistics it computes on the way).
    fn inference_aux_len(&self) -> usize {
        0
    }
    /// f32s of partial sums its weight gradient keeps until the step's end, when the step's whole
    /// batch is `whole_batch` images.
    fn partials_len(&self, _branches: usize, _whole_batch: usize) -> usize {
        0
    }
    /// Its forward launches on the GPU.
    fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch>;
    /// Its backward launches: its parameters' gradient's partial sums into `io.partials`, its input's
    /// gradient into `io.dx`.
    fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch>;
    /// The launches that add its partial sums into its parameters' gradient, `io.grads`: once a step,
    /// after every micro-batch's backward.
    fn record_gradient(&self, _kernels: &Kernels, _io: &Io) -> Vec<Dispatch> {
        Vec::new()
    }
}

/// The two enums a tower is made of, one variant per layer kind, and `with_layer!` to reach the layer
/// a variant holds. `$d` is a `$`, passed in so that the inner macro can have arguments of its own.
macro_rules! layer_kinds {
    ($d:tt $($kind:ident($module:ident::$spec:ident)),* $(,)?) => {
        /// A layer as a tower spec writes it.
        #[derive(Clone, Debug, PartialEq)]
        pub enum LayerSpec {
            $($kind($module::$spec)),*
        }

        /// A layer laid out for an input shape and batch.
        #[derive(Clone, Debug, PartialEq)]
        pub enum LayerOp {
            $($kind(<$module::$spec as LayerKind>::Dims)),*
        }

        /// Every layer kind's name in a spec.
        pub const LAYER_NAMES: &[&str] = &[$(<$module::$spec as LayerKind>::NAME),*];

        /// Every kernel a layer launches.
        pub fn layer_kernels() -> Vec<Kernel> {
            [$(<<$module::$spec as LayerKind>::Dims as Layer>::KERNELS),*].concat()
        }

        impl LayerSpec {
            /// The layer named `name` with `args`; None when no kind has that name.
            pub fn parse(name: &str, args: &Args) -> Option<Result<LayerSpec, SpecError>> {
                $(if name == <$module::$spec as LayerKind>::NAME {
                    return Some(<$module::$spec as LayerKind>::parse(args).map(LayerSpec::$kind));
                })*
                None
            }

            pub fn plan(&self, input: Shape, at: &PlanContext) -> Result<LayerOp, String> {
                match self {
                    $(LayerSpec::$kind(spec) => spec.plan(input, at).map(LayerOp::$kind)),*
                }
            }
        }

        impl fmt::Display for LayerSpec {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                match self {
                    $(LayerSpec::$kind(spec) => spec.write(f)),*
                }
            }
        }

        /// Runs `$body` with `$layer` bound to the layer `$op` (a `LayerOp`) holds.
        macro_rules! with_layer {
            ($d op:expr, $d layer:ident => $d body:expr) => {
                match $d op {
                    $(LayerOp::$kind($d layer) => $d body),*
                }
            };
        }
    };
}

layer_kinds! {$
    Conv2d(conv2d::Conv2d),
    MaxPool(maxpool::MaxPool),
    Dropout(dropout::Dropout),
    Gap(gap::Gap),
    Dense(dense::Dense),
    BatchNorm(bn::BatchNorm),
    Relu(relu::Relu),
    Flatten(flatten::Flatten),
    L2Norm(l2norm::L2Norm),
    GlobalMaxPool(globalmaxpool::GlobalMaxPool),
}

impl LayerOp {
    /// The layer on the GPU against its CPU reference (see [`crate::layer_check`]).
    pub async fn check_against_reference(&self, gpu: &crate::gpu::Gpu, kernels: &crate::gpu::Kernels, name: &str, input_len: usize, seed: u64) -> Vec<crate::layer_check::Comparison> {
        // Two branches, as the twin runs it, where the batch splits in two.
        with_layer!(self, l => crate::layer_check::against_reference(gpu, kernels, name, l, input_len, if l.batch() % 2 == 0 { 2 } else { 1 }, seed).await)
    }

    pub fn output(&self) -> Shape {
        with_layer!(self, l => l.output())
    }
    pub fn is_view(&self) -> bool {
        with_layer!(self, l => l.is_view())
    }
    /// f32s of output for the whole batch.
    pub fn output_len(&self) -> usize {
        with_layer!(self, l => l.batch() * l.output().len())
    }
    pub fn params(&self) -> Vec<TensorSpec> {
        with_layer!(self, l => l.params())
    }
    pub fn state(&self) -> Vec<TensorSpec> {
        with_layer!(self, l => l.state())
    }
    pub fn forward<T: Real>(&self, x: &[T], params: &[T], state: &[T], pass: &Pass) -> Vec<T> {
        with_layer!(self, l => l.forward(x, params, state, pass))
    }
    pub fn backward<T: Real>(&self, b: &Backward<T>) -> (Vec<T>, Vec<T>) {
        with_layer!(self, l => l.backward(b))
    }
    pub fn update_state<T: Real>(&self, x: &[T], state: &mut [T], pass: &Pass) {
        with_layer!(self, l => l.update_state(x, state, pass))
    }
    pub fn aux_len(&self) -> usize {
        with_layer!(self, l => l.aux_len())
    }
    pub fn inference_aux_len(&self) -> usize {
        with_layer!(self, l => l.inference_aux_len())
    }
    pub fn partials_len(&self, branches: usize, whole_batch: usize) -> usize {
        with_layer!(self, l => l.partials_len(branches, whole_batch))
    }
    pub fn record_forward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        with_layer!(self, l => l.record_forward(kernels, io))
    }
    pub fn record_backward(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        with_layer!(self, l => l.record_backward(kernels, io))
    }
    pub fn record_gradient(&self, kernels: &Kernels, io: &Io) -> Vec<Dispatch> {
        with_layer!(self, l => l.record_gradient(kernels, io))
    }
}

/// Which layers run inside another's launches: the fused head (conv_block.rs), and the max-pooling
/// (and dropout) that a conv's pooling epilogue runs (`Plan::fused_pools`). Inside layers record
/// nothing and store nothing but the run's last output, which the run's first layer writes.
pub struct Fusion {
    pub head: Option<(conv_block::Conv2dMaxPoolGapDims, usize)>,
    /// Per layer: with a pooling epilogue, the dropout it applies and the run's last layer.
    pub pools: Vec<Option<(Option<dropout::DropoutDims>, usize)>>,
    /// Per layer: whether its own launches run it (not inside a fused run).
    pub records: Vec<bool>,
    /// Per layer: whether its output is kept in a buffer of its own.
    pub stored: Vec<bool>,
}

impl Fusion {
    /// The fusions of `plan`; none when `fuse` is false (every layer its own kernels).
    pub fn of(plan: &crate::model::Plan, fuse: bool) -> Fusion {
        let n = plan.layers.len();
        let head = if fuse { plan.fused_head() } else { None };
        let pools = if fuse { plan.fused_pools() } else { vec![None; n] };
        let (mut records, mut stored) = (vec![true; n], vec![true; n]);
        if let Some((_, layers)) = head {
            (0..layers).for_each(|i| records[i] = false);
            (0..layers - 1).for_each(|i| stored[i] = false);
        }
        for (i, pool) in pools.iter().enumerate() {
            if let Some((_, last)) = pool {
                (i + 1..=*last).for_each(|j| records[j] = false);
                (i..*last).for_each(|j| stored[j] = false);
            }
        }
        Fusion { head, pools, records, stored }
    }

    /// The layer whose buffer holds what layer `i`'s launches write: a pooled conv writes its run's
    /// last output.
    pub fn writes(&self, i: usize) -> usize {
        self.pools[i].as_ref().map_or(i, |(_, last)| *last)
    }
}

/// The gradient reaching a pre-activation: with a fused ReLU it is masked where the output is not
/// positive (ReLU's derivative at 0 is 0, as in TensorFlow).
pub(crate) fn grad_z<T: Real>(dy: T, y: T, relu: bool) -> T {
    if relu && y <= T::zero() {
        T::zero()
    } else {
        dy
    }
}

/// The activation an argument names: `relu` or `linear`.
pub(crate) fn parse_activation(args: &Args, i: usize) -> Result<bool, SpecError> {
    match args.get(i) {
        "relu" => Ok(true),
        "linear" => Ok(false),
        _ => Err(args.error_at(i, "activation must be 'relu' or 'linear'")),
    }
}

pub(crate) fn activation_name(relu: bool) -> &'static str {
    if relu {
        "relu"
    } else {
        "linear"
    }
}
