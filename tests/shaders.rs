//! Every WGSL file validates with naga as the device compiles it (the shared prelude, then the file),
//! declares the entry points the host expects, and leaves what the prelude holds to the prelude.

use gpu_siamese::gpu::{module_source, Kernel, PRELUDE, SHADERS};

#[test]
fn every_shader_validates_with_naga() {
    for (name, source) in SHADERS {
        let full = module_source(source);
        let module = naga::front::wgsl::parse_str(&full).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&full)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}.wgsl does not validate: {e:?}"));
        let on_disk = std::fs::read_to_string(format!("{}/shaders/{name}.wgsl", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(&on_disk, source, "{name}.wgsl embedded as it is on disk");
    }
}

#[test]
fn every_kernel_has_its_entry_point() {
    for kernel in Kernel::ALL {
        let (file, entry) = kernel.source();
        let source = SHADERS.iter().find(|(name, _)| *name == file).unwrap().1;
        let module = naga::front::wgsl::parse_str(&module_source(source)).unwrap();
        assert!(module.entry_points.iter().any(|e| e.name == entry), "{file}.wgsl lacks {entry}");
    }
    // And every shader file is listed (the prelude apart): nothing in shaders/ goes untested.
    let mut on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".wgsl").to_string())
        .filter(|name| name != "common")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SHADERS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
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
    for (file, source) in SHADERS {
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
