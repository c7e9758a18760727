//! The kernels' pipelines and launches. Shapes reach a kernel as pipeline-overridable constants, not
//! uniforms: the compiler then sees fixed sizes, unrolls the small loops and turns the index arithmetic's
//! divisions into multiplies (a CPU adapter such as lavapipe has no vector integer division, and a
//! division per element costs more than the arithmetic). So there is one pipeline per entry point and
//! shape, built the first time that shape is asked for and cached; a twin asks for all of its own when it
//! is built. A [`Dispatch`] is one launch with its buffers bound, built once and recorded as often as
//! needed.

use super::Gpu;
use std::collections::HashMap;
use std::sync::Mutex;

/// What every shader shares (the step uniform, the thread index, the hashes, the exact multiply-add),
/// prepended to each file of [`SHADERS`] when its module is built.
pub const PRELUDE: &str = include_str!("../../shaders/common.wgsl");

/// A shader file's source as the device compiles it: the prelude, then the file.
pub fn module_source(file_source: &str) -> String {
    format!("{PRELUDE}\n{file_source}")
}

/// The WGSL files, one per operation family, as (name, source), without the prelude.
pub const SHADERS: &[(&str, &str)] = &[
    ("conv2d", include_str!("../../shaders/conv2d.wgsl")),
    ("conv2d_tiled", include_str!("../../shaders/conv2d_tiled.wgsl")),
    ("conv_block", include_str!("../../shaders/conv_block.wgsl")),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    ("maxpool", include_str!("../../shaders/maxpool.wgsl")),
    ("dropout", include_str!("../../shaders/dropout.wgsl")),
    ("gap", include_str!("../../shaders/gap.wgsl")),
    ("dense", include_str!("../../shaders/dense.wgsl")),
    ("distance", include_str!("../../shaders/distance.wgsl")),
    ("contrastive", include_str!("../../shaders/contrastive.wgsl")),
    ("adam", include_str!("../../shaders/adam.wgsl")),
    ("gather", include_str!("../../shaders/gather.wgsl")),
    ("batch_loss", include_str!("../../shaders/batch_loss.wgsl")),
];

/// Every kernel: a WGSL entry point, named as in its shader and in the CPU reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Conv2dForward,
    Conv2dBackwardInput,
    Conv2dBackwardWeight,
    Conv2dForwardTiled,
    Conv2dBackwardInputTiled,
    Conv2dBackwardWeightTiled,
    Conv2dMaxPoolGapForward,
    Conv2dMaxPoolGapBackwardWeight,
    SumPartials,
    MaxPool2Forward,
    MaxPool2Backward,
    DropoutForward,
    DropoutBackward,
    GapForward,
    GapBackward,
    DenseForward,
    DenseBackwardInput,
    DenseBackwardWeight,
    DistanceForward,
    DistanceBackward,
    ContrastiveForward,
    ContrastiveBackward,
    AdamUpdate,
    GatherPairs,
    PairwiseDistanceForward,
    PairwiseDistanceBackward,
    BatchContrastiveForward,
    BatchContrastiveBackward,
    BatchTripletForward,
    BatchTripletBackward,
}

impl Kernel {
    pub const ALL: [Kernel; 30] = [
        Kernel::Conv2dForward,
        Kernel::Conv2dBackwardInput,
        Kernel::Conv2dBackwardWeight,
        Kernel::Conv2dForwardTiled,
        Kernel::Conv2dBackwardInputTiled,
        Kernel::Conv2dBackwardWeightTiled,
        Kernel::Conv2dMaxPoolGapForward,
        Kernel::Conv2dMaxPoolGapBackwardWeight,
        Kernel::SumPartials,
        Kernel::MaxPool2Forward,
        Kernel::MaxPool2Backward,
        Kernel::DropoutForward,
        Kernel::DropoutBackward,
        Kernel::GapForward,
        Kernel::GapBackward,
        Kernel::DenseForward,
        Kernel::DenseBackwardInput,
        Kernel::DenseBackwardWeight,
        Kernel::DistanceForward,
        Kernel::DistanceBackward,
        Kernel::ContrastiveForward,
        Kernel::ContrastiveBackward,
        Kernel::AdamUpdate,
        Kernel::GatherPairs,
        Kernel::PairwiseDistanceForward,
        Kernel::PairwiseDistanceBackward,
        Kernel::BatchContrastiveForward,
        Kernel::BatchContrastiveBackward,
        Kernel::BatchTripletForward,
        Kernel::BatchTripletBackward,
    ];

    /// (shader file, entry point)
    pub fn source(self) -> (&'static str, &'static str) {
        match self {
            Kernel::Conv2dForward => ("conv2d", "conv2d_forward"),
            Kernel::Conv2dBackwardInput => ("conv2d", "conv2d_backward_input"),
            Kernel::Conv2dBackwardWeight => ("conv2d", "conv2d_backward_weight"),
            Kernel::Conv2dForwardTiled => ("conv2d_tiled", "conv2d_forward_tiled"),
            Kernel::Conv2dBackwardInputTiled => ("conv2d_tiled", "conv2d_backward_input_tiled"),
            Kernel::Conv2dBackwardWeightTiled => ("conv2d_tiled", "conv2d_backward_weight_tiled"),
            Kernel::Conv2dMaxPoolGapForward => ("conv_block", "conv2d_maxpool_gap_forward"),
            Kernel::Conv2dMaxPoolGapBackwardWeight => ("conv_block", "conv2d_maxpool_gap_backward_weight"),
            Kernel::SumPartials => ("reduce", "sum_partials"),
            Kernel::MaxPool2Forward => ("maxpool", "maxpool2_forward"),
            Kernel::MaxPool2Backward => ("maxpool", "maxpool2_backward"),
            Kernel::DropoutForward => ("dropout", "dropout_forward"),
            Kernel::DropoutBackward => ("dropout", "dropout_backward"),
            Kernel::GapForward => ("gap", "gap_forward"),
            Kernel::GapBackward => ("gap", "gap_backward"),
            Kernel::DenseForward => ("dense", "dense_forward"),
            Kernel::DenseBackwardInput => ("dense", "dense_backward_input"),
            Kernel::DenseBackwardWeight => ("dense", "dense_backward_weight"),
            Kernel::DistanceForward => ("distance", "distance_forward"),
            Kernel::DistanceBackward => ("distance", "distance_backward"),
            Kernel::ContrastiveForward => ("contrastive", "contrastive_forward"),
            Kernel::ContrastiveBackward => ("contrastive", "contrastive_backward"),
            Kernel::AdamUpdate => ("adam", "adam_update"),
            Kernel::GatherPairs => ("gather", "gather_pairs"),
            Kernel::PairwiseDistanceForward => ("batch_loss", "pairwise_distance_forward"),
            Kernel::PairwiseDistanceBackward => ("batch_loss", "pairwise_distance_backward"),
            Kernel::BatchContrastiveForward => ("batch_loss", "batch_contrastive_forward"),
            Kernel::BatchContrastiveBackward => ("batch_loss", "batch_contrastive_backward"),
            Kernel::BatchTripletForward => ("batch_loss", "batch_triplet_forward"),
            Kernel::BatchTripletBackward => ("batch_loss", "batch_triplet_backward"),
        }
    }

    pub fn name(self) -> &'static str {
        self.source().1
    }
}

/// The invocations of every workgroup; each shader declares @workgroup_size(256).
pub const WORKGROUP_SIZE: u32 = 256;

/// A pipeline's identity: its kernel and its constants' values as bits.
type PipelineKey = (Kernel, Vec<(&'static str, u64)>);

/// A part of a buffer bound to one binding: `len` f32s from f32 index `offset`.
#[derive(Clone, Debug)]
pub struct Region {
    pub buffer: wgpu::Buffer,
    pub offset: usize,
    pub len: usize,
}

impl Region {
    pub fn whole(buffer: &wgpu::Buffer) -> Region {
        Region { buffer: buffer.clone(), offset: 0, len: (buffer.size() / 4) as usize }
    }
    pub fn new(buffer: &wgpu::Buffer, offset: usize, len: usize) -> Region {
        Region { buffer: buffer.clone(), offset, len }
    }
}

impl From<&wgpu::Buffer> for Region {
    fn from(buffer: &wgpu::Buffer) -> Region {
        Region::whole(buffer)
    }
}

/// What a launch must do at the least, for a benchmark to set its time against: floating-point
/// operations (a multiply-add counts two) and bytes read plus written once each.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Work {
    pub flops: f64,
    pub bytes: f64,
}

/// One kernel launch, ready to record: its pipeline, its bound buffers and its grid.
pub struct Dispatch {
    pub kernel: Kernel,
    pub work: Work,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

impl Dispatch {
    /// The launch with its least work: `flops` operations and `floats` f32s (4 bytes each) moved.
    pub fn with_work(mut self, flops: usize, floats: usize) -> Dispatch {
        self.work = Work { flops: flops as f64, bytes: 4.0 * floats as f64 };
        self
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }
}

/// Records dispatches into one compute pass and submits it, without waiting.
pub fn submit(gpu: &Gpu, dispatches: &[&Dispatch]) -> wgpu::SubmissionIndex {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    record(&mut encoder, dispatches);
    gpu.queue.submit([encoder.finish()])
}

/// Records dispatches, in order, into one compute pass of `encoder`.
pub fn record(encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) {
    let mut pass = encoder.begin_compute_pass(&Default::default());
    for d in dispatches {
        d.record(&mut pass);
    }
}

/// The pipeline-overridable constants of one launch, as (name in the WGSL, value).
pub type Constants = [(&'static str, f64)];

pub struct Kernels {
    device: wgpu::Device,
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    /// Built pipelines, by kernel and constants (values as bits, so the key is exact).
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    max_workgroups: u32,
}

impl Kernels {
    /// Compiles every shader; pipelines are built per shape, on first use.
    pub fn new(gpu: &Gpu) -> Kernels {
        let modules = SHADERS
            .iter()
            .map(|&(name, source)| {
                let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(name),
                    source: wgpu::ShaderSource::Wgsl(module_source(source).into()),
                });
                (name, module)
            })
            .collect();
        Kernels {
            device: gpu.device.clone(),
            modules,
            pipelines: Mutex::new(HashMap::new()),
            max_workgroups: gpu.limits.max_compute_workgroups_per_dimension,
        }
    }

    fn pipeline(&self, kernel: Kernel, constants: &Constants) -> wgpu::ComputePipeline {
        let key = (kernel, constants.iter().map(|&(name, v)| (name, v.to_bits())).collect());
        let mut pipelines = self.pipelines.lock().unwrap();
        pipelines
            .entry(key)
            .or_insert_with(|| {
                let (file, entry) = kernel.source();
                self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: None,
                    module: &self.modules[file],
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
                    cache: None,
                })
            })
            .clone()
    }

    /// Builds a launch of `kernel` over `threads` invocations with its shape's `constants`;
    /// `bindings` are (binding, region) pairs, exactly the ones the entry point uses.
    pub fn dispatch(&self, kernel: Kernel, constants: &Constants, bindings: &[(u32, Region)], threads: usize) -> Dispatch {
        let pipeline = self.pipeline(kernel, constants);
        let entries: Vec<_> = bindings
            .iter()
            .map(|(binding, region)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &region.buffer,
                    offset: (region.offset * 4) as u64,
                    size: wgpu::BufferSize::new((region.len.max(1) * 4) as u64),
                }),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name()),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch { kernel, work: Work::default(), pipeline, bind_group, workgroups: self.grid(threads) }
    }

    /// A 2-D grid of workgroups covering `threads` invocations: x up to the adapter's limit, y the rest.
    fn grid(&self, threads: usize) -> [u32; 3] {
        let groups = threads.div_ceil(WORKGROUP_SIZE as usize).max(1) as u64;
        let max = self.max_workgroups as u64;
        if groups <= max {
            [groups as u32, 1, 1]
        } else {
            [max as u32, groups.div_ceil(max) as u32, 1]
        }
    }
}
