// Contrastive loss (label 1 = same pair): mean over pairs of y * d^2 + (1 - y) * max(margin - d, 0)^2.
// Only the step's first `valid_pairs` pairs count: a last, partial batch is padded to the batch size,
// and its padding pairs add nothing to the loss and get a zero gradient (so they change no weight).
// The forward pass is one workgroup: each invocation sums a fixed stride of pairs, then a tree
// reduction in workgroup memory, so the sum's order is the same on every run. The loss of each step lands
// in its own slot of `losses`, so the host reads a whole epoch's losses back at once.

override PAIRS: u32;
override MARGIN: f32;

@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read> dist: array<f32>;
@group(0) @binding(3) var<storage, read> label: array<f32>;
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;
@group(0) @binding(5) var<storage, read_write> ddist: array<f32>;

var<workgroup> partial_sums: array<f32, WORKGROUP>;

fn pair_loss(i: u32) -> f32 {
    let d = dist[i];
    let y = label[i];
    let gap = max(MARGIN - d, 0.0);
    return y * d * d + (1.0 - y) * gap * gap;
}

@compute @workgroup_size(256)
fn contrastive_forward(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < s.valid_pairs; i += WORKGROUP) {
        acc += pair_loss(i);
    }
    partial_sums[lid] = acc;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if (lid < width) {
            partial_sums[lid] += partial_sums[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        losses[s.loss_slot] = partial_sums[0] / f32(s.valid_pairs);
    }
}

// d loss / d d_i = (y * 2 d - (1 - y) * 2 max(margin - d, 0)) / valid_pairs, and 0 for padding pairs.
// Per micro-batch: its PAIRS pairs are the batch's pairs from micro_start (distances and labels are the
// whole batch's, ddist the micro-batch's).
@compute @workgroup_size(256)
fn contrastive_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= PAIRS) {
        return;
    }
    let pair = s.micro_start + i;
    if (pair >= s.valid_pairs) {
        ddist[i] = 0.0;
        return;
    }
    let d = dist[pair];
    let y = label[pair];
    let g = 1.0 / f32(s.valid_pairs);
    ddist[i] = g * y * 2.0 * d - g * (1.0 - y) * 2.0 * max(MARGIN - d, 0.0);
}
