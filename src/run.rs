//! How a run is set up, shared by `train` and by the commands that use a trained model: its dataset and
//! the sets of images it trains and validates on, the pairs it draws from its seed (training, test and
//! calibration), its batches and what they minimise, and where its files go.

use crate::config::{LossKind, Sampler, TrainConfig};
use crate::data::{class_balanced_batches, make_pairs_with, shuffle, DataKind, Dataset, ImageSet, Label, Pair};
#[cfg(not(target_arch = "wasm32"))]
use crate::data::{load_dataset, FolderOptions, Holdout};
use crate::metrics::{contrastive_loss, triplet_loss};
#[cfg(not(target_arch = "wasm32"))]
use crate::model::InputShape;
use crate::model::TowerSpec;
use crate::objective::Objective;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};

/// Training pairs the distance threshold is calibrated on, each epoch (a fixed sample, eval mode): at most
/// this many, and at most a quarter of them on a small set.
const CALIBRATION_PAIRS: usize = 4096;
/// The (first, second) image indices of each pair.
pub fn pair_rows(pairs: &[Pair]) -> Vec<(u32, u32)> {
    pairs.iter().map(|p| (p.a, p.b)).collect()
}

/// The images `pairs` use, each once, in the order they first appear, and the pairs as indices into
/// them: what a few pairs of a large set need embedded.
pub fn paired_images(set: &ImageSet, pairs: &[Pair]) -> (Vec<u8>, Vec<(u32, u32)>) {
    let len = set.image_len();
    let mut slot = std::collections::HashMap::new();
    let mut pixels = Vec::new();
    let mut index = |image: u32| {
        *slot.entry(image).or_insert_with(|| {
            pixels.extend_from_slice(&set.pixels[image as usize * len..(image as usize + 1) * len]);
            (pixels.len() / len - 1) as u32
        })
    };
    let rows = pairs.iter().map(|p| (index(p.a), index(p.b))).collect();
    (pixels, rows)
}

/// Seeds for each random stream of a run, derived from its seed and a purpose.
pub fn rng(seed: u64, purpose: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}
/// The seed of the augmentation's draws (a u32, as the kernels hash it).
pub fn augment_seed(seed: u64) -> u32 {
    (rng(seed, AUGMENTATION).next_u32()) | 1
}
const AUGMENTATION: u64 = 4;
pub const TRAIN_PAIRS: u64 = 1;
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
pub fn test_pairs(config: &TrainConfig, labels: &[Label]) -> Vec<Pair> {
    make_pairs_with(labels, &mut rng(config.seed, TEST_PAIRS), !config.no_self_pairs)
}

/// The training pairs the distance threshold is calibrated on: a fixed sample of at most
/// `CALIBRATION_PAIRS`, and at most a quarter of a small set.
pub fn calibration_pairs(config: &TrainConfig, train_labels: &[Label]) -> Vec<Pair> {
    let mut pairs = make_pairs_with(train_labels, &mut rng(config.seed, CALIBRATION), !config.no_self_pairs);
    shuffle(&mut pairs, &mut rng(config.seed, CALIBRATION));
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
    let mut pairs = if config.resample_pairs { make_pairs_with(labels, &mut epoch_rng, !config.no_self_pairs) } else { base.to_vec() };
    shuffle(&mut pairs, &mut epoch_rng);
    pairs
}

/// The pairs in step `step` of an epoch over `total` pairs: the batch size, less in a last, partial batch.
pub fn pairs_in_step(step: usize, batch: usize, total: usize) -> usize {
    batch.min(total - step * batch)
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
pub fn settle_sampler(config: &mut TrainConfig, train: &ImageSet) -> Result<(), String> {
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

/// The tower for this run: `arch` (a spec, or a named tower), with the final dense layer's width set to
/// `embedding_dim`.
pub fn tower(arch: &str, embedding_dim: Option<usize>) -> Result<TowerSpec, String> {
    let mut spec = TowerSpec::named_or_parsed(arch).map_err(|e| format!("--arch \"{arch}\": {e}"))?;
    if let Some(dim) = embedding_dim {
        // The last dense layer, when only unit normalisation follows it.
        use crate::layers::LayerSpec;
        let last = spec.layers.iter().rposition(|l| !matches!(l, LayerSpec::L2Norm(_)));
        match last.map(|i| &mut spec.layers[i]) {
            Some(LayerSpec::Dense(dense)) if dim > 0 => dense.units = dim,
            _ => return Err(format!("--embedding-dim {dim}: the tower must end in a dense layer (then l2norm, if any) and the width be above 0")),
        }
    }
    Ok(spec)
}

pub fn labels_of(pairs: &[Pair]) -> Vec<f32> {
    pairs.iter().map(|p| p.label).collect()
}

/// A run's dataset (IDX files or class folders), its held-out classes resolved to labels. A folder
/// dataset is made into the run's input shape.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_dataset(config: &TrainConfig, data: Option<&Path>, holdout: Holdout) -> Result<(Dataset, Vec<Label>), String> {
    let [h, w, c] = config.input;
    let folder = FolderOptions { shape: InputShape { h, w, c }, test_fraction: config.test_fraction, seed: config.seed, idx_limits: [config.train_limit, config.test_limit] };
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

pub fn check_usable(set: &ImageSet, what: &str) -> Result<(), String> {
    if set.count < 2 || set.class_list().len() < 2 {
        return Err(format!(
            "the {what} set needs images of at least two classes; it has {} images of classes {:?} (after --train-limit, --test-limit and --holdout-classes)",
            set.count,
            set.class_list()
        ));
    }
    Ok(())
}

/// `runs/<UTC date and time>`, the default output folder.
#[cfg(not(target_arch = "wasm32"))]
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
        TrainConfig { batch_size: 4, ..TrainConfig::tutorial(3, 5) }
    }

    #[test]
    fn epochs_shuffle_the_same_pairs_unless_resampled() {
        let labels: Vec<Label> = (0..50).map(|i| i % 5).collect();
        let mut c = config();
        let base = crate::data::make_pairs(&labels, &mut rng(c.seed, TRAIN_PAIRS));
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
