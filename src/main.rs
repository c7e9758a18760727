//! The gpu-siamese command line.

use clap::{Parser, Subcommand};
use gpu_siamese::checkpoint::{Checkpoint, TrainConfig};
use gpu_siamese::gpu::{self, Gpu, Kernels};
use gpu_siamese::model::{InputShape, Plan, TUTORIAL_TOWER};
use gpu_siamese::bench::BenchOptions;
use gpu_siamese::train;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "gpu-siamese", version, about = "Train Siamese (twin) networks with WGSL compute shaders on any GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Folder with train-/t10k- images and labels in IDX format (.gz or not). Default: $GPU_SIAMESE_DATA,
    /// then /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist), then ./data/fashion-mnist.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Total epochs (a resumed run counts the ones already done, like Keras' initial_epoch). [default: 70]
    #[arg(long)]
    epochs: Option<usize>,
    /// Pairs per training step. [default: 64]
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam's learning rate (beta1 0.9, beta2 0.999, epsilon 1e-7 as Keras). [default: 0.001]
    #[arg(long)]
    lr: Option<f64>,
    /// Contrastive loss margin. [default: 1]
    #[arg(long)]
    margin: Option<f32>,
    /// Width of the embedding: the last dense layer's units. [default: the tower's, 48]
    #[arg(long)]
    embedding_dim: Option<usize>,
    /// The tower: conv(FILTERS,K[xK][,same|valid][,relu|linear]), maxpool, dropout(RATE), gap,
    /// dense(UNITS[,relu|linear]), comma-separated. [default: the tutorial's tower as its code runs,
    /// conv(128,2,same,relu),maxpool,dropout(0.4),gap,dense(48)]
    #[arg(long)]
    arch: Option<String>,
    /// Seed of the weights, the pairs, their order and the dropout masks. [default: 0]
    #[arg(long)]
    seed: Option<u64>,
    /// Train on the first N training images only (a quick run).
    #[arg(long, value_name = "N")]
    train_limit: Option<usize>,
    /// Validate on the first N test images only.
    #[arg(long, value_name = "N")]
    test_limit: Option<usize>,
    /// Draw new pairs every epoch instead of reshuffling the same ones.
    #[arg(long)]
    resample_pairs: bool,
    /// Output folder. [default: runs/<date-time>, or the resumed run's folder]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in DIR from its last finished epoch; it keeps its settings (only --epochs,
    /// --out and --data may be given).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
}

/// The tower, the batch and the seed of the benchmark's twin.
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
    /// Train the twin on Fashion-MNIST, the tutorial's way: for every image one positive and one
    /// negative pair, contrastive loss, Adam; validated each epoch on fixed test pairs.
    ///
    /// Writes OUT/metrics.csv, OUT/last.safetensors and OUT/best.safetensors (by val_loss), and
    /// OUT/resume.safetensors (with Adam's state) for --resume. Ctrl-C stops cleanly, keeping the last
    /// finished epoch.
    #[command(verbatim_doc_comment)]
    Train(TrainArgs),
    /// Time training steps on random 28x28 images (kept on the GPU and gathered per step, as in
    /// training) and print ms per step, and each kernel's time beside the least work it must do.
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
        /// Run every layer as its own kernels, without the fused conv -> maxpool -> dropout -> gap block
        /// (the reference path, for comparison).
        #[arg(long)]
        unfused: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Adapters => adapters(),
        Command::Train(args) => train(args),
        Command::Bench { twin, steps, repeats, warmup, no_kernels, unfused, json } => {
            let opts = BenchOptions { steps, repeats, warmup, per_kernel: !no_kernels, fuse: !unfused, seed: twin.seed };
            bench(&twin, &opts, json)
        }
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

fn plan(args: &TwinArgs, input: InputShape) -> Result<Plan> {
    let spec = train::tower(&args.arch, None)?;
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    Ok(Plan::new(&spec, input, 2 * args.batch_size, args.seed)?)
}

/// Settings no run can use, refused before anything starts.
fn check_numbers(config: &TrainConfig) -> Result<()> {
    let bad = |flag: &str, value: String, want: &str| -> Result<()> { Err(format!("{flag} {value}: {want}").into()) };
    if !(config.learning_rate.is_finite() && config.learning_rate > 0.0) {
        return bad("--lr", config.learning_rate.to_string(), "the learning rate must be a positive number");
    }
    if !(config.margin.is_finite() && config.margin > 0.0) {
        return bad("--margin", config.margin.to_string(), "the margin must be a positive number");
    }
    if config.batch_size == 0 {
        return bad("--batch-size", "0".into(), "at least one pair per step");
    }
    if config.epochs == 0 {
        return bad("--epochs", "0".into(), "at least one epoch");
    }
    if config.train_limit.is_some_and(|l| l < 2) || config.test_limit.is_some_and(|l| l < 2) {
        return Err("--train-limit and --test-limit need at least 2 images".into());
    }
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    let (config, out) = match &args.resume {
        None => {
            let spec = train::tower(args.arch.as_deref().unwrap_or(TUTORIAL_TOWER), args.embedding_dim)?;
            let config = TrainConfig {
                arch: spec.to_string(),
                input: [28, 28, 1],
                epochs: args.epochs.unwrap_or(70),
                batch_size: args.batch_size.unwrap_or(64),
                learning_rate: args.lr.unwrap_or(1e-3),
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-7,
                margin: args.margin.unwrap_or(1.0),
                seed: args.seed.unwrap_or(0),
                resample_pairs: args.resample_pairs,
                train_limit: args.train_limit,
                test_limit: args.test_limit,
            };
            check_numbers(&config)?;
            let out = args.out.clone().unwrap_or_else(train::default_out_dir);
            if out.join(train::RESUME_FILE).exists() {
                return Err(format!(
                    "{} already holds a run: continue it with --resume {}, or choose another --out",
                    out.display(),
                    out.display()
                )
                .into());
            }
            (config, out)
        }
        Some(dir) => {
            let state = Checkpoint::load(&dir.join(train::RESUME_FILE))
                .map_err(|e| format!("cannot resume: {e} (a run folder holds resume.safetensors after its first epoch)"))?;
            let mut config = state.config;
            let conflicts: Vec<String> = [
                args.arch.as_ref().map(|a| ("--arch", a.clone(), config.arch.clone())),
                args.embedding_dim.map(|d| ("--embedding-dim", d.to_string(), "the saved tower's".into())),
                args.batch_size.filter(|&b| b != config.batch_size).map(|b| ("--batch-size", b.to_string(), config.batch_size.to_string())),
                args.lr.filter(|&l| l != config.learning_rate).map(|l| ("--lr", l.to_string(), config.learning_rate.to_string())),
                args.margin.filter(|&m| m != config.margin).map(|m| ("--margin", m.to_string(), config.margin.to_string())),
                args.seed.filter(|&s| s != config.seed).map(|s| ("--seed", s.to_string(), config.seed.to_string())),
                args.train_limit.filter(|&l| Some(l) != config.train_limit).map(|l| ("--train-limit", l.to_string(), format!("{:?}", config.train_limit))),
                args.test_limit.filter(|&l| Some(l) != config.test_limit).map(|l| ("--test-limit", l.to_string(), format!("{:?}", config.test_limit))),
                (args.resample_pairs && !config.resample_pairs).then(|| ("--resample-pairs", "on".into(), "off".into())),
            ]
            .into_iter()
            .flatten()
            .filter(|(flag, given, saved)| !(*flag == "--arch" && train::tower(given, None).map(|s| s.to_string()).ok().as_ref() == Some(saved)))
            .map(|(flag, given, saved)| format!("{flag} {given} (the run has {saved})"))
            .collect();
            if !conflicts.is_empty() {
                return Err(format!(
                    "a resumed run keeps its settings; only --epochs, --out and --data may be given. Conflicting: {}",
                    conflicts.join("; ")
                )
                .into());
            }
            if let Some(epochs) = args.epochs {
                config.epochs = epochs;
            }
            check_numbers(&config)?;
            let out = args.out.clone().unwrap_or_else(|| dir.clone());
            if out != *dir && out.join(train::RESUME_FILE).exists() {
                return Err(format!("{} already holds another run: choose another --out", out.display()).into());
            }
            (config, out)
        }
    };
    train::install_interrupt_handler();
    let run = train::TrainRun { config, data: args.data, out, resume: args.resume };
    match train::train(&run)? {
        train::Outcome::Finished => Ok(()),
        train::Outcome::Interrupted => std::process::exit(130),
    }
}

fn bench(args: &TwinArgs, opts: &BenchOptions, json: bool) -> Result<()> {
    let gpu = Gpu::new()?;
    let kernels = Kernels::new(&gpu);
    let plan = plan(args, InputShape::FASHION_MNIST)?;
    let report = gpu_siamese::bench::run(&gpu, &kernels, &plan, opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        gpu_siamese::bench::print(&report);
    }
    Ok(())
}
