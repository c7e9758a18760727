//! Every WGSL file validates with naga as the device compiles it (the shared prelude, then the file),
//! every kernel's entry point is in the file it names, and what the prelude holds no shader repeats.

use gpu_siamese::gpu::{all_kernels, module_source, PRELUDE};
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

#[test]
fn every_shader_validates_with_naga() {
    for (name, source) in shader_files() {
        let full = module_source(&source);
        let module = naga::front::wgsl::parse_str(&full).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&full)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}.wgsl does not validate: {e:?}"));
    }
}

#[test]
fn every_kernel_has_its_entry_point() {
    let files = shader_files();
    for kernel in all_kernels() {
        let on_disk = files.get(kernel.file).unwrap_or_else(|| panic!("{}: no shaders/{}.wgsl", kernel.entry, kernel.file));
        assert_eq!(on_disk, kernel.source, "{}.wgsl embedded as it is on disk", kernel.file);
        let module = naga::front::wgsl::parse_str(&module_source(kernel.source)).unwrap();
        assert!(module.entry_points.iter().any(|e| e.name == kernel.entry), "{}.wgsl lacks {}", kernel.file, kernel.entry);
    }
    // And every entry point of every shader file is a kernel something launches: nothing in shaders/
    // goes untested.
    for (name, source) in files {
        let module = naga::front::wgsl::parse_str(&module_source(&source)).unwrap();
        for entry in &module.entry_points {
            assert!(all_kernels().iter().any(|k| k.file == name && k.entry == entry.name), "{name}.wgsl's {} is launched by nothing", entry.name);
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
