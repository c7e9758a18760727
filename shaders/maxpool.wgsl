// Max-pooling, 2x2 windows with stride 2, NHWC. Odd heights and widths are floored, as in Keras:
// the last row/column is dropped and gets a zero gradient. The gradient of each window goes to its
// first maximum in row-major order (TensorFlow's choice); the backward pass finds it again from x.

override BATCH: u32;
override IN_H: u32;
override IN_W: u32;
override CHANNELS: u32;
override OUT_H: u32;
override OUT_W: u32;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

const WORKGROUP: u32 = 256u;

fn thread_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WORKGROUP + lid;
}

// Index into x of the first maximum of output (n, oy, ox, c)'s window.
fn window_argmax(n: u32, oy: u32, ox: u32, c: u32) -> u32 {
    var best = ((n * IN_H + 2u * oy) * IN_W + 2u * ox) * CHANNELS + c;
    var best_value = x[best];
    for (var wy = 0u; wy < 2u; wy++) {
        for (var wx = 0u; wx < 2u; wx++) {
            let i = ((n * IN_H + 2u * oy + wy) * IN_W + 2u * ox + wx) * CHANNELS + c;
            if (x[i] > best_value) {
                best = i;
                best_value = x[i];
            }
        }
    }
    return best;
}

@compute @workgroup_size(256)
fn maxpool2_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= BATCH * OUT_H * OUT_W * CHANNELS) {
        return;
    }
    let c = idx % CHANNELS;
    var t = idx / CHANNELS;
    let ox = t % OUT_W;
    t = t / OUT_W;
    let oy = t % OUT_H;
    let n = t / OUT_H;
    y[idx] = x[window_argmax(n, oy, ox, c)];
}

// One invocation per window: the window's gradient goes to its first maximum, zero to the other three.
// The windows of the last row and column also zero the row/column that odd sizes drop.
@compute @workgroup_size(256)
fn maxpool2_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= BATCH * OUT_H * OUT_W * CHANNELS) {
        return;
    }
    let c = idx % CHANNELS;
    var t = idx / CHANNELS;
    let ox = t % OUT_W;
    t = t / OUT_W;
    let oy = t % OUT_H;
    let n = t / OUT_H;
    let best = window_argmax(n, oy, ox, c);
    let g = dy[idx];
    // Rows 2oy, 2oy+1 (and the dropped row 2 OUT_H for the last window row), likewise for columns.
    var rows = 2u;
    if (oy == OUT_H - 1u && IN_H % 2u == 1u) {
        rows = 3u;
    }
    var cols = 2u;
    if (ox == OUT_W - 1u && IN_W % 2u == 1u) {
        cols = 3u;
    }
    for (var wy = 0u; wy < rows; wy++) {
        for (var wx = 0u; wx < cols; wx++) {
            let i = ((n * IN_H + 2u * oy + wy) * IN_W + 2u * ox + wx) * CHANNELS + c;
            dx[i] = select(0.0, g, i == best);
        }
    }
}
