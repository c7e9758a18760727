// How conv2d_gemm.wgsl's lanes share what they load: they do not; each loads a whole tile itself
// (SHARED false). For adapters without subgroups.

const SHARED: bool = false;

// Each lane holds a whole tile (at most 16 quads: Share::most_col_quads).
alias Held = array<vec4<f32>, 16>;

fn share_lane(lid: u32) -> u32 {
    return lid;
}

fn share_publish(held: Held, lane: u32) {}

fn share_quad(held: Held, v: u32, lane: u32) -> vec4<f32> {
    return held[v];
}

fn share_done() {}

fn share_f32(held: f32, source: u32, lane: u32) -> f32 {
    return held;
}
