//! `gpu-siamese report`: a run's pictures, as PNG files. The training curves from its metrics.csv; the
//! rest from an evaluation of its checkpoint on the test set: the distance histograms of same-class and
//! different-class pairs with the threshold, the ROC curve, a grid of test pairs with their distances
//! (the tutorial's closing figure, with mistakes marked) and a PCA map of the test embeddings by class.

use crate::evaluate::{evaluate, print, EvalOptions, Evaluation, Trained};
use crate::gpu::{Gpu, Kernels};
use crate::plot::{Axes, Canvas, Colour, BLACK, GREEN, GREY, PALETTE, RED};
use crate::train::METRICS_FILE;
use std::path::{Path, PathBuf};

/// Fashion-MNIST's class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// The pictures `report` writes, with their sizes in pixels (width, height).
pub const PICTURES: [(&str, u32, u32); 5] =
    [("curves.png", 1200, 480), ("distances.png", 900, 500), ("roc.png", 640, 640), ("pairs.png", 1148, 530), ("embeddings.png", 1000, 800)];

/// The evaluation report writes beside its pictures, as `evaluate` does.
pub const EVALUATION_FILE: &str = "evaluation.json";

/// Every file report writes into its folder.
pub fn files() -> impl Iterator<Item = &'static str> {
    PICTURES.iter().map(|(name, _, _)| *name).chain([EVALUATION_FILE])
}

/// One row of a run's metrics.csv.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRow {
    pub epoch: f64,
    pub loss: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub threshold: f64,
    pub val_acc_at_threshold: f64,
}

/// A run's metrics.csv, its columns found by name.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRow>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e} (a run folder holds it after its first epoch)", path.display()))?;
    let rows = parse_metrics(&text, path)?;
    if rows.is_empty() {
        return Err(format!("{}: no epochs in it yet", path.display()));
    }
    Ok(rows)
}

/// The rows of metrics.csv's `text` (none when it holds only its header); `path` names it in errors.
pub fn parse_metrics(text: &str, path: &Path) -> Result<Vec<EpochRow>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| header.iter().position(|&h| h == name).ok_or_else(|| format!("{}: no column '{name}' in its header", path.display()));
    let columns = [column("epoch")?, column("loss")?, column("val_loss")?, column("val_acc")?, column("threshold")?, column("val_acc_at_threshold")?];
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let value = |i: usize| -> Result<f64, String> {
            fields.get(i).and_then(|f| f.trim().parse().ok()).ok_or_else(|| format!("{} line {}: column {} is not a number", path.display(), n + 2, header[i]))
        };
        rows.push(EpochRow {
            epoch: value(columns[0])?,
            loss: value(columns[1])?,
            val_loss: value(columns[2])?,
            val_acc: value(columns[3])?,
            threshold: value(columns[4])?,
            val_acc_at_threshold: value(columns[5])?,
        });
    }
    Ok(rows)
}

/// Writes the report's pictures and the evaluation into `out`; returns the files written.
pub fn report(run: &Path, checkpoint: &Path, opts: &EvalOptions, out: &Path) -> Result<Vec<PathBuf>, String> {
    let rows = read_metrics(&run.join(METRICS_FILE))?;
    let trained = Trained::load(checkpoint)?;
    let gpu = Gpu::new().map_err(|e| e.to_string())?;
    let kernels = Kernels::tuned(&gpu, true);
    let evaluation = evaluate(&gpu, &kernels, &trained, opts)?;
    print(&evaluation);
    let names = evaluation.class_names.clone();
    let threshold = trained.threshold();
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let canvases = [
        curves(&rows),
        distances(&evaluation, threshold),
        roc(&evaluation, threshold),
        pairs(&evaluation, threshold, trained.input(), &names),
        embeddings(&evaluation, trained.plan.embedding_dim, &names),
    ];
    let mut written = Vec::new();
    for ((name, _, _), canvas) in PICTURES.iter().zip(canvases) {
        let path = out.join(name);
        canvas.save(&path)?;
        written.push(path);
    }
    let json = out.join(EVALUATION_FILE);
    let text = serde_json::to_string_pretty(&evaluation).map_err(|e| e.to_string())?;
    crate::checkpoint::write_atomically(&json, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", json.display()))?;
    written.push(json);
    println!();
    for path in &written {
        println!("written: {}", path.display());
    }
    Ok(written)
}

fn canvas_for(name: &str) -> Canvas {
    let (_, w, h) = PICTURES.iter().find(|p| p.0 == name).expect("a listed picture");
    Canvas::new(*w, *h)
}

/// A data range with a margin, never empty.
fn padded(min: f64, max: f64) -> (f64, f64) {
    let span = (max - min).max(1e-3);
    (min - 0.05 * span, max + 0.05 * span)
}

/// The 0.5th and 99.5th percentiles of `values`.
fn bulk(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return (0.0, 1.0);
    }
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.005), at(0.995))
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Loss and val_loss per epoch (left), pair accuracy per epoch (right).
fn curves(rows: &[EpochRow]) -> Canvas {
    let mut canvas = canvas_for("curves.png");
    // Half an epoch either side, so that a short run's points are not on the frame.
    let epochs = (rows[0].epoch - 0.5, rows[rows.len() - 1].epoch + 0.5);
    // Losses fall and accuracies rise: each key goes in the corner its curves leave free.
    type Series = (&'static str, fn(&EpochRow) -> f64, Colour);
    let panels: [(&str, &str, [Series; 2], f32, bool); 2] = [
        ("Loss per epoch", "loss", [("loss (training)", |r| r.loss, PALETTE[0]), ("val_loss (test pairs)", |r| r.val_loss, PALETTE[1])], 90.0, true),
        (
            "Test pair accuracy",
            "accuracy",
            [("at the best threshold", |r| r.val_acc, PALETTE[2]), ("at the calibrated threshold", |r| r.val_acc_at_threshold, PALETTE[4])],
            690.0,
            false,
        ),
    ];
    for (title, y_title, series, left, key_on_top) in panels {
        let y = min_max(rows.iter().flat_map(|r| series.iter().map(move |s| (s.1)(r))));
        // Room for the key on its side of the curves, so that it hides no point.
        let (lo, hi) = padded(y.0, y.1);
        let room = 0.35 * (hi - lo);
        let y = if key_on_top { (lo, hi + room) } else { (lo - room, hi) };
        let axes = Axes { left, top: 60.0, right: left + 480.0, bottom: 420.0, x: epochs, y, whole_x: true };
        axes.draw(&mut canvas, title, "epoch", y_title);
        for (_, value, colour) in &series {
            let points: Vec<(f32, f32)> = rows.iter().map(|r| (axes.px(r.epoch), axes.py(value(r)))).collect();
            canvas.polyline(&points, *colour, 2.0);
            if rows.len() <= 100 {
                points.iter().for_each(|&(x, y)| canvas.disc(x, y, 3.0, *colour, 1.0));
            }
        }
        axes.legend(&mut canvas, &series.map(|(label, _, colour)| (label, colour)), key_on_top);
    }
    canvas
}

/// Histograms of the test pairs' distances, same-class and different-class, as fractions of their kind,
/// with the calibrated threshold.
fn distances(e: &Evaluation, threshold: f32) -> Canvas {
    let mut canvas = canvas_for("distances.png");
    const BINS: usize = 60;
    let top = e.distances.iter().fold(threshold, |m, &d| m.max(d)) as f64 * 1.02;
    let histogram = |same: bool| {
        let mut counts = [0usize; BINS];
        let chosen: Vec<f32> = e.distances.iter().zip(&e.labels).filter(|(_, &y)| (y == 1.0) == same).map(|(&d, _)| d).collect();
        for &d in &chosen {
            counts[((d as f64 / top * BINS as f64) as usize).min(BINS - 1)] += 1;
        }
        counts.map(|c| c as f64 / chosen.len().max(1) as f64)
    };
    let (same, different) = (histogram(true), histogram(false));
    let peak = same.iter().chain(&different).fold(0.0f64, |m, &v| m.max(v));
    let axes = Axes { left: 90.0, top: 60.0, right: 870.0, bottom: 440.0, x: (0.0, top), y: (0.0, peak * 1.1), whole_x: false };
    axes.draw(&mut canvas, "Distances of the test pairs", "distance between the two embeddings", "fraction of the pairs of its kind");
    for (counts, colour) in [(same, PALETTE[0]), (different, PALETTE[1])] {
        for (i, &v) in counts.iter().enumerate() {
            let x0 = axes.px(top * i as f64 / BINS as f64);
            let x1 = axes.px(top * (i + 1) as f64 / BINS as f64);
            canvas.fill_rect(x0, axes.py(v), x1, axes.py(0.0), colour, 0.55);
        }
    }
    let x = axes.px(threshold as f64);
    canvas.dashed_vline(x, axes.top, axes.bottom, BLACK, 2.0);
    canvas.text(x + 6.0, axes.top + 8.0, &format!("threshold {threshold:.3}"), BLACK, 1);
    let accuracy = format!("accuracy at it: {:.4}", e.at_calibrated_threshold.accuracy);
    canvas.text(x + 6.0, axes.top + 22.0, &accuracy, GREY, 1);
    axes.legend(&mut canvas, &[("same class", PALETTE[0]), ("different classes", PALETTE[1])], true);
    canvas
}

/// The ROC curve, the equal-error point and the calibrated threshold's point.
fn roc(e: &Evaluation, threshold: f32) -> Canvas {
    let mut canvas = canvas_for("roc.png");
    let axes = Axes { left: 90.0, top: 60.0, right: 610.0, bottom: 580.0, x: (0.0, 1.0), y: (0.0, 1.0), whole_x: false };
    let title = match e.roc_auc {
        Some(auc) => format!("ROC curve, AUC {auc:.4}"),
        None => "ROC curve (one kind of pair only)".to_string(),
    };
    axes.draw(&mut canvas, &title, "false-accept rate (different pairs called same)", "true-accept rate (same pairs called same)");
    canvas.line((axes.px(0.0), axes.py(0.0)), (axes.px(1.0), axes.py(1.0)), [200, 200, 200], 1.0);
    // At most ~2000 vertices: a curve over 20,000 pairs has more points than pixels.
    let step = e.roc.len().div_ceil(2000).max(1);
    let mut points: Vec<(f32, f32)> = e.roc.iter().step_by(step).map(|p| (axes.px(p.far), axes.py(p.tar))).collect();
    if let Some(p) = e.roc.last() {
        points.push((axes.px(p.far), axes.py(p.tar)));
    }
    canvas.polyline(&points, PALETTE[0], 2.0);
    let mut legend = vec![("ROC curve", PALETTE[0])];
    let eer_label;
    if let Some(eer) = e.eer {
        canvas.disc(axes.px(eer), axes.py(1.0 - eer), 5.0, PALETTE[3], 1.0);
        eer_label = format!("equal error rate {eer:.4}");
        legend.push((&eer_label, PALETTE[3]));
    }
    let s = &e.at_calibrated_threshold;
    canvas.disc(axes.px(s.far), axes.py(s.recall), 5.0, PALETTE[2], 1.0);
    let calibrated = format!("threshold {threshold:.3}");
    legend.push((&calibrated, PALETTE[2]));
    axes.legend(&mut canvas, &legend, false);
    canvas
}

/// Test pairs with their distances and verdicts, framed green when right and red when wrong: two rows
/// of the first test pairs, then a row of the most confident mistakes.
fn pairs(e: &Evaluation, threshold: f32, input: crate::model::InputShape, names: &[String]) -> Canvas {
    let mut canvas = canvas_for("pairs.png");
    const COLUMNS: usize = 6;
    let scale = (84 / input.h.max(input.w)).max(1) as u32;
    let (pic_w, pic_h) = (input.w as u32 * scale, input.h as u32 * scale);
    let (cell_w, cell_h) = (188u32, pic_h + 56);
    let wrong = |i: usize| (e.distances[i] < threshold) != (e.labels[i] == 1.0);
    let mut mistakes: Vec<usize> = (0..e.distances.len()).filter(|&i| wrong(i)).collect();
    mistakes.sort_by(|&a, &b| (e.distances[b] - threshold).abs().total_cmp(&(e.distances[a] - threshold).abs()).then(a.cmp(&b)));
    let rows: [(String, Vec<usize>); 2] = [
        ("The first test pairs".to_string(), (0..e.distances.len().min(2 * COLUMNS)).collect()),
        ("The most confident mistakes".to_string(), mistakes.into_iter().take(COLUMNS).collect()),
    ];
    canvas.text(20.0, 12.0, &format!("Test pairs at threshold {threshold:.3}: green right, red wrong"), BLACK, 2);
    let len = input.len();
    let mut y = 44u32;
    for (title, chosen) in rows {
        canvas.text(20.0, y as f32, &title, GREY, 1);
        y += 14;
        for (k, &i) in chosen.iter().enumerate() {
            let (col, row) = ((k % COLUMNS) as u32, (k / COLUMNS) as u32);
            let (x0, y0) = (20 + col * cell_w, y + row * cell_h);
            let pair = e.pair_list[i];
            for (j, image) in [pair.a, pair.b].into_iter().enumerate() {
                let pixels = &e.set.pixels[image as usize * len..(image as usize + 1) * len];
                canvas.picture(x0 + 4 + j as u32 * (pic_w + 4), y0 + 4, pixels, input, scale);
            }
            let colour = if wrong(i) { RED } else { GREEN };
            canvas.frame(x0 as f32, y0 as f32, (x0 + 2 * pic_w + 12) as f32, (y0 + pic_h + 8) as f32, colour, 3.0);
            let verdict = if e.distances[i] < threshold { "same" } else { "different" };
            canvas.text(x0 as f32 + 2.0, (y0 + pic_h + 14) as f32, &format!("d {:.3}: {verdict}", e.distances[i]), colour, 1);
            let (la, lb) = (e.set.labels[pair.a as usize] as usize, e.set.labels[pair.b as usize] as usize);
            // The classes, on two lines when both do not fit on one; each cut to the cell's width.
            let fits = (cell_w / crate::plot::GLYPH) as usize - 1;
            let cut = |t: String| if t.chars().count() > fits { t.chars().take(fits - 2).chain("..".chars()).collect() } else { t };
            let both = format!("{} / {}", names[la], names[lb]);
            let lines = match () {
                _ if la == lb => vec![names[la].clone()],
                _ if both.chars().count() <= fits => vec![both],
                _ => vec![format!("{} /", names[la]), names[lb].clone()],
            };
            for (n, line) in lines.into_iter().enumerate() {
                canvas.text(x0 as f32 + 2.0, (y0 + pic_h + 28 + 12 * n as u32) as f32, &cut(line), GREY, 1);
            }
        }
        y += cell_h * chosen.len().div_ceil(COLUMNS).max(1) as u32 + 10;
    }
    canvas
}

/// The two principal components of `embeddings` ([count, dim]): each item's coordinates on them and
/// the fraction of the variance each explains. Power iteration on the covariance, in f64, from a fixed
/// start, each component's sign set so that its largest entry is positive: the same input, the same map.
pub fn pca_2d(embeddings: &[f32], dim: usize) -> (Vec<[f64; 2]>, [f64; 2]) {
    let count = embeddings.len() / dim;
    let mut mean = vec![0.0f64; dim];
    for row in embeddings.chunks(dim) {
        row.iter().zip(&mut mean).for_each(|(&v, m)| *m += v as f64 / count as f64);
    }
    let mut cov = vec![0.0f64; dim * dim];
    for row in embeddings.chunks(dim) {
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] += (row[i] as f64 - mean[i]) * (row[j] as f64 - mean[j]) / count as f64;
            }
        }
    }
    let total: f64 = (0..dim).map(|i| cov[i * dim + i]).sum();
    let mut components = Vec::new();
    let mut explained = [0.0; 2];
    for e in &mut explained {
        let mut v: Vec<f64> = (0..dim).map(|i| 1.0 + i as f64 / dim as f64).collect();
        let mut lambda = 0.0;
        for _ in 0..1000 {
            let w: Vec<f64> = (0..dim).map(|i| (0..dim).map(|j| cov[i * dim + j] * v[j]).sum()).collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            lambda = norm;
            v = w.into_iter().map(|x| x / norm).collect();
        }
        let largest = v.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if largest < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        // Deflate: what is left of the covariance once this direction is taken out.
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] -= lambda * v[i] * v[j];
            }
        }
        *e = if total > 0.0 { lambda / total } else { 0.0 };
        components.push(v);
    }
    let coords = embeddings
        .chunks(dim)
        .map(|row| {
            let project = |c: &[f64]| row.iter().zip(&mean).zip(c).map(|((&x, m), c)| (x as f64 - m) * c).sum::<f64>();
            [project(&components[0]), project(&components[1])]
        })
        .collect();
    (coords, explained)
}

/// The test embeddings on their first two principal components, coloured by class.
fn embeddings(e: &Evaluation, dim: usize, names: &[String]) -> Canvas {
    let mut canvas = canvas_for("embeddings.png");
    let (coords, explained) = pca_2d(&e.embeddings, dim);
    // The view holds the bulk (the 0.5th to 99.5th percentile on each axis): a few outliers would
    // otherwise squeeze the clusters into a corner. Points outside are drawn on the frame's edge.
    let x = bulk(coords.iter().map(|c| c[0]));
    let y = bulk(coords.iter().map(|c| c[1]));
    let axes = Axes { left: 90.0, top: 60.0, right: 770.0, bottom: 740.0, x: padded(x.0, x.1), y: padded(y.0, y.1), whole_x: false };
    let outside = coords.iter().filter(|c| c[0] < axes.x.0 || c[0] > axes.x.1 || c[1] < axes.y.0 || c[1] > axes.y.1).count();
    let title = if outside == 0 { "Test embeddings, PCA".to_string() } else { format!("Test embeddings, PCA ({outside} outliers on the edge)") };
    axes.draw(
        &mut canvas,
        &title,
        &format!("first principal component ({:.0}% of the variance)", 100.0 * explained[0]),
        &format!("second principal component ({:.0}%)", 100.0 * explained[1]),
    );
    let colour_of = |label: crate::data::Label| {
        let rank = e.classes.iter().position(|&c| c == label).unwrap_or(0);
        PALETTE[rank % PALETTE.len()]
    };
    // Small sets get larger dots.
    let radius = if coords.len() < 2000 { 3.5 } else { 2.0 };
    for (c, &label) in coords.iter().zip(&e.set.labels) {
        let (x, y) = (c[0].clamp(axes.x.0, axes.x.1), c[1].clamp(axes.y.0, axes.y.1));
        canvas.disc(axes.px(x), axes.py(y), radius, colour_of(label), 0.6);
    }
    for (i, &class) in e.classes.iter().enumerate() {
        let row = 70.0 + 18.0 * i as f32;
        canvas.disc(792.0, row + 4.0, 5.0, colour_of(class), 1.0);
        canvas.text(804.0, row, &format!("{class}: {}", names[class as usize]), BLACK, 1);
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_finds_the_direction_of_spread() {
        // Points along (3, 4)/5 with a little spread across it.
        let points: Vec<f32> = (0..50)
            .flat_map(|i| {
                let t = i as f32 - 25.0;
                let across = if i % 2 == 0 { 0.1 } else { -0.1 };
                [3.0 * t / 5.0 - 4.0 * across / 5.0 + 7.0, 4.0 * t / 5.0 + 3.0 * across / 5.0 - 2.0]
            })
            .collect();
        let (coords, explained) = pca_2d(&points, 2);
        assert!(explained[0] > 0.999 && explained[0] + explained[1] > 0.999999, "{explained:?}");
        // The first coordinate is the position along the line, centred.
        for (i, c) in coords.iter().enumerate() {
            assert!((c[0] - (i as f64 - 25.0 + 0.5)).abs() < 1e-3, "{i}: {c:?}");
            assert!(c[1].abs() < 0.11);
        }
    }

    #[test]
    fn metrics_columns_are_found_by_name() {
        let dir = std::env::temp_dir().join(format!("gpu-siamese-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        std::fs::write(&path, "epoch,loss,val_loss,val_acc,threshold,val_acc_at_threshold,seconds\n1,0.2,0.19,0.7,0.5,0.69,3.5\n2,0.18,0.17,0.75,0.5,0.74,3.4\n").unwrap();
        let rows = read_metrics(&path).unwrap();
        assert_eq!(rows[1], EpochRow { epoch: 2.0, loss: 0.18, val_loss: 0.17, val_acc: 0.75, threshold: 0.5, val_acc_at_threshold: 0.74 });
        std::fs::write(&path, "epoch,loss\n1,0.2\n").unwrap();
        assert!(read_metrics(&path).unwrap_err().contains("no column 'val_loss'"));
        std::fs::write(&path, "epoch,loss,val_loss,val_acc,threshold,val_acc_at_threshold,seconds\n1,x,0.19,0.7,0.5,0.69,3.5\n").unwrap();
        assert!(read_metrics(&path).unwrap_err().contains("line 2: column loss is not a number"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
