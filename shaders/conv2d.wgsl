// Conv2D with stride 1 over NHWC activations, as Keras lays them out.
// A layer's parameters are one region: the kernel [kernel_h, kernel_w, in_c, out_c], then the bias [out_c].
// Padding is given as the rows/columns added before (top/left); Keras' "same" puts the odd one after,
// so a 2x2 "same" kernel has pad_top = pad_left = 0 and reads one past the bottom/right edge (zeros).
// With relu = 1 the output is max(z, 0) and the backward passes mask the incoming gradient with y > 0
// (ReLU's derivative at 0 is 0, as in TensorFlow).
//
// The forward pass accumulates products with fused multiply-adds in the reference's order, then adds the
// bias, as oneDNN does under Keras: max-pooling and ReLU make discrete choices on these values, and a
// near-tie in a pooling window goes Keras' way only if every rounding is the same. WGSL's fma() need
// not be fused (lavapipe's is not), so exact_fma computes the fused result from plain operations.

struct Conv2dParams {
    batch: u32, in_h: u32, in_w: u32, in_c: u32,
    out_h: u32, out_w: u32, out_c: u32, kernel_h: u32,
    kernel_w: u32, pad_top: u32, pad_left: u32, relu: u32,
    // Weight gradients: the batch is split into `branches` equal parts (the twin's two towers) whose sums
    // are added at the end, and each branch's positions into `chunks` partial sums (see reduce.wgsl).
    branches: u32, chunks: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wb: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;

const WORKGROUP: u32 = 256u;

// Dispatches are a 2-D grid of 1-D workgroups so that more than 65535 workgroups fit.
fn thread_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WORKGROUP + lid;
}

fn kernel_index(ky: u32, kx: u32, ci: u32, co: u32) -> u32 {
    return ((ky * p.kernel_w + kx) * p.in_c + ci) * p.out_c + co;
}

// Dekker's exact product: a * b = p + error, through Veltkamp's split of each factor into 12-bit
// halves, using only plain multiplies and adds.
fn split(a: f32) -> vec2<f32> {
    let c = 4097.0 * a;
    let hi = c - (c - a);
    return vec2<f32>(hi, a - hi);
}

fn two_product_error(a: f32, b: f32, p: f32) -> f32 {
    let sa = split(a);
    let sb = split(b);
    return sa.y * sb.y - (((p - sa.x * sb.x) - sa.y * sb.x) - sa.x * sb.y);
}

// a * b + c rounded once: the exact product p + e, Knuth's TwoSum of p and c, then the small terms.
fn exact_fma(a: f32, b: f32, c: f32) -> f32 {
    let p = a * b;
    let e = two_product_error(a, b, p);
    let s = p + c;
    let back = s - p;
    let t = (p - (s - back)) + (c - back);
    return s + (t + e);
}

fn kernel_len() -> u32 {
    return p.kernel_h * p.kernel_w * p.in_c * p.out_c;
}

// The gradient reaching the pre-activation z at output element o.
fn grad_z(o: u32) -> f32 {
    if (p.relu != 0u && y[o] <= 0.0) {
        return 0.0;
    }
    return dy[o];
}

@compute @workgroup_size(256)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= p.batch * p.out_h * p.out_w * p.out_c) {
        return;
    }
    let co = idx % p.out_c;
    var t = idx / p.out_c;
    let ox = t % p.out_w;
    t = t / p.out_w;
    let oy = t % p.out_h;
    let n = t / p.out_h;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kernel_h; ky++) {
        let iy = i32(oy + ky) - i32(p.pad_top);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < p.kernel_w; kx++) {
            let ix = i32(ox + kx) - i32(p.pad_left);
            if (ix < 0 || ix >= i32(p.in_w)) {
                continue;
            }
            let base = ((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c;
            for (var ci = 0u; ci < p.in_c; ci++) {
                acc = exact_fma(x[base + ci], wb[kernel_index(ky, kx, ci, co)], acc);
            }
        }
    }
    acc += wb[kernel_len() + co];
    if (p.relu != 0u) {
        acc = max(acc, 0.0);
    }
    y[idx] = acc;
}

// dx[n, iy, ix, ci] = sum over (ky, kx, co) of dz[n, iy + pad_top - ky, ix + pad_left - kx, co] * w[ky, kx, ci, co]
@compute @workgroup_size(256)
fn conv2d_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= p.batch * p.in_h * p.in_w * p.in_c) {
        return;
    }
    let ci = idx % p.in_c;
    var t = idx / p.in_c;
    let ix = t % p.in_w;
    t = t / p.in_w;
    let iy = t % p.in_h;
    let n = t / p.in_h;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kernel_h; ky++) {
        let oy = i32(iy + p.pad_top) - i32(ky);
        if (oy < 0 || oy >= i32(p.out_h)) {
            continue;
        }
        for (var kx = 0u; kx < p.kernel_w; kx++) {
            let ox = i32(ix + p.pad_left) - i32(kx);
            if (ox < 0 || ox >= i32(p.out_w)) {
                continue;
            }
            let base = ((n * p.out_h + u32(oy)) * p.out_w + u32(ox)) * p.out_c;
            for (var co = 0u; co < p.out_c; co++) {
                acc = fma(grad_z(base + co), wb[kernel_index(ky, kx, ci, co)], acc);
            }
        }
    }
    dx[idx] = acc;
}

// Partial sums of the kernel and bias gradients. Thread (branch, chunk, j) sums, over its chunk of the
// branch's output positions, x * dz for kernel element j (j < kernel_len) or dz for bias j - kernel_len.
// reduce.wgsl's sum_partials then adds the chunks in order, branch by branch: a fixed order, no atomics.
@compute @workgroup_size(256)
fn conv2d_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    let k_len = kernel_len();
    let count = k_len + p.out_c;
    if (idx >= p.branches * p.chunks * count) {
        return;
    }
    let j = idx % count;
    let part = idx / count;
    let branch = part / p.chunks;
    let chunk = part % p.chunks;
    let per_image = p.out_h * p.out_w;
    let branch_images = p.batch / p.branches;
    let positions = branch_images * per_image;
    let chunk_len = (positions + p.chunks - 1u) / p.chunks;
    let start = min(chunk * chunk_len, positions);
    let end = min(start + chunk_len, positions);

    var acc = 0.0;
    if (j >= k_len) {
        let co = j - k_len;
        for (var pos = start; pos < end; pos++) {
            let n = branch * branch_images + pos / per_image;
            let o = (n * per_image + pos % per_image) * p.out_c + co;
            acc += grad_z(o);
        }
    } else {
        let co = j % p.out_c;
        var t = j / p.out_c;
        let ci = t % p.in_c;
        t = t / p.in_c;
        let kx = t % p.kernel_w;
        let ky = t / p.kernel_w;
        for (var pos = start; pos < end; pos++) {
            let n = branch * branch_images + pos / per_image;
            let oy = (pos % per_image) / p.out_w;
            let ox = pos % p.out_w;
            let iy = i32(oy + ky) - i32(p.pad_top);
            let ix = i32(ox + kx) - i32(p.pad_left);
            if (iy < 0 || iy >= i32(p.in_h) || ix < 0 || ix >= i32(p.in_w)) {
                continue;
            }
            let o = ((n * p.out_h + oy) * p.out_w + ox) * p.out_c + co;
            acc = fma(x[((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c + ci], grad_z(o), acc);
        }
    }
    partial[part * count + j] = acc;
}
