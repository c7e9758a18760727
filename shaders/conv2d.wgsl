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
// not be fused (lavapipe's is not), so exact_fma computes the fused result from plain operations, at
// about 17 operations a multiply-add. EXACT = 0 uses the adapter's fma() instead: for layers whose
// roundings need not match Keras' or the fused block's bit for bit.

// Weight gradients: the batch is split into `branches` equal parts (the twin's two towers) whose sums
// are added at the end, and each branch's positions into `chunks` partial sums (see reduce.wgsl).
// conv_block.wgsl fuses conv -> maxpool -> dropout -> gap and must keep every operation's order here.
override BATCH: u32;
override IN_H: u32;
override IN_W: u32;
override IN_C: u32;
override OUT_H: u32;
override OUT_W: u32;
override OUT_C: u32;
override KERNEL_H: u32;
override KERNEL_W: u32;
override PAD_TOP: u32;
override PAD_LEFT: u32;
override RELU: u32;
override BRANCHES: u32;
override CHUNKS: u32;
override EXACT: u32 = 1u;
// The taps one weight-gradient invocation loops over: TAPS_PER_INVOCATION, or all of them when fewer.
override TAP_LOOP: u32 = min(TAPS_PER_INVOCATION, KERNEL_H * KERNEL_W * IN_C);

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wb: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;

fn kernel_index(ky: u32, kx: u32, ci: u32, co: u32) -> u32 {
    return ((ky * KERNEL_W + kx) * IN_C + ci) * OUT_C + co;
}

fn kernel_len() -> u32 {
    return KERNEL_H * KERNEL_W * IN_C * OUT_C;
}

// The gradient reaching the pre-activation z at output element o.
fn grad_z(o: u32) -> f32 {
    return select(dy[o], 0.0, RELU != 0u && y[o] <= 0.0);
}

@compute @workgroup_size(256)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= BATCH * OUT_H * OUT_W * OUT_C) {
        return;
    }
    let co = idx % OUT_C;
    var t = idx / OUT_C;
    let ox = t % OUT_W;
    t = t / OUT_W;
    let oy = t % OUT_H;
    let n = t / OUT_H;
    var acc = 0.0;
    for (var ky = 0u; ky < KERNEL_H; ky++) {
        let iy = i32(oy + ky) - i32(PAD_TOP);
        if (iy < 0 || iy >= i32(IN_H)) {
            continue;
        }
        for (var kx = 0u; kx < KERNEL_W; kx++) {
            let ix = i32(ox + kx) - i32(PAD_LEFT);
            if (ix < 0 || ix >= i32(IN_W)) {
                continue;
            }
            let base = ((n * IN_H + u32(iy)) * IN_W + u32(ix)) * IN_C;
            for (var ci = 0u; ci < IN_C; ci++) {
                if (EXACT == 1u) {
                    acc = exact_fma(x[base + ci], wb[kernel_index(ky, kx, ci, co)], acc);
                } else {
                    acc = fma(x[base + ci], wb[kernel_index(ky, kx, ci, co)], acc);
                }
            }
        }
    }
    acc += wb[kernel_len() + co];
    if (RELU != 0u) {
        acc = max(acc, 0.0);
    }
    y[idx] = acc;
}

// dx[n, iy, ix, ci] = sum over (ky, kx, co) of dz[n, iy + pad_top - ky, ix + pad_left - kx, co] * w[ky, kx, ci, co]
@compute @workgroup_size(256)
fn conv2d_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= BATCH * IN_H * IN_W * IN_C) {
        return;
    }
    let ci = idx % IN_C;
    var t = idx / IN_C;
    let ix = t % IN_W;
    t = t / IN_W;
    let iy = t % IN_H;
    let n = t / IN_H;
    var acc = 0.0;
    for (var ky = 0u; ky < KERNEL_H; ky++) {
        let oy = i32(iy + PAD_TOP) - i32(ky);
        if (oy < 0 || oy >= i32(OUT_H)) {
            continue;
        }
        for (var kx = 0u; kx < KERNEL_W; kx++) {
            let ox = i32(ix + PAD_LEFT) - i32(kx);
            if (ox < 0 || ox >= i32(OUT_W)) {
                continue;
            }
            let base = ((n * OUT_H + u32(oy)) * OUT_W + u32(ox)) * OUT_C;
            for (var co = 0u; co < OUT_C; co++) {
                acc = fma(grad_z(base + co), wb[kernel_index(ky, kx, ci, co)], acc);
            }
        }
    }
    dx[idx] = acc;
}

// Partial sums of the kernel and bias gradients. Each invocation owns one output channel co and up to
// TAPS_PER_INVOCATION kernel taps (ky, kx, ci) of it (group `tap_group`), and sums x * dz over its chunk
// of the branch's output positions, reading dz once for all its taps; the first group also sums dz for
// the bias. reduce.wgsl's sum_partials then adds the chunks in order, branch by branch: a fixed order, no
// atomics.
// Positions are visited in 2x2 blocks (block rows, then blocks, then the block's four positions in
// row-major order), and chunks are runs of blocks: then conv_block.wgsl's backward, which visits only
// each pooling window's winner, adds the same nonzero terms in the same order as this kernel, which
// visits every position and adds zeros elsewhere.
// Partial layout: [branch][chunk][kernel (tap-major, as the kernel itself) then bias].
const TAPS_PER_INVOCATION: u32 = 8u;

// The input value at (n, iy, ix, ci), and 0 outside the image: adding x * dz = 0 leaves a sum as it is,
// and a select costs a CPU adapter less than a branch its lanes may take differently.
fn input_or_zero(n: u32, iy: i32, ix: i32, ci: u32) -> f32 {
    let inside = iy >= 0 && iy < i32(IN_H) && ix >= 0 && ix < i32(IN_W);
    let i = select(0u, ((n * IN_H + u32(iy)) * IN_W + u32(ix)) * IN_C + ci, inside);
    return select(0.0, x[i], inside);
}

@compute @workgroup_size(256)
fn conv2d_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    let taps = KERNEL_H * KERNEL_W * IN_C;
    let tap_groups = (taps + TAPS_PER_INVOCATION - 1u) / TAPS_PER_INVOCATION;
    if (idx >= BRANCHES * CHUNKS * tap_groups * OUT_C) {
        return;
    }
    let co = idx % OUT_C;
    let tap_group = (idx / OUT_C) % tap_groups;
    let part = idx / (OUT_C * tap_groups);
    let branch = part / CHUNKS;
    let chunk = part % CHUNKS;
    let blocks_w = (OUT_W + 1u) / 2u;
    let per_image = ((OUT_H + 1u) / 2u) * blocks_w;
    let branch_images = BATCH / BRANCHES;
    let blocks = branch_images * per_image;
    let chunk_len = (blocks + CHUNKS - 1u) / CHUNKS;
    let start = min(chunk * chunk_len, blocks);
    let end = min(start + chunk_len, blocks);

    // This invocation's taps, decoded once.
    var tap_ky: array<u32, TAPS_PER_INVOCATION>;
    var tap_kx: array<u32, TAPS_PER_INVOCATION>;
    var tap_ci: array<u32, TAPS_PER_INVOCATION>;
    var acc: array<f32, TAPS_PER_INVOCATION>;
    let first_tap = tap_group * TAPS_PER_INVOCATION;
    let tap_count = min(TAPS_PER_INVOCATION, taps - first_tap);
    for (var t = 0u; t < TAPS_PER_INVOCATION; t++) {
        let tap = first_tap + t;
        tap_ci[t] = tap % IN_C;
        tap_kx[t] = (tap / IN_C) % KERNEL_W;
        tap_ky[t] = tap / (IN_C * KERNEL_W);
        acc[t] = 0.0;
    }
    var bias_acc = 0.0;

    // Walk the chunk's blocks with counters rather than a division per block.
    var n = branch * branch_images + start / per_image;
    var by = (start % per_image) / blocks_w;
    var bx = start % blocks_w;
    for (var b = start; b < end; b++) {
        for (var k = 0u; k < 4u; k++) {
            let oy = 2u * by + k / 2u;
            let ox = 2u * bx + k % 2u;
            if (oy < OUT_H && ox < OUT_W) {
                let gz = grad_z(((n * OUT_H + oy) * OUT_W + ox) * OUT_C + co);
                bias_acc += gz;
                // A constant bound, so that the loop unrolls and acc[] stays in registers (an array
                // indexed by a variable is memory on a CPU adapter); the last group's missing taps skip.
                for (var t = 0u; t < TAP_LOOP; t++) {
                    if (t < tap_count) {
                        let v = input_or_zero(n, i32(oy + tap_ky[t]) - i32(PAD_TOP), i32(ox + tap_kx[t]) - i32(PAD_LEFT), tap_ci[t]);
                        acc[t] = fma(v, gz, acc[t]);
                    }
                }
            }
        }
        bx += 1u;
        if (bx == blocks_w) {
            bx = 0u;
            by += 1u;
            if (by * blocks_w == per_image) {
                by = 0u;
                n += 1u;
            }
        }
    }
    let count = kernel_len() + OUT_C;
    for (var t = 0u; t < tap_count; t++) {
        partial[part * count + (first_tap + t) * OUT_C + co] = acc[t];
    }
    if (tap_group == 0u) {
        partial[part * count + kernel_len() + co] = bias_acc;
    }
}
