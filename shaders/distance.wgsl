// Euclidean distance between the twin's embeddings, as the tutorial defines it:
// d = sqrt(max(sum((a - b)^2), 1e-7)). The embeddings are one batch of 2 * pairs rows: rows [0, pairs)
// are the first images of the pairs, rows [pairs, 2 * pairs) the second ones.
// A micro-batch's embeddings are its own pairs' rows; its distances go to their places in the whole
// batch's, from the step's micro_start.
// Gradient as TensorFlow derives it: sqrt's dy * 0.5 / d, then max passes it to the sum where
// sum >= 1e-7 and nothing where the clamp is active, then square's 2 * (a - b).

override PAIRS: u32;
override DIM: u32;

@group(0) @binding(1) var<storage, read> emb: array<f32>;
@group(0) @binding(2) var<storage, read_write> dist: array<f32>;
@group(0) @binding(3) var<storage, read> ddist: array<f32>;
@group(0) @binding(4) var<storage, read_write> demb: array<f32>;
@group(0) @binding(6) var<uniform> s: Step;

fn squared_distance(i: u32) -> f32 {
    var ss = 0.0;
    for (var k = 0u; k < DIM; k++) {
        let diff = emb[i * DIM + k] - emb[(PAIRS + i) * DIM + k];
        ss += diff * diff;
    }
    return ss;
}

@compute @workgroup_size(256)
fn distance_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= PAIRS) {
        return;
    }
    dist[s.micro_start + i] = sqrt(max(squared_distance(i), DISTANCE_EPSILON));
}

// One lane per pair: the squared distance is summed once, then spread over the pair's 2 x DIM gradients.
@compute @workgroup_size(256)
fn distance_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= PAIRS) {
        return;
    }
    let ss = squared_distance(i);
    for (var k = 0u; k < DIM; k++) {
        var g = 0.0;
        if (ss >= DISTANCE_EPSILON) {
            let diff = emb[i * DIM + k] - emb[(PAIRS + i) * DIM + k];
            g = ddist[i] * 0.5 / sqrt(ss) * 2.0 * diff;
        }
        demb[i * DIM + k] = g;
        demb[(PAIRS + i) * DIM + k] = -g;
    }
}

// The distance between rows a and b of `emb` for each of a list of pairs: the same sum in the same
// order as distance_forward, so a pair's distance is the same bits whichever way its embeddings were
// laid out. Used at inference, where every image is embedded once and paired afterwards.
@group(0) @binding(5) var<storage, read> pair_rows: array<vec2<u32>>;

@compute @workgroup_size(256)
fn pair_distance(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= PAIRS) {
        return;
    }
    let rows = pair_rows[i];
    var ss = 0.0;
    for (var k = 0u; k < DIM; k++) {
        let diff = emb[rows.x * DIM + k] - emb[rows.y * DIM + k];
        ss += diff * diff;
    }
    dist[i] = sqrt(max(ss, DISTANCE_EPSILON));
}
