//! The CPU reference's backward passes against central finite differences, in f64. For each operation
//! the scalar checked is L = sum(r * f(x)) for a fixed random r, whose gradient the backward pass
//! computes from dy = r.

use gpu_siamese::optimizer::AdamConfig;
use gpu_siamese::layers::conv2d::*;
use gpu_siamese::layers::dense::*;
use gpu_siamese::layers::dropout::*;
use gpu_siamese::layers::gap::*;
use gpu_siamese::layers::maxpool::*;
use gpu_siamese::layers::bn::BatchNormDims;
use gpu_siamese::layers::globalmaxpool::*;
use gpu_siamese::layers::l2norm::*;
use gpu_siamese::layers::relu::*;
use gpu_siamese::layers::{Backward, Layer, Pass, Shape};
use gpu_siamese::model::{glorot_uniform, InputShape, Plan, TowerSpec};
use gpu_siamese::reference::{self as cpu, TwinBatch, TwinReference};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Compares `analytic` with central differences of `loss` around `x`, at up to 60 evenly spread
/// coordinates. The error is relative to the gradient's largest magnitude, floored at 1e-3 so that a
/// gradient that is exactly zero (the twin's dense bias) is held to the differences' own noise.
fn check(what: &str, x: &[f64], analytic: &[f64], loss: impl Fn(&[f64]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let h = 1e-6;
    let scale = analytic.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
    let stride = (x.len() / 60).max(1);
    let mut worst = 0.0f64;
    let mut probe = x.to_vec();
    for i in (0..x.len()).step_by(stride) {
        probe[i] = x[i] + h;
        let up = loss(&probe);
        probe[i] = x[i] - h;
        let down = loss(&probe);
        probe[i] = x[i];
        let numeric = (up - down) / (2.0 * h);
        assert!(numeric.is_finite() && analytic[i].is_finite(), "{what}: non-finite gradient at {i}");
        worst = worst.max((numeric - analytic[i]).abs() / scale);
    }
    eprintln!("{what}: relative error against finite differences {worst:.2e}");
    assert!(worst < 1e-6, "{what}: relative error {worst:.3e} against finite differences");
}

#[test]
fn conv2d_gradients() {
    for (i, d) in [
        Conv2dDims { batch: 2, in_h: 5, in_w: 4, in_c: 3, out_c: 2, kernel_h: 2, kernel_w: 2, padding: Padding::Same, relu: true, stride: 1 },
        Conv2dDims { batch: 2, in_h: 6, in_w: 5, in_c: 2, out_c: 3, kernel_h: 3, kernel_w: 2, padding: Padding::Valid, relu: false, stride: 1 },
        Conv2dDims { batch: 1, in_h: 4, in_w: 5, in_c: 1, out_c: 3, kernel_h: 3, kernel_w: 4, padding: Padding::Same, relu: true, stride: 1 },
        Conv2dDims { batch: 2, in_h: 7, in_w: 6, in_c: 2, out_c: 3, kernel_h: 3, kernel_w: 3, padding: Padding::Same, relu: true, stride: 2 },
        Conv2dDims { batch: 2, in_h: 8, in_w: 7, in_c: 2, out_c: 2, kernel_h: 3, kernel_w: 2, padding: Padding::Valid, relu: false, stride: 2 },
    ]
    .iter()
    .enumerate()
    {
        let seed = 10 * i as u64;
        let branches = if d.batch % 2 == 0 { 2 } else { 1 };
        let (x, wb, r) = (random(d.input_len(), seed), random(d.param_len(), seed + 1), random(d.output_len(), seed + 2));
        let y = conv2d_forward(&x, &wb, d);
        check(&format!("conv2d input {d:?}"), &x, &conv2d_backward_input(&r, &y, &wb, d), |x| {
            dot(&r, &conv2d_forward(x, &wb, d))
        });
        check(&format!("conv2d kernel and bias {d:?}"), &wb, &conv2d_backward_weight(&x, &r, &y, d, branches), |wb| {
            dot(&r, &conv2d_forward(&x, wb, d))
        });
    }
}

#[test]
fn maxpool_gradients() {
    for d in [PoolDims::two_by_two(2, 5, 7, 3), PoolDims { batch: 2, in_h: 7, in_w: 6, channels: 2, size: 3, stride: 2 }] {
        let (x, r) = (random(d.input_len(), 1), random(d.output_len(), 2));
        check(&format!("maxpool {d:?}"), &x, &maxpool_backward(&r, &x, &d), |x| dot(&r, &maxpool_forward(x, &d)));
    }
}

#[test]
fn dropout_gradient() {
    let d = DropoutDims { batch: 1, shape: Shape::vector(200), rate: 0.4, seed: 9 };
    let (x, r) = (random(200, 1), random(200, 2));
    check("dropout", &x, &dropout_backward(&r, &d, 3, true), |x| dot(&r, &dropout_forward(x, &d, 3, true)));
}

#[test]
fn gap_gradient() {
    let d = GapDims { batch: 3, h: 5, w: 3, channels: 4 };
    let (x, r) = (random(d.input_len(), 1), random(d.output_len(), 2));
    check("gap", &x, &gap_backward(&r, &d), |x| dot(&r, &gap_forward(x, &d)));
}

#[test]
fn relu_gradient() {
    let (x, r) = (random(50, 1), random(50, 2));
    check("relu", &x, &relu_backward(&r, &relu_forward(&x)), |x| dot(&r, &relu_forward(x)));
}

#[test]
fn l2norm_gradient() {
    let d = L2NormDims { batch: 3, dim: 7 };
    let (x, r) = (random(d.count(), 1), random(d.count(), 2));
    check("l2norm", &x, &l2norm_backward(&r, &x, &d), |x| dot(&r, &l2norm_forward(x, &d)));
}

#[test]
fn globalmaxpool_gradient() {
    let d = GlobalMaxPoolDims { batch: 3, h: 4, w: 5, channels: 3 };
    let (x, r) = (random(d.input_len(), 1), random(d.output_len(), 2));
    let y = globalmaxpool_forward(&x, &d);
    check("globalmaxpool", &x, &globalmaxpool_backward(&r, &x, &y, &d), |x| dot(&r, &globalmaxpool_forward(x, &d)));
    // Ties share the gradient equally, as TensorFlow's gradient of a maximum does.
    let d = GlobalMaxPoolDims { batch: 1, h: 2, w: 2, channels: 1 };
    let x = [1.0, 3.0, 3.0, 2.0];
    assert_eq!(globalmaxpool_backward(&[1.0], &x, &globalmaxpool_forward(&x, &d), &d), [0.0, 0.5, 0.5, 0.0]);
}

/// Batch norm in training: the input's, gamma's and beta's gradients through the batch statistics of
/// each of two branches, on a map and on flat features.
#[test]
fn bn_gradients() {
    for (i, shape) in [Shape::map(3, 2, 3), Shape::vector(5)].into_iter().enumerate() {
        let d = BatchNormDims { batch: 6, shape };
        let pass = Pass { training: true, step: 0, branches: 2 };
        let seed = 10 * i as u64;
        let (x, r) = (random(d.count(), seed), random(d.count(), seed + 1));
        // gamma and beta away from their initial 1 and 0, and moving statistics that must not matter.
        let params: Vec<f64> = random(2 * shape.c, seed + 2).iter().map(|v| v + 1.5).collect();
        let state: Vec<f64> = random(2 * shape.c, seed + 3).iter().map(|v| v.abs() + 0.5).collect();
        let y = d.forward(&x, &params, &state, &pass);
        let b = Backward { x: &x, y: &y, dy: &r, params: &params, state: &state, pass, need_dx: true };
        let (dx, dparams) = d.backward(&b);
        check(&format!("bn input {shape:?}"), &x, &dx, |x| dot(&r, &d.forward(x, &params, &state, &pass)));
        check(&format!("bn gamma and beta {shape:?}"), &params, &dparams, |p| dot(&r, &d.forward(&x, p, &state, &pass)));
        // Each branch is normalised on its own: its outputs have mean beta, per channel.
        let per_branch = d.count() / 2;
        for branch in 0..2 {
            for c in 0..shape.c {
                let values: Vec<f64> = (branch * per_branch..(branch + 1) * per_branch).filter(|i| i % shape.c == c).map(|i| y[i]).collect();
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                assert!((mean - params[shape.c + c]).abs() < 1e-12, "branch {branch} channel {c}: mean {mean}");
            }
        }
    }
}

#[test]
fn dense_gradients() {
    for d in [DenseDims { batch: 4, in_dim: 7, out_dim: 5, relu: false }, DenseDims { batch: 4, in_dim: 6, out_dim: 9, relu: true }] {
        let (x, wb, r) = (random(d.batch * d.in_dim, 1), random(d.param_len(), 2), random(d.batch * d.out_dim, 3));
        let y = dense_forward(&x, &wb, &d);
        check(&format!("dense input {d:?}"), &x, &dense_backward_input(&r, &y, &wb, &d), |x| dot(&r, &dense_forward(x, &wb, &d)));
        check(&format!("dense kernel and bias {d:?}"), &wb, &dense_backward_weight(&x, &r, &y, &d, 2), |wb| {
            dot(&r, &dense_forward(&x, wb, &d))
        });
    }
}

#[test]
fn distance_gradient() {
    let (pairs, dim) = (5, 6);
    let (emb, r) = (random(2 * pairs * dim, 1), random(pairs, 2));
    check("distance", &emb, &cpu::distance_backward(&r, &emb, pairs, dim), |e| dot(&r, &cpu::distance_forward(e, pairs, dim)));
}

#[test]
fn contrastive_gradient() {
    // Distances on both sides of the margin; labels of both kinds.
    let dist: Vec<f64> = random(9, 1).iter().map(|v| v.abs() * 2.0).collect();
    let label: Vec<f64> = (0..9).map(|i| (i % 2) as f64).collect();
    for margin in [1.0, 0.7] {
        check(&format!("contrastive margin {margin}"), &dist, &cpu::contrastive_backward(&dist, &label, margin), |d| {
            cpu::contrastive_forward(d, &label, margin)
        });
    }
}

#[test]
fn whole_twin_gradient() {
    // The tutorial's intended tower (two conv blocks) with dropout on, small images: every parameter's
    // gradient through the whole twin, distance and loss.
    let spec: TowerSpec = "conv(4,2,same,relu),maxpool,dropout(0.4),conv(3,3,valid,relu),gap,dense(5)".parse().unwrap();
    let plan = Plan::new(&spec, InputShape { h: 9, w: 8, c: 2 }, 6, 11).unwrap();
    let params: Vec<f64> = cpu::convert(&glorot_uniform(&plan, 3));
    // The last pair pads the batch: it must add nothing.
    let batch = TwinBatch {
        inputs: random(plan.batch * plan.input.len(), 4).iter().map(|v| v.abs()).collect(),
        labels: vec![1.0, 0.0, 1.0],
        valid: 2,
    };
    let twin = TwinReference::new(plan.clone(), params.clone(), AdamConfig::default(), 1.0);
    let trace = twin.loss_and_gradients(&batch);
    let loss = |p: &[f64]| {
        let mut probe = TwinReference::new(plan.clone(), p.to_vec(), AdamConfig::default(), 1.0);
        probe.step = twin.step;
        probe.loss_and_gradients(&batch).loss
    };
    for tensor in plan.param_tensors() {
        let r = tensor.range.clone();
        let analytic = &trace.grads[r.clone()];
        check(&format!("twin {}", tensor.name), &params[r.clone()], analytic, |sub| {
            let mut p = params.clone();
            p[r.clone()].copy_from_slice(sub);
            loss(&p)
        });
    }
}

#[test]
fn batch_loss_gradients() {
    // Rows in classes of k; the last case has two identical rows, whose clamped distance passes no gradient.
    for (i, &(rows, k, dim)) in [(6, 2, 5), (9, 3, 4), (8, 4, 7)].iter().enumerate() {
        let mut emb = random(rows * dim, 70 + i as u64);
        if i == 2 {
            let (first, rest) = emb.split_at_mut(dim);
            rest[..dim].copy_from_slice(first);
        }
        let margin = 1.2;
        type Loss = fn(&[f64], usize, usize, f64) -> f64;
        type Grad = fn(&[f64], usize, usize, f64) -> Vec<f64>;
        let losses: [(&str, Loss, Grad); 2] = [
            ("batch contrastive", cpu::batch_contrastive_forward, cpu::batch_contrastive_backward),
            ("batch triplet", cpu::batch_triplet_forward, cpu::batch_triplet_backward),
        ];
        for (name, forward, backward) in losses {
            let loss = |e: &[f64]| forward(&cpu::pairwise_distance_forward(e, rows, dim).0, rows, k, margin);
            let (dist, ss) = cpu::pairwise_distance_forward(&emb, rows, dim);
            let ddist = backward(&dist, rows, k, margin);
            let demb = cpu::pairwise_distance_backward(&ddist, &emb, &ss, rows, dim);
            assert!(loss(&emb) > 0.0, "{name}: a loss to follow");
            check(&format!("{name}, {rows} rows in classes of {k}, dim {dim}"), &emb, &demb, loss);
        }
    }
    // The counts the means divide by.
    assert_eq!((cpu::batch_pairs(8), cpu::batch_triplets(8, 4)), (28, 8 * 3 * 4));
}
