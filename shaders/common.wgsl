// What every kernel shares, written once: the host prepends this file to each shader when it builds
// the shader's pipelines (so a line number in a shader's compile error counts this file's lines too).

// Every entry point declares @workgroup_size(256); the host's WORKGROUP_SIZE.
const WORKGROUP: u32 = 256u;

// The values that change every step, one small uniform buffer written by the host before each
// submission (StepUniform on the host).
struct Step {
    step: u32, training: u32, loss_slot: u32, alpha: f32,
    batch_start: u32, valid_pairs: u32, _pad0: u32, _pad1: u32,
}

// Dispatches are a 2-D grid of 1-D workgroups so that more than 65535 workgroups fit.
fn thread_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WORKGROUP + lid;
}

// Keras' K.epsilon(), the floor of a squared distance.
const DISTANCE_EPSILON: f32 = 1e-7;

// PCG-style integer hash (Jarzynski and Olano, "Hash Functions for GPU Rendering", 2020), in wrapping
// u32 arithmetic; reference::pcg_hash on the host.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// The same hash of four values at once.
fn pcg_hash4(v: vec4<u32>) -> vec4<u32> {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> vec4<u32>(28u)) + 4u)) ^ state) * 277803737u;
    return (word >> vec4<u32>(22u)) ^ word;
}

// The counter-based hash that decides dropout, a function of (layer seed, training step, element): the
// element index is hashed on its own before it meets the step's key, since a single round over
// element ^ key leaves elements a fixed stride apart slightly alike. An element is kept when the hash
// is at least round(rate * 2^32).
fn dropout_step_key(seed: u32, step: u32) -> u32 {
    return pcg_hash(step ^ pcg_hash(seed));
}

fn dropout_hash(seed: u32, step: u32, element: u32) -> u32 {
    return pcg_hash(pcg_hash(element) ^ dropout_step_key(seed, step));
}

// a * b + c rounded once, from plain multiplies and adds: WGSL's fma() need not be fused (lavapipe's is
// not). Dekker's exact product through Veltkamp's split of each factor into 12-bit halves, Knuth's
// TwoSum of the product and c, then the small terms: about 17 operations.
fn split(a: f32) -> vec2<f32> {
    let c = 4097.0 * a;
    let hi = c - (c - a);
    return vec2<f32>(hi, a - hi);
}

fn two_product_error(a: f32, b: f32, p: f32) -> f32 {
    let sa = split(a);
    let sb = split(b);
    return sa.y * sb.y - (((p - sa.x * sb.x) - sa.y * sb.x) - sa.x * sb.y);
}

fn exact_fma(a: f32, b: f32, c: f32) -> f32 {
    let p = a * b;
    let e = two_product_error(a, b, p);
    let s = p + c;
    let back = s - p;
    let t = (p - (s - back)) + (c - back);
    return s + (t + e);
}
