// Batch normalisation over NHWC as Keras does it: in training each branch of the twin's batch (the
// tower is called once per branch) is normalised with its own statistics over (images, positions),
// mean = sum x / N and variance = sum (x - mean)^2 / N, and the moving averages move once per branch,
// in branch order: m = m * MOMENTUM + mean * (1 - MOMENTUM), likewise the variance. At inference the
// moving averages normalise. y = x * inv + shift, inv = gamma / sqrt(variance + EPSILON),
// shift = beta - mean * inv (tf.nn.batch_normalization's order).
//
// Sums are taken in a fixed order: each branch's positions are cut into CHUNKS runs, a lane per
// (branch, chunk, channel) sums its run in order, then a lane per (branch, channel) adds the runs in
// order. Layout of `aux` (the layer's own, per micro-batch):
//   [0, 4 BC)                 per (branch, channel): mean, 1 / sqrt(variance + EPSILON), inv, shift
//   [4 BC, 4 BC + 2 B K C)    the chunks' partial sums, [branch][chunk][2][channel]
//   [.., + 2 BC)              the backward's sums, [branch][2][channel]: sum dy, sum dy * xhat
// The parameters' gradient goes to `slots`, [WHOLE_PAIRS][branch][2C] (gamma's then beta's): a
// micro-batch writes its sums in the slot of its first pair and zeros in its other pairs' slots, and
// bn_gradient adds the slots in order.

override BATCH: u32;
override POSITIONS: u32;
override CHANNELS: u32;
override BRANCHES: u32;
override CHUNKS: u32;
override EPSILON: f32;
override MOMENTUM: f32;
// 1 - MOMENTUM as Keras rounds it (computed in f64, then f32).
override ONE_MINUS_MOMENTUM: f32;
override WHOLE_PAIRS: u32 = 1u;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
// gamma [C] then beta [C].
@group(0) @binding(5) var<storage, read> wb: array<f32>;
// moving_mean [C] then moving_variance [C].
@group(0) @binding(6) var<storage, read_write> state: array<f32>;
@group(0) @binding(7) var<storage, read_write> aux: array<f32>;
@group(0) @binding(8) var<storage, read_write> slots: array<f32>;
@group(0) @binding(9) var<uniform> s: Step;
@group(0) @binding(10) var<storage, read_write> grads: array<f32>;
// vec4 views, for bn_apply4 and bn_backward_input4 (channel counts in multiples of 4): a lane per
// four channels of a position, each load and store one vec4.
@group(0) @binding(11) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(15) var<storage, read> aux4: array<vec4<f32>>;

fn branch_positions() -> u32 {
    return BATCH / BRANCHES * POSITIONS;
}

fn chunk_len() -> u32 {
    return (branch_positions() + CHUNKS - 1u) / CHUNKS;
}

// Element index of position p of branch b, channel c.
fn element(b: u32, p: u32, c: u32) -> u32 {
    return (b * branch_positions() + p) * CHANNELS + c;
}

fn stat(b: u32, k: u32, c: u32) -> u32 {
    return (b * 4u + k) * CHANNELS + c;
}

fn partial_at(b: u32, chunk: u32, k: u32, c: u32) -> u32 {
    return 4u * BRANCHES * CHANNELS + ((b * CHUNKS + chunk) * 2u + k) * CHANNELS + c;
}

fn grad_sum(b: u32, k: u32, c: u32) -> u32 {
    return 4u * BRANCHES * CHANNELS + 2u * BRANCHES * CHUNKS * CHANNELS + (b * 2u + k) * CHANNELS + c;
}

// Lane (branch, chunk, channel) of the chunked sums; false past the end.
fn chunk_lane(i: u32) -> vec3<u32> {
    return vec3<u32>(i / (CHUNKS * CHANNELS), (i / CHANNELS) % CHUNKS, i % CHANNELS);
}

// Sum of x over each chunk (training only).
@compute @workgroup_size(256)
fn bn_sum_x(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BRANCHES * CHUNKS * CHANNELS || s.training == 0u) {
        return;
    }
    let l = chunk_lane(i);
    let start = min(l.y * chunk_len(), branch_positions());
    let end = min(start + chunk_len(), branch_positions());
    var acc = 0.0;
    for (var p = start; p < end; p++) {
        acc += x[element(l.x, p, l.z)];
    }
    aux[partial_at(l.x, l.y, 0u, l.z)] = acc;
}

// The chunked sums four channels a lane, for channel counts in multiples of 4: the same sums, in the
// same order, for each of the four (lane (branch, chunk, channel quad)).
fn chunk_lane4(i: u32) -> vec3<u32> {
    let quads = CHANNELS / 4u;
    return vec3<u32>(i / (CHUNKS * quads), (i / quads) % CHUNKS, 4u * (i % quads));
}

fn aux_quad(at: u32) -> vec4<f32> {
    return vec4<f32>(aux[at], aux[at + 1u], aux[at + 2u], aux[at + 3u]);
}

fn set_aux_quad(at: u32, v: vec4<f32>) {
    aux[at] = v.x;
    aux[at + 1u] = v.y;
    aux[at + 2u] = v.z;
    aux[at + 3u] = v.w;
}

@compute @workgroup_size(256)
fn bn_sum_x4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BRANCHES * CHUNKS * CHANNELS / 4u || s.training == 0u) {
        return;
    }
    let l = chunk_lane4(i);
    let start = min(l.y * chunk_len(), branch_positions());
    let end = min(start + chunk_len(), branch_positions());
    var acc = vec4<f32>(0.0);
    for (var p = start; p < end; p++) {
        acc += x4[element(l.x, p, l.z) / 4u];
    }
    set_aux_quad(partial_at(l.x, l.y, 0u, l.z), acc);
}

@compute @workgroup_size(256)
fn bn_sum_squares4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BRANCHES * CHUNKS * CHANNELS / 4u || s.training == 0u) {
        return;
    }
    let l = chunk_lane4(i);
    let mean = aux_quad(stat(l.x, 0u, l.z));
    let start = min(l.y * chunk_len(), branch_positions());
    let end = min(start + chunk_len(), branch_positions());
    var acc = vec4<f32>(0.0);
    for (var p = start; p < end; p++) {
        let d = x4[element(l.x, p, l.z) / 4u] - mean;
        acc += d * d;
    }
    set_aux_quad(partial_at(l.x, l.y, 1u, l.z), acc);
}

@compute @workgroup_size(256)
fn bn_grad_sums4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BRANCHES * CHUNKS * CHANNELS / 4u) {
        return;
    }
    let l = chunk_lane4(i);
    let mean = aux_quad(stat(l.x, 0u, l.z));
    let rstd = aux_quad(stat(l.x, 1u, l.z));
    let start = min(l.y * chunk_len(), branch_positions());
    let end = min(start + chunk_len(), branch_positions());
    var sum_dy = vec4<f32>(0.0);
    var sum_dy_xhat = vec4<f32>(0.0);
    for (var p = start; p < end; p++) {
        let e = element(l.x, p, l.z) / 4u;
        sum_dy += dy4[e];
        sum_dy_xhat += dy4[e] * ((x4[e] - mean) * rstd);
    }
    set_aux_quad(partial_at(l.x, l.y, 0u, l.z), sum_dy);
    set_aux_quad(partial_at(l.x, l.y, 1u, l.z), sum_dy_xhat);
}

// Each branch's mean: its chunks' sums in order, over N.
@compute @workgroup_size(256)
fn bn_mean(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BRANCHES * CHANNELS || s.training == 0u) {
        return;
    }
    let b = i / CHANNELS;
    let c = i % CHANNELS;
    var acc = 0.0;
    for (var k = 0u; k < CHUNKS; k++) {
        acc += aux[partial_at(b, k, 0u, c)];
    }
    aux[stat(b, 0u, c)] = acc / f32(branch_positions());
}

// Sum of (x - mean)^2 over each chunk.
@compute @workgroup_size(256)
fn bn_sum_squares(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BRANCHES * CHUNKS * CHANNELS || s.training == 0u) {
        return;
    }
    let l = chunk_lane(i);
    let mean = aux[stat(l.x, 0u, l.z)];
    let start = min(l.y * chunk_len(), branch_positions());
    let end = min(start + chunk_len(), branch_positions());
    var acc = 0.0;
    for (var p = start; p < end; p++) {
        let d = x[element(l.x, p, l.z)] - mean;
        acc += d * d;
    }
    aux[partial_at(l.x, l.y, 1u, l.z)] = acc;
}

// Per channel: each branch's variance, scale and shift (from the moving averages at inference), and
// in training the moving averages moved by each branch in turn.
@compute @workgroup_size(256)
fn bn_finish(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let c = thread_index(wg, nwg, lid);
    if (c >= CHANNELS) {
        return;
    }
    let gamma = wb[c];
    let beta = wb[CHANNELS + c];
    for (var b = 0u; b < BRANCHES; b++) {
        var mean = state[c];
        var variance = state[CHANNELS + c];
        if (s.training != 0u) {
            mean = aux[stat(b, 0u, c)];
            var acc = 0.0;
            for (var k = 0u; k < CHUNKS; k++) {
                acc += aux[partial_at(b, k, 1u, c)];
            }
            variance = acc / f32(branch_positions());
            state[c] = state[c] * MOMENTUM + mean * ONE_MINUS_MOMENTUM;
            state[CHANNELS + c] = state[CHANNELS + c] * MOMENTUM + variance * ONE_MINUS_MOMENTUM;
        }
        let rstd = 1.0 / sqrt(variance + EPSILON);
        let inv = rstd * gamma;
        aux[stat(b, 0u, c)] = mean;
        aux[stat(b, 1u, c)] = rstd;
        aux[stat(b, 2u, c)] = inv;
        aux[stat(b, 3u, c)] = beta - mean * inv;
    }
}

@compute @workgroup_size(256)
fn bn_apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BATCH * POSITIONS * CHANNELS) {
        return;
    }
    let c = i % CHANNELS;
    let b = i / (branch_positions() * CHANNELS);
    y[i] = x[i] * aux[stat(b, 2u, c)] + aux[stat(b, 3u, c)];
}

// bn_apply for four channels at once: the same operations on each.
@compute @workgroup_size(256)
fn bn_apply4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BATCH * POSITIONS * CHANNELS / 4u) {
        return;
    }
    let c = (4u * i) % CHANNELS;
    let b = 4u * i / (branch_positions() * CHANNELS);
    y4[i] = x4[i] * aux4[stat(b, 2u, c) / 4u] + aux4[stat(b, 3u, c) / 4u];
}

// Backward: sums of dy and dy * xhat over each chunk, xhat = (x - mean) / sqrt(variance + EPSILON).
@compute @workgroup_size(256)
fn bn_grad_sums(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BRANCHES * CHUNKS * CHANNELS) {
        return;
    }
    let l = chunk_lane(i);
    let mean = aux[stat(l.x, 0u, l.z)];
    let rstd = aux[stat(l.x, 1u, l.z)];
    let start = min(l.y * chunk_len(), branch_positions());
    let end = min(start + chunk_len(), branch_positions());
    var sum_dy = 0.0;
    var sum_dy_xhat = 0.0;
    for (var p = start; p < end; p++) {
        let e = element(l.x, p, l.z);
        sum_dy += dy[e];
        sum_dy_xhat += dy[e] * ((x[e] - mean) * rstd);
    }
    aux[partial_at(l.x, l.y, 0u, l.z)] = sum_dy;
    aux[partial_at(l.x, l.y, 1u, l.z)] = sum_dy_xhat;
}

// The chunks' sums in order, per (branch, channel): kept for the input's gradient, and as this
// micro-batch's slot of gamma's and beta's gradients (its other pairs' slots zeroed).
@compute @workgroup_size(256)
fn bn_grad_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BRANCHES * CHANNELS) {
        return;
    }
    let b = i / CHANNELS;
    let c = i % CHANNELS;
    var sum_dy = 0.0;
    var sum_dy_xhat = 0.0;
    for (var k = 0u; k < CHUNKS; k++) {
        sum_dy += aux[partial_at(b, k, 0u, c)];
        sum_dy_xhat += aux[partial_at(b, k, 1u, c)];
    }
    aux[grad_sum(b, 0u, c)] = sum_dy;
    aux[grad_sum(b, 1u, c)] = sum_dy_xhat;
    let pairs = BATCH / BRANCHES;
    for (var p = 0u; p < pairs; p++) {
        let slot = ((s.micro_start + p) * BRANCHES + b) * 2u * CHANNELS;
        slots[slot + c] = select(0.0, sum_dy_xhat, p == 0u);
        slots[slot + CHANNELS + c] = select(0.0, sum_dy, p == 0u);
    }
}

// dx = gamma / sqrt(variance + EPSILON) * (dy - sum dy / N - xhat * sum (dy xhat) / N), per branch.
@compute @workgroup_size(256)
fn bn_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BATCH * POSITIONS * CHANNELS) {
        return;
    }
    let c = i % CHANNELS;
    let b = i / (branch_positions() * CHANNELS);
    let n = f32(branch_positions());
    let xhat = (x[i] - aux[stat(b, 0u, c)]) * aux[stat(b, 1u, c)];
    dx[i] = aux[stat(b, 2u, c)] * (dy[i] - aux[grad_sum(b, 0u, c)] / n - xhat * aux[grad_sum(b, 1u, c)] / n);
}

// bn_backward_input for four channels at once: the same operations on each.
@compute @workgroup_size(256)
fn bn_backward_input4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BATCH * POSITIONS * CHANNELS / 4u) {
        return;
    }
    let c = (4u * i) % CHANNELS;
    let b = 4u * i / (branch_positions() * CHANNELS);
    let n = f32(branch_positions());
    let xhat = (x4[i] - aux4[stat(b, 0u, c) / 4u]) * aux4[stat(b, 1u, c) / 4u];
    dx4[i] = aux4[stat(b, 2u, c) / 4u] * (dy4[i] - aux4[grad_sum(b, 0u, c) / 4u] / n - xhat * aux4[grad_sum(b, 1u, c) / 4u] / n);
}

// gamma's and beta's gradients: each branch's slots added in order, then the branches.
@compute @workgroup_size(256)
fn bn_gradient(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let j = thread_index(wg, nwg, lid);
    if (j >= 2u * CHANNELS) {
        return;
    }
    var total = 0.0;
    for (var b = 0u; b < BRANCHES; b++) {
        var acc = 0.0;
        for (var p = 0u; p < WHOLE_PAIRS; p++) {
            acc += slots[(p * BRANCHES + b) * 2u * CHANNELS + j];
        }
        total += acc;
    }
    grads[j] = total;
}
