//! The `train` command end to end, as a user runs it: on the small real Fashion-MNIST subset in
//! assets/, learning, checkpoints, Ctrl-C and resume, and each kind of bad input.

use gpu_siamese::checkpoint::Checkpoint;
use gpu_siamese::model::{InputShape, Plan, TowerSpec, TUTORIAL_TOWER};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fashion-mnist-small");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-siamese-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn train(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_gpu-siamese")).env("GPU_SIAMESE_NO_TUNE", "1").arg("train").args(args).output().unwrap();
    eprintln!("train {args:?}:\n{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// metrics.csv as rows of numbers, the seconds column dropped.
fn metrics(dir: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("epoch,loss,val_loss,val_acc,threshold,val_acc_at_threshold,seconds"));
    lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).take(6).collect()).collect()
}

#[test]
fn training_learns_on_the_real_subset() {
    let out = temp_dir("learns");
    let o = train(&["--data", SUBSET, "--train-limit", "1000", "--test-limit", "300", "--epochs", "3", "--batch-size", "32", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("adapter: "), "the adapter is printed first");
    for epoch in 1..=3 {
        // 2,000 pairs in batches of 32: 62 full steps and a last one of 16.
        assert!(text.contains(&format!("Epoch {epoch}/3  63/63 ━━━━━━━━━━━━━━━━━━━━ ")), "a Keras-style line for epoch {epoch}");
    }
    let rows = metrics(&out);
    assert_eq!(rows.len(), 3);
    let (first, last) = (&rows[0], &rows[2]);
    assert!(last[2] < first[2] - 0.02, "val_loss falls: {} then {}", first[2], last[2]);
    assert!(last[1] < first[1], "the training loss falls");
    assert!(last[3] > 0.62, "pair accuracy well above chance (0.5): {}", last[3]);
    assert!(last[5] > 0.58, "accuracy at the threshold calibrated on training pairs: {}", last[5]);

    let best = Checkpoint::load(&out.join("best.safetensors")).unwrap();
    assert_eq!(best.arch, TUTORIAL_TOWER);
    assert_eq!(best.progress.epoch, 3, "the best val_loss is the last one here");
    assert!(best.progress.threshold > 0.0 && best.progress.threshold < 2.0);
    assert_eq!(best.config.batch_size, 32);
    let plan = Plan::new(&TowerSpec::tutorial(), InputShape::FASHION_MNIST, 2, 0).unwrap();
    let weights = best.flat(&plan, "").unwrap();
    assert!(weights.iter().any(|&w| w != 0.0) && weights.iter().all(|w| w.is_finite()));
    // A checkpoint of another architecture is refused, naming both.
    let other = Plan::new(&"conv(64,3),maxpool,gap,dense(48)".parse().unwrap(), InputShape::FASHION_MNIST, 2, 0).unwrap();
    let message = best.flat(&other, "").unwrap_err();
    assert!(message.contains(TUTORIAL_TOWER) && message.contains("conv(64,3,same,relu)"), "{message}");
}

/// A short run's arguments; the subset keeps each epoch to a few seconds.
fn short_run(out: &Path, epochs: &str) -> Vec<String> {
    ["--data", SUBSET, "--train-limit", "400", "--test-limit", "100", "--batch-size", "16", "--seed", "3", "--epochs", epochs, "--out"]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_str().unwrap().to_string()])
        .collect()
}

/// Runs `train` with `args` and sends it Ctrl-C (SIGINT) once its first epoch's line is out: its exit
/// status and what it printed after that line.
fn interrupted_after_first_epoch(args: &[String]) -> (std::process::ExitStatus, String) {
    interrupted_at(args, |line| line.starts_with("Epoch 1/") && line.contains("val_loss"))
}

/// Runs `train` with `args` and sends it Ctrl-C once it prints a line `stop_at` picks.
fn interrupted_at(args: &[String], stop_at: impl Fn(&str) -> bool) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
        .env("GPU_SIAMESE_NO_TUNE", "1")
        .arg("train")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0, "the run ended early: {seen}");
        seen.push_str(&line);
        if stop_at(&line) {
            break;
        }
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    (child.wait().unwrap(), rest)
}

#[test]
fn ctrl_c_in_the_first_epoch_leaves_nothing_to_resume_and_says_so() {
    // Piped, the run prints a plain progress line every tenth of an epoch: stop at the first.
    let out = temp_dir("first-epoch");
    let args = short_run(&out, "2");
    let (status, rest) = interrupted_at(&args, |line| line.starts_with("Epoch 1/2  ") && line.contains("ETA"));
    assert_eq!(status.code(), Some(130));
    assert!(rest.contains("interrupted in epoch 1: nothing was saved yet; run the same command again"), "{rest}");
    assert!(!out.exists(), "the folder it made holds nothing, and is gone");
    // The same command then starts over and finishes, ending with a summary.
    let o = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("best epoch ") && text.contains("next: gpu-siamese evaluate --checkpoint"), "{text}");
    assert!(text.contains("trainable parameters") && text.contains("of GPU memory"), "the tower's summary: {text}");
}

#[test]
fn an_interrupted_run_resumes_to_the_same_weights_bit_for_bit() {
    let (whole, parted) = (temp_dir("whole"), temp_dir("parted"));
    let args = short_run(&whole, "2");
    assert!(train(&args.iter().map(String::as_str).collect::<Vec<_>>()).status.success());

    // The same run, interrupted with Ctrl-C (SIGINT) once its first epoch is done.
    let (status, rest) = interrupted_after_first_epoch(&short_run(&parted, "2"));
    assert_eq!(status.code(), Some(130), "Ctrl-C exits with 130: {rest}");
    assert!(rest.contains("interrupted in epoch 2") && rest.contains("--resume"), "{rest}");
    assert!(!rest.contains("Epoch 2/2"));
    assert_eq!(Checkpoint::load(&parted.join("last.safetensors")).unwrap().progress.epoch, 1, "the last good checkpoint stays");
    assert_eq!(metrics(&parted).len(), 1);

    let o = train(&["--resume", parted.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("resuming") && stdout(&o).contains("Epoch 2/2"));
    for file in ["last.safetensors", "resume.safetensors", "best.safetensors"] {
        assert!(std::fs::read(whole.join(file)).unwrap() == std::fs::read(parted.join(file)).unwrap(), "{file} differs");
    }
    assert_eq!(metrics(&whole), metrics(&parted));

    // Resuming a finished run with more epochs continues it; into another folder, the original stays.
    let more = temp_dir("more");
    let o = train(&["--resume", parted.to_str().unwrap(), "--epochs", "3", "--out", more.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(metrics(&more).len(), 3);
    assert_eq!(&metrics(&more)[..2], &metrics(&parted)[..]);
    assert_eq!(metrics(&parted).len(), 2);

    // A resumed run keeps its settings.
    let o = train(&["--resume", parted.to_str().unwrap(), "--arch", "conv(8,2),gap,dense(4)", "--lr", "0.01"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--arch conv(8,2),gap,dense(4)") && stderr(&o).contains("--lr 0.01"), "{}", stderr(&o));

    // NaN in the weights (a damaged state file) stops the run at once, and nothing written is lost.
    let nan_dir = temp_dir("nan");
    std::fs::create_dir_all(&nan_dir).unwrap();
    for file in ["last.safetensors", "resume.safetensors", "best.safetensors", "metrics.csv"] {
        std::fs::copy(parted.join(file), nan_dir.join(file)).unwrap();
    }
    let mut bytes = std::fs::read(nan_dir.join("resume.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let at = 8 + header_len + header["layer0.kernel"]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(nan_dir.join("resume.safetensors"), &bytes).unwrap();
    let before = std::fs::read(nan_dir.join("last.safetensors")).unwrap();
    let o = train(&["--resume", nan_dir.to_str().unwrap(), "--epochs", "3"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("NaN") && stderr(&o).contains("damaged") && stderr(&o).contains("layer0.kernel"), "{}", stderr(&o));
    assert!(std::fs::read(nan_dir.join("last.safetensors")).unwrap() == before, "the last checkpoint is untouched");
    assert_eq!(metrics(&nan_dir).len(), 2);
}

#[test]
fn streamed_batches_give_the_resident_runs_weights_bit_for_bit() {
    // With augmentation, and with class-balanced batches under the triplet loss: every batch's images,
    // uploaded just before its step, gather and augment to the same values as when all are resident.
    for (name, extra) in [
        ("pairs", vec!["--flip", "--shift", "2", "--brightness", "0.1", "--contrast", "0.2"]),
        ("pk", vec!["--loss", "triplet", "--classes-per-batch", "4", "--images-per-class", "3", "--flip"]),
    ] {
        let (resident, streamed) = (temp_dir(&format!("resident-{name}")), temp_dir(&format!("streamed-{name}")));
        for (out, stream) in [(&resident, false), (&streamed, true)] {
            let mut args = short_run(out, "2");
            if name == "pk" {
                // A pk batch is P x K images; --batch-size is for pairs.
                let at = args.iter().position(|a| a == "--batch-size").unwrap();
                args.drain(at..at + 2);
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            if stream {
                args.push("--stream".into());
            }
            let o = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(stdout(&o).contains("streaming each batch's images"), stream);
            assert!(stdout(&o).contains("augmenting training images"));
        }
        for file in ["last.safetensors", "resume.safetensors", "best.safetensors"] {
            assert!(std::fs::read(resident.join(file)).unwrap() == std::fs::read(streamed.join(file)).unwrap(), "{name}: {file} differs");
        }
        assert_eq!(metrics(&resident), metrics(&streamed));
        if name == "pairs" {
            // A memory budget below what a batch takes: every step in micro-batches, the same weights.
            let micro = temp_dir("micro-batches");
            let mut args = short_run(&micro, "2");
            args.extend(extra.iter().map(|s| s.to_string()));
            args.extend(["--memory-budget".to_string(), "1".to_string()]);
            let o = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(o.status.success(), "{}", stderr(&o));
            assert!(stdout(&o).contains("micro-batches"), "{}", stdout(&o));
            for file in ["last.safetensors", "resume.safetensors", "best.safetensors"] {
                assert!(std::fs::read(resident.join(file)).unwrap() == std::fs::read(micro.join(file)).unwrap(), "micro-batches: {file} differs");
            }
            assert_eq!(metrics(&resident), metrics(&micro));
        }
    }
}

#[test]
fn bad_input_stops_with_a_clear_error() {
    // A truncated image file: the error names it; nothing is written.
    let data = temp_dir("corrupt-data");
    std::fs::create_dir_all(&data).unwrap();
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(Path::new(SUBSET).join(name), data.join(name)).unwrap();
    }
    let images = data.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    let out = temp_dir("corrupt-out");
    let o = train(&["--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(&images.display().to_string()), "{}", stderr(&o));
    assert!(!out.join("last.safetensors").exists());

    // A batch of more pairs than an epoch has.
    let o = train(&["--data", SUBSET, "--batch-size", "200000", "--out", temp_dir("huge").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--batch-size 200000") && stderr(&o).contains("training pairs"), "{}", stderr(&o));

    // A tower that does not parse: the column and the token.
    let o = train(&["--data", SUBSET, "--arch", "conv(128,2),maxpol,gap,dense(48)"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("column 13 at 'maxpol'"), "{}", stderr(&o));

    // Resuming a folder that holds no run.
    let o = train(&["--resume", temp_dir("empty").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot resume") && stderr(&o).contains("resume.safetensors"), "{}", stderr(&o));

    // Bad numbers.
    for (flag, value) in [("--margin", "nan"), ("--lr", "-1"), ("--batch-size", "0"), ("--epochs", "0")] {
        let o = train(&["--data", SUBSET, &format!("{flag}={value}")]);
        assert!(!o.status.success() && stderr(&o).contains(flag), "{flag} {value}: {}", stderr(&o));
    }
}

#[test]
fn schedules_and_early_stopping_are_kept_by_resume() {
    // A cosine schedule after half an epoch of warm-up: two epochs straight, or one then a resume, give
    // the same files; and the weights differ from the constant rate's.
    let schedule = ["--lr-schedule", "cosine", "--warmup-epochs", "0.5"];
    let (whole, parted, constant) = (temp_dir("cosine-whole"), temp_dir("cosine-parted"), temp_dir("constant"));
    let run = |out: &Path, epochs: &str, extra: &[&str]| {
        let mut args = short_run(out, epochs);
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    assert!(stdout(&run(&whole, "2", &schedule)).contains("half a cosine"));
    let mut args = short_run(&parted, "2");
    args.extend(schedule.iter().map(|s| s.to_string()));
    let (status, _) = interrupted_after_first_epoch(&args);
    assert_eq!(status.code(), Some(130));
    let o = train(&["--resume", parted.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for file in ["last.safetensors", "resume.safetensors", "best.safetensors"] {
        assert!(std::fs::read(whole.join(file)).unwrap() == std::fs::read(parted.join(file)).unwrap(), "{file} differs after resuming");
    }
    run(&constant, "2", &[]);
    assert_ne!(std::fs::read(whole.join("last.safetensors")).unwrap(), std::fs::read(constant.join("last.safetensors")).unwrap());
    let o = train(&["--resume", parted.to_str().unwrap(), "--lr-schedule", "step"]);
    assert!(!o.status.success() && stderr(&o).contains("schedule"), "{}", stderr(&o));

    // Early stopping with a patience of one epoch, at a rate high enough for val_loss to stall: the run
    // stops after the first epoch that does not improve on the best, and ends on the best weights.
    let stopped = temp_dir("early-stopping");
    let o = run(&stopped, "8", &["--early-stopping", "1", "--lr", "0.01"]);
    let rows = metrics(&stopped);
    let mut best = f64::INFINITY;
    let expected = rows.iter().position(|r| { let stall = r[2] >= best; best = best.min(r[2]); stall }).map_or(8, |i| i + 1);
    assert_eq!(rows.len(), expected, "{}", stdout(&o));
    if expected < 8 {
        assert!(stdout(&o).contains("stopping early"), "{}", stdout(&o));
        assert_eq!(std::fs::read(stopped.join("last.safetensors")).unwrap(), std::fs::read(stopped.join("best.safetensors")).unwrap());
        // Resumed, a stopped run stays stopped.
        let again = train(&["--resume", stopped.to_str().unwrap(), "--epochs", "10"]);
        assert!(again.status.success() && stdout(&again).contains("stopped early"), "{}", stdout(&again));
        assert_eq!(metrics(&stopped).len(), expected);
    }
}

#[test]
fn a_run_without_subgroups_gives_the_same_bits() {
    // The kernels' variants without subgroup operations (an adapter that lacks them, such as Mesa's GL
    // driver) add the same terms in the same order: masking the feature off changes no bit of a run.
    let arch = "conv(8,3),maxpool,dropout(0.2),conv(16,3),maxpool,gap,dense(8)";
    let mut runs = Vec::new();
    for masked in [false, true] {
        let out = temp_dir(if masked { "no-subgroups" } else { "subgroups" });
        let mut command = Command::new(env!("CARGO_BIN_EXE_gpu-siamese"));
        command.env("GPU_SIAMESE_NO_TUNE", "1").env_remove("GPU_SIAMESE_NO_SUBGROUPS");
        if masked {
            command.env("GPU_SIAMESE_NO_SUBGROUPS", "1");
        }
        let picked = command.args(["adapters", "--picked"]).output().unwrap();
        let picked = String::from_utf8_lossy(&picked.stdout).to_string();
        if masked {
            assert!(picked.contains("no subgroups"), "{picked}");
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_gpu-siamese"));
        command.env("GPU_SIAMESE_NO_TUNE", "1").env_remove("GPU_SIAMESE_NO_SUBGROUPS");
        if masked {
            command.env("GPU_SIAMESE_NO_SUBGROUPS", "1");
        }
        let o = command
            .args(["train", "--data", SUBSET, "--train-limit", "300", "--test-limit", "100", "--batch-size", "32", "--epochs", "1", "--arch", arch])
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        runs.push((picked, std::fs::read(out.join("resume.safetensors")).unwrap()));
    }
    eprintln!("with: {}without: {}", runs[0].0, runs[1].0);
    assert!(runs[0].1 == runs[1].1, "the same weights, Adam state and figures, bit for bit");
}
