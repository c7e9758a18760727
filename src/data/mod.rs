//! Datasets: the IDX files Fashion-MNIST ships as, where to find them, and the tutorial's pairs.

mod augment;
mod csv;
mod dataset;
mod folder;
mod idx;
mod image_file;
mod polarity;
mod pairs;

pub use augment::Augment;
pub use csv::{csv_field, parse_csv_line};
pub use dataset::{idx_dataset, idx_dataset_prefix, is_idx_folder, resolve_classes, scan_folders, DataKind, Dataset, FolderOptions, FolderScan, Holdout};
#[cfg(not(target_arch = "wasm32"))]
pub use dataset::{decode_all, load_dataset, load_folders};
pub use folder::{is_image_name, list_images, repeat_note, ImageFile, Listing, IMAGE_EXTENSIONS};
pub use idx::{beyond_free_memory, parse_idx_prefix, read_idx, read_idx_prefix, IdxArray};
#[cfg(not(target_arch = "wasm32"))]
pub use image_file::load_image;
pub use image_file::{decode_picture, to_input};
pub use polarity::{background_of, border_mean, match_polarity, Polarity};
pub use pairs::{class_balanced_batches, make_pairs, make_pairs_with, shuffle, Pair};

use std::fmt;
use std::path::{Path, PathBuf};

/// A file that cannot be used, and why.
#[derive(Debug)]
pub struct DataError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for DataError {}

impl DataError {
    pub fn new(path: &Path, message: impl Into<String>) -> DataError {
        DataError { path: path.to_path_buf(), message: message.into() }
    }
}

/// A class: a label's number. Classes are numbered from 0 (an IDX file's byte, or a class folder's rank
/// among the dataset's folders sorted by name).
pub type Label = u32;

/// Labelled images, kept as bytes (0..=255) the way the files hold them.
#[derive(Clone, Debug)]
pub struct ImageSet {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// [count, rows, cols, channels], row-major.
    pub pixels: Vec<u8>,
    pub labels: Vec<Label>,
}

impl ImageSet {
    pub fn image_len(&self) -> usize {
        self.rows * self.cols * self.channels
    }

    pub fn shape(&self) -> crate::model::InputShape {
        crate::model::InputShape { h: self.rows, w: self.cols, c: self.channels }
    }

    /// The number of classes: the largest label plus one.
    pub fn classes(&self) -> usize {
        self.labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0)
    }

    /// The classes present, in order.
    pub fn class_list(&self) -> Vec<Label> {
        let present: std::collections::BTreeSet<Label> = self.labels.iter().copied().collect();
        present.into_iter().collect()
    }

    /// The images whose class `keep` accepts, in their order.
    pub fn with_classes(&self, keep: impl Fn(Label) -> bool) -> ImageSet {
        let len = self.image_len();
        let kept: Vec<usize> = (0..self.count).filter(|&i| keep(self.labels[i])).collect();
        ImageSet {
            count: kept.len(),
            rows: self.rows,
            cols: self.cols,
            channels: self.channels,
            pixels: kept.iter().flat_map(|&i| self.pixels[i * len..(i + 1) * len].iter().copied()).collect(),
            labels: kept.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// The first `limit` images (all when `limit` is None or larger).
    pub fn truncated(mut self, limit: Option<usize>) -> ImageSet {
        if let Some(limit) = limit.filter(|&l| l < self.count) {
            self.count = limit;
            self.pixels.truncate(limit * self.image_len());
            self.labels.truncate(limit);
        }
        self
    }
}

/// The places Fashion-MNIST is looked for, in order: `--data`, `$GPU_SIAMESE_DATA`, the Debian package
/// `dataset-fashion-mnist`'s folder, then `./data/fashion-mnist`.
pub fn fashion_mnist_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_path_buf()];
    }
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("GPU_SIAMESE_DATA") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(PathBuf::from("/usr/share/datasets/fashion-mnist"));
    dirs.push(PathBuf::from("data/fashion-mnist"));
    dirs
}

/// The file `stem` (e.g. `train-images-idx3-ubyte`) in `dir`, gzip-compressed or not.
fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()].into_iter().map(|name| dir.join(name)).find(|p| p.is_file())
}

/// A note when a folder holds a split's file both compressed and not (after `gunzip -k`, say): the
/// compressed one is read.
pub fn idx_notes(dir: &Path) -> Vec<String> {
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        .iter()
        .filter(|stem| dir.join(stem).is_file() && dir.join(format!("{stem}.gz")).is_file())
        .map(|stem| format!("{} holds both {stem} and {stem}.gz: reading {stem}.gz", dir.display()))
        .collect()
}

/// Loads the `train` or `t10k` split of an MNIST-layout folder.
pub fn load_split(dir: &Path, split: &str) -> Result<ImageSet, DataError> {
    load_split_prefix(dir, split, None)
}

/// Loads the first `limit` images (all without one) of a split; the rest of its files is not read.
pub fn load_split_prefix(dir: &Path, split: &str, limit: Option<usize>) -> Result<ImageSet, DataError> {
    let images_stem = format!("{split}-images-idx3-ubyte");
    let labels_stem = format!("{split}-labels-idx1-ubyte");
    let images_path = find_file(dir, &images_stem)
        .ok_or_else(|| DataError::new(&dir.join(&images_stem), "not found (looked for .gz and uncompressed)"))?;
    let labels_path = find_file(dir, &labels_stem)
        .ok_or_else(|| DataError::new(&dir.join(&labels_stem), "not found (looked for .gz and uncompressed)"))?;
    image_set(read_idx_prefix(&images_path, limit)?, &images_path, read_idx_prefix(&labels_path, limit)?, &labels_path)
}

/// A split from its images' and labels' IDX arrays (read from the paths named), checked against each
/// other.
pub fn image_set(images: IdxArray, images_path: &Path, labels: IdxArray, labels_path: &Path) -> Result<ImageSet, DataError> {
    if images.dims.len() != 3 {
        return Err(DataError::new(&images_path, format!("expected images [count, rows, cols], found {} dimensions", images.dims.len())));
    }
    if labels.dims.len() != 1 {
        return Err(DataError::new(&labels_path, format!("expected labels [count], found {} dimensions", labels.dims.len())));
    }
    if labels.dims[0] != images.dims[0] {
        return Err(DataError::new(
            &labels_path,
            format!("holds {} labels but {} holds {} images", labels.dims[0], images_path.display(), images.dims[0]),
        ));
    }
    Ok(ImageSet {
        count: images.dims[0],
        rows: images.dims[1],
        cols: images.dims[2],
        channels: 1,
        pixels: images.data,
        labels: labels.data.into_iter().map(Label::from).collect(),
    })
}

/// The first candidate folder for Fashion-MNIST that exists, or an error saying where it looked and how
/// to get it.
pub fn find_fashion_mnist(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let (None, Some(dir)) = (explicit, std::env::var_os("GPU_SIAMESE_DATA")) {
        if !Path::new(&dir).is_dir() {
            return Err(format!("GPU_SIAMESE_DATA={}: no such folder (unset it to use the default places)", Path::new(&dir).display()));
        }
    }
    let candidates = fashion_mnist_candidates(explicit);
    if let Some(dir) = candidates.iter().find(|d| d.is_dir()) {
        return Ok(dir.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| format!("  {}", d.display())).collect();
    Err(format!(
        "Fashion-MNIST not found. Looked in:\n{}\nInstall it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; `make train` does this), \
         or put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz \
         in a folder and pass it with --data DIR or GPU_SIAMESE_DATA.",
        looked.join("\n")
    ))
}
