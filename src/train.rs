//! The training run: Fashion-MNIST (or any MNIST-layout IDX folder) on the GPU, the tutorial's pairs,
//! an epoch loop that submits whole steps without waiting, validation on fixed test pairs, metrics.csv,
//! and checkpoints that a run resumes from bit for bit.

use crate::checkpoint::{save, Checkpoint, LossKind, Progress, Sampler, TrainConfig};
use crate::data::{class_balanced_batches, load_dataset, make_pairs, shuffle, DataKind, Dataset, FolderOptions, Holdout, ImageSet, Label, Pair};
use crate::dims::{AdamConfig, Objective};
use crate::gpu::{Gpu, Kernels};
use crate::metrics::{accuracy_at, best_threshold, contrastive_loss, triplet_loss};
use crate::model::{glorot_uniform, InputShape, Plan, TowerSpec};
use crate::twin::{GpuTwin, PairFeed};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The files a run leaves in its folder.
pub const METRICS_FILE: &str = "metrics.csv";
pub const LAST_FILE: &str = "last.safetensors";
pub const BEST_FILE: &str = "best.safetensors";
pub const RESUME_FILE: &str = "resume.safetensors";
const METRICS_HEADER: &str = "epoch,loss,val_loss,val_acc,threshold,val_acc_at_threshold,seconds";

/// Training pairs the distance threshold is calibrated on, each epoch (a fixed sample, eval mode): at most
/// this many, and at most a quarter of them on a small set.
const CALIBRATION_PAIRS: usize = 4096;
/// Steps submitted between two reads of the losses (which wait for the GPU): the progress display's
/// granularity, and a bound on how far the host runs ahead of the GPU.
const SYNC_EVERY: u64 = 16;

pub struct TrainRun {
    pub config: TrainConfig,
    pub data: Option<PathBuf>,
    pub out: PathBuf,
    /// The folder of the run being resumed.
    pub resume: Option<PathBuf>,
    /// `--holdout-classes` as given (names or numbers), for a new run; a resumed one keeps its labels.
    pub holdout: Vec<String>,
    /// Whether `--image-size` or `--channels` was given; without them IDX images keep their own size.
    pub shape_given: bool,
    /// Stream each batch's images to the GPU even when they all fit.
    pub stream: bool,
}

/// How a run ended without an error.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Finished,
    Interrupted,
}

/// Seeds for each random stream of a run, derived from its seed and a purpose.
fn rng(seed: u64, purpose: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}
/// The seed of the augmentation's draws (a u32, as the kernels hash it).
pub fn augment_seed(seed: u64) -> u32 {
    (rng(seed, AUGMENTATION).next_u32()) | 1
}
const AUGMENTATION: u64 = 4;
const TRAIN_PAIRS: u64 = 1;
const TEST_PAIRS: u64 = 2;
const CALIBRATION: u64 = 3;
/// Epoch e's shuffle (and, with --resample-pairs, its pairs) use purposes EPOCH + e.
const EPOCH: u64 = 1 << 32;

/// A run's images of one split: the first `limit` of `set`, less the classes the run holds out.
pub fn run_set(config: &TrainConfig, set: ImageSet, limit: Option<usize>) -> ImageSet {
    set.truncated(limit).with_classes(|c| !config.holdout_classes.contains(&c))
}

/// The pairs a set is scored on: the tutorial's, drawn once from the seed (every epoch and every run
/// scores the same pairs).
pub fn test_pairs(seed: u64, labels: &[Label]) -> Vec<Pair> {
    make_pairs(labels, &mut rng(seed, TEST_PAIRS))
}

/// The training pairs the distance threshold is calibrated on: a fixed sample of at most
/// `CALIBRATION_PAIRS`, and at most a quarter of a small set.
pub fn calibration_pairs(seed: u64, train_labels: &[Label]) -> Vec<Pair> {
    let mut pairs = make_pairs(train_labels, &mut rng(seed, CALIBRATION));
    shuffle(&mut pairs, &mut rng(seed, CALIBRATION));
    pairs.truncate(CALIBRATION_PAIRS.min(pairs.len().div_ceil(4)));
    pairs
}

/// The training pairs of epoch `epoch` (0-based), in the order they are trained on. With class-balanced
/// batches, they are the batches' images as the twin takes them: a batch of B images in class order,
/// x[0..B], is the pairs (x[i], x[B/2 + i]), whose first images then second images are x again.
pub fn epoch_pairs(config: &TrainConfig, base: &[Pair], labels: &[Label], epoch: usize, steps: usize) -> Vec<Pair> {
    let mut epoch_rng = rng(config.seed, EPOCH + epoch as u64);
    if let Sampler::Pk { classes_per_batch: p, images_per_class: k } = config.sampler {
        let rows = p * k;
        let images = class_balanced_batches(labels, p, k, steps, &mut epoch_rng);
        return images.chunks(rows).flat_map(|x| (0..rows / 2).map(move |i| Pair { a: x[i], b: x[rows / 2 + i], label: 0.0 })).collect();
    }
    let mut pairs = if config.resample_pairs { make_pairs(labels, &mut epoch_rng) } else { base.to_vec() };
    shuffle(&mut pairs, &mut epoch_rng);
    pairs
}

/// Steps in an epoch: every pair once, or, with class-balanced batches, as many batches as the
/// training images fill (at least one).
pub fn steps_per_epoch(config: &TrainConfig, pairs: usize, images: usize) -> usize {
    match config.sampler {
        Sampler::Pairs => pairs.div_ceil(config.batch_size),
        Sampler::Pk { classes_per_batch: p, images_per_class: k } => (images / (p * k)).max(1),
    }
}

/// What a run's steps minimise.
pub fn objective(config: &TrainConfig) -> Objective {
    match (config.sampler, config.loss) {
        (Sampler::Pairs, _) => Objective::Pairs,
        (Sampler::Pk { images_per_class: k, .. }, LossKind::Contrastive) => Objective::BatchContrastive { k },
        (Sampler::Pk { images_per_class: k, .. }, LossKind::Triplet) => Objective::BatchTriplet { k },
    }
}

/// Settles a class-balanced sampler's P (8, or every class when fewer, unless given) and the batch it
/// makes, now that the training classes are known.
fn settle_sampler(config: &mut TrainConfig, train: &ImageSet) -> Result<(), String> {
    let Sampler::Pk { classes_per_batch, images_per_class: k } = config.sampler else {
        return match config.loss {
            LossKind::Triplet => Err("the triplet loss needs class-balanced batches (--sampler pk)".into()),
            LossKind::Contrastive => Ok(()),
        };
    };
    let classes = train.class_list().len();
    let p = if classes_per_batch == 0 { 8.min(classes) } else { classes_per_batch };
    if p > classes {
        return Err(format!("--classes-per-batch {p}: the training set has {classes} classes"));
    }
    if (p * k) % 2 != 0 {
        return Err(format!("--classes-per-batch {p} x --images-per-class {k} is odd: the twin runs a batch as two halves, so P x K must be even"));
    }
    config.sampler = Sampler::Pk { classes_per_batch: p, images_per_class: k };
    config.batch_size = p * k / 2;
    Ok(())
}

/// A set of test pairs' loss, the run's loss: the contrastive loss of every pair; or the triplet loss of
/// every image's (positive, negative) pairs, which the tutorial's pairs give one after the other.
pub fn pair_set_loss(config: &TrainConfig, distances: &[f32], pairs: &[Pair]) -> f64 {
    match config.loss {
        LossKind::Contrastive => contrastive_loss(distances, &labels_of(pairs), config.margin),
        LossKind::Triplet => {
            let triplets: Vec<(f32, f32)> = (1..pairs.len())
                .filter(|&i| pairs[i - 1].label == 1.0 && pairs[i].label == 0.0 && pairs[i - 1].a == pairs[i].a)
                .map(|i| (distances[i - 1], distances[i]))
                .collect();
            triplet_loss(&triplets, config.margin)
        }
    }
}

/// The tower for this run: `arch`, with the final dense layer's width set to `embedding_dim`.
pub fn tower(arch: &str, embedding_dim: Option<usize>) -> Result<TowerSpec, String> {
    let mut spec: TowerSpec = arch.parse().map_err(|e| format!("--arch \"{arch}\": {e}"))?;
    if let Some(dim) = embedding_dim {
        match spec.layers.last_mut() {
            Some(crate::layers::LayerSpec::Dense(dense)) if dim > 0 => dense.units = dim,
            _ => return Err(format!("--embedding-dim {dim}: the tower must end in a dense layer and the width be above 0")),
        }
    }
    Ok(spec)
}

fn interrupted_flag() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    &FLAG
}

/// Ctrl-C asks the run to stop at the next step, keeping the last good checkpoint; a second Ctrl-C
/// ends the process at once.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if interrupted_flag().swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
}

fn append_metrics(path: &Path, line: &str) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    writeln!(file, "{line}").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Keeps metrics.csv's header and its rows for epochs up to `epochs` (a resumed run rewrites the rest).
fn keep_metrics(from: &Path, to: &Path, epochs: usize) -> Result<(), String> {
    let old = std::fs::read_to_string(from).unwrap_or_default();
    let mut kept = vec![METRICS_HEADER.to_string()];
    kept.extend(
        old.lines()
            .skip(1)
            .filter(|l| l.split(',').next().and_then(|e| e.parse::<usize>().ok()).is_some_and(|e| e <= epochs))
            .map(str::to_string),
    );
    crate::checkpoint::write_atomically(to, (kept.join("\n") + "\n").as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// The pairs in step `step` of an epoch over `total` pairs: the batch size, less in a last, partial batch.
fn pairs_in_step(step: usize, batch: usize, total: usize) -> usize {
    batch.min(total - step * batch)
}


pub fn labels_of(pairs: &[Pair]) -> Vec<f32> {
    pairs.iter().map(|p| p.label).collect()
}

/// A run's dataset (IDX files or class folders), its held-out classes resolved to labels. A folder
/// dataset is made into the run's input shape.
pub fn run_dataset(config: &TrainConfig, data: Option<&Path>, holdout: Holdout) -> Result<(Dataset, Vec<Label>), String> {
    let [h, w, c] = config.input;
    let folder = FolderOptions { shape: InputShape { h, w, c }, test_fraction: config.test_fraction, seed: config.seed };
    load_dataset(data, &folder, holdout)
}

/// How a dataset is described to the user.
pub fn describe_dataset(d: &Dataset) -> String {
    let kind = match d.kind {
        DataKind::Idx => "IDX files".to_string(),
        DataKind::Folders => format!("class folders, pictures made {}x{}x{}", d.train.rows, d.train.cols, d.train.channels),
    };
    format!("{} ({kind}: {} training and {} test images, {} classes)", d.dir.display(), d.train.count, d.test.count, d.class_names.len())
}

pub fn train(run: &TrainRun) -> Result<Outcome, String> {
    let mut config = run.config.clone();
    let gpu = Gpu::new().map_err(|e| e.to_string())?;
    println!("adapter: {}", gpu.describe());
    let kernels = Kernels::new(&gpu);

    let holdout = if run.resume.is_some() { Holdout::Labels(&run.config.holdout_classes) } else { Holdout::Names(&run.holdout) };
    // A resumed run reads the folder it was trained on, unless told otherwise.
    let trained_on = run.resume.as_ref().and(config.data.as_ref()).map(PathBuf::from).filter(|d| d.is_dir());
    let data = run.data.clone().or(trained_on);
    let (dataset, held_out) = run_dataset(&config, data.as_deref(), holdout)?;
    println!("data: {}", describe_dataset(&dataset));
    for note in &dataset.notes {
        println!("note: {note}");
    }
    if dataset.kind == DataKind::Folders && config.arch == crate::model::TUTORIAL_TOWER && run.resume.is_none() {
        println!(
            "note: the tutorial's tower (one 2x2 convolution averaged over the picture) learns little on photo-like pictures; \
             a deeper one, e.g. --arch \"conv(32,3),maxpool,conv(64,3),maxpool,gap,dense(48)\", usually does better"
        );
    }
    let data_shape = dataset.train.shape();
    if dataset.kind == DataKind::Idx && config.input != [data_shape.h, data_shape.w, data_shape.c] {
        if run.shape_given || run.resume.is_some() {
            return Err(format!(
                "{} holds {}x{}x{} IDX images, which are used at their own size; the run asks for {}x{}x{} (drop --image-size and --channels)",
                dataset.dir.display(), data_shape.h, data_shape.w, data_shape.c, config.input[0], config.input[1], config.input[2]
            ));
        }
        config.input = [data_shape.h, data_shape.w, data_shape.c];
    }
    if run.resume.is_some() && !config.class_names.is_empty() && config.class_names != dataset.class_names {
        return Err(format!("{}: its classes are not the ones the run was trained on ({} then, {} now)", dataset.dir.display(), config.class_names.len(), dataset.class_names.len()));
    }
    config.holdout_classes = held_out;
    config.class_names = dataset.class_names.clone();
    config.data = Some(std::fs::canonicalize(&dataset.dir).unwrap_or(dataset.dir.clone()).display().to_string());
    let (train_set, test_set) = (run_set(&config, dataset.train, config.train_limit), run_set(&config, dataset.test, config.test_limit));
    settle_sampler(&mut config, &train_set)?;
    let config = &config;
    if !config.holdout_classes.is_empty() {
        let names: Vec<&str> = config.holdout_classes.iter().map(|&l| config.class_names[l as usize].as_str()).collect();
        println!("classes {} held out of training and validation", names.join(", "));
    }
    println!(
        "training on {} images of {} classes, validating on {} images of {}",
        train_set.count,
        train_set.class_list().len(),
        test_set.count,
        test_set.class_list().len()
    );
    check_usable(&train_set, "training")?;
    check_usable(&test_set, "test")?;
    let input = train_set.shape();

    let spec: TowerSpec = config.arch.parse().map_err(|e| format!("--arch \"{}\": {e}", config.arch))?;
    let plan = Plan::new(&spec, input, 2 * config.batch_size, config.seed).map_err(|e| format!("--arch \"{}\": {e}", config.arch))?;
    let adam = AdamConfig { learning_rate: config.learning_rate, beta1: config.beta1, beta2: config.beta2, epsilon: config.epsilon };

    let base_train_pairs = make_pairs(&train_set.labels, &mut rng(config.seed, TRAIN_PAIRS));
    let test_pairs = test_pairs(config.seed, &test_set.labels);
    let calibration_pairs = calibration_pairs(config.seed, &train_set.labels);
    let steps_per_epoch = steps_per_epoch(config, base_train_pairs.len(), train_set.count);
    if !config.augment.is_off() {
        println!("augmenting training images: {:?}", config.augment);
    }

    let mut twin = GpuTwin::with_objective(&gpu, &kernels, plan.clone(), adam, config.margin, steps_per_epoch, true, objective(config))
        .map_err(|e| e.to_string())?;
    let capacity = base_train_pairs.len().max(steps_per_epoch * config.batch_size);
    let augment = Some((&config.augment, augment_seed(config.seed)));
    let mut train_feed = PairFeed::new(&gpu, &kernels, &twin, &train_set.pixels, capacity, augment, run.stream);
    let mut test_feed = PairFeed::new(&gpu, &kernels, &twin, &test_set.pixels, test_pairs.len(), None, run.stream);
    test_feed.set_pairs(&gpu, &test_pairs);
    let mut calibration_feed = PairFeed::new(&gpu, &kernels, &twin, &train_set.pixels, calibration_pairs.len(), None, run.stream);
    calibration_feed.set_pairs(&gpu, &calibration_pairs);
    if train_feed.is_streamed() || test_feed.is_streamed() {
        println!("streaming each batch's images to the GPU (the images are more than it binds at once, or --stream)");
    }
    let test_distances = gpu.storage("test distances", test_pairs.len());
    let calibration_distances = gpu.storage("calibration distances", calibration_pairs.len());

    // Where the run starts: fresh weights, or the resumed run's state.
    std::fs::create_dir_all(&run.out).map_err(|e| format!("cannot create {}: {e}", run.out.display()))?;
    let metrics_path = run.out.join(METRICS_FILE);
    let (start_epoch, mut best_val_loss) = match &run.resume {
        Some(from) => {
            let state = Checkpoint::load(&from.join(RESUME_FILE))?;
            twin.set_params(&state.flat(&plan, "")?);
            twin.set_adam_state(&state.flat(&plan, "adam.m.")?, &state.flat(&plan, "adam.v.")?, state.progress.step);
            let best = Checkpoint::load(&from.join(BEST_FILE)).map(|c| c.progress.val_loss).unwrap_or(f64::INFINITY);
            if from != &run.out {
                if let Ok(bytes) = std::fs::read(from.join(BEST_FILE)) {
                    crate::checkpoint::write_atomically(&run.out.join(BEST_FILE), &bytes).map_err(|e| e.to_string())?;
                }
            }
            keep_metrics(&from.join(METRICS_FILE), &metrics_path, state.progress.epoch)?;
            println!("resuming {} after epoch {} (step {})", from.display(), state.progress.epoch, state.progress.step);
            (state.progress.epoch, best)
        }
        None => {
            twin.set_params(&glorot_uniform(&plan, config.seed));
            keep_metrics(Path::new(""), &metrics_path, 0)?;
            (0, f64::INFINITY)
        }
    };
    let batches = match config.sampler {
        Sampler::Pairs => format!("{} training pairs, batch {}", base_train_pairs.len(), config.batch_size),
        Sampler::Pk { classes_per_batch: p, images_per_class: k } => format!(
            "class-balanced batches of {p} classes x {k} images, every {} of each used ({:?} loss)",
            if config.loss == LossKind::Triplet { "triplet" } else { "pair" },
            config.loss
        ),
    };
    println!(
        "tower: {} ({} parameters); {batches}; {} test pairs, {} steps per epoch; writing to {}",
        plan.spec,
        plan.trainable_params(),
        test_pairs.len(),
        steps_per_epoch,
        run.out.display()
    );
    if start_epoch >= config.epochs {
        println!("the run already has {start_epoch} epochs of the {} asked for", config.epochs);
        return Ok(Outcome::Finished);
    }

    let bar_style = ProgressStyle::with_template("Epoch {prefix}  {pos}/{len} {bar:20} {elapsed} {per_sec} - {msg}")
        .expect("progress template")
        .progress_chars("━━ ");
    for epoch in start_epoch..config.epochs {
        let started = Instant::now();
        let pairs = epoch_pairs(config, &base_train_pairs, &train_set.labels, epoch, steps_per_epoch);
        train_feed.set_pairs(&gpu, &pairs);
        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(bar_style.clone()).with_prefix(format!("{}/{}", epoch + 1, config.epochs));
        let first_step = twin.step;
        let mut losses: Vec<f32> = Vec::with_capacity(steps_per_epoch);
        for s in 0..steps_per_epoch {
            if interrupted_flag().load(Ordering::SeqCst) {
                bar.abandon();
                gpu.wait();
                println!(
                    "interrupted in epoch {}: its work is dropped; {} holds the run as of epoch {epoch}. Continue with --resume {}",
                    epoch + 1,
                    run.out.display(),
                    run.out.display()
                );
                return Ok(Outcome::Interrupted);
            }
            train_feed.train_step(&gpu, &mut twin, s * config.batch_size, pairs_in_step(s, config.batch_size, pairs.len()));
            if (s as u64 + 1).is_multiple_of(SYNC_EVERY) || s + 1 == steps_per_epoch {
                let done = losses.len() as u64;
                losses.extend(twin.read_losses(first_step + done, (s as u64 + 1 - done) as usize));
                check_finite(&losses, epoch, first_step, &run.out)?;
                let recent = &losses[losses.len().saturating_sub(SYNC_EVERY as usize * 4)..];
                bar.set_position(s as u64 + 1);
                bar.set_message(format!("loss: {:.4}", recent.iter().sum::<f32>() / recent.len() as f32));
            }
        }
        let train_seconds = started.elapsed().as_secs_f64();
        // Keras' epoch loss: the mean over samples, so the last, partial batch weighs what it holds.
        let weights = (0..steps_per_epoch).map(|s| pairs_in_step(s, config.batch_size, pairs.len()) as f64);
        let loss = losses.iter().zip(weights).map(|(&l, w)| l as f64 * w).sum::<f64>() / pairs.len() as f64;

        bar.set_message("validating");
        let test_d = test_feed.distances(&gpu, &twin, &test_distances);
        let test_labels = labels_of(&test_pairs);
        let val_loss = pair_set_loss(config, &test_d, &test_pairs);
        let (_, val_acc) = best_threshold(&test_d, &test_labels);
        let calibration_d = calibration_feed.distances(&gpu, &twin, &calibration_distances);
        let (threshold, _) = best_threshold(&calibration_d, &labels_of(&calibration_pairs));
        let val_acc_at_threshold = accuracy_at(&test_d, &test_labels, threshold);
        if !val_loss.is_finite() {
            return Err(format!(
                "the validation loss became {val_loss} after epoch {}: the weights hold NaN or infinity. {} still holds the run as of epoch {epoch}; try a lower --lr",
                epoch + 1,
                run.out.display()
            ));
        }
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        println!(
            "Epoch {}/{}  {steps_per_epoch}/{steps_per_epoch} ━━━━━━━━━━━━━━━━━━━━ {:.0}s {:.0}ms/step - loss: {loss:.4} - val_loss: {val_loss:.4} - val_acc: {val_acc:.4}",
            epoch + 1,
            config.epochs,
            seconds,
            1e3 * train_seconds / steps_per_epoch as f64
        );

        let progress = Progress { epoch: epoch + 1, step: twin.step, loss, val_loss, val_acc, threshold };
        let params = twin.read_params();
        // ReLU and max-pooling can hide a NaN weight from the loss; a checkpoint must never hold one.
        if let Some(bad) = plan.param_tensors().iter().find(|t| params[t.range.clone()].iter().any(|w| !w.is_finite())) {
            return Err(format!(
                "the weights of {} hold NaN or infinity after epoch {}; nothing of this epoch was saved and {} holds the run as of epoch {epoch}. Try a lower --lr",
                bad.name,
                epoch + 1,
                run.out.display()
            ));
        }
        if val_loss < best_val_loss {
            best_val_loss = val_loss;
            save(&run.out.join(BEST_FILE), &plan, &params, &[], config, &progress)?;
        }
        save(&run.out.join(LAST_FILE), &plan, &params, &[], config, &progress)?;
        let (m, v) = twin.read_adam();
        save(&run.out.join(RESUME_FILE), &plan, &params, &[("adam.m.", &m), ("adam.v.", &v)], config, &progress)?;
        append_metrics(
            &metrics_path,
            &format!("{},{loss:.6},{val_loss:.6},{val_acc:.6},{threshold:.6},{val_acc_at_threshold:.6},{seconds:.2}", epoch + 1),
        )?;
    }
    Ok(Outcome::Finished)
}

fn check_usable(set: &ImageSet, what: &str) -> Result<(), String> {
    if set.count < 2 || set.class_list().len() < 2 {
        return Err(format!(
            "the {what} set needs images of at least two classes; it has {} images of classes {:?} (after --train-limit, --test-limit and --holdout-classes)",
            set.count,
            set.class_list()
        ));
    }
    Ok(())
}

fn check_finite(losses: &[f32], epoch: usize, first_step: u64, out: &Path) -> Result<(), String> {
    match losses.iter().position(|l| !l.is_finite()) {
        None => Ok(()),
        Some(i) => Err(format!(
            "the training loss became {} at step {} of epoch {}; nothing of this epoch was saved and {} holds the run as of epoch {epoch}. Try a lower --lr",
            losses[i],
            first_step + i as u64 + 1,
            epoch + 1,
            out.display()
        )),
    }
}

/// `runs/<UTC date and time>`, the default output folder.
pub fn default_out_dir() -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    PathBuf::from(format!(
        "runs/{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrainConfig {
        TrainConfig {
            arch: crate::model::TUTORIAL_TOWER.into(),
            input: [28, 28, 1],
            epochs: 3,
            batch_size: 4,
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            margin: 1.0,
            seed: 5,
            resample_pairs: false,
            train_limit: None,
            test_limit: None,
            holdout_classes: vec![],
            test_fraction: 0.2,
            class_names: vec![],
            augment: Default::default(),
            sampler: Sampler::Pairs,
            loss: LossKind::Contrastive,
            data: None,
        }
    }

    #[test]
    fn epochs_shuffle_the_same_pairs_unless_resampled() {
        let labels: Vec<Label> = (0..50).map(|i| i % 5).collect();
        let mut c = config();
        let base = make_pairs(&labels, &mut rng(c.seed, TRAIN_PAIRS));
        let (e0, e1) = (epoch_pairs(&c, &base, &labels, 0, 0), epoch_pairs(&c, &base, &labels, 1, 0));
        assert_ne!(e0, e1, "each epoch has its own order");
        assert_eq!(e0, epoch_pairs(&c, &base, &labels, 0, 0), "an epoch's order depends only on the seed and the epoch");
        let key = |p: &Pair| (p.a, p.b, p.label as u8);
        let (mut s0, mut sb) = (e0.iter().map(key).collect::<Vec<_>>(), base.iter().map(key).collect::<Vec<_>>());
        s0.sort();
        sb.sort();
        assert_eq!(s0, sb, "without resampling an epoch is a permutation of the pairs");
        c.resample_pairs = true;
        let r0 = epoch_pairs(&c, &base, &labels, 0, 0);
        let mut sr = r0.iter().map(key).collect::<Vec<_>>();
        sr.sort();
        assert_ne!(sr, sb, "resampling draws new pairs");
        assert_eq!(r0.len(), base.len());
    }

    #[test]
    fn class_balanced_epochs_are_batches_of_p_classes_of_k_images() {
        // 7 classes of uneven sizes, one with fewer images than K.
        let labels: Vec<Label> = (0..60).map(|i| if i < 2 { 6 } else { i % 6 }).collect();
        let mut c = config();
        c.sampler = Sampler::Pk { classes_per_batch: 3, images_per_class: 4 };
        c.batch_size = 6;
        let steps = steps_per_epoch(&c, 0, labels.len());
        assert_eq!(steps, 5, "as many batches of 12 as 60 images fill");
        let pairs = epoch_pairs(&c, &[], &labels, 0, steps);
        assert_eq!(pairs.len(), steps * 6);
        for batch in pairs.chunks(6) {
            // The twin's rows: the pairs' first images, then their second images.
            let rows: Vec<u32> = batch.iter().map(|p| p.a).chain(batch.iter().map(|p| p.b)).collect();
            let classes: Vec<Label> = rows.iter().map(|&r| labels[r as usize]).collect();
            for s in 0..3 {
                assert!(classes[4 * s..4 * s + 4].iter().all(|&l| l == classes[4 * s]), "rows in classes of 4: {classes:?}");
            }
            assert!(classes[0] != classes[4] && classes[4] != classes[8] && classes[0] != classes[8], "three distinct classes");
            for s in 0..3 {
                let mut members = rows[4 * s..4 * s + 4].to_vec();
                members.sort();
                members.dedup();
                assert!(members.len() == 4 || classes[4 * s] == 6, "distinct images unless the class has fewer than K");
            }
        }
        assert_eq!(pairs, epoch_pairs(&c, &[], &labels, 0, steps), "seeded");
        assert_ne!(pairs, epoch_pairs(&c, &[], &labels, 1, steps));
        assert_eq!(objective(&c), Objective::BatchContrastive { k: 4 });
    }

    #[test]
    fn embedding_dim_sets_the_last_dense_layer() {
        assert_eq!(tower(crate::model::TUTORIAL_TOWER, Some(16)).unwrap().to_string(), "conv(128,2,same,relu),maxpool,dropout(0.4),gap,dense(16)");
        assert!(tower("conv(8,2),gap", Some(16)).is_err());
        assert!(tower("conv(8,2),bad", None).unwrap_err().contains("column 11"));
    }

    #[test]
    fn default_out_dir_is_a_timestamp() {
        let name = default_out_dir().to_string_lossy().to_string();
        assert!(name.starts_with("runs/20") && name.len() == "runs/20261128-143000".len(), "{name}");
    }
}
