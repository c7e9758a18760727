//! Every WGSL kernel against the CPU reference on fresh random inputs of awkward sizes: odd heights and
//! widths, channel counts that are not multiples of 4, batch 1 and batches larger than a workgroup.
//! Outputs start as NaN, so an element a kernel fails to write cannot pass.

mod common;

use common::*;
use gpu_siamese::optimizer::AdamConfig;
use gpu_siamese::data::Augment;
use gpu_siamese::layers::conv2d::*;
use gpu_siamese::layers::dense::*;
use gpu_siamese::layers::dropout::*;
use gpu_siamese::layers::gap::*;
use gpu_siamese::layers::maxpool::*;
use gpu_siamese::layers::{Io, Layer, Shape};
use gpu_siamese::gpu::ops::{BATCH_CONTRASTIVE_BACKWARD, BATCH_CONTRASTIVE_FORWARD, BATCH_TRIPLET_BACKWARD, BATCH_TRIPLET_FORWARD};
use gpu_siamese::gpu::{Region, StepUniform};
use gpu_siamese::model::InputShape;
use gpu_siamese::reference as cpu;

/// The relative error a kernel may have against the f32 CPU reference: the library's check's, which the
/// page runs in a browser too.
use gpu_siamese::layer_check::TOLERANCE;

fn conv_cases() -> Vec<Conv2dDims> {
    let c = |batch, in_h, in_w, in_c, out_c, kernel_h, kernel_w, padding, relu, stride| Conv2dDims {
        batch, in_h, in_w, in_c, out_c, kernel_h, kernel_w, padding, relu, stride,
    };
    vec![
        c(1, 5, 7, 1, 3, 2, 2, Padding::Same, true, 1),
        c(3, 9, 6, 3, 5, 3, 3, Padding::Same, false, 1),
        c(2, 7, 5, 2, 7, 3, 2, Padding::Valid, true, 1),
        c(2, 6, 9, 3, 6, 4, 5, Padding::Same, true, 1),
        c(260, 4, 3, 1, 5, 2, 2, Padding::Same, true, 1),
        c(4, 28, 28, 1, 128, 2, 2, Padding::Same, true, 1),
        // Channels in multiples of 4 take the engine's vec4 loads: odd rows and columns, valid and same
        // padding, a linear conv, many lanes, the intended tower's second conv, 3x3 on 32 channels.
        c(3, 7, 5, 8, 16, 2, 2, Padding::Same, true, 1),
        c(2, 9, 6, 16, 8, 3, 2, Padding::Valid, false, 1),
        c(40, 5, 5, 8, 24, 3, 3, Padding::Same, true, 1),
        c(2, 14, 14, 128, 128, 2, 2, Padding::Same, true, 1),
        c(2, 14, 14, 32, 64, 3, 3, Padding::Same, true, 1),
        // Strides: TensorFlow's 'same' for strides pads the smaller half before.
        c(2, 9, 8, 3, 12, 3, 3, Padding::Same, true, 2),
        c(3, 10, 7, 8, 20, 3, 3, Padding::Same, false, 2),
        c(2, 11, 9, 4, 8, 2, 2, Padding::Valid, true, 2),
        c(1, 13, 13, 5, 9, 5, 5, Padding::Same, true, 3),
        // 1x1 output maps (a dense layer's shape, and a valid kernel as large as its input): the
        // weight gradient takes four images a step, cut by chunks and micro-batches; fewer rows than
        // a workgroup of 256 lanes, so the forward pass and the input gradient run narrower ones.
        c(70, 1, 1, 52, 20, 1, 1, Padding::Valid, true, 1),
        c(9, 1, 1, 13, 7, 1, 1, Padding::Valid, false, 1),
        c(6, 3, 3, 4, 8, 3, 3, Padding::Valid, true, 1),
    ]
}

/// Every engine variant this adapter runs: each way of sharing loads, each tile shape.
/// Whether building a pipeline costs several times more than on Vulkan: Mesa's GL driver compiles
/// naga's GLSL for every shape's constants (a tile shape is only constants to a shader).
fn slow_pipelines(gpu: &gpu_siamese::gpu::Gpu) -> bool {
    gpu.info.backend == wgpu::Backend::Gl
}

/// The convolution shapes the engine is checked on: all of them, or where pipelines are slow to build,
/// every other one (odd sizes, valid and same padding, vec4 channels, many lanes and strides still).
fn conv_cases_for(gpu: &gpu_siamese::gpu::Gpu) -> Vec<Conv2dDims> {
    let step = if slow_pipelines(gpu) { 2 } else { 1 };
    conv_cases().into_iter().step_by(step).collect()
}

/// The variants of `product` for `d`: every way of sharing loads with the default tile, and where
/// `every_tile`, the first way with every tile shape and the others with the largest too (where
/// pipelines are slow to build, every way with the default tile alone: the others are the same code
/// with other constants).
fn variants(d: &Conv2dDims, product: Product, gpu: &gpu_siamese::gpu::Gpu, every_tile: bool) -> Vec<Variant> {
    let shares: &[Share] = if gpu.subgroups { &[Share::Subgroup, Share::Direct, Share::Workgroup] } else { &[Share::Direct, Share::Workgroup] };
    let default = product.default_variant(d, gpu.subgroups);
    let all = product.tiles(d);
    let largest = *all.iter().max_by_key(|&&(rows, col_quads)| (rows * col_quads, col_quads)).expect("a tile");
    let mut list = Vec::new();
    for (i, &share) in shares.iter().enumerate() {
        let tiles = if slow_pipelines(gpu) {
            vec![(default.rows, default.col_quads)]
        } else if !every_tile {
            vec![(default.rows, default.col_quads)]
        } else if i == 0 {
            all.clone()
        } else {
            vec![(default.rows, default.col_quads), largest]
        };
        for (rows, col_quads) in tiles {
            let v = Variant { share, rows, col_quads: col_quads.min(share.most_col_quads()) };
            if !list.contains(&v) {
                list.push(v);
            }
        }
    }
    list
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn conv2d_matches_reference_in_every_variant() {
    let (gpu, kernels) = gpu();
    let mut seed = fresh_seed("conv2d");
    // Every tile shape on every other case (their channel counts still reach every tile), the
    // default tile on all: building each variant's pipeline is most of the test's time.
    for (case, d) in conv_cases_for(gpu).into_iter().enumerate() {
        seed += 1;
        let branches = if d.batch % 2 == 0 { 2 } else { 1 };
        let x = random(d.input_len(), seed);
        let wb = random(d.param_len(), seed ^ 1);
        let dy = random(d.output_len(), seed ^ 2);
        let y_ref = conv2d_forward(&x, &wb, &d);
        let dx_ref = conv2d_backward_input(&dy, &y_ref, &wb, &d);
        let dwb_ref = conv2d_backward_weight(&x, &dy, &y_ref, &d, branches);
        let name = format!("conv2d {d:?}");

        let (xb, wbb, dyb) = (gpu.storage_from("x", &x), gpu.storage_from("wb", &wb), gpu.storage_from("dy", &dy));
        let y = poisoned(gpu, d.output_len());
        // The exactly rounded forward pass.
        run(gpu, &[&kernels.conv2d_forward_exact(&d, (&xb).into(), (&wbb).into(), (&y).into())]);
        assert_close(&format!("{name} exact forward"), &gpu.read(&y, 0, d.output_len()), &y_ref, TOLERANCE);
        // The backward products read the pre-activation's gradient: with a ReLU, dy masked where the
        // reference's output is 0.
        let dz = if d.relu {
            let (yb, dz) = (gpu.storage_from("y", &y_ref), poisoned(gpu, d.output_len()));
            run(gpu, &[&kernels.conv2d_grad_z(&d, (&yb).into(), (&dyb).into(), (&dz).into())]);
            dz
        } else {
            dyb.clone()
        };

        // The forward with its pooling epilogue (no dropout): each 2x2 window's largest output.
        let pooled_ref: Vec<f32> = {
            let (ph, pw, c) = (d.out_h() / 2, d.out_w() / 2, d.out_c);
            let at = |n: usize, y: usize, x: usize, co: usize| y_ref[((n * d.out_h() + y) * d.out_w() + x) * c + co];
            let mut v = Vec::with_capacity(d.pooled_positions() * c);
            for n in 0..d.batch {
                for py in 0..ph {
                    for px in 0..pw {
                        for co in 0..c {
                            let w = [at(n, 2 * py, 2 * px, co), at(n, 2 * py, 2 * px + 1, co), at(n, 2 * py + 1, 2 * px, co), at(n, 2 * py + 1, 2 * px + 1, co)];
                            v.push(w.into_iter().fold(f32::NEG_INFINITY, f32::max));
                        }
                    }
                }
            }
            v
        };
        let pooled = d.pooled_positions() > 0;
        for product in [Product::Forward, Product::ForwardPooled, Product::BackwardInput, Product::BackwardWeight] {
            // Where pipelines are slow to build (GL), the pooled forward is left to the twin's tests.
            if product == Product::ForwardPooled && (!pooled || slow_pipelines(gpu)) {
                continue;
            }
            let mut first_bits: Option<Vec<u32>> = None;
            for v in variants(&d, product, gpu, case % 2 == 0) {
                let what = format!("{name} {product:?} {v:?}");
                let got = match product {
                    Product::ForwardPooled => {
                        let (y, codes) = (poisoned(gpu, pooled_ref.len()), poisoned(gpu, d.codes_len()));
                        let pool = PoolEpilogue { dropout: None, codes: (&codes).into() };
                        let step = step_buffer(gpu, StepUniform::default());
                        run(gpu, &[&kernels.conv2d_gemm_forward_pooled_as(&d, v, &pool, (&step).into(), (&xb).into(), (&wbb).into(), (&y).into())]);
                        let got = gpu.read(&y, 0, pooled_ref.len());
                        assert_close(&what, &got, &pooled_ref, TOLERANCE);
                        got
                    }
                    Product::Forward => {
                        let y = poisoned(gpu, d.output_len());
                        run(gpu, &[&kernels.conv2d_gemm_forward_as(&d, v, (&xb).into(), (&wbb).into(), (&y).into())]);
                        let got = gpu.read(&y, 0, d.output_len());
                        assert_close(&what, &got, &y_ref, TOLERANCE);
                        got
                    }
                    Product::BackwardInput => {
                        let dx = poisoned(gpu, d.input_len());
                        run(gpu, &[&kernels.conv2d_gemm_backward_input_as(&d, v, (&dz).into(), (&wbb).into(), (&dx).into())]);
                        let got = gpu.read(&dx, 0, d.input_len());
                        assert_close(&what, &got, &dx_ref, TOLERANCE);
                        got
                    }
                    Product::BackwardWeight => {
                        let chunks = WeightChunks::of(&d, branches, d.batch);
                        let partial = poisoned(gpu, chunks.partials_len(branches, d.param_len()));
                        let dwb = poisoned(gpu, d.param_len());
                        let step = step_buffer(gpu, StepUniform::default());
                        let partials = kernels.conv2d_gemm_backward_weight_as(&d, v, branches, &chunks, 0, (&step).into(), (&xb).into(), (&dz).into(), (&partial).into());
                        let sum = kernels.sum_partials(d.param_len(), branches, chunks.per_branch, (&partial).into(), (&dwb).into());
                        run(gpu, &[&partials, &sum]);
                        let got = gpu.read(&dwb, 0, d.param_len());
                        assert_close(&what, &got, &dwb_ref, TOLERANCE);
                        got
                    }
                };
                // Every variant adds the same terms in the same order: the same bits.
                match &first_bits {
                    None => first_bits = Some(bits(&got)),
                    Some(b) => assert!(*b == bits(&got), "{what} differs from the first variant's bits"),
                }
            }
        }
    }
}

/// The images `start..start + count` of each of the two branches of `values` (`per_image` values an
/// image, `branch` images a branch): a micro-batch's slice of a batch.
fn micro_slice(values: &[f32], per_image: usize, branch: usize, start: usize, count: usize) -> Vec<f32> {
    let first = &values[start * per_image..(start + count) * per_image];
    let second = &values[(branch + start) * per_image..(branch + start + count) * per_image];
    [first, second].concat()
}

#[test]
fn conv2d_weight_gradient_in_micro_batches_gives_the_whole_batch_bits() {
    let (gpu, kernels) = gpu();
    let mut seed = fresh_seed("conv2d micro-batches");
    let mut split = 0;
    for d in conv_cases_for(gpu).into_iter().filter(|d| d.batch % 2 == 0 && d.batch >= 4) {
        seed += 1;
        let chunks = WeightChunks::of(&d, 2, d.batch);
        let branch = d.batch / 2;
        let (x, dz) = (random(d.input_len(), seed), random(d.output_len(), seed ^ 1));
        let step_at = |start: usize, pairs: usize| {
            step_buffer(gpu, StepUniform { batch_pairs: branch as u32, micro_start: start as u32, micro_pairs: pairs as u32, ..Default::default() })
        };
        let gradient = |micro: usize| {
            let partial = poisoned(gpu, chunks.partials_len(2, d.param_len()));
            let mut buffers = Vec::new();
            let mut launches = Vec::new();
            for start in (0..branch).step_by(micro) {
                let count = micro.min(branch - start);
                let md = Conv2dDims { batch: 2 * count, ..d };
                let per_in = d.in_h * d.in_w * d.in_c;
                let per_out = d.out_h() * d.out_w() * d.out_c;
                let (xb, dzb) = (gpu.storage_from("x", &micro_slice(&x, per_in, branch, start, count)), gpu.storage_from("dz", &micro_slice(&dz, per_out, branch, start, count)));
                let step = step_at(start, count);
                launches.push(kernels.conv2d_gemm_backward_weight(&md, 2, &chunks, start, (&step).into(), (&xb).into(), (&dzb).into(), (&partial).into()));
                buffers.extend([xb, dzb, step]);
            }
            let dwb = poisoned(gpu, d.param_len());
            launches.push(kernels.sum_partials(d.param_len(), 2, chunks.per_branch, (&partial).into(), (&dwb).into()));
            run(gpu, &launches.iter().collect::<Vec<_>>());
            gpu.read(&dwb, 0, d.param_len())
        };
        let whole = gradient(branch);
        assert!(whole.iter().all(|v| v.is_finite()), "{d:?}: the whole batch's gradient is not finite");
        // Micro-batches that cut chunks, of one pair and of a few, the last one shorter (where pipelines
        // are slow to build, the first and the last of these).
        let micros: &[usize] = if slow_pipelines(gpu) { &[1, branch / 2 + 1] } else { &[1, 3, branch / 2 + 1] };
        for micro in micros.iter().copied().filter(|&m| m < branch) {
            split += 1;
            assert!(bits(&gradient(micro)) == bits(&whole), "{d:?} {chunks:?}: micro-batches of {micro} pairs differ from the whole batch");
        }
    }
    assert!(split >= 4, "only {split} splits were tried");
}

#[test]
fn conv2d_same_padding_is_kerass_asymmetric_rule() {
    // A 2x2 "same" kernel pads nothing before and one zero row/column after: output (0, 0) reads
    // x[0..2, 0..2] and the last output reads x[h-1, w-1] alone.
    let d = Conv2dDims { batch: 1, in_h: 3, in_w: 3, in_c: 1, out_c: 1, kernel_h: 2, kernel_w: 2, padding: Padding::Same, relu: false, stride: 1 };
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let wb = [1.0, 1.0, 1.0, 1.0, 0.0];
    let y = conv2d_forward(&x, &wb, &d);
    assert_eq!(y, [12.0, 16.0, 9.0, 24.0, 28.0, 15.0, 15.0, 17.0, 9.0]);
    let (gpu, kernels) = gpu();
    let (xb, wbb, yb) = (gpu.storage_from("x", &x), gpu.storage_from("wb", &wb), poisoned(gpu, 9));
    run(gpu, &[&kernels.conv2d_forward_exact(&d, (&xb).into(), (&wbb).into(), (&yb).into())]);
    assert_eq!(gpu.read(&yb, 0, 9), y);
    run(gpu, &[&kernels.conv2d_gemm_forward(&d, (&xb).into(), (&wbb).into(), (&yb).into())]);
    assert_eq!(gpu.read(&yb, 0, 9), y);
    // At stride 2, 'same' on 3 columns gives 2 outputs and pads one column in all, after (the smaller
    // half, none, before): output (0, 0) reads x[0..2, 0..2], output (1, 1) x[2, 2] alone.
    let d = Conv2dDims { stride: 2, ..d };
    assert_eq!((d.out_h(), d.pad_top()), (2, 0));
    assert_eq!(conv2d_forward(&x, &wb, &d), [12.0, 9.0, 15.0, 9.0]);
}

#[test]
fn maxpool_matches_reference() {
    let (gpu, kernels) = gpu();
    let mut seed = fresh_seed("maxpool");
    for d in [
        PoolDims::two_by_two(1, 5, 7, 3),
        PoolDims::two_by_two(3, 4, 6, 5),
        PoolDims::two_by_two(260, 3, 3, 2),
        PoolDims::two_by_two(2, 28, 28, 128),
        // Channels in fours take a vec4 a lane: odd rows and columns that no window takes, one pixel.
        PoolDims::two_by_two(3, 5, 7, 8),
        PoolDims::two_by_two(2, 3, 2, 4),
        // Overlapping windows (an input adds the gradients of every window it wins), windows with gaps
        // between them, and what no window reaches.
        PoolDims { batch: 2, in_h: 9, in_w: 8, channels: 3, size: 3, stride: 2 },
        PoolDims { batch: 3, in_h: 7, in_w: 10, channels: 5, size: 2, stride: 3 },
        PoolDims { batch: 1, in_h: 11, in_w: 11, channels: 4, size: 3, stride: 3 },
        PoolDims { batch: 2, in_h: 6, in_w: 5, channels: 2, size: 3, stride: 1 },
    ] {
        seed += 1;
        let x = random(d.input_len(), seed);
        let dy = random(d.output_len(), seed ^ 1);
        let y_ref = maxpool_forward(&x, &d);
        let dx_ref = maxpool_backward(&dy, &x, &d);
        let (xb, dyb) = (gpu.storage_from("x", &x), gpu.storage_from("dy", &dy));
        let (y, dx) = (poisoned(gpu, d.output_len()), poisoned(gpu, d.input_len()));
        let f = kernels.maxpool_forward(&d, (&xb).into(), (&y).into());
        let b = kernels.maxpool_backward(&d, (&dyb).into(), (&xb).into(), (&dx).into());
        run(gpu, &[&f, &b]);
        // Selection and routing are exact: no arithmetic happens.
        assert_eq!(gpu.read(&y, 0, d.output_len()), y_ref, "maxpool2_forward {d:?}");
        assert_eq!(gpu.read(&dx, 0, d.input_len()), dx_ref, "maxpool2_backward {d:?}");
    }
}

#[test]
fn maxpool2_gradient_goes_to_the_first_maximum() {
    let d = PoolDims::two_by_two(1, 2, 2, 1);
    let x = [0.5, 0.9, 0.9, 0.9];
    assert_eq!(maxpool_backward(&[1.0f32], &x, &d), [0.0, 1.0, 0.0, 0.0]);
    let (gpu, kernels) = gpu();
    let (xb, dyb, dx) = (gpu.storage_from("x", &x), gpu.storage_from("dy", &[1.0]), poisoned(gpu, 4));
    run(gpu, &[&kernels.maxpool_backward(&d, (&dyb).into(), (&xb).into(), (&dx).into())]);
    assert_eq!(gpu.read(&dx, 0, 4), [0.0, 1.0, 0.0, 0.0]);
}

fn step_buffer(gpu: &gpu_siamese::gpu::Gpu, s: gpu_siamese::gpu::StepUniform) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("step"),
        contents: bytemuck::bytes_of(&s),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

#[test]
fn dropout_matches_reference_bit_for_bit() {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed("dropout");
    for (count, rate, step, training) in
        [(1, 0.4, 0, true), (1001, 0.4, 7, true), (70001, 0.25, 123456, true), (999, 0.4, 3, false), (513, 0.0, 1, true)]
    {
        let d = DropoutDims { batch: 1, shape: Shape::vector(count), rate, seed: seed as u32 };
        let x = random(count, seed);
        let dy = random(count, seed ^ 1);
        let y_ref = dropout_forward(&x, &d, step, training);
        let dx_ref = dropout_backward(&dy, &d, step, training);
        let (xb, dyb, sb) = (gpu.storage_from("x", &x), gpu.storage_from("dy", &dy), step_buffer(gpu, StepUniform { step, training: training as u32, ..Default::default() }));
        let (y, dx) = (poisoned(gpu, count), poisoned(gpu, count));
        let f = kernels.dropout_forward(&d, (&sb).into(), (&xb).into(), (&y).into());
        let b = kernels.dropout_backward(&d, (&sb).into(), (&dyb).into(), (&dx).into());
        run(gpu, &[&f, &b]);
        assert_eq!(gpu.read(&y, 0, count), y_ref, "dropout_forward {d:?} step {step}");
        assert_eq!(gpu.read(&dx, 0, count), dx_ref, "dropout_backward {d:?} step {step}");
        if count > 1000 && training {
            let kept = y_ref.iter().zip(&x).filter(|(y, x)| **y == **x * d.scale()).count() as f64 / count as f64;
            // Five standard deviations of a binomial proportion: a broken hash fails, chance does not.
            let sigma = (rate as f64 * (1.0 - rate as f64) / count as f64).sqrt();
            assert!((kept - (1.0 - rate as f64)).abs() < 5.0 * sigma, "kept fraction {kept} for rate {rate}");
        }
        if !training || rate == 0.0 {
            assert_eq!(y_ref, x, "no dropout at evaluation or rate 0");
        }
    }
    // Different steps draw different masks.
    let d = DropoutDims { batch: 1, shape: Shape::vector(1000), rate: 0.4, seed: 5 };
    let masks: Vec<Vec<bool>> = (0..2).map(|s| (0..1000).map(|i| dropout_keeps(&d, s, i)).collect()).collect();
    assert_ne!(masks[0], masks[1]);
}

#[test]
fn gap_matches_reference() {
    let (gpu, kernels) = gpu();
    let mut seed = fresh_seed("gap");
    for d in [GapDims { batch: 1, h: 5, w: 7, channels: 3 }, GapDims { batch: 300, h: 3, w: 5, channels: 7 }, GapDims { batch: 2, h: 14, w: 14, channels: 128 }] {
        seed += 1;
        let x = random(d.input_len(), seed);
        let dy = random(d.output_len(), seed ^ 1);
        let (xb, dyb) = (gpu.storage_from("x", &x), gpu.storage_from("dy", &dy));
        let (y, dx) = (poisoned(gpu, d.output_len()), poisoned(gpu, d.input_len()));
        let f = kernels.gap_forward(&d, (&xb).into(), (&y).into());
        let b = kernels.gap_backward(&d, (&dyb).into(), (&dx).into());
        run(gpu, &[&f, &b]);
        assert_close(&format!("gap_forward {d:?}"), &gpu.read(&y, 0, d.output_len()), &gap_forward(&x, &d), TOLERANCE);
        assert_close(&format!("gap_backward {d:?}"), &gpu.read(&dx, 0, d.input_len()), &gap_backward(&dy, &d), TOLERANCE);
    }
}

/// The buffers a layer's recordings bind, as the twin gives them: its scratch and what it keeps for its
/// backward sized as it asks.
#[allow(clippy::too_many_arguments)]
fn layer_io<L: Layer>(
    gpu: &gpu_siamese::gpu::Gpu,
    layer: &L,
    branches: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: Option<&wgpu::Buffer>,
    params: &wgpu::Buffer,
    grads: Region,
) -> Io {
    Io {
        step: Region::whole(&step_buffer(gpu, StepUniform { training: 1, ..Default::default() })),
        x: x.into(),
        y: y.into(),
        dy: dy.into(),
        dx: dx.map(Region::whole),
        params: Some(params.into()),
        grads: Some(grads),
        state: None,
        aux: Some(Region::whole(&poisoned(gpu, layer.aux_len()))),
        partials: Some(Region::whole(&poisoned(gpu, layer.partials_len(branches, layer.batch()).max(1)))),
        branches,
        whole_batch: layer.batch(),
        first_pair: 0,
        exact: false,
        pool: None,
    }
}

#[test]
fn dense_matches_reference() {
    let (gpu, kernels) = gpu();
    let mut seed = fresh_seed("dense");
    for d in [
        DenseDims { batch: 1, in_dim: 5, out_dim: 3, relu: false },
        DenseDims { batch: 300, in_dim: 13, out_dim: 7, relu: true },
        DenseDims { batch: 6, in_dim: 128, out_dim: 48, relu: false },
    ] {
        seed += 1;
        let branches = if d.batch % 2 == 0 { 2 } else { 1 };
        let x = random(d.batch * d.in_dim, seed);
        let wb = random(d.param_len(), seed ^ 1);
        let dy = random(d.batch * d.out_dim, seed ^ 2);
        let y_ref = dense_forward(&x, &wb, &d);
        let (xb, wbb, dyb) = (gpu.storage_from("x", &x), gpu.storage_from("wb", &wb), gpu.storage_from("dy", &dy));
        let (y, dx, dwb) = (poisoned(gpu, dy.len()), poisoned(gpu, x.len()), poisoned(gpu, wb.len()));
        // The layer's own recordings, as the twin makes them.
        let io = layer_io(gpu, &d, branches, &xb, &y, &dyb, Some(&dx), &wbb, Region::whole(&dwb));
        run(gpu, &d.record_forward(kernels, &io).iter().collect::<Vec<_>>());
        run(gpu, &d.record_backward(kernels, &io).iter().chain(&d.record_gradient(kernels, &io)).collect::<Vec<_>>());
        assert_close(&format!("dense_forward {d:?}"), &gpu.read(&y, 0, dy.len()), &y_ref, TOLERANCE);
        let dx_ref = dense_backward_input(&dy, &y_ref, &wb, &d);
        assert_close(&format!("dense_backward_input {d:?}"), &gpu.read(&dx, 0, x.len()), &dx_ref, TOLERANCE);
        let dwb_ref = dense_backward_weight(&x, &dy, &y_ref, &d, branches);
        assert_close(&format!("dense_backward_weight {d:?}"), &gpu.read(&dwb, 0, wb.len()), &dwb_ref, TOLERANCE);
    }
}

#[test]
fn distance_matches_reference() {
    let (gpu, kernels) = gpu();
    let mut seed = fresh_seed("distance");
    for (pairs, dim) in [(1, 5), (7, 48), (300, 3)] {
        seed += 1;
        let mut emb = random(2 * pairs * dim, seed);
        // The last pair is identical: the 1e-7 clamp is active there and its gradient must be zero.
        let last = pairs - 1;
        for k in 0..dim {
            emb[(pairs + last) * dim + k] = emb[last * dim + k];
        }
        let ddist = random(pairs, seed ^ 1);
        let dist_ref = cpu::distance_forward(&emb, pairs, dim);
        let demb_ref = cpu::distance_backward(&ddist, &emb, pairs, dim);
        assert_eq!(dist_ref[last], 1e-7f32.sqrt());
        assert!(demb_ref[last * dim..(last + 1) * dim].iter().all(|&g| g == 0.0));
        let (eb, db) = (gpu.storage_from("emb", &emb), gpu.storage_from("ddist", &ddist));
        let (dist, demb) = (poisoned(gpu, pairs), poisoned(gpu, emb.len()));
        let step = step_buffer(gpu, StepUniform::default());
        let f = kernels.distance_forward(pairs, dim, (&step).into(), (&eb).into(), (&dist).into());
        let b = kernels.distance_backward(pairs, dim, (&db).into(), (&eb).into(), (&demb).into());
        run(gpu, &[&f, &b]);
        assert_close(&format!("distance_forward {pairs}x{dim}"), &gpu.read(&dist, 0, pairs), &dist_ref, TOLERANCE);
        assert_close(&format!("distance_backward {pairs}x{dim}"), &gpu.read(&demb, 0, emb.len()), &demb_ref, TOLERANCE);
    }
}

#[test]
fn batch_losses_match_reference() {
    let (gpu, kernels) = gpu();
    let mut seed = fresh_seed("batch_loss");
    // (rows, images per class, embedding width): odd sizes, a batch past one workgroup's 256 lanes, and
    // the P x K batch of a real run (16 classes x 4 images, 48 wide).
    for (rows, k, dim) in [(6, 2, 5), (15, 3, 7), (40, 5, 3), (64, 4, 48)] {
        seed += 1;
        let mut emb = random(rows * dim, seed);
        // Two identical rows: their distance is clamped and passes no gradient.
        let (first, rest) = emb.split_at_mut(dim);
        rest[dim..2 * dim].copy_from_slice(first);
        let (dist_ref, ss_ref) = cpu::pairwise_distance_forward(&emb, rows, dim);
        let eb = gpu.storage_from("emb", &emb);
        let (dist, ss) = (poisoned(gpu, rows * rows), poisoned(gpu, rows * rows));
        run(gpu, &[&kernels.pairwise_distance_forward(rows, dim, (&eb).into(), (&dist).into(), (&ss).into())]);
        let what = format!("{rows} rows in classes of {k}, dim {dim}");
        assert_close(&format!("pairwise_distance_forward {what}"), &gpu.read(&dist, 0, rows * rows), &dist_ref, TOLERANCE);
        assert_close(&format!("pairwise_distance_forward ss {what}"), &gpu.read(&ss, 0, rows * rows), &ss_ref, TOLERANCE);

        // Each loss kernel from the reference's distances, so that near-ties decide alike.
        let (distb, ssb) = (gpu.storage_from("dist", &dist_ref), gpu.storage_from("ss", &ss_ref));
        let margin = 1.1;
        let cases = [
            ("batch contrastive", BATCH_CONTRASTIVE_FORWARD, BATCH_CONTRASTIVE_BACKWARD,
             cpu::batch_contrastive_forward::<f32> as fn(&[f32], usize, usize, f32) -> f32,
             cpu::batch_contrastive_backward::<f32> as fn(&[f32], usize, usize, f32) -> Vec<f32>),
            ("batch triplet", BATCH_TRIPLET_FORWARD, BATCH_TRIPLET_BACKWARD,
             cpu::batch_triplet_forward::<f32>, cpu::batch_triplet_backward::<f32>),
        ];
        for (name, forward, backward, loss_ref, grad_ref) in cases {
            let (losses, ddist, demb) = (poisoned(gpu, 2), poisoned(gpu, rows * rows), poisoned(gpu, rows * dim));
            let step = step_buffer(gpu, StepUniform { loss_slot: 1, ..Default::default() });
            let f = kernels.batch_loss_forward(forward, rows, k, margin, (&step).into(), (&distb).into(), (&losses).into());
            let b = kernels.batch_loss_backward(backward, rows, k, margin, (&distb).into(), (&ddist).into());
            run(gpu, &[&f, &b]);
            let ddist_ref = grad_ref(&dist_ref, rows, k, margin);
            assert!(gpu.read(&losses, 0, 1)[0].is_nan(), "only the step's slot is written");
            assert_close(&format!("{name} forward {what}"), &gpu.read(&losses, 1, 1), &[loss_ref(&dist_ref, rows, k, margin)], TOLERANCE);
            assert_close(&format!("{name} backward {what}"), &gpu.read(&ddist, 0, rows * rows), &ddist_ref, TOLERANCE);
            let ddb = gpu.storage_from("ddist", &ddist_ref);
            run(gpu, &[&kernels.pairwise_distance_backward(rows, dim, (&eb).into(), (&ssb).into(), (&ddb).into(), (&demb).into())]);
            let demb_ref = cpu::pairwise_distance_backward(&ddist_ref, &emb, &ss_ref, rows, dim);
            assert_close(&format!("pairwise_distance_backward after {name} {what}"), &gpu.read(&demb, 0, rows * dim), &demb_ref, TOLERANCE);
        }
    }
}

#[test]
fn contrastive_matches_reference() {
    let (gpu, kernels) = gpu();
    let mut seed = fresh_seed("contrastive");
    // (pairs, valid pairs, margin): a last, partial batch counts only its valid pairs.
    for (pairs, valid, margin) in [(1, 1, 1.0), (7, 7, 1.0), (1000, 1000, 0.5), (257, 257, 2.0), (64, 29, 1.0)] {
        seed += 1;
        let dist: Vec<f32> = random(pairs, seed).iter().map(|v| v.abs() * 1.5).collect();
        let label: Vec<f32> = random(pairs, seed ^ 1).iter().map(|&v| (v > 0.0) as u8 as f32).collect();
        let loss_ref = cpu::contrastive_forward(&dist[..valid], &label[..valid], margin);
        let mut ddist_ref = cpu::contrastive_backward(&dist[..valid], &label[..valid], margin);
        ddist_ref.resize(pairs, 0.0);
        let (distb, labelb) = (gpu.storage_from("dist", &dist), gpu.storage_from("label", &label));
        let (losses, ddist) = (poisoned(gpu, 3), poisoned(gpu, pairs));
        let step = step_buffer(gpu, StepUniform { loss_slot: 2, valid_pairs: valid as u32, ..Default::default() });
        let f = kernels.contrastive_forward(pairs, margin, (&step).into(), (&distb).into(), (&labelb).into(), (&losses).into());
        let b = kernels.contrastive_backward(pairs, margin, (&step).into(), (&distb).into(), (&labelb).into(), (&ddist).into());
        run(gpu, &[&f, &b]);
        let got = gpu.read(&losses, 0, 3);
        assert!(got[0].is_nan() && got[1].is_nan(), "only the step's slot is written");
        let what = format!("{pairs} pairs ({valid} valid), margin {margin}");
        assert_close(&format!("contrastive_forward {what}"), &got[2..], &[loss_ref], TOLERANCE);
        assert_close(&format!("contrastive_backward {what}"), &gpu.read(&ddist, 0, pairs), &ddist_ref, TOLERANCE);
    }
}

/// What gather_pairs reads: the images as bytes, the pairs' image indices and labels, the byte table.
fn gather_sources(gpu: &gpu_siamese::gpu::Gpu, pixels: &[u8], pair_images: &[(u32, u32)], pair_labels: &[f32]) -> [wgpu::Buffer; 4] {
    let flat_pairs: Vec<u32> = pair_images.iter().flat_map(|&(a, b)| [a, b]).collect();
    let table: Vec<f32> = (0..=255u8).map(cpu::byte_value::<f32>).collect();
    [
        gpu.storage_from_bytes("images", pixels),
        gpu.storage_from_bytes("pairs", bytemuck::cast_slice(&flat_pairs)),
        gpu.storage_from("pair labels", pair_labels),
        gpu.storage_from("byte values", &table),
    ]
}

#[test]
fn gather_pairs_matches_reference_bit_for_bit() {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed("gather_pairs");
    // 15-byte images (3x5), so images straddle the u32 words the bytes are packed in; and 12-byte
    // colour images (2x2x3), which take a word a lane.
    for (images, shape, batch_pairs) in [(37, InputShape { h: 3, w: 5, c: 1 }, 5), (37, InputShape { h: 2, w: 2, c: 3 }, 5)] {
        let image_len = shape.len();
        let pixels: Vec<u8> = random(images * image_len, seed).iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
        let pair_images: Vec<(u32, u32)> = (0..11).map(|i| ((i * 7 % 37) as u32, (i * 5 % 37) as u32)).collect();
        let pair_labels: Vec<f32> = (0..11).map(|i| (i % 2) as f32).collect();
        let [images_buffer, pairs_buffer, labels_buffer, table_buffer] = gather_sources(gpu, &pixels, &pair_images, &pair_labels);
        for (start, valid) in [(0, 5), (6, 5), (8, 3)] {
            let (inputs, labels) = (poisoned(gpu, 2 * batch_pairs * image_len), poisoned(gpu, batch_pairs));
            let step = step_buffer(gpu, StepUniform { batch_start: start as u32, valid_pairs: valid as u32, ..Default::default() });
            let g = kernels.gather_pairs(
                batch_pairs, shape, None, (&step).into(), (&images_buffer).into(), (&pairs_buffer).into(),
                (&labels_buffer).into(), (&table_buffer).into(), (&inputs).into(), (&labels).into(),
            );
            run(gpu, &[&g]);
            let (inputs_ref, labels_ref) =
                cpu::gather_pairs::<f32>(&pixels, image_len, &pair_images, &pair_labels, start, valid, batch_pairs, None);
            assert_eq!(gpu.read(&inputs, 0, inputs_ref.len()), inputs_ref, "gather_pairs images from pair {start}");
            assert_eq!(gpu.read(&labels, 0, batch_pairs), labels_ref, "gather_pairs labels from pair {start}");
        }
    }
    assert_eq!(cpu::byte_value::<f32>(255), 1.0);
    assert_eq!(cpu::byte_value::<f32>(51), 0.2);
}

#[test]
fn augmented_gather_matches_reference() {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed("augment");
    let augment = Augment { flip: true, shift: 2, brightness: 0.2, contrast: 0.3 };
    for shape in [InputShape { h: 3, w: 5, c: 1 }, InputShape { h: 6, w: 4, c: 3 }] {
        let (images, batch_pairs, image_len) = (9, 4, shape.len());
        let pixels: Vec<u8> = random(images * image_len, seed).iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
        let pair_images: Vec<(u32, u32)> = (0..4).map(|i| (i as u32, (8 - i) as u32)).collect();
        let pair_labels = vec![1.0; 4];
        let [images_buffer, pairs_buffer, labels_buffer, table_buffer] = gather_sources(gpu, &pixels, &pair_images, &pair_labels);
        let aug_seed = seed as u32 | 1;
        let plain = cpu::gather_pairs::<f32>(&pixels, image_len, &pair_images, &pair_labels, 0, 4, batch_pairs, None).0;
        let mut seen = Vec::new();
        for (step, training) in [(0u32, 1u32), (1, 1), (7, 1), (7, 0), (1, 1)] {
            let inputs = poisoned(gpu, 2 * batch_pairs * image_len);
            let labels = poisoned(gpu, batch_pairs);
            let uniform = step_buffer(gpu, StepUniform { step, training, valid_pairs: 4, ..Default::default() });
            let g = kernels.gather_pairs(
                batch_pairs, shape, Some((&augment, aug_seed)), (&uniform).into(), (&images_buffer).into(), (&pairs_buffer).into(),
                (&labels_buffer).into(), (&table_buffer).into(), (&inputs).into(), (&labels).into(),
            );
            run(gpu, &[&g]);
            let got = gpu.read(&inputs, 0, plain.len());
            if training == 0 {
                assert_eq!(got, plain, "evaluation sees the images as they are");
                continue;
            }
            let expected = cpu::gather_pairs::<f32>(&pixels, image_len, &pair_images, &pair_labels, 0, 4, batch_pairs, Some((&augment, shape, aug_seed, step))).0;
            assert_close(&format!("augmented gather {shape:?} step {step}"), &got, &expected, 1e-6);
            assert_ne!(got, plain, "the images are changed");
            assert!(got.iter().all(|v| (0.0..=1.0).contains(v)));
            seen.push(got);
        }
        assert_ne!(seen[0], seen[1], "each step draws anew");
        assert_eq!(seen[1], seen[3], "the same step draws the same, bit for bit");
    }
    // The draws cover what they promise: both flips, every shift, factors within their ranges.
    let draws: Vec<cpu::AugmentDraw> = (0..400).map(|row| cpu::augment_draw(&augment, 5, 3, row)).collect();
    assert!(draws.iter().any(|d| d.flip) && draws.iter().any(|d| !d.flip));
    for shift in -2..=2 {
        assert!(draws.iter().any(|d| d.dx == shift) && draws.iter().any(|d| d.dy == shift), "shift {shift}");
    }
    assert!(draws.iter().all(|d| (0.7..=1.3).contains(&d.contrast) && (-0.2..=0.2).contains(&d.brightness)));
    let none = cpu::augment_draw(&Augment::default(), 5, 3, 1);
    assert_eq!((none.flip, none.dx, none.dy, none.contrast, none.brightness), (false, 0, 0, 1.0, 0.0));
}

#[test]
fn adam_matches_reference() {
    let (gpu, kernels) = gpu();
    let seed = fresh_seed("adam");
    let count = 1003;
    let config = AdamConfig { learning_rate: 3e-3, ..Default::default() };
    let mut w = random(count, seed);
    let (mut m, mut v) = (vec![0.0; count], vec![0.0; count]);
    let (wb, mb, vb) = (gpu.storage_from("w", &w), gpu.storage_from("m", &m), gpu.storage_from("v", &v));
    for t in 1..=3u64 {
        let g = random(count, seed ^ t);
        cpu::adam_update(&mut w, &g, &mut m, &mut v, &config, t);
        let gb = gpu.storage_from("g", &g);
        let step = {
            use wgpu::util::DeviceExt;
            let s = gpu_siamese::gpu::StepUniform { training: 1, alpha: config.alpha(t), ..Default::default() };
            gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("step"),
                contents: bytemuck::bytes_of(&s),
                usage: wgpu::BufferUsages::UNIFORM,
            })
        };
        let a = kernels.adam_update(count, &config, (&step).into(), (&gb).into(), (&wb).into(), (&mb).into(), (&vb).into());
        run(gpu, &[&a]);
        assert_close(&format!("adam_update step {t} w"), &gpu.read(&wb, 0, count), &w, 1e-6);
        assert_close(&format!("adam_update step {t} m"), &gpu.read(&mb, 0, count), &m, 1e-6);
        assert_close(&format!("adam_update step {t} v"), &gpu.read(&vb, 0, count), &v, 1e-6);
    }
    // Keras' step size at t = 1, lr * sqrt(1 - 0.999) / (1 - 0.9), off from the exact value only by
    // Keras' rounding of the betas to f32.
    let alpha = AdamConfig::default().alpha(1) as f64;
    let exact = 1e-3 * 0.001f64.sqrt() / 0.1;
    assert!((alpha - exact).abs() / exact < 1e-5, "alpha {alpha}");
}

#[test]
fn a_kernel_writing_a_region_leaves_the_rest_alone() {
    // Layers bind parts of the flat parameter and gradient buffers; a kernel must not spill past its part.
    let (gpu, kernels) = gpu();
    let d = DenseDims { batch: 2, in_dim: 3, out_dim: 2, relu: false };
    let x = random(6, 1);
    let dy = random(4, 2);
    let wb = random(d.param_len(), 3);
    let (xb, dyb, wbb) = (gpu.storage_from("x", &x), gpu.storage_from("dy", &dy), gpu.storage_from("wb", &wb));
    let y = poisoned(gpu, 4);
    let grads = gpu.storage_from("grads", &vec![7.0; 64 + d.param_len() + 64]);
    let io = layer_io(gpu, &d, 2, &xb, &y, &dyb, None, &wbb, Region::new(&grads, 64, d.param_len()));
    let dispatches: Vec<_> = d.record_forward(kernels, &io).into_iter().chain(d.record_backward(kernels, &io)).chain(d.record_gradient(kernels, &io)).collect();
    run(gpu, &dispatches.iter().collect::<Vec<_>>());
    let all = gpu.read(&grads, 0, 128 + d.param_len());
    assert!(all[..64].iter().chain(&all[64 + d.param_len()..]).all(|&v| v == 7.0));
    let y_ref = dense_forward(&x, &wb, &d);
    assert_close("dense_backward_weight into a region", &all[64..64 + d.param_len()], &dense_backward_weight(&x, &dy, &y_ref, &d, 2), TOLERANCE);
}

#[test]
fn the_tuner_measures_once_keeps_its_choice_and_changes_no_bits() {
    use gpu_siamese::gpu::tune::{candidates, Tuning};
    use gpu_siamese::gpu::Kernels;
    let (gpu, defaults) = gpu();
    let dir = std::env::temp_dir().join(format!("gpu-siamese-tune-{}", std::process::id()));
    let path = dir.join("tuning.json");
    let d = Conv2dDims { stride: 1, batch: 6, in_h: 9, in_w: 7, in_c: 8, out_c: 12, kernel_h: 3, kernel_w: 3, padding: Padding::Same, relu: true };
    let tuned = Kernels::with_tuning(gpu, Tuning::new(gpu, true, Some(path.clone())));
    let chosen = tuned.conv2d_variant(&d, Product::Forward);
    assert!(candidates(&d, Product::Forward, gpu.subgroups).contains(&chosen), "{chosen:?}");
    let text = std::fs::read_to_string(&path).expect("the choice is kept on disk");
    assert!(text.contains("Forward") && text.contains(&format!("{:?}", chosen.share)), "{text}");
    // A second process (fresh kernels) reads the choice instead of measuring again.
    let again = Kernels::with_tuning(gpu, Tuning::new(gpu, true, Some(path.clone())));
    assert_eq!(again.conv2d_variant(&d, Product::Forward), chosen);
    // And the tuned forward gives the default's bits.
    let x = random(d.input_len(), 7);
    let wb = random(d.param_len(), 8);
    let (xb, wbb) = (gpu.storage_from("x", &x), gpu.storage_from("wb", &wb));
    let outputs: Vec<Vec<u32>> = [&tuned, defaults]
        .iter()
        .map(|k| {
            let y = poisoned(gpu, d.output_len());
            run(gpu, &[&k.conv2d_gemm_forward(&d, (&xb).into(), (&wbb).into(), (&y).into())]);
            bits(&gpu.read(&y, 0, d.output_len()))
        })
        .collect();
    assert_eq!(outputs[0], outputs[1]);
    let _ = std::fs::remove_dir_all(dir);
}

/// A layer's launches against its reference on fresh random inputs: the training forward pass (and the
/// state it moves), the backward pass (the input's and the parameters' gradients through the final
/// sums), then the forward pass at inference; NaN-poisoned outputs, `branches` branches.
/// The library's check of `layer` against its CPU reference (src/layer_check.rs, which the page runs in
/// a browser too), at the kernel tests' tolerance.
fn layer_matches_reference<L: Layer>(name: &str, layer: &L, input_len: usize, branches: usize, seed: u64) {
    let (gpu, kernels) = gpu();
    let found = pollster::block_on(gpu_siamese::layer_check::against_reference(gpu, kernels, name, layer, input_len, branches, seed));
    assert!(found.len() >= 2, "{name}: {} comparisons", found.len());
    for c in found {
        eprintln!("{}: relative error {:.2e}", c.what, c.relative_error);
        assert!(c.relative_error <= TOLERANCE, "{}: relative error {:.3e} above {TOLERANCE:.1e}", c.what, c.relative_error);
    }
}

#[test]
fn new_layers_match_reference() {
    use gpu_siamese::layers::bn::BatchNormDims;
    use gpu_siamese::layers::globalmaxpool::GlobalMaxPoolDims;
    use gpu_siamese::layers::l2norm::L2NormDims;
    use gpu_siamese::layers::relu::ReluDims;
    let mut seed = fresh_seed("new layers");
    for (batch, shape) in [(6, Shape::map(5, 3, 7)), (4, Shape::map(3, 5, 8)), (2, Shape::map(1, 1, 300)), (10, Shape::vector(13))] {
        seed += 1;
        let n = batch * shape.len();
        layer_matches_reference(&format!("relu {shape:?}"), &ReluDims { batch, shape }, n, 2, seed);
        // One branch (a tower at inference) and two (the twin); many positions a chunk, and few.
        layer_matches_reference(&format!("bn {batch} {shape:?}"), &BatchNormDims { batch, shape }, n, 2, seed ^ 5);
        layer_matches_reference(&format!("bn one branch {batch} {shape:?}"), &BatchNormDims { batch, shape }, n, 1, seed ^ 6);
        if shape.flat {
            layer_matches_reference(&format!("l2norm {shape:?}"), &L2NormDims { batch, dim: shape.c }, n, 2, seed ^ 7);
        } else {
            layer_matches_reference(&format!("globalmaxpool {shape:?}"), &GlobalMaxPoolDims { batch, h: shape.h, w: shape.w, channels: shape.c }, n, 2, seed ^ 8);
        }
    }
    // A map large enough for many chunks per branch.
    let (batch, shape) = (8, Shape::map(28, 28, 5));
    layer_matches_reference("bn 8x28x28x5", &BatchNormDims { batch, shape }, batch * shape.len(), 2, seed ^ 9);
}

#[test]
fn the_librarys_layer_check_covers_every_kind_and_passes() {
    use gpu_siamese::layer_check::{every_layer_kind, AWKWARD_TOWERS, TOLERANCE};
    let (gpu, kernels) = gpu();
    let seed = fresh_seed("layer check");
    let found = pollster::block_on(every_layer_kind(gpu, kernels, seed)).unwrap();
    // Every layer kind appears in the towers the check (and the page) runs.
    for kind in gpu_siamese::layers::LAYER_NAMES {
        assert!(AWKWARD_TOWERS.iter().any(|(arch, _, _)| arch.split(',').any(|l| l.split('(').next() == Some(kind))), "no awkward tower has {kind}");
    }
    assert!(found.len() >= 40, "{} comparisons", found.len());
    for c in &found {
        eprintln!("{}: relative error {:.2e}", c.what, c.relative_error);
        assert!(c.relative_error <= TOLERANCE, "{}: relative error {:.3e}", c.what, c.relative_error);
    }
}
