// Conv2D as tiled matrix products, for layers whose input and output channels are multiples of 8 (the
// tutorial's intended second conv, 128 -> 128): the same operation, layouts and padding as conv2d.wgsl,
// computed so that each value a lane loads serves many multiply-adds. Each lane owns a register tile
// (four output positions of a row by eight channels, or eight input channels by eight output
// channels), loads channels four at a time as vec4, and accumulates with fma. On a CPU adapter, where
// every load a lane issues is its own instruction, this is the difference between a load per
// multiply-add and a load per eight or more.
//
// Unlike conv2d_forward, the forward pass uses the adapter's fma and adds out-of-image taps as zeros:
// exact fused rounding matters for the tutorial's first conv, whose outputs feed a pooling near-tie in
// Keras' own numbers, and is not worth its cost on a 512-tap sum. Results agree with the CPU reference
// to rounding (the tests hold it to the same tolerance as the direct kernels).
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

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wb: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> partial: array<vec4<f32>>;

// Output (or input) positions along a row per lane in the forward (or input-gradient) pass.
const ROW: u32 = 4u;

// vec4 index of x[n, iy, ix, c..c+4] (c a multiple of 4).
fn x_quad(n: u32, iy: u32, ix: u32, c: u32) -> u32 {
    return (((n * IN_H + iy) * IN_W + ix) * IN_C + c) / 4u;
}

// vec4 index of an output-shaped tensor at (n, oy, ox, c..c+4).
fn out_quad(n: u32, oy: u32, ox: u32, c: u32) -> u32 {
    return (((n * OUT_H + oy) * OUT_W + ox) * OUT_C + c) / 4u;
}

// vec4 index of w[ky, kx, ci, co..co+4].
fn w_quad(ky: u32, kx: u32, ci: u32, co: u32) -> u32 {
    return (((ky * KERNEL_W + kx) * IN_C + ci) * OUT_C + co) / 4u;
}

fn bias_quad(co: u32) -> u32 {
    return (KERNEL_H * KERNEL_W * IN_C * OUT_C + co) / 4u;
}

fn inside_input(iy: i32, ix: i32) -> bool {
    return iy >= 0 && iy < i32(IN_H) && ix >= 0 && ix < i32(IN_W);
}

// The gradient reaching the pre-activation at output quad q: dy, masked where ReLU's output is 0.
fn grad_z4(q: u32) -> vec4<f32> {
    if (RELU == 0u) {
        return dy[q];
    }
    return select(vec4<f32>(0.0), dy[q], y[q] > vec4<f32>(0.0));
}

// Lanes: (image, output row, group of ROW output columns, group of 8 output channels).
@compute @workgroup_size(256)
fn conv2d_forward_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    let col_groups = (OUT_W + ROW - 1u) / ROW;
    let co_groups = OUT_C / 8u;
    if (idx >= BATCH * OUT_H * col_groups * co_groups) {
        return;
    }
    let co = (idx % co_groups) * 8u;
    var t = idx / co_groups;
    let ox0 = (t % col_groups) * ROW;
    t = t / col_groups;
    let oy = t % OUT_H;
    let n = t / OUT_H;
    // acc[2 * p + h]: output column ox0 + p, channels co + 4h .. co + 4h + 4.
    var acc: array<vec4<f32>, 8>;
    for (var ky = 0u; ky < KERNEL_H; ky++) {
        let iy = i32(oy + ky) - i32(PAD_TOP);
        for (var kx = 0u; kx < KERNEL_W; kx++) {
            for (var ci = 0u; ci < IN_C; ci += 4u) {
                var xv: array<vec4<f32>, ROW>;
                for (var p = 0u; p < ROW; p++) {
                    let ix = i32(ox0 + p + kx) - i32(PAD_LEFT);
                    let inside = inside_input(iy, ix);
                    xv[p] = select(vec4<f32>(0.0), x[select(0u, x_quad(n, u32(iy), u32(ix), ci), inside)], inside);
                }
                for (var j = 0u; j < 4u; j++) {
                    let w0 = wb[w_quad(ky, kx, ci + j, co)];
                    let w1 = wb[w_quad(ky, kx, ci + j, co + 4u)];
                    for (var p = 0u; p < ROW; p++) {
                        let v = vec4<f32>(xv[p][j]);
                        acc[2u * p] = fma(v, w0, acc[2u * p]);
                        acc[2u * p + 1u] = fma(v, w1, acc[2u * p + 1u]);
                    }
                }
            }
        }
    }
    let b0 = wb[bias_quad(co)];
    let b1 = wb[bias_quad(co + 4u)];
    for (var p = 0u; p < ROW; p++) {
        if (ox0 + p < OUT_W) {
            var z0 = acc[2u * p] + b0;
            var z1 = acc[2u * p + 1u] + b1;
            if (RELU != 0u) {
                z0 = max(z0, vec4<f32>(0.0));
                z1 = max(z1, vec4<f32>(0.0));
            }
            y[out_quad(n, oy, ox0 + p, co)] = z0;
            y[out_quad(n, oy, ox0 + p, co + 4u)] = z1;
        }
    }
}

// dx[n, iy, ix, ci] = sum over (ky, kx, co) of dz[n, iy + pad_top - ky, ix + pad_left - kx, co] * w[ky, kx, ci, co].
// Lanes: (image, input row, group of ROW input columns, group of 8 input channels).
@compute @workgroup_size(256)
fn conv2d_backward_input_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    let col_groups = (IN_W + ROW - 1u) / ROW;
    let ci_groups = IN_C / 8u;
    if (idx >= BATCH * IN_H * col_groups * ci_groups) {
        return;
    }
    let ci = (idx % ci_groups) * 8u;
    var t = idx / ci_groups;
    let ix0 = (t % col_groups) * ROW;
    t = t / col_groups;
    let iy = t % IN_H;
    let n = t / IN_H;
    // acc[2 * p + h]: input column ix0 + p, channels ci + 4h .. ci + 4h + 4.
    var acc: array<vec4<f32>, 8>;
    for (var ky = 0u; ky < KERNEL_H; ky++) {
        let oy = i32(iy + PAD_TOP) - i32(ky);
        for (var kx = 0u; kx < KERNEL_W; kx++) {
            for (var co = 0u; co < OUT_C; co += 4u) {
                var dz: array<vec4<f32>, ROW>;
                for (var p = 0u; p < ROW; p++) {
                    let ox = i32(ix0 + p + PAD_LEFT) - i32(kx);
                    let inside = oy >= 0 && oy < i32(OUT_H) && ox >= 0 && ox < i32(OUT_W);
                    dz[p] = select(vec4<f32>(0.0), grad_z4(select(0u, out_quad(n, u32(oy), u32(ox), co), inside)), inside);
                }
                // w[i][j] = w[ky, kx, ci + i, co + j]; for each co + j, the eight input channels'
                // weights as two vec4 (a CPU adapter keeps a vec4 as four registers: picking components
                // costs nothing).
                var w: array<vec4<f32>, 8>;
                for (var i = 0u; i < 8u; i++) {
                    w[i] = wb[w_quad(ky, kx, ci + i, co)];
                }
                for (var j = 0u; j < 4u; j++) {
                    let w0 = vec4<f32>(w[0][j], w[1][j], w[2][j], w[3][j]);
                    let w1 = vec4<f32>(w[4][j], w[5][j], w[6][j], w[7][j]);
                    for (var p = 0u; p < ROW; p++) {
                        let d = vec4<f32>(dz[p][j]);
                        acc[2u * p] = fma(d, w0, acc[2u * p]);
                        acc[2u * p + 1u] = fma(d, w1, acc[2u * p + 1u]);
                    }
                }
            }
        }
    }
    for (var p = 0u; p < ROW; p++) {
        if (ix0 + p < IN_W) {
            dx[x_quad(n, iy, ix0 + p, ci)] = acc[2u * p];
            dx[x_quad(n, iy, ix0 + p, ci + 4u)] = acc[2u * p + 1u];
        }
    }
}

// Partial sums of the kernel and bias gradients, laid out [branch][chunk][kernel then bias] as
// conv2d_backward_weight's (reduce.wgsl adds them). Lanes: (part, tap (ky, kx), group of 8 input
// channels, group of 8 output channels); each sums x * dz over its chunk of the branch's output
// positions, in row-major order. The lanes of tap (0, 0) and the first input group also sum dz for the
// bias.
@compute @workgroup_size(256)
fn conv2d_backward_weight_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    let co_groups = OUT_C / 8u;
    let ci_groups = IN_C / 8u;
    let taps = KERNEL_H * KERNEL_W;
    if (idx >= BRANCHES * CHUNKS * taps * ci_groups * co_groups) {
        return;
    }
    let co = (idx % co_groups) * 8u;
    var t = idx / co_groups;
    let ci = (t % ci_groups) * 8u;
    t = t / ci_groups;
    let tap = t % taps;
    let part = t / taps;
    let ky = tap / KERNEL_W;
    let kx = tap % KERNEL_W;
    let branch = part / CHUNKS;
    let chunk = part % CHUNKS;
    let per_image = OUT_H * OUT_W;
    let branch_images = BATCH / BRANCHES;
    let positions = branch_images * per_image;
    let chunk_len = (positions + CHUNKS - 1u) / CHUNKS;
    let start = min(chunk * chunk_len, positions);
    let end = min(start + chunk_len, positions);

    // acc[2 * j + h]: input channel ci + j, output channels co + 4h .. co + 4h + 4.
    var acc: array<vec4<f32>, 16>;
    var bias0 = vec4<f32>(0.0);
    var bias1 = vec4<f32>(0.0);
    for (var pos = start; pos < end; pos++) {
        let n = branch * branch_images + pos / per_image;
        let oy = (pos % per_image) / OUT_W;
        let ox = pos % OUT_W;
        let dz0 = grad_z4(out_quad(n, oy, ox, co));
        let dz1 = grad_z4(out_quad(n, oy, ox, co + 4u));
        bias0 += dz0;
        bias1 += dz1;
        let iy = i32(oy + ky) - i32(PAD_TOP);
        let ix = i32(ox + kx) - i32(PAD_LEFT);
        let inside = inside_input(iy, ix);
        let base = select(0u, x_quad(n, u32(iy), u32(ix), ci), inside);
        let x0 = select(vec4<f32>(0.0), x[base], inside);
        let x1 = select(vec4<f32>(0.0), x[base + 1u], inside);
        for (var j = 0u; j < 4u; j++) {
            acc[2u * j] = fma(vec4<f32>(x0[j]), dz0, acc[2u * j]);
            acc[2u * j + 1u] = fma(vec4<f32>(x0[j]), dz1, acc[2u * j + 1u]);
            acc[2u * (j + 4u)] = fma(vec4<f32>(x1[j]), dz0, acc[2u * (j + 4u)]);
            acc[2u * (j + 4u) + 1u] = fma(vec4<f32>(x1[j]), dz1, acc[2u * (j + 4u) + 1u]);
        }
    }
    let count = (KERNEL_H * KERNEL_W * IN_C * OUT_C + OUT_C) / 4u;
    for (var j = 0u; j < 8u; j++) {
        partial[part * count + w_quad(ky, kx, ci + j, co)] = acc[2u * j];
        partial[part * count + w_quad(ky, kx, ci + j, co + 4u)] = acc[2u * j + 1u];
    }
    if (tap == 0u && ci == 0u) {
        partial[part * count + bias_quad(co)] = bias0;
        partial[part * count + bias_quad(co + 4u)] = bias1;
    }
}
