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

// Index into x of the top-left element of output element o's window, o = (n, oy, ox, c).
fn window_corner(o: u32) -> u32 {
    let c = o % CHANNELS;
    let ox = (o / CHANNELS) % OUT_W;
    let oy = (o / (CHANNELS * OUT_W)) % OUT_H;
    let n = o / (CHANNELS * OUT_W * OUT_H);
    return ((n * IN_H + 2u * oy) * IN_W + 2u * ox) * CHANNELS + c;
}

// Index into x of the first maximum, in row-major order, of output element o's window.
fn window_argmax(o: u32) -> u32 {
    let corner = window_corner(o);
    var best = corner;
    for (var wy = 0u; wy < 2u; wy++) {
        for (var wx = 0u; wx < 2u; wx++) {
            let i = corner + (wy * IN_W + wx) * CHANNELS;
            if (x[i] > x[best]) {
                best = i;
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
    y[idx] = x[window_argmax(idx)];
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
    let corner = window_corner(idx);
    let best = window_argmax(idx);
    let ox = (idx / CHANNELS) % OUT_W;
    let oy = (idx / (CHANNELS * OUT_W)) % OUT_H;
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
            let i = corner + (wy * IN_W + wx) * CHANNELS;
            dx[i] = select(0.0, g, i == best);
        }
    }
}

// Any window size and stride ('valid': what no window reaches is dropped). SIZE and STRIDE are only
// read here.
// maxpool2 four channels a lane, for channel counts in multiples of 4: the same comparisons, in the
// same order, on each of the four (lane (window, channel quad)).
@group(0) @binding(5) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dx4: array<vec4<f32>>;

// The window's first maximum of each channel (row-major, as window_argmax), and its place 0 to 3.
struct WindowMax {
    value: vec4<f32>,
    place: vec4<u32>,
}

fn window_max4(corner4: u32) -> WindowMax {
    let row = IN_W * CHANNELS / 4u;
    let step = CHANNELS / 4u;
    var best = x4[corner4];
    var place = vec4<u32>(0u);
    let v1 = x4[corner4 + step];
    place = select(place, vec4<u32>(1u), v1 > best);
    best = select(best, v1, v1 > best);
    let v2 = x4[corner4 + row];
    place = select(place, vec4<u32>(2u), v2 > best);
    best = select(best, v2, v2 > best);
    let v3 = x4[corner4 + row + step];
    place = select(place, vec4<u32>(3u), v3 > best);
    best = select(best, v3, v3 > best);
    return WindowMax(best, place);
}

@compute @workgroup_size(256)
fn maxpool2_forward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let q = thread_index(wg, nwg, lid);
    if (q >= BATCH * OUT_H * OUT_W * CHANNELS / 4u) {
        return;
    }
    y4[q] = window_max4(window_corner(4u * q) / 4u).value;
}

@compute @workgroup_size(256)
fn maxpool2_backward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let q = thread_index(wg, nwg, lid);
    if (q >= BATCH * OUT_H * OUT_W * CHANNELS / 4u) {
        return;
    }
    let o = 4u * q;
    let corner4 = window_corner(o) / 4u;
    let row = IN_W * CHANNELS / 4u;
    let step = CHANNELS / 4u;
    let place = window_max4(corner4).place;
    let g = dy4[q];
    let zero = vec4<f32>(0.0);
    dx4[corner4] = select(zero, g, place == vec4<u32>(0u));
    dx4[corner4 + step] = select(zero, g, place == vec4<u32>(1u));
    dx4[corner4 + row] = select(zero, g, place == vec4<u32>(2u));
    dx4[corner4 + row + step] = select(zero, g, place == vec4<u32>(3u));
    // An odd last row or column, which no window takes, gets 0 from the window beside it.
    let ox = (o / CHANNELS) % OUT_W;
    let oy = (o / (CHANNELS * OUT_W)) % OUT_H;
    let last_row = oy == OUT_H - 1u && IN_H % 2u == 1u;
    let last_col = ox == OUT_W - 1u && IN_W % 2u == 1u;
    if (last_row) {
        dx4[corner4 + 2u * row] = zero;
        dx4[corner4 + 2u * row + step] = zero;
    }
    if (last_col) {
        dx4[corner4 + 2u * step] = zero;
        dx4[corner4 + row + 2u * step] = zero;
    }
    if (last_row && last_col) {
        dx4[corner4 + 2u * row + 2u * step] = zero;
    }
}

override SIZE: u32 = 2u;
override STRIDE: u32 = 2u;

// Index into x of the first maximum, in row-major order, of window (n, oy, ox) of channel c.
fn argmax_of(n: u32, oy: u32, ox: u32, c: u32) -> u32 {
    let corner = ((n * IN_H + STRIDE * oy) * IN_W + STRIDE * ox) * CHANNELS + c;
    var best = corner;
    for (var wy = 0u; wy < SIZE; wy++) {
        for (var wx = 0u; wx < SIZE; wx++) {
            let i = corner + (wy * IN_W + wx) * CHANNELS;
            if (x[i] > x[best]) {
                best = i;
            }
        }
    }
    return best;
}

@compute @workgroup_size(256)
fn maxpool_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let o = thread_index(wg, nwg, lid);
    if (o >= BATCH * OUT_H * OUT_W * CHANNELS) {
        return;
    }
    let c = o % CHANNELS;
    let ox = (o / CHANNELS) % OUT_W;
    let oy = (o / (CHANNELS * OUT_W)) % OUT_H;
    let n = o / (CHANNELS * OUT_W * OUT_H);
    y[o] = x[argmax_of(n, oy, ox, c)];
}

// One lane per input: the sum, over the windows holding it in window order, of the gradients of those
// it is the first maximum of.
@compute @workgroup_size(256)
fn maxpool_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BATCH * IN_H * IN_W * CHANNELS) {
        return;
    }
    let c = i % CHANNELS;
    let ix = (i / CHANNELS) % IN_W;
    let iy = (i / (CHANNELS * IN_W)) % IN_H;
    let n = i / (CHANNELS * IN_W * IN_H);
    // Windows oy with STRIDE oy <= iy < STRIDE oy + SIZE, within the output.
    let oy_first = select(0u, (iy - SIZE + STRIDE) / STRIDE, iy + 1u > SIZE);
    let ox_first = select(0u, (ix - SIZE + STRIDE) / STRIDE, ix + 1u > SIZE);
    var g = 0.0;
    for (var oy = oy_first; oy <= min(iy / STRIDE, OUT_H - 1u); oy++) {
        for (var ox = ox_first; ox <= min(ix / STRIDE, OUT_W - 1u); ox++) {
            if (argmax_of(n, oy, ox, c) == i) {
                g += dy[((n * OUT_H + oy) * OUT_W + ox) * CHANNELS + c];
            }
        }
    }
    dx[i] = g;
}
