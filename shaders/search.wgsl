// Exact k-nearest-neighbour search of query embeddings in a gallery, keeping only k results per query
// on the way. Each query has `slots` running lists of its K nearest (squared distance, row); one round
// adds one chunk of rows to each slot's list:
//   search_products    workgroup (query block, slot): each lane two queries by sixteen rows at a time,
//                      their squared distances into `distances4`, [slot][query][row of the chunk]
//   search_scan        a lane per (query, slot): the chunk's distances in row order into the list; once
//                      full, a list rejects nearly every row at one compare
//   search_merge       a lane per query: the slots' lists, in slot order, merged into its K best
// (Keeping the lists inside the product's loop made lavapipe's compiler spill the product's registers:
// the two passes together take a quarter of the time.)
// Rows are ranked by squared distance, ties by row: the first row reaching a distance keeps its place.
// The squared distance is |q|^2 + |g|^2 - 2 q.g, as FAISS computes it: the dot products are a matrix
// product, computed as the convolution engine computes one (conv2d_gemm.wgsl): each lane a tile of two
// queries by sixteen gallery rows, the gallery (transposed, [dim][rows], so that a quad is four rows at
// one dimension) shared between eight lanes that each load a part of it (conv2d_share_*.wgsl, joined
// before this file). Dimensions and rows are padded to fours with zeros.

override DIM: u32;
// DIM padded to a multiple of 4: the queries' row length and the transposed gallery's row count.
override DIM4: u32;

struct Sizes {
    queries: u32,
    // Gallery rows in this part, and rows per chunk (a multiple of 16).
    rows: u32,
    chunk: u32,
    // Results kept per query (at most MAX_K).
    k: u32,
    // The part's first row in the whole gallery (results name whole-gallery rows).
    first_row: u32,
    // The transposed gallery's row length: `rows` padded to a multiple of 16.
    stride: u32,
    // Running lists per query, and the chunk slot 0 takes in this launch (slot s takes the next ones).
    slots: u32,
    first_chunk: u32,
}

const MAX_K: u32 = 64u;
const NO_ROW: u32 = 0xffffffffu;

// Queries [queries][DIM4] as quads.
@group(0) @binding(1) var<storage, read> queries: array<vec4<f32>>;
// The gallery part, transposed: [DIM4][stride] as quads of four rows.
@group(0) @binding(2) var<storage, read> gallery: array<vec4<f32>>;
// |q|^2 per query and |g|^2 per gallery row (search_norms; 3.4e38 for the padding rows), as quads.
@group(0) @binding(3) var<storage, read> query_norms: array<f32>;
@group(0) @binding(4) var<storage, read> gallery_norms4: array<vec4<f32>>;
// [query][slot][K] running lists: squared distances and rows.
@group(0) @binding(5) var<storage, read_write> candidate_d: array<f32>;
@group(0) @binding(6) var<storage, read_write> candidate_row: array<u32>;
// [query][K]: the running best, squared distances and whole-gallery rows (NO_ROW while empty).
@group(0) @binding(7) var<storage, read_write> best_d: array<f32>;
@group(0) @binding(8) var<storage, read_write> best_row: array<u32>;
// Per query, a whole-gallery row to leave out (the query itself), or NO_ROW.
@group(0) @binding(9) var<storage, read> skip_row: array<u32>;
// The round's squared distances, [slot][query][row of the chunk], as quads of four rows.
@group(0) @binding(13) var<storage, read_write> distances4: array<vec4<f32>>;
// search_norms: rows of `vectors` ([rows][DIM]), their squared norms into `norms`.
@group(0) @binding(10) var<storage, read> vectors: array<f32>;
@group(0) @binding(11) var<storage, read_write> norms: array<f32>;
@group(0) @binding(12) var<storage, read> sizes: Sizes;


// Squared norms, a sum in dimension order: of the queries' rows ([rows][DIM4])...
@compute @workgroup_size(256)
fn search_norms_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let r = thread_index(wg, nwg, lid);
    if (r >= sizes.rows) {
        return;
    }
    var acc = 0.0;
    for (var d = 0u; d < DIM; d++) {
        let v = vectors[r * DIM4 + d];
        acc = fma(v, v, acc);
    }
    norms[r] = acc;
}

// ... and of the transposed gallery's columns ([DIM4][stride]).
@compute @workgroup_size(256)
fn search_norms_columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let r = thread_index(wg, nwg, lid);
    if (r >= sizes.rows) {
        return;
    }
    var acc = 0.0;
    for (var d = 0u; d < DIM; d++) {
        let v = vectors[d * sizes.stride + r];
        acc = fma(v, v, acc);
    }
    norms[r] = acc;
}

// A sorted list of up to k (distance, row), smallest first.
struct TopK {
    d: array<f32, MAX_K>,
    row: array<u32, MAX_K>,
    count: u32,
}

// (d, row) before (e, other): by distance, then by row.
fn ranks_before(d: f32, row: u32, e: f32, other: u32) -> bool {
    return d < e || (d == e && row < other);
}

fn insert(list: ptr<function, TopK>, d: f32, row: u32) {
    let k = sizes.k;
    if ((*list).count == k && !ranks_before(d, row, (*list).d[k - 1u], (*list).row[k - 1u])) {
        return;
    }
    var i = min((*list).count, k - 1u);
    (*list).count = min((*list).count + 1u, k);
    while (i > 0u && ranks_before(d, row, (*list).d[i - 1u], (*list).row[i - 1u])) {
        (*list).d[i] = (*list).d[i - 1u];
        (*list).row[i] = (*list).row[i - 1u];
        i--;
    }
    (*list).d[i] = d;
    (*list).row[i] = row;
}

// The lane's tile: [query r][column quad c] at r * 4 + c, a column quad being four gallery rows.
alias Acc = array<vec4<f32>, 8>;

// Quad v of a tile step's shared operand: dimension 4 kq + v / 4, gallery rows t0 + 4 (v % 4) ..
fn gallery_quad(kq: u32, t0: u32, v: u32) -> vec4<f32> {
    return gallery[((4u * kq + v / 4u) * sizes.stride + t0) / 4u + v % 4u];
}

// Which of the tile's sixteen quads this lane loads as its held[q].
fn held_quad(q: u32, lid: u32) -> u32 {
    if (SHARED) {
        return min(q * 8u + lid % 8u, 15u);
    }
    return q;
}

// acc[r][c] += q_r[j] * quad for both queries.
fn fma_queries(acc: ptr<function, Acc>, a0: vec4<f32>, a1: vec4<f32>, j: u32, c: u32, b: vec4<f32>) {
    (*acc)[c] = fma(vec4<f32>(a0[j]), b, (*acc)[c]);
    (*acc)[4u + c] = fma(vec4<f32>(a1[j]), b, (*acc)[4u + c]);
}

fn product_step(acc: ptr<function, Acc>, a0: vec4<f32>, a1: vec4<f32>, held: Held, lane: u32, j: u32) {
    fma_queries(acc, a0, a1, j, 0u, share_quad(held, j * 4u, lane));
    fma_queries(acc, a0, a1, j, 1u, share_quad(held, j * 4u + 1u, lane));
    fma_queries(acc, a0, a1, j, 2u, share_quad(held, j * 4u + 2u, lane));
    fma_queries(acc, a0, a1, j, 3u, share_quad(held, j * 4u + 3u, lane));
}

// Slot `slot`'s running list of query q.
fn load(list: ptr<function, TopK>, q: u32, slot: u32) {
    let k = sizes.k;
    let base = (q * sizes.slots + slot) * k;
    (*list).count = 0u;
    for (var i = 0u; i < k; i++) {
        (*list).d[i] = candidate_d[base + i];
        (*list).row[i] = candidate_row[base + i];
        (*list).count += select(0u, 1u, candidate_row[base + i] != NO_ROW);
    }
}

fn store(list: ptr<function, TopK>, q: u32, slot: u32) {
    let k = sizes.k;
    let base = (q * sizes.slots + slot) * k;
    for (var i = 0u; i < k; i++) {
        candidate_d[base + i] = select(3.4e38, (*list).d[i], i < (*list).count);
        candidate_row[base + i] = select(NO_ROW, (*list).row[i], i < (*list).count);
    }
}

fn worst_of(list: ptr<function, TopK>) -> f32 {
    return select(3.4e38, (*list).d[sizes.k - 1u], (*list).count == sizes.k);
}

// The tile's squared distances for one query: |q|^2 + |g|^2 - 2 q.g, four rows a column quad.
fn store_distances(acc: Acc, r: u32, q: u32, qn: f32, t0: u32, slot: u32, offset: u32) {
    if (q >= sizes.queries) {
        return;
    }
    let base = ((slot * sizes.queries + q) * sizes.chunk + offset) / 4u;
    for (var c = 0u; c < 4u; c++) {
        distances4[base + c] = vec4<f32>(qn) + gallery_norms4[t0 / 4u + c] - 2.0 * acc[4u * r + c];
    }
}

@compute @workgroup_size(256)
fn search_products(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // x: the query block, y: the slot; every lane of the workgroup runs the same tiles.
    let lane = share_lane(lid);
    // The lane's queries are 256 apart, so that neighbouring lanes store neighbouring distances.
    let q0 = wg.x * 2u * WORKGROUP + lid;
    let q1 = q0 + WORKGROUP;
    let slot = wg.y;
    let last_query = sizes.queries - 1u;
    let qa = min(q0, last_query);
    let qb = min(q1, last_query);
    let qn0 = query_norms[qa];
    let qn1 = query_norms[qb];
    let first = (sizes.first_chunk + slot) * sizes.chunk;
    let end = min(first + sizes.chunk, sizes.stride);
    for (var t0 = first; t0 < end; t0 += 16u) {
        var acc: Acc;
        for (var kq = 0u; kq < DIM4 / 4u; kq++) {
            let a0 = queries[qa * (DIM4 / 4u) + kq];
            let a1 = queries[qb * (DIM4 / 4u) + kq];
            var held: Held;
            held[0] = gallery_quad(kq, t0, held_quad(0u, lid));
            held[1] = gallery_quad(kq, t0, held_quad(1u, lid));
            // Without sharing a lane loads all sixteen.
            for (var h = 2u; h < 16u && !SHARED; h++) {
                held[h] = gallery_quad(kq, t0, h);
            }
            share_publish(held, lane);
            product_step(&acc, a0, a1, held, lane, 0u);
            product_step(&acc, a0, a1, held, lane, 1u);
            product_step(&acc, a0, a1, held, lane, 2u);
            product_step(&acc, a0, a1, held, lane, 3u);
            share_done();
        }
        store_distances(acc, 0u, q0, qn0, t0, slot, t0 - first);
        store_distances(acc, 1u, q1, qn1, t0, slot, t0 - first);
    }
}

// Lane (query, slot): the chunk's rows, in order, into the slot's running list of the query.
@compute @workgroup_size(256)
fn search_scan(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    let slot = idx / sizes.queries;
    if (slot >= sizes.slots) {
        return;
    }
    let q = idx % sizes.queries;
    let first = (sizes.first_chunk + slot) * sizes.chunk;
    if (first >= sizes.rows) {
        return;
    }
    let count = min(sizes.chunk, sizes.rows - first);
    let skip = skip_row[q];
    var list: TopK;
    load(&list, q, slot);
    var worst = worst_of(&list);
    // Eight rows at a time: their smallest distance against the list's worst first, since nearly every
    // block of a full list's chunk falls short. Past the chunk's end the products are of padding rows
    // (norm 3.4e38) and never get in.
    let at = ((slot * sizes.queries + q) * sizes.chunk) / 4u;
    for (var r = 0u; r < count; r += 8u) {
        let a = distances4[at + r / 4u];
        let b = distances4[at + r / 4u + 1u];
        if (min(min(min(a.x, a.y), min(a.z, a.w)), min(min(b.x, b.y), min(b.z, b.w))) < worst) {
            for (var i = 0u; i < 8u && r + i < count; i++) {
                let d2 = select(b[i % 4u], a[i % 4u], i < 4u);
                let row = sizes.first_row + first + r + i;
                // Rows come in order: a row at the list's worst distance comes after its rows.
                if (d2 < worst && row != skip) {
                    insert(&list, d2, row);
                    worst = worst_of(&list);
                }
            }
        }
    }
    store(&list, q, slot);
}

// The slots' lists, in slot order, into each query's K best. `best` starts empty (search_reset).
@compute @workgroup_size(256)
fn search_merge(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let q = thread_index(wg, nwg, lid);
    if (q >= sizes.queries) {
        return;
    }
    let k = sizes.k;
    var list: TopK;
    list.count = 0u;
    for (var s = 0u; s < sizes.slots; s++) {
        for (var i = 0u; i < k; i++) {
            let at = (q * sizes.slots + s) * k + i;
            if (candidate_row[at] != NO_ROW) {
                insert(&list, candidate_d[at], candidate_row[at]);
            }
        }
    }
    for (var i = 0u; i < k; i++) {
        best_d[q * k + i] = select(3.4e38, list.d[i], i < list.count);
        best_row[q * k + i] = select(NO_ROW, list.row[i], i < list.count);
    }
}

// The running lists start empty.
@compute @workgroup_size(256)
fn search_reset(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= sizes.queries * sizes.slots * sizes.k) {
        return;
    }
    candidate_d[i] = 3.4e38;
    candidate_row[i] = NO_ROW;
}
