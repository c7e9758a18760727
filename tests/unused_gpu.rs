//! A GPU the program cannot use is said: a machine with a GPU device node whose picked adapter is a CPU
//! one gets the usual causes and their fixes, checked on folders of fake nodes standing for /dev.

use gpu_siamese::gpu::unused::{gpu_nodes, unused_gpu_message, Machine};
use std::path::Path;
use std::process::Command;

/// What the check is told of a software adapter.
const LAVAPIPE: &str = "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu, driver llvmpipe Mesa 22.3.6)";
/// A machine with fake nodes, `capabilities` and Vulkan drivers `drivers`.
fn machine(dev: &Path, capabilities: Option<&str>, drivers: &[&str]) -> Machine {
    Machine { dev: dev.to_path_buf(), capabilities: capabilities.map(String::from), vulkan_drivers: drivers.iter().map(|d| d.to_string()).collect() }
}

const ONLY_LAVAPIPE: &[&str] = &["lvp_icd.x86_64.json"];

/// A folder standing for /dev holding `nodes` (empty files).
fn fake_dev(test: &str, nodes: &[&str]) -> std::path::PathBuf {
    let dev = std::env::temp_dir().join(format!("gpu-siamese-dev-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dev);
    for node in nodes {
        let path = dev.join(node);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"").unwrap();
    }
    dev
}

#[test]
fn the_nodes_are_nvidias_and_the_render_nodes() {
    let dev = fake_dev("nodes", &["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "dri/renderD128", "dri/card0", "null"]);
    let names: Vec<String> = gpu_nodes(&dev).iter().map(|p| p.strip_prefix(&dev).unwrap().display().to_string()).collect();
    assert_eq!(names, ["dri/renderD128", "nvidia0", "nvidia1"]);
    assert!(gpu_nodes(Path::new("/nonexistent-folder")).is_empty());
}

#[test]
fn an_nvidia_container_without_graphics_is_named_with_its_fix() {
    let dev = fake_dev("nvidia", &["nvidia0", "nvidiactl"]);
    let message = unused_gpu_message(LAVAPIPE, wgpu::DeviceType::Cpu, &machine(&dev, Some("compute,utility"), ONLY_LAVAPIPE)).expect("a GPU node and a CPU adapter are said");
    assert!(message.contains(&format!("{}", dev.join("nvidia0").display())), "{message}");
    assert!(message.contains(LAVAPIPE), "{message}");
    assert!(message.contains("NVIDIA_DRIVER_CAPABILITIES=compute,utility"), "{message}");
    assert!(message.contains("NVIDIA_DRIVER_CAPABILITIES=all"), "the fix: {message}");
    assert!(message.contains("nvidia-vulkan-icd"), "the other cause, the missing Vulkan driver: {message}");
    assert!(!message.contains("mesa-vulkan-drivers"), "no render node, no Mesa advice: {message}");
    // With graphics among the capabilities the container is not the cause; the driver still may be.
    for caps in [Some("compute,utility,graphics"), Some("all"), None] {
        let message = unused_gpu_message(LAVAPIPE, wgpu::DeviceType::Cpu, &machine(&dev, caps, ONLY_LAVAPIPE)).unwrap();
        assert!(!message.contains("without the `graphics` driver capability"), "{caps:?}: {message}");
        assert!(message.contains("nvidia-vulkan-icd"), "{message}");
    }
}

#[test]
fn a_render_node_without_a_vulkan_driver_names_mesa() {
    let dev = fake_dev("render", &["dri/renderD128", "dri/card0"]);
    let message = unused_gpu_message(LAVAPIPE, wgpu::DeviceType::Cpu, &machine(&dev, None, ONLY_LAVAPIPE)).unwrap();
    assert!(message.contains("renderD128") && message.contains("apt-get install mesa-vulkan-drivers"), "{message}");
    assert!(!message.contains("NVIDIA"), "{message}");
    assert!(message.contains("Vulkan drivers installed: lvp_icd.x86_64.json"), "{message}");
    // With Mesa's GPU drivers there, installing them is no advice: the GPU is one they do not take.
    let message = unused_gpu_message(LAVAPIPE, wgpu::DeviceType::Cpu, &machine(&dev, None, &["intel_icd.x86_64.json", "lvp_icd.x86_64.json", "radeon_icd.x86_64.json"])).unwrap();
    assert!(message.contains("none took the GPU") && !message.contains("apt-get install mesa-vulkan-drivers"), "{message}");
}

#[test]
fn an_installed_nvidia_driver_that_gave_no_adapter_is_a_version_mismatch() {
    let dev = fake_dev("nvidia-installed", &["nvidia0"]);
    let message = unused_gpu_message(LAVAPIPE, wgpu::DeviceType::Cpu, &machine(&dev, None, &["lvp_icd.x86_64.json", "nvidia_icd.json"])).unwrap();
    assert!(message.contains("NVIDIA's Vulkan driver is installed but gave no adapter") && message.contains("nvidia-smi"), "{message}");
    assert!(!message.contains("no Vulkan driver for the NVIDIA GPU is installed"), "{message}");
}

#[test]
fn nothing_is_said_of_a_gpu_adapter_or_a_machine_without_a_gpu() {
    let with_gpu = fake_dev("quiet", &["nvidia0", "dri/renderD128"]);
    let without = fake_dev("none", &["null", "dri/card0"]);
    for kind in [wgpu::DeviceType::DiscreteGpu, wgpu::DeviceType::IntegratedGpu, wgpu::DeviceType::VirtualGpu] {
        assert_eq!(unused_gpu_message("a GPU", kind, &machine(&with_gpu, Some("compute"), ONLY_LAVAPIPE)), None, "{kind:?}");
    }
    assert_eq!(unused_gpu_message(LAVAPIPE, wgpu::DeviceType::Cpu, &machine(&without, Some("compute"), ONLY_LAVAPIPE)), None);
}

#[test]
fn adapters_and_train_say_it_on_this_machine_when_its_adapter_is_a_cpu() {
    // The binary itself, pointed at fake nodes: on these machines the adapter is lavapipe, a CPU one, and
    // the warning must show; on a machine whose adapter is a GPU it must not.
    let dev = fake_dev("cli", &["nvidia0", "dri/renderD128"]);
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
            .args(args)
            .env("GPU_SIAMESE_DEVICE_NODES", &dev)
            .env("NVIDIA_DRIVER_CAPABILITIES", "compute,utility")
            .env("GPU_SIAMESE_NO_TUNE", "1")
            .output()
            .unwrap();
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let (ok, picked) = run(&["adapters", "--picked"]);
    assert!(ok, "{picked}");
    let cpu = picked.contains("Cpu");
    let (ok, listing) = run(&["adapters"]);
    assert!(ok, "{listing}");
    let scratch = std::env::temp_dir().join(format!("gpu-siamese-unused-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fashion-mnist-small");
    let out = scratch.join("run");
    let (ok, train) = run(&["train", "--data", data, "--train-limit", "100", "--test-limit", "50", "--batch-size", "16", "--epochs", "1", "--out", out.to_str().unwrap()]);
    assert!(ok, "{train}");
    for (what, output) in [("adapters --picked", &picked), ("adapters", &listing), ("train", &train)] {
        assert_eq!(output.contains("this machine has a GPU"), cpu, "{what} on a {} adapter:\n{output}", if cpu { "CPU" } else { "GPU" });
        if cpu {
            assert!(output.contains("NVIDIA_DRIVER_CAPABILITIES=compute,utility") && output.contains("dri/renderD128"), "{what}:\n{output}");
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
