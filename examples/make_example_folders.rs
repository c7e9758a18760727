//! Makes assets/example-folders: a small dataset laid out as users' own data comes, one folder per
//! class, from the real Fashion-MNIST pictures in assets/fashion-mnist-small. Each picture is drawn as
//! a photo would be: a dark garment on a light, tinted background, at its own size and aspect, saved
//! as PNG or JPEG. Run with `cargo run --release --example make_example_folders`; the output is the
//! same every time.
//!
//! Larger sets for measuring: `-- --source DIR --out DIR --per-class N --all-classes --size S` takes
//! the training images of another IDX folder (the full Fashion-MNIST), all ten classes, and draws
//! every picture S x S pixels. An --out folder that holds anything is refused (the default one, this
//! repository's own, is made anew).

use gpu_siamese::data::load_split;
use image::imageops::FilterType;
use image::{ImageFormat, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The classes used (Fashion-MNIST label, folder name) and pictures per class.
const CLASSES: [(u32, &str); 6] = [(0, "t-shirt"), (1, "trouser"), (5, "sandale été"), (7, "sneaker"), (8, "bag"), (9, "ankle boot")];
const PER_CLASS: usize = 50;

/// Fashion-MNIST's classes, as folder names, for --all-classes.
const ALL_CLASSES: [(u32, &str); 10] = [
    (0, "t-shirt"), (1, "trouser"), (2, "pullover"), (3, "dress"), (4, "coat"),
    (5, "sandale été"), (6, "shirt"), (7, "sneaker"), (8, "bag"), (9, "ankle boot"),
];

fn main() -> std::process::ExitCode {
    match make() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn make() -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Result<Option<String>, String> {
        match args.iter().position(|a| a == name) {
            None => Ok(None),
            Some(i) => args.get(i + 1).filter(|v| !v.starts_with("--")).cloned().map(Some).ok_or(format!("{name} needs a value")),
        }
    };
    let number = |name: &str| -> Result<Option<u32>, String> {
        flag(name)?.map(|n| n.parse::<u32>().ok().filter(|&n| n > 0).ok_or(format!("{name} {n}: a whole number, 1 or more"))).transpose()
    };
    let source = flag("--source")?.map(Into::into).unwrap_or_else(|| root.join("assets/fashion-mnist-small"));
    let default_out = root.join("assets/example-folders");
    let out: std::path::PathBuf = flag("--out")?.map(Into::into).unwrap_or_else(|| default_out.clone());
    let per_class = number("--per-class")?.map_or(PER_CLASS, |n| n as usize);
    let size = number("--size")?;
    let classes: &[(u32, &str)] = if args.iter().any(|a| a == "--all-classes") { &ALL_CLASSES } else { &CLASSES };
    // Never delete what the user had: a folder of theirs must be new or empty.
    if out != default_out && std::fs::read_dir(&out).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!("--out {}: the folder holds files already; give a new or empty folder", out.display()));
    }
    if out == default_out {
        let _ = std::fs::remove_dir_all(&out);
    }
    let set = load_split(&source, "train").map_err(|e| e.to_string())?;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    for &(label, name) in classes {
        let folder = out.join(name);
        std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
        let members: Vec<usize> = (0..set.count).filter(|&i| set.labels[i] == label).take(per_class).collect();
        for (n, &i) in members.iter().enumerate() {
            let pixels = &set.pixels[i * 784..(i + 1) * 784];
            let background: [f32; 3] = std::array::from_fn(|_| rng.random_range(200.0..255.0));
            let ink: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..90.0));
            let small = RgbImage::from_fn(28, 28, |x, y| {
                let a = pixels[(y * 28 + x) as usize] as f32 / 255.0;
                image::Rgb(std::array::from_fn(|c| (background[c] * (1.0 - a) + ink[c] * a).round() as u8))
            });
            let height = size.unwrap_or_else(|| rng.random_range(40..=72u32));
            let aspect: f32 = rng.random_range(0.8..1.25);
            let width = if size.is_some() { height } else { (height as f32 * aspect).round() as u32 };
            let picture = image::imageops::resize(&small, width, height, FilterType::Triangle);
            let (file, format) = if n % 2 == 0 { (format!("{n:03}.png"), ImageFormat::Png) } else { (format!("{n:03}.jpg"), ImageFormat::Jpeg) };
            picture.save_with_format(folder.join(&file), format).map_err(|e| format!("cannot write {}: {e}", folder.join(&file).display()))?;
        }
    }
    println!("wrote {} pictures in {} class folders to {}", classes.len() * per_class, classes.len(), out.display());
    Ok(())
}
