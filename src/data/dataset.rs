//! A dataset as a run sees it: a training and a test set of labelled images, from either kind of
//! source, told apart by what the folder holds:
//!
//! - **IDX**: MNIST-layout files (`train-images-idx3-ubyte[.gz]`, ...), Fashion-MNIST's format; used at
//!   their own size, grayscale.
//! - **Folders**: one sub-folder per class, pictures inside (searched recursively), in any format the
//!   `image` crate decodes. With `train/` and `test/` sub-folders, each holding the class folders, the
//!   split is theirs; otherwise each class's pictures are split by a seeded draw, a `test_fraction` of
//!   them to the test set, and held-out classes go to the test set whole. Every picture is made into
//!   the run's input size and channels (see `image_file`), decoded in parallel, once.
//!
//! What cannot be used is reported, never a panic: files that do not decode are skipped and counted;
//! classes with fewer than two pictures (no positive pair) are left out, by name; an empty dataset
//! stops with the path.

use super::{idx_notes, list_images, load_split_prefix, DataError, ImageFile, ImageSet, Label};
#[cfg(not(target_arch = "wasm32"))]
use super::{find_fashion_mnist, repeat_note};
#[cfg(not(target_arch = "wasm32"))]
use super::load_image;
use crate::model::InputShape;
#[cfg(not(target_arch = "wasm32"))]
use rand::seq::SliceRandom;
#[cfg(not(target_arch = "wasm32"))]
use rand::SeedableRng;
#[cfg(not(target_arch = "wasm32"))]
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    Idx,
    Folders,
}

pub struct Dataset {
    pub kind: DataKind,
    pub dir: PathBuf,
    pub train: ImageSet,
    pub test: ImageSet,
    /// Each label's name: the class folder's, or the label's number for IDX files.
    pub class_names: Vec<String>,
    /// What was skipped, and why, for the user to read.
    pub notes: Vec<String>,
}

/// How a folder dataset becomes a run's images.
#[derive(Clone, Debug)]
pub struct FolderOptions {
    /// The size and channels every picture is made into.
    pub shape: InputShape,
    /// Without train/ and test/ folders, the fraction of each class's pictures drawn for the test set.
    pub test_fraction: f64,
    /// Seed of that draw.
    pub seed: u64,
    /// The most training and test images read from IDX files (their first ones; the rest of the files
    /// is not read): `--train-limit` and `--test-limit`.
    pub idx_limits: [Option<usize>; 2],
}

/// The classes of a folder dataset and their pictures, before any is decoded.
pub struct FolderScan {
    pub root: PathBuf,
    /// Class names, sorted: a class's label is its rank here.
    pub class_names: Vec<String>,
    /// Per class, the pictures of the train/ and test/ folders; without them, all in `train`.
    pub train: Vec<Vec<PathBuf>>,
    pub test: Vec<Vec<PathBuf>>,
    /// Whether the dataset has its own train/ and test/ folders.
    pub split_given: bool,
    /// Pictures lying outside any class folder, which are not used.
    pub loose: usize,
    /// Paths not followed because links led to a folder or picture already met (see [`list_images`]).
    pub repeated: Vec<PathBuf>,
}

/// Whether `dir` holds MNIST-layout IDX files.
pub fn is_idx_folder(dir: &Path) -> bool {
    ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"].iter().any(|n| dir.join(n).is_file())
}

/// Lists a folder dataset's classes and pictures.
pub fn scan_folders(root: &Path) -> Result<FolderScan, DataError> {
    let sub = |name: &str| root.join(name);
    let split_given = sub("train").is_dir() && sub("test").is_dir();
    let (train_root, test_root) = if split_given { (sub("train"), Some(sub("test"))) } else { (root.to_path_buf(), None) };
    let mut repeated = Vec::new();
    let mut group = |dir: &Path| -> Result<(Vec<ImageFile>, usize), DataError> {
        let listing = list_images(dir)?;
        repeated.extend(listing.repeated);
        let loose = listing.files.iter().filter(|f| f.class.is_none()).count();
        Ok((listing.files.into_iter().filter(|f| f.class.is_some()).collect(), loose))
    };
    let (train_files, mut loose) = group(&train_root)?;
    let test_files = match &test_root {
        Some(dir) => {
            let (files, l) = group(dir)?;
            loose += l;
            files
        }
        None => Vec::new(),
    };
    // Every class folder counts, even an empty one, so that it can be reported.
    let mut class_names: Vec<String> = Vec::new();
    for dir in std::iter::once(&train_root).chain(test_root.as_ref()) {
        for entry in std::fs::read_dir(dir).map_err(|e| DataError::new(dir, format!("cannot list: {e}")))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') {
                class_names.push(name);
            }
        }
    }
    class_names.sort();
    class_names.dedup();
    if class_names.is_empty() {
        return Err(DataError::new(
            root,
            "holds neither IDX files (train-images-idx3-ubyte[.gz], ...) nor class folders (one sub-folder of pictures per class)",
        ));
    }
    let by_class = |files: Vec<ImageFile>| {
        let mut per_class = vec![Vec::new(); class_names.len()];
        for f in files {
            let class = f.class.as_deref().expect("class files");
            per_class[class_names.binary_search_by(|n| n.as_str().cmp(class)).expect("a listed class")].push(f.path);
        }
        per_class
    };
    Ok(FolderScan { root: root.to_path_buf(), train: by_class(train_files), test: by_class(test_files), class_names: class_names.clone(), split_given, loose, repeated })
}

/// Turns `--holdout-classes` tokens into labels: a class's name, or else its label's number.
pub fn resolve_classes(tokens: &[String], class_names: &[String]) -> Result<Vec<Label>, String> {
    let mut labels: Vec<Label> = tokens
        .iter()
        .map(|t| {
            let t = t.trim();
            class_names
                .iter()
                .position(|n| n == t)
                .or_else(|| t.parse::<usize>().ok().filter(|&l| l < class_names.len()))
                .map(|l| l as Label)
                .ok_or_else(|| {
                    let shown: Vec<&str> = class_names.iter().take(20).map(String::as_str).collect();
                    format!("--holdout-classes: no class '{t}'; the classes are {}{}", shown.join(", "), if class_names.len() > 20 { ", ..." } else { "" })
                })
        })
        .collect::<Result<_, _>>()?;
    labels.sort();
    labels.dedup();
    Ok(labels)
}

#[cfg(not(target_arch = "wasm32"))]
/// Decodes `paths` into `shape` in parallel over the CPU's cores, keeping their order.
pub fn decode_all(paths: &[PathBuf], shape: InputShape) -> Vec<Result<Vec<u8>, DataError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(paths.len()).max(1);
    let chunk = paths.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths.chunks(chunk).map(|part| scope.spawn(move || part.iter().map(|p| load_image(p, shape, false)).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("decoding thread")).collect()
    })
}

#[cfg(not(target_arch = "wasm32"))]
/// Decodes a scanned folder dataset and splits it; `holdout` classes go to the test set whole.
pub fn load_folders(scan: &FolderScan, opts: &FolderOptions, holdout: &[Label]) -> Result<Dataset, String> {
    let classes = scan.class_names.len();
    let mut notes = Vec::new();
    if scan.loose > 0 {
        notes.push(format!("{} pictures outside any class folder are not used", scan.loose));
    }
    notes.extend(repeat_note(&scan.repeated));
    // (class, path, whether the dataset puts it in its test set)
    let mut listed: Vec<(usize, &PathBuf, bool)> = Vec::new();
    for c in 0..classes {
        listed.extend(scan.train[c].iter().map(|p| (c, p, false)));
        listed.extend(scan.test[c].iter().map(|p| (c, p, true)));
    }
    let paths: Vec<PathBuf> = listed.iter().map(|(_, p, _)| (*p).clone()).collect();
    // The decoded set stays in memory: refuse what cannot fit before decoding any of it.
    let bytes = paths.len() as u64 * opts.shape.len() as u64;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    if let Some(free) = super::beyond_free_memory(bytes) {
        return Err(format!(
            "{}: {} pictures at {}x{}x{} take {:.1} GiB decoded, more than this machine has free ({:.1} GiB): use a smaller --image-size",
            scan.root.display(), paths.len(), opts.shape.h, opts.shape.w, opts.shape.c, gib(bytes), gib(free)
        ));
    }
    if bytes > 1 << 28 {
        eprintln!("decoding {} pictures at {}x{}x{}: {:.1} GiB in memory", paths.len(), opts.shape.h, opts.shape.w, opts.shape.c, gib(bytes));
    }
    let decoded = decode_all(&paths, opts.shape);
    let failures: Vec<String> = decoded.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(3).map(String::as_str).collect();
        notes.push(format!("skipped {} of {} pictures that could not be read: {}{}", failures.len(), paths.len(), shown.join("; "), if failures.len() > 3 { "; ..." } else { "" }));
    }
    // Per class, the decoded pictures of each side of the split.
    let mut train: Vec<Vec<Vec<u8>>> = vec![Vec::new(); classes];
    let mut test: Vec<Vec<Vec<u8>>> = vec![Vec::new(); classes];
    for ((c, _, in_test), pixels) in listed.iter().zip(decoded) {
        if let Ok(pixels) = pixels {
            let side = if *in_test { &mut test } else { &mut train };
            side[*c].push(pixels);
        }
    }
    let mut dropped = Vec::new();
    for c in 0..classes {
        if holdout.contains(&(c as Label)) {
            let mut all = std::mem::take(&mut train[c]);
            all.append(&mut test[c]);
            test[c] = all;
        } else if !scan.split_given {
            // A seeded draw per class: the class's own stream, so adding a class changes no other split.
            let mut pictures = std::mem::take(&mut train[c]);
            pictures.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed ^ (c as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03)));
            let n = pictures.len();
            // At least one test picture where there are three or more, and always two to train on.
            let n_test = if n >= 3 { ((opts.test_fraction * n as f64).round() as usize).clamp(1, n - 2) } else { 0 };
            test[c] = pictures.split_off(n - n_test);
            train[c] = pictures;
        }
        let total = train[c].len() + test[c].len();
        let trainable = holdout.contains(&(c as Label)) || train[c].len() >= 2;
        if total < 2 || !trainable {
            dropped.push(format!("{} ({total})", scan.class_names[c]));
            train[c].clear();
            test[c].clear();
        }
    }
    if !dropped.is_empty() {
        notes.push(format!("classes with fewer than two usable pictures to train on (no positive pair) are left out: {}", dropped.join(", ")));
    }
    let set = |per_class: Vec<Vec<Vec<u8>>>| {
        let mut s = ImageSet { count: 0, rows: opts.shape.h, cols: opts.shape.w, channels: opts.shape.c, pixels: Vec::new(), labels: Vec::new() };
        for (c, pictures) in per_class.into_iter().enumerate() {
            for p in pictures {
                s.pixels.extend(p);
                s.labels.push(c as Label);
                s.count += 1;
            }
        }
        s
    };
    let (train, test) = (set(train), set(test));
    if train.count == 0 {
        return Err(format!("{}: no usable pictures to train on ({})", scan.root.display(), notes.join("; ")));
    }
    Ok(Dataset { kind: DataKind::Folders, dir: scan.root.clone(), train, test, class_names: scan.class_names.clone(), notes })
}

/// Fashion-MNIST's (or another IDX folder's) training and test sets, as a dataset.
pub fn idx_dataset(dir: &Path) -> Result<Dataset, String> {
    idx_dataset_prefix(dir, [None, None])
}

/// The same, reading at most the first `limits` training and test images.
pub fn idx_dataset_prefix(dir: &Path, limits: [Option<usize>; 2]) -> Result<Dataset, String> {
    let load = || -> Result<(ImageSet, ImageSet), DataError> { Ok((load_split_prefix(dir, "train", limits[0])?, load_split_prefix(dir, "t10k", limits[1])?)) };
    let (train, test) = load().map_err(|e| e.to_string())?;
    if (train.rows, train.cols) != (test.rows, test.cols) {
        return Err(format!("{}: training images are {}x{} but test images {}x{}", dir.display(), train.rows, train.cols, test.rows, test.cols));
    }
    let classes = train.classes().max(test.classes());
    // Classes are numbered from 0: a stray label (255 among 0-9, say) would make classes out of nothing.
    let mut present = vec![false; classes];
    for &l in train.labels.iter().chain(&test.labels) {
        present[l as usize] = true;
    }
    if let Some(missing) = present.iter().position(|&p| !p) {
        let (set, name) = if train.labels.iter().any(|&l| l as usize >= missing) { (&train, "train") } else { (&test, "t10k") };
        let index = set.labels.iter().position(|&l| l as usize > missing).unwrap_or(0);
        return Err(format!(
            "{}: the labels are not numbered 0 to {} without gaps: no image has label {missing}, while {name} image {index} has label {} \
             (classes are numbered 0, 1, 2, ...)",
            dir.display(),
            classes - 1,
            set.labels[index]
        ));
    }
    Ok(Dataset { kind: DataKind::Idx, dir: dir.to_path_buf(), train, test, class_names: (0..classes).map(|c| c.to_string()).collect(), notes: idx_notes(dir) })
}

/// Classes held out, as the user names them or as a checkpoint stores them.
#[derive(Clone, Copy, Debug)]
pub enum Holdout<'a> {
    /// Class names or label numbers (see [`resolve_classes`]).
    Names(&'a [String]),
    Labels(&'a [Label]),
}

impl Holdout<'_> {
    #[cfg(not(target_arch = "wasm32"))]
    fn resolve(self, class_names: &[String]) -> Result<Vec<Label>, String> {
        match self {
            Holdout::Names(tokens) => resolve_classes(tokens, class_names),
            Holdout::Labels(labels) => match labels.iter().find(|&&l| l as usize >= class_names.len()) {
                Some(l) => Err(format!("held-out class {l} is not among the data's {} classes", class_names.len())),
                None => Ok(labels.to_vec()),
            },
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// The dataset at `explicit` (IDX files or class folders, told apart by what it holds), or, without
/// one, Fashion-MNIST from the usual places. `holdout` classes a folder dataset puts in its test set
/// whole; the labels they resolve to are returned.
pub fn load_dataset(explicit: Option<&Path>, folder: &FolderOptions, holdout: Holdout) -> Result<(Dataset, Vec<Label>), String> {
    let dir = match explicit {
        Some(dir) if !dir.is_dir() => return Err(format!("{}: no such folder", dir.display())),
        Some(dir) if !is_idx_folder(dir) => {
            let scan = scan_folders(dir).map_err(|e| e.to_string())?;
            let labels = holdout.resolve(&scan.class_names)?;
            return Ok((load_folders(&scan, folder, &labels)?, labels));
        }
        Some(dir) => dir.to_path_buf(),
        None => find_fashion_mnist(None)?,
    };
    let dataset = idx_dataset_prefix(&dir, folder.idx_limits)?;
    let labels = holdout.resolve(&dataset.class_names)?;
    Ok((dataset, labels))
}
