//! The whole training step on the GPU against the CPU reference, step after step with dropout on; the
//! same seed giving the same weights bit for bit; evaluation; a batch too large for the adapter.

mod common;

use common::*;
use gpu_siamese::optimizer::AdamConfig;
use gpu_siamese::objective::Objective;
use gpu_siamese::model::{glorot_uniform, InputShape, Plan, TowerSpec, TUTORIAL_TOWER};
use gpu_siamese::reference::{adam_update, TwinBatch, TwinReference};
use gpu_siamese::tower::{GpuTower, Weights};
use gpu_siamese::feed::{DeviceImages, DevicePairs};
use gpu_siamese::data::Pair;
use gpu_siamese::twin::{GpuTwin, TwinOptions};

fn batch(plan: &Plan, seed: u64) -> TwinBatch<f32> {
    // Images in [0, 1) like scaled pixels (multiples of 1/256, see `exact_first_conv`), labels of both kinds.
    let inputs = random(plan.batch * plan.input.len(), seed).iter().map(|v| (v.abs() * 256.0).floor() / 256.0).collect();
    let labels = (0..plan.pairs()).map(|i| ((i as u64 + seed) % 2) as f32).collect();
    TwinBatch::new(inputs, labels)
}

/// Rounds the first conv layer's kernel and bias to multiples of 2^-10. With inputs that are multiples of
/// 1/256, every product and sum of that layer is then exact in f32, whatever order or rounding computes
/// it: the GPU's and the reference's outputs are the same, and so are max-pooling's and ReLU's choices
/// on them. Without it, the last-bit differences of the GPU's fused-multiply-add emulation (lavapipe's
/// compiler does not keep every rounding of it) put a pooling near-tie or a ReLU sign on the other side
/// somewhere in ~250,000 windows in about one step in ten, which moves a gradient by far more than
/// rounding. Rounding itself is what the kernel tests check, on random values.
fn exact_first_conv(plan: &Plan, params: &mut [f32]) {
    let layer = plan.layers.iter().find(|l| matches!(l.op, gpu_siamese::layers::LayerOp::Conv2d(_))).unwrap();
    for w in &mut params[layer.params.clone().unwrap()] {
        *w = (*w * 1024.0).round() / 1024.0;
    }
}

/// Runs `steps` training steps (a new batch each) on both and compares everything after each step;
/// `fuse` runs the tower's leading block fused (whose inner activations are then not stored).
fn gpu_matches_reference(spec: &str, input: InputShape, pairs: usize, steps: u64, fuse: bool) {
    gpu_matches_reference_for(spec, input, pairs, steps, fuse, Objective::Pairs);
}

/// Batch norm's backward pass takes each channel's mean gradient away (dy - mean dy - xhat mean(dy
/// xhat)): what is left is small against the terms it is made of, so the layers before it receive
/// gradients with ~10x the relative rounding of f32 against the reference's f64 sums.
const GRADIENT_TOLERANCE_THROUGH_BN: f64 = 3e-4;

fn gradient_tolerance(spec: &str) -> f64 {
    if spec.split(',').any(|l| l.trim() == "bn") {
        GRADIENT_TOLERANCE_THROUGH_BN
    } else {
        2e-5
    }
}

fn gpu_matches_reference_for(spec: &str, input: InputShape, pairs: usize, steps: u64, fuse: bool, objective: Objective) {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed(spec);
    let spec: TowerSpec = spec.parse().unwrap();
    let plan = Plan::new(&spec, input, 2 * pairs, seed).unwrap();
    let adam = AdamConfig::default();
    let params = glorot_uniform(&plan, seed);
    let options = TwinOptions { objective, ..TwinOptions::new(fuse) };
    let mut twin = GpuTwin::with_options(gpu, kernels, plan.clone(), adam, 1.0, 8, options).unwrap();
    twin.set_params(&params);
    for step in 0..steps {
        let b = batch(&plan, seed.wrapping_add(step));
        twin.set_batch(&b.inputs, &b.labels);
        let (mut before, (m_before, v_before)) = (twin.read_params(), twin.read_adam());
        exact_first_conv(&plan, &mut before);
        twin.set_params(&before);
        twin.set_adam_state(&m_before, &v_before, step);
        // Each step on the reference starts from the GPU's own weights and Adam state. Run side by side,
        // the two trajectories drift apart by rounding (~1e-5 after a step), enough for a max-pooling
        // near-tie to pick another winner somewhere and move a gradient, and everything after it, by far
        // more than rounding: comparing trajectories failed for some fresh seeds.
        let mut from_gpu_state = TwinReference::new(plan.clone(), before.clone(), adam, 1.0f32).with_objective(objective);
        (from_gpu_state.adam_m, from_gpu_state.adam_v, from_gpu_state.step) = (m_before.clone(), v_before.clone(), step);
        from_gpu_state.state = twin.read_state();
        let trace = from_gpu_state.train_step(&b);
        twin.train_step();
        let what = |t: &str| format!("{spec} step {step}: {t}");
        for (i, act) in trace.activations.iter().enumerate().filter(|&(i, _)| twin.stores(i)) {
            assert_close(&what(&format!("layer {i} output")), &twin.read_activation(i), act, 2e-5);
        }
        if objective == Objective::Pairs {
            // A batch objective's step computes the distances between every two rows instead.
            assert_close(&what("distances"), &twin.read_distances(), &trace.distances, 2e-5);
        }
        assert_close(&what("loss"), &[twin.read_loss(step)], &[trace.loss], 2e-5);
        assert_close(&what("gradients"), &twin.read_grads(), &trace.grads, gradient_tolerance(&spec.to_string()));
        if plan.state_len > 0 {
            assert_close(&what("moving statistics"), &twin.read_state(), &from_gpu_state.state, 2e-5);
        }
        let (weights, (m, v)) = (twin.read_params(), twin.read_adam());
        // The GPU's update is Adam's to the last bits: the reference's Adam applied to the GPU's own
        // gradients and state gives the GPU's weights and moments.
        let (mut w_expected, mut m_expected, mut v_expected) = (before, m_before, v_before);
        adam_update(&mut w_expected, &twin.read_grads(), &mut m_expected, &mut v_expected, &adam, step + 1);
        assert_abs_close(&what("weights after the GPU's Adam"), &weights, &w_expected, 2e-7);
        assert_close(&what("adam m"), &m, &m_expected, 1e-6);
        assert_close(&what("adam v"), &v, &v_expected, 1e-6);
        // Against the reference's step from the same state, weights move by ~lr (1e-3) and agree far
        // more closely; not to 1e-6, because Adam divides by sqrt(v): a gradient of a few 1e-6 (a bias
        // whose units barely fire) moves its weight by a fraction of lr that its f32 rounding shifts by
        // ~1e-5. So the weights are held to the reference where their gradient is at least 1e-3 of the
        // largest: a gradient known to 2e-5 of the largest is known to 2% there, which moves the weight
        // by 2% of lr at most. Below that, Adam scales rounding up to steps of ~lr either way (a bias
        // before batch norm, which takes every channel's mean away, has a true gradient of zero); those
        // weights are checked by the GPU's Adam on its own gradients above.
        let scale = trace.grads.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        let moved = |w: &[f32]| w.iter().zip(&trace.grads).filter(|(_, g)| g.abs() > 1e-3 * scale).map(|(w, _)| *w).collect::<Vec<_>>();
        assert_abs_close(&what("weights against the reference"), &moved(&weights), &moved(&from_gpu_state.params), 1e-4);
        assert_close(&what("adam m against the reference"), &m, &from_gpu_state.adam_m, 2e-5);
        // v holds squared gradients: twice their relative error.
        assert_close(&what("adam v against the reference"), &v, &from_gpu_state.adam_v, 4e-5);
    }
}

#[test]
fn tutorial_tower_steps_match_reference() {
    gpu_matches_reference(TUTORIAL_TOWER, InputShape::FASHION_MNIST, 5, 4, false);
}

#[test]
fn tutorial_tower_fused_steps_match_reference() {
    gpu_matches_reference(TUTORIAL_TOWER, InputShape::FASHION_MNIST, 5, 4, true);
}

#[test]
fn batch_objectives_steps_match_reference() {
    // 12 rows in classes of 3 (P = 4, K = 3), fused and not, on grey and on colour.
    for objective in [Objective::BatchContrastive { k: 3 }, Objective::BatchTriplet { k: 3 }] {
        gpu_matches_reference_for(TUTORIAL_TOWER, InputShape::FASHION_MNIST, 6, 3, true, objective);
        gpu_matches_reference_for("conv(8,3),maxpool,gap,dense(5)", InputShape { h: 9, w: 7, c: 3 }, 6, 3, false, objective);
    }
}

/// The fused block against the unfused kernels: every loss, distance, gradient, weight and Adam moment
/// the same, bit for bit, step after step, and evaluation too.
fn fused_gives_unfused_bits(spec: &str, input: InputShape, pairs: usize, steps: u64) {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed(spec);
    let plan = Plan::new(&spec.parse().unwrap(), input, 2 * pairs, seed).unwrap();
    let params = glorot_uniform(&plan, seed);
    let new_twin = |fuse: bool| {
        let mut twin = GpuTwin::new(gpu, kernels, plan.clone(), AdamConfig::default(), 1.0, 8, fuse).unwrap();
        twin.set_params(&params);
        twin
    };
    let (mut fused, mut unfused) = (new_twin(true), new_twin(false));
    let kernel_names = |t: &GpuTwin| t.step_dispatches(None).iter().map(|d| d.kernel.name()).collect::<Vec<_>>();
    let fused_kernel = if plan.fused_head().is_some() { "conv2d_maxpool_gap_forward" } else { "conv2d_gemm_forward_pooled" };
    assert!(kernel_names(&fused).contains(&fused_kernel), "{:?}", kernel_names(&fused));
    assert!(!kernel_names(&unfused).contains(&fused_kernel));
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    for step in 0..steps {
        let b = batch(&plan, seed.wrapping_add(step));
        for twin in [&mut fused, &mut unfused] {
            twin.set_batch(&b.inputs, &b.labels);
            twin.train_step();
        }
        let what = |t: &str| format!("{spec} step {step}: {t}");
        assert_eq!(fused.read_loss(step).to_bits(), unfused.read_loss(step).to_bits(), "{}", what("loss"));
        assert!(bits(fused.read_distances()) == bits(unfused.read_distances()), "{}", what("distances differ"));
        assert!(bits(fused.read_grads()) == bits(unfused.read_grads()), "{}", what("gradients differ"));
        assert!(bits(fused.read_params()) == bits(unfused.read_params()), "{}", what("weights differ"));
        let ((fm, fv), (um, uv)) = (fused.read_adam(), unfused.read_adam());
        assert!(bits(fm) == bits(um) && bits(fv) == bits(uv), "{}", what("Adam moments differ"));
    }
    let (fused_eval, unfused_eval) = (fused.evaluate(), unfused.evaluate());
    assert!(bits(fused_eval.0) == bits(unfused_eval.0) && fused_eval.1.to_bits() == unfused_eval.1.to_bits(), "{spec}: evaluation differs");
}

#[test]
fn fused_block_gives_the_unfused_bits() {
    // The tutorial's tower, on more lanes than a workgroup has.
    fused_gives_unfused_bits(TUTORIAL_TOWER, InputShape::FASHION_MNIST, 40, 3);
    // Odd sizes: an 11x9 conv output drops a row and a column at pooling, 11x8 a row; 13 filters (not a
    // multiple of eight); 3x2 and 1x2 kernels; 3 input channels; no dropout; a linear conv; valid padding.
    fused_gives_unfused_bits("conv(13,3x2,same,relu),maxpool,dropout(0.3),gap,dense(6)", InputShape { h: 11, w: 9, c: 1 }, 7, 3);
    fused_gives_unfused_bits("conv(5,1x2,valid,linear),maxpool,gap,dense(4,relu),dense(3)", InputShape { h: 11, w: 9, c: 3 }, 4, 3);
    fused_gives_unfused_bits("conv(9,1),maxpool,dropout(0.5),gap,dense(2)", InputShape { h: 5, w: 4, c: 2 }, 33, 2);
    // Colour: the tutorial's 2x2 (12 taps) and 3x3 (27 taps, the most that fuse), with 64 channels so
    // that eight lanes share each window's loads, and with 20 (whose lanes cannot).
    fused_gives_unfused_bits("conv(64,2),maxpool,dropout(0.4),gap,dense(8)", InputShape { h: 9, w: 11, c: 3 }, 5, 2);
    fused_gives_unfused_bits("conv(20,3),maxpool,gap,dense(8)", InputShape { h: 8, w: 7, c: 3 }, 6, 2);
}

#[test]
fn pooling_epilogues_give_the_unfused_bits() {
    // Convs whose max-pooling (and dropout) run in their forward epilogue, and the one pass that turns
    // the pooled gradient back: after a fused head, a second block; odd maps that drop a row and a
    // column; a linear conv; a strided one; channels not multiples of four; dropout or not.
    fused_gives_unfused_bits(
        "conv(8,2),maxpool,dropout(0.4),conv(12,3),maxpool,dropout(0.3),gap,dense(5)",
        InputShape { h: 14, w: 13, c: 1 },
        5,
        3,
    );
    fused_gives_unfused_bits("conv(6,3,same,linear),maxpool,conv(10,2,valid),maxpool,gap,dense(4)", InputShape { h: 11, w: 12, c: 3 }, 4, 2);
    fused_gives_unfused_bits("conv(5,3,stride=2),maxpool,dropout(0.5),conv(7,1),gap,dense(3)", InputShape { h: 13, w: 9, c: 2 }, 6, 2);
    // More channels than one column group of lanes covers, in a count that is not a multiple of it: the
    // last group's quads past the end store no code (they once wrote the next window's first word).
    fused_gives_unfused_bits("conv(8,3),maxpool,conv(24,3),maxpool,gap,dense(5)", InputShape { h: 14, w: 10, c: 1 }, 5, 2);
    fused_gives_unfused_bits("conv(4,2),maxpool,conv(20,2),maxpool,dropout(0.2),gap,dense(3)", InputShape { h: 12, w: 12, c: 1 }, 3, 2);
}

#[test]
fn deeper_tower_on_odd_rgb_images_matches_reference() {
    // Two conv blocks (the tower the tutorial meant), a valid conv, a dense ReLU; 11x9 RGB images.
    // Fused, the first conv's max-pooling and dropout run in its epilogue.
    let spec = "conv(6,2,same,relu),maxpool,dropout(0.4),conv(5,3,valid,relu),dropout(0.2),gap,dense(7,relu),dense(4)";
    gpu_matches_reference(spec, InputShape { h: 11, w: 9, c: 3 }, 3, 3, false);
    gpu_matches_reference(spec, InputShape { h: 11, w: 9, c: 3 }, 3, 3, true);
}

#[test]
fn towers_with_the_newer_layers_match_reference() {
    // Batch norm between a linear conv and a standalone ReLU, a strided conv, global max-pooling, batch
    // norm on flat features, unit-length embeddings; and flatten into dense layers.
    let spec = "conv(8,3,same,linear),bn,relu,maxpool,conv(12,3,stride=2),globalmaxpool,dense(10,relu),bn,dense(6),l2norm";
    // Eight pairs: batch norm over three values a branch amplifies rounding past the tolerance.
    gpu_matches_reference(spec, InputShape { h: 11, w: 9, c: 3 }, 8, 3, false);
    gpu_matches_reference(spec, InputShape { h: 11, w: 9, c: 3 }, 8, 3, true);
    gpu_matches_reference("conv(6,3),maxpool(3,2),dropout(0.2),flatten,dense(8,relu),dense(5)", InputShape { h: 10, w: 9, c: 1 }, 4, 3, true);
}

#[test]
fn large_batch_steps_match_reference() {
    // More pairs than one workgroup holds.
    gpu_matches_reference("conv(3,2),maxpool,dropout(0.4),gap,dense(5)", InputShape { h: 7, w: 5, c: 1 }, 300, 2, false);
}

#[test]
fn same_seed_same_weights_bit_for_bit() {
    let (gpu, kernels) = gpu();
    let plan = Plan::new(&TowerSpec::tutorial(), InputShape::FASHION_MNIST, 2 * 70, 42).unwrap();
    let run = |seed: u64| {
        let mut twin = GpuTwin::new(gpu, kernels, plan.clone(), AdamConfig::default(), 1.0, 8, false).unwrap();
        twin.set_params(&glorot_uniform(&plan, seed));
        for step in 0..3 {
            let b = batch(&plan, step);
            twin.set_batch(&b.inputs, &b.labels);
            twin.train_step();
        }
        (twin.read_params(), (0..3).map(|s| twin.read_loss(s)).collect::<Vec<_>>())
    };
    let (first, second, other) = (run(1), run(1), run(2));
    assert!(first.0.iter().zip(&second.0).all(|(a, b)| a.to_bits() == b.to_bits()), "weights differ between runs");
    assert_eq!(first.1, second.1, "losses differ between runs");
    assert_ne!(first.0, other.0, "another seed gives other weights");
}

#[test]
fn evaluation_has_no_dropout_and_matches_reference() {
    let (gpu, kernels) = gpu();
    let plan = Plan::new(&TowerSpec::tutorial(), InputShape::FASHION_MNIST, 2 * 9, 3).unwrap();
    let params = glorot_uniform(&plan, 3);
    let reference = TwinReference::new(plan.clone(), params.clone(), AdamConfig::default(), 1.0f32);
    let mut twin = GpuTwin::new(gpu, kernels, plan.clone(), AdamConfig::default(), 1.0, 8, false).unwrap();
    twin.set_params(&params);
    let b = batch(&plan, 5);
    twin.set_batch(&b.inputs, &b.labels);
    let (distances, loss) = twin.evaluate();
    let (ref_distances, ref_loss) = reference.evaluate(&b);
    assert_close("evaluation distances", &distances, &ref_distances, 2e-5);
    assert_close("evaluation loss", &[loss], &[ref_loss], 2e-5);
    // Evaluation changes nothing: the weights are untouched and a second run gives the same numbers.
    assert_eq!(twin.read_params(), params);
    assert_eq!(twin.evaluate(), (distances, loss));
    // With dropout on, the training forward pass differs.
    let training = reference.loss_and_gradients(&b);
    assert_ne!(training.distances, ref_distances);
}

/// A twin whose steps run in micro-batches against one that runs them whole: every loss, distance,
/// gradient, weight and Adam moment the same, bit for bit, over steps with dropout on, fed by the host
/// and gathered on the GPU (with a last, partial batch), and evaluation too.
fn micro_batches_give_the_whole_batch_bits(spec: &str, input: InputShape, pairs: usize, micro: TwinOptions, fuse: bool) {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed(spec);
    let plan = Plan::new(&spec.parse().unwrap(), input, 2 * pairs, seed).unwrap();
    let params = glorot_uniform(&plan, seed);
    let new_twin = |options: TwinOptions| {
        let mut twin = GpuTwin::with_options(gpu, kernels, plan.clone(), AdamConfig::default(), 1.0, 8, options).unwrap();
        twin.set_params(&params);
        twin
    };
    let (mut split, mut whole) = (new_twin(TwinOptions { fuse, ..micro }), new_twin(TwinOptions::new(fuse)));
    assert!(split.micro_batches() > 1 && whole.micro_batches() == 1, "{spec}: {} micro-batches", split.micro_batches());
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let same = |split: &GpuTwin, whole: &GpuTwin, step: u64, what: &str| {
        let what = |t: &str| format!("{spec} ({} micro-batches of {}) {what} step {step}: {t}", split.micro_batches(), split.micro_pairs);
        assert_eq!(split.read_loss(step).to_bits(), whole.read_loss(step).to_bits(), "{}", what("loss"));
        assert!(bits(split.read_distances()) == bits(whole.read_distances()), "{}", what("distances differ"));
        assert!(bits(split.read_grads()) == bits(whole.read_grads()), "{}", what("gradients differ"));
        assert!(bits(split.read_params()) == bits(whole.read_params()), "{}", what("weights differ"));
        let ((sm, sv), (wm, wv)) = (split.read_adam(), whole.read_adam());
        assert!(bits(sm) == bits(wm) && bits(sv) == bits(wv), "{}", what("Adam moments differ"));
    };
    for step in 0..2 {
        let b = batch(&plan, seed.wrapping_add(step));
        for twin in [&mut split, &mut whole] {
            twin.set_batch(&b.inputs, &b.labels);
            twin.train_step();
        }
        same(&split, &whole, step, "host batches");
    }
    let (split_eval, whole_eval) = (split.evaluate(), whole.evaluate());
    assert!(bits(split_eval.0) == bits(whole_eval.0) && split_eval.1.to_bits() == whole_eval.1.to_bits(), "{spec}: evaluation differs");
    // Gathered on the GPU: a full batch, then a partial one.
    let count = 3 * pairs;
    let images: Vec<u8> = random(count * input.len(), seed ^ 7).iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
    let list: Vec<Pair> = (0..count as u32).map(|i| Pair { a: i, b: (i * 7 + 3) % count as u32, label: (i % 2) as f32 }).collect();
    let (device_images, device_pairs) = (DeviceImages::new(gpu, &images, input.len()).unwrap(), DevicePairs::new(gpu, &list));
    let (split_gather, whole_gather) = (split.gather_from(kernels, &device_images, &device_pairs, None), whole.gather_from(kernels, &device_images, &device_pairs, None));
    for (step, valid) in [(2, pairs), (3, pairs - pairs / 3)] {
        split.train_step_gathered(&split_gather, pairs, valid);
        whole.train_step_gathered(&whole_gather, pairs, valid);
        same(&split, &whole, step, &format!("gathered, {valid} valid pairs,"));
    }
}

#[test]
fn micro_batched_steps_give_the_whole_batch_bits() {
    let forced = |pairs: usize| TwinOptions { micro_pairs: Some(pairs), ..TwinOptions::new(true) };
    // The tutorial's fused head, in micro-batches that cut the weight gradients' chunks; the last one
    // shorter.
    micro_batches_give_the_whole_batch_bits(TUTORIAL_TOWER, InputShape::FASHION_MNIST, 21, forced(4), true);
    // Pooling epilogues, a strided conv, dense layers, dropout, colour; unfused too; one pair at a time.
    let spec = "conv(8,3),maxpool,dropout(0.3),conv(12,3,stride=2),dropout(0.2),gap,dense(10,relu),dense(5)";
    micro_batches_give_the_whole_batch_bits(spec, InputShape { h: 13, w: 11, c: 3 }, 10, forced(3), true);
    micro_batches_give_the_whole_batch_bits(spec, InputShape { h: 13, w: 11, c: 3 }, 10, forced(1), false);
    // Flatten (a view of its input's buffers) into dense layers.
    micro_batches_give_the_whole_batch_bits("conv(6,3),maxpool,flatten,dense(8,relu),dense(5)", InputShape { h: 10, w: 9, c: 1 }, 9, forced(4), true);
    // Chosen by the twin itself under a memory budget.
    let budget = TwinOptions { memory_budget: Some(3 << 20), ..TwinOptions::new(true) };
    micro_batches_give_the_whole_batch_bits("conv(16,3),maxpool,conv(16,3),gap,dense(8)", InputShape { h: 24, w: 24, c: 3 }, 16, budget, true);
}

#[test]
fn a_batch_too_large_for_the_adapter_runs_in_micro_batches() {
    let (gpu, kernels) = gpu();
    // 48x48 colour pictures at batch 64 through the tutorial's tower: the conv's output alone is
    // 128 x 48 x 48 x 128 f32s (144 MiB), more than lavapipe binds at once.
    let input = InputShape { h: 48, w: 48, c: 3 };
    let plan = Plan::new(&TowerSpec::tutorial(), input, 2 * 64, 0).unwrap();
    let mut twin = GpuTwin::new(gpu, kernels, plan.clone(), AdamConfig::default(), 1.0, 8, false).unwrap();
    let activation = 128 * 48 * 48 * 128 * 4u64;
    if activation > gpu.max_binding_bytes() {
        assert!(twin.micro_batches() > 1, "{} micro-batches", twin.micro_batches());
    }
    twin.set_params(&glorot_uniform(&plan, 0));
    let b = batch(&plan, 0);
    twin.set_batch(&b.inputs, &b.labels);
    twin.train_step();
    assert!(twin.read_loss(0).is_finite() && twin.read_grads().iter().all(|g| g.is_finite()));
    // A pair whose images alone are more than the adapter binds: refused, saying so, before allocating.
    let plan = Plan::new(&"conv(16,3),maxpool,gap,dense(8)".parse().unwrap(), InputShape { h: 4096, w: 4096, c: 3 }, 2 * 4, 0).unwrap();
    let err = GpuTwin::new(gpu, kernels, plan, AdamConfig::default(), 1.0, 8, false).err().expect("too large");
    assert!(err.to_string().contains("one pair of 4096x4096x3 images"), "{err}");
}

#[test]
fn the_inference_tower_gives_the_twins_distances_bit_for_bit() {
    // The tower embeds each image once, in passes of its own size, and pairs the embeddings; the twin
    // runs both images of every pair through one batch. The same kernels per image: the same bits.
    let (gpu, kernels) = gpu();
    let seed = fresh_seed("inference tower");
    for (spec, input, pairs) in [
        (TUTORIAL_TOWER, InputShape::FASHION_MNIST, 9),
        ("conv(8,3),maxpool,dropout(0.3),conv(16,2,valid),gap,dense(12,relu),dense(5)", InputShape { h: 11, w: 9, c: 3 }, 7),
    ] {
        let plan = Plan::new(&spec.parse().unwrap(), input, 2 * pairs, seed).unwrap();
        let params = glorot_uniform(&plan, seed);
        let bytes: Vec<u8> = random(plan.batch * input.len(), seed).iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
        let inputs: Vec<f32> = bytes.iter().map(|&b| gpu_siamese::reference::byte_value(b)).collect();
        let mut twin = GpuTwin::new(gpu, kernels, plan.clone(), AdamConfig::default(), 1.0, 8, true).unwrap();
        twin.set_params(&params);
        twin.set_batch(&inputs, &vec![0.0; pairs]);
        let (want, _) = twin.evaluate();
        // Passes of 4 images: the last one partial, and no pass holding a pair's two images together.
        let weights = Weights::Host { params: &params, state: &plan.initial_state() };
        let tower = GpuTower::new(gpu, kernels, &plan, weights, Some(4)).unwrap();
        assert_eq!(tower.plan.batch, 4);
        let rows: Vec<(u32, u32)> = (0..pairs as u32).map(|i| (i, pairs as u32 + i)).collect();
        let got = tower.distances(&bytes, &rows).unwrap();
        let bits = |v: &[f32]| v.iter().map(|d| d.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{spec}: the tower's distances are the twin's: {got:?} {want:?}");
    }
}

#[test]
fn the_inference_tower_sizes_its_passes_to_the_adapter() {
    let (gpu, kernels) = gpu();
    let spec: TowerSpec = "conv(16,3),maxpool,gap,dense(8)".parse().unwrap();
    let zeros = |plan: &Plan| (vec![0.0; plan.param_len], plan.initial_state());
    // A large picture: each image's conv output alone takes 16 MiB, so a pass holds fewer than 256.
    let input = InputShape { h: 512, w: 512, c: 3 };
    let plan = Plan::new(&spec, input, 2, 0).unwrap();
    let (params, state) = zeros(&plan);
    let tower = GpuTower::new(gpu, kernels, &plan, Weights::Host { params: &params, state: &state }, None).unwrap();
    let per_image = 512 * 512 * 16 * 4;
    assert!(tower.plan.batch >= 2 && tower.plan.batch as u64 * per_image <= gpu.max_binding_bytes(), "batch {}", tower.plan.batch);
    // One image too large to bind: refused, saying so, before anything is allocated.
    let input = InputShape { h: 4096, w: 4096, c: 3 };
    let plan = Plan::new(&spec, input, 2, 0).unwrap();
    let (params, state) = zeros(&plan);
    let err = GpuTower::new(gpu, kernels, &plan, Weights::Host { params: &params, state: &state }, None).err().expect("too large");
    assert!(err.to_string().contains("one 4096x4096x3 image"), "{err}");
}
