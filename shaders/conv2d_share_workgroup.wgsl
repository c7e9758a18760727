// How conv2d_gemm.wgsl's neighbouring lanes share what each loaded: workgroup memory. Each group of
// eight lanes writes its `held` tiles to its own slots, waits for the workgroup, reads what it needs,
// and waits again before the slots are written anew. Real GPUs reward it; a CPU adapter, where
// workgroup memory is no cheaper than a storage buffer and a barrier suspends every lane, does not.

const SHARED: bool = true;

// Each lane holds up to four of a tile's (at most) thirty-two quads.
alias Held = array<vec4<f32>, 4>;

// 32 slots for each group of eight lanes: 16 KiB for 256 lanes, WebGPU's least workgroup memory.
var<workgroup> shared_tiles: array<vec4<f32>, 1024>;

fn share_lane(lid: u32) -> u32 {
    return lid;
}

fn share_publish(held: Held, lane: u32) {
    let slots = (lane / 8u) * 32u + lane % 8u;
    shared_tiles[slots] = held[0];
    if (held_count() > 1u) {
        shared_tiles[slots + 8u] = held[1];
    }
    if (held_count() > 2u) {
        shared_tiles[slots + 16u] = held[2];
    }
    if (held_count() > 3u) {
        shared_tiles[slots + 24u] = held[3];
    }
    workgroupBarrier();
}

fn share_quad(held: Held, v: u32, lane: u32) -> vec4<f32> {
    return shared_tiles[(lane / 8u) * 32u + v];
}

fn share_done() {
    workgroupBarrier();
}
