//! A GPU the program cannot use: the machine has a GPU device node, but the adapter picked is a CPU
//! one (lavapipe, llvmpipe), so everything runs emulated and far slower. Said at the top of `adapters`
//! and `train`, with the usual causes and how to mend each.

use std::path::{Path, PathBuf};

/// The folder standing for /dev, for the tests: GPU_SIAMESE_DEVICE_NODES, else /dev.
fn device_folder() -> PathBuf {
    std::env::var_os("GPU_SIAMESE_DEVICE_NODES").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/dev"))
}

/// The GPU device nodes under `dev`: NVIDIA's (`nvidia0`, `nvidia1`, …) and the kernel's render nodes
/// (`dri/renderD128`, …, one per AMD, Intel or other DRM GPU), sorted.
pub fn gpu_nodes(dev: &Path) -> Vec<PathBuf> {
    let matching = |folder: &Path, prefix: &str| -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
            .map(|e| e.path())
            .collect()
    };
    let mut nodes = matching(dev, "nvidia");
    nodes.extend(matching(&dev.join("dri"), "renderD"));
    nodes.sort();
    nodes
}

/// The Vulkan drivers (ICD manifests) installed, by file name: what the loader can offer wgpu.
fn vulkan_drivers() -> Vec<String> {
    if let Some(files) = std::env::var_os("VK_ICD_FILENAMES").or_else(|| std::env::var_os("VK_DRIVER_FILES")) {
        return std::env::split_paths(&files).filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    }
    let mut drivers: Vec<String> = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    drivers.sort();
    drivers
}

/// What the check looks at on a machine.
pub struct Machine {
    /// The folder of device nodes: /dev, or GPU_SIAMESE_DEVICE_NODES (the tests' fake nodes).
    pub dev: PathBuf,
    /// NVIDIA_DRIVER_CAPABILITIES, which NVIDIA's container runtime reads.
    pub capabilities: Option<String>,
    /// The Vulkan drivers' manifests installed, by file name.
    pub vulkan_drivers: Vec<String>,
}

impl Machine {
    pub fn this() -> Machine {
        Machine { dev: device_folder(), capabilities: std::env::var("NVIDIA_DRIVER_CAPABILITIES").ok(), vulkan_drivers: vulkan_drivers() }
    }
}

/// What to tell a user whose picked adapter (`picked`, described) is of `device_type` while `machine`
/// has a GPU, or None when the adapter is not a CPU one or no GPU node is there.
pub fn unused_gpu_message(picked: &str, device_type: wgpu::DeviceType, machine: &Machine) -> Option<String> {
    if device_type != wgpu::DeviceType::Cpu {
        return None;
    }
    let nodes = gpu_nodes(&machine.dev);
    if nodes.is_empty() {
        return None;
    }
    let listed = nodes.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let nvidia = nodes.iter().any(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("nvidia")));
    let render = nodes.iter().any(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("renderD")));
    let drivers = &machine.vulkan_drivers;
    let has_driver = |prefix: &str| drivers.iter().any(|d| d.starts_with(prefix));
    let mut causes = Vec::new();
    if nvidia {
        if let Some(caps) = machine.capabilities.as_deref().filter(|caps| !caps.split(',').any(|c| matches!(c.trim(), "graphics" | "all"))) {
            causes.push(format!(
                "this NVIDIA container was started without the `graphics` driver capability \
                 (NVIDIA_DRIVER_CAPABILITIES={caps}), so the driver's Vulkan and GL libraries were not mounted: \
                 start it with NVIDIA_DRIVER_CAPABILITIES=all (or add `graphics`, e.g. \
                 `docker run --gpus all -e NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics ...`)"
            ));
        }
        causes.push(if has_driver("nvidia") {
            "NVIDIA's Vulkan driver is installed but gave no adapter: its libraries may not match the kernel \
             driver's version (`nvidia-smi` names it; reinstall the same version of the driver's Vulkan and GL \
             part, Debian `nvidia-vulkan-icd`, Ubuntu `libnvidia-gl-<version>`)"
                .to_string()
        } else {
            "no Vulkan driver for the NVIDIA GPU is installed: install the vendor's driver with its Vulkan part \
             (Debian: `nvidia-vulkan-icd`; Ubuntu: `libnvidia-gl-<version>` matching the kernel driver), whose \
             manifest is nvidia_icd.json"
                .to_string()
        });
    }
    if render {
        causes.push(if has_driver("radeon") || has_driver("intel") {
            "Mesa's Vulkan drivers are installed but none took the GPU behind /dev/dri: it may be one they do \
             not drive (a virtual GPU, or an NVIDIA one under nouveau), or a driver too old for it (a newer \
             `mesa-vulkan-drivers`)"
                .to_string()
        } else {
            "no Vulkan driver for the AMD, Intel or other GPU behind /dev/dri is installed: install Mesa's \
             (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`)"
                .to_string()
        });
        let unreadable: Vec<String> = nodes
            .iter()
            .filter(|p| p.to_string_lossy().contains("renderD"))
            .filter(|p| std::fs::OpenOptions::new().read(true).write(true).open(p).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied))
            .map(|p| p.display().to_string())
            .collect();
        if !unreadable.is_empty() {
            causes.insert(0, format!("this user may not open {}: add it to the `render` group (`usermod -aG render $USER`, then log in again)", unreadable.join(", ")));
        }
    }
    let installed = if drivers.is_empty() { "none".to_string() } else { drivers.join(", ") };
    let mut message = format!(
        "this machine has a GPU ({listed}), but the adapter picked is a CPU one, {picked}: everything runs \
         emulated on the processor, many times slower. Vulkan drivers installed: {installed}. The usual causes:"
    );
    for cause in causes {
        message.push_str("\n  - ");
        message.push_str(&cause);
    }
    message.push_str("\n`gpu-siamese adapters` then lists the GPU; WGPU_ADAPTER_NAME picks an adapter by name.");
    Some(message)
}

/// The message for this machine.
pub fn unused_gpu(picked: &wgpu::AdapterInfo) -> Option<String> {
    unused_gpu_message(&super::describe(picked), picked.device_type, &Machine::this())
}
