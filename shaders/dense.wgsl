// Dense layer: y = x W + b (optionally ReLU). A layer's parameters are one region: the kernel
// [in_dim, out_dim] (Keras' layout), then the bias [out_dim].

struct DenseParams {
    batch: u32, in_dim: u32, out_dim: u32, relu: u32,
    // Weight gradients sum each of the `branches` equal parts of the batch on its own, then add them.
    branches: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: DenseParams;
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
    if (p.relu != 0u && y[o] <= 0.0) {
        return 0.0;
    }
    return dy[o];
}

@compute @workgroup_size(256)
fn dense_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= p.batch * p.out_dim) {
        return;
    }
    let o = idx % p.out_dim;
    let n = idx / p.out_dim;
    var acc = 0.0;
    for (var i = 0u; i < p.in_dim; i++) {
        acc = fma(x[n * p.in_dim + i], wb[i * p.out_dim + o], acc);
    }
    acc += wb[p.in_dim * p.out_dim + o];
    if (p.relu != 0u) {
        acc = max(acc, 0.0);
    }
    y[idx] = acc;
}

// dx[n, i] = sum over o of dz[n, o] * W[i, o]
@compute @workgroup_size(256)
fn dense_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= p.batch * p.in_dim) {
        return;
    }
    let i = idx % p.in_dim;
    let n = idx / p.in_dim;
    var acc = 0.0;
    for (var o = 0u; o < p.out_dim; o++) {
        acc = fma(grad_z(n * p.out_dim + o), wb[i * p.out_dim + o], acc);
    }
    dx[idx] = acc;
}

// dW[i, o] = sum over n of x[n, i] * dz[n, o]; db[o] = sum over n of dz[n, o].
@compute @workgroup_size(256)
fn dense_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let j = thread_index(wg, nwg, lid);
    let k_len = p.in_dim * p.out_dim;
    if (j >= k_len + p.out_dim) {
        return;
    }
    let rows = p.batch / p.branches;
    var total = 0.0;
    for (var b = 0u; b < p.branches; b++) {
        var acc = 0.0;
        for (var r = 0u; r < rows; r++) {
            let n = b * rows + r;
            if (j < k_len) {
                acc = fma(x[n * p.in_dim + j / p.out_dim], grad_z(n * p.out_dim + j % p.out_dim), acc);
            } else {
                acc += grad_z(n * p.out_dim + j - k_len);
            }
        }
        total += acc;
    }
    dwb[j] = total;
}
