//! The kernels' pipelines and launches. Shapes reach a kernel as pipeline-overridable constants, not
//! uniforms: the compiler then sees fixed sizes, unrolls the small loops and turns the index arithmetic's
//! divisions into multiplies (a CPU adapter such as lavapipe has no vector integer division, and a
//! division per element costs more than the arithmetic). So there is one pipeline per entry point and
//! shape, built the first time that shape is asked for and cached; a twin asks for all of its own when it
//! is built. A [`Dispatch`] is one launch with its buffers bound, built once and recorded as often as
//! needed.

use super::tune::Tuning;
use super::Gpu;
use crate::layers::conv2d::{Conv2dDims, Product, Variant};
use std::collections::HashMap;
use std::sync::Mutex;

/// What every shader shares (the step uniform, the thread index, the hashes, the exact multiply-add),
/// prepended to each shader file when its module is built.
pub const PRELUDE: &str = include_str!("../../shaders/common.wgsl");

/// A shader file's source as naga compiles it: the prelude, then the file.
pub fn module_source(file_source: &str) -> String {
    format!("{PRELUDE}\n{file_source}")
}

/// The directive WGSL requires before a module uses subgroup operations. Tint (the browsers' compiler)
/// insists on it; naga 30 rejects it as not yet implemented and takes the operations once the device
/// has the feature, so it is written only where the shader goes to a browser's compiler.
pub const ENABLE_SUBGROUPS: &str = "enable subgroups;";

/// A kernel: a WGSL entry point and the shader module it is in. A module is one file of `shaders/`, or
/// a few joined (a variant: the convolution engine after one of its ways of sharing loads), each
/// embedded by the Rust module that launches it. Named as in its shader and in the CPU reference.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// The module's name: its file's, or its files' joined by '+'.
    pub module: &'static str,
    /// The files it is made of, in order, as (name in `shaders/`, source).
    pub files: &'static [(&'static str, &'static str)],
    pub entry: &'static str,
}

impl Kernel {
    pub const fn new(module: &'static str, files: &'static [(&'static str, &'static str)], entry: &'static str) -> Kernel {
        Kernel { module, files, entry }
    }

    pub fn name(self) -> &'static str {
        self.entry
    }

    /// The module's source without the prelude.
    pub fn source(self) -> String {
        self.files.iter().map(|(_, source)| *source).collect::<Vec<_>>().join("\n")
    }

    /// The module's whole source as named parts, joined by newlines in this order: `enable subgroups;`
    /// where the module uses subgroups and `directives` is asked for (WebGPU in a browser), the
    /// prelude, then its files. A compiler's line number falls in one of them ([`Kernel::locate`]).
    pub fn source_parts(self, directives: bool) -> Vec<(&'static str, &'static str)> {
        let mut parts = Vec::new();
        if directives && self.needs_subgroups() {
            parts.push(("enable", ENABLE_SUBGROUPS));
        }
        parts.push(("common", PRELUDE));
        parts.extend(self.files.iter().copied());
        parts
    }

    /// The source a device compiles: with `directives`, as WGSL requires of every compiler (a browser's);
    /// without, as naga 30 takes it (Vulkan, Metal, DX12 and GL through wgpu).
    pub fn device_source(self, directives: bool) -> String {
        self.source_parts(directives).iter().map(|(_, source)| *source).collect::<Vec<_>>().join("\n")
    }

    /// Which file (in `shaders/`, without .wgsl) and line of it line `line` (from 1) of
    /// [`Kernel::device_source`] is.
    pub fn locate(self, directives: bool, line: u32) -> (&'static str, u32) {
        let mut first = 1;
        let parts = self.source_parts(directives);
        for (name, source) in &parts {
            // A part takes its lines plus the newline that joins it to the next.
            let lines = source.split('\n').count() as u32;
            if line < first + lines {
                return (name, line - first + 1);
            }
            first += lines;
        }
        (parts.last().unwrap().0, line.saturating_sub(first))
    }

    /// Whether the module uses subgroup operations (the device must have the feature).
    pub fn needs_subgroups(self) -> bool {
        // In code, not in comments: a file may say why it has no subgroups.
        self.files.iter().any(|(_, source)| source.lines().any(|line| line.split("//").next().unwrap_or("").contains("subgroup")))
    }

    /// How many storage buffers the entry point binds: an adapter offers a fixed number per shader
    /// stage (16 on Mesa's GL driver, 8 where WebGPU's defaults hold).
    pub fn storage_buffers(self) -> u32 {
        let (module, info) = validate_module(&self.source(), self.needs_subgroups()).unwrap_or_else(|e| panic!("{}: {e}", self.module));
        let index = module.entry_points.iter().position(|e| e.name == self.entry).unwrap_or_else(|| panic!("{} lacks {}", self.module, self.entry));
        let used = info.get_entry_point(index);
        module
            .global_variables
            .iter()
            .filter(|(handle, var)| matches!(var.space, naga::AddressSpace::Storage { .. }) && !used[*handle].is_empty())
            .count() as u32
    }
}

/// A module's source (without the prelude) parsed and validated with naga as the device will compile
/// it, with or without subgroup operations allowed; the error says where and why.
pub fn validate_module(file_source: &str, subgroups: bool) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let source = module_source(file_source);
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source))?;
    let capabilities = if subgroups { naga::valid::Capabilities::SUBGROUP } else { naga::valid::Capabilities::empty() };
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .map_err(|e| format!("does not validate: {e:?}"))?;
    Ok((module, info))
}

/// The most storage buffers any kernel may bind (a test holds every kernel to it): WebGPU's default per
/// shader stage, which Mesa's GL driver (16) and every Vulkan, Metal and DX12 adapter exceed. An adapter
/// offering fewer is refused when it is opened, rather than failing in the middle of a run.
pub const MOST_STORAGE_BUFFERS: u32 = 8;

impl PartialEq for Kernel {
    fn eq(&self, other: &Kernel) -> bool {
        (self.module, self.entry) == (other.module, other.entry)
    }
}

impl Eq for Kernel {}

impl std::hash::Hash for Kernel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.module, self.entry).hash(state)
    }
}

/// Every kernel the program launches: the layers' and the twin's own (gather, distances, losses, Adam).
pub fn all_kernels() -> Vec<Kernel> {
    let core = [crate::layers::layer_kernels().as_slice(), crate::layers::conv_block::KERNELS, super::ops::KERNELS].concat();
    #[cfg(not(target_arch = "wasm32"))]
    let core = [core.as_slice(), crate::bench::KERNELS, crate::search::KERNELS].concat();
    core
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
/// operations (a multiply-add counts two) and bytes read plus written once each; and, where a kernel
/// counts them, the floats its lanes load (each lane its own: the same value loaded by many lanes
/// counts as many times), which a CPU adapter pays for lane by lane.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Work {
    pub flops: f64,
    pub bytes: f64,
    pub lane_loads: f64,
}

/// One kernel launch, ready to record: its pipeline, its bound buffers and its grid.
pub struct Dispatch {
    pub kernel: Kernel,
    pub work: Work,
    /// Which variant of its kernel the launch runs (the convolution engine's sharing and tile), for
    /// `bench`'s table; empty where a kernel has one form.
    pub variant: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

impl Dispatch {
    /// The launch with its least work: `flops` operations and `floats` f32s (4 bytes each) moved.
    pub fn with_work(mut self, flops: usize, floats: usize) -> Dispatch {
        self.work = Work { flops: flops as f64, bytes: 4.0 * floats as f64, lane_loads: self.work.lane_loads };
        self
    }

    /// The launch's lanes load `floats` floats in all.
    pub fn with_lane_loads(mut self, floats: usize) -> Dispatch {
        self.work.lane_loads = floats as f64;
        self
    }

    /// The launch, named as running `variant`.
    pub fn with_variant(mut self, variant: String) -> Dispatch {
        self.variant = variant;
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
    pub(super) device: wgpu::Device,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(super) queue: wgpu::Queue,
    /// Whether the device has subgroups the kernels may use (see [`Gpu::subgroups`]).
    pub subgroups: bool,
    /// How the convolution engine's variants are chosen (see tune.rs).
    pub(super) tuning: Tuning,
    /// The convolution engine's variant for each layer shape and product, once chosen.
    conv_variants: Mutex<HashMap<(Conv2dDims, Product), Variant>>,
    /// Compiled shader files, by name, each built the first time one of its kernels is asked for.
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    /// Built pipelines, by kernel and constants (values as bits, so the key is exact).
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    max_workgroups: u32,
}

impl Kernels {
    /// Shaders are compiled, and pipelines built per shape, on first use; the convolution engine runs
    /// its default variants.
    pub fn new(gpu: &Gpu) -> Kernels {
        Kernels::with_tuning(gpu, Tuning::off(gpu))
    }

    /// Kernels whose convolution variants are measured on this adapter the first time each shape is
    /// met, and the choices kept in the tuning cache (see tune.rs); `tune` false, or GPU_SIAMESE_NO_TUNE
    /// set, runs the defaults.
    pub fn tuned(gpu: &Gpu, tune: bool) -> Kernels {
        let enabled = tune && std::env::var_os("GPU_SIAMESE_NO_TUNE").is_none();
        Kernels::with_tuning(gpu, Tuning::new(gpu, enabled, super::tune::cache_path()))
    }

    pub fn with_tuning(gpu: &Gpu, tuning: Tuning) -> Kernels {
        Kernels {
            device: gpu.device.clone(),
            queue: gpu.queue.clone(),
            subgroups: gpu.subgroups,
            tuning,
            conv_variants: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            max_workgroups: gpu.limits.max_compute_workgroups_per_dimension,
        }
    }

    pub fn pipeline(&self, kernel: Kernel, constants: &Constants) -> wgpu::ComputePipeline {
        // A layer describes its shape once to all of its kernels; each module takes the constants it
        // declares (an unknown one is an error).
        let declared = |name: &str| kernel.files.iter().any(|(_, source)| source.contains(&format!("override {name}:")));
        let constants: Vec<(&'static str, f64)> = constants.iter().copied().filter(|(name, _)| declared(name)).collect();
        let key = (kernel, constants.iter().map(|&(name, v)| (name, v.to_bits())).collect());
        let mut pipelines = self.pipelines.lock().unwrap();
        pipelines
            .entry(key)
            .or_insert_with(|| {
                let module = self.module(kernel);
                self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.entry),
                    layout: None,
                    module: &module,
                    entry_point: Some(kernel.entry),
                    compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
                    cache: None,
                })
            })
            .clone()
    }

    fn module(&self, kernel: Kernel) -> wgpu::ShaderModule {
        let mut modules = self.modules.lock().unwrap();
        modules
            .entry(kernel.module)
            .or_insert_with(|| {
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.module),
                    source: wgpu::ShaderSource::Wgsl(kernel.device_source(cfg!(target_arch = "wasm32")).into()),
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
        Dispatch { kernel, work: Work::default(), variant: String::new(), pipeline, bind_group, workgroups: self.grid(threads) }
    }

    /// Builds a launch of `groups` [x, y] workgroups; x past the adapter's limit folds into z (a kernel
    /// takes its x group as wg.z * nwg.x + wg.x).
    pub fn dispatch_groups(&self, kernel: Kernel, constants: &Constants, bindings: &[(u32, Region)], groups: [usize; 2]) -> Dispatch {
        let mut d = self.dispatch(kernel, constants, bindings, 0);
        let max = self.max_workgroups as usize;
        let [x, y] = [groups[0].max(1), groups[1].max(1)];
        d.workgroups = if x <= max { [x as u32, y as u32, 1] } else { [max as u32, y as u32, x.div_ceil(max) as u32] };
        d
    }

    /// The convolution engine's variant for `product` of layer `d`: the one chosen for this shape, or
    /// the default.
    pub fn conv2d_variant(&self, d: &Conv2dDims, product: Product) -> Variant {
        if let Some(v) = self.conv_variants.lock().unwrap().get(&(*d, product)) {
            return *v;
        }
        let v = self.tuned_variant(d, product);
        self.conv_variants.lock().unwrap().insert((*d, product), v);
        v
    }

    /// Uses `variant` for `product` of layers shaped `d` from now on.
    pub fn set_conv2d_variant(&self, d: &Conv2dDims, product: Product, variant: Variant) {
        self.conv_variants.lock().unwrap().insert((*d, product), variant);
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
