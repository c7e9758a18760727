//! The library in WebAssembly on the browser's WebGPU (headless Chromium: Dawn, Tint, SwiftShader),
//! checked against the same library natively on wgpu's Vulkan or GL: every layer kind against the CPU
//! reference, twenty training steps, embeddings of a checkpoint, and the page's compare as a user sees
//! it. SwiftShader is slow: the shapes and batches are small.

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::{run_page, run_page_at, run_page_without_webgpu, site, Served};
use common::{fresh_seed, gpu, relative_error};
use gpu_siamese::config::TrainConfig;
use gpu_siamese::data::{image_set, parse_idx_prefix, ImageSet};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(600);

fn asset(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets").join(path)
}

/// The page's site, the checks page at /checks.html and `checks` at /checks.json, and `extra` files.
fn checks_page(checks: Value, extra: Vec<(String, Served)>) -> Value {
    let mut files = site();
    files.insert("/".into(), Served::html(include_str!("browser/library_checks.html")));
    files.insert("/checks.json".into(), Served::json(checks.to_string()));
    files.extend(extra);
    let report: Value = serde_json::from_str(&run_page(files, TIMEOUT)).expect("the page posts JSON");
    assert!(report["error"].is_null(), "the page: {}", report["error"].as_str().unwrap_or_default());
    eprintln!("in the browser: {} ({:?} s)", report["adapter"], report["seconds"]);
    report
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().expect("an array").iter().map(|v| v.as_f64().expect("a number") as f32).collect()
}

#[test]
fn every_layer_kind_matches_the_reference_in_the_browser() {
    let seed = fresh_seed("layers in the browser") % (1 << 52);
    let report = checks_page(json!({"layers": {"seed": seed}}), vec![]);
    let layers = &report["layers"];
    let tolerance = layers["tolerance"].as_f64().unwrap();
    assert_eq!(tolerance, gpu_siamese::layer_check::TOLERANCE, "the native tolerance");
    let comparisons = layers["comparisons"].as_array().unwrap();
    // The same comparisons the native check makes (tests/kernels.rs), here with the browser's kernels.
    let (gpu, kernels) = gpu();
    let native = pollster::block_on(gpu_siamese::layer_check::every_layer_kind(gpu, kernels, seed)).unwrap();
    assert_eq!(comparisons.len(), native.len(), "every comparison came back");
    let mut failures = Vec::new();
    for c in comparisons {
        let (what, error) = (c["what"].as_str().unwrap(), c["relative_error"].as_f64().unwrap_or(f64::INFINITY));
        eprintln!("{what}: relative error {error:.2e}");
        if error.is_nan() || error > tolerance {
            failures.push(format!("{what}: relative error {error:.3e}"));
        }
    }
    assert!(failures.is_empty(), "in the browser, above {tolerance:.0e}:\n{}", failures.join("\n"));
}

/// The small Fashion-MNIST in assets/ at /data/, its four IDX files in the order the page's training
/// takes them (train images, train labels, test images, test labels).
fn fashion_mnist_at_data() -> Vec<(String, Served)> {
    ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
        .iter()
        .map(|name| (format!("/data/{name}"), Served::file(&asset(&format!("fashion-mnist-small/{name}")))))
        .collect()
}

/// A split of the small Fashion-MNIST in assets/, as the page reads it (its first `limit` images).
fn split(name: &str, limit: usize) -> ImageSet {
    let (ip, lp) = (asset(&format!("fashion-mnist-small/{name}-images-idx3-ubyte.gz")), asset(&format!("fashion-mnist-small/{name}-labels-idx1-ubyte.gz")));
    let read = |p: &Path| parse_idx_prefix(std::io::BufReader::new(std::fs::File::open(p).unwrap()), p, Some(limit)).unwrap();
    image_set(read(&ip), &ip, read(&lp), &lp).unwrap()
}

#[test]
fn twenty_training_steps_in_the_browser_match_the_native_run() {
    const STEPS: usize = 20;
    let options = json!({"epochs": 1, "seed": 7, "batch_size": 4, "learning_rate": 1e-3, "train_limit": 120, "test_limit": 40});
    let files = fashion_mnist_at_data();
    let urls: Vec<&String> = files.iter().map(|(url, _)| url).collect();
    let report = checks_page(json!({"train": {"files": urls, "options": options, "steps": STEPS, "chunk": 5}}), files);
    let (page_losses, page_params) = (floats(&report["train"]["losses"]), floats(&report["train"]["params"]));

    // The same run natively: the same core, the same data, seed and batches.
    let (gpu, kernels) = gpu();
    let (train, test) = (split("train", 120), split("t10k", 40));
    let mut config = TrainConfig::tutorial(1, 7);
    config.batch_size = 4;
    let mut trainer = gpu_siamese::trainer::Trainer::new(gpu, kernels, config, &train, &test).unwrap();
    let mut losses = Vec::new();
    while losses.len() < STEPS {
        trainer.submit_steps(5.min(STEPS - losses.len()));
        losses.extend(pollster::block_on(trainer.new_losses()).0);
    }
    let params = pollster::block_on(trainer.twin.fetch_params());

    assert_eq!(page_losses.len(), STEPS);
    for (step, (page, native)) in page_losses.iter().zip(&losses).enumerate() {
        let error = ((page - native) / native).abs() as f64;
        eprintln!("step {}: loss {page:.7} in the browser, {native:.7} native: relative difference {error:.2e}", step + 1);
        assert!(error <= 1e-5 && page.is_finite(), "step {}: loss {page} in the browser, {native} native", step + 1);
    }
    let error = relative_error(&page_params, &params);
    eprintln!("weights after {STEPS} steps: relative difference {error:.2e} over {} weights", params.len());
    assert!(error <= 1e-4, "the weights after {STEPS} steps differ by {error:.3e}");
    // Training moved them: the comparison is of trained weights, not of the initial draw.
    let initial = gpu_siamese::model::glorot_uniform(&trainer.plan, 7);
    assert!(relative_error(&params, &initial) > 1e-3, "the weights moved");
}

/// A checkpoint trained natively for the embedding and compare tests, once per test binary.
fn checkpoint() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("gpu-siamese-browser-page-{}", std::process::id()));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
            .args(["train", "--epochs", "1", "--seed", "3", "--train-limit", "600", "--test-limit", "200", "--batch-size", "16"])
            .arg("--data")
            .arg(asset("fashion-mnist-small"))
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the native training run");
        out.join("last.safetensors")
    })
}

/// Pictures of assets/example-folders, by their URL under /pictures/.
fn pictures() -> Vec<(String, PathBuf)> {
    let root = asset("example-folders");
    let mut found: Vec<(String, PathBuf)> = ["bag", "trouser", "sneaker"]
        .iter()
        .flat_map(|class| std::fs::read_dir(root.join(class)).unwrap().flatten().map(|e| e.path()).take(2))
        .map(|p| (format!("/pictures/{}", p.strip_prefix(&root).unwrap().display()).replace(' ', "%20"), p))
        .collect();
    found.sort();
    found
}

#[test]
fn embeddings_in_the_browser_equal_the_native_embed() {
    let checkpoint = checkpoint();
    let pictures = pictures();
    let mut files: Vec<(String, Served)> = pictures.iter().map(|(url, path)| (url.replace("%20", " "), Served::file(path))).collect();
    files.push(("/model.safetensors".into(), Served::file(checkpoint)));
    let urls: Vec<&String> = pictures.iter().map(|(url, _)| url).collect();
    let report = checks_page(json!({"embed": {"checkpoint": "/model.safetensors", "pictures": urls}}), files);
    let page = floats(&report["embed"]["embeddings"]);

    // `gpu-siamese embed` of the same pictures, from a folder of them.
    let folder = std::env::temp_dir().join(format!("gpu-siamese-browser-embed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(folder.join("all")).unwrap();
    for (i, (_, path)) in pictures.iter().enumerate() {
        std::fs::copy(path, folder.join("all").join(format!("{i:02}.{}", path.extension().unwrap().to_str().unwrap()))).unwrap();
    }
    let npy = folder.join("out.npy");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
        .args(["embed", "--checkpoint"])
        .arg(checkpoint)
        .arg("--images")
        .arg(folder.join("all"))
        .arg("--out")
        .arg(&npy)
        .output()
        .unwrap();
    assert!(output.status.success(), "embed: {}", String::from_utf8_lossy(&output.stderr));
    let (shape, native) = gpu_siamese::npy::read_f32(&std::fs::read(&npy).unwrap()).unwrap();
    assert_eq!(shape[0], pictures.len());
    assert_eq!(page.len(), native.len(), "{} pictures x {} values", pictures.len(), shape[1]);
    let error = relative_error(&page, &native);
    eprintln!("{} embeddings of {} values: relative difference {error:.2e} between the browser and the native embed", shape[0], shape[1]);
    assert!(error <= 1e-5, "the browser's embeddings differ from embed's by {error:.3e}");
    assert!(native.iter().any(|&v| v != native[0]), "the embeddings are not all one value");
    let _ = std::fs::remove_dir_all(&folder);
}

#[test]
fn the_pages_compare_shows_its_verdict() {
    let checkpoint = checkpoint();
    let pictures = pictures();
    let (a, b) = (&pictures[0], &pictures[pictures.len() - 1]);
    let mut files = site();
    files.insert("/data/model.safetensors".into(), Served::file(checkpoint));
    files.insert("/data/a".into(), Served::file(&a.1));
    files.insert("/data/b".into(), Served::file(&b.1));
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-compare.png");
    let _ = std::fs::remove_file(&shot);
    let url = "/?model=/data/model.safetensors&a=/data/a&b=/data/b";
    let report: Value = serde_json::from_str(&run_page_at(files, &format!("{url}&report=1"), Some(&shot), TIMEOUT)).unwrap();
    assert!(report["error"].is_null(), "the page: {}", report["error"]);
    let shown = report["shown"].as_str().unwrap();
    eprintln!("the page shows: {shown}; screenshot: {}", shot.display());

    // The verdict the native compare gives for the same pictures.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
        .arg("compare")
        .args([&a.1, &b.1])
        .arg("--checkpoint")
        .arg(checkpoint)
        .output()
        .unwrap();
    let native = String::from_utf8_lossy(&output.stdout);
    let distance: f32 = native.split_whitespace().nth(1).and_then(|d| d.trim_end_matches(':').parse().ok()).unwrap_or_else(|| panic!("compare printed {native}"));
    let verdict = if native.contains(": same") { "Same" } else { "Different" };
    assert!(shown.starts_with(&format!("{verdict}: distance {distance:.4}")), "the page shows {shown:?}; the native compare printed {native:?}");

    // The screenshot holds the verdict: its colour (the page's .same or .different) is on it.
    let picture = image::open(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display())).to_rgb8();
    let colour = if verdict == "Same" { [0x00, 0xaa, 0x77] } else { [0xcc, 0x55, 0x00] };
    let inked = picture.pixels().filter(|p| p.0 == colour).count();
    assert!(inked > 200, "{}: {inked} pixels of the verdict's colour", shot.display());
}

#[test]
fn training_in_the_page_equals_train_and_its_checkpoint_loads_in_evaluate() {
    let mut files = site();
    files.extend(fashion_mnist_at_data());
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-train.png");
    let url = "/?train=1&epochs=2&batch=16&train_limit=200&test_limit=100&seed=5&report=1";
    let report: Value = serde_json::from_str(&run_page_at(files, url, Some(&shot), TIMEOUT)).unwrap();
    let train = &report["train"];
    assert!(train["error"].is_null(), "the page: {}", train["error"]);
    eprintln!("the page shows: {}; screenshot: {}", train["status"], shot.display());
    let last = &train["last"];
    assert_eq!(last["epoch"], 2);

    // `gpu-siamese train` of the same run: the same epoch figures.
    let out = std::env::temp_dir().join(format!("gpu-siamese-browser-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let native = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
        .args(["train", "--epochs", "2", "--batch-size", "16", "--train-limit", "200", "--test-limit", "100", "--seed", "5", "--no-tune"])
        .arg("--data")
        .arg(asset("fashion-mnist-small"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(native.status.success(), "train: {}", String::from_utf8_lossy(&native.stderr));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let row: Vec<f64> = metrics.lines().nth(2).unwrap().split(',').map(|v| v.parse().unwrap()).collect();
    for (name, column) in [("loss", 1), ("val_loss", 2), ("val_acc", 3), ("threshold", 4)] {
        let (page, native) = (last[name].as_f64().unwrap(), row[column]);
        eprintln!("epoch 2 {name}: {page:.6} in the page, {native:.6} from train");
        // metrics.csv keeps six decimals.
        assert!((page - native).abs() <= 1e-5 + 1e-4 * native.abs(), "epoch 2 {name}: {page} in the page, {native} from train");
    }

    // The checkpoint the page offers for download, scored by `evaluate`.
    let checkpoint = out.join("from-the-page.safetensors");
    let bytes: Vec<u8> = train["checkpoint"].as_array().expect("the checkpoint's bytes").iter().map(|b| b.as_u64().unwrap() as u8).collect();
    std::fs::write(&checkpoint, &bytes).unwrap();
    let json = out.join("evaluation.json");
    let evaluated = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
        .args(["evaluate", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--data")
        .arg(asset("fashion-mnist-small"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(evaluated.status.success(), "evaluate: {}", String::from_utf8_lossy(&evaluated.stderr));
    let evaluation: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    eprintln!("evaluate of the page's checkpoint: {}", String::from_utf8_lossy(&evaluated.stdout).lines().take(4).collect::<Vec<_>>().join(" | "));
    assert!(evaluation.to_string().contains("auc"), "an evaluation: {evaluation}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_browser_without_webgpu_is_told_what_is_missing() {
    let report: Value = serde_json::from_str(&run_page_without_webgpu(site(), "/?report=1", TIMEOUT)).unwrap();
    let error = report["error"].as_str().expect("the page reports that it has no GPU");
    let shown = report["shown"].as_str().unwrap();
    eprintln!("the page shows: {shown}");
    assert!(error.contains("WebGPU") && error.contains("--enable-unsafe-webgpu"), "{error}");
    assert!(shown.starts_with("No GPU for this page: ") && shown.contains(error), "{shown}");
}

#[test]
fn the_pages_search_ranks_a_folder_as_the_native_search_does() {
    let checkpoint = checkpoint();
    // Every picture of three classes, renamed apart, the query among them.
    let folder = std::env::temp_dir().join(format!("gpu-siamese-browser-search-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let mut files = site();
    let mut urls = Vec::new();
    for class in ["bag", "trouser", "sneaker"] {
        for entry in std::fs::read_dir(asset("example-folders").join(class)).unwrap().flatten() {
            let name = format!("{class}-{}", entry.file_name().to_string_lossy());
            std::fs::copy(entry.path(), folder.join(&name)).unwrap();
            files.insert(format!("/pictures/{name}"), Served::file(&entry.path()));
            urls.push(format!("/pictures/{name}"));
        }
    }
    urls.sort();
    let count = urls.len().min(64);
    urls.truncate(count);
    let query = folder.join(urls[0].trim_start_matches("/pictures/"));
    files.insert("/model.safetensors".into(), Served::file(checkpoint));
    files.insert("/gallery.json".into(), Served::json(serde_json::to_string(&urls).unwrap()));
    let url = format!("/?model=/model.safetensors&gallery=/gallery.json&query={}&k={count}&report=1", urls[0]);
    let report: Value = serde_json::from_str(&run_page_at(files, &url, None, TIMEOUT)).unwrap();
    let found = report["search"].as_array().unwrap_or_else(|| panic!("the page found nothing: {}", report["search_status"]));
    eprintln!("the page: {}", report["search_status"]);
    assert_eq!(found.len(), count);

    // gpu-siamese search of the same query over the same pictures, every one ranked.
    for path in std::fs::read_dir(&folder).unwrap().flatten().map(|e| e.path()) {
        if !urls.iter().any(|u| u.ends_with(&*path.file_name().unwrap().to_string_lossy())) {
            std::fs::remove_file(path).unwrap();
        }
    }
    let json = std::env::temp_dir().join(format!("gpu-siamese-browser-search-{}.json", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-siamese"))
        .arg("search")
        .arg(&query)
        .arg("--gallery")
        .arg(&folder)
        .arg("--checkpoint")
        .arg(checkpoint)
        .args(["--k", &count.to_string(), "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(output.status.success(), "search: {}", String::from_utf8_lossy(&output.stderr));
    let native: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let distance_of: std::collections::HashMap<String, f64> = native["results"][0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (Path::new(m["gallery"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned(), m["distance"].as_f64().unwrap()))
        .collect();
    assert_eq!(distance_of.len(), count, "the native search ranked every picture");
    // The page ranks by the GPU's embeddings (squared differences summed in f64), the command line on the
    // GPU (in f32): the same squared distances to f32's precision over the set (a near pair's distance
    // carries the f32 rounding of the sum it is the root of), in the same order but for ties within it.
    let (mut page, mut native) = (Vec::new(), Vec::new());
    for hit in found {
        let name = hit["name"].as_str().unwrap().trim_start_matches("/pictures/");
        page.push((hit["distance"].as_f64().unwrap() as f32).powi(2));
        native.push((distance_of[name] as f32).powi(2));
    }
    let error = relative_error(&page, &native);
    eprintln!("{count} squared distances: relative difference {error:.2e} between the page and the native search");
    assert!(error <= 1e-5, "the page's distances differ from search's by {error:.3e}");
    assert!(page.windows(2).all(|w| w[0] <= w[1]), "the page's ranking is sorted");
    let mut sorted = native.clone();
    sorted.sort_by(f32::total_cmp);
    assert!(relative_error(&sorted, &native) <= 1e-5, "the page's order is the native distances' order");
    let _ = std::fs::remove_dir_all(&folder);
    let _ = std::fs::remove_file(&json);
}
