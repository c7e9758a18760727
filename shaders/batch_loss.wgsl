// Losses over every pair, or every triplet, of a class-balanced batch of ROWS = P x K images, rows in
// class order (rows [sK, (s + 1)K) share a class). The CPU reference is `reference::batch_loss`, under
// the same names. Matrices are ROWS x ROWS, row-major. The forward losses are one workgroup each, with
// fixed strides and a tree reduction, so the order of every sum is the same on every run; gradients are
// one invocation per entry, each summing its terms in a fixed order. No atomics.

override ROWS: u32;
override K: u32;
override DIM: u32;
override MARGIN: f32;

@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read> emb: array<f32>;
@group(0) @binding(3) var<storage, read_write> dist: array<f32>;
@group(0) @binding(4) var<storage, read_write> ss: array<f32>;
@group(0) @binding(5) var<storage, read_write> losses: array<f32>;
@group(0) @binding(6) var<storage, read_write> ddist: array<f32>;
@group(0) @binding(7) var<storage, read_write> demb: array<f32>;

var<workgroup> partial_sums: array<f32, WORKGROUP>;

fn same_class(i: u32, j: u32) -> bool {
    return i / K == j / K;
}

// Adds up every invocation's `acc` in a fixed tree; invocation 0 gets the total.
fn workgroup_total(lid: u32, acc: f32) -> f32 {
    partial_sums[lid] = acc;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if (lid < width) {
            partial_sums[lid] += partial_sums[lid + width];
        }
        workgroupBarrier();
    }
    return partial_sums[0];
}

// ss[i][j] = sum over e of (emb[i, e] - emb[j, e])^2; dist = sqrt(max(ss, 1e-7)).
@compute @workgroup_size(256)
fn pairwise_distance_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= ROWS * ROWS) {
        return;
    }
    let i = idx / ROWS;
    let j = idx % ROWS;
    var acc = 0.0;
    for (var e = 0u; e < DIM; e++) {
        let diff = emb[i * DIM + e] - emb[j * DIM + e];
        acc += diff * diff;
    }
    ss[idx] = acc;
    dist[idx] = sqrt(max(acc, DISTANCE_EPSILON));
}

// Row i of the embeddings' gradient: (ddist[i][j] + ddist[j][i]) * 0.5 / sqrt(ss) * 2 * (emb[i] - emb[j])
// summed over j in order, skipping the clamped pairs.
@compute @workgroup_size(256)
fn pairwise_distance_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= ROWS * DIM) {
        return;
    }
    let i = idx / DIM;
    let e = idx % DIM;
    var acc = 0.0;
    for (var j = 0u; j < ROWS; j++) {
        let sq = ss[i * ROWS + j];
        if (j == i || sq < DISTANCE_EPSILON) {
            continue;
        }
        let g = ddist[i * ROWS + j] + ddist[j * ROWS + i];
        acc += g * 0.5 / sqrt(sq) * 2.0 * (emb[i * DIM + e] - emb[j * DIM + e]);
    }
    demb[idx] = acc;
}

fn pair_loss(i: u32, j: u32) -> f32 {
    let d = dist[i * ROWS + j];
    if (same_class(i, j)) {
        return d * d;
    }
    let gap = max(MARGIN - d, 0.0);
    return gap * gap;
}

// Mean over every pair i < j of the contrastive loss (label: the rows share a class).
@compute @workgroup_size(256)
fn batch_contrastive_forward(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var idx = lid; idx < ROWS * ROWS; idx += WORKGROUP) {
        let i = idx / ROWS;
        let j = idx % ROWS;
        if (j > i) {
            acc += pair_loss(i, j);
        }
    }
    let total = workgroup_total(lid, acc);
    if (lid == 0u) {
        losses[s.loss_slot] = total / f32(ROWS * (ROWS - 1u) / 2u);
    }
}

@compute @workgroup_size(256)
fn batch_contrastive_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= ROWS * ROWS) {
        return;
    }
    let i = idx / ROWS;
    let j = idx % ROWS;
    if (j <= i) {
        ddist[idx] = 0.0;
        return;
    }
    let g = 1.0 / f32(ROWS * (ROWS - 1u) / 2u);
    let d = dist[idx];
    if (same_class(i, j)) {
        ddist[idx] = g * 2.0 * d;
    } else {
        ddist[idx] = -(g * 2.0 * max(MARGIN - d, 0.0));
    }
}

fn triplets() -> f32 {
    return f32(ROWS * (K - 1u) * (ROWS - K));
}

// Mean over every triplet (anchor a, positive p of a's class, negative n of another) of
// max(d(a, p) - d(a, n) + margin, 0). Each invocation takes (a, p) entries at a fixed stride.
@compute @workgroup_size(256)
fn batch_triplet_forward(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var idx = lid; idx < ROWS * ROWS; idx += WORKGROUP) {
        let a = idx / ROWS;
        let p = idx % ROWS;
        if (p == a || !same_class(a, p)) {
            continue;
        }
        for (var n = 0u; n < ROWS; n++) {
            if (!same_class(a, n)) {
                acc += max(dist[a * ROWS + p] - dist[a * ROWS + n] + MARGIN, 0.0);
            }
        }
    }
    let total = workgroup_total(lid, acc);
    if (lid == 0u) {
        losses[s.loss_slot] = total / triplets();
    }
}

// d loss / d dist[a][x]: the active triplets it is part of, counted, over the triplet count; positive
// for a positive x, negative for a negative one.
@compute @workgroup_size(256)
fn batch_triplet_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= ROWS * ROWS) {
        return;
    }
    let a = idx / ROWS;
    let x = idx % ROWS;
    if (x == a) {
        ddist[idx] = 0.0;
        return;
    }
    var count = 0u;
    if (same_class(a, x)) {
        for (var n = 0u; n < ROWS; n++) {
            if (!same_class(a, n) && dist[a * ROWS + x] - dist[a * ROWS + n] + MARGIN > 0.0) {
                count++;
            }
        }
        ddist[idx] = f32(count) / triplets();
    } else {
        for (var p = 0u; p < ROWS; p++) {
            if (p != a && same_class(a, p) && dist[a * ROWS + p] - dist[a * ROWS + x] + MARGIN > 0.0) {
                count++;
            }
        }
        ddist[idx] = -(f32(count) / triplets());
    }
}
