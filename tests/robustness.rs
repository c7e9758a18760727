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
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
        .env("GPU_SIAMESE_NO_TUNE", "1")
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
