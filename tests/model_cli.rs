//! Using a trained model from the command line, as a user does: `evaluate`, `compare`, `embed` and
//! `report` on a checkpoint trained here on the small real Fashion-MNIST subset in assets/, and
//! few-shot tests on classes held out of training.

use gpu_siamese::checkpoint::Checkpoint;
use gpu_siamese::data::load_split;
use gpu_siamese::report::PICTURES;
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fashion-mnist-small");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-siamese-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &str, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_gpu-siamese")).env("GPU_SIAMESE_NO_TUNE", "1").arg(command).args(args).output().unwrap();
    eprintln!("{command} {args:?}:\n{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    output
}

fn ok(command: &str, args: &[&str]) -> String {
    let o = run(command, args);
    assert!(o.status.success(), "{command} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn failure(command: &str, args: &[&str]) -> String {
    let o = run(command, args);
    assert!(!o.status.success(), "{command} {args:?} should fail");
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A run trained once for every test here: 1,000 training images, 300 test images, 3 epochs.
fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = temp_dir("run");
        let args = ["--data", SUBSET, "--train-limit", "1000", "--test-limit", "300", "--epochs", "3", "--batch-size", "32"];
        ok("train", &[&args[..], &["--out", out.to_str().unwrap()]].concat());
        out
    })
}

fn checkpoint() -> String {
    trained_run().join("best.safetensors").to_str().unwrap().to_string()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn evaluate_scores_the_checkpoint_on_the_test_pairs() {
    let out = temp_dir("evaluate");
    let report = out.join("eval.json");
    let ckpt = checkpoint();
    let text = ok("evaluate", &["--checkpoint", &ckpt, "--data", SUBSET, "--limit", "300", "--target-far", "0.1", "--json", report.to_str().unwrap()]);
    for row in ["ROC AUC", "EER", "calibrated (on training pairs)", "FAR 0.1", "best for these pairs", "precision@1", "4-way 1-shot"] {
        assert!(text.contains(row), "the table has '{row}'");
    }
    let e = json(&report);
    // The same pairs, the same kernels: the validation loss of the checkpoint's epoch, to the digit.
    let saved = Checkpoint::load(Path::new(&ckpt)).unwrap();
    assert!((number(&e["loss"]) - saved.progress.val_loss).abs() < 1e-6, "{} vs {}", e["loss"], saved.progress.val_loss);
    assert!((number(&e["at_best_threshold"]["accuracy"]) - saved.progress.val_acc).abs() < 1e-9);
    assert_eq!(number(&e["at_calibrated_threshold"]["threshold"]) as f32, saved.progress.threshold);
    assert_eq!((e["pairs"].as_u64(), e["same_pairs"].as_u64(), e["images"].as_u64()), (Some(600), Some(300), Some(300)));
    let s = &e["at_calibrated_threshold"];
    let counts: u64 = ["true_accepts", "false_accepts", "true_rejects", "false_rejects"].iter().map(|k| s[k].as_u64().unwrap()).sum();
    assert_eq!(counts, 600);
    assert!(number(&e["roc_auc"]) > 0.65, "learned something: AUC {}", e["roc_auc"]);
    assert!((0.0..0.4).contains(&number(&e["eer"])));
    // The threshold for 10% false accepts is calibrated on training pairs, where it holds.
    assert!(number(&e["at_target_far"]["calibration_far"]) <= 0.1);
    assert!(number(&e["at_target_far"]["scores"]["threshold"]) < number(&s["threshold"]), "fewer false accepts, a lower threshold");
    // Retrieval and 4-way 1-shot, well above chance (1/10 and 1/4).
    assert!(number(&e["retrieval"]["precision_at_1"]) > 0.3);
    assert!(number(&e["few_shot"]["accuracy"]) > 0.4, "{}", e["few_shot"]);
    assert_eq!(e["few_shot"]["episodes"].as_u64(), Some(1000));
    // The default JSON goes beside the checkpoint.
    ok("evaluate", &["--checkpoint", &ckpt, "--data", SUBSET, "--limit", "100", "--episodes", "10"]);
    assert!(trained_run().join("best.evaluation.json").is_file());
    let e = failure("evaluate", &["--checkpoint", &ckpt, "--data", SUBSET, "--classes", "held-out"]);
    assert!(e.contains("holds no classes out"), "{e}");
    let e = failure("evaluate", &["--checkpoint", &ckpt, "--data", SUBSET, "--n-way", "11"]);
    assert!(e.contains("11-way 1-shot needs 11 classes"), "{e}");
}

/// Test image `i` of the subset, as bytes.
fn subset_image(i: usize) -> Vec<u8> {
    let set = load_split(Path::new(SUBSET), "t10k").unwrap();
    set.pixels[i * 784..(i + 1) * 784].to_vec()
}

#[test]
fn compare_and_embed_agree_on_pictures_and_idx_images() {
    let dir = temp_dir("compare");
    let ckpt = checkpoint();
    // Test images 0 and 1 as 28x28 grayscale PNGs: the model sees them exactly as in the IDX file.
    let png = |i: usize, name: &str| {
        let path = dir.join(name);
        DynamicImage::ImageLuma8(GrayImage::from_raw(28, 28, subset_image(i)).unwrap()).save_with_format(&path, ImageFormat::Png).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (a, b) = (png(0, "a.png"), png(1, "b, with comma ü.png"));
    let text = ok("compare", &[&a, &b, "--checkpoint", &ckpt]);
    let distance: f64 = text.split_whitespace().nth(1).unwrap().trim_end_matches(':').parse().unwrap();
    assert!(text.contains("same") || text.contains("different"));

    // The same picture inverted (a dark garment on white, as a photo would be): the checkpoint knows its
    // training pictures were light on black, so compare inverts it back, says so, and finds it identical.
    let inverted: Vec<u8> = subset_image(0).iter().map(|v| 255 - v).collect();
    let on_white = dir.join("a on white.png");
    DynamicImage::ImageLuma8(GrayImage::from_raw(28, 28, inverted).unwrap()).save_with_format(&on_white, ImageFormat::Png).unwrap();
    let o = run("compare", &[on_white.to_str().unwrap(), &a, "--checkpoint", &ckpt]);
    assert!(o.status.success());
    let note = String::from_utf8_lossy(&o.stderr);
    assert!(note.contains("inverted 1 of 2 pictures") && note.contains("--no-invert"), "{note}");
    // Identical inputs: the distance's floor, sqrt(1e-7), as Keras' epsilon gives.
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("distance 0.0003: same"), "{}", String::from_utf8_lossy(&o.stdout));
    let kept = ok("compare", &[on_white.to_str().unwrap(), &a, "--checkpoint", &ckpt, "--no-invert"]);
    let kept_distance: f64 = kept.split_whitespace().nth(1).unwrap().trim_end_matches(':').parse().unwrap();
    assert!(kept_distance > 0.05, "taken as it is, it is another picture: {kept}");

    // embed on the IDX file: the same distance from the embeddings.
    let npy = dir.join("test.npy");
    let images = format!("{SUBSET}/t10k-images-idx3-ubyte.gz");
    ok("embed", &["--checkpoint", &ckpt, "--images", &images, "--out", npy.to_str().unwrap()]);
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'shape': (500, 48)"), "{header}");
    let values: Vec<f32> = bytes[10 + header_len..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(values.len(), 500 * 48);
    let from_embeddings = values[..48].iter().zip(&values[48..96]).map(|(x, y)| ((x - y) * (x - y)) as f64).sum::<f64>().sqrt();
    assert!((from_embeddings - distance).abs() < 2e-4, "compare {distance} vs embed {from_embeddings}");
    let index = std::fs::read_to_string(dir.join("test.csv")).unwrap();
    let labels = load_split(Path::new(SUBSET), "t10k").unwrap().labels;
    assert_eq!(index.lines().next(), Some("row,source,label"));
    assert_eq!(index.lines().count(), 501);
    assert!(index.lines().nth(2).unwrap().ends_with(&format!("#1,{}", labels[1])));

    // A colour JPEG twice the size of test image 0 is nearer to it than test image 1 is.
    let big = image::imageops::resize(&GrayImage::from_raw(28, 28, subset_image(0)).unwrap(), 56, 56, image::imageops::FilterType::Nearest);
    let colour = dir.join("colour.jpg");
    DynamicImage::ImageRgb8(RgbImage::from_fn(56, 56, |x, y| {
        let v = big.get_pixel(x, y).0[0];
        image::Rgb([v, v, v])
    }))
    .save_with_format(&colour, ImageFormat::Jpeg)
    .unwrap();
    let text = ok("compare", &[&a, colour.to_str().unwrap(), "--checkpoint", &ckpt]);
    let near: f64 = text.split_whitespace().nth(1).unwrap().trim_end_matches(':').parse().unwrap();
    assert!(near < distance && near < 0.2, "{near} vs {distance}");

    // Many pairs from a CSV, relative paths and quoted names, results as CSV.
    let csv = dir.join("pairs.csv");
    std::fs::write(&csv, "a,b\na.png,\"b, with comma ü.png\"\n# a comment\na.png,a.png\n").unwrap();
    let results = dir.join("results.csv");
    ok("compare", &["--pairs", csv.to_str().unwrap(), "--checkpoint", &ckpt, "--out", results.to_str().unwrap()]);
    let text = std::fs::read_to_string(&results).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "a,b,distance,verdict");
    assert_eq!(rows.len(), 3);
    assert!(rows[1].contains("\""), "a name with a comma is quoted: {}", rows[1]);
    // The CSV has more decimals than the terminal line: compare the values, not their text.
    let csv_distance: f64 = rows[1].rsplit(',').nth(1).unwrap().parse().unwrap();
    assert!((csv_distance - distance).abs() < 1e-4, "{} vs {distance}", rows[1]);
    assert!(rows[2].ends_with(",same"), "an image is the same as itself: {}", rows[2]);

    // Files that are not pictures, and wrong arguments, are named.
    let text_file = dir.join("notes.png");
    std::fs::write(&text_file, "hello").unwrap();
    let e = failure("compare", &[&a, text_file.to_str().unwrap(), "--checkpoint", &ckpt]);
    assert!(e.contains("notes.png") && e.contains("not an image file"), "{e}");
    let e = failure("compare", &[&a, "--checkpoint", &ckpt]);
    assert!(e.contains("two pictures"), "{e}");
    let bad_csv = dir.join("bad.csv");
    std::fs::write(&bad_csv, "a.png\n").unwrap();
    let e = failure("compare", &["--pairs", bad_csv.to_str().unwrap(), "--checkpoint", &ckpt]);
    assert!(e.contains("bad.csv line 1: expected two paths"), "{e}");
    let e = failure("compare", &[&a, &b, "--checkpoint", text_file.to_str().unwrap()]);
    assert!(e.contains("notes.png") && e.contains("not a safetensors file"), "{e}");

    // A folder of pictures: labelled by sub-folder, unreadable files skipped and counted.
    let folder = dir.join("folder");
    std::fs::create_dir_all(folder.join("shoe")).unwrap();
    std::fs::copy(&a, folder.join("shoe/0.png")).unwrap();
    std::fs::copy(&colour, folder.join("shoe/1.jpg")).unwrap();
    std::fs::write(folder.join("shoe/broken.png"), "x").unwrap();
    let o = run("embed", &["--checkpoint", &ckpt, "--images", folder.to_str().unwrap(), "--out", dir.join("f.npy").to_str().unwrap()]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped 1 of 3 pictures"));
    let index = std::fs::read_to_string(dir.join("f.csv")).unwrap();
    assert_eq!(index.lines().count(), 3);
    assert!(index.lines().nth(1).unwrap().ends_with(",shoe"));
}

#[test]
fn report_draws_its_pictures() {
    let out = temp_dir("report");
    // Without --data: the checkpoint remembers the folder it was trained on.
    ok("report", &[trained_run().to_str().unwrap(), "--limit", "300", "--episodes", "50", "--out", out.to_str().unwrap()]);
    for (name, width, height) in PICTURES {
        let picture = image::open(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")).to_rgb8();
        assert_eq!(picture.dimensions(), (width, height), "{name}");
        let inked = picture.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        let mut colours: Vec<[u8; 3]> = picture.pixels().map(|p| p.0).collect();
        colours.sort();
        colours.dedup();
        assert!(inked > (width * height / 50) as usize && colours.len() > 20, "{name} is not blank: {inked} inked pixels, {} colours", colours.len());
    }
    assert!(json(&out.join("evaluation.json"))["roc_auc"].is_number());
    let e = failure("report", &[out.to_str().unwrap(), "--data", SUBSET]);
    assert!(e.contains("metrics.csv") && e.contains("cannot read"), "{e}");
}

#[test]
fn held_out_classes_are_never_trained_on_and_scored_few_shot() {
    let out = temp_dir("holdout");
    let args = ["--data", SUBSET, "--train-limit", "1000", "--test-limit", "300", "--epochs", "2", "--batch-size", "32", "--holdout-classes", "9,5,7,8", "--out"];
    let text = ok("train", &[&args[..], &[out.to_str().unwrap()]].concat());
    assert!(text.contains("classes 5 (Sandal), 7 (Sneaker), 8 (Bag), 9 (Ankle boot) held out of training and validation"), "{text}");
    assert!(text.contains("images of 6 classes, validating on"), "{text}");
    let saved = Checkpoint::load(&out.join("best.safetensors")).unwrap();
    assert_eq!(saved.config.holdout_classes, [5, 7, 8, 9]);
    // 2 pairs for each of the training images of the six other classes: none of the held-out ones.
    let train = load_split(Path::new(SUBSET), "train").unwrap();
    let seen = train.labels[..1000].iter().filter(|l| ![5, 7, 8, 9].contains(*l)).count();
    assert!(text.contains(&format!("{} training pairs", 2 * seen)), "{text}");

    let report = out.join("eval.json");
    let ckpt = out.join("best.safetensors");
    ok("evaluate", &["--checkpoint", ckpt.to_str().unwrap(), "--data", SUBSET, "--json", report.to_str().unwrap()]);
    let e = json(&report);
    assert_eq!(e["class_choice"], "held-out");
    assert_eq!(e["classes"], serde_json::json!([5, 7, 8, 9]));
    assert_eq!(e["few_shot"]["classes"], serde_json::json!([5, 7, 8, 9]));
    assert_eq!((e["few_shot"]["n_way"].as_u64(), e["few_shot"]["k_shot"].as_u64()), (Some(4), Some(1)));
    assert!(number(&e["few_shot"]["accuracy"]) > 0.3, "above chance (0.25) on classes never seen: {}", e["few_shot"]);
    ok("evaluate", &["--checkpoint", ckpt.to_str().unwrap(), "--data", SUBSET, "--classes", "seen", "--k-shot", "5", "--json", report.to_str().unwrap()]);
    assert_eq!(json(&report)["classes"], serde_json::json!([0, 1, 2, 3, 4, 6]));
    let e = failure("train", &["--data", SUBSET, "--holdout-classes", "12", "--epochs", "1", "--out", temp_dir("holdout-bad").to_str().unwrap()]);
    assert!(e.contains("--holdout-classes: no class '12'; the classes are 0, 1, 2"), "{e}");
}

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/example-folders");

/// The example pictures of `classes`, `per_class` each, copied into a flat folder.
fn example_pictures(dir: &Path, classes: &[&str], per_class: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut copied = Vec::new();
    for class in classes {
        let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(EXAMPLES).join(class)).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files.into_iter().take(per_class) {
            let to = dir.join(format!("{}-{}", class.replace(' ', "_"), file.file_name().unwrap().to_string_lossy()));
            std::fs::copy(&file, &to).unwrap();
            copied.push(to);
        }
    }
    copied
}

#[test]
fn search_finds_neighbours_in_a_gallery_of_pictures_or_of_embeddings() {
    let ckpt = checkpoint();
    let dir = temp_dir("search");
    let gallery = dir.join("gallery");
    let pictures = example_pictures(&gallery, &["bag", "sneaker", "trouser", "ankle boot"], 8);
    // A query that is in the gallery, and one that is not.
    let outsider = dir.join("t-shirt.png");
    std::fs::copy(std::fs::read_dir(Path::new(EXAMPLES).join("t-shirt")).unwrap().flatten().next().unwrap().path(), &outsider).unwrap();
    let (inside, csv) = (pictures[9].to_str().unwrap(), dir.join("found.csv"));
    let text = ok("search", &[inside, outsider.to_str().unwrap(), "--gallery", gallery.to_str().unwrap(), "--checkpoint", &ckpt, "--k", "3", "--csv", csv.to_str().unwrap()]);
    assert!(text.contains("(itself)") && text.contains("1 queries are in the gallery themselves"), "{text}");
    let rows: Vec<String> = std::fs::read_to_string(&csv).unwrap().lines().map(String::from).collect();
    assert_eq!(rows[0], "query,query_label,rank,gallery,gallery_label,distance,verdict,itself");
    assert_eq!(rows.len(), 1 + 2 * 3);
    assert!(rows[1].ends_with(",true") && rows[1].contains(",same,"), "the query itself comes first, at distance ~0: {}", rows[1]);
    // Left out with --skip-self.
    let text = ok("search", &[inside, "--gallery", gallery.to_str().unwrap(), "--checkpoint", &ckpt, "--k", "3", "--skip-self", "--csv", csv.to_str().unwrap()]);
    assert!(!std::fs::read_to_string(&csv).unwrap().contains(",true\n") && text.contains("left out of their own results"), "{text}");

    // The same gallery embedded once with `embed`: the same neighbours.
    let npy = dir.join("gallery.npy");
    ok("embed", &["--checkpoint", &ckpt, "--images", gallery.to_str().unwrap(), "--out", npy.to_str().unwrap()]);
    let json_path = dir.join("found.json");
    ok("search", &[inside, "--gallery", npy.to_str().unwrap(), "--checkpoint", &ckpt, "--k", "5", "--json", json_path.to_str().unwrap()]);
    let from_npy = json(&json_path);
    ok("search", &[inside, "--gallery", gallery.to_str().unwrap(), "--checkpoint", &ckpt, "--k", "5", "--json", json_path.to_str().unwrap()]);
    assert_eq!(from_npy["results"], json(&json_path)["results"]);
    // More neighbours than the gallery holds: all of them, with a note.
    let o = run("search", &[inside, "--gallery", npy.to_str().unwrap(), "--checkpoint", &ckpt, "--k", "100", "--json", json_path.to_str().unwrap()]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("more than the gallery's 32 items"));
    assert_eq!(json(&json_path)["results"][0]["matches"].as_array().unwrap().len(), 32);

    // Bad input: a gallery of embeddings of another width, a missing index, an empty folder, k 0.
    let other = dir.join("other.npy");
    std::fs::write(&other, gpu_siamese::npy::npy_f32(&[0.5; 12], &[2, 6])).unwrap();
    std::fs::write(dir.join("other.csv"), "row,source,label\n0,a,\n1,b,\n").unwrap();
    let e = failure("search", &[inside, "--gallery", other.to_str().unwrap(), "--checkpoint", &ckpt]);
    assert!(e.contains("other.npy") && e.contains("6 values") && e.contains("48"), "{e}");
    std::fs::remove_file(dir.join("other.csv")).unwrap();
    std::fs::write(&other, gpu_siamese::npy::npy_f32(&[0.5; 96], &[2, 48])).unwrap();
    let e = failure("search", &[inside, "--gallery", other.to_str().unwrap(), "--checkpoint", &ckpt]);
    assert!(e.contains("other.csv") && e.contains("cannot read the index"), "{e}");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = failure("search", &[inside, "--gallery", empty.to_str().unwrap(), "--checkpoint", &ckpt]);
    assert!(e.contains("empty") && e.contains("no pictures"), "{e}");
    let e = failure("search", &[inside, "--gallery", gallery.to_str().unwrap(), "--checkpoint", &ckpt, "--k", "0"]);
    assert!(e.contains("--k 0"), "{e}");
    let e = failure("search", &[dir.join("missing.png").to_str().unwrap(), "--gallery", gallery.to_str().unwrap(), "--checkpoint", &ckpt]);
    assert!(e.contains("missing.png"), "{e}");
}

#[test]
fn dedup_finds_planted_near_duplicates() {
    let ckpt = checkpoint();
    let dir = temp_dir("dedup");
    let folder = dir.join("pictures");
    let pictures = example_pictures(&folder, &["bag", "sneaker", "trouser", "ankle boot", "t-shirt"], 6);
    // Four planted groups: each an original with a copy resized to 3x and one recompressed as JPEG.
    let planted: Vec<usize> = vec![0, 7, 14, 27];
    let mut groups: Vec<Vec<String>> = Vec::new();
    for &i in &planted {
        let original = image::open(&pictures[i]).unwrap();
        let stem = pictures[i].file_stem().unwrap().to_string_lossy().to_string();
        let resized = folder.join(format!("{stem}-resized.png"));
        original.resize_exact(original.width() * 3, original.height() * 3, image::imageops::FilterType::Triangle).save(&resized).unwrap();
        let jpeg = folder.join(format!("{stem}-recompressed.jpg"));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80).encode_image(&original.to_rgb8()).unwrap();
        std::fs::write(&jpeg, bytes).unwrap();
        groups.push([pictures[i].clone(), resized, jpeg].iter().map(|p| p.display().to_string()).collect());
    }
    let out = dir.join("out");
    // This small model puts a planted copy within ~0.004 of its original and different pictures
    // 0.013 apart or more: a threshold between the two.
    let found_groups = |cliques: bool| {
        let mut args = vec![folder.to_str().unwrap(), "--checkpoint", &ckpt, "--threshold", "0.008", "--out", out.to_str().unwrap()];
        if cliques {
            args.push("--cliques");
        }
        let text = ok("dedup", &args);
        let csv = std::fs::read_to_string(out.join("groups.csv")).unwrap();
        let mut found: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            found.entry(f[0].to_string()).or_default().insert(f[2].to_string());
        }
        (text, found.into_values().collect::<Vec<_>>())
    };
    for cliques in [false, true] {
        let (text, found) = found_groups(cliques);
        let planted: Vec<std::collections::BTreeSet<String>> = groups.iter().map(|g| g.iter().cloned().collect()).collect();
        for group in &planted {
            assert!(found.contains(group), "a planted group was not found whole and alone: {group:?}\n{text}");
        }
        let false_groups = found.iter().filter(|g| !planted.contains(g)).count();
        // This small model (3 epochs on 1,000 images) also holds two different sneakers within the
        // threshold: one false group, which the printout shows like any other.
        eprintln!("cliques {cliques}: {} groups, {false_groups} false", found.len());
        assert!(false_groups <= 2, "{text}");
    }
    assert!(image::open(out.join("groups.png")).is_ok());
    let e = failure("dedup", &[dir.join("nothing").to_str().unwrap(), "--checkpoint", &ckpt]);
    assert!(e.contains("nothing") && e.contains("not a folder"), "{e}");
}

#[test]
fn export_writes_onnx_models_of_the_checkpoint() {
    let ckpt = checkpoint();
    let dir = temp_dir("export");
    let (onnx, pair) = (dir.join("tower.onnx"), dir.join("pair.onnx"));
    let text = ok("export", &["--checkpoint", &ckpt, "--onnx", onnx.to_str().unwrap(), "--pair", pair.to_str().unwrap()]);
    assert!(text.contains("opset 13") && text.contains("[batch, 28, 28, 1]") && text.contains("embedding [batch, 48]"), "{text}");
    for path in [&onnx, &pair] {
        let bytes = std::fs::read(path).unwrap();
        // A protobuf ModelProto: field 1 (ir_version, a varint) first, the producer's name inside.
        assert_eq!(bytes[0], 0x08, "{}", path.display());
        assert!(bytes.windows(11).any(|w| w == b"gpu-siamese"));
    }
    let e = failure("export", &["--checkpoint", dir.join("missing.safetensors").to_str().unwrap(), "--onnx", onnx.to_str().unwrap()]);
    assert!(e.contains("missing.safetensors"), "{e}");
}

#[test]
fn summary_shows_each_layer_and_the_steps_memory() {
    let text = ok("summary", &["--arch", "small", "--batch-size", "64"]);
    for wanted in ["layer", "output", "parameters", "input", "28x28x1", "flatten", "(a view)", "trainable parameters", "a training step of 64 pairs", "GPU memory"] {
        assert!(text.contains(wanted), "{wanted:?} in:\n{text}");
    }
    // The small tower's parameters, as Keras counts them for the same layers.
    let spec: gpu_siamese::model::TowerSpec = gpu_siamese::model::SMALL_TOWER.parse().unwrap();
    let plan = gpu_siamese::model::Plan::new(&spec, gpu_siamese::model::InputShape::FASHION_MNIST, 2, 0).unwrap();
    assert!(text.contains(&format!("{} trainable parameters", plan.trainable_params())), "{text}");
}

#[test]
fn bench_reads_the_ceiling_in_its_own_run_and_names_each_variant() {
    // The arithmetic ceiling is the best of a sweep of probes, each named; the engine's launches say
    // which variant ran, and every kernel's share of the ceiling comes from this run's reading.
    let text = ok("bench", &["--arch", "conv(8,3),maxpool,conv(16,3),gap,dense(8)", "--image-size", "12", "--batch-size", "4", "--steps", "1", "--repeats", "1", "--warmup", "0", "--roofline", "--json"]);
    let report: Value = serde_json::from_str(&text).unwrap();
    let roofline = &report["roofline"];
    let probes = roofline["arithmetic_probes"].as_array().unwrap();
    assert_eq!(probes.len(), 24, "4, 8 and 16 chains; a step or four an iteration; vec4 and scalar; fma() and a * b + c");
    let best = probes.iter().map(|p| number(&p[1])).fold(0.0, f64::max);
    assert!(best > 0.0 && number(&roofline["gflop_per_s"]) == best, "the ceiling is the best probe: {roofline}");
    assert!(probes.iter().any(|p| p[0] == roofline["arithmetic_probe"]), "and names it: {roofline}");
    let kernels = report["kernels"].as_array().unwrap();
    for k in kernels {
        let engine = k["name"].as_str().unwrap().starts_with("conv2d_gemm_") && !k["name"].as_str().unwrap().contains("grad_z");
        let variant = k["variant"].as_str().unwrap();
        assert_eq!(engine, !variant.is_empty(), "{k}");
        if engine {
            assert!(["Subgroup ", "Workgroup ", "Direct "].iter().any(|s| variant.starts_with(s)) && variant.contains('x'), "{variant}");
        }
        let share = number(&k["arithmetic_share"]);
        assert!((share - number(&k["gflop_per_s"]) / best).abs() < 1e-9, "{k}");
        // The engine's products count their lanes' loads, set beside this run's load rate.
        assert_eq!(engine, k["lane_loads"].as_f64().unwrap() > 0.0, "{k}");
        assert_eq!(engine, k["load_share"].is_number(), "{k}");
        if engine {
            let seconds = number(&k["ms"]) * 1e-3;
            let expected = number(&k["lane_loads"]) * 1e-9 / seconds / number(&roofline["gfloat_loads_per_s"]);
            assert!((number(&k["load_share"]) - expected).abs() < 1e-9 * expected.max(1.0), "{k}");
        }
    }
    assert!(number(&roofline["gfloat_loads_per_s"]) > 0.0, "{roofline}");
}
