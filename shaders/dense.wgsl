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

fn grad_z(o: u32) -> f32 {
    return select(dy[o], 0.0, RELU != 0u && y[o] <= 0.0);
}

// Each lane computes GROUP neighbouring outputs, so that a value it loads serves GROUP products: a CPU
// adapter loads per lane, and loads, not arithmetic, bound these small products. Every output's sum
// keeps its order, so the grouping changes no result.
const GROUP: u32 = 4u;

fn groups(len: u32) -> u32 {
    return (len + GROUP - 1u) / GROUP;
}

// y[n, o] = act(sum over i of x[n, i] * W[i, o] + b[o]); lanes own outputs o = GROUP * g + k.
@compute @workgroup_size(256)
fn dense_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= BATCH * groups(OUT_DIM)) {
        return;
    }
    let first = (idx % groups(OUT_DIM)) * GROUP;
    let n = idx / groups(OUT_DIM);
    // Outputs past OUT_DIM (the last group's padding) compute column OUT_DIM - 1 and store nothing.
    var col: array<u32, GROUP>;
    var acc: array<f32, GROUP>;
    for (var k = 0u; k < GROUP; k++) {
        col[k] = min(first + k, OUT_DIM - 1u);
        acc[k] = 0.0;
    }
    for (var i = 0u; i < IN_DIM; i++) {
        let xv = x[n * IN_DIM + i];
        for (var k = 0u; k < GROUP; k++) {
            acc[k] = fma(xv, wb[i * OUT_DIM + col[k]], acc[k]);
        }
    }
    for (var k = 0u; k < GROUP; k++) {
        var v = acc[k] + wb[IN_DIM * OUT_DIM + col[k]];
        if (RELU != 0u) {
            v = max(v, 0.0);
        }
        if (first + k < OUT_DIM) {
            y[n * OUT_DIM + first + k] = v;
        }
    }
}

// dx[n, i] = sum over o of dz[n, o] * W[i, o]; lanes own inputs i = GROUP * g + k.
@compute @workgroup_size(256)
fn dense_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= BATCH * groups(IN_DIM)) {
        return;
    }
    let first = (idx % groups(IN_DIM)) * GROUP;
    let n = idx / groups(IN_DIM);
    var row: array<u32, GROUP>;
    var acc: array<f32, GROUP>;
    for (var k = 0u; k < GROUP; k++) {
        row[k] = min(first + k, IN_DIM - 1u);
        acc[k] = 0.0;
    }
    for (var o = 0u; o < OUT_DIM; o++) {
        let gz = grad_z(n * OUT_DIM + o);
        for (var k = 0u; k < GROUP; k++) {
            acc[k] = fma(gz, wb[row[k] * OUT_DIM + o], acc[k]);
        }
    }
    for (var k = 0u; k < GROUP; k++) {
        if (first + k < IN_DIM) {
            dx[n * IN_DIM + first + k] = acc[k];
        }
    }
}

// dW[i, o] = sum over n of x[n, i] * dz[n, o]; db[o] = sum over n of dz[n, o]. Lanes own one output o and
// GROUP inputs i (or, past the kernel's rows, the bias of o).
@compute @workgroup_size(256)
fn dense_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    // Row groups 0..groups(IN_DIM) hold kernel rows; one more holds the bias.
    if (idx >= (groups(IN_DIM) + 1u) * OUT_DIM) {
        return;
    }
    let o = idx % OUT_DIM;
    let first = (idx / OUT_DIM) * GROUP;
    let bias = first >= IN_DIM;
    let rows = BATCH / BRANCHES;
    var row: array<u32, GROUP>;
    var total: array<f32, GROUP>;
    for (var k = 0u; k < GROUP; k++) {
        row[k] = min(first + k, IN_DIM - 1u);
        total[k] = 0.0;
    }
    for (var b = 0u; b < BRANCHES; b++) {
        var acc: array<f32, GROUP>;
        for (var k = 0u; k < GROUP; k++) {
            acc[k] = 0.0;
        }
        for (var r = 0u; r < rows; r++) {
            let n = b * rows + r;
            let gz = grad_z(n * OUT_DIM + o);
            for (var k = 0u; k < GROUP; k++) {
                // The bias lane adds gz itself: 1 * gz is gz, exactly.
                let xv = select(x[n * IN_DIM + row[k]], 1.0, bias);
                acc[k] = select(fma(xv, gz, acc[k]), acc[k] + gz, bias);
            }
        }
        for (var k = 0u; k < GROUP; k++) {
            total[k] += acc[k];
        }
    }
    let k_len = IN_DIM * OUT_DIM;
    if (bias) {
        dwb[k_len + o] = total[0];
        return;
    }
    for (var k = 0u; k < GROUP; k++) {
        if (first + k < IN_DIM) {
            dwb[(first + k) * OUT_DIM + o] = total[k];
        }
    }
}
