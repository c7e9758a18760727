// Conv2D's forward pass, exactly rounded: one output per lane, NHWC activations as Keras lays them out,
// a layer's parameters one region (the kernel [kernel_h, kernel_w, in_c, out_c], then the bias). Padding
// is given as the rows/columns added before (top/left); Keras' "same" puts the odd one after, so a 2x2
// "same" kernel has pad_top = pad_left = 0 and reads one past the bottom/right edge (zeros).
//
// The products accumulate with fused multiply-adds in the reference's order, then the bias is added,
// as oneDNN does under Keras: max-pooling and ReLU make discrete choices on these values, and a near-tie
// in a pooling window goes Keras' way only if every rounding is the same. WGSL's fma() need not be fused
// (lavapipe's is not), so exact_fma computes the fused result from plain operations, at about 17
// operations a multiply-add: this kernel is for `--exact` (and the Keras golden tests); the engine
// (conv2d_gemm.wgsl) computes every convolution otherwise, with the adapter's fma.
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
override STRIDE: u32 = 1u;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wb: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn kernel_index(ky: u32, kx: u32, ci: u32, co: u32) -> u32 {
    return ((ky * KERNEL_W + kx) * IN_C + ci) * OUT_C + co;
}

fn kernel_len() -> u32 {
    return KERNEL_H * KERNEL_W * IN_C * OUT_C;
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
        let iy = i32(oy * STRIDE + ky) - i32(PAD_TOP);
        if (iy < 0 || iy >= i32(IN_H)) {
            continue;
        }
        for (var kx = 0u; kx < KERNEL_W; kx++) {
            let ix = i32(ox * STRIDE + kx) - i32(PAD_LEFT);
            if (ix < 0 || ix >= i32(IN_W)) {
                continue;
            }
            let base = ((n * IN_H + u32(iy)) * IN_W + u32(ix)) * IN_C;
            for (var ci = 0u; ci < IN_C; ci++) {
                acc = exact_fma(x[base + ci], wb[kernel_index(ky, kx, ci, co)], acc);
            }
        }
    }
    acc += wb[kernel_len() + co];
    if (RELU != 0u) {
        acc = max(acc, 0.0);
    }
    y[idx] = acc;
}
