//! Nothing a command reads is ever written over: each command with each of its inputs given as its own
//! output is refused before any work, naming both roles, and every file it could have touched keeps its
//! bytes. A checkpoint under another name is kept too, and so is a special file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fashion-mnist-small");

fn gpu_siamese(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-siamese")).env("GPU_SIAMESE_NO_TUNE", "1").args(args).output().unwrap()
}

/// A folder of what the commands read, made once: a trained run and its checkpoint `C.safetensors`, a
/// folder of pictures `pics/` (three classes), two pictures, a list of pairs, embeddings of the pictures
/// as queries and gallery (`q.npy`, `g.npy` with their `.csv` indexes), and a copy of the IDX subset.
fn workspace() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gpu-siamese-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pics")).unwrap();
        let run = dir.join("run");
        let args = ["train", "--data", SUBSET, "--train-limit", "100", "--test-limit", "60", "--epochs", "1", "--batch-size", "16", "--out"];
        let o = gpu_siamese(&args.iter().map(|s| s.to_string()).chain([run.display().to_string()]).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::copy(run.join("best.safetensors"), dir.join("C.safetensors")).unwrap();
        for (class, shade) in [("boot", 40u8), ("shirt", 140), ("bag", 230)] {
            std::fs::create_dir_all(dir.join("pics").join(class)).unwrap();
            for i in 0..3u8 {
                let picture = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([shade.wrapping_add((x as u8 * 7) ^ (y as u8 * (i + 3)))]));
                picture.save(dir.join("pics").join(class).join(format!("{i}.png"))).unwrap();
            }
        }
        std::fs::copy(dir.join("pics/boot/0.png"), dir.join("a.png")).unwrap();
        std::fs::copy(dir.join("pics/bag/1.png"), dir.join("b.png")).unwrap();
        std::fs::write(dir.join("pairs.csv"), "a,b\na.png,b.png\n").unwrap();
        let embed = |out: &str| {
            let o = gpu_siamese(&command(&dir, &["embed", "--checkpoint", "C.safetensors", "--images", "pics", "--out", out]));
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        embed("q.npy");
        embed("g.npy");
        std::fs::create_dir_all(dir.join("idx")).unwrap();
        for entry in std::fs::read_dir(SUBSET).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join("idx").join(entry.file_name())).unwrap();
        }
        dir
    })
}

/// A command line whose file arguments are workspace files by relative name: every argument but the
/// command, options and numbers is made absolute under `dir`.
fn command(dir: &Path, args: &[&str]) -> Vec<String> {
    args.iter()
        .enumerate()
        .map(|(i, arg)| {
            let file = i > 0 && !arg.starts_with('-') && !arg.starts_with('/') && arg.parse::<f64>().is_err();
            if file {
                dir.join(arg).display().to_string()
            } else {
                arg.to_string()
            }
        })
        .collect()
}

/// Every file under `dir` with its bytes (folders as names only).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                stack.push(path.clone());
                files.insert(path, None);
            } else if kind.is_file() {
                files.insert(path.clone(), Some(std::fs::read(&path).unwrap()));
            } else {
                files.insert(path, None);
            }
        }
    }
    files
}

/// The tests here share one workspace and compare it before and after each command: one at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `args` (workspace files by relative name) and asserts it exits 1 before touching anything,
/// with an error holding every one of `said`.
fn refused(args: &[&str], said: &[&str]) {
    let dir = workspace();
    let before = snapshot(dir);
    let o = gpu_siamese(&command(dir, args));
    let stderr = String::from_utf8_lossy(&o.stderr).replace(&format!("{}/", dir.display()), "");
    assert_eq!(o.status.code(), Some(1), "{args:?} should be refused:\n{stderr}{}", String::from_utf8_lossy(&o.stdout));
    for words in said {
        assert!(stderr.contains(words), "{args:?}: the error should say {words:?}:\n{stderr}");
    }
    let after = snapshot(dir);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "{args:?}: files came or went");
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{args:?}: {} changed", path.display());
    }
}

#[test]
fn each_command_refuses_each_of_its_inputs_as_its_output() {
    let _one = one_at_a_time();
    const C: &str = "C.safetensors";
    let rows: &[(&[&str], &[&str])] = &[
        // export
        (&["export", "--checkpoint", C, "--onnx", C], &["--onnx C.safetensors is the checkpoint (--checkpoint C.safetensors)", "choose another file"]),
        (&["export", "--checkpoint", C, "--onnx", "t.onnx", "--pair", C], &["--pair C.safetensors is the checkpoint"]),
        (&["export", "--checkpoint", C, "--onnx", "s.onnx", "--pair", "s.onnx"], &["--pair s.onnx is also --onnx s.onnx", "choose two files"]),
        // embed, and its index beside the .npy
        (&["embed", "--checkpoint", C, "--images", "pics", "--out", C], &["--out C.safetensors is the checkpoint"]),
        (&["embed", "--checkpoint", C, "--images", "a.png", "--out", "a.png"], &["--out a.png is the pictures embedded (--images a.png)"]),
        (&["embed", "--checkpoint", C, "--images", "pics", "--out", "pics/e.npy"], &["--out pics/e.npy is inside the pictures embedded (--images pics)", "read whole"]),
        (&["embed", "--checkpoint", C, "--images", "idx", "--out", "idx/t10k-images-idx3-ubyte.gz"], &["is inside the pictures embedded (--images idx)"]),
        // search: queries, gallery, their indexes, the checkpoint
        (&["search", "q.npy", "--gallery", "g.npy", "--checkpoint", C, "--csv", "q.csv"], &["--csv q.csv is the index of the queries q.npy"]),
        (&["search", "q.npy", "--gallery", "g.npy", "--checkpoint", C, "--json", "q.npy"], &["--json q.npy is the queries q.npy"]),
        (&["search", "q.npy", "--gallery", "g.npy", "--checkpoint", C, "--csv", "g.csv"], &["--csv g.csv is the index of the gallery g.npy"]),
        (&["search", "q.npy", "--gallery", "g.npy", "--checkpoint", C, "--json", "g.npy"], &["--json g.npy is the gallery g.npy"]),
        (&["search", "q.npy", "--gallery", "g.npy", "--checkpoint", C, "--json", C], &["--json C.safetensors is the checkpoint"]),
        (&["search", "a.png", "--gallery", "pics", "--checkpoint", C, "--csv", "a.png"], &["--csv a.png is the queries a.png"]),
        (&["search", "a.png", "--gallery", "pics", "--checkpoint", C, "--csv", "pics/found.csv"], &["is inside the gallery pics"]),
        (&["search", "q.npy", "--gallery", "g.npy", "--checkpoint", C, "--csv", "r.csv", "--json", "r.csv"], &["--json r.csv is also --csv r.csv"]),
        // evaluate
        (&["evaluate", "--checkpoint", C, "--json", C], &["--json C.safetensors is the checkpoint"]),
        (&["evaluate", "--checkpoint", C, "--data", "idx", "--json", "idx/train-labels-idx1-ubyte.gz"], &["is inside the data (--data idx)"]),
        // compare: the list, the pictures it lists, the two pictures, the checkpoint
        (&["compare", "--checkpoint", C, "--pairs", "pairs.csv", "--out", "pairs.csv"], &["--out pairs.csv is the list of pairs (--pairs pairs.csv)"]),
        (&["compare", "--checkpoint", C, "--pairs", "pairs.csv", "--out", "b.png"], &["--out b.png is a picture pairs.csv lists (line 2)"]),
        (&["compare", "--checkpoint", C, "--pairs", "pairs.csv", "--out", C], &["--out C.safetensors is the checkpoint"]),
        // dedup's folder, report's folder, train's run folder
        (&["dedup", "pics", "--checkpoint", C, "--out", "pics/dups"], &["is inside the folder of pictures pics", "choose a place outside it"]),
        (&["dedup", "pics", "--checkpoint", C, "--out", "pics"], &["is inside the folder of pictures pics"]),
        (&["report", "run", "--checkpoint", "rep/roc.png", "--out", "rep"], &["--out rep (its roc.png) is the checkpoint (--checkpoint rep/roc.png)"]),
        (&["report", "run", "--checkpoint", C, "--data", "idx", "--out", "idx"], &["is inside the data (--data idx)"]),
        (&["train", "--data", "pics", "--epochs", "1", "--out", "pics/run"], &["--out pics/run is inside the data (--data pics)"]),
        (&["train", "--data", "pics", "--epochs", "1", "--out", "pics"], &["--out pics is the data (--data pics)", "choose another folder"]),
    ];
    // A checkpoint kept among a report's picture names.
    std::fs::create_dir_all(workspace().join("rep")).unwrap();
    std::fs::copy(workspace().join("C.safetensors"), workspace().join("rep/roc.png")).unwrap();
    for (args, said) in rows {
        refused(args, said);
    }
}

#[test]
fn an_output_that_is_an_existing_checkpoint_under_another_name_is_kept() {
    let _one = one_at_a_time();
    let dir = workspace();
    // Copies of the checkpoint under names no command would guess, and a hard link to it.
    for name in ["K.json", "K.npy", "K.onnx", "K.csv"] {
        std::fs::copy(dir.join("C.safetensors"), dir.join(name)).unwrap();
    }
    let _ = std::fs::remove_file(dir.join("H.onnx"));
    std::fs::hard_link(dir.join("C.safetensors"), dir.join("H.onnx")).unwrap();
    std::fs::create_dir_all(dir.join("sheet")).unwrap();
    std::fs::copy(dir.join("C.safetensors"), dir.join("sheet/groups.png")).unwrap();
    const C: &str = "C.safetensors";
    refused(&["evaluate", "--checkpoint", C, "--json", "K.json"], &["--json K.json holds a gpu-siamese checkpoint"]);
    refused(&["embed", "--checkpoint", C, "--images", "pics", "--out", "K.npy"], &["--out K.npy holds a gpu-siamese checkpoint"]);
    refused(&["export", "--checkpoint", C, "--onnx", "K.onnx"], &["--onnx K.onnx holds a gpu-siamese checkpoint"]);
    refused(&["search", "q.npy", "--gallery", "g.npy", "--checkpoint", C, "--csv", "K.csv"], &["--csv K.csv holds a gpu-siamese checkpoint"]);
    refused(&["dedup", "pics", "--checkpoint", C, "--out", "sheet"], &["--out sheet (its groups.png)", "holds a gpu-siamese checkpoint"]);
    // A hard link is the same file under another name.
    refused(&["export", "--checkpoint", C, "--onnx", "H.onnx"], &["--onnx H.onnx is the checkpoint"]);
    // A file that only looks like one at first (a safetensors header without the format) is no checkpoint.
    assert!(gpu_siamese::checkpoint::is_checkpoint(&dir.join("K.json")));
    assert!(!gpu_siamese::checkpoint::is_checkpoint(&dir.join("a.png")));
    assert!(!gpu_siamese::checkpoint::is_checkpoint(&dir.join("q.npy")));
}

#[test]
fn a_special_file_is_never_replaced_by_a_regular_one() {
    let _one = one_at_a_time();
    let dir = workspace();
    let fifo = dir.join("pipe.onnx");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    refused(&["export", "--checkpoint", "C.safetensors", "--onnx", "pipe.onnx"], &["--onnx pipe.onnx is a named pipe (FIFO), not a regular file"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
    std::fs::remove_file(&fifo).unwrap();
    // /dev/null, as root the device would be replaced by a file: refused without a look at the device.
    let o = gpu_siamese(&["export", "--checkpoint", &dir.join("C.safetensors").display().to_string(), "--onnx", "/dev/null"].map(String::from));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--onnx /dev/null is a character device"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
}

#[test]
fn a_legitimate_output_beside_the_inputs_is_written() {
    let _one = one_at_a_time();
    // The guard refuses only what it must: an export and an embed beside the checkpoint are written.
    let dir = workspace();
    let onnx = dir.join("fresh.onnx");
    let o = gpu_siamese(&["export", "--checkpoint", &dir.join("C.safetensors").display().to_string(), "--onnx", &onnx.display().to_string()].map(String::from));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata(&onnx).unwrap().len() > 1000);
    std::fs::remove_file(&onnx).unwrap();
}

#[test]
fn search_help_readme_and_code_give_one_most_for_k() {
    let _one = one_at_a_time();
    let most = gpu_siamese::search::MAX_K;
    for command in ["search", "dedup"] {
        let help = String::from_utf8_lossy(&gpu_siamese(&[command.to_string(), "--help".to_string()]).stdout).to_string();
        assert!(help.contains(&format!("at most {most}")), "{command} --help: {help}");
        assert!(!help.contains("at most 128"), "{command} --help");
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains(&format!("`--k` is at most {most}")));
}

#[test]
fn a_memory_budget_error_tells_the_two_sizes_apart() {
    let _one = one_at_a_time();
    use gpu_siamese::twin::two_sizes;
    assert_eq!(two_sizes(1_258_291, 1 << 20), ("1.2 MiB".to_string(), "1.0 MiB".to_string()));
    assert_eq!(two_sizes(20 << 20, 1 << 20), ("20 MiB".to_string(), "1 MiB".to_string()));
    assert_eq!(two_sizes((1 << 20) + 3, 1 << 20), (format!("{} bytes", (1 << 20) + 3), format!("{} bytes", 1 << 20)));
    let o = gpu_siamese(&["summary", "--memory-budget", "1"].map(String::from));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("needs 1.2 MiB in all, more than the memory budget (1.0 MiB)"), "{stderr}");
}
