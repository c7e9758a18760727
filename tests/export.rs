//! The exported ONNX models against the program's own embeddings and distances, run by onnxruntime (a
//! runtime this project did not write): every named tower, with weights and moving statistics away
//! from their initial values. `make test` installs onnxruntime into target/onnx-venv; elsewhere set
//! GPU_SIAMESE_ONNX_PYTHON to a Python that has it.

mod common;

use common::*;
use gpu_siamese::model::{glorot_uniform, InputShape, Plan, TowerSpec, NAMED_TOWERS};
use gpu_siamese::onnx::{pair_model, tower_model};
use gpu_siamese::reference::byte_value;
use gpu_siamese::tower::{GpuTower, Weights};
use prost::Message;
use std::path::{Path, PathBuf};

fn python() -> PathBuf {
    let path = std::env::var_os("GPU_SIAMESE_ONNX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/onnx-venv/bin/python"));
    assert!(
        path.exists(),
        "{}: no Python with onnxruntime. `make test` installs one (python3 -m venv target/onnx-venv; \
         target/onnx-venv/bin/pip install onnxruntime numpy), or set GPU_SIAMESE_ONNX_PYTHON",
        path.display()
    );
    path
}

/// Runs `model` on `inputs` (name, values, shape) with onnxruntime; its first output.
fn onnxruntime(dir: &Path, model: &[u8], inputs: &[(&str, &[f32], &[usize])]) -> Vec<f32> {
    let model_path = dir.join("model.onnx");
    std::fs::write(&model_path, model).unwrap();
    let mut args = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_run.py").display().to_string(), model_path.display().to_string()];
    for (name, values, shape) in inputs {
        let path = dir.join(format!("{name}.npy"));
        std::fs::write(&path, gpu_siamese::npy::npy_f32(values, shape)).unwrap();
        args.push(format!("{name}={}", path.display()));
    }
    let out = dir.join("out.npy");
    args.push(out.display().to_string());
    let status = std::process::Command::new(python()).args(&args).status().unwrap();
    assert!(status.success(), "onnxruntime failed on the model");
    gpu_siamese::npy::read_f32(&std::fs::read(&out).unwrap()).unwrap().1
}

#[test]
fn exported_towers_give_the_programs_embeddings_and_distances() {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed("onnx export");
    let dir = std::env::temp_dir().join(format!("gpu-siamese-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for named in NAMED_TOWERS {
        let spec: TowerSpec = named.spec.parse().unwrap();
        let input = if named.name == "colour" { InputShape { h: 64, w: 64, c: 3 } } else { InputShape::FASHION_MNIST };
        let plan = Plan::new(&spec, input, 2, seed).unwrap();
        // Biases, gammas, betas and moving statistics away from 0 and 1, so that each is exercised.
        let mut params = glorot_uniform(&plan, seed);
        for t in plan.param_tensors().iter().filter(|t| t.shape.len() == 1) {
            for (j, v) in params[t.range.clone()].iter_mut().enumerate() {
                *v += 0.05 * ((j % 7) as f32 - 3.0) / 3.0;
            }
        }
        let mut state = plan.initial_state();
        for (j, v) in state.iter_mut().enumerate() {
            *v += 0.1 * ((j % 5) as f32) / 4.0;
        }
        let count = 9;
        let bytes: Vec<u8> = random(count * input.len(), seed ^ 3).iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
        let pixels: Vec<f32> = bytes.iter().map(|&b| byte_value(b)).collect();
        let tower = GpuTower::new(gpu, kernels, &plan, Weights::Host { params: &params, state: &state }, None).unwrap();
        let ours = tower.embed(&bytes).unwrap();
        let shape = [count, input.h, input.w, input.c];
        let theirs = onnxruntime(&dir, &tower_model(&plan, &params, &state).encode_to_vec(), &[("images", &pixels, &shape)]);
        assert_close(&format!("{} embeddings, onnxruntime against embed", named.name), &theirs, &ours, 1e-5);

        // The two-input distance model against the program's distances.
        let half = count / 2 * input.len();
        let rows: Vec<(u32, u32)> = (0..count as u32 / 2).map(|i| (i, count as u32 / 2 + i)).collect();
        let distances = tower.distances(&bytes[..2 * half], &rows).unwrap();
        let pair_shape = [count / 2, input.h, input.w, input.c];
        let pair = pair_model(&plan, &params, &state).encode_to_vec();
        let theirs = onnxruntime(&dir, &pair, &[("a", &pixels[..half], &pair_shape), ("b", &pixels[half..2 * half], &pair_shape)]);
        assert_close(&format!("{} distances, onnxruntime against the tower's", named.name), &theirs, &distances, 1e-5);
    }
}
