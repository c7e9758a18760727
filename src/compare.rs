//! `gpu-siamese compare`: the distance between two pictures and the verdict at the checkpoint's
//! calibrated threshold, or of every pair a CSV lists, written as CSV.

use crate::checkpoint::write_atomically;
use crate::data::{csv_field, decode_all, parse_csv_line};
use crate::evaluate::Trained;
use crate::gpu::{Gpu, Kernels};
use crate::outputs::{Input, Output};
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub struct CompareOptions<'p> {
    /// Two pictures, or none with `pairs`.
    pub images: &'p [PathBuf],
    /// A CSV of pairs of pictures.
    pub pairs: Option<&'p Path>,
    /// Where the CSV's results go; standard output without.
    pub out: Option<&'p Path>,
    /// Instead of the checkpoint's.
    pub threshold: Option<f32>,
    pub polarity: crate::data::Polarity,
    /// Images per forward pass.
    pub batch_size: Option<usize>,
}

pub fn compare(gpu: &Gpu, kernels: &Kernels, trained: &Trained, opts: &CompareOptions) -> Result<()> {
    let CompareOptions { images, pairs, out, threshold, polarity, batch_size } = *opts;
    let (list, lines): (Vec<(PathBuf, PathBuf)>, Vec<usize>) = match (pairs, images) {
        (None, [a, b]) => (vec![(a.clone(), b.clone())], vec![0]),
        (None, _) => return Err("compare takes two pictures (compare A.png B.png --checkpoint C), or a CSV of them with --pairs".into()),
        (Some(_), [_, ..]) => return Err("give either two pictures or --pairs, not both".into()),
        (Some(csv), []) => read_pair_list(csv)?.into_iter().map(|(a, b, line)| ((a, b), line)).unzip(),
    };
    // The pictures a list names are inputs too: none may be where the results go.
    if let (Some(csv), Some(out)) = (pairs, out) {
        let listed: Vec<Input> = list
            .iter()
            .zip(&lines)
            .flat_map(|((a, b), line)| [a, b].map(|p| Input::new(format!("a picture {} lists (line {line})", csv.display()), p)))
            .collect();
        crate::outputs::check(&listed, &[Output::new("--out", out)], true)?;
    }
    let threshold = threshold.unwrap_or(trained.threshold());
    // Every picture decoded on every core; the first that cannot be stops with its name (and, from a
    // list, its line).
    let paths: Vec<PathBuf> = list.iter().map(|p| p.0.clone()).chain(list.iter().map(|p| p.1.clone())).collect();
    let mut pixels = Vec::with_capacity(paths.len() * trained.input().len());
    for (i, decoded) in decode_all(&paths, trained.input()).into_iter().enumerate() {
        match (decoded, pairs) {
            (Ok(bytes), _) => pixels.extend(bytes),
            (Err(e), Some(csv)) => return Err(format!("{} line {}: {e}", csv.display(), lines[i % list.len()]).into()),
            (Err(e), None) => return Err(e.into()),
        }
    }
    trained.match_polarity(&mut pixels, polarity);
    let count = list.len() as u32;
    let rows: Vec<(u32, u32)> = (0..count).map(|i| (i, count + i)).collect();
    let distances = trained.tower(gpu, kernels, batch_size)?.distances(&pixels, &rows)?;
    let verdict = |d: f32| if d < threshold { "same" } else { "different" };
    if pairs.is_none() {
        let d = distances[0];
        let source = if threshold == trained.threshold() { "the checkpoint's, calibrated on training pairs" } else { "given" };
        println!("distance {d:.4}: {} (threshold {threshold:.4}, {source})", verdict(d));
        return Ok(());
    }
    let mut csv = String::from("a,b,distance,verdict\n");
    for ((pa, pb), d) in list.iter().zip(&distances) {
        let (pa, pb) = (pa.display().to_string(), pb.display().to_string());
        csv.push_str(&format!("{},{},{d:.6},{}\n", csv_field(&pa), csv_field(&pb), verdict(*d)));
    }
    match out {
        Some(path) => {
            write_atomically(path, csv.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("{} pairs compared at threshold {threshold:.4}; written: {}", list.len(), path.display());
        }
        None => print!("{csv}"),
    }
    Ok(())
}

/// The pairs of a CSV file of two picture paths per line, with their line numbers; relative paths are
/// taken from its folder.
fn read_pair_list(csv: &Path) -> Result<Vec<(PathBuf, PathBuf, usize)>> {
    let text = crate::inputs::read_text(csv, "pairs list", crate::inputs::MOST_TEXT_BYTES)?;
    // Spreadsheets often save UTF-8 with a byte-order mark, which is not part of the first path.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let base = csv.parent().unwrap_or(Path::new(""));
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = parse_csv_line(line).map_err(|e| format!("{} line {}: {e}", csv.display(), n + 1))?;
        if pairs.is_empty() && n == 0 && fields.len() == 2 && fields[0].trim().eq_ignore_ascii_case("a") && fields[1].trim().eq_ignore_ascii_case("b") {
            continue;
        }
        let [a, b] = fields.as_slice() else {
            return Err(format!("{} line {}: expected two paths, found {} fields", csv.display(), n + 1, fields.len()).into());
        };
        if let Some(empty) = [a, b].iter().position(|f| f.trim().is_empty()) {
            return Err(format!("{} line {}: the {} path is empty", csv.display(), n + 1, ["first", "second"][empty]).into());
        }
        pairs.push((base.join(a.trim()), base.join(b.trim()), n + 1));
    }
    if pairs.is_empty() {
        return Err(format!("{}: no pairs in it", csv.display()).into());
    }
    Ok(pairs)
}

