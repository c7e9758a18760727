// How conv2d_gemm.wgsl's neighbouring lanes share what each loaded: workgroup memory. Each group of
// eight lanes writes its `held` tiles to its own slots, waits for the workgroup, reads what it needs,
// and waits again before the slots are written anew. Real GPUs reward it; a CPU adapter, where
// workgroup memory is no cheaper than a storage buffer and a barrier suspends every lane, does not.

const SHARED: bool = true;

// Each lane holds up to two of a tile's (at most, with this sharing) sixteen quads
// (Share::most_col_quads); Held has room for the four shuffled tiles hold.
alias Held = array<vec4<f32>, 4>;

var<workgroup> shared_tiles: array<vec4<f32>, 512>;

fn share_lane(lid: u32) -> u32 {
    return lid;
}

fn share_publish(held: Held, lane: u32) {
    shared_tiles[(lane / 8u) * 16u + lane % 8u] = held[0];
    if (held_count() > 1u) {
        shared_tiles[(lane / 8u) * 16u + 8u + lane % 8u] = held[1];
    }
    workgroupBarrier();
}

fn share_quad(held: Held, v: u32, lane: u32) -> vec4<f32> {
    return shared_tiles[(lane / 8u) * 16u + v];
}

fn share_done() {
    workgroupBarrier();
}
