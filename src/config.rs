//! What defines a training run: every setting, with its default stated once, as stored in every
//! checkpoint (a resumed run keeps them).

use serde::{Deserialize, Serialize};

/// Everything that defines a training run; stored in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: String,
    /// [height, width, channels] of the images.
    pub input: [usize; 3],
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub margin: f32,
    pub seed: u64,
    pub resample_pairs: bool,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    /// Classes left out of training and validation, kept for one-shot tests on classes never seen.
    #[serde(default)]
    pub holdout_classes: Vec<crate::data::Label>,
    /// A folder dataset without train/ and test/ folders: the fraction of each class drawn for testing.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Each label's name (class folders' names; numbers for IDX files).
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Random changes to the training images (none by default).
    #[serde(default)]
    pub augment: crate::data::Augment,
/// How training batches are drawn.
    #[serde(default)]
    pub sampler: Sampler,
    /// What a step minimises.
    #[serde(default)]
    pub loss: LossKind,
    /// The dataset folder the run trained on (absolute), where `evaluate` and `report` look first.
    #[serde(default)]
    pub data: Option<String>,
    /// Convolutions rounded as a fused multiply-add rounds, whatever the adapter's fma does (Keras'
    /// bits, much slower on an adapter without a fused multiply-add).
    #[serde(default)]
    pub exact: bool,
    /// How the learning rate moves after its warm-up (constant by default).
    #[serde(default)]
    pub lr_schedule: crate::optimizer::LrSchedule,
    /// Epochs (fractions allowed) over which the learning rate rises linearly from near 0.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Stop when val_loss has not improved for this many epochs, and end on the best weights.
    #[serde(default)]
    pub early_stopping: Option<usize>,
    /// Never pair an image with itself as a positive pair (the tutorial's create_pairs may).
    #[serde(default)]
    pub no_self_pairs: bool,
    /// The training pictures' background: the mean brightness (0-255) of their borders. Pictures given
    /// to the model later with the opposite background are inverted to match.
    #[serde(default)]
    pub background: Option<f32>,
}

impl TrainConfig {
    /// The tutorial's run (its tower on 28x28x1 pictures, batch 64, Adam at 1e-3, margin 1) for `epochs`
    /// from `seed`; what `train` runs when given no options.
    pub fn tutorial(epochs: usize, seed: u64) -> TrainConfig {
        TrainConfig {
            arch: crate::model::TUTORIAL_TOWER.to_string(),
            input: [28, 28, 1],
            epochs,
            batch_size: 64,
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            margin: 1.0,
            seed,
            resample_pairs: false,
            train_limit: None,
            test_limit: None,
            holdout_classes: vec![],
            test_fraction: default_test_fraction(),
            class_names: vec![],
            augment: Default::default(),
            sampler: Sampler::Pairs,
            loss: LossKind::Contrastive,
            data: None,
            exact: false,
            lr_schedule: Default::default(),
            warmup_epochs: 0.0,
            early_stopping: None,
            no_self_pairs: false,
            background: None,
        }
    }
}


/// How training batches are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampler {
    /// The tutorial's: for every image one positive and one negative pair, shuffled; `batch_size` pairs
    /// a step.
    #[default]
    Pairs,
    /// Class-balanced batches of P classes x K images, every pair (or triplet) of a batch used.
    Pk { classes_per_batch: usize, images_per_class: usize },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// y d^2 + (1 - y) max(margin - d, 0)^2, the tutorial's.
    #[default]
    Contrastive,
    /// max(d(anchor, positive) - d(anchor, negative) + margin, 0), over a class-balanced batch's triplets.
    Triplet,
}

pub fn default_test_fraction() -> f64 {
    0.2
}
