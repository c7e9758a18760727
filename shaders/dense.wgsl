// Dense layer: y = x W + b (optionally ReLU). A layer's parameters are one region: the kernel
// [in_dim, out_dim] (Keras' layout), then the bias [out_dim].

// Weight gradients sum each of the `branches` equal parts of the batch on its own, then add them.
override BATCH: u32;
override IN_DIM: u32;
override OUT_DIM: u32;
override RELU: u32;
override BRANCHES: u32;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wb: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dwb: array<f32>;

const WORKGROUP: u32 = 256u;

fn thread_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WORKGROUP + lid;
}

fn grad_z(o: u32) -> f32 {
    if (RELU != 0u && y[o] <= 0.0) {
        return 0.0;
    }
    return dy[o];
}

@compute @workgroup_size(256)
fn dense_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= BATCH * OUT_DIM) {
        return;
    }
    let o = idx % OUT_DIM;
    let n = idx / OUT_DIM;
    var acc = 0.0;
    for (var i = 0u; i < IN_DIM; i++) {
        acc = fma(x[n * IN_DIM + i], wb[i * OUT_DIM + o], acc);
    }
    acc += wb[IN_DIM * OUT_DIM + o];
    if (RELU != 0u) {
        acc = max(acc, 0.0);
    }
    y[idx] = acc;
}

// dx[n, i] = sum over o of dz[n, o] * W[i, o]
@compute @workgroup_size(256)
fn dense_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= BATCH * IN_DIM) {
        return;
    }
    let i = idx % IN_DIM;
    let n = idx / IN_DIM;
    var acc = 0.0;
    for (var o = 0u; o < OUT_DIM; o++) {
        acc = fma(grad_z(n * OUT_DIM + o), wb[i * OUT_DIM + o], acc);
    }
    dx[idx] = acc;
}

// dW[i, o] = sum over n of x[n, i] * dz[n, o]; db[o] = sum over n of dz[n, o].
@compute @workgroup_size(256)
fn dense_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let j = thread_index(wg, nwg, lid);
    let k_len = IN_DIM * OUT_DIM;
    if (j >= k_len + OUT_DIM) {
        return;
    }
    let rows = BATCH / BRANCHES;
    var total = 0.0;
    for (var b = 0u; b < BRANCHES; b++) {
        var acc = 0.0;
        for (var r = 0u; r < rows; r++) {
            let n = b * rows + r;
            if (j < k_len) {
                acc = fma(x[n * IN_DIM + j / OUT_DIM], grad_z(n * OUT_DIM + j % OUT_DIM), acc);
            } else {
                acc += grad_z(n * OUT_DIM + j - k_len);
            }
        }
        total += acc;
    }
    dwb[j] = total;
}
