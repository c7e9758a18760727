//! Every shader module validates with naga as the device compiles it (the shared prelude, then its
//! files), every kernel's entry point is in its module, every file in shaders/ is part of a module
//! something launches, and what the prelude holds no shader repeats.

use gpu_siamese::gpu::{all_kernels, validate_module, PRELUDE};
use std::collections::BTreeMap;

/// Every shader file on disk but the prelude, by name.
fn shader_files() -> BTreeMap<String, String> {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "common.wgsl")
        .map(|p| (p.file_stem().unwrap().to_string_lossy().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

fn validate(name: &str, source: &str, subgroups: bool) -> naga::Module {
    validate_module(source, subgroups).unwrap_or_else(|e| panic!("{name}: {e}")).0
}

#[test]
fn every_module_validates_and_holds_its_kernels() {
    let files = shader_files();
    for kernel in all_kernels() {
        for (name, source) in kernel.files {
            let on_disk = files.get(*name).unwrap_or_else(|| panic!("{}: no shaders/{name}.wgsl", kernel.entry));
            assert_eq!(on_disk, source, "{name}.wgsl embedded as it is on disk");
        }
        let module = validate(kernel.module, &kernel.source(), kernel.needs_subgroups());
        assert!(module.entry_points.iter().any(|e| e.name == kernel.entry), "{} lacks {}", kernel.module, kernel.entry);
        // Only a module that needs subgroups may use them: the others must run on any adapter.
        if !kernel.needs_subgroups() {
            validate(kernel.module, &kernel.source(), false);
        }
    }
}

#[test]
fn every_shader_file_and_entry_point_is_launched() {
    // Nothing in shaders/ goes untested: every file is part of a module, and every entry point of every
    // file is a kernel something launches (in one of the modules the file is part of).
    let kernels = all_kernels();
    for name in shader_files().keys() {
        assert!(kernels.iter().any(|k| k.files.iter().any(|(f, _)| f == name)), "{name}.wgsl is in no kernel's module");
    }
    for kernel in &kernels {
        let module = validate(kernel.module, &kernel.source(), kernel.needs_subgroups());
        let defining = kernel.files.last().unwrap().0;
        for entry in &module.entry_points {
            let launched = kernels.iter().any(|k| k.entry == entry.name && k.files.iter().any(|(f, _)| *f == defining));
            assert!(launched, "{defining}.wgsl's {} is launched by nothing", entry.name);
        }
    }
}

#[test]
fn what_the_prelude_declares_no_shader_declares_again() {
    // WGSL has no includes: the prelude is the one copy of what kernels share. A shader that declared
    // one of its items again would not compile (a redeclaration), but a copy under another name would:
    // look for the items' bodies too.
    let module = naga::front::wgsl::parse_str(PRELUDE).expect("the prelude parses on its own");
    let names: Vec<String> = module
        .functions
        .iter()
        .filter_map(|(_, f)| f.name.clone())
        .chain(module.types.iter().filter_map(|(_, t)| t.name.clone()))
        .chain(module.constants.iter().filter_map(|(_, c)| c.name.clone()))
        .collect();
    assert!(names.iter().any(|n| n == "Step") && names.iter().any(|n| n == "pcg_hash") && names.iter().any(|n| n == "exact_fma"));
    for (file, source) in shader_files() {
        for name in &names {
            for form in [format!("fn {name}("), format!("struct {name} "), format!("const {name}:")] {
                assert!(!source.contains(&form), "{file}.wgsl declares the prelude's {name} again");
            }
        }
        for body in ["* 747796405u + 2891336453u", "(wg.y * nwg.x + wg.x) * WORKGROUP", "let c = 4097.0 * a;\n    let hi = c - (c - a);\n    return vec2"] {
            assert!(!source.contains(body), "{file}.wgsl copies the prelude's code: {body}");
        }
    }
    // The step uniform is the host's StepUniform, field for field.
    let step = PRELUDE.find("struct Step {").unwrap();
    let fields = PRELUDE[step..step + PRELUDE[step..].find('}').unwrap()].matches(':').count();
    assert_eq!(fields * 4, std::mem::size_of::<gpu_siamese::gpu::StepUniform>(), "Step has StepUniform's size");
}

#[test]
fn every_kernel_binds_no_more_storage_buffers_than_an_adapter_is_asked_for() {
    // Mesa's GL driver offers 16 storage buffers per shader stage, WebGPU's defaults 8: a kernel needing
    // more would fail there (and on GPUs like them) while every Vulkan test passed.
    let most = all_kernels().into_iter().map(|k| (k.storage_buffers(), k.entry)).max().unwrap();
    for kernel in all_kernels() {
        assert!(
            kernel.storage_buffers() <= gpu_siamese::gpu::MOST_STORAGE_BUFFERS,
            "{} binds {} storage buffers",
            kernel.entry,
            kernel.storage_buffers()
        );
    }
    eprintln!("the most storage buffers a kernel binds: {} ({})", most.0, most.1);
    assert!(most.0 >= 5, "the count sees the bindings: {most:?}");
}

#[test]
fn a_module_asks_for_subgroups_exactly_when_it_uses_them() {
    // A device without subgroups (a browser's with subgroups of 4, GL) compiles every module that does not
    // ask for them, and a module that asks gets `enable subgroups;` in a browser, which a device without
    // the feature refuses: the answer must be exact both ways, whatever the comments say.
    for kernel in all_kernels() {
        let without = validate_module(&kernel.source(), false);
        assert_eq!(kernel.needs_subgroups(), without.is_err(), "{}: needs_subgroups() says {}", kernel.module, kernel.needs_subgroups());
    }
    let direct = all_kernels().into_iter().find(|k| k.module == "conv2d_gemm+direct").unwrap();
    assert!(direct.source().contains("subgroups"), "the direct module mentions subgroups in a comment");
    assert!(!direct.needs_subgroups());
}
