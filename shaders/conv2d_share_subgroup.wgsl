// How conv2d_gemm.wgsl's neighbouring lanes share what each loaded: subgroup shuffles. Each group of
// eight lanes (consecutive invocations, as every adapter forms subgroups of a 1-D workgroup; the
// variant is checked against the others before it is used) swaps its eight `held` tiles. Works for
// any subgroup size that is a multiple of 8.

const SHARED: bool = true;

// Each lane holds up to four of a tile's (at most) thirty-two quads.
alias Held = array<vec4<f32>, 4>;

// The lane's index in its subgroup: every lane is active, so the count of those before it.
fn share_lane(lid: u32) -> u32 {
    return subgroupExclusiveAdd(1u);
}

fn share_publish(held: Held, lane: u32) {}

// Tile quad v: what lane v % 8 of this lane's group of eight holds in its held[v / 8].
fn share_quad(held: Held, v: u32, lane: u32) -> vec4<f32> {
    return subgroupShuffle(held[v / 8u], (lane & ~7u) + v % 8u);
}

fn share_done() {}

// A scalar that lane `source` of this lane's group of eight holds.
fn share_f32(held: f32, source: u32, lane: u32) -> f32 {
    return subgroupShuffle(held, (lane & ~7u) + source);
}
