// Fixed-order reduction of partial sums laid out [branches][chunks][count]:
// out[j] = sum over branches of (sum over chunks of partial[branch][chunk][j]).
// Each branch is summed on its own and the branch sums are added last, as Keras adds the gradients of a
// layer shared by the twin's two towers; this keeps exact cancellations exact (the dense bias).

struct ReduceParams {
    count: u32, branches: u32, chunks: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WORKGROUP: u32 = 256u;

fn thread_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WORKGROUP + lid;
}

@compute @workgroup_size(256)
fn sum_partials(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let j = thread_index(wg, nwg, lid);
    if (j >= p.count) {
        return;
    }
    var total = 0.0;
    for (var b = 0u; b < p.branches; b++) {
        var acc = 0.0;
        for (var c = 0u; c < p.chunks; c++) {
            acc += partial[(b * p.chunks + c) * p.count + j];
        }
        total += acc;
    }
    out[j] = total;
}
