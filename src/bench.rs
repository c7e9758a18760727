//! `gpu-siamese bench`: the time of a training step on random images kept on the GPU (gathered per step
//! as training gathers them), what each kernel of the step costs against the least work it must do,
//! and (`--roofline`) that work's rate against the adapter's own ceilings.

use crate::data::make_pairs;
use crate::optimizer::AdamConfig;
use crate::gpu::{self, Dispatch, Gpu, Kernel, Kernels, Region};
use crate::model::{glorot_uniform, Plan};
use crate::feed::{DeviceImages, DevicePairs};
use crate::twin::{GpuTwin, TooLarge, TwinOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;

/// Pairs in an epoch of the tutorial (two per Fashion-MNIST training image).
pub const EPOCH_PAIRS: usize = 120_000;

pub struct BenchOptions {
    pub steps: u64,
    pub repeats: usize,
    pub warmup: u64,
    pub per_kernel: bool,
    /// Run the tower's leading conv -> maxpool -> dropout -> gap block, and each conv's pooling, fused.
    pub fuse: bool,
    pub seed: u64,
    /// Measure the adapter's ceilings too, and each kernel's share of them.
    pub roofline: bool,
    /// Bytes the step's buffers may take (micro-batches beyond it).
    pub memory_budget: Option<u64>,
}

#[derive(Serialize, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Serialize, Debug)]
pub struct KernelTime {
    pub name: &'static str,
    /// The variant that ran (the convolution engine's sharing and tile), empty for one-form kernels.
    pub variant: String,
    pub ms: f64,
    /// Share of the kernels' summed time.
    pub share: f64,
    /// The least work the launch must do, and the rates its time implies.
    pub gflop: f64,
    pub megabytes: f64,
    pub gflop_per_s: f64,
    pub gb_per_s: f64,
    /// With --roofline: those rates as shares of the adapter's ceilings.
    pub arithmetic_share: Option<f64>,
    pub memory_share: Option<f64>,
    /// Floats the launch's lanes load (the convolution engine's products count them), and with
    /// --roofline the time those loads take at the adapter's measured rate as a share of the launch's.
    pub lane_loads: f64,
    pub load_share: Option<f64>,
}

/// The adapter's ceilings, measured on it: floating-point operations a second on plain multiply-add
/// chains (a multiply-add counts two, whether or not the adapter fuses it), the best of several shapes
/// of them, and bytes a second read plus written by a vec4 copy.
#[derive(Serialize, Debug, Clone)]
pub struct Roofline {
    pub gflop_per_s: f64,
    pub gb_per_s: f64,
    /// Which probe reached `gflop_per_s`.
    pub arithmetic_probe: String,
    /// Every arithmetic probe, (what, GFLOP/s).
    pub arithmetic_probes: Vec<(String, f64)>,
    /// Floats a second that lanes load from addresses of their own (four vec4s a step, from cache).
    pub gfloat_loads_per_s: f64,
}

#[derive(Serialize, Debug)]
pub struct BenchReport {
    pub adapter: String,
    pub tower: String,
    pub batch_pairs: usize,
    /// Micro-batches a step runs in, and their pairs (1 and the batch's when it runs whole).
    pub micro_batches: usize,
    pub micro_pairs: usize,
    pub fused: bool,
    pub steps: u64,
    pub repeats: usize,
    pub ms_per_step: Spread,
    pub images_per_second: f64,
    pub seconds_per_epoch: f64,
    /// How the kernels were timed; empty when they were not.
    pub kernel_method: String,
    pub kernels: Vec<KernelTime>,
    pub roofline: Option<Roofline>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Times `opts.repeats` runs of `opts.steps` training steps after `opts.warmup` untimed ones.
pub fn run(gpu: &Gpu, kernels: &Kernels, plan: &Plan, opts: &BenchOptions) -> Result<BenchReport, TooLarge> {
    let options = TwinOptions { memory_budget: opts.memory_budget, ..TwinOptions::new(opts.fuse) };
    let mut twin = GpuTwin::with_options(gpu, kernels, plan.clone(), AdamConfig::default(), 1.0, 1024, options)?;
    twin.set_params(&glorot_uniform(plan, opts.seed));
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    // Enough images for 16 batches (at most 2048, and what the adapter binds at once, but one batch at
    // the least): steps gather different pairs, as in training.
    let fitting = (gpu.max_binding_bytes() / plan.input.len() as u64) as usize;
    let count = (16 * plan.batch).min(2048).min(fitting).max(plan.batch);
    let images: Vec<u8> = (0..count * plan.input.len()).map(|_| rng.random()).collect();
    let labels: Vec<u32> = (0..count).map(|_| rng.random_range(0..10)).collect();
    let pairs = make_pairs(&labels, &mut rng);
    let device_images = DeviceImages::new(gpu, &images, plan.input.len())?;
    let device_pairs = DevicePairs::new(gpu, &pairs);
    let gather = twin.gather_from(kernels, &device_images, &device_pairs, None);
    let batches = pairs.len() / plan.pairs();
    let mut batch = 0;
    let mut train_step = |twin: &mut GpuTwin| {
        twin.train_step_gathered(&gather, (batch % batches) * plan.pairs(), plan.pairs());
        batch += 1;
    };
    for _ in 0..opts.warmup {
        train_step(&mut twin);
    }
    gpu.wait();
    let mut per_step: Vec<f64> = (0..opts.repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            for _ in 0..opts.steps {
                train_step(&mut twin);
            }
            gpu.wait();
            1e3 * start.elapsed().as_secs_f64() / opts.steps as f64
        })
        .collect();
    let (min, max) = (per_step.iter().cloned().fold(f64::MAX, f64::min), per_step.iter().cloned().fold(0.0, f64::max));
    let ms = median(&mut per_step);
    let roofline = opts.roofline.then(|| measure_roofline(gpu, kernels));
    let (kernel_method, kernel_times) = if opts.per_kernel || opts.roofline {
        let dispatches: Vec<&Dispatch> = twin.step_dispatches(Some(&gather));
        (format!("each launch alone, {KERNEL_REPEATS} times in one pass, median of 3 passes"), time_kernels(gpu, &dispatches, roofline.as_ref()))
    } else {
        (String::new(), Vec::new())
    };
    Ok(BenchReport {
        adapter: gpu.describe(),
        tower: plan.spec.to_string(),
        batch_pairs: plan.pairs(),
        micro_batches: twin.micro_batches(),
        micro_pairs: twin.micro_pairs,
        fused: opts.fuse && (plan.fused_head().is_some() || plan.fused_pools().iter().any(Option::is_some)),
        steps: opts.steps,
        repeats: per_step.len(),
        ms_per_step: Spread { median: ms, min, max },
        images_per_second: plan.batch as f64 * 1e3 / ms,
        seconds_per_epoch: ms * 1e-3 * EPOCH_PAIRS.div_ceil(plan.pairs()) as f64,
        kernel_method,
        kernels: kernel_times,
        roofline,
    })
}

const ROOFLINE: &str = include_str!("../shaders/roofline.wgsl");
pub const ROOFLINE_ARITHMETIC: Kernel = Kernel::new("roofline", &[("roofline", ROOFLINE)], "roofline_arithmetic");
pub const ROOFLINE_ARITHMETIC_SCALAR: Kernel = Kernel::new("roofline", &[("roofline", ROOFLINE)], "roofline_arithmetic_scalar");
pub const ROOFLINE_COPY: Kernel = Kernel::new("roofline", &[("roofline", ROOFLINE)], "roofline_copy");
pub const ROOFLINE_LOADS: Kernel = Kernel::new("roofline", &[("roofline", ROOFLINE)], "roofline_loads");
pub const KERNELS: &[Kernel] = &[ROOFLINE_ARITHMETIC, ROOFLINE_ARITHMETIC_SCALAR, ROOFLINE_COPY, ROOFLINE_LOADS];

/// The adapter's ceilings: the best of three timed passes of each probe, and for arithmetic the best
/// probe of a sweep (4, 8 and 16 chains a lane; one step of each an iteration of the loop, or four;
/// vec4 and scalar; fma() and a multiply then an add).
pub fn measure_roofline(gpu: &Gpu, kernels: &Kernels) -> Roofline {
    let (lanes, iterations, quads) = (1 << 16, 2048usize, 8 << 20);
    let source = gpu.storage("roofline source", 4 * quads);
    let target = gpu.storage("roofline target", 4 * quads);
    let mut probes = Vec::new();
    for (kernel, width) in [(ROOFLINE_ARITHMETIC, 4), (ROOFLINE_ARITHMETIC_SCALAR, 1)] {
        for chains in [4usize, 8, 16] {
            for unroll in [1usize, 4] {
                for fused in [true, false] {
                    // Scalar lanes do a quarter of the work a step: four times the iterations, to time alike.
                    let steps = iterations * 4 / width;
                    let constants = [("ITERATIONS", steps as f64), ("CHAINS", chains as f64), ("FUSED", f64::from(u8::from(fused))), ("UNROLL", unroll as f64)];
                    let probe = kernels.dispatch(kernel, &constants, &[(2, Region::whole(&target))], lanes).with_work(lanes * steps * chains * 2 * width, 0);
                    let what = format!(
                        "{chains} {} chains a lane, {unroll} step{} an iteration, {}",
                        if width == 4 { "vec4" } else { "f32" },
                        if unroll == 1 { "" } else { "s" },
                        if fused { "fma()" } else { "a * b + c" }
                    );
                    probes.push((what, probe));
                }
            }
        }
    }
    let copy = kernels
        .dispatch(ROOFLINE_COPY, &[("QUADS", quads as f64)], &[(1, Region::whole(&source)), (2, Region::whole(&target))], quads)
        .with_work(0, 8 * quads);
    let load_steps = iterations / 8;
    let loads = kernels
        .dispatch(ROOFLINE_LOADS, &[("ITERATIONS", load_steps as f64)], &[(1, Region::whole(&source)), (2, Region::whole(&target))], lanes)
        .with_lane_loads(lanes * load_steps * 16);
    let best = |d: &Dispatch| {
        gpu::submit(gpu, &[d]);
        gpu.wait();
        (0..3)
            .map(|_| {
                let start = Instant::now();
                gpu::submit(gpu, &[d]);
                gpu.wait();
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let arithmetic_probes: Vec<(String, f64)> = probes.iter().map(|(what, d)| (what.clone(), d.work.flops * 1e-9 / best(d))).collect();
    let (arithmetic_probe, gflop_per_s) = arithmetic_probes.iter().cloned().max_by(|a, b| a.1.total_cmp(&b.1)).expect("probes");
    let gfloat_loads_per_s = loads.work.lane_loads * 1e-9 / best(&loads);
    Roofline { gflop_per_s, gb_per_s: copy.work.bytes * 1e-9 / best(&copy), arithmetic_probe, arithmetic_probes, gfloat_loads_per_s }
}

const KERNEL_REPEATS: usize = 20;

/// Each dispatch alone, many times in one pass: its time, the launch's own cost included.
fn time_kernels(gpu: &Gpu, dispatches: &[&Dispatch], roofline: Option<&Roofline>) -> Vec<KernelTime> {
    let times: Vec<f64> = dispatches
        .iter()
        .map(|&dispatch| {
            let mut passes: Vec<f64> = (0..3)
                .map(|_| {
                    let start = Instant::now();
                    gpu::submit(gpu, &[dispatch; KERNEL_REPEATS]);
                    gpu.wait();
                    1e3 * start.elapsed().as_secs_f64() / KERNEL_REPEATS as f64
                })
                .collect();
            median(&mut passes)
        })
        .collect();
    let total: f64 = times.iter().sum();
    dispatches
        .iter()
        .zip(times)
        .map(|(d, ms)| KernelTime {
            name: d.kernel.name(),
            variant: d.variant.clone(),
            ms,
            share: ms / total,
            gflop: d.work.flops * 1e-9,
            megabytes: d.work.bytes * 1e-6,
            gflop_per_s: d.work.flops * 1e-6 / ms,
            gb_per_s: d.work.bytes * 1e-6 / ms,
            arithmetic_share: roofline.map(|r| d.work.flops * 1e-6 / ms / r.gflop_per_s),
            memory_share: roofline.map(|r| d.work.bytes * 1e-6 / ms / r.gb_per_s),
            lane_loads: d.work.lane_loads,
            load_share: roofline.filter(|_| d.work.lane_loads > 0.0).map(|r| d.work.lane_loads * 1e-6 / ms / r.gfloat_loads_per_s),
        })
        .collect()
}

/// The report as a person reads it.
pub fn print(report: &BenchReport) {
    println!("adapter: {}", report.adapter);
    println!(
        "tower: {}, batch {} pairs ({} images), {}",
        report.tower,
        report.batch_pairs,
        2 * report.batch_pairs,
        if report.fused { "fused (pooling in the convolutions' epilogues)" } else { "unfused" }
    );
    if report.micro_batches > 1 {
        println!(
            "each step in {} micro-batches of up to {} pairs (the whole batch's activations do not fit at once)",
            report.micro_batches, report.micro_pairs
        );
    }
    let s = &report.ms_per_step;
    println!(
        "{:.2} ms/step (median of {} repeats of {} steps; min {:.2}, max {:.2}), {:.0} images/s, {:.1} s per {} pairs (the tutorial's epoch)",
        s.median, report.repeats, report.steps, s.min, s.max, report.images_per_second, report.seconds_per_epoch, EPOCH_PAIRS
    );
    if let Some(r) = &report.roofline {
        println!(
            "adapter's ceilings (measured in this run): {:.1} GFLOP/s on multiply-add chains ({}), {:.1} GB/s on a vec4 copy, {:.2} G floats/s loaded by lanes from addresses of their own",
            r.gflop_per_s, r.arithmetic_probe, r.gb_per_s, r.gfloat_loads_per_s
        );
        let sweep: Vec<String> = r.arithmetic_probes.iter().map(|(what, g)| format!("{what} {g:.1}")).collect();
        println!("  the arithmetic probes, GFLOP/s: {}", sweep.join("; "));
    }
    if report.kernels.is_empty() {
        return;
    }
    println!("per kernel ({}); work is the least the kernel must do:", report.kernel_method);
    let shares = report.roofline.is_some();
    println!(
        "  {:<52} {:>9} {:>6} {:>9} {:>9} {:>9} {:>8}{}",
        "kernel (variant)", "ms", "share", "GFLOP", "MB", "GFLOP/s", "GB/s",
        if shares { "  of peak: arith  memory  loads" } else { "" }
    );
    for k in &report.kernels {
        let of_peak = match (k.arithmetic_share, k.memory_share) {
            (Some(a), Some(m)) => {
                let loads = k.load_share.map_or(String::new(), |l| format!(" {:>5.1}%", 100.0 * l));
                format!("  {:>14.1}% {:>6.1}%{loads}", 100.0 * a, 100.0 * m)
            }
            _ => String::new(),
        };
        println!(
            "  {:<52} {:>9.3} {:>5.1}% {:>9.4} {:>9.2} {:>9.2} {:>8.2}{of_peak}",
            if k.variant.is_empty() { k.name.to_string() } else { format!("{} ({})", k.name, k.variant) },
            k.ms,
            100.0 * k.share,
            k.gflop,
            k.megabytes,
            k.gflop_per_s,
            k.gb_per_s
        );
    }
    let total: f64 = report.kernels.iter().map(|k| k.ms).sum();
    println!("  {:<52} {:>9.3}", "sum", total);
}
