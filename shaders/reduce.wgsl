// Fixed-order reduction of partial sums laid out [branches][chunks][count]:
// out[j] = sum over branches of (sum over chunks of partial[branch][chunk][j]).
// A branch's chunks are added pairwise (a fixed binary tree: chunk 0 + chunk 1, 2 + 3, then those pairs,
// and so on): a weight gradient sums tens of thousands of products whose signs differ, and adding
// hundreds of chunk sums one after another would lose more to rounding than the chunk sums themselves.
// Each branch is summed on its own and the branch sums are added last, as Keras adds the gradients of a
// layer shared by the twin's two towers; this keeps exact cancellations exact (the dense bias).

override COUNT: u32;
override BRANCHES: u32;
override CHUNKS: u32;

@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// The pairwise sum of partial[branch][0..CHUNKS][j], with a stack of subtotals by tree level: chunk c
// closes one subtree per trailing 1 bit of c.
fn pairwise_sum(branch: u32, j: u32) -> f32 {
    // The trees of up to four chunks written out: the layers with the most parameters have the fewest
    // chunks, and a lane's stack of subtotals costs them more than their sums.
    let p = branch * CHUNKS * COUNT + j;
    switch CHUNKS {
        case 1u: {
            return partial[p];
        }
        case 2u: {
            return partial[p] + partial[p + COUNT];
        }
        case 3u: {
            return (partial[p] + partial[p + COUNT]) + partial[p + 2u * COUNT];
        }
        case 4u: {
            return (partial[p] + partial[p + COUNT]) + (partial[p + 2u * COUNT] + partial[p + 3u * COUNT]);
        }
        default: {}
    }
    var levels: array<f32, 16>;
    for (var c = 0u; c < CHUNKS; c++) {
        var v = partial[(branch * CHUNKS + c) * COUNT + j];
        var level = 0u;
        for (var k = c; (k & 1u) == 1u; k = k >> 1u) {
            v = levels[level] + v;
            level++;
        }
        levels[level] = v;
    }
    // The complete subtrees left are the set bits of CHUNKS, earliest chunks at the highest level
    // (a loop only as long as CHUNKS has bits: each turn costs a lane a dynamic index).
    var acc = 0.0;
    var started = false;
    for (var level = 0u; (CHUNKS >> level) != 0u; level++) {
        if (((CHUNKS >> level) & 1u) == 1u) {
            acc = select(levels[level], levels[level] + acc, started);
            started = true;
        }
    }
    return acc;
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
        total += pairwise_sum(b, j);
    }
    out[j] = total;
}

// sum_partials four parameters a lane, for counts in multiples of 4: the same trees, on vec4s. A CPU
// adapter turns each load into a loop over the lanes, so one vec4 load in place of four scalar ones
// is most of the time saved.
@group(0) @binding(3) var<storage, read> partial4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out4: array<vec4<f32>>;

fn pairwise_sum4(branch: u32, j: u32) -> vec4<f32> {
    let quads = COUNT / 4u;
    let p = branch * CHUNKS * quads + j;
    switch CHUNKS {
        case 1u: {
            return partial4[p];
        }
        case 2u: {
            return partial4[p] + partial4[p + quads];
        }
        case 3u: {
            return (partial4[p] + partial4[p + quads]) + partial4[p + 2u * quads];
        }
        case 4u: {
            return (partial4[p] + partial4[p + quads]) + (partial4[p + 2u * quads] + partial4[p + 3u * quads]);
        }
        default: {}
    }
    var levels: array<vec4<f32>, 16>;
    for (var c = 0u; c < CHUNKS; c++) {
        var v = partial4[(branch * CHUNKS + c) * quads + j];
        var level = 0u;
        for (var k = c; (k & 1u) == 1u; k = k >> 1u) {
            v = levels[level] + v;
            level++;
        }
        levels[level] = v;
    }
    var acc = vec4<f32>(0.0);
    var started = false;
    for (var level = 0u; (CHUNKS >> level) != 0u; level++) {
        if (((CHUNKS >> level) & 1u) == 1u) {
            acc = select(levels[level], levels[level] + acc, started);
            started = true;
        }
    }
    return acc;
}

@compute @workgroup_size(256)
fn sum_partials4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let j = thread_index(wg, nwg, lid);
    if (j >= COUNT / 4u) {
        return;
    }
    var total = vec4<f32>(0.0);
    for (var b = 0u; b < BRANCHES; b++) {
        total += pairwise_sum4(b, j);
    }
    out4[j] = total;
}
