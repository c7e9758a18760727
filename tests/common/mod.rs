//! Helpers shared by the tests: one GPU for the whole test binary, poisoned outputs, random inputs and
//! the error measure every comparison uses.
#![allow(dead_code)]

use gpu_siamese::gpu::{submit, Dispatch, Gpu, Kernels};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

/// The adapter and its kernels, opened once per test binary. A machine without an adapter fails the
/// test with instructions: a GPU test never passes without running.
pub fn gpu() -> &'static (Gpu, Kernels) {
    static GPU: OnceLock<(Gpu, Kernels)> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("adapter: {}", gpu.describe());
        let kernels = Kernels::new(&gpu);
        (gpu, kernels)
    })
}

/// An output buffer filled with NaN, so that any element a kernel fails to write fails the comparison.
pub fn poisoned(gpu: &Gpu, len: usize) -> wgpu::Buffer {
    gpu.storage_from("poisoned", &vec![f32::NAN; len])
}

/// Runs dispatches in order in one pass and waits.
pub fn run(gpu: &Gpu, dispatches: &[&Dispatch]) {
    submit(gpu, dispatches);
    gpu.wait();
}

/// Uniform values in [-1, 1), fresh for every seed.
pub fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A seed that differs on every run (the tests use fresh inputs) and is printed so a failure can be
/// replayed with GPU_SIAMESE_TEST_SEED.
pub fn fresh_seed(test: &str) -> u64 {
    let seed = std::env::var("GPU_SIAMESE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("{test}: seed {seed} (GPU_SIAMESE_TEST_SEED={seed} replays it)");
    seed
}

/// The relative error of `got` against `want`: the largest absolute difference divided by the largest
/// magnitude in `want` (a per-element ratio is meaningless where the true value is near zero).
/// Any NaN or infinity in `got` makes it infinite.
pub fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    gpu_siamese::layer_check::relative_error(got, want)
}

/// The largest absolute difference; NaN or infinity in `got` makes it infinite.
pub fn abs_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(&g, &w)| if g.is_finite() { (g as f64 - w as f64).abs() } else { f64::INFINITY })
        .fold(0.0, f64::max)
}

/// Where `got` is furthest from `want`, for a failure's message.
fn worst_element(got: &[f32], want: &[f32]) -> String {
    let diff = |i: usize| if got[i].is_finite() { (got[i] as f64 - want[i] as f64).abs() } else { f64::INFINITY };
    let i = (0..got.len()).max_by(|&a, &b| diff(a).total_cmp(&diff(b))).unwrap_or(0);
    format!("worst at element {i}: {} against {}", got.get(i).copied().unwrap_or(f32::NAN), want.get(i).copied().unwrap_or(f32::NAN))
}

/// Asserts `got` matches `want` within `tolerance` relative error, and prints the error measured.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f64) {
    let err = relative_error(got, want);
    eprintln!("{what}: relative error {err:.2e}");
    assert!(err <= tolerance, "{what}: relative error {err:.3e} above {tolerance:.1e}; {}", worst_element(got, want));
}

/// Asserts `got` matches `want` within `tolerance` absolute error, and prints the error measured.
pub fn assert_abs_close(what: &str, got: &[f32], want: &[f32], tolerance: f64) {
    let err = abs_error(got, want);
    eprintln!("{what}: absolute error {err:.2e}");
    assert!(err <= tolerance, "{what}: absolute error {err:.3e} above {tolerance:.1e}; {}", worst_element(got, want));
}
