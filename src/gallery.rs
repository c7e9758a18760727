//! `gpu-siamese search`: the k nearest gallery items of each query, with distances and the verdict at a
//! threshold, as a table, CSV and JSON. Queries and galleries are pictures (embedded on the fly) or an
//! `embed` output (`.npy` with its `.csv` index beside it), so a gallery is embedded once.

use crate::checkpoint::write_atomically_with;
use crate::data::{csv_field, Polarity};
use crate::embed::load_sources;
use crate::evaluate::Trained;
use crate::gpu::{Gpu, Kernels};
use crate::search::{knn, Neighbours, NO_ROW};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The most bytes an embed output may hold: 16 GiB would be 64 million 64-value embeddings.
const MOST_NPY_BYTES: u64 = 16 << 30;

/// Embeddings with what each came from: a source (a file, or IDX file#index) and a label (its class
/// folder or IDX label; empty when unknown).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmbeddingSet {
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub sources: Vec<String>,
    pub labels: Vec<String>,
}

impl EmbeddingSet {
    pub fn len(&self) -> usize {
        self.sources.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// An `embed` output: `path` (.npy, [count, dim] float32) and its index beside it (.csv:
    /// row,source,label). `dim` is the checkpoint's.
    pub fn from_npy(path: &Path, dim: usize) -> Result<EmbeddingSet> {
        let bytes = crate::inputs::read_bounded(path, "file of embeddings", MOST_NPY_BYTES)?;
        let (shape, vectors) = crate::npy::read_f32(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let [count, width] = shape[..] else {
            return Err(format!("{}: holds an array of shape {shape:?}; embeddings are [count, dim]", path.display()).into());
        };
        if width != dim {
            return Err(format!("{}: holds embeddings of {width} values, the checkpoint's are {dim}: embed them with this checkpoint", path.display()).into());
        }
        let index = path.with_extension("csv");
        if !index.exists() {
            return Err(format!("{}: cannot read the index of {} (no such file); embed writes it beside the .npy", index.display(), path.display()).into());
        }
        let text = crate::inputs::read_text(&index, "index of embeddings", crate::inputs::MOST_TEXT_BYTES)?;
        let (mut sources, mut labels) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for (n, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
            let fields = crate::data::parse_csv_line(line).map_err(|e| format!("{} line {}: {e}", index.display(), n + 1))?;
            let [_, source, label] = &fields[..] else {
                return Err(format!("{} line {}: expected row,source,label", index.display(), n + 1).into());
            };
            sources.push(source.clone());
            labels.push(label.clone());
        }
        if sources.len() != count {
            return Err(format!("{}: lists {} items, {} holds {count} embeddings", index.display(), sources.len(), path.display()).into());
        }
        if let Some(i) = vectors.iter().position(|v| !v.is_finite()) {
            return Err(format!("{}: embedding {} holds {}", path.display(), i / dim, vectors[i]).into());
        }
        Ok(EmbeddingSet { dim, vectors, sources, labels })
    }

    /// Pictures embedded with `trained`: `paths` are picture files, folders, IDX image files or IDX
    /// folders (their `split`), or one `.npy` embed output.
    pub fn embed(gpu: &Gpu, kernels: &Kernels, trained: &Trained, paths: &[PathBuf], split: &str, polarity: Polarity, batch: Option<usize>) -> Result<EmbeddingSet> {
        let dim = trained.plan.embedding_dim;
        if let [one] = paths {
            if one.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
                return EmbeddingSet::from_npy(one, dim);
            }
        }
        let input = trained.input();
        let (mut pixels, mut sources, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        let files: Vec<&PathBuf> = paths.iter().filter(|p| p.is_file() && !p.to_string_lossy().contains("-images-idx3-ubyte")).collect();
        for (path, decoded) in files.iter().zip(crate::data::decode_all(&files.iter().map(|p| (*p).clone()).collect::<Vec<_>>(), input)) {
            pixels.extend(decoded?);
            sources.push(path.display().to_string());
            labels.push(String::new());
        }
        for path in paths.iter().filter(|p| !files.contains(p)) {
            if !path.exists() {
                return Err(format!("{}: no such file or folder", path.display()).into());
            }
            let found = load_sources(path, split, input)?;
            pixels.extend(found.pixels);
            sources.extend(found.names);
            labels.extend(found.labels);
        }
        trained.match_polarity(&mut pixels, polarity);
        let vectors = trained.tower(gpu, kernels, batch)?.embed(&pixels)?;
        Ok(EmbeddingSet { dim, vectors, sources, labels })
    }
}

pub struct SearchOptions<'p> {
    pub queries: &'p [PathBuf],
    pub gallery: &'p [PathBuf],
    pub split: &'p str,
    pub gallery_split: &'p str,
    pub k: usize,
    pub threshold: Option<f32>,
    /// Leave out of a query's results the gallery item with the query's own source.
    pub skip_self: bool,
    pub csv: Option<&'p Path>,
    pub json: Option<&'p Path>,
    /// Queries whose results are printed as a table.
    pub show: usize,
    pub polarity: Polarity,
    pub batch_size: Option<usize>,
}

#[derive(Serialize)]
struct Match<'a> {
    rank: usize,
    gallery: &'a str,
    label: &'a str,
    distance: f32,
    same: bool,
    /// The gallery item is the query itself (the same source).
    itself: bool,
}

#[derive(Serialize)]
struct QueryResult<'a> {
    query: &'a str,
    label: &'a str,
    matches: Vec<Match<'a>>,
}

/// What a search found, for the summary and the tests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchSummary {
    pub queries: usize,
    pub gallery: usize,
    pub k: usize,
    pub seconds: f64,
    /// Queries whose nearest item has their label, over those with a label (None without labels).
    pub precision_at_1: Option<f64>,
    /// Queries that found themselves in the gallery (the same source).
    pub found_itself: usize,
}

/// For each query, the gallery row holding the same source, or NO_ROW.
pub fn same_sources(queries: &EmbeddingSet, gallery: &EmbeddingSet) -> Vec<u32> {
    let by_source: std::collections::HashMap<&str, usize> = gallery.sources.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    queries.sources.iter().map(|s| by_source.get(s.as_str()).map_or(NO_ROW, |&i| i as u32)).collect()
}

pub fn search(gpu: &Gpu, kernels: &Kernels, trained: &Trained, opts: &SearchOptions) -> Result<SearchSummary> {
    if opts.queries.is_empty() || opts.gallery.is_empty() {
        return Err("search needs queries (pictures, folders or an embed .npy) and --gallery".into());
    }
    if opts.k == 0 {
        return Err("--k 0: at least one neighbour".into());
    }
    for path in [opts.csv, opts.json].into_iter().flatten() {
        if path.is_dir() {
            return Err(format!("{}: is a folder; give a file name", path.display()).into());
        }
    }
    let started = Instant::now();
    let queries = EmbeddingSet::embed(gpu, kernels, trained, opts.queries, opts.split, opts.polarity, opts.batch_size)?;
    let gallery = EmbeddingSet::embed(gpu, kernels, trained, opts.gallery, opts.gallery_split, opts.polarity, opts.batch_size)?;
    for (set, what) in [(&queries, "queries"), (&gallery, "gallery")] {
        if set.is_empty() {
            return Err(format!("the {what} hold no pictures").into());
        }
    }
    let embedded = started.elapsed().as_secs_f64();
    let itself = same_sources(&queries, &gallery);
    let skip = if opts.skip_self { itself.clone() } else { vec![NO_ROW; queries.len()] };
    let available = gallery.len() - usize::from(opts.skip_self && itself.iter().any(|&r| r != NO_ROW));
    if opts.k > available {
        eprintln!("note: --k {} is more than the gallery's {available} items; each query gets all of them", opts.k);
    }
    if opts.k > crate::search::MAX_K {
        eprintln!("note: --k {}: the GPU search keeps at most {} neighbours a query", opts.k, crate::search::MAX_K);
    }
    crate::search::prepare(kernels, queries.dim);
    let searched = Instant::now();
    let found = knn(gpu, kernels, &queries.vectors, &gallery.vectors, queries.dim, opts.k.min(available.max(1)), &skip)?;
    let seconds = searched.elapsed().as_secs_f64();
    let threshold = opts.threshold.unwrap_or(trained.threshold());
    let summary = summarise(&queries, &gallery, &found, &itself, seconds);

    // Each query's results are made when they are printed or written, never all at once: a search of
    // 60,000 queries by 64 neighbours would hold millions of them.
    let result = |q: usize| query_result(&queries, &gallery, &found, &itself, threshold, q);
    for r in (0..queries.len().min(opts.show)).map(result) {
        println!("{}{}", r.query, if r.label.is_empty() { String::new() } else { format!(" ({})", r.label) });
        for m in &r.matches {
            let note = if m.itself { "  (itself)" } else { "" };
            let label = if m.label.is_empty() { String::new() } else { format!(" ({})", m.label) };
            println!("  {:>3}. {:.4} {:<9} {}{label}{note}", m.rank, m.distance, if m.same { "same" } else { "different" }, m.gallery);
        }
    }
    if queries.len() > opts.show {
        println!("... and {} more queries{}", queries.len() - opts.show, if opts.csv.or(opts.json).is_some() { " (all in the files below)" } else { " (--csv or --json writes them all, --show N prints more)" });
    }
    if let Some(path) = opts.csv {
        write_atomically_with(path, |w| {
            w.write_all(b"query,query_label,rank,gallery,gallery_label,distance,verdict,itself\n")?;
            for r in (0..queries.len()).map(result) {
                for m in &r.matches {
                    writeln!(
                        w,
                        "{},{},{},{},{},{:.6},{},{}",
                        csv_field(r.query),
                        csv_field(r.label),
                        m.rank,
                        csv_field(m.gallery),
                        csv_field(m.label),
                        m.distance,
                        if m.same { "same" } else { "different" },
                        m.itself
                    )?;
                }
            }
            Ok(())
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("written: {}", path.display());
    }
    if let Some(path) = opts.json {
        /// The results, serialised one query at a time as they are made.
        struct Results<'a, F: Fn(usize) -> QueryResult<'a>>(usize, F);
        impl<'a, F: Fn(usize) -> QueryResult<'a>> Serialize for Results<'a, F> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq((0..self.0).map(&self.1))
            }
        }
        #[derive(Serialize)]
        struct Written<'a, R: Serialize> {
            threshold: f32,
            summary: &'a SearchSummary,
            results: R,
        }
        let written = Written { threshold, summary: &summary, results: Results(queries.len(), result) };
        write_atomically_with(path, |w| serde_json::to_writer_pretty(w, &written).map_err(std::io::Error::other))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("written: {}", path.display());
    }
    let source = if opts.threshold.is_some() { "given" } else { "the checkpoint's, calibrated on training pairs" };
    println!(
        "{} queries against {} gallery items, k = {}: {:.3} s on the GPU ({:.3} ms a query; embedding took {embedded:.1} s); verdicts at threshold {threshold:.4} ({source})",
        summary.queries,
        summary.gallery,
        found.k,
        seconds,
        1e3 * seconds / summary.queries as f64,
    );
    if let Some(p) = summary.precision_at_1 {
        println!("precision@1 (the nearest item other than the query itself has the query's label): {p:.4}");
    }
    if summary.found_itself > 0 {
        println!(
            "{} queries are in the gallery themselves: {}",
            summary.found_itself,
            if opts.skip_self { "left out of their own results (--skip-self)" } else { "marked (itself) in their results; --skip-self leaves them out" }
        );
    }
    Ok(summary)
}

fn query_result<'a>(queries: &'a EmbeddingSet, gallery: &'a EmbeddingSet, found: &Neighbours, itself: &[u32], threshold: f32, q: usize) -> QueryResult<'a> {
    let matches = (0..found.k)
        .filter_map(|i| found.row(q, i).map(|r| (i, r)))
        .map(|(i, r)| {
            let distance = found.distance(q, i);
            Match { rank: i + 1, gallery: &gallery.sources[r], label: &gallery.labels[r], distance, same: distance < threshold, itself: itself[q] == r as u32 }
        })
        .collect();
    QueryResult { query: &queries.sources[q], label: &queries.labels[q], matches }
}

fn summarise(queries: &EmbeddingSet, gallery: &EmbeddingSet, found: &Neighbours, itself: &[u32], seconds: f64) -> SearchSummary {
    // A query's nearest item other than itself: a query found in the gallery would otherwise always be
    // its own nearest, and precision@1 read 1.
    let nearest_other = |q: usize| (0..found.k).filter_map(|i| found.row(q, i)).find(|&r| r as u32 != itself[q]);
    let labelled: Vec<usize> = (0..queries.len()).filter(|&q| !queries.labels[q].is_empty() && nearest_other(q).is_some()).collect();
    let hits = labelled.iter().filter(|&&q| nearest_other(q).is_some_and(|r| gallery.labels[r] == queries.labels[q])).count();
    SearchSummary {
        queries: queries.len(),
        gallery: gallery.len(),
        k: found.k,
        seconds,
        precision_at_1: (!labelled.is_empty() && gallery.labels.iter().any(|l| !l.is_empty())).then(|| hits as f64 / labelled.len() as f64),
        found_itself: itself.iter().filter(|&&r| r != NO_ROW).count(),
    }
}
