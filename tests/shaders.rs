//! Every WGSL file parses and validates with naga as it stands, and declares the entry points the
//! host expects.

use gpu_siamese::gpu::{Kernel, SHADERS};

#[test]
fn every_shader_validates_with_naga() {
    for (name, source) in SHADERS {
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(source)));
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
        let module = naga::front::wgsl::parse_str(source).unwrap();
        assert!(module.entry_points.iter().any(|e| e.name == entry), "{file}.wgsl lacks {entry}");
    }
    // And every shader file is listed: nothing in shaders/ goes untested.
    let mut on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".wgsl").to_string())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SHADERS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn the_step_uniform_is_declared_alike_everywhere() {
    // WGSL has no includes: each shader that reads the per-step uniform declares `Step` itself. Every
    // copy must be the same, and match the host's StepUniform.
    let declarations: Vec<(&str, &str)> = SHADERS
        .iter()
        .filter_map(|(name, source)| {
            let start = source.find("struct Step {")?;
            let end = start + source[start..].find('}').unwrap() + 1;
            Some((*name, &source[start..end]))
        })
        .collect();
    assert!(declarations.len() >= 4, "dropout, contrastive, adam and gather read the step");
    for (name, declaration) in &declarations {
        assert_eq!(*declaration, declarations[0].1, "{name}.wgsl declares Step differently");
    }
    let fields = declarations[0].1.matches(':').count();
    assert_eq!(fields * 4, std::mem::size_of::<gpu_siamese::gpu::StepUniform>(), "Step has StepUniform's size");
}

#[test]
fn the_dropout_hash_is_declared_alike_everywhere() {
    // conv_block.wgsl draws dropout's masks inside the fused block: its hash must be dropout.wgsl's.
    let declaration = |file: &str| {
        let source = SHADERS.iter().find(|(name, _)| *name == file).unwrap().1;
        let start = source.find("fn pcg_hash(v: u32) -> u32 {").unwrap_or_else(|| panic!("{file}.wgsl has no pcg_hash"));
        let end = start + source[start..].find("\n}").unwrap() + 2;
        source[start..end].to_string()
    };
    assert_eq!(declaration("conv_block"), declaration("dropout"));
    assert!(SHADERS.iter().find(|(name, _)| *name == "dropout").unwrap().1.contains("return pcg_hash(pcg_hash(element) ^ pcg_hash(step ^ pcg_hash(seed)));"));
    assert!(SHADERS.iter().find(|(name, _)| *name == "conv_block").unwrap().1.contains("pcg_hash(s.step ^ pcg_hash(DROPOUT_SEED))"));
    assert!(SHADERS.iter().find(|(name, _)| *name == "conv_block").unwrap().1.contains("pcg_hash4(pcg_hash4(element) ^ vec4<u32>(step_hash))"));
}
