//! Every shader module the program can build compiles with the browser's WGSL compiler (Tint, in
//! headless Chromium's WebGPU), which applies all of WGSL's uniformity rules: barriers and subgroup
//! operations only in uniform control flow. naga (Vulkan, GL) does not yet check all of them, and on a
//! real GPU a barrier that not every invocation reaches is undefined behaviour.

#[path = "common/browser.rs"]
mod browser;

use browser::{run_page, Served};
use gpu_siamese::gpu::{all_kernels, validate_module, Kernel};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// One module a device may compile, with its entry points and a value for each constant that has no
/// default (the browser compiles a pipeline per entry point).
struct Module {
    kernel: Kernel,
    entries: Vec<String>,
    constants: BTreeMap<String, f64>,
}

fn modules() -> BTreeMap<&'static str, Module> {
    let mut modules: BTreeMap<&'static str, Module> = BTreeMap::new();
    for kernel in all_kernels() {
        let module = modules.entry(kernel.module).or_insert_with(|| {
            let (naga_module, _) = validate_module(&kernel.source(), kernel.needs_subgroups()).unwrap_or_else(|e| panic!("{}: {e}", kernel.module));
            // Small shapes: the constants size no array, they only have to be given.
            let constants = naga_module.overrides.iter().filter(|(_, o)| o.init.is_none()).filter_map(|(_, o)| o.name.clone()).map(|name| (name, 2.0)).collect();
            Module { kernel, entries: Vec::new(), constants }
        });
        if !module.entries.iter().any(|e| e == kernel.entry) {
            module.entries.push(kernel.entry.to_string());
        }
    }
    modules
}

#[test]
fn every_module_compiles_in_the_browsers_webgpu() {
    let modules = modules();
    let listing: Vec<Value> = modules
        .iter()
        .map(|(name, m)| json!({"name": name, "source": m.kernel.device_source(true), "subgroups": m.kernel.needs_subgroups(), "entries": m.entries, "constants": m.constants}))
        .collect();
    let files = HashMap::from([
        ("/".to_string(), Served::html(include_str!("browser/compile_modules.html"))),
        ("/modules.json".to_string(), Served::json(serde_json::to_string(&listing).unwrap())),
    ]);
    let started = std::time::Instant::now();
    let report: Value = serde_json::from_str(&run_page(files, Duration::from_secs(600))).expect("the page posts JSON");
    assert!(report["error"].is_null(), "the page: {}", report["error"]);
    eprintln!("adapter: {} in {:.1} s", report["adapter"], started.elapsed().as_secs_f64());
    assert_eq!(report["adapter"]["subgroups"], json!(true), "SwiftShader offers subgroups: the subgroup variants are compiled too");

    let mut failures = Vec::new();
    let results = report["results"].as_array().expect("a result per module");
    assert_eq!(results.len(), modules.len(), "every module came back");
    for result in results {
        let name = result["module"].as_str().unwrap();
        let kernel = modules[name].kernel;
        assert!(result["skipped"].is_null(), "{name} was not compiled: {}", result["skipped"]);
        for message in result["messages"].as_array().unwrap() {
            if message["type"] == "error" || message["type"] == "warning" {
                let (file, line) = kernel.locate(true, message["line"].as_u64().unwrap() as u32);
                failures.push(format!("{name}: shaders/{file}.wgsl:{line}:{}: {}: {}", message["column"], message["type"].as_str().unwrap(), message["text"].as_str().unwrap()));
            }
        }
        if let Some(error) = result["error"].as_str() {
            failures.push(format!("{name}: {error}"));
        }
        for pipeline in result["pipelines"].as_array().unwrap() {
            failures.push(format!("{name}: pipeline {}: {}", pipeline["entry"], pipeline["error"]));
        }
    }
    assert!(failures.is_empty(), "{} message(s) from the browser's WGSL compiler:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{} modules, {} entry points: no error and no warning", modules.len(), modules.values().map(|m| m.entries.len()).sum::<usize>());
}

#[test]
fn a_compiler_line_is_located_in_its_file() {
    // The located line must be the line the compiler saw: check it against the source itself.
    for kernel in all_kernels() {
        for directives in [false, true] {
            let source = kernel.device_source(directives);
            let lines: Vec<&str> = source.split('\n').collect();
            for (i, text) in lines.iter().enumerate().step_by(37) {
                let (file, line) = kernel.locate(directives, i as u32 + 1);
                let part = kernel.source_parts(directives).into_iter().find(|(name, _)| *name == file).unwrap().1;
                assert_eq!(part.split('\n').nth(line as usize - 1), Some(*text), "{} line {}", kernel.module, i + 1);
            }
        }
    }
}
