//! The IDX reader on good files and on each kind of damage, dataset discovery, and the tutorial's pairs.

use gpu_siamese::data::{find_fashion_mnist, idx_dataset, load_split, make_pairs, read_idx};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-siamese-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn error_of(path: &Path) -> String {
    read_idx(path).expect_err("damaged file accepted").to_string()
}

#[test]
fn reads_raw_and_gzip_files() {
    let dir = temp_dir("good");
    let data: Vec<u8> = (0..2 * 3 * 5).map(|i| i as u8).collect();
    for (name, bytes) in [("raw", idx_bytes(&[2, 3, 5], &data)), ("gz", gzip(&idx_bytes(&[2, 3, 5], &data)))] {
        let array = read_idx(&write(&dir, name, &bytes)).unwrap();
        assert_eq!(array.dims, [2, 3, 5], "{name}");
        assert_eq!(array.data, data, "{name}");
    }
}

#[test]
fn each_kind_of_damage_is_named() {
    let dir = temp_dir("damage");
    let data = vec![7u8; 60];
    let good = idx_bytes(&[3, 4, 5], &data);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated-data", good[..good.len() - 7].to_vec(), "truncated: the header [3, 4, 5] promises 60 data bytes, the file holds 53"),
        ("truncated-header", good[..9].to_vec(), "truncated: the file ends inside the IDX header"),
        ("truncated-gzip", gzip(&good)[..40].to_vec(), "corrupt or unreadable"),
        ("wrong-magic", [&[0x12u8, 0x34][..], &good[2..]].concat(), "not an IDX file: it starts with bytes 12 34"),
        ("wrong-type", [&good[..2], &[0x0d][..], &good[3..]].concat(), "IDX data type 0x0d is not supported"),
        ("trailing", [good.clone(), vec![1, 2]].concat(), "holds more than the 60 data bytes"),
        ("no-dims", vec![0, 0, 8, 0], "zero dimensions"),
        ("empty", vec![], "truncated"),
    ];
    for (name, bytes, expected) in cases {
        let path = write(&dir, name, &bytes);
        let message = error_of(&path);
        assert!(message.contains(expected), "{name}: {message}");
        assert!(message.contains(&path.display().to_string()), "{name}: the error names the file: {message}");
    }
    let gz_truncated = write(&dir, "gz-truncated-data", &gzip(&good[..good.len() - 7]));
    assert!(error_of(&gz_truncated).contains("truncated: the header [3, 4, 5] promises 60 data bytes, the decompressed data holds 53"));
}

#[test]
fn absurd_dimensions_do_not_allocate() {
    let dir = temp_dir("absurd");
    // 4 billion images of 4 billion pixels: refused from the header alone.
    let message = error_of(&write(&dir, "huge", &idx_bytes(&[u32::MAX, u32::MAX, 28], &[0; 10])));
    assert!(message.contains("absurd dimensions"), "{message}");
    // A plausible-looking header (a billion bytes) over a tiny file: reading stops at the data there is.
    let message = error_of(&write(&dir, "claims-a-gigabyte", &idx_bytes(&[1_000_000, 1000], &[0; 10])));
    assert!(message.contains("truncated") && message.contains("holds 10"), "{message}");
}

#[test]
fn splits_check_images_against_labels() {
    let dir = temp_dir("split");
    write(&dir, "train-images-idx3-ubyte.gz", &gzip(&idx_bytes(&[4, 2, 2], &[9; 16])));
    write(&dir, "train-labels-idx1-ubyte", &idx_bytes(&[4], &[0, 1, 0, 1]));
    let set = load_split(&dir, "train").unwrap();
    assert_eq!((set.count, set.rows, set.cols, set.classes()), (4, 2, 2, 2));
    write(&dir, "train-labels-idx1-ubyte", &idx_bytes(&[3], &[0, 1, 0]));
    let message = load_split(&dir, "train").unwrap_err().to_string();
    assert!(message.contains("train-labels-idx1-ubyte: holds 3 labels but") && message.contains("holds 4 images"), "{message}");
    write(&dir, "train-labels-idx1-ubyte", &idx_bytes(&[2, 2], &[0, 1, 0, 1]));
    assert!(load_split(&dir, "train").unwrap_err().to_string().contains("expected labels [count]"));
    let message = load_split(&dir, "t10k").unwrap_err().to_string();
    assert!(message.contains("t10k-images-idx3-ubyte: not found"), "{message}");
}

#[test]
fn a_missing_dataset_says_where_it_looked_and_how_to_get_it() {
    let missing = temp_dir("missing").join("nowhere");
    let message = find_fashion_mnist(Some(&missing)).unwrap_err();
    assert!(message.contains(&missing.display().to_string()), "{message}");
    assert!(message.contains("apt-get install dataset-fashion-mnist"), "{message}");
}

#[test]
fn the_shipped_subset_is_real_fashion_mnist() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-small");
    let dataset = idx_dataset(&dir).unwrap();
    let (found, train, test) = (dataset.dir, dataset.train, dataset.test);
    assert_eq!(found, dir);
    assert_eq!((train.count, test.count, train.rows, train.cols, train.classes()), (2000, 500, 28, 28, 10));
    // The first training label of Fashion-MNIST is 9 (ankle boot), the first test label too.
    assert_eq!((train.labels[0], test.labels[0]), (9, 9));
}

#[test]
fn pairs_are_the_tutorials() {
    let labels: Vec<u32> = (0..300).map(|i| (i * 7) % 10).collect();
    let pairs = make_pairs(&labels, &mut ChaCha8Rng::seed_from_u64(1));
    // For every image, in order: a positive pair then a negative pair, both starting at the image.
    assert_eq!(pairs.len(), 2 * labels.len());
    for (i, two) in pairs.chunks(2).enumerate() {
        let (pos, neg) = (two[0], two[1]);
        assert_eq!((pos.a, neg.a), (i as u32, i as u32));
        assert_eq!((pos.label, neg.label), (1.0, 0.0));
        assert_eq!(labels[pos.b as usize], labels[i]);
        assert_ne!(labels[neg.b as usize], labels[i]);
    }
    assert_eq!(pairs, make_pairs(&labels, &mut ChaCha8Rng::seed_from_u64(1)), "a seed gives the same pairs");
    assert_ne!(pairs, make_pairs(&labels, &mut ChaCha8Rng::seed_from_u64(2)));
    // The partners are drawn across the whole class (and, for negatives, every other class).
    let negative_classes: std::collections::BTreeSet<u32> = pairs.iter().filter(|p| p.label == 0.0).map(|p| labels[p.b as usize]).collect();
    assert_eq!(negative_classes.len(), 10);
    let distinct_partners: std::collections::BTreeSet<u32> = pairs.iter().map(|p| p.b).collect();
    assert!(distinct_partners.len() > 200, "{} distinct partners", distinct_partners.len());
}

#[test]
fn without_self_pairs_no_image_is_its_own_partner() {
    // 300 images of 10 classes: the tutorial's draw pairs an image with itself about once per class
    // size; --no-self-pairs never does, and still draws over the whole class.
    let labels: Vec<u32> = (0..300).map(|i| (i * 7) % 10).collect();
    let tutorial = make_pairs(&labels, &mut ChaCha8Rng::seed_from_u64(1));
    assert!(tutorial.iter().any(|p| p.a == p.b), "the tutorial's pairs hold self-pairs");
    let pairs = gpu_siamese::data::make_pairs_with(&labels, &mut ChaCha8Rng::seed_from_u64(1), false);
    assert_eq!(pairs.len(), 2 * labels.len());
    assert!(pairs.iter().all(|p| p.a != p.b));
    for two in pairs.chunks(2) {
        assert_eq!(labels[two[0].b as usize], labels[two[0].a as usize]);
        assert_ne!(labels[two[1].b as usize], labels[two[1].a as usize]);
    }
    let partners: std::collections::BTreeSet<u32> = pairs.iter().filter(|p| p.label == 1.0).map(|p| p.b).collect();
    assert!(partners.len() > 150, "{} distinct positive partners", partners.len());
    // A class of one image can only pair with itself.
    let lonely = [0u32, 1, 1, 1];
    let pairs = gpu_siamese::data::make_pairs_with(&lonely, &mut ChaCha8Rng::seed_from_u64(3), false);
    assert_eq!((pairs[0].a, pairs[0].b), (0, 0));
}
