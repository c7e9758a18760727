//! Every layer kind on the GPU against its CPU reference, on fresh inputs of awkward shapes: forward,
//! input gradient, parameter gradient, moved state and the inference forward, each as a relative error.
//! In the library so that one check runs wherever the kernels do: the kernel tests natively, the page
//! in a browser (its kernels compiled by that browser's WGSL compiler).

use crate::gpu::{Gpu, Kernels, Region, StepUniform};
use crate::layers::{Backward, Io, Layer, Pass};
use crate::model::{InputShape, Plan};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The relative error a GPU kernel may have against the f32 CPU reference: comfortably above f32 rounding
/// of the sums involved, far under the 1e-4 the project promises.
pub const TOLERANCE: f64 = 2e-5;

/// Towers whose layers, between them, are every layer kind, on shapes no kernel's tile divides: odd
/// sizes, channels that are no multiple of four, one picture a branch or many.
pub const AWKWARD_TOWERS: &[(&str, [usize; 3], usize)] = &[
    ("conv(5,3,same,relu),maxpool,dropout(0.3),bn,relu,conv(7,2,valid,linear,stride=2),globalmaxpool,dense(6,relu),l2norm", [11, 9, 3], 6),
    ("conv(3,2),maxpool(3,2),flatten,dense(5),bn", [7, 10, 1], 4),
    ("conv(6,3,same,linear),gap,dense(3)", [5, 5, 2], 2),
];

/// One comparison: what was compared and its relative error (infinite where the GPU gave NaN or
/// infinity).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Comparison {
    pub what: String,
    pub relative_error: f64,
}

impl Comparison {
    pub fn passes(&self) -> bool {
        self.relative_error <= TOLERANCE
    }
}

/// The largest absolute difference over the largest magnitude of `want` (a per-element ratio means
/// nothing where the true value is near zero); NaN or infinity in `got` makes it infinite.
pub fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs())).max(1e-30);
    let mut worst = 0.0f64;
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        worst = worst.max((g as f64 - w as f64).abs());
    }
    worst / scale
}

/// Uniform values in [-1, 1) from `seed`.
pub fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Every layer of every awkward tower checked, inputs drawn from `seed`.
pub async fn every_layer_kind(gpu: &Gpu, kernels: &Kernels, seed: u64) -> Result<Vec<Comparison>, String> {
    let mut all = Vec::new();
    for (t, &(arch, [h, w, c], batch)) in AWKWARD_TOWERS.iter().enumerate() {
        let spec = arch.parse().map_err(|e| format!("{arch}: {e}"))?;
        let plan = Plan::new(&spec, InputShape { h, w, c }, batch, seed).map_err(|e| format!("{arch}: {e}"))?;
        let mut input_len = batch * h * w * c;
        for (i, layer) in plan.layers.iter().enumerate() {
            let name = format!("{arch} layer {} ({})", i + 1, spec.layers[i]);
            let layer_seed = seed ^ ((t as u64) << 40) ^ ((i as u64) << 32);
            all.extend(layer.op.check_against_reference(gpu, kernels, &name, input_len, layer_seed).await);
            input_len = layer.output_len;
        }
    }
    Ok(all)
}

/// A buffer of NaN, so that any element a kernel fails to write fails the comparison.
fn poisoned(gpu: &Gpu, len: usize) -> wgpu::Buffer {
    gpu.storage_from("poisoned", &vec![f32::NAN; len.max(1)])
}

/// `layer` on the GPU, its own recordings as the twin makes them, against its CPU reference: a training
/// pass (forward, both gradients, the moved state) over `branches` of the batch (the twin's two, or a
/// tower's one), then an inference forward from the state the training pass left.
pub async fn against_reference<L: Layer>(gpu: &Gpu, kernels: &Kernels, name: &str, layer: &L, input_len: usize, branches: usize, seed: u64) -> Vec<Comparison> {
    let compare = |what: &str, got: Vec<f32>, want: &[f32]| Comparison { what: format!("{name}: {what}"), relative_error: relative_error(&got, want) };
    let x = random(input_len, seed);
    let output_len = layer.batch() * layer.output().len();
    let dy = random(output_len, seed ^ 1);
    let param_len: usize = layer.params().iter().map(|t| t.len()).sum();
    let state_len: usize = layer.state().iter().map(|t| t.len()).sum();
    // Parameters away from their initial values; positive moving variances.
    let params: Vec<f32> = random(param_len, seed ^ 2).iter().map(|v| v + 1.5).collect();
    let state: Vec<f32> = random(state_len, seed ^ 3).iter().map(|v| v.abs() + 0.5).collect();
    let pass = |training| Pass { training, step: 0, branches };
    let y_ref = layer.forward(&x, &params, &state, &pass(true));
    let backward = Backward { x: &x, y: &y_ref, dy: &dy, params: &params, state: &state, pass: pass(true), need_dx: true };
    let (dx_ref, dparams_ref) = layer.backward(&backward);
    let mut state_ref = state.clone();
    layer.update_state(&x, &mut state_ref, &pass(true));

    let at_least_one = |v: &[f32]| if v.is_empty() { vec![0.0] } else { v.to_vec() };
    let (xb, dyb, y, dx) = (gpu.storage_from("x", &x), gpu.storage_from("dy", &dy), poisoned(gpu, output_len), poisoned(gpu, input_len));
    let (pb, sb, grads) = (gpu.storage_from("params", &at_least_one(&params)), gpu.storage_from("state", &at_least_one(&state)), poisoned(gpu, param_len));
    let pairs = layer.batch() / branches;
    let step = |training: u32| {
        let s = StepUniform { training, batch_pairs: pairs as u32, micro_pairs: pairs as u32, ..Default::default() };
        Region::whole(&gpu.uniform_from("step", &s))
    };
    let io = |training: u32, aux_len: usize| Io {
        step: step(training),
        x: (&xb).into(),
        y: (&y).into(),
        dy: (&dyb).into(),
        dx: Some((&dx).into()),
        params: Some((&pb).into()),
        grads: Some((&grads).into()),
        state: Some((&sb).into()),
        aux: Some(Region::whole(&poisoned(gpu, aux_len))),
        partials: Some(Region::whole(&poisoned(gpu, layer.partials_len(branches, layer.batch())))),
        branches,
        whole_batch: layer.batch(),
        first_pair: 0,
        exact: false,
        pool: None,
    };
    let mut found = Vec::new();
    if layer.is_view() {
        // A reshape launches nothing: its output is its input as it lies in memory.
        found.push(compare("forward (a view of its input)", x.clone(), &y_ref));
        found.push(compare("input gradient (a view of its output's)", dy.clone(), &dx_ref));
        return found;
    }
    let training = io(1, layer.aux_len());
    let launches: Vec<_> = [layer.record_forward(kernels, &training), layer.record_backward(kernels, &training), layer.record_gradient(kernels, &training)]
        .into_iter()
        .flatten()
        .collect();
    crate::gpu::submit(gpu, &launches.iter().collect::<Vec<_>>());
    found.push(compare("forward", gpu.read_async(&y, 0, output_len).await, &y_ref));
    found.push(compare("input gradient", gpu.read_async(&dx, 0, input_len).await, &dx_ref));
    if param_len > 0 {
        found.push(compare("parameter gradient", gpu.read_async(&grads, 0, param_len).await, &dparams_ref));
    }
    if state_len > 0 {
        found.push(compare("moved state", gpu.read_async(&sb, 0, state_len).await, &state_ref));
    }
    let inference = io(0, layer.inference_aux_len());
    crate::gpu::submit(gpu, &layer.record_forward(kernels, &inference).iter().collect::<Vec<_>>());
    let y_inference = layer.forward(&x, &params, &state_ref, &pass(false));
    found.push(compare("inference forward", gpu.read_async(&y, 0, output_len).await, &y_inference));
    found
}
