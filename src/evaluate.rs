//! Using a trained model: a checkpoint loaded onto the GPU, embeddings and distances of any images, and
//! the evaluation of a checkpoint on a set's pairs (verification scores), on its images (retrieval) and
//! in N-way K-shot episodes, for `gpu-siamese evaluate`, `compare`, `embed` and `report`.

use crate::data::{Holdout, ImageSet, Label, Pair};
use crate::gpu::{Gpu, Kernels};
use crate::metrics::{
    best_threshold, equal_error_rate, few_shot, Episodes, retrieval, roc_auc, roc_curve, threshold_for_far, Confusion,
    FewShot, Retrieval, RocPoint,
};
use crate::run::{calibration_pairs, labels_of, pair_rows, pair_set_loss, paired_images, run_dataset, run_set, test_pairs};
pub use crate::trained::Trained;
use serde::Serialize;
use std::path::PathBuf;

/// Which of the test set's classes an evaluation scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClassChoice {
    /// Every class.
    All,
    /// The classes the model was trained on.
    Seen,
    /// The classes held out of training (`train --holdout-classes`).
    HeldOut,
}

pub struct EvalOptions {
    /// The dataset (as `train --data`); its test split is scored. Without it, the folder the checkpoint
    /// was trained on, if it is still there, else Fashion-MNIST where `train` finds it.
    pub data: Option<PathBuf>,
    /// Default: the held-out classes if the checkpoint has any, else all.
    pub classes: Option<ClassChoice>,
    /// Score only the first N test images (before choosing classes).
    pub limit: Option<usize>,
    /// Also calibrate, on training pairs, the threshold for this false-accept rate.
    pub target_far: Option<f64>,
    /// N-way K-shot episodes; `n_way` None means 4, or the number of classes when fewer.
    pub n_way: Option<usize>,
    pub k_shot: usize,
    pub episodes: usize,
    /// Never pair a test image with itself (the tutorial's pairs may).
    pub no_self_pairs: bool,
    /// Seed of the episodes.
    pub seed: u64,
    /// Images per forward pass; None: as many as the adapter binds comfortably.
    pub batch_size: Option<usize>,
}

/// The scores at one threshold.
#[derive(Clone, Debug, Serialize)]
pub struct Scores {
    pub threshold: f32,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub far: f64,
    pub frr: f64,
    pub true_accepts: usize,
    pub false_accepts: usize,
    pub true_rejects: usize,
    pub false_rejects: usize,
}

impl Scores {
    pub fn at(distances: &[f32], labels: &[f32], threshold: f32) -> Scores {
        let c = Confusion::at(distances, labels, threshold);
        Scores {
            threshold,
            accuracy: c.accuracy(),
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            far: c.far(),
            frr: c.frr(),
            true_accepts: c.true_accepts,
            false_accepts: c.false_accepts,
            true_rejects: c.true_rejects,
            false_rejects: c.false_rejects,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetFar {
    pub target: f64,
    /// The false-accept rate the threshold gives on the training pairs it was calibrated on.
    pub calibration_far: f64,
    pub scores: Scores,
}

/// What `evaluate` reports (and writes as JSON); the raw material of `report` alongside.
#[derive(Serialize)]
pub struct Evaluation {
    pub checkpoint: String,
    /// Epochs the checkpoint's weights were trained for.
    pub epoch: usize,
    pub data: String,
    /// Each label's name.
    pub class_names: Vec<String>,
    pub class_choice: ClassChoice,
    pub classes: Vec<crate::data::Label>,
    pub images: usize,
    pub pairs: usize,
    pub same_pairs: usize,
    /// Same-class pairs of an image with itself (the tutorial's pairs hold a few).
    pub self_pairs: usize,
    pub loss: f64,
    pub roc_auc: Option<f64>,
    pub eer: Option<f64>,
    pub eer_threshold: Option<f32>,
    /// At the threshold stored in the checkpoint (calibrated on training pairs).
    pub at_calibrated_threshold: Scores,
    /// At the threshold best for these very pairs: optimistic, since it is chosen on what it scores.
    pub at_best_threshold: Scores,
    pub at_target_far: Option<TargetFar>,
    pub retrieval: Retrieval,
    pub few_shot: Option<FewShot>,
    #[serde(skip)]
    pub set: ImageSet,
    #[serde(skip)]
    pub pair_list: Vec<Pair>,
    #[serde(skip)]
    pub distances: Vec<f32>,
    #[serde(skip)]
    pub labels: Vec<f32>,
    #[serde(skip)]
    pub roc: Vec<RocPoint>,
    #[serde(skip)]
    pub embeddings: Vec<f32>,
}

pub fn evaluate(gpu: &Gpu, kernels: &Kernels, trained: &Trained, opts: &EvalOptions) -> Result<Evaluation, String> {
    let config = &trained.checkpoint.config;
    // The folder the checkpoint was trained on, unless told otherwise; gone, it is an error rather than
    // a silent fall-back to Fashion-MNIST, which would score the model on other data.
    let trained_on = config.data.as_ref().map(PathBuf::from);
    if let (None, Some(gone)) = (&opts.data, trained_on.as_ref().filter(|d| !d.is_dir())) {
        return Err(format!(
            "{} was trained on {}, which is no longer there: give the data to score with --data DIR",
            trained.path.display(),
            gone.display()
        ));
    }
    let data = opts.data.clone().or(trained_on);
    let (dataset, _) = run_dataset(config, data.as_deref(), Holdout::Labels(&config.holdout_classes))?;
    if !config.class_names.is_empty() && config.class_names != dataset.class_names {
        eprintln!(
            "note: {} was trained on classes {}; {} has {}",
            trained.path.display(),
            config.class_names.join(", "),
            dataset.dir.display(),
            dataset.class_names.join(", ")
        );
    }
    let (dir, train_set, test_set) = (dataset.dir, dataset.train, dataset.test);
    let input = trained.input();
    if test_set.shape() != input {
        return Err(format!(
            "{} was trained on {}x{}x{} images; {} holds {}x{}x{} (pass the run's --data)",
            trained.path.display(),
            input.h,
            input.w,
            input.c,
            dir.display(),
            test_set.rows,
            test_set.cols,
            test_set.channels
        ));
    }
    let holdout = &config.holdout_classes;
    let choice = opts.classes.unwrap_or(if holdout.is_empty() { ClassChoice::All } else { ClassChoice::HeldOut });
    if choice != ClassChoice::All && holdout.is_empty() {
        return Err(format!("{} holds no classes out (train with --holdout-classes): use --classes all", trained.path.display()));
    }
    let set = test_set.truncated(opts.limit).with_classes(|c| match choice {
        ClassChoice::All => true,
        ClassChoice::Seen => !holdout.contains(&c),
        ClassChoice::HeldOut => holdout.contains(&c),
    });
    let classes = set.class_list();
    if classes.len() < 2 {
        return Err(format!("{}: the test images chosen hold classes {classes:?}; scoring pairs needs two or more", dir.display()));
    }

    let tower = trained.tower(gpu, kernels, opts.batch_size)?;
    let mut pairing = config.clone();
    pairing.no_self_pairs |= opts.no_self_pairs;
    let pair_list = test_pairs(&pairing, &set.labels);
    let labels = labels_of(&pair_list);
    let embedded = tower.embed_on_gpu(&set.pixels).map_err(|e| e.to_string())?;
    let distances = tower.pair_distances(&embedded, &pair_rows(&pair_list)).map_err(|e| e.to_string())?;
    if let Some(d) = distances.iter().find(|d| !d.is_finite()) {
        return Err(format!("{}: the model gives a distance of {d}", trained.path.display()));
    }

    let at_target_far = match opts.target_far {
        None => None,
        Some(target) => {
            let train_seen = run_set(config, train_set, config.train_limit);
            let calibration = calibration_pairs(&pairing, &train_seen.labels);
            let calibration_labels = labels_of(&calibration);
            let (images, rows) = paired_images(&train_seen, &calibration);
            let calibration_d = tower.distances(&images, &rows).map_err(|e| e.to_string())?;
            let threshold = threshold_for_far(&calibration_d, &calibration_labels, target)
                .ok_or("--target-far: the training pairs hold no different-class pairs to calibrate on")?;
            Some(TargetFar {
                target,
                calibration_far: Confusion::at(&calibration_d, &calibration_labels, threshold).far(),
                scores: Scores::at(&distances, &labels, threshold),
            })
        }
    };

    let embeddings = embedded.read(gpu);
    let dim = tower.dim();
    let n_way = opts.n_way.unwrap_or(4.min(classes.len()));
    let few_shot = Some(few_shot(&embeddings, dim, &set.labels, &classes, Episodes { n_way, k_shot: opts.k_shot, episodes: opts.episodes, seed: opts.seed })?);
    let eer = equal_error_rate(&distances, &labels);
    Ok(Evaluation {
        checkpoint: trained.path.display().to_string(),
        epoch: trained.checkpoint.progress.epoch,
        data: dir.display().to_string(),
        class_names: display_names(&dir.display().to_string(), &dataset.class_names),
        class_choice: choice,
        images: set.count,
        pairs: pair_list.len(),
        same_pairs: labels.iter().filter(|&&y| y == 1.0).count(),
        self_pairs: pair_list.iter().filter(|p| p.a == p.b).count(),
        loss: pair_set_loss(config, &distances, &pair_list),
        roc_auc: roc_auc(&distances, &labels),
        eer: eer.map(|e| e.0),
        eer_threshold: eer.map(|e| e.1),
        at_calibrated_threshold: Scores::at(&distances, &labels, trained.threshold()),
        at_best_threshold: Scores::at(&distances, &labels, best_threshold(&distances, &labels).0),
        at_target_far,
        retrieval: retrieval(&embeddings, dim, &set.labels),
        few_shot,
        roc: roc_curve(&distances, &labels),
        classes,
        set,
        pair_list,
        distances,
        labels,
        embeddings,
    })
}

/// The evaluation as a table for a terminal.
/// Names for the labels: class folders' names; for IDX files Fashion-MNIST's when the folder is
/// Fashion-MNIST's, else "class N".
pub fn display_names(data: &str, class_names: &[String]) -> Vec<String> {
    let fashion = data.to_lowercase().contains("fashion");
    let numbered = class_names.iter().enumerate().all(|(i, n)| *n == i.to_string());
    class_names
        .iter()
        .enumerate()
        .map(|(l, name)| match () {
            _ if !numbered => name.clone(),
            _ if fashion && l < 10 => crate::report::FASHION_MNIST_CLASSES[l].to_string(),
            _ => format!("class {l}"),
        })
        .collect()
}

pub fn print(e: &Evaluation) {
    let names = |labels: &[Label]| labels.iter().map(|&l| e.class_names.get(l as usize).cloned().unwrap_or_else(|| l.to_string())).collect::<Vec<_>>().join(", ");
    let choice = match e.class_choice {
        ClassChoice::All => "all classes",
        ClassChoice::Seen => "the classes trained on",
        ClassChoice::HeldOut => "the classes held out of training",
    };
    println!("checkpoint  {} (after epoch {})", e.checkpoint, e.epoch);
    println!("data        {}: {} test images of {choice} ({}); {} pairs, {} of them same-class", e.data, e.images, names(&e.classes), e.pairs, e.same_pairs);
    if e.self_pairs > 0 {
        println!(
            "            {} of the same-class pairs pair an image with itself, as the tutorial's create_pairs draws them (--no-self-pairs leaves them out)",
            e.self_pairs
        );
    }
    println!("loss        {:.4}", e.loss);
    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    println!("ROC AUC     {}", opt(e.roc_auc));
    println!("EER         {} (at distance {})", opt(e.eer), e.eer_threshold.map_or("n/a".into(), |t| format!("{t:.4}")));
    println!();
    println!("{:<38} {:>9} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}", "threshold", "distance", "accuracy", "precision", "recall", "F1", "FAR", "FRR", "TA", "FA", "TR", "FR");
    let row = |name: &str, s: &Scores| {
        println!(
            "{name:<38} {:>9.4} {:>8.4} {:>9.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7} {:>7} {:>7} {:>7}",
            s.threshold, s.accuracy, s.precision, s.recall, s.f1, s.far, s.frr, s.true_accepts, s.false_accepts, s.true_rejects, s.false_rejects
        )
    };
    row("calibrated (on training pairs)", &e.at_calibrated_threshold);
    if let Some(t) = &e.at_target_far {
        row(&format!("FAR {} (on training pairs: {:.4})", t.target, t.calibration_far), &t.scores);
    }
    row("best for these pairs (optimistic)", &e.at_best_threshold);
    println!();
    println!("retrieval   precision@1 {:.4}, MAP@R {:.4} ({} queries)", e.retrieval.precision_at_1, e.retrieval.map_at_r, e.retrieval.queries);
    if let Some(f) = &e.few_shot {
        println!(
            "{}-way {}-shot  accuracy {:.4} ± {:.4} (95% CI; std {:.4} over {} episodes) on classes {}",
            f.n_way,
            f.k_shot,
            f.accuracy,
            f.ci95,
            f.std,
            f.episodes,
            names(&f.classes)
        );
    }
}
