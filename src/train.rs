//! The training run: Fashion-MNIST (or any MNIST-layout IDX folder) on the GPU, the tutorial's pairs,
//! an epoch loop that submits whole steps without waiting, validation on fixed test pairs, metrics.csv,
//! and checkpoints that a run resumes from bit for bit.

use crate::checkpoint::{encode, write_set, Checkpoint, Progress};
use crate::config::{LossKind, Sampler, TrainConfig};
use crate::data::{DataKind, Holdout};
use crate::gpu::{Gpu, Kernels};
use crate::run::*;
use crate::report::{parse_metrics, EpochRow};
use crate::trainer::{EpochScores, Setup, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The files a run leaves in its folder.
pub const METRICS_FILE: &str = "metrics.csv";
pub const LAST_FILE: &str = "last.safetensors";
pub const BEST_FILE: &str = "best.safetensors";
pub const RESUME_FILE: &str = "resume.safetensors";
/// Held locked by a `train` for its whole life, holding its process id: one run writes a folder at a time.
pub const LOCK_FILE: &str = ".train.lock";
/// The files that make a folder a run's.
pub const RUN_FILES: [&str; 4] = [METRICS_FILE, LAST_FILE, BEST_FILE, RESUME_FILE];
const METRICS_HEADER: &str = "epoch,loss,val_loss,val_acc,threshold,val_acc_at_threshold,seconds";

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
    /// Measure the convolution kernels' variants on this adapter (see gpu::tune).
    pub tune: bool,
    /// Bytes a step's buffers may take; a batch that needs more runs in micro-batches.
    pub memory_budget: Option<u64>,
}

/// How a run ended without an error.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Finished,
    Interrupted,
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

/// Keeps metrics.csv's header and its rows for epochs up to `epochs` (a resumed run rewrites the rest),
/// and returns what it wrote.
fn keep_metrics(from: &Path, to: &Path, epochs: usize) -> Result<String, String> {
    let old = std::fs::read_to_string(from).unwrap_or_default();
    let mut kept = vec![METRICS_HEADER.to_string()];
    kept.extend(
        old.lines()
            .skip(1)
            .filter(|l| l.split(',').next().and_then(|e| e.parse::<usize>().ok()).is_some_and(|e| e <= epochs))
            .map(str::to_string),
    );
    let text = kept.join("\n") + "\n";
    crate::checkpoint::write_atomically(to, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    Ok(text)
}

/// The row of metrics.csv's `text` with the lowest val_loss (the first of equals), if any.
fn best_in_metrics(text: &str, path: &Path) -> Result<Option<EpochRow>, String> {
    Ok(parse_metrics(text, path)?.into_iter().fold(None, |best: Option<EpochRow>, row| match best {
        Some(b) if b.val_loss <= row.val_loss => Some(b),
        _ => Some(row),
    }))
}

/// A run folder held by this process: the lock is released when it is dropped (or the process ends,
/// however it ends).
pub struct RunFolderLock {
    file: Option<std::fs::File>,
    folder: PathBuf,
    /// Whether this run made the folder: one it leaves holding nothing but the lock is removed.
    created: bool,
}

impl Drop for RunFolderLock {
    fn drop(&mut self) {
        drop(self.file.take());
        if self.created {
            let only_lock = std::fs::read_dir(&self.folder).map(|entries| entries.flatten().all(|e| e.file_name() == LOCK_FILE)).unwrap_or(false);
            if only_lock {
                let _ = std::fs::remove_file(self.folder.join(LOCK_FILE));
                let _ = std::fs::remove_dir(&self.folder);
            }
        }
    }
}

/// Creates `out` if needed and takes its lock; a folder another `train` holds is refused at once,
/// naming that process.
pub fn lock_run_folder(out: &Path) -> Result<RunFolderLock, String> {
    let created = !out.exists();
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let path = out.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            // The holder's id, for the message a second run gets.
            let _ = file.set_len(0).and_then(|_| write!(file, "{}", std::process::id())).and_then(|_| file.flush());
            // Temporaries a crashed run left behind take space and mean nothing.
            for name in RUN_FILES {
                let _ = std::fs::remove_file(crate::checkpoint::temporary_of(&out.join(name)));
            }
            Ok(RunFolderLock { file: Some(file), folder: out.to_path_buf(), created })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(format!(
                "{} is being written by another train (process {}): wait for it to end, or choose another --out",
                out.display(),
                if holder.is_empty() { "unknown" } else { holder }
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// The run files `out` already holds.
pub fn run_files_in(out: &Path) -> Vec<&'static str> {
    RUN_FILES.into_iter().filter(|name| out.join(name).exists()).collect()
}

pub fn train(run: &TrainRun) -> Result<Outcome, String> {
    let mut config = run.config.clone();
    let gpu = Gpu::new().map_err(|e| e.to_string())?;
    println!("adapter: {}", gpu.describe());
    if let Some(warning) = crate::gpu::unused::unused_gpu(&gpu.info) {
        eprintln!("warning: {warning}");
    }
    let kernels = Kernels::tuned(&gpu, run.tune);

    let holdout = if run.resume.is_some() { Holdout::Labels(&run.config.holdout_classes) } else { Holdout::Names(&run.holdout) };
    // A resumed run reads the folder it was trained on, unless told otherwise; gone, that is an error,
    // not a silent switch to other data.
    let trained_on = run.resume.as_ref().and(config.data.as_ref()).map(PathBuf::from);
    if let (None, Some(gone)) = (&run.data, trained_on.as_ref().filter(|d| !d.is_dir())) {
        return Err(format!("the run was trained on {}, which is no longer there: give its data with --data DIR", gone.display()));
    }
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
    if config.background.is_none() {
        config.background = Some(crate::data::background_of(&train_set.pixels, train_set.shape()));
    }
    let config = &config;
    if !config.holdout_classes.is_empty() {
        let shown = crate::evaluate::display_names(config.data.as_deref().unwrap_or(""), &config.class_names);
        let names: Vec<String> = config.holdout_classes.iter().map(|&l| format!("{l} ({})", shown[l as usize])).collect();
        println!("classes {} held out of training and validation", names.join(", "));
    }
    println!(
        "training on {} images of {} classes, validating on {} images of {} classes",
        train_set.count,
        train_set.class_list().len(),
        test_set.count,
        test_set.class_list().len()
    );
    if !config.augment.is_off() {
        println!("augmenting training images: {}", config.augment);
    }

    // The trainer checks that both sets are usable before it draws anything.
    let setup = Setup { memory_budget: run.memory_budget, stream: run.stream };
    let mut trainer = Trainer::with_setup(&gpu, &kernels, config.clone(), &train_set, &test_set, setup)?;
    let plan = trainer.plan.clone();
    let steps_per_epoch = trainer.steps_per_epoch;
    println!("{}", crate::summary::layer_table(&plan));
    println!("{}", crate::summary::step_memory_line(&gpu, config.batch_size, trainer.twin.memory_bytes(), trainer.twin.micro_batches()));
    if trainer.twin.micro_batches() > 1 {
        println!(
            "each step runs in {} micro-batches of up to {} pairs: the batch's activations are more than {} (the same results as one batch, bit for bit)",
            trainer.twin.micro_batches(),
            trainer.twin.micro_pairs,
            if run.memory_budget.is_some() { "the memory budget or what the adapter binds at once" } else { "the adapter binds at once" }
        );
    }
    if trainer.is_streamed() {
        println!("streaming each batch's images to the GPU (the images are more than it binds at once, or --stream)");
    }

    // Where the run starts: fresh weights (the trainer's), or the resumed run's state.
    std::fs::create_dir_all(&run.out).map_err(|e| format!("cannot create {}: {e}", run.out.display()))?;
    let metrics_path = run.out.join(METRICS_FILE);
    let mut metrics_text;
    let ((start_epoch, mut best_val_loss), mut best_epoch) = match &run.resume {
        Some(from) => {
            let state = Checkpoint::load(&from.join(RESUME_FILE))?;
            let epochs = state.progress.epoch;
            let adam = (state.flat(&plan, "adam.m.")?, state.flat(&plan, "adam.v.")?);
            trainer.resume(&state.flat(&plan, "")?, &state.state(&plan)?, (&adam.0, &adam.1), state.progress.step, epochs);
            // resume.safetensors is renamed last: a best.safetensors from a later epoch belongs to an
            // epoch whose set was not completed (that epoch is redone, to the same bits), and then
            // metrics.csv's rows up to the resumed epoch say which was best.
            let best_progress = Checkpoint::load(&from.join(BEST_FILE)).map(|c| c.progress).ok().filter(|p| p.epoch <= epochs);
            metrics_text = keep_metrics(&from.join(METRICS_FILE), &metrics_path, epochs)?;
            let (best, best_epoch) = match &best_progress {
                Some(p) => (p.val_loss, p.epoch),
                None => best_in_metrics(&metrics_text, &metrics_path)?.map_or((f64::INFINITY, 0), |r| (r.val_loss, r.epoch as usize)),
            };
            if from != &run.out && best_progress.is_some() {
                if let Ok(bytes) = std::fs::read(from.join(BEST_FILE)) {
                    crate::checkpoint::write_atomically(&run.out.join(BEST_FILE), &bytes).map_err(|e| e.to_string())?;
                }
            }
            println!("resuming {} after epoch {epochs} (step {})", from.display(), state.progress.step);
            ((epochs, best), best_epoch)
        }
        None => {
            // Written with the first epoch's files: a run stopped before then leaves the folder empty.
            metrics_text = format!("{METRICS_HEADER}\n");
            ((0, f64::INFINITY), 0)
        }
    };
    let batches = match config.sampler {
        Sampler::Pairs => format!("{} training pairs, batch {}", trainer.pairs_per_epoch(), config.batch_size),
        Sampler::Pk { classes_per_batch: p, images_per_class: k } => format!(
            "class-balanced batches of {p} classes x {k} images, every {} of each used ({} loss)",
            if config.loss == LossKind::Triplet { "triplet" } else { "pair" },
            if config.loss == LossKind::Triplet { "triplet" } else { "contrastive" }
        ),
    };
    println!(
        "tower: {} ({} parameters); {batches}; {} test pairs, {} steps per epoch; writing to {}",
        plan.spec,
        plan.trainable_params(),
        trainer.test_pairs(),
        steps_per_epoch,
        run.out.display()
    );
    if start_epoch >= config.epochs {
        println!("the run already has {start_epoch} epochs of the {} asked for", config.epochs);
        return Ok(Outcome::Finished);
    }
    if !trainer.twin.schedule.is_constant() {
        let steps = match config.lr_schedule {
            crate::optimizer::LrSchedule::Constant => "then constant".to_string(),
            crate::optimizer::LrSchedule::Cosine { epochs } => format!("then half a cosine down to 0 over {epochs} epochs"),
            crate::optimizer::LrSchedule::Step { every_epochs, factor } => format!("then x{factor} every {every_epochs} epochs"),
        };
        println!("learning rate {}: warm-up over {} epochs, {steps}", config.learning_rate, config.warmup_epochs);
    }
    if let Some(patience) = config.early_stopping {
        if start_epoch >= best_epoch + patience {
            println!("the run stopped early: val_loss has not improved since epoch {best_epoch} ({patience} epochs of patience)");
            return Ok(Outcome::Finished);
        }
    }

    // Keras' bar: steps, elapsed, the time left, ms per step and the epoch's running loss. Piped output
    // (no terminal, no bar) gets a plain line every tenth of an epoch instead. The trainer's read-backs
    // are futures (the page awaits them); here they are waited for.
    let piped = !std::io::stdout().is_terminal();
    let bar_style = ProgressStyle::with_template("Epoch {prefix}  {pos}/{len} {bar:20} {elapsed} (ETA {eta}) - {msg}")
        .expect("progress template")
        .progress_chars("━━ ");
    for epoch in start_epoch..config.epochs {
        let started = Instant::now();
        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(bar_style.clone()).with_prefix(format!("{}/{}", epoch + 1, config.epochs));
        for s in 0..steps_per_epoch {
            if interrupted_flag().load(Ordering::SeqCst) {
                bar.finish_and_clear();
                gpu.wait();
                if epoch == 0 {
                    println!("interrupted in epoch 1: nothing was saved yet; run the same command again to start over");
                } else {
                    println!(
                        "interrupted in epoch {}: its work is dropped; {} holds the run as of epoch {epoch}. Continue with --resume {}",
                        epoch + 1,
                        run.out.display(),
                        run.out.display()
                    );
                }
                return Ok(Outcome::Interrupted);
            }
            trainer.submit_steps(1);
            if (s as u64 + 1).is_multiple_of(SYNC_EVERY) || s + 1 == steps_per_epoch {
                let done = trainer.epoch_losses().len();
                // The running mean over the epoch's pairs so far: at the end, the epoch's loss.
                let (_, running) = pollster::block_on(trainer.new_losses());
                check_finite(trainer.epoch_losses(), epoch, trainer.epoch_first_step(), &run.out)?;
                let ms = 1e3 * started.elapsed().as_secs_f64() / (s + 1) as f64;
                bar.set_position(s as u64 + 1);
                bar.set_message(format!("{ms:.0}ms/step - loss: {running:.4}"));
                let tenth = steps_per_epoch.div_ceil(10).max(1);
                if piped && s + 1 < steps_per_epoch && (s + 1) / tenth > done / tenth {
                    let left = ms * (steps_per_epoch - s - 1) as f64 / 1e3;
                    println!("Epoch {}/{}  {}/{steps_per_epoch} - {ms:.0}ms/step - ETA {left:.0}s - loss: {running:.4}", epoch + 1, config.epochs, s + 1);
                }
            }
        }
        let train_seconds = started.elapsed().as_secs_f64();

        bar.set_message("validating");
        let EpochScores { loss, val_loss, val_acc, threshold, val_acc_at_threshold, .. } = pollster::block_on(trainer.validate())?;
        if !val_loss.is_finite() {
            return Err(format!(
                "the validation loss became {val_loss} after epoch {}: the weights hold NaN or infinity. {} still holds the run as of epoch {epoch}; try a lower --lr",
                epoch + 1,
                run.out.display()
            ));
        }
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        // A schedule's rate, as Keras logs it: the one the next update takes.
        let twin = &trainer.twin;
        let rate = if twin.schedule.is_constant() { String::new() } else { format!(" - learning_rate: {:.4e}", twin.learning_rate()) };
        println!(
            "Epoch {}/{}  {steps_per_epoch}/{steps_per_epoch} ━━━━━━━━━━━━━━━━━━━━ {:.0}s {:.0}ms/step - loss: {loss:.4} - val_loss: {val_loss:.4} - val_acc: {val_acc:.4}{rate}",
            epoch + 1,
            config.epochs,
            seconds,
            1e3 * train_seconds / steps_per_epoch as f64
        );

        let progress = Progress { epoch: epoch + 1, step: twin.step, loss, val_loss, val_acc, threshold };
        let params = twin.read_params();
        let state = twin.read_state();
        // ReLU and max-pooling can hide a NaN weight from the loss; a checkpoint must never hold one.
        if let Some(bad) = plan.param_tensors().iter().find(|t| params[t.range.clone()].iter().any(|w| !w.is_finite())) {
            return Err(format!(
                "the weights of {} hold NaN or infinity after epoch {}; nothing of this epoch was saved and {} holds the run as of epoch {epoch}. Try a lower --lr",
                bad.name,
                epoch + 1,
                run.out.display()
            ));
        }
        let improved = val_loss < best_val_loss;
        if improved {
            best_val_loss = val_loss;
            best_epoch = epoch + 1;
        }
        let stop = config.early_stopping.is_some_and(|patience| epoch + 1 >= best_epoch + patience);
        // The epoch's files go to disk as one set (metrics.csv, best, last, then resume.safetensors, which
        // marks it complete): a write that fails (a full disk) leaves the folder as the last epoch left it.
        let (m, v) = twin.read_adam();
        let mut files = Vec::new();
        metrics_text.push_str(&format!(
            "{},{loss:.6},{val_loss:.6},{val_acc:.6},{threshold:.6},{val_acc_at_threshold:.6},{seconds:.2}\n",
            epoch + 1
        ));
        files.push((metrics_path.clone(), metrics_text.clone().into_bytes()));
        let snapshot = encode(&plan, &params, &state, &[], config, &progress);
        if improved {
            files.push((run.out.join(BEST_FILE), snapshot.clone()));
        }
        // As Keras' restore_best_weights, a run that stops early ends on the best epoch's weights.
        let last = if stop && !improved {
            std::fs::read(run.out.join(BEST_FILE)).map_err(|e| format!("cannot read {}: {e}", run.out.join(BEST_FILE).display()))?
        } else {
            snapshot
        };
        files.push((run.out.join(LAST_FILE), last));
        files.push((run.out.join(RESUME_FILE), encode(&plan, &params, &state, &[("adam.m.", &m), ("adam.v.", &v)], config, &progress)));
        write_set(&files).map_err(|(path, e)| {
            // What is really left: in the first epoch nothing was saved (and a folder this run made
            // goes with it), so there is nothing to resume.
            if epoch == 0 {
                format!("cannot save epoch 1: cannot write {}: {e}. Nothing of this run was saved; free some space and run the same command again", path.display())
            } else {
                format!(
                    "cannot save epoch {}: cannot write {}: {e}. {} still holds the run as of epoch {epoch}, unchanged; free some space and continue with --resume {}",
                    epoch + 1,
                    path.display(),
                    run.out.display(),
                    run.out.display()
                )
            }
        })?;
        if stop {
            println!(
                "stopping early: val_loss has not improved for {} epochs; last.safetensors holds the best epoch's weights (epoch {best_epoch}, val_loss {best_val_loss:.4})",
                epoch + 1 - best_epoch
            );
            break;
        }
    }
    print_ending(&run.out, &metrics_text, best_epoch)?;
    Ok(Outcome::Finished)
}

/// What a finished run leaves and what to do next: the best epoch's figures, the files, the command.
fn print_ending(out: &Path, metrics_text: &str, best_epoch: usize) -> Result<(), String> {
    let rows = parse_metrics(metrics_text, &out.join(METRICS_FILE))?;
    if let Some(r) = rows.iter().find(|r| r.epoch as usize == best_epoch) {
        println!(
            "\nbest epoch {best_epoch}: val_loss {:.4}, test pair accuracy {:.4} at the best threshold, {:.4} at the threshold calibrated on training pairs ({:.4})",
            r.val_loss, r.val_acc, r.val_acc_at_threshold, r.threshold
        );
    }
    println!(
        "written to {}: best.safetensors (the lowest val_loss), last.safetensors, resume.safetensors, metrics.csv",
        out.display()
    );
    println!("next: gpu-siamese evaluate --checkpoint {}", out.join(BEST_FILE).display());
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

