// Fixed-order reduction of partial sums laid out [branches][chunks][count]:
// out[j] = sum over branches of (sum over chunks of partial[branch][chunk][j]).
// Each branch is summed on its own and the branch sums are added last, as Keras adds the gradients of a
// layer shared by the twin's two towers; this keeps exact cancellations exact (the dense bias).

override COUNT: u32;
override BRANCHES: u32;
override CHUNKS: u32;

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
    if (j >= COUNT) {
        return;
    }
    var total = 0.0;
    for (var b = 0u; b < BRANCHES; b++) {
        var acc = 0.0;
        for (var c = 0u; c < CHUNKS; c++) {
            acc += partial[(b * CHUNKS + c) * COUNT + j];
        }
        total += acc;
    }
    out[j] = total;
}
