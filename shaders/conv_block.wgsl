// The fused block: conv2d (+ bias, ReLU) -> 2x2 max-pool -> dropout (if the tower has it) -> global
// average pool, as one kernel forward and one backward (the weight gradient; the block starts the tower,
// so nothing needs its input gradient). The conv's output, the pooled map and the dropout output are
// never stored: the forward keeps only the averages and, per pooled element, a 4-bit code: which of the
// window's four positions won (bits 0-1, row-major) and whether a gradient flows back through it
// (bit 2: ReLU active and dropout kept).
//
// Every value is computed by the same operations in the same order as the unfused kernels (conv2d.wgsl,
// maxpool.wgsl, dropout.wgsl, gap.wgsl), so both paths give the same bits; the tests check that.
//
// Why it is shaped as it is: a CPU adapter such as lavapipe runs eight lanes of one SIMD register, and
// a load whose address may differ per lane becomes eight loads. So each lane computes eight output
// channels (two vec4 quads) of one image, and every input pixel it loads serves all eight, and eight
// neighbouring lanes (eight channel groups of one image) split a window's loads between them; the
// kernel taps live in registers; choices (the pooling winner, dropout, the image border) are selects,
// not branches that lanes could take differently.

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
// Always 1: a block with a strided conv does not fuse.
override STRIDE: u32 = 1u;
override RELU: u32;
override BRANCHES: u32;
// The weight gradient's chunks, as conv2d_gemm.wgsl's (weight_chunk in common.wgsl).
override CHUNKS: u32 = 1u;
override WHOLE_IMAGES: u32 = 1u;
override HAS_DROPOUT: bool;
override DROPOUT_SEED: u32;
override DROPOUT_THRESHOLD: u32;
override DROPOUT_SCALE: f32;
// 1: the convolution rounds each multiply-add once, as conv2d.wgsl does (--exact, Keras' bits); 0: the
// adapter's fma, as conv2d_gemm.wgsl does. Either way the unfused path computes the same bits.
override EXACT: u32 = 0u;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wb: array<f32>;
// The averages [batch, out_c] (forward), and their gradient (backward).
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<uniform> s: Step;
// [batch, window, channel group]: one u32 holds the 4-bit codes of a group's eight channels.
@group(0) @binding(7) var<storage, read_write> codes: array<u32>;

// The most kernel taps (kernel_h * kernel_w * in_c) a block may have (MAX_FUSED_TAPS on the host: 3x3
// on colour), and the most input values under one pooling window's four conv outputs (4x4x3).
const MAX_TAPS: u32 = 27u;
const MAX_INPUTS: u32 = 48u;

fn kernel_len() -> u32 {
    return KERNEL_H * KERNEL_W * IN_C * OUT_C;
}

fn pool_h() -> u32 {
    return OUT_H / 2u;
}

fn pool_w() -> u32 {
    return OUT_W / 2u;
}

fn windows() -> u32 {
    return pool_h() * pool_w();
}

// Lanes own eight channels each: groups of eight, the last one padded.
fn channel_groups() -> u32 {
    return (OUT_C + 7u) / 8u;
}

// The four channels of quad q (0 or 1) of a group; padding channels past the last read the last one.
fn quad_channels(group: u32, q: u32) -> vec4<u32> {
    return min(vec4<u32>(group * 8u + q * 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(OUT_C - 1u));
}

// A window's inputs: the (kernel_h + 1) x (kernel_w + 1) x in_c input values under the four conv
// outputs of the pooling window whose top-left output is (oy, ox), 0 outside the image. conv2d_forward
// skips those taps; adding them as 0 gives the same bits (an exact fused multiply-add of 0 and any
// factor returns the accumulator, and no accumulator here is ever -0).
fn input_slot(ry: u32, rx: u32, ci: u32) -> u32 {
    return (ry * (KERNEL_W + 1u) + rx) * IN_C + ci;
}

fn input_or_zero(n: u32, iy: i32, ix: i32, ci: u32) -> f32 {
    let inside = iy >= 0 && iy < i32(IN_H) && ix >= 0 && ix < i32(IN_W);
    let i = select(0u, ((n * IN_H + u32(iy)) * IN_W + u32(ix)) * IN_C + ci, inside);
    return select(0.0, x[i], inside);
}

// The input value in window slot i.
fn input_at_slot(n: u32, oy: u32, ox: u32, i: u32) -> f32 {
    let ci = i % IN_C;
    let rx = (i / IN_C) % (KERNEL_W + 1u);
    let ry = i / (IN_C * (KERNEL_W + 1u));
    return input_or_zero(n, i32(oy + ry) - i32(PAD_TOP), i32(ox + rx) - i32(PAD_LEFT), ci);
}

fn window_inputs() -> u32 {
    return (KERNEL_H + 1u) * (KERNEL_W + 1u) * IN_C;
}

// The window's inputs. Eight neighbouring lanes work on the same image (their channel groups differ)
// where `shares_inputs()`: each then loads every eighth value and the rest come from its neighbours
// (share_f32, from the prepended conv2d_share_*.wgsl), a load being what a CPU adapter pays most for.
fn load_inputs(n: u32, oy: u32, ox: u32, inputs: ptr<function, array<f32, MAX_INPUTS>>, lane: u32) {
    if (shares_inputs()) {
        var mine: array<f32, 6>;
        for (var r = 0u; r < (window_inputs() + 7u) / 8u; r++) {
            mine[r] = input_at_slot(n, oy, ox, min(r * 8u + lane % 8u, window_inputs() - 1u));
        }
        for (var i = 0u; i < window_inputs(); i++) {
            (*inputs)[i] = share_f32(mine[i / 8u], i % 8u, lane);
        }
        return;
    }
    for (var i = 0u; i < window_inputs(); i++) {
        (*inputs)[i] = input_at_slot(n, oy, ox, i);
    }
}

// Whether the lanes of eight share a window's loads: the adapter shares (SHARED), and a lane's seven
// neighbours hold other channel groups of its image or chunk (whole eights of channel groups).
fn shares_inputs() -> bool {
    return SHARED && channel_groups() % 8u == 0u;
}

// common.wgsl's exact_fma, for four channels at once, with both factors split beforehand (each input
// value serves every channel and position, each weight every window): the same operations, so the
// same bits.
fn split4(a: vec4<f32>) -> array<vec4<f32>, 2> {
    let c = 4097.0 * a;
    let hi = c - (c - a);
    return array<vec4<f32>, 2>(hi, a - hi);
}

fn exact_fma4(a: vec4<f32>, sa: array<vec4<f32>, 2>, b: vec4<f32>, sb: array<vec4<f32>, 2>, c: vec4<f32>) -> vec4<f32> {
    let p = a * b;
    let e = sa[1] * sb[1] - (((p - sa[0] * sb[0]) - sa[1] * sb[0]) - sa[0] * sb[1]);
    let s = p + c;
    let back = s - p;
    let t = (p - (s - back)) + (c - back);
    return s + (t + e);
}

// One channel quad's kernel taps, their splits and biases, kept in registers for the whole image.
struct QuadWeights {
    w: array<vec4<f32>, MAX_TAPS>,
    hi: array<vec4<f32>, MAX_TAPS>,
    lo: array<vec4<f32>, MAX_TAPS>,
    bias: vec4<f32>,
}

fn load_quad_weights(group: u32, q: u32) -> QuadWeights {
    var qw: QuadWeights;
    let co = quad_channels(group, q);
    for (var t = 0u; t < KERNEL_H * KERNEL_W * IN_C; t++) {
        let w = vec4<f32>(wb[t * OUT_C + co.x], wb[t * OUT_C + co.y], wb[t * OUT_C + co.z], wb[t * OUT_C + co.w]);
        qw.w[t] = w;
        if (EXACT != 0u) {
            let sw = split4(w);
            qw.hi[t] = sw[0];
            qw.lo[t] = sw[1];
        }
    }
    let b = kernel_len();
    qw.bias = vec4<f32>(wb[b + co.x], wb[b + co.y], wb[b + co.z], wb[b + co.w]);
    return qw;
}

// conv2d_forward's output at position (wy, wx) of a pooling window, for one quad of channels: the
// taps in the same order, then the bias, then ReLU.
fn conv_quad(inputs: ptr<function, array<f32, MAX_INPUTS>>, inputs_hi: ptr<function, array<f32, MAX_INPUTS>>,
             inputs_lo: ptr<function, array<f32, MAX_INPUTS>>, qw: ptr<function, QuadWeights>, wy: u32, wx: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < KERNEL_H; ky++) {
        for (var kx = 0u; kx < KERNEL_W; kx++) {
            for (var ci = 0u; ci < IN_C; ci++) {
                let i = input_slot(wy + ky, wx + kx, ci);
                let t = (ky * KERNEL_W + kx) * IN_C + ci;
                if (EXACT != 0u) {
                    let sa = array<vec4<f32>, 2>(vec4<f32>((*inputs_hi)[i]), vec4<f32>((*inputs_lo)[i]));
                    let sb = array<vec4<f32>, 2>((*qw).hi[t], (*qw).lo[t]);
                    acc = exact_fma4(vec4<f32>((*inputs)[i]), sa, (*qw).w[t], sb, acc);
                } else {
                    acc = fma(vec4<f32>((*inputs)[i]), (*qw).w[t], acc);
                }
            }
        }
    }
    acc += (*qw).bias;
    if (RELU != 0u) {
        acc = max(acc, vec4<f32>(0.0));
    }
    return acc;
}

// One pooling window for one quad of channels: maxpool2_forward's choice (the first maximum in
// row-major order), dropout_forward's factor for the pooled elements (n, py, px, channel), added to
// `sum`; returns the quad's four codes as the bits they take in the group's word. The four positions
// are written out rather than looped over: a CPU adapter's compiler then sees every register index as
// a constant.
fn pool_window(inputs: ptr<function, array<f32, MAX_INPUTS>>, inputs_hi: ptr<function, array<f32, MAX_INPUTS>>,
               inputs_lo: ptr<function, array<f32, MAX_INPUTS>>, qw: ptr<function, QuadWeights>,
               sum: ptr<function, vec4<f32>>, element: vec4<u32>, step_hash: u32, q: u32) -> u32 {
    var best = conv_quad(inputs, inputs_hi, inputs_lo, qw, 0u, 0u);
    var winner = vec4<u32>(0u);
    let v1 = conv_quad(inputs, inputs_hi, inputs_lo, qw, 0u, 1u);
    winner = select(winner, vec4<u32>(1u), v1 > best);
    best = select(best, v1, v1 > best);
    let v2 = conv_quad(inputs, inputs_hi, inputs_lo, qw, 1u, 0u);
    winner = select(winner, vec4<u32>(2u), v2 > best);
    best = select(best, v2, v2 > best);
    let v3 = conv_quad(inputs, inputs_hi, inputs_lo, qw, 1u, 1u);
    winner = select(winner, vec4<u32>(3u), v3 > best);
    best = select(best, v3, v3 > best);
    var value = best;
    var flows = select(best > vec4<f32>(0.0), vec4<bool>(true), RELU == 0u);
    if (HAS_DROPOUT && s.training != 0u) {
        // dropout_hash of four elements at once.
        let kept = pcg_hash4(pcg_hash4(element) ^ vec4<u32>(step_hash)) >= vec4<u32>(DROPOUT_THRESHOLD);
        value = best * select(vec4<f32>(0.0), vec4<f32>(DROPOUT_SCALE), kept);
        flows = flows & kept;
    } else if (HAS_DROPOUT) {
        value = best * 1.0;
    }
    *sum += value;
    let nibbles = (winner | select(vec4<u32>(0u), vec4<u32>(4u), flows)) << (vec4<u32>(0u, 4u, 8u, 12u) + 16u * q);
    return nibbles.x | nibbles.y | nibbles.z | nibbles.w;
}

fn store_average(n: u32, group: u32, q: u32, sum: vec4<f32>) {
    let average = sum / f32(windows());
    for (var c = 0u; c < 4u; c++) {
        let co = group * 8u + q * 4u + c;
        if (co < OUT_C) {
            y[n * OUT_C + co] = average[c];
        }
    }
}

// Forward: one lane per (image, group of eight channels); it walks the image's pooling windows in order,
// so the averages add the windows in gap_forward's order.
@compute @workgroup_size(256)
fn conv2d_maxpool_gap_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let lane = share_lane(lid);
    // Lanes past the end never return early: they redo the last lane's work and store nothing, so every
    // lane reaches every shuffle (WGSL's uniformity rules; a shuffle needs its subgroup whole).
    let lanes = BATCH * channel_groups();
    let in_range = thread_index(wg, nwg, lid) < lanes;
    let idx = min(thread_index(wg, nwg, lid), lanes - 1u);
    let group = idx % channel_groups();
    let n = idx / channel_groups();
    var quad0 = load_quad_weights(group, 0u);
    var quad1 = load_quad_weights(group, 1u);
    var sum0 = vec4<f32>(0.0);
    var sum1 = vec4<f32>(0.0);
    let step_hash = dropout_step_key(DROPOUT_SEED, s.step);
    for (var p = 0u; p < windows(); p++) {
        let py = p / pool_w();
        let px = p % pool_w();
        var inputs: array<f32, MAX_INPUTS>;
        var inputs_hi: array<f32, MAX_INPUTS>;
        var inputs_lo: array<f32, MAX_INPUTS>;
        load_inputs(n, 2u * py, 2u * px, &inputs, lane);
        if (EXACT != 0u) {
            for (var i = 0u; i < (KERNEL_H + 1u) * (KERNEL_W + 1u) * IN_C; i++) {
                let c = 4097.0 * inputs[i];
                inputs_hi[i] = c - (c - inputs[i]);
                inputs_lo[i] = inputs[i] - inputs_hi[i];
            }
        }
        let element = vec4<u32>(((batch_image(s, n) * pool_h() + py) * pool_w() + px) * OUT_C);
        let word = pool_window(&inputs, &inputs_hi, &inputs_lo, &quad0, &sum0, element + quad_channels(group, 0u), step_hash, 0u)
            | pool_window(&inputs, &inputs_hi, &inputs_lo, &quad1, &sum1, element + quad_channels(group, 1u), step_hash, 1u);
        if (in_range) {
            codes[(n * windows() + p) * channel_groups() + group] = word;
        }
    }
    if (in_range) {
        store_average(n, group, 0u, sum0);
        store_average(n, group, 1u, sum1);
    }
}

// A pooling window's share of one quad's weight gradient: each channel's winner (from its code in
// `word`) takes gz = g if a gradient flows through it, else 0, times the input under each tap.
fn add_window_gradient(inputs: ptr<function, array<f32, MAX_INPUTS>>, acc: ptr<function, array<vec4<f32>, MAX_TAPS>>,
                       bias_acc: ptr<function, vec4<f32>>, word: u32, q: u32, g: vec4<f32>) {
    let code = (vec4<u32>(word) >> (vec4<u32>(0u, 4u, 8u, 12u) + 16u * q)) & vec4<u32>(15u);
    let wy = (code & vec4<u32>(2u)) != vec4<u32>(0u);
    let wx = (code & vec4<u32>(1u)) != vec4<u32>(0u);
    let gz = select(vec4<f32>(0.0), g, (code & vec4<u32>(4u)) != vec4<u32>(0u));
    *bias_acc += gz;
    for (var ky = 0u; ky < KERNEL_H; ky++) {
        for (var kx = 0u; kx < KERNEL_W; kx++) {
            for (var ci = 0u; ci < IN_C; ci++) {
                let top = select(vec4<f32>((*inputs)[input_slot(ky, kx, ci)]), vec4<f32>((*inputs)[input_slot(ky, kx + 1u, ci)]), wx);
                let bottom = select(vec4<f32>((*inputs)[input_slot(ky + 1u, kx, ci)]), vec4<f32>((*inputs)[input_slot(ky + 1u, kx + 1u, ci)]), wx);
                let t = (ky * KERNEL_W + kx) * IN_C + ci;
                (*acc)[t] = fma(select(top, bottom, wy), gz, (*acc)[t]);
            }
        }
    }
}

// The gradient reaching a winner: gap_backward's then dropout_backward's, dy / windows * scale.
fn winner_gradient(n: u32, group: u32, q: u32) -> vec4<f32> {
    let co = quad_channels(group, q);
    var g = vec4<f32>(dy[n * OUT_C + co.x], dy[n * OUT_C + co.y], dy[n * OUT_C + co.z], dy[n * OUT_C + co.w]) / f32(windows());
    if (HAS_DROPOUT) {
        g = g * DROPOUT_SCALE;
    }
    return g;
}

fn store_partials(part: u32, group: u32, q: u32, acc: ptr<function, array<vec4<f32>, MAX_TAPS>>, bias_acc: vec4<f32>) {
    let count = kernel_len() + OUT_C;
    for (var c = 0u; c < 4u; c++) {
        let co = group * 8u + q * 4u + c;
        if (co < OUT_C) {
            for (var t = 0u; t < KERNEL_H * KERNEL_W * IN_C; t++) {
                partial[part * count + t * OUT_C + co] = (*acc)[t][c];
            }
            partial[part * count + kernel_len() + co] = bias_acc[c];
        }
    }
}

// The sums a chunk begun in an earlier micro-batch stored: quad q's taps into acc, its bias returned.
fn load_partials(part: u32, group: u32, q: u32, acc: ptr<function, array<vec4<f32>, MAX_TAPS>>) -> vec4<f32> {
    let count = kernel_len() + OUT_C;
    var bias_acc = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let co = group * 8u + q * 4u + c;
        if (co < OUT_C) {
            for (var t = 0u; t < KERNEL_H * KERNEL_W * IN_C; t++) {
                (*acc)[t][c] = partial[part * count + t * OUT_C + co];
            }
            bias_acc[c] = partial[part * count + kernel_len() + co];
        }
    }
    return bias_acc;
}

// Backward: the kernel-and-bias gradient as partial sums laid out, chunked and ordered exactly as
// conv2d_backward_weight's (see conv2d.wgsl), so reduce.wgsl's sum_partials gives the same bits. One
// lane per (chunk, group of eight channels), all taps: it visits each pooling window's winner only.
@compute @workgroup_size(256)
fn conv2d_maxpool_gap_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                      @builtin(local_invocation_index) lid: u32) {
    let lane = share_lane(lid);
    let branch_images = BATCH / BRANCHES;
    let blocks_w = (OUT_W + 1u) / 2u;
    let per_image = ((OUT_H + 1u) / 2u) * blocks_w;
    let chunks = micro_chunks(per_image, WHOLE_IMAGES, CHUNKS, s.micro_start, branch_images);
    // As in the forward, lanes past the end redo the last lane's work and store nothing.
    let lanes = BRANCHES * chunks * channel_groups();
    let in_range = thread_index(wg, nwg, lid) < lanes;
    let idx = min(thread_index(wg, nwg, lid), lanes - 1u);
    let group = idx % channel_groups();
    let part = idx / channel_groups();
    let branch = part / chunks;
    let run = weight_chunk(part % chunks, per_image, WHOLE_IMAGES, CHUNKS, s.micro_start, branch_images);
    // Blocks in this micro-batch's numbering.
    let blocks = branch_images * per_image;
    let start = run.start - s.micro_start * per_image;
    let end = run.end - s.micro_start * per_image;
    let whole_part = branch * CHUNKS + run.chunk;

    var acc0: array<vec4<f32>, MAX_TAPS>;
    var acc1: array<vec4<f32>, MAX_TAPS>;
    var bias0 = vec4<f32>(0.0);
    var bias1 = vec4<f32>(0.0);
    if (run.continues) {
        bias0 = load_partials(whole_part, group, 0u, &acc0);
        bias1 = load_partials(whole_part, group, 1u, &acc1);
    }
    // Every lane takes a chunk's whole length of steps, a bound of constants alone (uniform control
    // flow: each step shares its window's loads); a step past the chunk's blocks, or on a block of a
    // dropped odd row or column (no pooling window), adds a gradient of 0: the same bits as adding
    // nothing (a multiply-add of 0 and a finite input returns the accumulator, never -0 here), with no
    // branch around the accumulators (a CPU adapter would select each of them). The block's image and place in it are counted along, and an
    // image's channel gradients are loaded when its first block comes.
    let first = min(start, blocks - 1u);
    var n = branch * branch_images + first / per_image;
    var place = first % per_image;
    var g0 = winner_gradient(n, group, 0u);
    var g1 = winner_gradient(n, group, 1u);
    for (var step = 0u; step < weight_chunk_len(per_image, WHOLE_IMAGES, CHUNKS); step++) {
        let by = place / blocks_w;
        let bx = place % blocks_w;
        let counts = start + step < end && by < pool_h() && bx < pool_w();
        var inputs: array<f32, MAX_INPUTS>;
        load_inputs(n, 2u * by, 2u * bx, &inputs, lane);
        let word = codes[select(0u, (n * windows() + by * pool_w() + bx) * channel_groups() + group, counts)];
        let live = vec4<bool>(counts);
        add_window_gradient(&inputs, &acc0, &bias0, word, 0u, select(vec4<f32>(0.0), g0, live));
        add_window_gradient(&inputs, &acc1, &bias1, word, 1u, select(vec4<f32>(0.0), g1, live));
        place += 1u;
        if (place == per_image && start + step + 1u < end) {
            place = 0u;
            n += 1u;
            g0 = winner_gradient(n, group, 0u);
            g1 = winner_gradient(n, group, 1u);
        }
    }
    if (!in_range) {
        return;
    }
    store_partials(whole_part, group, 0u, &acc0, bias0);
    store_partials(whole_part, group, 1u, &acc1, bias1);
}
