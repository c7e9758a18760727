//! `gpu-siamese dedup DIR`: the groups of pictures in a folder that the model calls the same, found
//! through the GPU search (each picture's k nearest others), never an all-pairs matrix. Two pictures are
//! linked when one is among the other's k nearest at a distance under the threshold. A group is a
//! connected component of those links (by default: near-duplicates of near-duplicates belong together),
//! or with `--cliques` a set whose every two pictures are under the threshold (stricter: a chain of small
//! steps does not join two pictures that are far apart). Written as CSV and drawn as a contact sheet.

use crate::checkpoint::write_atomically;
use crate::data::csv_field;
use crate::embed::load_sources;
use crate::evaluate::Trained;
use crate::gpu::{Gpu, Kernels};
use crate::plot::{Canvas, BLACK, GREY};
use crate::search::knn;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub struct DedupOptions<'p> {
    pub folder: &'p Path,
    pub threshold: Option<f32>,
    /// Neighbours each picture links to at most.
    pub k: usize,
    pub cliques: bool,
    pub out: &'p Path,
    pub polarity: crate::data::Polarity,
    pub batch_size: Option<usize>,
}

/// Groups of two or more picture indices, each in index order, the groups by their first index.
pub type Groups = Vec<Vec<usize>>;

/// The links: (a, b, distance) with a < b, each once, from each picture's neighbour list.
pub fn links(neighbours: &[Vec<(usize, f32)>], threshold: f32) -> Vec<(usize, usize, f32)> {
    let mut links: Vec<(usize, usize, f32)> = neighbours
        .iter()
        .enumerate()
        .flat_map(|(a, list)| list.iter().filter(move |&&(b, d)| d < threshold && b != a).map(move |&(b, d)| (a.min(b), a.max(b), d)))
        .collect();
    links.sort_by_key(|l| (l.0, l.1));
    links.dedup_by(|x, y| (x.0, x.1) == (y.0, y.1));
    links
}

/// Connected components of the links with two or more members.
pub fn components(count: usize, links: &[(usize, usize, f32)]) -> Groups {
    let mut parent: Vec<usize> = (0..count).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for &(a, b, _) in links {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        parent[ra.max(rb)] = ra.min(rb);
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..count {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    groups.into_values().filter(|g| g.len() > 1).collect()
}

/// Within each component, groups whose every two members are under the threshold (`distance`): each
/// picture, in index order, joins the first group it is close to all of, or starts one.
pub fn cliques(components: &Groups, threshold: f32, distance: impl Fn(usize, usize) -> f32) -> Groups {
    let mut out = Vec::new();
    for component in components {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for &i in component {
            match groups.iter_mut().find(|g| g.iter().all(|&j| distance(i, j) < threshold)) {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        out.extend(groups.into_iter().filter(|g| g.len() > 1));
    }
    out.sort();
    out
}

pub fn dedup(gpu: &Gpu, kernels: &Kernels, trained: &Trained, opts: &DedupOptions) -> Result<Groups> {
    if !opts.folder.is_dir() {
        return Err(format!("{}: not a folder of pictures", opts.folder.display()).into());
    }
    if opts.k == 0 {
        return Err("--k 0: each picture needs at least one neighbour to link to".into());
    }
    let input = trained.input();
    let mut sources = load_sources(opts.folder, "t10k", input)?;
    if sources.names.len() < 2 {
        return Err(format!("{}: holds {} picture; duplicates need two or more", opts.folder.display(), sources.names.len()).into());
    }
    trained.match_polarity(&mut sources.pixels, opts.polarity);
    let count = sources.names.len();
    let tower = trained.tower(gpu, kernels, opts.batch_size)?;
    let embeddings = tower.embed(&sources.pixels)?;
    let dim = tower.dim();
    let skip: Vec<u32> = (0..count as u32).collect();
    let found = knn(gpu, kernels, &embeddings, &embeddings, dim, opts.k, &skip)?;
    let neighbours: Vec<Vec<(usize, f32)>> = (0..count).map(|q| (0..found.k).filter_map(|i| found.row(q, i).map(|r| (r, found.distance(q, i)))).collect()).collect();
    let threshold = opts.threshold.unwrap_or(trained.threshold());
    let links = links(&neighbours, threshold);
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    let distance = |a: usize, b: usize| row(a).iter().zip(row(b)).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().max(crate::objective::DISTANCE_EPSILON).sqrt();
    let components = components(count, &links);
    let groups = if opts.cliques { cliques(&components, threshold, distance) } else { components };

    std::fs::create_dir_all(opts.out).map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let mut csv = String::from("group,size,source,label,distance_to_first\n");
    for (g, members) in groups.iter().enumerate() {
        for &i in members {
            csv.push_str(&format!(
                "{},{},{},{},{:.6}\n",
                g + 1,
                members.len(),
                csv_field(&sources.names[i]),
                csv_field(&sources.labels[i]),
                distance(members[0], i)
            ));
        }
    }
    let csv_path = opts.out.join(FILES[0]);
    write_atomically(&csv_path, csv.as_bytes()).map_err(|e| format!("cannot write {}: {e}", csv_path.display()))?;
    let sheet_path = opts.out.join(FILES[1]);
    contact_sheet(&groups, &sources.pixels, input).save(&sheet_path)?;
    let in_groups: usize = groups.iter().map(Vec::len).sum();
    let source = if opts.threshold.is_some() { "given" } else { "the checkpoint's, calibrated on training pairs" };
    println!(
        "{count} pictures: {} groups of near-duplicates ({in_groups} pictures) at threshold {threshold:.4} ({source}), {} ({} nearest each)",
        groups.len(),
        if opts.cliques { "every two in a group under it" } else { "linked through each other" },
        found.k
    );
    // Each group with its pictures one per line; the contact sheet shows the first SHEET_GROUPS groups
    // and SHEET_PICTURES pictures of each, and says what it leaves out.
    for (g, members) in groups.iter().take(10).enumerate() {
        let shown = if g >= SHEET_GROUPS {
            " (not on groups.png)".to_string()
        } else if members.len() > SHEET_PICTURES {
            format!(" (groups.png shows the first {SHEET_PICTURES})")
        } else {
            String::new()
        };
        println!("  group {}: {} pictures{shown}", g + 1, members.len());
        for &i in members.iter().take(SHEET_PICTURES) {
            println!("      {}", short(&sources.names[i], opts.folder));
        }
        if members.len() > SHEET_PICTURES {
            println!("      ... {} more (every one in {})", members.len() - SHEET_PICTURES, FILES[0]);
        }
    }
    if groups.len() > 10 {
        println!("  ... {} more groups, every one in {}", groups.len() - 10, csv_path.display());
    }
    let largest = groups.iter().map(Vec::len).max().unwrap_or(0);
    if count > 4 && 2 * largest > count {
        println!(
            "note: one group holds {largest} of the {count} pictures at threshold {threshold:.4}: near-duplicates are much closer than two pictures the model calls the same; give a lower --threshold"
        );
    }
    if groups.iter().any(|g| g.len() > found.k) {
        println!("note: a group larger than --k {} may be cut where a picture's links run out; raise --k", found.k);
    }
    println!("written: {}, {}", csv_path.display(), sheet_path.display());
    Ok(groups)
}

/// A source relative to the folder, for the printout.
fn short<'a>(name: &'a str, folder: &Path) -> &'a str {
    let prefix = folder.display().to_string();
    name.strip_prefix(&prefix).map(|s| s.trim_start_matches('/')).unwrap_or(name)
}

/// What the contact sheet shows at most: groups (rows), and pictures of each.
const SHEET_GROUPS: usize = 12;
const SHEET_PICTURES: usize = 10;

/// Each group a row of its pictures (the model's input, twice its size), up to 12 rows of 10, with
/// how many more a row has.
fn contact_sheet(groups: &Groups, pixels: &[u8], input: crate::model::InputShape) -> Canvas {
    let scale = (56 / input.h.max(input.w)).max(1) as u32;
    let (tile_w, tile_h) = (input.w as u32 * scale + 8, input.h as u32 * scale + 8);
    let rows = groups.len().clamp(1, SHEET_GROUPS) as u32;
    let mut canvas = Canvas::new(110 + SHEET_PICTURES as u32 * tile_w, 30 + rows * (tile_h + 6));
    let title = if groups.len() > SHEET_GROUPS { format!("{} groups of near-duplicates; the first {SHEET_GROUPS} shown", groups.len()) } else { format!("{} groups of near-duplicates", groups.len()) };
    canvas.text(10.0, 8.0, &title, BLACK, 2);
    if groups.is_empty() {
        canvas.text(10.0, 34.0, "none found", GREY, 2);
    }
    let len = input.len();
    for (g, members) in groups.iter().take(SHEET_GROUPS).enumerate() {
        let y = 30 + g as u32 * (tile_h + 6);
        canvas.text(8.0, y as f32 + tile_h as f32 / 2.0 - 6.0, &format!("{}", g + 1), BLACK, 2);
        if members.len() > SHEET_PICTURES {
            canvas.text((50 + SHEET_PICTURES as u32 * tile_w) as f32, y as f32 + tile_h as f32 / 2.0 - 6.0, &format!("+{}", members.len() - SHEET_PICTURES), GREY, 2);
        }
        for (m, &i) in members.iter().take(SHEET_PICTURES).enumerate() {
            let x = 50 + m as u32 * tile_w;
            canvas.picture(x, y, &pixels[i * len..(i + 1) * len], input, scale);
            canvas.frame(x as f32 - 1.0, y as f32 - 1.0, (x + input.w as u32 * scale) as f32, (y + input.h as u32 * scale) as f32, GREY, 1.0);
        }
    }
    canvas
}

/// The files dedup writes into its --out folder: the groups as CSV, and their contact sheet.
pub const FILES: [&str; 2] = ["groups.csv", "groups.png"];

pub fn default_out(folder: &Path) -> PathBuf {
    folder.with_file_name(format!("{}-dedup", folder.file_name().map_or("pictures".into(), |n| n.to_string_lossy().to_string())))
}
