//! Datasets of picture folders, one per class: discovery, seeded splits (by image, and by class for
//! held-out classes), the dataset's own train/ and test/ folders, every kind of bad input, and a run
//! of `train` on the example shipped in assets/ that learns.

use gpu_siamese::data::{load_dataset, resolve_classes, scan_folders, DataKind, FolderOptions, Holdout};
use gpu_siamese::model::InputShape;
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/example-folders");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-siamese-folders-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `count` pictures in `dir/class`, each a flat grey of its own level so that they can be told apart.
fn pictures(dir: &Path, class: &str, count: usize, first_level: u8) {
    let folder = dir.join(class);
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..count {
        let level = first_level.wrapping_add(i as u8);
        let path = folder.join(format!("{i}.png"));
        DynamicImage::ImageLuma8(GrayImage::from_pixel(10, 10, image::Luma([level]))).save_with_format(path, ImageFormat::Png).unwrap();
    }
}

fn options(seed: u64) -> FolderOptions {
    FolderOptions { shape: InputShape { h: 8, w: 8, c: 1 }, test_fraction: 0.25, seed, idx_limits: [None, None] }
}

/// Each picture's grey level, by set, as (label, level) sorted.
fn levels(set: &gpu_siamese::data::ImageSet) -> Vec<(u32, u8)> {
    let mut v: Vec<(u32, u8)> = (0..set.count).map(|i| (set.labels[i], set.pixels[i * set.image_len()])).collect();
    v.sort();
    v
}

#[test]
fn classes_are_folders_and_the_split_is_seeded_per_class() {
    let dir = temp_dir("split");
    pictures(&dir, "cats", 8, 0);
    pictures(&dir, "dogs", 4, 100);
    pictures(&dir, "émeus", 12, 200);
    let (d, held) = load_dataset(Some(&dir), &options(1), Holdout::Names(&[])).unwrap();
    assert_eq!(d.kind, DataKind::Folders);
    assert!(held.is_empty());
    assert_eq!(d.class_names, ["cats", "dogs", "émeus"], "sorted by name; labels are the ranks");
    // A quarter of each class, rounded, at least one, to the test set.
    let count = |set: &gpu_siamese::data::ImageSet, l: u32| set.labels.iter().filter(|&&x| x == l).count();
    assert_eq!([count(&d.test, 0), count(&d.test, 1), count(&d.test, 2)], [2, 1, 3]);
    assert_eq!([count(&d.train, 0), count(&d.train, 1), count(&d.train, 2)], [6, 3, 9]);
    assert_eq!(d.train.image_len(), 64);
    // Nothing lost, nothing twice.
    let mut all = levels(&d.train);
    all.extend(levels(&d.test));
    all.sort();
    assert_eq!(all.len(), 24);
    all.dedup();
    assert_eq!(all.len(), 24);
    // The same seed, the same split; another seed, another.
    let (again, _) = load_dataset(Some(&dir), &options(1), Holdout::Names(&[])).unwrap();
    assert_eq!(levels(&again.test), levels(&d.test));
    let (other, _) = load_dataset(Some(&dir), &options(2), Holdout::Names(&[])).unwrap();
    assert_ne!(levels(&other.test), levels(&d.test));
}

#[test]
fn held_out_classes_go_to_the_test_set_whole() {
    let dir = temp_dir("holdout");
    pictures(&dir, "a", 8, 0);
    pictures(&dir, "b", 8, 50);
    pictures(&dir, "c", 8, 100);
    let tokens = vec!["c".to_string(), "0".to_string()];
    let (d, held) = load_dataset(Some(&dir), &options(1), Holdout::Names(&tokens)).unwrap();
    assert_eq!(held, [0, 2], "by name or by number");
    assert!(d.train.labels.iter().all(|&l| l == 1), "only class b is left to train on");
    assert_eq!(d.test.labels.iter().filter(|&&l| l == 2).count(), 8);
    assert_eq!(d.test.labels.iter().filter(|&&l| l == 0).count(), 8);
    let (same, _) = load_dataset(Some(&dir), &options(1), Holdout::Labels(&[0, 2])).unwrap();
    assert_eq!(levels(&same.test), levels(&d.test), "a checkpoint's labels give the same split");
    let names = ["a".to_string(), "b".to_string()];
    assert!(resolve_classes(&["z".to_string()], &names).unwrap_err().contains("no class 'z'; the classes are a, b"));
}

#[test]
fn the_datasets_own_train_and_test_folders_are_its_split() {
    let dir = temp_dir("given");
    pictures(&dir.join("train"), "x", 5, 0);
    pictures(&dir.join("train"), "y", 5, 50);
    pictures(&dir.join("test"), "x", 2, 100);
    pictures(&dir.join("test"), "y", 3, 150);
    let (d, _) = load_dataset(Some(&dir), &options(1), Holdout::Names(&[])).unwrap();
    assert_eq!((d.train.count, d.test.count), (10, 5));
    assert!(levels(&d.test).iter().all(|&(_, level)| level >= 100));
    assert_eq!(d.class_names, ["x", "y"]);
}

#[test]
fn bad_folders_are_reported_not_fatal_where_they_can_be_skipped() {
    let dir = temp_dir("bad");
    pictures(&dir, "good", 6, 0);
    pictures(&dir, "lonely", 1, 80);
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("good/notes.png"), "not a picture").unwrap();
    std::fs::write(dir.join("good/readme.txt"), "ignored: not a picture's name").unwrap();
    let bytes = std::fs::read(dir.join("good/0.png")).unwrap();
    std::fs::write(dir.join("good/cut.png"), &bytes[..bytes.len() / 2]).unwrap();
    // Mixed sizes and channel counts are all made into the run's shape.
    RgbImage::from_pixel(31, 17, image::Rgb([10, 200, 30])).save(dir.join("good/wide colour.jpg")).unwrap();
    pictures(&dir, "ok", 4, 120);
    DynamicImage::ImageLuma8(GrayImage::new(3, 3)).save(dir.join("loose.png")).unwrap();
    let (d, _) = load_dataset(Some(&dir), &FolderOptions { shape: InputShape { h: 8, w: 8, c: 3 }, test_fraction: 0.25, seed: 0, idx_limits: [None, None] }, Holdout::Names(&[])).unwrap();
    let notes = d.notes.join("\n");
    assert!(notes.contains("1 pictures outside any class folder are not used"), "{notes}");
    assert!(notes.contains("skipped 2 of 14 pictures that could not be read") && notes.contains("notes.png") && notes.contains("cut.png"), "{notes}");
    assert!(notes.contains("left out: empty (0), lonely (1)"), "{notes}");
    assert_eq!(d.train.channels, 3);
    assert_eq!(d.train.count + d.test.count, 7 + 4, "good's six and the JPEG, ok's four");
    // Nothing usable at all: a stop naming the folder.
    let none = temp_dir("none");
    std::fs::create_dir_all(none.join("only")).unwrap();
    std::fs::write(none.join("only/x.png"), "x").unwrap();
    let e = load_dataset(Some(&none), &options(0), Holdout::Names(&[])).err().unwrap();
    assert!(e.contains("no usable pictures to train on"), "{e}");
    let e = load_dataset(Some(&temp_dir("flat")), &options(0), Holdout::Names(&[])).err().unwrap();
    assert!(e.contains("holds neither IDX files") && e.contains("nor class folders"), "{e}");
    let e = load_dataset(Some(&none.join("missing")), &options(0), Holdout::Names(&[])).err().unwrap();
    assert!(e.contains("no such folder"), "{e}");
}

#[test]
fn the_shipped_example_is_found_and_decoded() {
    let scan = scan_folders(Path::new(EXAMPLE)).unwrap();
    assert_eq!(scan.class_names, ["ankle boot", "bag", "sandale été", "sneaker", "t-shirt", "trouser"]);
    assert!(scan.train.iter().all(|c| c.len() == 50));
    let (d, _) = load_dataset(Some(Path::new(EXAMPLE)), &FolderOptions { shape: InputShape { h: 32, w: 32, c: 3 }, test_fraction: 0.2, seed: 0, idx_limits: [None, None] }, Holdout::Names(&[])).unwrap();
    assert!(d.notes.is_empty(), "{:?}", d.notes);
    assert_eq!((d.train.count, d.test.count, d.train.image_len()), (240, 60, 32 * 32 * 3));
}

#[test]
fn training_on_the_example_folders_learns() {
    let out = temp_dir("train");
    let o = Command::new(env!("CARGO_BIN_EXE_gpu-siamese")).env("GPU_SIAMESE_NO_TUNE", "1")
        .args(["train", "--data", EXAMPLE, "--arch", "conv(16,3),maxpool,conv(32,3),maxpool,gap,dense(32)", "--epochs", "8", "--batch-size", "16"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success());
    assert!(text.contains("(class folders, pictures made 28x28x1: 240 training and 60 test images, 6 classes)"), "{text}");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let last: Vec<f64> = metrics.lines().last().unwrap().split(',').map(|v| v.parse().unwrap()).collect();
    assert!(last[3] >= 0.65, "pair accuracy well above chance (0.5): {}", last[3]);
    let saved = gpu_siamese::checkpoint::Checkpoint::load(&out.join("best.safetensors")).unwrap();
    assert_eq!(saved.config.class_names[2], "sandale été");
    // compare works on the folder's own pictures, through the same conversion.
    let o = Command::new(env!("CARGO_BIN_EXE_gpu-siamese")).env("GPU_SIAMESE_NO_TUNE", "1")
        .args(["compare", &format!("{EXAMPLE}/bag/000.png"), &format!("{EXAMPLE}/bag/001.jpg"), "--checkpoint"])
        .arg(out.join("best.safetensors"))
        .output()
        .unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("distance "));
}
