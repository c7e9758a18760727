// The convolution engine: Conv2D forward, input gradient and weight gradient as implicit matrix
// products (nothing is unfolded in memory), for any channel counts, kernel sizes, strides and padding.
// The layouts are conv2d.wgsl's: activations NHWC, a layer's parameters the kernel [kh, kw, in, out]
// then the bias.
//
//   forward          y[m][co]  = act(sum over k of A[m][k] w[k][co] + b[co])
//                    m = (n, oy, ox), k = (ky, kx, ci) in that order (the reference's), A = x under tap k
//   input gradient   dx[m][ci] = sum over k of dz[n, oy, ox][co] w[ky, kx, ci][co]
//                    m = (n, iy, ix), k = (ky, kx, co), (oy, ox) the output tap k reads from (iy, ix)
//   weight gradient  dw[k][co] = sum over m of A[m][k] dz[m][co], in partial sums by chunk of m
//
// Each lane owns a register tile: ROWS consecutive positions by COL_QUADS groups of four output
// columns, accumulated with the adapter's fma in k order. The values eight neighbouring lanes need
// alike (the forward's and the input gradient's weights, the weight gradient's dz) are split between
// them: each loads its part (`held`), and share_quad hands the parts round. How is one of the
// conv2d_share_*.wgsl files, prepended: subgroup shuffles, workgroup memory, or none (each lane
// loading all it needs itself). A CPU adapter such as lavapipe turns each load whose address differs
// per lane into a loop over the lanes, which costs as much as ~40 multiply-adds, so loads shared by
// many multiply-adds are what makes it fast. Every tile shape and sharing adds each output's terms in
// the same order: the variants give the same bits.
//
// Written for a CPU adapter's compiler: every index into a register array (acc, a, held) is a literal,
// the tile's size picked by ifs on constants, because an array indexed by a loop counter the compiler
// does not unroll lives in memory (and its every use with it), which made the kernels five times
// slower. Lanes never return early, and every loop's trip count is the same for a whole workgroup:
// every lane reaches every shared load (a shuffle needs its subgroup whole, a barrier its workgroup);
// lanes past the end compute on clamped indices and store nothing.

override BATCH: u32;
override IN_H: u32;
override IN_W: u32;
override IN_C: u32;
override OUT_H: u32;
override OUT_W: u32;
override OUT_C: u32;
override KERNEL_H: u32;
override KERNEL_W: u32;
override STRIDE: u32 = 1u;
override PAD_TOP: u32;
override PAD_LEFT: u32;
override RELU: u32;
override BRANCHES: u32 = 1u;
// The weight gradient's chunks per branch over the whole batch, of WHOLE_IMAGES images a branch
// (weight_chunk in common.wgsl).
override CHUNKS: u32 = 1u;
override WHOLE_IMAGES: u32 = 1u;
// The tile: positions per lane (1 to 4; the weight gradient's are its 2x2 block's four) and output
// column quads per lane (1 to 8).
override ROWS: u32 = 2u;
override COL_QUADS: u32 = 4u;
// The lanes of a forward or input-gradient workgroup: 256, or fewer where the product has few rows (a
// dense layer's batch), so that lanes past the last row do not fill most of a workgroup, and the
// product still spreads over several workgroups (the cores of a CPU adapter).
override LANES: u32 = 256u;
// conv2d_gemm_forward_pooled's epilogue max-pools each lane's four positions, a 2x2 window, and
// applies the dropout that follows it, if any (maxpool.wgsl's and dropout.wgsl's choices, bit for
// bit); it stores the window's value and a 4-bit code (which position won, and whether a gradient
// flows back through it), and conv2d_pool_grad_z turns the pooled gradient back into the conv's.
override HAS_DROPOUT: bool = false;
override DROPOUT_SEED: u32 = 0u;
override DROPOUT_THRESHOLD: u32 = 0u;
override DROPOUT_SCALE: f32 = 1.0;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wb: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dz: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;
// vec4 views of the same buffers, for the loads whose four values are contiguous.
@group(0) @binding(7) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> wb4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> dz4: array<vec4<f32>>;
// The step: dropout's masks in a pooling epilogue, and where a micro-batch's weight-gradient chunks go.
// With a pooling epilogue, per pooled position and output channel quad, the four channels' codes.
@group(0) @binding(13) var<uniform> s: Step;
@group(0) @binding(14) var<storage, read_write> codes: array<u32>;

// A lane's accumulators: [row r][column quad c] at r * COL_QUADS + c (the weight gradient's: [k j][c]).
alias Tile = array<vec4<f32>, 32>;
// Four vec4 operands a lane loads itself (rows, or a block's positions).
alias Quads = array<vec4<f32>, 4>;
// The weight gradient's bias sums, a vec4 a column quad.
alias BiasQuads = array<vec4<f32>, 8>;

fn taps() -> u32 {
    return KERNEL_H * KERNEL_W * IN_C;
}

fn kernel_len() -> u32 {
    return taps() * OUT_C;
}

// A shared tile holds 4 * COL_QUADS vec4s; each lane of eight holds its share of them (`held`).
fn tile_quads() -> u32 {
    return 4u * COL_QUADS;
}

fn inside_input(iy: i32, ix: i32) -> bool {
    return iy >= 0 && iy < i32(IN_H) && ix >= 0 && ix < i32(IN_W);
}

// x[n, iy, ix, ci], 0 in the padding.
fn x_at(n: u32, iy: i32, ix: i32, ci: u32) -> f32 {
    let inside = inside_input(iy, ix);
    return select(0.0, x[select(0u, ((n * IN_H + u32(iy)) * IN_W + u32(ix)) * IN_C + ci, inside)], inside);
}

// A[m][4kq .. 4kq + 4] for output position (n, oy, ox): x under taps 4kq .. 4kq + 4, 0 in the padding
// and past the last tap. Four input channels of one pixel when IN_C is a multiple of 4.
fn a_quad(n: u32, oy: u32, ox: u32, kq: u32) -> vec4<f32> {
    if (IN_C % 4u == 0u) {
        let k = 4u * kq;
        let ci = k % IN_C;
        let kx = (k / IN_C) % KERNEL_W;
        let ky = k / (IN_C * KERNEL_W);
        let iy = i32(oy * STRIDE + ky) - i32(PAD_TOP);
        let ix = i32(ox * STRIDE + kx) - i32(PAD_LEFT);
        let inside = inside_input(iy, ix);
        return select(vec4<f32>(0.0), x4[select(0u, (((n * IN_H + u32(iy)) * IN_W + u32(ix)) * IN_C + ci) / 4u, inside)], inside);
    }
    var a = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let k = 4u * kq + j;
        let ci = k % IN_C;
        let kx = (k / IN_C) % KERNEL_W;
        let ky = k / (IN_C * KERNEL_W);
        a[j] = select(0.0, x_at(n, i32(oy * STRIDE + ky) - i32(PAD_TOP), i32(ox * STRIDE + kx) - i32(PAD_LEFT), ci), k < taps());
    }
    return a;
}

// w[k][co .. co + 4], 0 past the last tap or output channel.
fn w_quad(k: u32, co: u32) -> vec4<f32> {
    if (OUT_C % 4u == 0u) {
        let ok = k < taps() && co < OUT_C;
        return select(vec4<f32>(0.0), wb4[select(0u, (k * OUT_C + co) / 4u, ok)], ok);
    }
    var w = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let ok = k < taps() && co + j < OUT_C;
        w[j] = select(0.0, wb[select(0u, k * OUT_C + co + j, ok)], ok);
    }
    return w;
}

// The bias of output channels co .. co + 4 (0 past the last).
fn bias_quad(co: u32) -> vec4<f32> {
    var b = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        b[j] = select(0.0, wb[kernel_len() + min(co + j, OUT_C - 1u)], co + j < OUT_C);
    }
    return b;
}

// dz at output element (o, co .. co + 4), 0 past the last channel.
fn dz_quad(o: u32, co: u32) -> vec4<f32> {
    if (OUT_C % 4u == 0u) {
        return select(vec4<f32>(0.0), dz4[select(0u, (o * OUT_C + co) / 4u, co < OUT_C)], co < OUT_C);
    }
    var d = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        d[j] = select(0.0, dz[o * OUT_C + min(co + j, OUT_C - 1u)], co + j < OUT_C);
    }
    return d;
}

// acc[r][c] = fma(a[r][j], b, acc[r][c]) for the tile's rows: one column quad c of k j.
fn fma_rows(acc: ptr<function, Tile>, a: Quads, j: u32, c: u32, b: vec4<f32>) {
    (*acc)[c] = fma(vec4<f32>(a[0][j]), b, (*acc)[c]);
    if (ROWS > 1u) {
        (*acc)[COL_QUADS + c] = fma(vec4<f32>(a[1][j]), b, (*acc)[COL_QUADS + c]);
    }
    if (ROWS > 2u) {
        (*acc)[2u * COL_QUADS + c] = fma(vec4<f32>(a[2][j]), b, (*acc)[2u * COL_QUADS + c]);
    }
    if (ROWS > 3u) {
        (*acc)[3u * COL_QUADS + c] = fma(vec4<f32>(a[3][j]), b, (*acc)[3u * COL_QUADS + c]);
    }
}

// The forward's step for k j of the k-quad: each column quad's shared operand from `held`, then every
// row.
fn product_step(acc: ptr<function, Tile>, a: Quads, held: Held, lane: u32, j: u32) {
    fma_rows(acc, a, j, 0u, share_quad(held, j * COL_QUADS, lane));
    if (COL_QUADS > 1u) {
        fma_rows(acc, a, j, 1u, share_quad(held, j * COL_QUADS + 1u, lane));
    }
    if (COL_QUADS > 2u) {
        fma_rows(acc, a, j, 2u, share_quad(held, j * COL_QUADS + 2u, lane));
    }
    if (COL_QUADS > 3u) {
        fma_rows(acc, a, j, 3u, share_quad(held, j * COL_QUADS + 3u, lane));
    }
    if (COL_QUADS > 4u) {
        fma_rows(acc, a, j, 4u, share_quad(held, j * COL_QUADS + 4u, lane));
    }
    if (COL_QUADS > 5u) {
        fma_rows(acc, a, j, 5u, share_quad(held, j * COL_QUADS + 5u, lane));
    }
    if (COL_QUADS > 6u) {
        fma_rows(acc, a, j, 6u, share_quad(held, j * COL_QUADS + 6u, lane));
    }
    if (COL_QUADS > 7u) {
        fma_rows(acc, a, j, 7u, share_quad(held, j * COL_QUADS + 7u, lane));
    }
}

// Which of a shared tile's quads this lane loads as its held[q]: a part (q * 8 + its place among eight
// lanes), or with no sharing, every quad (q).
fn held_quad(q: u32, lid: u32) -> u32 {
    if (SHARED) {
        return min(q * 8u + lid % 8u, tile_quads() - 1u);
    }
    return min(q, tile_quads() - 1u);
}

// How many quads a lane holds.
fn held_count() -> u32 {
    if (SHARED) {
        return (tile_quads() + 7u) / 8u;
    }
    return tile_quads();
}

// Row r's position (n, y, x) among `positions` of a map of h x w, from the lane's first position.
fn position(first: u32, r: u32, positions: u32, h: u32, w: u32) -> vec3<u32> {
    let m = min(first + r, positions - 1u);
    return vec3<u32>(m / (h * w), (m / w) % h, m % w);
}

fn pool_h() -> u32 {
    return OUT_H / 2u;
}

fn pool_w() -> u32 {
    return OUT_W / 2u;
}

// Row r of the lane's window at pooled position `window` (clamped to the last).
fn window_position(window: u32, r: u32) -> vec3<u32> {
    let w = min(window, BATCH * pool_h() * pool_w() - 1u);
    let n = w / (pool_h() * pool_w());
    let py = (w / pool_w()) % pool_h();
    let px = w % pool_w();
    return vec3<u32>(n, 2u * py + r / 2u, 2u * px + r % 2u);
}

// ---- forward ----

// The forward's shared tile for k-quad kq: quad v = (k 4kq + v / COL_QUADS, columns c0 + 4 (v % COL_QUADS)).
fn forward_tile_quad(kq: u32, c0: u32, v: u32) -> vec4<f32> {
    return w_quad(4u * kq + v / COL_QUADS, c0 + 4u * (v % COL_QUADS));
}

fn forward_held(kq: u32, c0: u32, lid: u32) -> Held {
    // Literal indices where the lanes share (one to four quads each), a loop only without sharing.
    var held: Held;
    held[0] = forward_tile_quad(kq, c0, held_quad(0u, lid));
    if (held_count() > 1u) {
        held[1] = forward_tile_quad(kq, c0, held_quad(1u, lid));
    }
    if (SHARED && held_count() > 2u) {
        held[2] = forward_tile_quad(kq, c0, held_quad(2u, lid));
    }
    if (SHARED && held_count() > 3u) {
        held[3] = forward_tile_quad(kq, c0, held_quad(3u, lid));
    }
    for (var q = select(2u, held_count(), SHARED); q < held_count(); q++) {
        held[q] = forward_tile_quad(kq, c0, held_quad(q, lid));
    }
    return held;
}

fn forward_a(p: array<vec3<u32>, 4>, kq: u32) -> Quads {
    var a: Quads;
    a[0] = a_quad(p[0].x, p[0].y, p[0].z, kq);
    if (ROWS > 1u) {
        a[1] = a_quad(p[1].x, p[1].y, p[1].z, kq);
    }
    if (ROWS > 2u) {
        a[2] = a_quad(p[2].x, p[2].y, p[2].z, kq);
    }
    if (ROWS > 3u) {
        a[3] = a_quad(p[3].x, p[3].y, p[3].z, kq);
    }
    return a;
}

// y[m][co .. co + 4] = v where they exist.
fn store_y(m: u32, co: u32, v: vec4<f32>) {
    if (m >= BATCH * OUT_H * OUT_W) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (co + j < OUT_C) {
            y[m * OUT_C + co + j] = v[j];
        }
    }
}

// Row r of column quad c: bias, activation, stored.
fn finish_forward(acc: Tile, first: u32, c0: u32, r: u32, c: u32) {
    var z = acc[r * COL_QUADS + c] + bias_quad(c0 + 4u * c);
    if (RELU != 0u) {
        z = max(z, vec4<f32>(0.0));
    }
    store_y(first + r, c0 + 4u * c, z);
}

fn finish_forward_row(acc: Tile, first: u32, c0: u32, r: u32) {
    finish_forward(acc, first, c0, r, 0u);
    if (COL_QUADS > 1u) {
        finish_forward(acc, first, c0, r, 1u);
    }
    if (COL_QUADS > 2u) {
        finish_forward(acc, first, c0, r, 2u);
    }
    if (COL_QUADS > 3u) {
        finish_forward(acc, first, c0, r, 3u);
    }
    if (COL_QUADS > 4u) {
        finish_forward(acc, first, c0, r, 4u);
    }
    if (COL_QUADS > 5u) {
        finish_forward(acc, first, c0, r, 5u);
    }
    if (COL_QUADS > 6u) {
        finish_forward(acc, first, c0, r, 6u);
    }
    if (COL_QUADS > 7u) {
        finish_forward(acc, first, c0, r, 7u);
    }
}

// Column quad c of a lane's pooling window: each position's bias and activation, the first maximum in
// row-major order (maxpool.wgsl's choice), dropout's factor on the pooled element (dropout.wgsl's
// hash of its index in the pooled map); the value stored, and the quad's four codes: bits 0-1 the
// winner, bit 2 whether a gradient flows back (the ReLU let it through and dropout kept it).
fn finish_pool(acc: Tile, window: u32, c0: u32, c: u32, step_key: u32) {
    let bias = bias_quad(c0 + 4u * c);
    var z = array<vec4<f32>, 4>(acc[c] + bias, acc[COL_QUADS + c] + bias, acc[2u * COL_QUADS + c] + bias, acc[3u * COL_QUADS + c] + bias);
    if (RELU != 0u) {
        z[0] = max(z[0], vec4<f32>(0.0));
        z[1] = max(z[1], vec4<f32>(0.0));
        z[2] = max(z[2], vec4<f32>(0.0));
        z[3] = max(z[3], vec4<f32>(0.0));
    }
    var best = z[0];
    var winner = vec4<u32>(0u);
    winner = select(winner, vec4<u32>(1u), z[1] > best);
    best = select(best, z[1], z[1] > best);
    winner = select(winner, vec4<u32>(2u), z[2] > best);
    best = select(best, z[2], z[2] > best);
    winner = select(winner, vec4<u32>(3u), z[3] > best);
    best = select(best, z[3], z[3] > best);
    var value = best;
    var flows = select(best > vec4<f32>(0.0), vec4<bool>(true), RELU == 0u);
    let co = c0 + 4u * c;
    if (HAS_DROPOUT && s.training != 0u) {
        let per_image = pool_h() * pool_w();
        let image = batch_image(s, min(window, BATCH * per_image - 1u) / per_image);
        let element = vec4<u32>((image * per_image + window % per_image) * OUT_C + co) + vec4<u32>(0u, 1u, 2u, 3u);
        // dropout_hash of four elements at once.
        let kept = pcg_hash4(pcg_hash4(element) ^ vec4<u32>(step_key)) >= vec4<u32>(DROPOUT_THRESHOLD);
        value = best * select(vec4<f32>(0.0), vec4<f32>(DROPOUT_SCALE), kept);
        flows = flows & kept;
    } else if (HAS_DROPOUT) {
        value = best * 1.0;
    }
    let windows = BATCH * pool_h() * pool_w();
    if (window >= windows) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (co + j < OUT_C) {
            y[window * OUT_C + co + j] = value[j];
        }
    }
    // A column quad past the last channel (a column group of a count not a multiple of its width)
    // stores no code: its word would be the next window's first.
    if (co >= OUT_C) {
        return;
    }
    let nibbles = (winner | select(vec4<u32>(0u), vec4<u32>(4u), flows)) << vec4<u32>(0u, 4u, 8u, 12u);
    codes[window * ((OUT_C + 3u) / 4u) + co / 4u] = nibbles.x | nibbles.y | nibbles.z | nibbles.w;
}

// Lanes: workgroups (x, folded into z past the adapter's limit) cover output positions, ROWS
// consecutive ones a lane (or one pooling window a lane); workgroups (y) cover the output columns,
// 4 * COL_QUADS a group, so a workgroup shares its weights.
// The lane's tile of sums over every k, for its four positions `p` (ROWS of them used).
fn forward_sums(p: array<vec3<u32>, 4>, c0: u32, lid: u32, lane: u32) -> Tile {
    var acc: Tile;
    for (var kq = 0u; kq < (taps() + 3u) / 4u; kq++) {
        let a = forward_a(p, kq);
        let held = forward_held(kq, c0, lid);
        share_publish(held, lane);
        product_step(&acc, a, held, lane, 0u);
        product_step(&acc, a, held, lane, 1u);
        product_step(&acc, a, held, lane, 2u);
        product_step(&acc, a, held, lane, 3u);
        share_done();
    }
    return acc;
}

@compute @workgroup_size(LANES)
fn conv2d_gemm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let lane = share_lane(lid);
    let positions = BATCH * OUT_H * OUT_W;
    let c0 = wg.y * 4u * COL_QUADS;
    let first = ((wg.z * nwg.x + wg.x) * LANES + lid) * ROWS;
    let p = array<vec3<u32>, 4>(
        position(first, 0u, positions, OUT_H, OUT_W),
        position(first, 1u, positions, OUT_H, OUT_W),
        position(first, 2u, positions, OUT_H, OUT_W),
        position(first, 3u, positions, OUT_H, OUT_W),
    );
    let acc = forward_sums(p, c0, lid, lane);
    finish_forward_row(acc, first, c0, 0u);
    if (ROWS > 1u) {
        finish_forward_row(acc, first, c0, 1u);
    }
    if (ROWS > 2u) {
        finish_forward_row(acc, first, c0, 2u);
    }
    if (ROWS > 3u) {
        finish_forward_row(acc, first, c0, 3u);
    }
}

// The forward pass with its pooling epilogue: a lane per pooling window (ROWS is 4, its positions).
@compute @workgroup_size(256)
fn conv2d_gemm_forward_pooled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let lane = share_lane(lid);
    let c0 = wg.y * 4u * COL_QUADS;
    let window = (wg.z * nwg.x + wg.x) * 256u + lid;
    let p = array<vec3<u32>, 4>(window_position(window, 0u), window_position(window, 1u), window_position(window, 2u), window_position(window, 3u));
    let acc = forward_sums(p, c0, lid, lane);
    let step_key = dropout_step_key(DROPOUT_SEED, s.step);
    finish_pool(acc, window, c0, 0u, step_key);
    if (COL_QUADS > 1u) {
        finish_pool(acc, window, c0, 1u, step_key);
    }
    if (COL_QUADS > 2u) {
        finish_pool(acc, window, c0, 2u, step_key);
    }
    if (COL_QUADS > 3u) {
        finish_pool(acc, window, c0, 3u, step_key);
    }
    if (COL_QUADS > 4u) {
        finish_pool(acc, window, c0, 4u, step_key);
    }
    if (COL_QUADS > 5u) {
        finish_pool(acc, window, c0, 5u, step_key);
    }
    if (COL_QUADS > 6u) {
        finish_pool(acc, window, c0, 6u, step_key);
    }
    if (COL_QUADS > 7u) {
        finish_pool(acc, window, c0, 7u, step_key);
    }
}

// ---- input gradient ----
// Here the product's columns are input channels and k runs over (ky, kx, co); dz is the gradient at
// the conv's pre-activation (ReLU's mask already applied, see conv2d_grad_z).

fn out_quads() -> u32 {
    return (OUT_C + 3u) / 4u;
}

// w[ky, kx, ci][co .. co + 4] for the k-quad kq = (ky, kx, co / 4): contiguous, one load.
fn w_row_quad(kq: u32, ci: u32) -> vec4<f32> {
    let tap = kq / out_quads();
    let co = 4u * (kq % out_quads());
    if (OUT_C % 4u == 0u) {
        let ok = ci < IN_C;
        return select(vec4<f32>(0.0), wb4[select(0u, ((tap * IN_C + ci) * OUT_C + co) / 4u, ok)], ok);
    }
    var w = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let ok = ci < IN_C && co + j < OUT_C;
        w[j] = select(0.0, wb[select(0u, (tap * IN_C + ci) * OUT_C + co + j, ok)], ok);
    }
    return w;
}

// dz at the output position tap kq reads for input position (n, iy, ix), 0 where no output does
// (the padding, or between a stride's steps).
fn dz_for_input(n: u32, iy: u32, ix: u32, kq: u32) -> vec4<f32> {
    let tap = kq / out_quads();
    let co = 4u * (kq % out_quads());
    let ky = tap / KERNEL_W;
    let kx = tap % KERNEL_W;
    let sy = i32(iy + PAD_TOP) - i32(ky);
    let sx = i32(ix + PAD_LEFT) - i32(kx);
    let oy = sy / i32(STRIDE);
    let ox = sx / i32(STRIDE);
    let hit = sy >= 0 && sx >= 0 && sy % i32(STRIDE) == 0 && sx % i32(STRIDE) == 0 && oy < i32(OUT_H) && ox < i32(OUT_W);
    let o = select(0u, (n * OUT_H + u32(oy)) * OUT_W + u32(ox), hit);
    return select(vec4<f32>(0.0), dz_quad(o, co), hit);
}

fn input_a(p: array<vec3<u32>, 4>, kq: u32) -> Quads {
    var a: Quads;
    a[0] = dz_for_input(p[0].x, p[0].y, p[0].z, kq);
    if (ROWS > 1u) {
        a[1] = dz_for_input(p[1].x, p[1].y, p[1].z, kq);
    }
    if (ROWS > 2u) {
        a[2] = dz_for_input(p[2].x, p[2].y, p[2].z, kq);
    }
    if (ROWS > 3u) {
        a[3] = dz_for_input(p[3].x, p[3].y, p[3].z, kq);
    }
    return a;
}

// The input gradient's shared tile for k-quad kq: quad v holds channel c0 + v's weights for the
// quad's four k (contiguous: one load); column quads are put together from four of them.
fn input_tile_quad(kq: u32, c0: u32, v: u32) -> vec4<f32> {
    return w_row_quad(kq, c0 + v);
}

// Column quad c of k j: component j of the tile quads of channels 4c .. 4c + 4.
fn input_column(held: Held, lane: u32, j: u32, c: u32) -> vec4<f32> {
    return vec4<f32>(
        share_quad(held, 4u * c, lane)[j],
        share_quad(held, 4u * c + 1u, lane)[j],
        share_quad(held, 4u * c + 2u, lane)[j],
        share_quad(held, 4u * c + 3u, lane)[j],
    );
}

// The input gradient's step for k j of the k-quad.
fn input_step(acc: ptr<function, Tile>, a: Quads, held: Held, lane: u32, j: u32) {
    fma_rows(acc, a, j, 0u, input_column(held, lane, j, 0u));
    if (COL_QUADS > 1u) {
        fma_rows(acc, a, j, 1u, input_column(held, lane, j, 1u));
    }
    if (COL_QUADS > 2u) {
        fma_rows(acc, a, j, 2u, input_column(held, lane, j, 2u));
    }
    if (COL_QUADS > 3u) {
        fma_rows(acc, a, j, 3u, input_column(held, lane, j, 3u));
    }
    if (COL_QUADS > 4u) {
        fma_rows(acc, a, j, 4u, input_column(held, lane, j, 4u));
    }
    if (COL_QUADS > 5u) {
        fma_rows(acc, a, j, 5u, input_column(held, lane, j, 5u));
    }
    if (COL_QUADS > 6u) {
        fma_rows(acc, a, j, 6u, input_column(held, lane, j, 6u));
    }
    if (COL_QUADS > 7u) {
        fma_rows(acc, a, j, 7u, input_column(held, lane, j, 7u));
    }
}

fn input_held(kq: u32, c0: u32, lid: u32) -> Held {
    // Literal indices where the lanes share (one to four quads each), a loop only without sharing.
    var held: Held;
    held[0] = input_tile_quad(kq, c0, held_quad(0u, lid));
    if (held_count() > 1u) {
        held[1] = input_tile_quad(kq, c0, held_quad(1u, lid));
    }
    if (SHARED && held_count() > 2u) {
        held[2] = input_tile_quad(kq, c0, held_quad(2u, lid));
    }
    if (SHARED && held_count() > 3u) {
        held[3] = input_tile_quad(kq, c0, held_quad(3u, lid));
    }
    for (var q = select(2u, held_count(), SHARED); q < held_count(); q++) {
        held[q] = input_tile_quad(kq, c0, held_quad(q, lid));
    }
    return held;
}

// dx[m][ci .. ci + 4] = v where they exist.
fn store_dx(m: u32, ci: u32, v: vec4<f32>) {
    if (m >= BATCH * IN_H * IN_W) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (ci + j < IN_C) {
            dx[m * IN_C + ci + j] = v[j];
        }
    }
}

fn finish_input_row(acc: Tile, first: u32, c0: u32, r: u32) {
    store_dx(first + r, c0, acc[r * COL_QUADS]);
    if (COL_QUADS > 1u) {
        store_dx(first + r, c0 + 4u, acc[r * COL_QUADS + 1u]);
    }
    if (COL_QUADS > 2u) {
        store_dx(first + r, c0 + 8u, acc[r * COL_QUADS + 2u]);
    }
    if (COL_QUADS > 3u) {
        store_dx(first + r, c0 + 12u, acc[r * COL_QUADS + 3u]);
    }
    if (COL_QUADS > 4u) {
        store_dx(first + r, c0 + 16u, acc[r * COL_QUADS + 4u]);
    }
    if (COL_QUADS > 5u) {
        store_dx(first + r, c0 + 20u, acc[r * COL_QUADS + 5u]);
    }
    if (COL_QUADS > 6u) {
        store_dx(first + r, c0 + 24u, acc[r * COL_QUADS + 6u]);
    }
    if (COL_QUADS > 7u) {
        store_dx(first + r, c0 + 28u, acc[r * COL_QUADS + 7u]);
    }
}

@compute @workgroup_size(LANES)
fn conv2d_gemm_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let lane = share_lane(lid);
    let positions = BATCH * IN_H * IN_W;
    let c0 = wg.y * 4u * COL_QUADS;
    let first = ((wg.z * nwg.x + wg.x) * LANES + lid) * ROWS;
    let p = array<vec3<u32>, 4>(
        position(first, 0u, positions, IN_H, IN_W),
        position(first, 1u, positions, IN_H, IN_W),
        position(first, 2u, positions, IN_H, IN_W),
        position(first, 3u, positions, IN_H, IN_W),
    );
    var acc: Tile;
    for (var kq = 0u; kq < KERNEL_H * KERNEL_W * out_quads(); kq++) {
        let a = input_a(p, kq);
        let held = input_held(kq, c0, lid);
        share_publish(held, lane);
        input_step(&acc, a, held, lane, 0u);
        input_step(&acc, a, held, lane, 1u);
        input_step(&acc, a, held, lane, 2u);
        input_step(&acc, a, held, lane, 3u);
        share_done();
    }
    finish_input_row(acc, first, c0, 0u);
    if (ROWS > 1u) {
        finish_input_row(acc, first, c0, 1u);
    }
    if (ROWS > 2u) {
        finish_input_row(acc, first, c0, 2u);
    }
    if (ROWS > 3u) {
        finish_input_row(acc, first, c0, 3u);
    }
}

// ---- weight gradient ----
// Partial sums laid out [branch][chunk][kernel then bias], added by reduce.wgsl's sum_partials in a
// fixed order. A branch's output positions are visited in 2x2 blocks (block rows, blocks, then the
// block's four positions row-major) and a chunk is a run of blocks (weight_chunk: a micro-batch adds its
// blocks to the chunks they meet, going on from a sum stored before). The fused block (conv_block.wgsl)
// visits only pooling windows' winners in the same order, so its sums are these sums' bits. Lanes hold
// four k (a k-quad) by COL_QUADS column quads; the block's dz is what eight lanes share.

fn k_quads() -> u32 {
    return (taps() + 3u) / 4u;
}

// k-quads padded to whole groups of eight lanes, so that eight neighbouring lanes share a block; lanes
// that share nothing need no padding (a first layer of 4 taps would otherwise run 8 lanes for 1 k-quad).
fn k_lanes() -> u32 {
    if (SHARED) {
        return (k_quads() + 7u) / 8u * 8u;
    }
    return k_quads();
}

fn col_groups() -> u32 {
    return (OUT_C + 4u * COL_QUADS - 1u) / (4u * COL_QUADS);
}

// The weight gradient's shared tile for a block: quad v = (position v / COL_QUADS, columns
// c0 + 4 (v % COL_QUADS)), 0 where the position is not in the map or the chunk.
fn weight_tile_quad(sp: StepPositions, o: vec4<u32>, c0: u32, v: u32) -> vec4<f32> {
    let p = v / COL_QUADS;
    return select(vec4<f32>(0.0), dz_quad(o[p], c0 + 4u * (v % COL_QUADS)), sp.valid[p]);
}

// With POOLED_DZ (a conv whose forward pooled its output, and whose input gradient is not needed: a
// first layer), the weight gradient reads the pooled gradient, bound as dz ([window][OUT_C]), and the
// forward's codes, and makes the pre-activation's gradient itself, block by block (a block is a
// pooling window): conv2d_pool_grad_z's values, without its pass over the whole map.
override POOLED_DZ: bool = false;
// The forward's codes, read here (without POOLED_DZ never read: the host binds dz there).
@group(0) @binding(17) var<storage, read> dz_codes: array<u32>;

// A pooling window's gradient for channels co .. co + 4 (times dropout's scale) and the forward's
// codes for them: what every position of the window takes its gradient from.
struct WindowGradient {
    g: vec4<f32>,
    code: vec4<u32>,
}

fn window_gradient(window: u32, co: u32) -> WindowGradient {
    let quads = (OUT_C + 3u) / 4u;
    let word = dz_codes[window * quads + min(co, OUT_C - 1u) / 4u];
    var g = dz_quad(window, co);
    if (HAS_DROPOUT) {
        g = g * DROPOUT_SCALE;
    }
    return WindowGradient(g, (vec4<u32>(word) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
}

// Position p's share of it: the gradient where p won the window and a gradient flows, else 0; and 0
// where p is outside the chunk, or the block outside every window.
fn position_dz(w: WindowGradient, sp: StepPositions, p: u32) -> vec4<f32> {
    let wins = ((w.code & vec4<u32>(3u)) == vec4<u32>(p)) & ((w.code & vec4<u32>(4u)) != vec4<u32>(0u));
    return select(vec4<f32>(0.0), w.g, wins & vec4<bool>(sp.valid[p] && sp.in_window));
}

// A lane's held quads with POOLED_DZ. Where the column quads divide eight, the quads a lane holds
// (v = q * 8 + its place among eight) all have column quad v % COL_QUADS, and with no sharing a lane
// holds them all: the window's gradient and codes are loaded once a column quad, not once a position.
fn pooled_held(sp: StepPositions, c0: u32, lid: u32) -> Held {
    var held: Held;
    if (SHARED && 8u % COL_QUADS == 0u) {
        let w = window_gradient(sp.window, c0 + 4u * (held_quad(0u, lid) % COL_QUADS));
        held[0] = position_dz(w, sp, held_quad(0u, lid) / COL_QUADS);
        if (held_count() > 1u) {
            held[1] = position_dz(w, sp, held_quad(1u, lid) / COL_QUADS);
        }
        if (held_count() > 2u) {
            held[2] = position_dz(w, sp, held_quad(2u, lid) / COL_QUADS);
        }
        if (held_count() > 3u) {
            held[3] = position_dz(w, sp, held_quad(3u, lid) / COL_QUADS);
        }
    } else if (SHARED) {
        held[0] = position_dz(window_gradient(sp.window, c0 + 4u * (held_quad(0u, lid) % COL_QUADS)), sp, held_quad(0u, lid) / COL_QUADS);
        if (held_count() > 1u) {
            held[1] = position_dz(window_gradient(sp.window, c0 + 4u * (held_quad(1u, lid) % COL_QUADS)), sp, held_quad(1u, lid) / COL_QUADS);
        }
        if (held_count() > 2u) {
            held[2] = position_dz(window_gradient(sp.window, c0 + 4u * (held_quad(2u, lid) % COL_QUADS)), sp, held_quad(2u, lid) / COL_QUADS);
        }
        if (held_count() > 3u) {
            held[3] = position_dz(window_gradient(sp.window, c0 + 4u * (held_quad(3u, lid) % COL_QUADS)), sp, held_quad(3u, lid) / COL_QUADS);
        }
    } else {
        for (var c = 0u; c < COL_QUADS; c++) {
            let w = window_gradient(sp.window, c0 + 4u * c);
            held[c] = position_dz(w, sp, 0u);
            held[COL_QUADS + c] = position_dz(w, sp, 1u);
            held[2u * COL_QUADS + c] = position_dz(w, sp, 2u);
            held[3u * COL_QUADS + c] = position_dz(w, sp, 3u);
        }
    }
    return held;
}

fn weight_held(sp: StepPositions, o: vec4<u32>, c0: u32, lid: u32) -> Held {
    if (POOLED_DZ) {
        return pooled_held(sp, c0, lid);
    }
    // Literal indices where the lanes share (one to four quads each), a loop only without sharing.
    var held: Held;
    held[0] = weight_tile_quad(sp, o, c0, held_quad(0u, lid));
    if (held_count() > 1u) {
        held[1] = weight_tile_quad(sp, o, c0, held_quad(1u, lid));
    }
    if (SHARED && held_count() > 2u) {
        held[2] = weight_tile_quad(sp, o, c0, held_quad(2u, lid));
    }
    if (SHARED && held_count() > 3u) {
        held[3] = weight_tile_quad(sp, o, c0, held_quad(3u, lid));
    }
    for (var q = select(2u, held_count(), SHARED); q < held_count(); q++) {
        held[q] = weight_tile_quad(sp, o, c0, held_quad(q, lid));
    }
    return held;
}

// acc[j][c] = fma(a[p][j], g, acc[j][c]) for the quad's four k: position p's dz for column quad c.
fn fma_ks(acc: ptr<function, Tile>, a: Quads, p: u32, c: u32, g: vec4<f32>) {
    (*acc)[c] = fma(vec4<f32>(a[p][0]), g, (*acc)[c]);
    (*acc)[COL_QUADS + c] = fma(vec4<f32>(a[p][1]), g, (*acc)[COL_QUADS + c]);
    (*acc)[2u * COL_QUADS + c] = fma(vec4<f32>(a[p][2]), g, (*acc)[2u * COL_QUADS + c]);
    (*acc)[3u * COL_QUADS + c] = fma(vec4<f32>(a[p][3]), g, (*acc)[3u * COL_QUADS + c]);
}

// Position p of the block: every column quad's dz from `held`, into the bias and the kernel's sums.
fn weight_step(acc: ptr<function, Tile>, bias: ptr<function, BiasQuads>, a: Quads, held: Held, lane: u32, p: u32) {
    let g0 = share_quad(held, p * COL_QUADS, lane);
    (*bias)[0] += g0;
    fma_ks(acc, a, p, 0u, g0);
    if (COL_QUADS > 1u) {
        let g = share_quad(held, p * COL_QUADS + 1u, lane);
        (*bias)[1] += g;
        fma_ks(acc, a, p, 1u, g);
    }
    if (COL_QUADS > 2u) {
        let g = share_quad(held, p * COL_QUADS + 2u, lane);
        (*bias)[2] += g;
        fma_ks(acc, a, p, 2u, g);
    }
    if (COL_QUADS > 3u) {
        let g = share_quad(held, p * COL_QUADS + 3u, lane);
        (*bias)[3] += g;
        fma_ks(acc, a, p, 3u, g);
    }
    if (COL_QUADS > 4u) {
        let g = share_quad(held, p * COL_QUADS + 4u, lane);
        (*bias)[4] += g;
        fma_ks(acc, a, p, 4u, g);
    }
    if (COL_QUADS > 5u) {
        let g = share_quad(held, p * COL_QUADS + 5u, lane);
        (*bias)[5] += g;
        fma_ks(acc, a, p, 5u, g);
    }
    if (COL_QUADS > 6u) {
        let g = share_quad(held, p * COL_QUADS + 6u, lane);
        (*bias)[6] += g;
        fma_ks(acc, a, p, 6u, g);
    }
    if (COL_QUADS > 7u) {
        let g = share_quad(held, p * COL_QUADS + 7u, lane);
        (*bias)[7] += g;
        fma_ks(acc, a, p, 7u, g);
    }
}

// partial[base + k * OUT_C + co .. + 4] = v where they exist.
fn store_kernel_quad(v: vec4<f32>, in_range: bool, base: u32, k: u32, co: u32) {
    for (var i = 0u; i < 4u; i++) {
        if (in_range && k < taps() && co + i < OUT_C) {
            partial[base + k * OUT_C + co + i] = v[i];
        }
    }
}

// The partial sums of column quad c: the kernel's four k and, on k-quad 0's lanes, the bias.
fn store_partials(acc: Tile, bias: BiasQuads, in_range: bool, base: u32, kq: u32, c0: u32, c: u32) {
    let co = c0 + 4u * c;
    store_kernel_quad(acc[c], in_range, base, 4u * kq, co);
    store_kernel_quad(acc[COL_QUADS + c], in_range, base, 4u * kq + 1u, co);
    store_kernel_quad(acc[2u * COL_QUADS + c], in_range, base, 4u * kq + 2u, co);
    store_kernel_quad(acc[3u * COL_QUADS + c], in_range, base, 4u * kq + 3u, co);
    for (var i = 0u; i < 4u; i++) {
        if (in_range && kq == 0u && co + i < OUT_C) {
            partial[base + kernel_len() + co + i] = bias[c][i];
        }
    }
}

// The partial sums a chunk begun in an earlier micro-batch stored, into column quad c's accumulators.
fn load_kernel_quad(in_range: bool, base: u32, k: u32, co: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (in_range && k < taps() && co + i < OUT_C) {
            v[i] = partial[base + k * OUT_C + co + i];
        }
    }
    return v;
}

fn load_partials(acc: ptr<function, Tile>, bias: ptr<function, BiasQuads>, in_range: bool, base: u32, kq: u32, c0: u32, c: u32) {
    let co = c0 + 4u * c;
    (*acc)[c] = load_kernel_quad(in_range, base, 4u * kq, co);
    (*acc)[COL_QUADS + c] = load_kernel_quad(in_range, base, 4u * kq + 1u, co);
    (*acc)[2u * COL_QUADS + c] = load_kernel_quad(in_range, base, 4u * kq + 2u, co);
    (*acc)[3u * COL_QUADS + c] = load_kernel_quad(in_range, base, 4u * kq + 3u, co);
    for (var i = 0u; i < 4u; i++) {
        if (in_range && co + i < OUT_C) {
            (*bias)[c][i] = partial[base + kernel_len() + co + i];
        }
    }
}

// A 1x1 map (a dense layer's) has one position a block: a step then takes four blocks, one position
// each, instead of one block whose other three positions are outside the map. Either way the terms
// are added block by block, position by position: the same sums.
fn blocks_a_step() -> u32 {
    return select(1u, 4u, OUT_H == 1u && OUT_W == 1u);
}

// A step's four positions (n, y, x) in the map, clamped inside it, and whether each is in the map
// and in the chunk's blocks [b, end) of this micro-batch; images from `first_image`. And the block's
// pooling window (clamped), and whether the block is one (an odd last row or column is not).
struct StepPositions {
    n: vec4<u32>,
    y: vec4<u32>,
    x: vec4<u32>,
    valid: vec4<bool>,
    window: u32,
    in_window: bool,
}

fn weight_positions(first_image: u32, b: u32, end: u32, blocks: u32, per_image: u32, blocks_w: u32) -> StepPositions {
    if (blocks_a_step() == 4u) {
        let bs = vec4<u32>(b) + vec4<u32>(0u, 1u, 2u, 3u);
        return StepPositions(vec4<u32>(first_image) + min(bs, vec4<u32>(blocks - 1u)), vec4<u32>(0u), vec4<u32>(0u), bs < vec4<u32>(end), 0u, false);
    }
    let block = min(b, blocks - 1u);
    let by = (block % per_image) / blocks_w;
    let bx = block % blocks_w;
    let oy = vec4<u32>(2u * by) + vec4<u32>(0u, 0u, 1u, 1u);
    let ox = vec4<u32>(2u * bx) + vec4<u32>(0u, 1u, 0u, 1u);
    let valid = vec4<bool>(b < end) & (oy < vec4<u32>(OUT_H)) & (ox < vec4<u32>(OUT_W));
    let n = vec4<u32>(first_image + block / per_image);
    let in_window = by < pool_h() && bx < pool_w();
    let window = (n[0] * max(pool_h(), 1u) + min(by, max(pool_h(), 1u) - 1u)) * max(pool_w(), 1u) + min(bx, max(pool_w(), 1u) - 1u);
    return StepPositions(n, min(oy, vec4<u32>(OUT_H - 1u)), min(ox, vec4<u32>(OUT_W - 1u)), valid, window, in_window);
}

// Lanes: (part = branch * chunks + chunk, column group, k-quad), k-quads fastest, over the chunks this
// micro-batch meets.
@compute @workgroup_size(256)
fn conv2d_gemm_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let lane = share_lane(lid);
    let branch_images = BATCH / BRANCHES;
    let blocks_w = (OUT_W + 1u) / 2u;
    let per_image = ((OUT_H + 1u) / 2u) * blocks_w;
    let chunks = micro_chunks(per_image, WHOLE_IMAGES, CHUNKS, s.micro_start, branch_images);
    let lanes = BRANCHES * chunks * col_groups() * k_lanes();
    let in_range = thread_index(wg, nwg, lid) < lanes;
    let idx = min(thread_index(wg, nwg, lid), lanes - 1u);
    let kq = idx % k_lanes();
    let group = (idx / k_lanes()) % col_groups();
    let part = idx / (k_lanes() * col_groups());
    let branch = part / chunks;
    let c0 = group * 4u * COL_QUADS;
    let run = weight_chunk(part % chunks, per_image, WHOLE_IMAGES, CHUNKS, s.micro_start, branch_images);
    // Blocks in this micro-batch's numbering.
    let first_block = s.micro_start * per_image;
    let blocks = branch_images * per_image;
    let start = run.start - first_block;
    let end = run.end - first_block;
    let base = (branch * CHUNKS + run.chunk) * (kernel_len() + OUT_C);

    var acc: Tile;
    var bias: BiasQuads;
    if (run.continues) {
        load_partials(&acc, &bias, in_range, base, kq, c0, 0u);
        if (COL_QUADS > 1u) {
            load_partials(&acc, &bias, in_range, base, kq, c0, 1u);
        }
        if (COL_QUADS > 2u) {
            load_partials(&acc, &bias, in_range, base, kq, c0, 2u);
        }
        if (COL_QUADS > 3u) {
            load_partials(&acc, &bias, in_range, base, kq, c0, 3u);
        }
        if (COL_QUADS > 4u) {
            load_partials(&acc, &bias, in_range, base, kq, c0, 4u);
        }
        if (COL_QUADS > 5u) {
            load_partials(&acc, &bias, in_range, base, kq, c0, 5u);
        }
        if (COL_QUADS > 6u) {
            load_partials(&acc, &bias, in_range, base, kq, c0, 6u);
        }
        if (COL_QUADS > 7u) {
            load_partials(&acc, &bias, in_range, base, kq, c0, 7u);
        }
    }
    // Every lane runs a chunk's whole length (the same for the whole workgroup, and a bound of
    // constants alone, so the loop is uniform control flow to every compiler); steps past the chunk's
    // blocks in this micro-batch add nothing.
    let steps = (weight_chunk_len(per_image, WHOLE_IMAGES, CHUNKS) + blocks_a_step() - 1u) / blocks_a_step();
    for (var step = 0u; step < steps; step++) {
        let p = weight_positions(branch * branch_images, start + step * blocks_a_step(), end, blocks, per_image, blocks_w);
        let valid = p.valid;
        let o = (p.n * OUT_H + p.y) * OUT_W + p.x;
        var a: Quads;
        a[0] = select(vec4<f32>(0.0), a_quad(p.n[0], p.y[0], p.x[0], kq), valid[0]);
        a[1] = select(vec4<f32>(0.0), a_quad(p.n[1], p.y[1], p.x[1], kq), valid[1]);
        a[2] = select(vec4<f32>(0.0), a_quad(p.n[2], p.y[2], p.x[2], kq), valid[2]);
        a[3] = select(vec4<f32>(0.0), a_quad(p.n[3], p.y[3], p.x[3], kq), valid[3]);
        let held = weight_held(p, o, c0, lid);
        share_publish(held, lane);
        weight_step(&acc, &bias, a, held, lane, 0u);
        weight_step(&acc, &bias, a, held, lane, 1u);
        weight_step(&acc, &bias, a, held, lane, 2u);
        weight_step(&acc, &bias, a, held, lane, 3u);
        share_done();
    }
    store_partials(acc, bias, in_range, base, kq, c0, 0u);
    if (COL_QUADS > 1u) {
        store_partials(acc, bias, in_range, base, kq, c0, 1u);
    }
    if (COL_QUADS > 2u) {
        store_partials(acc, bias, in_range, base, kq, c0, 2u);
    }
    if (COL_QUADS > 3u) {
        store_partials(acc, bias, in_range, base, kq, c0, 3u);
    }
    if (COL_QUADS > 4u) {
        store_partials(acc, bias, in_range, base, kq, c0, 4u);
    }
    if (COL_QUADS > 5u) {
        store_partials(acc, bias, in_range, base, kq, c0, 5u);
    }
    if (COL_QUADS > 6u) {
        store_partials(acc, bias, in_range, base, kq, c0, 6u);
    }
    if (COL_QUADS > 7u) {
        store_partials(acc, bias, in_range, base, kq, c0, 7u);
    }
}

// The gradient at the conv's pre-activation: dy where its ReLU let the output through, 0 elsewhere
// (TensorFlow's derivative at 0 is 0). One pass, read by both backward products.
@group(0) @binding(10) var<storage, read> relu_y: array<f32>;
@group(0) @binding(11) var<storage, read> relu_dy: array<f32>;
@group(0) @binding(12) var<storage, read_write> relu_dz: array<f32>;

@compute @workgroup_size(256)
fn conv2d_grad_z(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BATCH * OUT_H * OUT_W * OUT_C) {
        return;
    }
    relu_dz[i] = select(relu_dy[i], 0.0, relu_y[i] <= 0.0);
}

// With a pooling epilogue: the gradient at the conv's pre-activation from the gradient of its pooled (and dropped)
// output, `relu_dy`, and the forward's codes: dy (times dropout's scale) at each window's winner
// where a gradient flows, 0 everywhere else (the other three positions, a dropped odd row or column).
// The same values maxpool2_backward, dropout_backward and conv2d_grad_z make in three passes.
@compute @workgroup_size(256)
fn conv2d_pool_grad_z(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= BATCH * OUT_H * OUT_W * OUT_C) {
        return;
    }
    let co = i % OUT_C;
    let ox = (i / OUT_C) % OUT_W;
    let oy = (i / (OUT_C * OUT_W)) % OUT_H;
    let n = i / (OUT_C * OUT_W * OUT_H);
    let py = oy / 2u;
    let px = ox / 2u;
    let in_window = py < pool_h() && px < pool_w();
    let window = (n * pool_h() + min(py, pool_h() - 1u)) * pool_w() + min(px, pool_w() - 1u);
    let code = (codes[window * ((OUT_C + 3u) / 4u) + co / 4u] >> (4u * (co % 4u))) & 15u;
    let wins = in_window && (code & 3u) == (oy % 2u) * 2u + ox % 2u && (code & 4u) != 0u;
    var g = relu_dy[window * OUT_C + co];
    if (HAS_DROPOUT) {
        g = g * DROPOUT_SCALE;
    }
    relu_dz[i] = select(0.0, g, wins);
}

// conv2d_pool_grad_z for channel counts in multiples of 4: a lane per position and quad of channels,
// each load and store a vec4 and one code word serving all four.
@group(0) @binding(15) var<storage, read> relu_dy4: array<vec4<f32>>;
@group(0) @binding(16) var<storage, read_write> relu_dz4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn conv2d_pool_grad_z4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    let quads = OUT_C / 4u;
    if (i >= BATCH * OUT_H * OUT_W * quads) {
        return;
    }
    let q = i % quads;
    let ox = (i / quads) % OUT_W;
    let oy = (i / (quads * OUT_W)) % OUT_H;
    let n = i / (quads * OUT_W * OUT_H);
    let py = oy / 2u;
    let px = ox / 2u;
    let in_window = py < pool_h() && px < pool_w();
    let window = (n * pool_h() + min(py, pool_h() - 1u)) * pool_w() + min(px, pool_w() - 1u);
    let code = (vec4<u32>(codes[window * quads + q]) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    let position = vec4<u32>((oy % 2u) * 2u + ox % 2u);
    let wins = vec4<bool>(in_window) & ((code & vec4<u32>(3u)) == position) & ((code & vec4<u32>(4u)) != vec4<u32>(0u));
    var g = relu_dy4[window * quads + q];
    if (HAS_DROPOUT) {
        g = g * DROPOUT_SCALE;
    }
    relu_dz4[i] = select(vec4<f32>(0.0), g, wins);
}
