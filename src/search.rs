//! Exact k-nearest-neighbour search of embeddings on the GPU (`search.wgsl`): queries against a
//! gallery in tiles, only the k best of each query coming back, galleries larger than the adapter binds
//! at once streamed in parts. Ranked by squared distance, ties by gallery row; `reference::knn` is the
//! CPU's. Used by `gpu-siamese search` and `dedup`.

use crate::gpu::{submit, Gpu, Kernel, Kernels, Region};

const SHADER: &str = include_str!("../shaders/search.wgsl");
const SHARE_SUBGROUP: &str = include_str!("../shaders/conv2d_share_subgroup.wgsl");
const SHARE_DIRECT: &str = include_str!("../shaders/conv2d_share_direct.wgsl");
// The module with each way of sharing the gallery's loads (see conv2d.rs): subgroup shuffles, or each
// lane loading its whole tile where the adapter has no subgroups.
const SUBGROUP: &[(&str, &str)] = &[("conv2d_share_subgroup", SHARE_SUBGROUP), ("search", SHADER)];
const DIRECT: &[(&str, &str)] = &[("conv2d_share_direct", SHARE_DIRECT), ("search", SHADER)];
const fn kernel(subgroups: bool, entry: &'static str) -> Kernel {
    if subgroups {
        Kernel::new("search+subgroup", SUBGROUP, entry)
    } else {
        Kernel::new("search+direct", DIRECT, entry)
    }
}
pub const SEARCH_NORMS_ROWS: Kernel = kernel(false, "search_norms_rows");
pub const SEARCH_NORMS_COLUMNS: Kernel = kernel(false, "search_norms_columns");
pub const SEARCH_SCAN: Kernel = kernel(false, "search_scan");
pub const SEARCH_MERGE: Kernel = kernel(false, "search_merge");
pub const SEARCH_RESET: Kernel = kernel(false, "search_reset");
/// The distances' pass, [direct, subgroup].
pub const SEARCH_PRODUCTS: [Kernel; 2] = [kernel(false, "search_products"), kernel(true, "search_products")];
pub const KERNELS: &[Kernel] = &[SEARCH_NORMS_ROWS, SEARCH_NORMS_COLUMNS, SEARCH_PRODUCTS[0], SEARCH_PRODUCTS[1], SEARCH_SCAN, SEARCH_MERGE, SEARCH_RESET];

/// The most neighbours a query keeps (the shader's MAX_K).
pub const MAX_K: usize = 64;
/// The widest embedding searched (the padded dimension's quads index the transposed gallery).
pub const MAX_DIM: usize = 4096;
/// A row that is not there (fewer gallery rows than k).
pub const NO_ROW: u32 = u32::MAX;

/// Each query's nearest gallery rows, nearest first: `rows[q * k + i]` and its distance
/// sqrt(max(squared distance, 1e-7)) (the tutorial's), or NO_ROW past the gallery's end.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    pub k: usize,
    pub rows: Vec<u32>,
    pub squared: Vec<f32>,
}

impl Neighbours {
    pub fn distance(&self, q: usize, i: usize) -> f32 {
        self.squared[q * self.k + i].max(crate::objective::DISTANCE_EPSILON).sqrt()
    }
    pub fn row(&self, q: usize, i: usize) -> Option<usize> {
        let r = self.rows[q * self.k + i];
        (r != NO_ROW).then_some(r as usize)
    }
}

/// How a search is cut to fit the adapter: gallery rows per part (one binding) and per chunk (one
/// launch's rows for a list), running lists per query (slots, so that a few queries still fill the
/// cores), and queries per batch (the lists' binding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchShape {
    pub part_rows: usize,
    pub chunk_rows: usize,
    pub slots: usize,
    pub query_batch: usize,
}

/// Rows a launch adds to each list: long launches on lavapipe were seen to lose their work, so each
/// stays short and the lists run on from launch to launch.
const CHUNK_ROWS: usize = 1024;

impl SearchShape {
    /// `limit`: the largest binding in bytes.
    pub fn new(limit: u64, queries: usize, gallery: usize, dim: usize) -> SearchShape {
        // A part's transposed gallery is [dim padded to 4][rows padded to 16].
        let part_rows = ((limit / (4 * dim.next_multiple_of(4) as u64)) as usize / 16 * 16).min(gallery.next_multiple_of(16)).max(16);
        let chunk_rows = CHUNK_ROWS.min(part_rows);
        // About 32 workgroups a launch: query blocks of 512 times slots.
        let slots = 32usize.div_ceil(queries.div_ceil(512)).min(part_rows.div_ceil(chunk_rows)).max(1);
        // A round's distances and the lists, per query.
        let per_query = (slots * chunk_rows * 4) as u64;
        let query_batch = ((limit.min(256 << 20) / per_query) as usize / 512 * 512).clamp(512, queries.div_ceil(512).max(1) * 512);
        SearchShape { part_rows, chunk_rows, slots, query_batch }
    }
}

fn constants(dim: usize) -> [(&'static str, f64); 2] {
    [("DIM", dim as f64), ("DIM4", dim.next_multiple_of(4) as f64)]
}

/// The distances' pass this adapter runs.
fn products_kernel(kernels: &Kernels) -> Kernel {
    SEARCH_PRODUCTS[kernels.subgroups as usize]
}

/// Builds the search's pipelines for embeddings of `dim` values (so that a timed search does not count
/// their compilation).
pub fn prepare(kernels: &Kernels, dim: usize) {
    for kernel in [SEARCH_NORMS_ROWS, SEARCH_NORMS_COLUMNS, products_kernel(kernels), SEARCH_SCAN, SEARCH_MERGE, SEARCH_RESET] {
        kernels.pipeline(kernel, &constants(dim));
    }
}

/// Rows of `dim` values padded with zeros to `dim4`.
fn padded_rows(values: &[f32], dim: usize, dim4: usize) -> Vec<f32> {
    values.chunks(dim).flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(0.0, dim4 - dim))).collect()
}

/// Rows of `dim` values as columns: [dim4][stride], zeros past the rows and dimensions.
fn transposed(values: &[f32], dim: usize, dim4: usize, stride: usize) -> Vec<f32> {
    let mut t = vec![0.0; dim4 * stride];
    for (r, row) in values.chunks(dim).enumerate() {
        for (d, &v) in row.iter().enumerate() {
            t[d * stride + r] = v;
        }
    }
    t
}

/// The `k` nearest rows of `gallery` ([rows, dim]) for each row of `queries` ([count, dim]); query q
/// leaves gallery row `skip[q]` out (NO_ROW: none). `k` is capped at MAX_K and the gallery's rows.
pub fn knn(gpu: &Gpu, kernels: &Kernels, queries: &[f32], gallery: &[f32], dim: usize, k: usize, skip: &[u32]) -> Result<Neighbours, String> {
    knn_within(gpu, kernels, queries, gallery, dim, k, skip, gpu.max_binding_bytes())
}

/// As [`knn`], cut to bindings of at most `limit` bytes (a smaller limit than the adapter's shows the
/// streaming at work on small sets).
#[allow(clippy::too_many_arguments)]
pub fn knn_within(gpu: &Gpu, kernels: &Kernels, queries: &[f32], gallery: &[f32], dim: usize, k: usize, skip: &[u32], limit: u64) -> Result<Neighbours, String> {
    assert!(dim > 0 && queries.len().is_multiple_of(dim) && gallery.len().is_multiple_of(dim), "whole rows");
    let (count, rows) = (queries.len() / dim, gallery.len() / dim);
    assert_eq!(skip.len(), count, "a skip entry per query");
    if dim > MAX_DIM {
        return Err(format!("embeddings of {dim} values: the GPU search takes up to {MAX_DIM}"));
    }
    let k = k.min(MAX_K).min(rows).max(1);
    if count == 0 || rows == 0 {
        return Ok(Neighbours { k, rows: vec![NO_ROW; count * k], squared: vec![f32::INFINITY; count * k] });
    }
    let shape = SearchShape::new(limit, count, rows, dim);
    let mut result = Neighbours { k, rows: Vec::with_capacity(count * k), squared: Vec::with_capacity(count * k) };
    let whole = Region::whole;
    let c = constants(dim);
    let dim4 = dim.next_multiple_of(4);
    // search.wgsl's Sizes: queries, rows, chunk, k, first row, stride, slots, first chunk.
    let sizes = |queries: usize, rows: usize, first: usize, stride: usize, first_chunk: usize| {
        let values = [queries as u32, rows as u32, shape.chunk_rows as u32, k as u32, first as u32, stride as u32, shape.slots as u32, first_chunk as u32];
        gpu.storage_from_bytes("search sizes", bytemuck::cast_slice(&values))
    };
    let products_kernel = products_kernel(kernels);
    for q0 in (0..count).step_by(shape.query_batch) {
        let batch = shape.query_batch.min(count - q0);
        let query_buffer = gpu.storage_from("search queries", &padded_rows(&queries[q0 * dim..(q0 + batch) * dim], dim, dim4));
        let skip_buffer = gpu.storage_from_bytes("search skips", bytemuck::cast_slice(&skip[q0..q0 + batch]));
        let query_norms = gpu.storage("query norms", batch);
        let lists = batch * shape.slots * k;
        let (list_d, list_row) = (gpu.storage("running distances", lists), gpu.storage("running rows", lists));
        let (best_d, best_row) = (gpu.storage("best distances", batch * k), gpu.storage("best rows", batch * k));
        let query_sizes = sizes(batch, batch, 0, 0, 0);
        let norms = kernels.dispatch(SEARCH_NORMS_ROWS, &c, &[(10, whole(&query_buffer)), (11, whole(&query_norms)), (12, whole(&query_sizes))], batch);
        let reset = kernels.dispatch(SEARCH_RESET, &c, &[(5, whole(&list_d)), (6, whole(&list_row)), (12, whole(&query_sizes))], lists);
        submit(gpu, &[&norms, &reset]);
        for first in (0..rows).step_by(shape.part_rows) {
            let part = shape.part_rows.min(rows - first);
            let stride = part.next_multiple_of(16);
            let gallery_buffer = gpu.storage_from("search gallery", &transposed(&gallery[first * dim..(first + part) * dim], dim, dim4, stride));
            let gallery_norms = gpu.storage_from("gallery norms", &vec![3.4e38; stride]);
            let norm_sizes = sizes(part, part, first, stride, 0);
            let norms = kernels.dispatch(SEARCH_NORMS_COLUMNS, &c, &[(10, whole(&gallery_buffer)), (11, whole(&gallery_norms)), (12, whole(&norm_sizes))], part);
            submit(gpu, &[&norms]);
            // Round after round, each slot's list takes the next chunk.
            let chunks = part.div_ceil(shape.chunk_rows);
            let distances = gpu.storage("round distances", shape.slots * shape.chunk_rows * batch);
            for first_chunk in (0..chunks).step_by(shape.slots) {
                let slots_now = shape.slots.min(chunks - first_chunk);
                let round_sizes = sizes(batch, part, first, stride, first_chunk);
                let bindings = [
                    (1, whole(&query_buffer)),
                    (2, whole(&gallery_buffer)),
                    (3, whole(&query_norms)),
                    (4, whole(&gallery_norms)),
                    (12, whole(&round_sizes)),
                    (13, whole(&distances)),
                ];
                let rows_now = (part - first_chunk * shape.chunk_rows).min(slots_now * shape.chunk_rows);
                let products = kernels
                    .dispatch_groups(products_kernel, &c, &bindings, [batch.div_ceil(512), slots_now])
                    .with_work(2 * batch * rows_now * dim, rows_now * dim + batch * rows_now);
                let scan_bindings = [(5, whole(&list_d)), (6, whole(&list_row)), (9, whole(&skip_buffer)), (12, whole(&round_sizes)), (13, whole(&distances))];
                let scan = kernels.dispatch(SEARCH_SCAN, &c, &scan_bindings, batch * slots_now).with_work(batch * rows_now, batch * rows_now);
                submit(gpu, &[&products, &scan]);
            }
            gpu.wait();
        }
        let merge_bindings = [(5, whole(&list_d)), (6, whole(&list_row)), (7, whole(&best_d)), (8, whole(&best_row)), (12, whole(&query_sizes))];
        let merge = kernels.dispatch(SEARCH_MERGE, &c, &merge_bindings, batch);
        submit(gpu, &[&merge]);
        result.squared.extend(gpu.read(&best_d, 0, batch * k));
        result.rows.extend(gpu.read(&best_row, 0, batch * k).into_iter().map(f32::to_bits));
    }
    Ok(result)
}
