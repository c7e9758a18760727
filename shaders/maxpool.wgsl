// Max-pooling, 2x2 windows with stride 2, NHWC. Odd heights and widths are floored, as in Keras:
// the last row/column is dropped and gets a zero gradient. The gradient of each window goes to its
// first maximum in row-major order (TensorFlow's choice); the backward pass finds it again from x.

struct PoolParams {
    batch: u32, in_h: u32, in_w: u32, channels: u32,
    out_h: u32, out_w: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
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
    var best = ((n * p.in_h + 2u * oy) * p.in_w + 2u * ox) * p.channels + c;
    var best_value = x[best];
    for (var wy = 0u; wy < 2u; wy++) {
        for (var wx = 0u; wx < 2u; wx++) {
            let i = ((n * p.in_h + 2u * oy + wy) * p.in_w + 2u * ox + wx) * p.channels + c;
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
    if (idx >= p.batch * p.out_h * p.out_w * p.channels) {
        return;
    }
    let c = idx % p.channels;
    var t = idx / p.channels;
    let ox = t % p.out_w;
    t = t / p.out_w;
    let oy = t % p.out_h;
    let n = t / p.out_h;
    y[idx] = x[window_argmax(n, oy, ox, c)];
}

@compute @workgroup_size(256)
fn maxpool2_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= p.batch * p.in_h * p.in_w * p.channels) {
        return;
    }
    let c = idx % p.channels;
    var t = idx / p.channels;
    let ix = t % p.in_w;
    t = t / p.in_w;
    let iy = t % p.in_h;
    let n = t / p.in_h;
    let oy = iy / 2u;
    let ox = ix / 2u;
    var g = 0.0;
    if (oy < p.out_h && ox < p.out_w && window_argmax(n, oy, ox, c) == idx) {
        g = dy[((n * p.out_h + oy) * p.out_w + ox) * p.channels + c];
    }
    dx[idx] = g;
}
