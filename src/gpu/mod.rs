//! The GPU: adapter choice, the device with the adapter's real limits, buffers, and the kernels.

mod kernels;
pub mod ops;
pub mod tune;
pub mod unused;

pub use kernels::{all_kernels, module_source, record, submit, Dispatch, Kernel, Kernels, Region, Work, validate_module, MOST_STORAGE_BUFFERS, PRELUDE, WORKGROUP_SIZE};
pub use ops::StepUniform;

use std::fmt;
use wgpu::util::DeviceExt;

/// What to tell a user who has no adapter at all.
pub const NO_ADAPTER_HELP: &str = "no GPU adapter found. gpu-siamese needs a Vulkan, Metal, DX12 or GL driver; \
on a machine without a GPU, install the software Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`, \
or `make deps` in this repository) and run again. `gpu-siamese adapters` lists what wgpu can see.";

/// The same for the GL backend alone, which on a machine without a GPU is Mesa's llvmpipe through EGL.
pub const NO_GL_ADAPTER_HELP: &str = "no GL adapter found. On a machine without a GPU, install Mesa's GL driver and EGL \
(Debian/Ubuntu: `apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri`, or `make deps` in this repository) and run again";

#[derive(Debug)]
pub enum GpuError {
    NoAdapter,
    NoMatchingAdapter { wanted: String, available: Vec<String> },
    Device(wgpu::RequestDeviceError),
    TooFewStorageBuffers { adapter: String, offered: u32 },
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            GpuError::NoAdapter => match std::env::var("WGPU_BACKEND") {
                Ok(backends) if backends.to_lowercase().split(',').any(|b| b.trim() == "gl") && !backends.to_lowercase().contains("vulkan") => {
                    write!(f, "{NO_GL_ADAPTER_HELP} (WGPU_BACKEND={backends})")
                }
                Ok(backends) => write!(f, "{NO_ADAPTER_HELP} (WGPU_BACKEND={backends} limits the backends looked at)"),
                Err(_) => f.write_str(NO_ADAPTER_HELP),
            },
            GpuError::NoMatchingAdapter { wanted, available } => write!(
                f,
                "WGPU_ADAPTER_NAME={wanted:?} matches no adapter; available: {}",
                if available.is_empty() { "none".to_string() } else { available.join("; ") }
            ),
            GpuError::Device(e) => write!(f, "the adapter refused to open a device: {e}"),
            GpuError::TooFewStorageBuffers { adapter, offered } => write!(
                f,
                "{adapter} offers {offered} storage buffers per compute shader; gpu-siamese's kernels bind up to \
                 {MOST_STORAGE_BUFFERS}. Pick another adapter (gpu-siamese adapters lists them; WGPU_ADAPTER_NAME or \
                 WGPU_BACKEND choose)"
            ),
        }
    }
}

impl std::error::Error for GpuError {}

/// The instance wgpu's environment variables describe (`WGPU_BACKEND` among them).
#[cfg(not(target_arch = "wasm32"))]
fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter the instance sees, with its description.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Vec<wgpu::Adapter> {
    let instance = instance();
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// Lower is better: real GPUs before software ones (the reverse of their order under
/// `WGPU_POWER_PREF=low` for discrete and integrated), native APIs before GL.
#[cfg(not(target_arch = "wasm32"))]
fn adapter_rank(info: &wgpu::AdapterInfo, power: Option<wgpu::PowerPreference>) -> (u8, u8) {
    use wgpu::DeviceType::*;
    let kind = match (info.device_type, power) {
        (IntegratedGpu, Some(wgpu::PowerPreference::LowPower)) => 0,
        (DiscreteGpu, _) => 0,
        (IntegratedGpu, _) => 1,
        (VirtualGpu, _) => 2,
        (Other, _) => 3,
        (Cpu, _) => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, backend)
}

pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?}, driver {} {})", info.name, info.backend, info.device_type, info.driver, info.driver_info)
}

/// An open device on the chosen adapter, with the adapter's own limits.
pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Whether kernels may use subgroup operations: the adapter has them, in subgroups of a multiple of
    /// eight lanes, and GPU_SIAMESE_NO_SUBGROUPS is not set (which runs everything without them, as on
    /// an adapter that lacks them).
    pub subgroups: bool,
}

impl Gpu {
    /// Opens the best adapter: the one `WGPU_ADAPTER_NAME` names (a case-insensitive substring), else a
    /// hardware GPU, else a software one such as lavapipe. `WGPU_BACKEND` restricts the backends and
    /// `WGPU_POWER_PREF=low` prefers integrated GPUs.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Gpu, GpuError> {
        let mut adapters = list_adapters();
        if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
            let available = adapters.iter().map(|a| describe(&a.get_info())).collect();
            let needle = wanted.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&needle));
            if adapters.is_empty() {
                return Err(GpuError::NoMatchingAdapter { wanted, available });
            }
        }
        let power = wgpu::PowerPreference::from_env();
        adapters.sort_by_key(|a| adapter_rank(&a.get_info(), power));
        let adapter = adapters.into_iter().next().ok_or(GpuError::NoAdapter)?;
        Self::open(adapter)
    }

    /// The browser's adapter, through WebGPU (the page's way in: a browser offers one adapter at a time).
    #[cfg(target_arch = "wasm32")]
    pub async fn in_browser() -> Result<Gpu, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor { backends: wgpu::Backends::BROWSER_WEBGPU, ..wgpu::InstanceDescriptor::new_without_display_handle() });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() })
            .await
            .map_err(|_| GpuError::NoAdapter)?;
        Self::open_async(adapter).await
    }

    /// `open_async`, waited for.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(adapter: wgpu::Adapter) -> Result<Gpu, GpuError> {
        pollster::block_on(Self::open_async(adapter))
    }

    /// Opens a device asking for everything the adapter offers: the defaults WebGPU guarantees (4 storage
    /// buffers per stage, 128 MiB bindings) are too small for the twin.
    pub async fn open_async(adapter: wgpu::Adapter) -> Result<Gpu, GpuError> {
        let limits = adapter.limits();
        let info = adapter.get_info();
        if limits.max_storage_buffers_per_shader_stage < MOST_STORAGE_BUFFERS {
            return Err(GpuError::TooFewStorageBuffers { adapter: describe(&info), offered: limits.max_storage_buffers_per_shader_stage });
        }
        let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size >= 8
            && std::env::var_os("GPU_SIAMESE_NO_SUBGROUPS").is_none();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("gpu-siamese"),
                required_features: if subgroups { wgpu::Features::SUBGROUP } else { wgpu::Features::empty() },
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(GpuError::Device)?;
        Ok(Gpu { adapter, device, queue, info, limits, subgroups })
    }

    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    /// The most bytes one buffer binding may hold on this adapter.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// A storage buffer of `len` f32s (rounded up to whole quads, so that kernels may view it as vec4s)
    /// that can be copied to and from.
    pub fn storage(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1).div_ceil(4) * 16) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `data`.
    pub fn storage_from(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.storage_from_bytes(label, bytemuck::cast_slice(data))
    }

    /// A storage buffer holding `bytes`, zero-padded to a whole number of quads of u32s.
    pub fn storage_from_bytes(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let mut contents = bytes.to_vec();
        contents.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A uniform buffer holding `value`, which can be rewritten.
    pub fn uniform_from<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    pub fn write(&self, buffer: &wgpu::Buffer, offset: usize, data: &[f32]) {
        self.queue.write_buffer(buffer, (offset * 4) as u64, bytemuck::cast_slice(data));
    }

    /// Copies `len` f32s from `offset` of `buffer` back to the CPU once all submitted work is done.
    /// The core reads back only through this: in a browser the copy arrives when the page's event loop
    /// runs, so the core awaits it; the command line blocks on it (`read`).
    pub fn read_async(&self, buffer: &wgpu::Buffer, offset: usize, len: usize) -> ReadBack {
        if len == 0 {
            return ReadBack { staging: None, device: self.device.clone(), mapped: Default::default() };
        }
        let size = (len * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, (offset * 4) as u64, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let mapped: std::sync::Arc<std::sync::Mutex<Mapping>> = Default::default();
        let signal = mapped.clone();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let mut state = signal.lock().unwrap();
            state.result = Some(result.map_err(|e| e.to_string()));
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        });
        ReadBack { staging: Some(staging), device: self.device.clone(), mapped }
    }

    /// `read_async`, waited for.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, buffer: &wgpu::Buffer, offset: usize, len: usize) -> Vec<f32> {
        pollster::block_on(self.read_async(buffer, offset, len))
    }

    /// Blocks until every submitted command has finished.
    pub fn wait(&self) {
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("waiting for the GPU");
    }
}

#[derive(Default)]
struct Mapping {
    result: Option<Result<(), String>>,
    waker: Option<std::task::Waker>,
}

/// A read-back under way: a future of the values. Natively, polling it waits for the device; in a
/// browser it is woken when WebGPU has mapped the copy.
pub struct ReadBack {
    staging: Option<wgpu::Buffer>,
    device: wgpu::Device,
    mapped: std::sync::Arc<std::sync::Mutex<Mapping>>,
}

impl std::future::Future for ReadBack {
    type Output = Vec<f32>;

    fn poll(self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<Vec<f32>> {
        let Some(staging) = &self.staging else { return std::task::Poll::Ready(Vec::new()) };
        let mut state = self.mapped.lock().unwrap();
        if state.result.is_none() {
            // Natively the map callback runs inside poll; in a browser poll returns at once and the
            // callback comes from the event loop.
            drop(state);
            self.device.poll(wgpu::PollType::wait_indefinitely()).expect("waiting for the GPU");
            state = self.mapped.lock().unwrap();
        }
        match &state.result {
            None => {
                state.waker = Some(context.waker().clone());
                std::task::Poll::Pending
            }
            Some(Err(e)) => panic!("mapping the read-back buffer: {e}"),
            Some(Ok(())) => {
                let view = staging.get_mapped_range(..).expect("mapped range");
                let values = bytemuck::cast_slice(&view).to_vec();
                drop(view);
                staging.unmap();
                std::task::Poll::Ready(values)
            }
        }
    }
}
