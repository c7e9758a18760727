//! Hostile and unlucky input: link loops, run folders that already hold results or are in use, a write
//! that fails half-way through an epoch's files, crafted checkpoints, decompression bombs and other odd
//! files. Each ends in a clear error or note: no panic, no hang, and bounded memory.

use gpu_siamese::checkpoint::{encode, write_set, Progress};
use gpu_siamese::config::TrainConfig;
use gpu_siamese::data::{idx_dataset, list_images, load_dataset, read_idx_prefix, FolderOptions, Holdout};
use gpu_siamese::model::{glorot_uniform, InputShape, Plan, TowerSpec};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fashion-mnist-small");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/example-folders");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-siamese-robust-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A command's output and the most memory its process held (VmHWM), killed (and the test failed) if it
/// runs past `seconds`: a hang fails, it does not stall the suite.
fn watched(args: &[&str], seconds: u64) -> (Output, u64) {
    watched_with(args, seconds, &[("GPU_SIAMESE_NO_TUNE", Some("1"))])
}

/// As [`watched`], with environment variables set (Some) or removed (None).
fn watched_with(args: &[&str], seconds: u64, env: &[(&str, Option<&str>)]) -> (Output, u64) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gpu-siamese"));
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status_file = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let mut peak = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()) {
                peak = peak.max(kib * 1024);
            }
        }
        if started.elapsed() > Duration::from_secs(seconds) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{args:?} still running after {seconds} s (holding {} MiB)", peak >> 20);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() };
    eprintln!("{args:?}: {status}, {} MiB\n{}{}", peak >> 20, String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output, peak)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A failure the program reports itself: exit status 1 (a panic is 101, an abort 134), with a message.
fn assert_clean_failure(o: &Output, wanted: &[&str]) {
    assert_eq!(o.status.code(), Some(1), "a reported error, not a crash: {}", stderr(o));
    for w in wanted {
        assert!(stderr(o).contains(w), "the error says {w:?}: {}", stderr(o));
    }
}

const GIB: u64 = 1 << 30;

fn grey_png(path: &Path, level: u8) {
    image::GrayImage::from_fn(28, 28, |x, y| image::Luma([level.wrapping_add((x * 3 + y * 5) as u8)])).save(path).unwrap();
}

#[test]
fn link_loops_are_walked_once_and_pictures_counted_once() {
    let dir = temp_dir("links");
    for (class, count) in [("a", 3), ("b", 2)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..count {
            grey_png(&dir.join(class).join(format!("{i}.png")), 40 * i as u8);
        }
    }
    std::os::unix::fs::symlink(".", dir.join("a/loop")).unwrap();
    std::os::unix::fs::symlink("..", dir.join("a/up")).unwrap();
    std::os::unix::fs::symlink("../b", dir.join("b/again")).unwrap();
    std::os::unix::fs::symlink("0.png", dir.join("b/same.png")).unwrap();
    // A walk that followed the loops would never end: run it on a thread and give up on it after a while.
    let (sender, receiver) = std::sync::mpsc::channel();
    let root = dir.clone();
    std::thread::spawn(move || sender.send(list_images(&root).unwrap()).unwrap());
    let listing = receiver.recv_timeout(Duration::from_secs(30)).expect("the walk ends");
    let files: Vec<String> = listing.files.iter().map(|f| f.path.strip_prefix(&dir).unwrap().display().to_string()).collect();
    assert_eq!(files, ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png"], "each picture once, by its first path");
    assert_eq!(listing.repeated.len(), 4, "{:?}", listing.repeated);
    let options = FolderOptions { shape: InputShape { h: 8, w: 8, c: 1 }, test_fraction: 0.0, seed: 0, idx_limits: [None, None] };
    let (dataset, _) = load_dataset(Some(&dir), &options, Holdout::Names(&[])).unwrap();
    assert_eq!(dataset.train.count + dataset.test.count, 5);
    assert!(dataset.notes.iter().any(|n| n.contains("4 paths") && n.contains("not followed")), "{:?}", dataset.notes);
}

#[test]
fn a_folder_holding_any_of_a_runs_files_is_not_overwritten() {
    for file in ["metrics.csv", "best.safetensors", "last.safetensors", "resume.safetensors"] {
        let out = temp_dir(&format!("holds-{file}"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(file), b"what the user had").unwrap();
        let (o, _) = watched(&["train", "--data", SUBSET, "--epochs", "1", "--out", out.to_str().unwrap()], 60);
        assert_clean_failure(&o, &["already holds a run's files", file, "--resume"]);
        assert_eq!(std::fs::read(out.join(file)).unwrap(), b"what the user had");
    }
}

#[test]
fn a_second_train_on_a_folder_in_use_stops_at_once() {
    let out = temp_dir("in-use");
    let _held = gpu_siamese::train::lock_run_folder(&out).unwrap();
    let (o, _) = watched(&["train", "--data", SUBSET, "--epochs", "1", "--out", out.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["is being written by another train", &format!("process {}", std::process::id())]);
    assert!(gpu_siamese::train::run_files_in(&out).is_empty(), "nothing written");
}

#[test]
fn a_failed_write_leaves_the_last_complete_set() {
    let dir = temp_dir("write-set");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["metrics.csv", "best.safetensors"] {
        std::fs::write(dir.join(name), b"epoch 1").unwrap();
    }
    // The third file cannot be written (its folder does not exist, as a full disk fails a write).
    let files = vec![
        (dir.join("metrics.csv"), b"epoch 2".to_vec()),
        (dir.join("best.safetensors"), b"epoch 2".to_vec()),
        (dir.join("gone").join("last.safetensors"), b"epoch 2".to_vec()),
    ];
    let (path, _) = write_set(&files).unwrap_err();
    assert_eq!(path, dir.join("gone").join("last.safetensors"));
    for name in ["metrics.csv", "best.safetensors"] {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), b"epoch 1", "{name} as the last complete set left it");
    }
    let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "no temporaries left taking space: {names:?}");
}

fn small_run(out: &Path, epochs: &str) {
    let (o, _) = watched(
        &["train", "--data", SUBSET, "--train-limit", "300", "--test-limit", "100", "--batch-size", "32", "--epochs", epochs, "--out", out.to_str().unwrap()],
        300,
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_run_stopped_between_its_epoch_files_resumes_to_the_same_bits() {
    let (one, two, mixed) = (temp_dir("set-one"), temp_dir("set-two"), temp_dir("set-mixed"));
    small_run(&one, "1");
    small_run(&two, "2");
    // Stopped after epoch 2's metrics.csv and best.safetensors were renamed into place, before its
    // last and resume files: the folder mixes the two epochs.
    std::fs::create_dir_all(&mixed).unwrap();
    for file in ["last.safetensors", "resume.safetensors"] {
        std::fs::copy(one.join(file), mixed.join(file)).unwrap();
    }
    for file in ["metrics.csv", "best.safetensors"] {
        std::fs::copy(two.join(file), mixed.join(file)).unwrap();
    }
    let (o, _) = watched(&["train", "--resume", mixed.to_str().unwrap(), "--epochs", "2"], 300);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("after epoch 1"), "the resume file says which epoch is complete");
    for file in ["best.safetensors", "last.safetensors", "resume.safetensors"] {
        assert!(std::fs::read(mixed.join(file)).unwrap() == std::fs::read(two.join(file)).unwrap(), "{file}: the uninterrupted run's bits");
    }
    let rows = |dir: &Path| std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect::<Vec<_>>();
    assert_eq!(rows(&mixed), rows(&two));
}

/// `dir` (made) holding model.safetensors, a checkpoint of `arch` on 28x28 grayscale pictures; its path.
fn model_in(dir: &Path, arch: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("model.safetensors");
    std::fs::write(&path, checkpoint_bytes(arch, [28, 28, 1], false)).unwrap();
    path
}

/// A checkpoint of `arch` for `input`, with freshly drawn weights, as `train` writes one.
fn checkpoint_bytes(arch: &str, input: [usize; 3], poison: bool) -> Vec<u8> {
    let spec: TowerSpec = arch.parse().unwrap();
    let plan = Plan::new(&spec, InputShape { h: input[0], w: input[1], c: input[2] }, 2, 0).unwrap();
    let mut params = glorot_uniform(&plan, 0);
    if poison {
        params[plan.param_tensors()[0].range.start] = f32::NAN;
    }
    let state = vec![0.0; plan.state_len];
    encode(&plan, &params, &state, &[], &config(arch, input), &Progress { epoch: 1, step: 1, loss: 0.2, val_loss: 0.2, val_acc: 0.7, threshold: 0.5 })
}

fn config(arch: &str, input: [usize; 3]) -> TrainConfig {
    serde_json::from_value(serde_json::json!({
        "arch": arch, "input": input, "epochs": 1, "batch_size": 64, "learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999,
        "epsilon": 1e-7, "margin": 1.0, "seed": 0, "resample_pairs": false, "train_limit": null, "test_limit": null
    }))
    .unwrap()
}

/// A checkpoint whose metadata claims `arch` and `input` but holds no tensors: what a crafted file can
/// say before anything is checked against it.
fn crafted_header(arch: &str, input: [usize; 3]) -> Vec<u8> {
    let metadata = serde_json::json!({
        "format": "gpu-siamese checkpoint 1",
        "arch": arch,
        "config": serde_json::to_string(&config(arch, input)).unwrap(),
        "progress": r#"{"epoch":1,"step":1,"loss":0.2,"val_loss":0.2,"val_acc":0.7,"threshold":0.5}"#,
        "threshold": "0.5",
    });
    let mut header = serde_json::to_string(&serde_json::json!({ "__metadata__": metadata })).unwrap().into_bytes();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes
}

#[test]
fn crafted_checkpoints_are_refused_before_anything_large_is_made() {
    let dir = temp_dir("crafted");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    grey_png(&a, 10);
    grey_png(&b, 90);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("huge-dense", crafted_header("conv(8,2),gap,dense(4000000000)", [28, 28, 1]), vec!["dense(4000000000)", "from 1 to 16777216"]),
        ("huge-params", crafted_header("flatten,dense(16777216)", [28, 28, 1]), vec!["parameters", "2 GiB"]),
        ("huge-input", crafted_header("conv(8,2),gap,dense(4)", [100000, 100000, 1]), vec!["100000x100000x1", "values per image"]),
        ("nan", checkpoint_bytes("conv(8,2),gap,dense(4)", [28, 28, 1], true), vec!["layer0.kernel", "NaN", "damaged"]),
    ];
    for (name, bytes, wanted) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        for command in [vec!["compare", a.to_str().unwrap(), b.to_str().unwrap()], vec!["embed", "--images", dir.to_str().unwrap(), "--out"]] {
            let mut args = command.clone();
            // Outside the folder embedded: an output inside a folder read whole is refused first.
            let npy = dir.with_extension("npy");
            if command[0] == "embed" {
                args.push(npy.to_str().unwrap());
            }
            args.extend(["--checkpoint", path.to_str().unwrap()]);
            let (o, peak) = watched(&args, 60);
            assert_clean_failure(&o, &wanted);
            assert!(peak < GIB, "{name}: {} MiB", peak >> 20);
        }
    }
    // A thousand parameter-free layers cost nothing per layer: comparing two pictures stays small.
    let deep = format!("conv(8,2),{}gap,dense(4)", "dropout(0.1),".repeat(1000));
    let path = dir.join("deep.safetensors");
    std::fs::write(&path, checkpoint_bytes(&deep, [28, 28, 1], false)).unwrap();
    let (o, peak) = watched(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--checkpoint", path.to_str().unwrap()], 120);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(peak < GIB, "{} MiB", peak >> 20);
}

#[test]
fn towers_and_images_beyond_any_adapter_are_refused_with_the_figure() {
    let (o, peak) = watched(&["bench", "--arch", "flatten,dense(16777216)", "--steps", "1", "--repeats", "1", "--warmup", "0", "--no-kernels"], 60);
    assert_clean_failure(&o, &["parameters", "2 GiB"]);
    assert!(peak < GIB);
    let (o, peak) = watched(&["bench", "--image-size", "4096", "--batch-size", "1", "--steps", "1", "--repeats", "1", "--warmup", "0", "--no-kernels"], 120);
    assert_clean_failure(&o, &["4096x4096x1", "MiB"]);
    assert!(peak < 2 * GIB, "{} MiB", peak >> 20);
    let (o, _) = watched(&["bench", "--channels", "2"], 60);
    assert_clean_failure(&o, &["--channels 2"]);
    // Pictures made into a size no tower takes are refused before any is decoded.
    let out = temp_dir("huge-pictures");
    let (o, peak) = watched(&["train", "--data", EXAMPLE, "--image-size", "4096", "--channels", "3", "--out", out.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["4096x4096x3", "MiB"]);
    assert!(peak < GIB);
}

/// An IDX file whose header promises `claimed` items of `item` bytes, gzip-compressed, holding only the
/// first `held` of them (then ending): a decompression bomb that is also a lie.
fn bomb(path: &Path, dims: &[u32], held: usize) {
    let item: usize = dims[1..].iter().map(|&d| d as usize).product();
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    encoder.write_all(&[0, 0, 8, dims.len() as u8]).unwrap();
    for d in dims {
        encoder.write_all(&d.to_be_bytes()).unwrap();
    }
    let data: Vec<u8> = (0..held * item).map(|i| if dims.len() == 1 { (i % 10) as u8 } else { (i % 251) as u8 }).collect();
    encoder.write_all(&data).unwrap();
    encoder.finish().unwrap();
}

#[test]
fn idx_reading_stops_at_the_limit() {
    let dir = temp_dir("bomb");
    std::fs::create_dir_all(&dir).unwrap();
    for split in ["train", "t10k"] {
        bomb(&dir.join(format!("{split}-images-idx3-ubyte.gz")), &[5_400_000, 28, 28], 400);
        bomb(&dir.join(format!("{split}-labels-idx1-ubyte.gz")), &[5_400_000], 400);
    }
    // The first 300 are read, and nothing after them: the file's lie (it ends after 400) goes unseen.
    let images = read_idx_prefix(&dir.join("train-images-idx3-ubyte.gz"), Some(300)).unwrap();
    assert_eq!(images.dims, [300, 28, 28]);
    assert_eq!(images.data.len(), 300 * 784);
    // Read whole, the lie is found, and memory grew only with what arrived.
    let e = idx_dataset(&dir).err().unwrap();
    assert!(e.contains("truncated"), "{e}");
    let out = temp_dir("bomb-run");
    let (o, peak) = watched(
        &["train", "--data", dir.to_str().unwrap(), "--train-limit", "300", "--test-limit", "100", "--epochs", "1", "--batch-size", "32", "--out", out.to_str().unwrap()],
        300,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(peak < GIB, "{} MiB", peak >> 20);
}

#[test]
fn odd_files_and_values_get_clear_errors() {
    let dir = temp_dir("odd");
    std::fs::create_dir_all(&dir).unwrap();
    // One stray label makes no classes out of nothing.
    for name in ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(Path::new(SUBSET).join(name), dir.join(name)).unwrap();
    }
    let mut labels = gpu_siamese::data::read_idx(&Path::new(SUBSET).join("train-labels-idx1-ubyte.gz")).unwrap();
    labels.data[7] = 255;
    let mut raw = vec![0, 0, 8, 1];
    raw.extend((labels.dims[0] as u32).to_be_bytes());
    raw.extend(&labels.data);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &raw).unwrap();
    let e = idx_dataset(&dir).err().unwrap();
    assert!(e.contains("label 255") && e.contains("train image 7"), "{e}");

    // Both a compressed and a plain copy of a file: which is read is said.
    std::fs::copy(Path::new(SUBSET).join("train-labels-idx1-ubyte.gz"), dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    let dataset = idx_dataset(&dir).unwrap();
    assert!(dataset.notes.iter().any(|n| n.contains("both train-labels-idx1-ubyte and train-labels-idx1-ubyte.gz")), "{:?}", dataset.notes);

    // A GPU_SIAMESE_DATA that names no folder is said so, not skipped for the default dataset.
    let o = Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
        .env("GPU_SIAMESE_DATA", dir.join("no such folder"))
        .args(["train", "--epochs", "1", "--out", temp_dir("odd-env").to_str().unwrap()])
        .output()
        .unwrap();
    assert_clean_failure(&o, &["GPU_SIAMESE_DATA=", "no such folder"]);

    // Flags that name the value that is wrong.
    let out = temp_dir("odd-out");
    let (o, _) = watched(&["train", "--data", SUBSET, "--sampler", "pk", "--images-per-class", "0", "--out", out.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["--images-per-class 0"]);
    let (o, _) = watched(&["train", "--data", SUBSET, "--classes-per-batch", "1", "--out", out.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["--classes-per-batch 1"]);
    let fake = dir.join("model.safetensors");
    std::fs::write(&fake, checkpoint_bytes("conv(8,2),gap,dense(4)", [28, 28, 1], false)).unwrap();
    let (o, _) = watched(&["evaluate", "--checkpoint", fake.to_str().unwrap(), "--episodes", "1000000000"], 60);
    assert_clean_failure(&o, &["--episodes 1000000000"]);
    // A results file that cannot be written is found before the evaluation, not after it.
    let (o, _) = watched(&["evaluate", "--checkpoint", fake.to_str().unwrap(), "--json", dir.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["--json", "a folder"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("ROC"), "nothing was evaluated");

    // A list of pairs: its results never replace it; a byte-order mark is not part of the first path;
    // an empty field and a missing picture are named by their line.
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    grey_png(&a, 10);
    grey_png(&b, 90);
    let list = dir.join("pairs.csv");
    std::fs::write(&list, "\u{feff}a.png,b.png\nb.png,a.png\n").unwrap();
    let (o, _) = watched(&["compare", "--pairs", list.to_str().unwrap(), "--out", list.to_str().unwrap(), "--checkpoint", fake.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["is the list of pairs (--pairs"]);
    assert_eq!(std::fs::read_to_string(&list).unwrap(), "\u{feff}a.png,b.png\nb.png,a.png\n");
    let (o, _) = watched(&["compare", "--pairs", list.to_str().unwrap(), "--checkpoint", fake.to_str().unwrap()], 60);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3, "a header and two pairs");
    std::fs::write(&list, "a.png,b.png\na.png,\n").unwrap();
    let (o, _) = watched(&["compare", "--pairs", list.to_str().unwrap(), "--checkpoint", fake.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["line 2", "second path is empty"]);
    std::fs::write(&list, "a.png,b.png\n\n# a comment\nmissing.png,a.png\n").unwrap();
    let (o, _) = watched(&["compare", "--pairs", list.to_str().unwrap(), "--checkpoint", fake.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["line 4", "missing.png"]);
}

/// A usage error clap reports (exit status 2) or one the program reports (1), never a crash.
fn assert_refused(o: &Output, wanted: &[&str]) {
    assert!(matches!(o.status.code(), Some(1) | Some(2)), "a reported error, not a crash or success: {:?} {}", o.status, stderr(o));
    for w in wanted {
        assert!(stderr(o).contains(w), "the error says {w:?}: {}", stderr(o));
    }
}

#[test]
fn a_tuning_cache_entry_that_is_no_variant_of_its_shape_is_measured_again() {
    // Tuned once into a fresh cache; then every entry edited to a tile of another shape, to zero rows,
    // to a million rows, and the file to garbage: each run says so, measures again and trains to the
    // same bits (every variant gives the same bits).
    let dir = temp_dir("tuning");
    let cache = dir.join("cache");
    let tuned = |name: &str| {
        let out = dir.join(name);
        let args = ["train", "--data", SUBSET, "--train-limit", "100", "--test-limit", "50", "--batch-size", "16", "--epochs", "1", "--out", out.to_str().unwrap()];
        let (o, peak) = watched_with(&args, 300, &[("GPU_SIAMESE_NO_TUNE", None), ("XDG_CACHE_HOME", Some(cache.to_str().unwrap()))]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(peak < GIB, "{} MiB", peak >> 20);
        (stderr(&o), std::fs::read(out.join("last.safetensors")).unwrap())
    };
    let (said, reference) = tuned("fresh");
    assert!(said.contains("tuning the convolution kernels for this adapter"), "the first tuning says it is tuning: {said}");
    let file = cache.join("gpu-siamese").join("tuning.json");
    let good: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let adapters = good.as_object().unwrap();
    assert!(adapters.keys().all(|k| k.starts_with(&format!("gpu-siamese {} engine ", env!("CARGO_PKG_VERSION")))), "the cache names the program's version and its kernels: {adapters:?}");
    for (rows, col_quads) in [(3, 7), (0, 4), (1_000_000, 1)] {
        let mut bad = good.clone();
        for shapes in bad.as_object_mut().unwrap().values_mut() {
            for variant in shapes.as_object_mut().unwrap().values_mut() {
                variant["rows"] = rows.into();
                variant["col_quads"] = col_quads.into();
            }
        }
        std::fs::write(&file, serde_json::to_string(&bad).unwrap()).unwrap();
        let (said, weights) = tuned(&format!("rows-{rows}"));
        assert!(said.contains("not a variant of that shape on this adapter; measuring again"), "rows {rows}: {said}");
        assert!(weights == reference, "rows {rows}, col_quads {col_quads}: the same bits as the fresh cache's");
    }
    std::fs::write(&file, "{ not json").unwrap();
    let (said, weights) = tuned("garbage");
    assert!(said.contains("is unreadable") && weights == reference, "{said}");
}

/// A PNG whose header claims `w` x `h` pixels, with almost no data: what a small hostile file can say.
fn claimed_png(path: &Path, w: u32, h: u32) {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        [&(data.len() as u32).to_be_bytes()[..], kind, data, &crc.sum().to_be_bytes()].concat()
    };
    let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 0, 0, 0, 0]].concat();
    let bytes = [&b"\x89PNG\r\n\x1a\n"[..], &chunk(b"IHDR", &ihdr), &chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]), &chunk(b"IEND", &[])].concat();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn only_regular_files_of_a_pictures_size_are_read() {
    // In a class folder, each in turn: a FIFO named like a picture (it would block forever), a link to
    // /dev/zero (it never ends), a sparse 3 GB file, a small PNG claiming 20000x20000 pixels. Train,
    // dedup and compare each stop naming the file, quickly and small.
    let dir = temp_dir("special");
    for class in ["a", "b"] {
        std::fs::create_dir_all(dir.join("pics").join(class)).unwrap();
        for i in 0..4 {
            grey_png(&dir.join("pics").join(class).join(format!("{i}.png")), 20 + 60 * i as u8);
        }
    }
    let checkpoint = model_in(&dir, "conv(8,2),gap,dense(4)");
    let pics = dir.join("pics");
    let odd = pics.join("b").join("odd.png");
    let plain = pics.join("a").join("0.png");
    let makers: [(&str, &dyn Fn(), &str); 4] = [
        ("fifo", &|| assert!(Command::new("mkfifo").arg(&odd).status().unwrap().success()), "is a named pipe (FIFO), not a regular file"),
        ("device", &|| std::os::unix::fs::symlink("/dev/zero", &odd).unwrap(), "is a character device, not a regular file"),
        ("sparse", &|| std::fs::File::create(&odd).unwrap().set_len(3 << 30).unwrap(), "more than a picture may hold"),
        ("huge", &|| claimed_png(&odd, 20000, 20000), "20000x20000 pixels, more than the 40 megapixels a picture may have (GPU_SIAMESE_MAX_PIXELS="),
    ];
    for (name, make, said) in makers {
        let _ = std::fs::remove_file(&odd);
        make();
        let out = dir.join(format!("run-{name}"));
        let commands: [Vec<&str>; 3] = [
            vec!["train", "--data", pics.to_str().unwrap(), "--epochs", "1", "--batch-size", "4", "--out", out.to_str().unwrap()],
            vec!["dedup", pics.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap(), "--out", out.to_str().unwrap()],
            vec!["compare", odd.to_str().unwrap(), plain.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap()],
        ];
        for args in commands {
            // Refused, or (train and dedup, which go on without a picture they cannot read) noted.
            let (o, peak) = watched(&args, 60);
            let told = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
            assert!(matches!(o.status.code(), Some(0) | Some(1)), "{name} {}: no crash: {told}", args[0]);
            assert!(told.contains("odd.png") && told.contains(said), "{name} {}: says {said:?}: {told}", args[0]);
            assert!(peak < GIB, "{name} {}: {} MiB", args[0], peak >> 20);
        }
    }
    let _ = std::fs::remove_file(&odd);
    // A list of pairs that is a device, or larger than any list, is refused before it is read.
    let (o, peak) = watched(&["compare", "--pairs", "/dev/zero", "--checkpoint", checkpoint.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["/dev/zero", "is a character device"]);
    assert!(peak < GIB);
    let list = dir.join("pairs.csv");
    std::fs::File::create(&list).unwrap().set_len(3 << 30).unwrap();
    let (o, peak) = watched(&["compare", "--pairs", list.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["pairs.csv", "more than a pairs list may hold"]);
    assert!(peak < GIB);
    // The pixel budget can be raised, and says how: past it, the picture is decoded.
    claimed_png(&odd, 9000, 5000);
    let (o, _) = watched_with(&["compare", odd.to_str().unwrap(), plain.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap()], 60, &[("GPU_SIAMESE_MAX_PIXELS", Some("1000000"))]);
    assert_clean_failure(&o, &["9000x5000 pixels, more than the 1 megapixels", "GPU_SIAMESE_MAX_PIXELS=1000000 raises it"]);
}

#[test]
fn values_no_run_can_use_are_refused_and_odd_ones_noted() {
    let dir = temp_dir("values");
    let checkpoint = model_in(&dir, "conv(8,2),gap,dense(4)");
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    grey_png(&a, 10);
    grey_png(&b, 90);
    let ck = checkpoint.to_str().unwrap();
    for threshold in ["--threshold=nan", "--threshold=-5", "--threshold=inf"] {
        let (o, _) = watched(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--checkpoint", ck, threshold], 60);
        assert_refused(&o, &["--threshold", "a distance, 0 or more"]);
        let (o, _) = watched(&["search", a.to_str().unwrap(), "--gallery", b.to_str().unwrap(), "--checkpoint", ck, threshold], 60);
        assert_refused(&o, &["a distance, 0 or more"]);
        let (o, _) = watched(&["dedup", dir.to_str().unwrap(), "--checkpoint", ck, threshold], 60);
        assert_refused(&o, &["a distance, 0 or more"]);
    }
    let out = dir.join("run");
    let train = |extra: &[&str]| {
        let args = [&["train", "--data", SUBSET, "--train-limit", "40", "--test-limit", "20", "--batch-size", "16", "--out", out.to_str().unwrap()][..], extra].concat();
        watched(&args, 120).0
    };
    assert_clean_failure(&train(&["--shift", "1000"]), &["--shift 1000", "below the picture's size (28x28)"]);
    for (arch, said) in [
        ("conv(16,3,same,valid),gap,dense(4)", "the padding is given twice ('same' and 'valid')"),
        ("conv(16,3,stride=2,stride=3),gap,dense(4)", "the stride is given twice"),
        ("conv(16,3,relu,linear),gap,dense(4)", "the activation is given twice"),
        ("conv(16,99),gap,dense(4)", "a 99x99 'same' kernel does not fit a 28x28 input"),
    ] {
        assert_clean_failure(&train(&["--arch", arch]), &[said]);
    }
    let (o, _) = watched(&["bench", "--steps", "0"], 60);
    assert_refused(&o, &["--steps", "0"]);
    // A warm-up longer than the run is allowed, and noted.
    let o = train(&["--epochs", "1", "--warmup-epochs", "1e9"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("note: --warmup-epochs 1000000000 is more than the run's 1 epochs"));
}

#[test]
fn a_run_whose_data_folder_is_gone_is_not_scored_on_other_data() {
    let dir = temp_dir("moved");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for entry in std::fs::read_dir(SUBSET).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), data.join(entry.file_name())).unwrap();
    }
    let out = dir.join("run");
    let (o, _) = watched(&["train", "--data", data.to_str().unwrap(), "--train-limit", "60", "--test-limit", "40", "--batch-size", "16", "--epochs", "1", "--out", out.to_str().unwrap()], 120);
    assert!(o.status.success(), "{}", stderr(&o));
    let moved = dir.join("moved");
    std::fs::rename(&data, &moved).unwrap();
    let best = out.join("best.safetensors");
    let (o, _) = watched(&["evaluate", "--checkpoint", best.to_str().unwrap(), "--limit", "40"], 60);
    assert_clean_failure(&o, &["data", "which is no longer there", "--data DIR"]);
    let (o, _) = watched(&["train", "--resume", out.to_str().unwrap(), "--epochs", "2"], 60);
    assert_clean_failure(&o, &["which is no longer there", "--data DIR"]);
    let (o, _) = watched(&["evaluate", "--checkpoint", best.to_str().unwrap(), "--limit", "40", "--data", moved.to_str().unwrap()], 120);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_full_disk_in_the_first_epoch_says_nothing_was_saved() {
    // The run folder on a 64 KiB filesystem of its own (a tmpfs in a private mount namespace, which
    // needs no privileges): the first epoch's files do not fit. There is no epoch to resume from, and
    // the message says so.
    let out = temp_dir("full");
    std::fs::create_dir_all(&out).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=64k gpu-siamese-full '{out}' && exec '{bin}' train --data '{SUBSET}' --train-limit 40 --test-limit 20 --batch-size 16 --epochs 2 --out '{out}'",
        out = out.display(),
        bin = env!("CARGO_BIN_EXE_gpu-siamese")
    );
    let o = Command::new("unshare").args(["--user", "--map-root-user", "--mount", "sh", "-c", &script]).env("GPU_SIAMESE_NO_TUNE", "1").output().unwrap();
    assert_clean_failure(&o, &["cannot save epoch 1", "No space left", "Nothing of this run was saved", "run the same command again"]);
    assert!(!stderr(&o).contains("--resume"), "nothing to resume: {}", stderr(&o));
}

#[test]
fn search_and_embed_write_their_files_whole_and_small() {
    // 20,000 queries of a 48-value embedding against 2,000, k 64: 1.28 million results, streamed to CSV
    // and JSON rather than built in memory. Precision@1 leaves each query's own source out.
    let dir = temp_dir("stream");
    let checkpoint = model_in(&dir, "conv(8,2),gap,dense(48)");
    let set = |name: &str, count: usize, labels: usize| {
        let vectors: Vec<f32> = (0..count * 48).map(|i| ((i as u32).wrapping_mul(2654435761) >> 8) as f32 / 16777216.0).collect();
        std::fs::write(dir.join(format!("{name}.npy")), gpu_siamese::npy::npy_f32(&vectors, &[count, 48])).unwrap();
        let index: String = std::iter::once("row,source,label\n".to_string()).chain((0..count).map(|i| format!("{i},item{i},class{}\n", i % labels))).collect();
        std::fs::write(dir.join(format!("{name}.csv")), index).unwrap();
    };
    set("q", 20_000, 20_000);
    set("g", 2_000, 20_000);
    let (json, csv) = (dir.join("r.json"), dir.join("r.csv"));
    let (o, peak) = watched(&["search", dir.join("q.npy").to_str().unwrap(), "--gallery", dir.join("g.npy").to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap(), "--k", "64", "--json", json.to_str().unwrap(), "--csv", csv.to_str().unwrap(), "--show", "0"], 300);
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!("search of 1.28 million results: {} MiB at most", peak >> 20);
    assert!(peak < 600 << 20, "streamed: {} MiB", peak >> 20);
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(written["results"].as_array().unwrap().len(), 20_000);
    assert_eq!(written["results"][7]["matches"].as_array().unwrap().len(), 64);
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 1 + 20_000 * 64);
    // ~300 MB between them: not left behind.
    std::fs::remove_file(&json).unwrap();
    std::fs::remove_file(&csv).unwrap();
    // The gallery searched for itself: every item is its own nearest, and its only one of its class, so
    // precision@1 over the others is 0, not the 1.0 the queries themselves would give.
    set("self", 500, 500);
    let s = dir.join("self.npy");
    let (o, _) = watched(&["search", s.to_str().unwrap(), "--gallery", s.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap(), "--k", "3", "--show", "0"], 120);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("precision@1 (the nearest item other than the query itself has the query's label): 0.0000"), "{text}");

    // embed's two files are one set: where the index cannot be put in place, the .npy is not replaced.
    let pics = dir.join("pics");
    std::fs::create_dir_all(pics.join("c")).unwrap();
    for i in 0..3 {
        grey_png(&pics.join("c").join(format!("{i}.png")), 30 * i as u8);
    }
    let npy = dir.join("e.npy");
    std::fs::write(&npy, b"the old embeddings").unwrap();
    std::fs::create_dir_all(dir.join("e.csv")).unwrap();
    let (o, _) = watched(&["embed", "--checkpoint", checkpoint.to_str().unwrap(), "--images", pics.to_str().unwrap(), "--out", npy.to_str().unwrap()], 60);
    assert_clean_failure(&o, &["cannot write", "e.csv"]);
    assert_eq!(std::fs::read(&npy).unwrap(), b"the old embeddings", "the .npy is not replaced without its index");
    let left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".tmp")).collect();
    assert!(left.is_empty(), "no temporaries left: {left:?}");
}

#[test]
fn the_example_maker_never_deletes_a_folder_of_the_users() {
    // Built beside the test binaries by `cargo test`.
    let maker = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples").join("make_example_folders");
    assert!(maker.exists(), "{} is built by cargo test", maker.display());
    let dir = temp_dir("maker");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mine.txt"), b"keep me").unwrap();
    let o = Command::new(&maker).args(["--out", dir.to_str().unwrap()]).output().unwrap();
    assert_clean_failure(&o, &["holds files already", "new or empty folder"]);
    assert_eq!(std::fs::read(dir.join("mine.txt")).unwrap(), b"keep me");
    let o = Command::new(&maker).arg("--out").output().unwrap();
    assert_clean_failure(&o, &["--out needs a value"]);
    let o = Command::new(&maker).args(["--out", dir.join("new").to_str().unwrap(), "--per-class", "2"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(dir.join("new")).unwrap().count(), 6, "six class folders");
}

