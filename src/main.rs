//! The gpu-siamese command line.

use clap::{Parser, Subcommand};
use gpu_siamese::checkpoint::Checkpoint;
use gpu_siamese::config::{LossKind, Sampler, TrainConfig};
use gpu_siamese::data::Augment;
use gpu_siamese::optimizer::LrSchedule;
use gpu_siamese::gpu::{self, Gpu, Kernels};
use gpu_siamese::model::{InputShape, Plan, TUTORIAL_TOWER};
use gpu_siamese::bench::BenchOptions;
use gpu_siamese::checkpoint::write_atomically;
use gpu_siamese::evaluate::{self, ClassChoice, EvalOptions, Trained};
use gpu_siamese::compare::{self, CompareOptions};
use gpu_siamese::embed::{self, EmbedOptions};
use gpu_siamese::gallery::{self, SearchOptions};
use gpu_siamese::dedup::{self, DedupOptions};
use gpu_siamese::outputs::{self, Input, Output};
use gpu_siamese::{report, run, train};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "gpu-siamese", version, about = "Train Siamese (twin) networks with WGSL compute shaders on any GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// The dataset: a folder of train-/t10k- images and labels in IDX format (.gz or not), or of class
    /// folders of pictures. Default: $GPU_SIAMESE_DATA, then /usr/share/datasets/fashion-mnist (Debian
    /// package dataset-fashion-mnist), then ./data/fashion-mnist; a resumed run, the folder it trained on.
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
    /// How the learning rate moves after the warm-up: constant; cosine (half a cosine down to 0 over
    /// --epochs, as Keras' CosineDecay); or step (times --lr-step-factor every --lr-step-epochs epochs).
    /// [default: constant]
    #[arg(long, value_enum)]
    lr_schedule: Option<ScheduleArg>,
    /// For --lr-schedule step: epochs between steps. [default: 10]
    #[arg(long, value_name = "N")]
    lr_step_epochs: Option<usize>,
    /// For --lr-schedule step: what multiplies the learning rate at each step. [default: 0.1]
    #[arg(long, value_name = "F")]
    lr_step_factor: Option<f64>,
    /// Raise the learning rate linearly from near 0 over the first N epochs (fractions allowed, e.g.
    /// 0.5). [default: 0]
    #[arg(long, value_name = "N")]
    warmup_epochs: Option<f64>,
    /// Stop once val_loss has not improved for PATIENCE epochs, and end on the best epoch's weights
    /// (last.safetensors then holds them), as Keras' EarlyStopping(restore_best_weights=True).
    #[arg(long, value_name = "PATIENCE", value_parser = clap::value_parser!(u64).range(1..))]
    early_stopping: Option<u64>,
    /// Never pair an image with itself as a positive pair, in training, validation and calibration
    /// (the tutorial's create_pairs may, a few times per epoch; kept by default for its figures).
    #[arg(long)]
    no_self_pairs: bool,
    /// The loss' margin (contrastive or triplet). [default: 1]
    #[arg(long)]
    margin: Option<f32>,
    /// Width of the embedding: the last dense layer's units. [default: the tower's, 48]
    #[arg(long)]
    embedding_dim: Option<usize>,
    /// The tower: a named one (see `gpu-siamese towers`: tutorial, tutorial-intended, small, colour) or
    /// comma-separated layers: conv(FILTERS,K[xK][,same|valid][,relu|linear][,stride=S]), maxpool,
    /// dropout(RATE), gap, globalmaxpool, flatten, dense(UNITS[,relu|linear]), bn, relu, l2norm.
    /// [default: tutorial, the tutorial's tower as its code runs]
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
    /// Leave these classes out of training and validation, for one-shot tests on classes the model
    /// never saw (`evaluate` scores them): class folder names or label numbers, comma-separated
    /// (e.g. 5,7,8,9). A folder dataset puts their pictures in its test set whole.
    #[arg(long, value_name = "CLASSES", value_delimiter = ',')]
    holdout_classes: Option<Vec<String>>,
    /// The size pictures from a folder dataset are made into, HxW (or N for NxN). IDX images keep
    /// their own. [default: 28x28]
    #[arg(long, value_name = "HxW", value_parser = parse_image_size)]
    image_size: Option<(usize, usize)>,
    /// 1 (grayscale) or 3 (RGB), for a folder dataset. [default: 1]
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    channels: Option<u8>,
    /// How training batches are drawn: `pairs`, the tutorial's (for every image one positive and one
    /// negative pair); or `pk`, class-balanced batches of P classes x K images whose every pair (or
    /// triplet) is used. [default: pairs, or pk for --loss triplet]
    #[arg(long, value_enum)]
    sampler: Option<SamplerArg>,
    /// P, for --sampler pk. [default: 8, or every class when fewer]
    #[arg(long, value_name = "P")]
    classes_per_batch: Option<usize>,
    /// K, for --sampler pk. [default: 4]
    #[arg(long, value_name = "K")]
    images_per_class: Option<usize>,
    /// The loss: contrastive (the tutorial's) or triplet (over a pk batch's triplets; margin --margin).
    /// [default: contrastive]
    #[arg(long, value_enum)]
    loss: Option<LossKind>,
    /// Augmentation: mirror each training image left-right at random (drawn per image and step).
    #[arg(long)]
    flip: bool,
    /// Augmentation: shift each training image by up to N pixels each way (edges repeated). [default: 0]
    #[arg(long, value_name = "N")]
    shift: Option<u32>,
    /// Augmentation: add a brightness offset drawn from [-X, X] (images are in [0, 1]). [default: 0]
    #[arg(long, value_name = "X")]
    brightness: Option<f32>,
    /// Augmentation: scale contrast about mid-grey by a factor drawn from [1 - X, 1 + X]. [default: 0]
    #[arg(long, value_name = "X")]
    contrast: Option<f32>,
    /// For a folder dataset without train/ and test/ folders: the fraction of each class's pictures
    /// drawn (from --seed) for the test set. [default: 0.2]
    #[arg(long, value_name = "F")]
    test_fraction: Option<f64>,
    /// Output folder. [default: runs/<date-time>, or the resumed run's folder]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Stream each batch's images to the GPU instead of uploading the dataset once (done anyway when
    /// the images are more than the adapter can bind); the same results, bit for bit.
    #[arg(long)]
    stream: bool,
    /// Round every convolution multiply-add once, as a fused multiply-add does, whatever the adapter's
    /// fma does: Keras' bits, at several times the cost on an adapter without a fused multiply-add
    /// (lavapipe). By default the adapter's own arithmetic is used.
    #[arg(long)]
    exact: bool,
    /// Run the convolution kernels' default variants instead of measuring them on this adapter the
    /// first time a layer shape is met (the same results either way; GPU_SIAMESE_NO_TUNE does the same).
    #[arg(long)]
    no_tune: bool,
    /// The most GPU memory, in MiB, a training step's buffers may take; a batch that needs more runs
    /// in micro-batches (the same results, bit for bit). Batches above what the adapter binds at once
    /// run in micro-batches anyway. [default: no limit beyond the adapter's]
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    memory_budget: Option<u64>,
    /// Continue the run in folder DIR (the --out of a run; it holds resume.safetensors after the first
    /// epoch) from its last finished epoch; it keeps its settings (only --epochs, --out and --data may
    /// be given).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
}

/// The tower, the batch and the seed of the benchmark's twin.
#[derive(clap::Args, Clone)]
struct TwinArgs {
    /// The tower: a named one (see `gpu-siamese towers`) or comma-separated layers, as train --arch.
    /// The default is the tutorial's tower as its code runs.
    #[arg(long, default_value = TUTORIAL_TOWER)]
    arch: String,
    /// Pairs per training step (the GPU runs twice as many images).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed for the weights, the pairs and the dropout masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The images' size, HxW (or N). [default: 28x28, Fashion-MNIST's]
    #[arg(long, value_name = "HxW", value_parser = parse_image_size)]
    image_size: Option<(usize, usize)>,
    /// The images' channels, 1 or 3.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    channels: u8,
    /// Round every convolution multiply-add once, as train --exact does.
    #[arg(long)]
    exact: bool,
    /// Run the convolution kernels' default variants, untuned (as train --no-tune).
    #[arg(long)]
    no_tune: bool,
    /// The most GPU memory, in MiB, the step's buffers may take (as train --memory-budget).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    memory_budget: Option<u64>,
}

/// Which way round the pictures' brightness is given to the model.
#[derive(clap::Args)]
struct PolarityArgs {
    /// Invert every picture (255 - v). By default a picture is inverted only when its background
    /// (its border's brightness) is the opposite of the training pictures' (Fashion-MNIST's are light
    /// on black, most photos dark on light), with a note saying so.
    #[arg(long, conflicts_with = "no_invert")]
    invert: bool,
    /// Invert no picture, whatever its background.
    #[arg(long)]
    no_invert: bool,
}

impl PolarityArgs {
    fn get(&self) -> gpu_siamese::data::Polarity {
        use gpu_siamese::data::Polarity;
        match (self.invert, self.no_invert) {
            (true, _) => Polarity::Invert,
            (_, true) => Polarity::Keep,
            _ => Polarity::Auto,
        }
    }
}

/// What chooses and scores the evaluation's pairs and episodes.
#[derive(clap::Args)]
struct EvalArgs {
    /// The dataset (IDX files or class folders, as for train); its test split is scored. [default: the
    /// folder the checkpoint was trained on, if it is still there; else as for train]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The test classes scored. [default: held-out when the checkpoint holds classes out, else all]
    #[arg(long, value_enum)]
    classes: Option<ClassChoice>,
    /// Score only the first N test images (before the classes are chosen).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Also calibrate, on training pairs, the threshold whose false-accept rate is this (e.g. 0.01) and
    /// score the test pairs at it.
    #[arg(long, value_name = "RATE")]
    target_far: Option<f64>,
    /// Classes per few-shot episode. [default: 4, or all the classes scored when fewer]
    #[arg(long, value_name = "N")]
    n_way: Option<usize>,
    /// Support images per class in a few-shot episode.
    #[arg(long, value_name = "K", default_value_t = 1)]
    k_shot: usize,
    /// Few-shot episodes.
    #[arg(long, default_value_t = 1000)]
    episodes: usize,
    /// Seed of the few-shot episodes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Never pair a test image with itself (the tutorial's pairs, which evaluation draws the same way,
    /// may; a run trained with --no-self-pairs is scored without them anyway).
    #[arg(long)]
    no_self_pairs: bool,
    /// Images per forward pass. [default: as many as the adapter binds comfortably, up to 256]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
}

impl EvalArgs {
    fn options(&self) -> Result<EvalOptions> {
        if let Some(far) = self.target_far.filter(|f| !(0.0..=1.0).contains(f)) {
            return Err(format!("--target-far {far}: a rate between 0 and 1, e.g. 0.01").into());
        }
        // Each episode's result is kept for the confidence interval: beyond this the figure no longer moves.
        const MOST_EPISODES: usize = 1_000_000;
        if self.episodes == 0 || self.episodes > MOST_EPISODES {
            return Err(format!("--episodes {}: from 1 to {MOST_EPISODES}", self.episodes).into());
        }
        Ok(EvalOptions {
            data: self.data.clone(),
            classes: self.classes,
            limit: self.limit,
            target_far: self.target_far,
            n_way: self.n_way,
            k_shot: self.k_shot,
            episodes: self.episodes,
            no_self_pairs: self.no_self_pairs,
            seed: self.seed,
            batch_size: self.batch_size,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter wgpu can see, with the limits that matter for compute.
    Adapters {
        /// Only the adapter gpu-siamese would pick, on one line (an error when there is none).
        #[arg(long)]
        picked: bool,
    },
    /// A tower layer by layer, as Keras' model.summary(): each layer's output shape, parameters and
    /// memory per image, then a training step's GPU memory at the batch size beside the adapter's limits.
    Summary {
        #[command(flatten)]
        twin: TwinArgs,
    },
    /// The towers --arch takes by name, each with its spec; with --spec, only the spec a name (or a
    /// spec) stands for.
    Towers {
        /// Print the spec this name or spec stands for, and nothing else.
        #[arg(long, value_name = "ARCH")]
        spec: Option<String>,
    },
    /// Train the twin. By default the tutorial's way on Fashion-MNIST: for every image one positive and
    /// one negative pair, contrastive loss, Adam; validated each epoch on fixed test pairs. --data takes
    /// your own pictures too, one folder per class.
    ///
    /// Writes OUT/metrics.csv, OUT/last.safetensors and OUT/best.safetensors (by val_loss), and
    /// OUT/resume.safetensors (with Adam's state) for --resume. Ctrl-C stops cleanly, keeping the last
    /// finished epoch.
    #[command(verbatim_doc_comment)]
    Train(Box<TrainArgs>),
    /// Score a checkpoint on the test pairs: loss, ROC AUC, equal-error rate; accuracy, precision, recall,
    /// F1 and the confusion counts at the calibrated threshold, at a threshold for a wanted false-accept
    /// rate and at the best one; retrieval (precision@1, MAP@R) and N-way K-shot accuracy over the test
    /// images. Prints a table and writes JSON.
    Evaluate {
        /// The checkpoint (a run's best.safetensors or last.safetensors).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        #[command(flatten)]
        eval: EvalArgs,
        /// Where the JSON goes. [default: beside the checkpoint, NAME.evaluation.json]
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// The distance between two pictures and the verdict (same or different) at the checkpoint's
    /// calibrated threshold; or, with --pairs, of every pair listed in a CSV, written as CSV.
    ///
    /// Pictures in any format the image crate reads are made grayscale (or RGB for a 3-channel model),
    /// scaled to fit the model's input with their aspect kept and padded with their border's colour.
    Compare {
        /// Two picture files.
        #[arg(value_name = "IMAGE", num_args = 0..=2)]
        images: Vec<PathBuf>,
        /// The trained model: a run's best.safetensors (or last.safetensors).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// A CSV of pairs: two columns of picture paths (relative ones from the CSV's folder), an
        /// optional header row "a,b".
        #[arg(long, value_name = "CSV")]
        pairs: Option<PathBuf>,
        /// Where --pairs' results go (a,b,distance,verdict). [default: standard output]
        #[arg(long, value_name = "CSV")]
        out: Option<PathBuf>,
        /// Use this threshold instead of the checkpoint's.
        #[arg(long, value_parser = parse_threshold)]
        threshold: Option<f32>,
        #[command(flatten)]
        polarity: PolarityArgs,
        /// Images per forward pass. [default: as many as the adapter binds comfortably, up to 256]
        #[arg(long, value_name = "N")]
        batch_size: Option<usize>,
    },
    /// Embeddings of pictures as a NumPy .npy file ([count, dim] float32) with a CSV index of their
    /// sources and labels beside it; batched on the GPU.
    Embed {
        /// The trained model: a run's best.safetensors (or last.safetensors).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// A folder of pictures (searched recursively; a picture's first sub-folder is its label), an
        /// IDX images file, or a folder of IDX files (its --split).
        #[arg(long, value_name = "DIR|IDX")]
        images: PathBuf,
        /// The split of an IDX folder: test (its t10k files) or train.
        #[arg(long, default_value = "test", value_parser = parse_split)]
        split: String,
        /// The .npy file to write; its index goes beside it as .csv.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        polarity: PolarityArgs,
        /// Images per forward pass. [default: as many as the adapter binds comfortably, up to 256]
        #[arg(long, value_name = "N")]
        batch_size: Option<usize>,
    },
    /// The k nearest gallery items of each query, with distances and the verdict (same or different) at
    /// the checkpoint's calibrated threshold: a table, and CSV or JSON. Queries and the gallery are
    /// pictures, folders, IDX files (or an IDX folder's split) embedded on the fly, or an `embed`
    /// output (.npy with its .csv index beside it), so a large gallery is embedded once. Exact search
    /// on the GPU; a query found in the gallery (the same source) is marked "(itself)".
    Search {
        /// Query pictures, folders, IDX files, or one embed .npy.
        #[arg(value_name = "QUERY", required = true)]
        queries: Vec<PathBuf>,
        /// The trained model: a run's best.safetensors (or last.safetensors).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// The gallery: folders, pictures, IDX files, or one embed .npy.
        #[arg(long, value_name = "DIR|NPY", required = true, num_args = 1..)]
        gallery: Vec<PathBuf>,
        /// Neighbours per query (at most 64, the GPU search's most).
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Use this threshold for the verdicts instead of the checkpoint's.
        #[arg(long, value_parser = parse_threshold)]
        threshold: Option<f32>,
        /// Leave each query's own source out of its results (when the queries are in the gallery).
        #[arg(long)]
        skip_self: bool,
        /// The split of an IDX folder given as queries: test (its t10k files) or train.
        #[arg(long, default_value = "test", value_parser = parse_split)]
        split: String,
        /// The split of an IDX folder given as the gallery: test or train.
        #[arg(long, default_value = "train", value_parser = parse_split)]
        gallery_split: String,
        /// Write every result as CSV (query,query_label,rank,gallery,gallery_label,distance,verdict,itself).
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// Write every result and a summary as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Queries whose results are printed.
        #[arg(long, default_value_t = 10, value_name = "N")]
        show: usize,
        #[command(flatten)]
        polarity: PolarityArgs,
        /// Images per forward pass. [default: as many as the adapter binds comfortably, up to 256]
        #[arg(long, value_name = "N")]
        batch_size: Option<usize>,
    },
    /// The groups of pictures in a folder that the model calls the same (near-duplicates), found through
    /// the GPU search: two pictures are linked when one is among the other's --k nearest under the
    /// threshold; a group is a connected component of links, or with --cliques a set whose every two
    /// pictures are under the threshold. Writes OUT/groups.csv and a contact sheet, OUT/groups.png.
    Dedup {
        /// The folder of pictures (searched recursively).
        #[arg(value_name = "DIR")]
        folder: PathBuf,
        /// The trained model: a run's best.safetensors (or last.safetensors).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// Use this threshold instead of the checkpoint's.
        #[arg(long, value_parser = parse_threshold)]
        threshold: Option<f32>,
        /// Nearest pictures each one links to (at most 64, the GPU search's most).
        #[arg(long, default_value_t = 16)]
        k: usize,
        /// Groups whose every two pictures are under the threshold, rather than chains of links.
        #[arg(long)]
        cliques: bool,
        /// Where groups.csv and groups.png go. [default: beside DIR, DIR-dedup]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        polarity: PolarityArgs,
        /// Images per forward pass. [default: as many as the adapter binds comfortably, up to 256]
        #[arg(long, value_name = "N")]
        batch_size: Option<usize>,
    },
    /// The tower as a standard ONNX model (opset 13) for onnxruntime, tract, or any ONNX runtime: input
    /// `images` [batch, h, w, c], NHWC float32 in [0, 1] (bytes / 255); output `embedding`
    /// [batch, dim]. With --pair, also the twin's distance: inputs `a` and `b`, output `distance`.
    Export {
        /// The trained model: a run's best.safetensors (or last.safetensors).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// The tower's ONNX file.
        #[arg(long, value_name = "FILE")]
        onnx: PathBuf,
        /// Also write the two-input distance model here.
        #[arg(long, value_name = "FILE")]
        pair: Option<PathBuf>,
    },
    /// Pictures of a run, as PNG files: curves.png (loss, val_loss and accuracy per epoch),
    /// distances.png (test-pair distance histograms and the threshold), roc.png, pairs.png (test pairs
    /// with their distances, mistakes marked) and embeddings.png (the test embeddings' PCA map by class).
    /// Also writes the evaluation, as `evaluate` does.
    Report {
        /// The run's folder.
        #[arg(value_name = "RUN_DIR")]
        run: PathBuf,
        /// The checkpoint pictured. [default: RUN_DIR/best.safetensors]
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        eval: EvalArgs,
        /// Where the pictures go. [default: RUN_DIR/report]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// The page on 127.0.0.1: compare two pictures, search a folder and train the tutorial's tower in a
    /// browser, on its WebGPU. Serves the built page (`make web` builds it into target/web and starts
    /// this) and a data folder at /data/.
    Web {
        /// The built page. [default: target/web]
        #[arg(long, value_name = "DIR", default_value = "target/web")]
        site: PathBuf,
        /// Served at /data/: Fashion-MNIST's IDX files for training in the tab, and any checkpoints to
        /// load by URL. [default: Fashion-MNIST where `train` finds it]
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// The port (0: any free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Time training steps on random images of the given size (kept on the GPU and gathered per step,
    /// as in training) and print ms per step, and each kernel's time beside the least work it must do.
    Bench {
        #[command(flatten)]
        twin: TwinArgs,
        /// Timed steps per repeat.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
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
        /// Also measure the adapter's own ceilings (multiply-add throughput, copy bandwidth) and print
        /// each kernel's rates as shares of them.
        #[arg(long)]
        roofline: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Mesa's drivers look for a display to present to when wgpu starts, and without `XDG_RUNTIME_DIR` print
/// "error: XDG_RUNTIME_DIR is invalid or not set" (harmless: compute never presents). A private runtime
/// folder, made only when none is set, keeps a clean run free of errors it did not mean.
fn give_mesa_a_runtime_dir() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir()) {
        return;
    }
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else { return };
    let dir = std::env::temp_dir().join(format!("gpu-siamese-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // Only a folder this user owns and no one else can enter, as the XDG specification asks.
    if std::fs::metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0) {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

fn web(site: &Path, data: Option<&Path>, port: u16) -> Result<()> {
    if !site.join("index.html").is_file() || !site.join("pkg/gpu_siamese_web_bg.wasm").is_file() {
        return Err(format!("{} holds no built page (index.html and pkg/gpu_siamese_web_bg.wasm): build it with `make web-build`, or run `make web`", site.display()).into());
    }
    let data = match data {
        Some(dir) if !dir.is_dir() => return Err(format!("--data {}: no such folder", dir.display()).into()),
        Some(dir) => Some(dir.to_path_buf()),
        None => gpu_siamese::data::find_fashion_mnist(None).ok(),
    };
    match &data {
        Some(dir) => println!("data: {} at /data/", dir.display()),
        None => println!("note: no Fashion-MNIST found (apt-get install dataset-fashion-mnist, or --data DIR): the page can compare and search, not train"),
    }
    gpu_siamese::serve::serve(site, data.as_deref(), port, |address| {
        println!("the page: {address} (Chrome or Edge 113+, Firefox 141+ or Safari 26 with WebGPU; Chromium on Linux: --enable-unsafe-webgpu). Ctrl-C stops.");
    })?;
    Ok(())
}

fn main() -> ExitCode {
    // Before any thread starts: the environment is the process's.
    give_mesa_a_runtime_dir();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Adapters { picked } => adapters(picked),
        Command::Web { site, data, port } => web(&site, data.as_deref(), port),
        Command::Towers { spec } => towers(spec.as_deref()),
        Command::Summary { twin } => summary(&twin),
        Command::Train(args) => train(*args),
        Command::Evaluate { checkpoint, eval, json } => evaluate(&checkpoint, &eval, json),
        Command::Compare { images, checkpoint, pairs, out, threshold, polarity, batch_size } => {
            let mut inputs = vec![checkpoint_input(&checkpoint)];
            inputs.extend(images.iter().map(|p| Input::new(format!("the picture {} compared", p.display()), p)));
            inputs.extend(pairs.iter().map(|p| Input::new(format!("the list of pairs (--pairs {})", p.display()), p)));
            let outs: Vec<Output> = out.iter().map(|o| Output::new("--out", o)).collect();
            let opts = CompareOptions { images: &images, pairs: pairs.as_deref(), out: out.as_deref(), threshold, polarity: polarity.get(), batch_size };
            outputs::check(&inputs, &outs, true)
                .map_err(|e| e.into())
                .and_then(|()| open_model(&checkpoint))
                .and_then(|(gpu, kernels, trained)| compare::compare(&gpu, &kernels, &trained, &opts))
        }
        Command::Embed { checkpoint, images, split, out, polarity, batch_size } => {
            let inputs = [checkpoint_input(&checkpoint), Input::new(format!("the pictures embedded (--images {})", images.display()), &images)];
            let outs = [Output::new("--out", &out), Output::new("--out's index", &out.with_extension("csv"))];
            let opts = EmbedOptions { images: &images, split: &split, out: &out, polarity: polarity.get(), batch_size };
            outputs::check(&inputs, &outs, true)
                .map_err(|e| e.into())
                .and_then(|()| open_model(&checkpoint))
                .and_then(|(gpu, kernels, trained)| embed::embed(&gpu, &kernels, &trained, &opts))
        }
        Command::Search { queries, checkpoint, gallery, k, threshold, skip_self, split, gallery_split, csv, json, show, polarity, batch_size } => {
            let opts = SearchOptions {
                queries: &queries,
                gallery: &gallery,
                split: &split,
                gallery_split: &gallery_split,
                k,
                threshold,
                skip_self,
                csv: csv.as_deref(),
                json: json.as_deref(),
                show,
                polarity: polarity.get(),
                batch_size,
            };
            let mut inputs = vec![checkpoint_input(&checkpoint)];
            for (what, paths) in [("the queries", &queries), ("the gallery", &gallery)] {
                for path in paths {
                    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
                        inputs.extend(Input::embeddings(what, path));
                    } else {
                        inputs.push(Input::new(format!("{what} {}", path.display()), path));
                    }
                }
            }
            let outs: Vec<Output> = opts.csv.iter().map(|p| Output::new("--csv", p)).chain(opts.json.iter().map(|p| Output::new("--json", p))).collect();
            outputs::check(&inputs, &outs, true)
                .map_err(|e| e.into())
                .and_then(|()| open_model(&checkpoint))
                .and_then(|(gpu, kernels, trained)| gallery::search(&gpu, &kernels, &trained, &opts).map(|_| ()))
        }
        Command::Dedup { folder, checkpoint, threshold, k, cliques, out, polarity, batch_size } => {
            let out = out.unwrap_or_else(|| dedup::default_out(&folder));
            let inputs = [checkpoint_input(&checkpoint), Input::new(format!("the folder of pictures {}", folder.display()), &folder)];
            let outs: Vec<Output> = dedup::FILES.iter().map(|name| Output::in_folder("--out", &out, name)).collect();
            let opts = DedupOptions { folder: &folder, threshold, k, cliques, out: &out, polarity: polarity.get(), batch_size };
            outputs::check(&inputs, &outs, true)
                .map_err(|e| e.into())
                .and_then(|()| open_model(&checkpoint))
                .and_then(|(gpu, kernels, trained)| dedup::dedup(&gpu, &kernels, &trained, &opts).map(|_| ()))
        }
        Command::Export { checkpoint, onnx, pair } => {
            let outs: Vec<Output> = std::iter::once(Output::new("--onnx", &onnx)).chain(pair.iter().map(|p| Output::new("--pair", p))).collect();
            outputs::check(&[checkpoint_input(&checkpoint)], &outs, true)
                .and_then(|()| Trained::load(&checkpoint))
                .map_err(|e| e.into())
                .and_then(|trained| Ok(gpu_siamese::onnx::export(&trained, &onnx, pair.as_deref())?))
        }
        Command::Report { run, checkpoint, eval, out } => {
            let checkpoint = checkpoint.unwrap_or_else(|| run.join(train::BEST_FILE));
            let out = out.unwrap_or_else(|| run.join("report"));
            let mut inputs = vec![checkpoint_input(&checkpoint), Input::new(format!("the run's {}", train::METRICS_FILE), &run.join(train::METRICS_FILE))];
            inputs.extend(data_input(&eval.data));
            let outs: Vec<Output> =
                report::files().map(|name| Output::in_folder("--out", &out, name)).collect();
            outputs::check(&inputs, &outs, true)
                .map_err(|e| e.into())
                .and_then(|()| eval.options())
                .and_then(|opts| Ok(report::report(&run, &checkpoint, &opts, &out).map(|_| ())?))
        }
        Command::Bench { twin, steps, repeats, warmup, no_kernels, unfused, roofline, json } => {
            let opts = BenchOptions { steps, repeats, warmup, per_kernel: !no_kernels, fuse: !unfused, seed: twin.seed, roofline, memory_budget: twin.memory_budget.map(|m| m << 20) };
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

fn checkpoint_input(checkpoint: &Path) -> Input {
    Input::new(format!("the checkpoint (--checkpoint {})", checkpoint.display()), checkpoint)
}

/// The data folder (or IDX file) given with --data, if any.
fn data_input(data: &Option<PathBuf>) -> Option<Input> {
    data.as_ref().map(|d| Input::new(format!("the data (--data {})", d.display()), d))
}

fn adapters(picked: bool) -> Result<()> {
    if picked {
        let gpu = Gpu::new()?;
        if let Some(warning) = gpu::unused::unused_gpu(&gpu.info) {
            eprintln!("warning: {warning}");
        }
        println!("{}, {}", gpu.describe(), if gpu.subgroups { "subgroups" } else { "no subgroups" });
        return Ok(());
    }
    let adapters = gpu::list_adapters();
    if adapters.is_empty() {
        return Err(gpu::GpuError::NoAdapter.into());
    }
    let chosen = match Gpu::new() {
        Ok(g) => Some(g.info),
        Err(e) => {
            println!("no adapter is picked: {e}");
            None
        }
    };
    if let Some(warning) = chosen.as_ref().and_then(gpu::unused::unused_gpu) {
        println!("warning: {warning}\n");
    }
    for adapter in adapters {
        let info = adapter.get_info();
        let l = adapter.limits();
        let mark = if chosen.as_ref() == Some(&info) { "* " } else { "  " };
        println!("{mark}{}", gpu::describe(&info));
        println!(
            "    storage binding {} MiB, buffer {} MiB, {} storage buffers per stage, workgroup {} invocations \
             ({}x{}x{}), {} workgroups per dimension, {} KiB workgroup memory",
            l.max_storage_buffer_binding_size >> 20,
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
    let spec = run::tower(&args.arch, None)?;
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    if input.c == 2 {
        return Err("--channels 2: pictures are grayscale (1) or RGB (3)".into());
    }
    let mut plan = Plan::new(&spec, input, 2 * args.batch_size, args.seed)?;
    plan.exact = args.exact;
    Ok(plan)
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
    if !(config.warmup_epochs.is_finite() && config.warmup_epochs >= 0.0) {
        return bad("--warmup-epochs", config.warmup_epochs.to_string(), "a number of epochs, 0 or more");
    }
    let [h, w, _] = config.input;
    if config.augment.shift as usize >= h.min(w) {
        return bad("--shift", config.augment.shift.to_string(), &format!("a shift below the picture's size ({h}x{w}); a few pixels is usual"));
    }
    if config.warmup_epochs > config.epochs as f64 {
        println!("note: --warmup-epochs {} is more than the run's {} epochs: the learning rate never reaches --lr", config.warmup_epochs, config.epochs);
    }
    if config.train_limit.is_some_and(|l| l < 2) || config.test_limit.is_some_and(|l| l < 2) {
        return Err("--train-limit and --test-limit need at least 2 images".into());
    }
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    let (config, out) = match &args.resume {
        None => {
            let spec = run::tower(args.arch.as_deref().unwrap_or(TUTORIAL_TOWER), args.embedding_dim)?;
            if let (Some(arch), Some(dim)) = (&args.arch, args.embedding_dim) {
                println!("note: --embedding-dim {dim} replaces the units of the last dense layer of --arch \"{arch}\": {spec}");
            }
            let config = TrainConfig {
                arch: spec.to_string(),
                input: {
                    let (h, w) = args.image_size.unwrap_or((28, 28));
                    [h, w, args.channels.unwrap_or(1) as usize]
                },
                epochs: args.epochs.unwrap_or(DEFAULT_EPOCHS),
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
                // Resolved against the data's classes when it is loaded.
                holdout_classes: vec![],
                test_fraction: args.test_fraction.unwrap_or(gpu_siamese::config::default_test_fraction()),
                class_names: vec![],
                data: None,
                exact: args.exact,
                sampler: sampler(&args)?,
                loss: args.loss.unwrap_or_default(),
                lr_schedule: lr_schedule(&args)?,
                warmup_epochs: args.warmup_epochs.unwrap_or(0.0),
                early_stopping: args.early_stopping.map(|p| p as usize),
                no_self_pairs: args.no_self_pairs,
                // Measured on the training pictures when they are loaded.
                background: None,
                augment: Augment { flip: args.flip, shift: args.shift.unwrap_or(0), brightness: args.brightness.unwrap_or(0.0), contrast: args.contrast.unwrap_or(0.0) },
            };
            if !(0.0..=1.0).contains(&config.augment.brightness) || !(0.0..1.0).contains(&config.augment.contrast) {
                return Err("--brightness is from 0 to 1 and --contrast from 0 up to (not including) 1".into());
            }
            if config.input[2] == 2 {
                return Err("--channels 2: pictures are grayscale (1) or RGB (3)".into());
            }
            if !(0.0..1.0).contains(&config.test_fraction) {
                return Err(format!("--test-fraction {}: a fraction from 0 up to (not including) 1", config.test_fraction).into());
            }
            check_numbers(&config)?;
            let out = args.out.clone().unwrap_or_else(run::default_out_dir);
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
                args.holdout_classes.as_ref().map(|h| ("--holdout-classes", h.join(","), format!("{:?}", config.holdout_classes))),
                args.image_size.map(|(h, w)| ("--image-size", format!("{h}x{w}"), format!("{}x{}", config.input[0], config.input[1]))),
                args.channels.map(|c| ("--channels", c.to_string(), config.input[2].to_string())),
                args.test_fraction.map(|f| ("--test-fraction", f.to_string(), config.test_fraction.to_string())),
                (args.sampler.is_some() || args.classes_per_batch.is_some() || args.images_per_class.is_some())
                    .then(|| ("the sampler's flags", "given".to_string(), format!("{:?}", config.sampler))),
                args.loss.filter(|&l| l != config.loss).map(|l| ("--loss", format!("{l:?}"), format!("{:?}", config.loss))),
                (args.flip || args.shift.is_some() || args.brightness.is_some() || args.contrast.is_some())
                    .then(|| ("augmentation flags", "given".to_string(), format!("{:?}", config.augment))),
                (args.exact && !config.exact).then(|| ("--exact", "on".to_string(), "off".to_string())),
                (args.lr_schedule.is_some() || args.lr_step_epochs.is_some() || args.lr_step_factor.is_some())
                    .then(|| ("the schedule's flags", "given".to_string(), schedule_name(&config.lr_schedule))),
                args.warmup_epochs.filter(|&w| w != config.warmup_epochs).map(|w| ("--warmup-epochs", w.to_string(), config.warmup_epochs.to_string())),
                (args.no_self_pairs && !config.no_self_pairs).then(|| ("--no-self-pairs", "on".to_string(), "off".to_string())),
                args.early_stopping
                    .filter(|&p| Some(p as usize) != config.early_stopping)
                    .map(|p| ("--early-stopping", p.to_string(), config.early_stopping.map_or("none".into(), |p| p.to_string()))),
            ]
            .into_iter()
            .flatten()
            .filter(|(flag, given, saved)| !(*flag == "--arch" && run::tower(given, None).map(|s| s.to_string()).ok().as_ref() == Some(saved)))
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
            (config, out)
        }
    };
    // The tower at the asked size, before any data is read: a size no tower takes is refused at once.
    let [h, w, c] = config.input;
    let spec = run::tower(&config.arch, None)?;
    Plan::new(&spec, InputShape { h, w, c }, 2, config.seed).map_err(|e| format!("--arch \"{}\" at --image-size {h}x{w} --channels {c}: {e}", config.arch))?;
    // The folder is locked before it is looked at, so that two runs started together cannot both find
    // it free; a new run (or a resumed one written elsewhere) never replaces another run's files.
    outputs::check(&data_input(&args.data).into_iter().collect::<Vec<_>>(), &[Output::new("--out", &out)], false)?;
    let lock = train::lock_run_folder(&out)?;
    let same_folder = args.resume.as_ref().is_some_and(|dir| std::fs::canonicalize(dir).ok() == std::fs::canonicalize(&out).ok());
    let existing = train::run_files_in(&out);
    if !same_folder && !existing.is_empty() {
        return Err(format!(
            "{} already holds a run's files ({}): continue it with --resume {}, or choose another --out",
            out.display(),
            existing.join(", "),
            out.display()
        )
        .into());
    }
    train::install_interrupt_handler();
    let run = train::TrainRun {
        config,
        data: args.data,
        out,
        resume: args.resume,
        holdout: args.holdout_classes.unwrap_or_default(),
        shape_given: args.image_size.is_some() || args.channels.is_some(),
        stream: args.stream,
        tune: !args.no_tune,
        memory_budget: args.memory_budget.map(|m| m << 20),
    };
    let outcome = train::train(&run);
    // Released before the exit below, which runs no destructors: a folder left with nothing but the
    // lock goes with it.
    drop(lock);
    match outcome? {
        train::Outcome::Finished => Ok(()),
        train::Outcome::Interrupted => std::process::exit(130),
    }
}

fn towers(spec: Option<&str>) -> Result<()> {
    if let Some(arch) = spec {
        println!("{}", run::tower(arch, None)?);
        return Ok(());
    }
    for named in gpu_siamese::model::NAMED_TOWERS {
        println!("{} {}\n    {}", named.name, named.spec, named.about);
    }
    Ok(())
}

fn summary(args: &TwinArgs) -> Result<()> {
    let (h, w) = args.image_size.unwrap_or((28, 28));
    let plan = plan(args, InputShape { h, w, c: args.channels as usize })?;
    println!("{}", gpu_siamese::summary::layer_table(&plan));
    let gpu = Gpu::new()?;
    let kernels = Kernels::new(&gpu);
    let options = gpu_siamese::twin::TwinOptions { memory_budget: args.memory_budget.map(|m| m << 20), ..gpu_siamese::twin::TwinOptions::new(true) };
    let adam = gpu_siamese::optimizer::AdamConfig::default();
    let twin = gpu_siamese::twin::GpuTwin::with_options(&gpu, &kernels, plan.clone(), adam, 1.0, 1, options)?;
    println!("{}", gpu_siamese::summary::step_memory_line(&gpu, plan.pairs(), twin.memory_bytes(), twin.micro_batches()));
    println!("adapter: {}", gpu.describe());
    Ok(())
}

fn bench(args: &TwinArgs, opts: &BenchOptions, json: bool) -> Result<()> {
    let gpu = Gpu::new()?;
    let kernels = Kernels::tuned(&gpu, !args.no_tune);
    let (h, w) = args.image_size.unwrap_or((28, 28));
    let plan = plan(args, InputShape { h, w, c: args.channels as usize })?;
    let report = gpu_siamese::bench::run(&gpu, &kernels, &plan, opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        gpu_siamese::bench::print(&report);
    }
    Ok(())
}

/// The tutorial's.
const DEFAULT_EPOCHS: usize = 70;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ScheduleArg {
    Constant,
    Cosine,
    Step,
}

/// The schedule the flags ask for.
fn lr_schedule(args: &TrainArgs) -> Result<LrSchedule> {
    let step_flags = args.lr_step_epochs.is_some() || args.lr_step_factor.is_some();
    match args.lr_schedule.unwrap_or(ScheduleArg::Constant) {
        ScheduleArg::Step => {
            let (every_epochs, factor) = (args.lr_step_epochs.unwrap_or(10), args.lr_step_factor.unwrap_or(0.1));
            if every_epochs == 0 || !(factor > 0.0 && factor.is_finite()) {
                return Err(format!("--lr-step-epochs {every_epochs} --lr-step-factor {factor}: at least one epoch, and a positive factor").into());
            }
            Ok(LrSchedule::Step { every_epochs, factor })
        }
        _ if step_flags => Err("--lr-step-epochs and --lr-step-factor are for --lr-schedule step".into()),
        ScheduleArg::Constant => Ok(LrSchedule::Constant),
        ScheduleArg::Cosine => Ok(LrSchedule::Cosine { epochs: args.epochs.unwrap_or(DEFAULT_EPOCHS) }),
    }
}

fn schedule_name(schedule: &LrSchedule) -> String {
    match schedule {
        LrSchedule::Constant => "constant".into(),
        LrSchedule::Cosine { epochs } => format!("cosine over {epochs} epochs"),
        LrSchedule::Step { every_epochs, factor } => format!("step, x{factor} every {every_epochs} epochs"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SamplerArg {
    Pairs,
    Pk,
}

/// The sampler the flags ask for; P = 0 stands for "8, or every class when fewer", settled once the
/// data is loaded.
fn sampler(args: &TrainArgs) -> Result<Sampler> {
    let triplet = args.loss == Some(LossKind::Triplet);
    let pk = match args.sampler {
        Some(SamplerArg::Pk) => true,
        Some(SamplerArg::Pairs) if triplet => {
            return Err("--loss triplet needs class-balanced batches (--sampler pk): a tutorial pair has no third image".into())
        }
        Some(SamplerArg::Pairs) => false,
        None => triplet || args.classes_per_batch.is_some() || args.images_per_class.is_some(),
    };
    if !pk {
        return Ok(Sampler::Pairs);
    }
    if args.batch_size.is_some() {
        return Err("--batch-size is for --sampler pairs; a pk batch is --classes-per-batch x --images-per-class images".into());
    }
    let (p, k) = (args.classes_per_batch.unwrap_or(0), args.images_per_class.unwrap_or(4));
    if k < 2 {
        return Err(format!("--images-per-class {k}: a class-balanced batch needs two images or more of each class (a positive pair)").into());
    }
    if args.classes_per_batch.is_some_and(|p| p < 2) {
        return Err(format!("--classes-per-batch {p}: a class-balanced batch needs two classes or more (a negative pair)").into());
    }
    if args.sampler.is_none() && !triplet {
        println!("note: --classes-per-batch and --images-per-class are the pk sampler's: training on class-balanced batches (--sampler pk)");
    }
    Ok(Sampler::Pk { classes_per_batch: p, images_per_class: k })
}

/// `--split`: "test" (or "t10k", the files' own name) or "train", as the IDX files name them.
/// `--threshold`: a distance, so finite and 0 or more (NaN would call every pair "different").
fn parse_threshold(text: &str) -> std::result::Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        Ok(t) => Err(format!("{t}: a distance, 0 or more (the checkpoint's calibrated one is used without --threshold)")),
        Err(_) => Err(format!("'{text}': not a number")),
    }
}

fn parse_split(text: &str) -> std::result::Result<String, String> {
    match text {
        "test" | "t10k" => Ok("t10k".into()),
        "train" => Ok("train".into()),
        _ => Err(format!("'{text}': test or train")),
    }
}

/// `--image-size`: "64x48" (height x width) or "64".
fn parse_image_size(text: &str) -> std::result::Result<(usize, usize), String> {
    let parse = |t: &str| t.trim().parse::<usize>().ok().filter(|&v| (1..=4096).contains(&v));
    let size = match text.split_once(['x', 'X']) {
        Some((h, w)) => parse(h).zip(parse(w)),
        None => parse(text).map(|n| (n, n)),
    };
    size.ok_or_else(|| format!("'{text}' is not a size: HxW (e.g. 64x64) or N, each from 1 to 4096"))
}

/// The GPU, its kernels and the checkpoint, for the commands that use a trained model.
fn open_model(checkpoint: &Path) -> Result<(Gpu, Kernels, Trained)> {
    let trained = Trained::load(checkpoint)?;
    let gpu = Gpu::new()?;
    let kernels = Kernels::tuned(&gpu, true);
    Ok((gpu, kernels, trained))
}

fn evaluate(checkpoint: &Path, args: &EvalArgs, json: Option<PathBuf>) -> Result<()> {
    let opts = args.options()?;
    // Where the results go is checked before the evaluation, not after it.
    let json = json.unwrap_or_else(|| checkpoint.with_extension("evaluation.json"));
    let inputs: Vec<Input> = std::iter::once(checkpoint_input(checkpoint)).chain(data_input(&args.data)).collect();
    outputs::check(&inputs, &[Output::new("--json", &json)], true)?;
    if json.is_dir() {
        return Err(format!("--json {}: a folder; give a file name, e.g. {}", json.display(), json.join("evaluation.json").display()).into());
    }
    if let Some(parent) = json.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        return Err(format!("--json {}: no folder {}", json.display(), parent.display()).into());
    }
    let (gpu, kernels, trained) = open_model(checkpoint)?;
    let evaluation = evaluate::evaluate(&gpu, &kernels, &trained, &opts)?;
    evaluate::print(&evaluation);
    write_atomically(&json, serde_json::to_string_pretty(&evaluation)?.as_bytes()).map_err(|e| format!("cannot write {}: {e}", json.display()))?;
    println!("\nwritten: {}", json.display());
    Ok(())
}

