//! The gpu-siamese command line.

use clap::{Parser, Subcommand};
use gpu_siamese::dims::AdamConfig;
use gpu_siamese::gpu::{self, Gpu, Kernels};
use gpu_siamese::model::{glorot_uniform, InputShape, Plan, TowerSpec, TUTORIAL_TOWER};
use gpu_siamese::synthetic::SyntheticSet;
use gpu_siamese::twin::GpuTwin;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "gpu-siamese", version, about = "Train Siamese (twin) networks with WGSL compute shaders on any GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The tower, the batch and the seed, shared by the commands that build a twin.
#[derive(clap::Args, Clone)]
struct TwinArgs {
    /// The tower, as a comma-separated list of layers: conv(FILTERS,K[xK][,same|valid][,relu|linear]),
    /// maxpool, dropout(RATE), gap, dense(UNITS[,relu|linear]). The default is the tutorial's tower as
    /// its code runs.
    #[arg(long, default_value = TUTORIAL_TOWER)]
    arch: String,
    /// Pairs per training step (the GPU runs twice as many images).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed for the weights, the pairs and the dropout masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter wgpu can see, with the limits that matter for compute.
    Adapters,
    /// Train the twin on synthetic classes (Fashion-MNIST training comes with the data reader).
    Train {
        #[command(flatten)]
        twin: TwinArgs,
        /// Training steps.
        #[arg(long, default_value_t = 300)]
        steps: u64,
        /// Adam's learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Contrastive loss margin.
        #[arg(long, default_value_t = 1.0)]
        margin: f32,
        /// Print the mean training loss every this many steps.
        #[arg(long, default_value_t = 50)]
        log_every: u64,
    },
    /// Time training steps on random 28x28 images and print ms per step and the time of each kernel.
    Bench {
        #[command(flatten)]
        twin: TwinArgs,
        /// Timed steps per repeat.
        #[arg(long, default_value_t = 30)]
        steps: u64,
        /// Repeats; the median and spread over them are reported.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Untimed steps first (shader compilation, caches).
        #[arg(long, default_value_t = 5)]
        warmup: u64,
        /// Skip the per-kernel breakdown.
        #[arg(long)]
        no_kernels: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Adapters => adapters(),
        Command::Train { twin, steps, lr, margin, log_every } => train(&twin, steps, lr, margin, log_every),
        Command::Bench { twin, steps, repeats, warmup, no_kernels } => bench(&twin, steps, repeats, warmup, !no_kernels),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn adapters() -> Result<()> {
    let adapters = gpu::list_adapters();
    if adapters.is_empty() {
        return Err(gpu::NO_ADAPTER_HELP.into());
    }
    let chosen = Gpu::new().ok().map(|g| g.info);
    for adapter in adapters {
        let info = adapter.get_info();
        let l = adapter.limits();
        let mark = if chosen.as_ref() == Some(&info) { "* " } else { "  " };
        println!("{mark}{}", gpu::describe(&info));
        println!(
            "    storage binding {} MiB, buffer {} MiB, {} storage buffers per stage, workgroup {} invocations \
             ({}x{}x{}), {} workgroups per dimension, {} KiB workgroup memory",
            l.max_storage_buffer_binding_size as u64 >> 20,
            l.max_buffer_size >> 20,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_workgroup_storage_size >> 10,
        );
    }
    println!("(* = the adapter gpu-siamese picks; choose another with WGPU_ADAPTER_NAME, WGPU_BACKEND or WGPU_POWER_PREF)");
    Ok(())
}

fn open_gpu() -> Result<(Gpu, Kernels)> {
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.describe());
    let kernels = Kernels::new(&gpu);
    Ok((gpu, kernels))
}

fn plan(args: &TwinArgs, input: InputShape) -> Result<Plan> {
    let spec: TowerSpec = args.arch.parse().map_err(|e| format!("--arch {:?}: {e}", args.arch))?;
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    Ok(Plan::new(&spec, input, 2 * args.batch_size, args.seed)?)
}

fn train(args: &TwinArgs, steps: u64, lr: f64, margin: f32, log_every: u64) -> Result<()> {
    let (gpu, kernels) = open_gpu()?;
    let input = InputShape::FASHION_MNIST;
    let plan = plan(args, input)?;
    println!("tower: {} ({} parameters), {} pairs per step", plan.spec, plan.trainable_params(), plan.pairs());
    let train_set = SyntheticSet::new(input, 10, 6000, 0.35, args.seed);
    let test_set = SyntheticSet::new(input, 10, 1000, 0.35, args.seed ^ 0x7e57);
    let adam = AdamConfig { learning_rate: lr, ..Default::default() };
    let log_every = log_every.max(1);
    let mut twin = GpuTwin::new(&gpu, &kernels, plan.clone(), adam, margin, log_every as usize)?;
    twin.set_params(&glorot_uniform(&plan, args.seed));
    let pairs = train_set.pairs(args.seed);
    let started = Instant::now();
    for step in 0..steps {
        let start = (step as usize * plan.pairs()) % (pairs.len() - plan.pairs() + 1);
        let (inputs, labels) = train_set.batch(&pairs[start..start + plan.pairs()]);
        twin.set_batch(&inputs, &labels);
        twin.train_step();
        if (step + 1) % log_every == 0 || step + 1 == steps {
            let first = step + 1 - ((step % log_every) + 1);
            let losses: Vec<f32> = (first..=step).map(|s| twin.read_loss(s)).collect();
            let mean = losses.iter().sum::<f32>() / losses.len() as f32;
            if !mean.is_finite() {
                return Err(format!("the training loss became {mean} at step {}; try a lower --lr", step + 1).into());
            }
            let elapsed = started.elapsed().as_secs_f64();
            println!("step {:>6}/{steps}  loss {mean:.4}  {:.1} ms/step", step + 1, 1e3 * elapsed / (step + 1) as f64);
        }
    }
    let test_pairs = test_set.pairs(args.seed ^ 1);
    let (mut correct, mut loss_sum, mut batches) = (0usize, 0.0f64, 0usize);
    for chunk in test_pairs.chunks_exact(plan.pairs()) {
        let (inputs, labels) = test_set.batch(chunk);
        twin.set_batch(&inputs, &labels);
        let (distances, loss) = twin.evaluate();
        correct += distances.iter().zip(&labels).filter(|(d, y)| (**d < margin / 2.0) == (**y == 1.0)).count();
        loss_sum += loss as f64;
        batches += 1;
    }
    println!(
        "held-out synthetic pairs: loss {:.4}, accuracy {:.3} at distance threshold {:.2}",
        loss_sum / batches.max(1) as f64,
        correct as f64 / (batches * plan.pairs()).max(1) as f64,
        margin / 2.0
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn bench(args: &TwinArgs, steps: u64, repeats: usize, warmup: u64, per_kernel: bool) -> Result<()> {
    let (gpu, kernels) = open_gpu()?;
    let plan = plan(args, InputShape::FASHION_MNIST)?;
    println!("tower: {}, batch {} pairs ({} images)", plan.spec, plan.pairs(), plan.batch);
    let mut twin = GpuTwin::new(&gpu, &kernels, plan.clone(), AdamConfig::default(), 1.0, 1024)?;
    twin.set_params(&glorot_uniform(&plan, args.seed));
    let set = SyntheticSet::new(plan.input, 10, plan.pairs(), 0.35, args.seed);
    let (inputs, labels) = set.batch(&set.pairs(args.seed)[..plan.pairs()]);
    twin.set_batch(&inputs, &labels);
    for _ in 0..warmup {
        twin.train_step();
    }
    gpu.wait();
    let mut per_step: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            for _ in 0..steps {
                twin.train_step();
            }
            gpu.wait();
            1e3 * start.elapsed().as_secs_f64() / steps as f64
        })
        .collect();
    let (min, max) = (per_step.iter().cloned().fold(f64::MAX, f64::min), per_step.iter().cloned().fold(0.0, f64::max));
    let ms = median(&mut per_step);
    println!(
        "{ms:.2} ms/step (median of {} repeats of {steps} steps; min {min:.2}, max {max:.2}), {:.0} images/s, {:.1} s per epoch of 120,000 pairs",
        per_step.len(),
        plan.batch as f64 * 1e3 / ms,
        ms * 1e-3 * (120_000 / plan.pairs()) as f64
    );
    if per_kernel {
        // Each dispatch of the step alone, many times in one pass: its time with the launch cost included.
        let reps = 20;
        let mut rows = Vec::new();
        for dispatch in twin.step_dispatches() {
            let mut times: Vec<f64> = (0..3)
                .map(|_| {
                    let start = Instant::now();
                    gpu::submit(&gpu, &vec![dispatch; reps]);
                    gpu.wait();
                    1e3 * start.elapsed().as_secs_f64() / reps as f64
                })
                .collect();
            rows.push((dispatch.kernel.name(), median(&mut times)));
        }
        let total: f64 = rows.iter().map(|r| r.1).sum();
        println!("per kernel (each alone, {reps} launches per pass, median of 3):");
        for (name, t) in &rows {
            println!("  {name:<24} {t:>8.3} ms  {:>5.1}%", 100.0 * t / total);
        }
        println!("  {:<24} {total:>8.3} ms", "sum");
    }
    Ok(())
}
