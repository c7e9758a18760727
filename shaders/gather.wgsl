// Gathers a batch of pairs from a dataset resident on the GPU. The images are bytes, four to a u32
// (little-endian), and become f32 through `byte_values` (v / 255, rounded once on the host as Keras'
// float64 division then cast does). Pairs are (first, second) image indices, two u32 per pair.
// Output: the batch's first images, then its second images, [2 * PAIRS, PIXELS], and its labels.
// Pairs past the step's `valid_pairs` (the padding of a last, partial batch) repeat the first pair
// with label 0; the loss ignores them.

override PAIRS: u32;
override PIXELS: u32;

struct Step {
    step: u32, training: u32, loss_slot: u32, alpha: f32,
    batch_start: u32, valid_pairs: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read> images: array<u32>;
@group(0) @binding(3) var<storage, read> pair_images: array<u32>;
@group(0) @binding(4) var<storage, read> pair_labels: array<f32>;
@group(0) @binding(5) var<storage, read> byte_values: array<f32, 256>;
@group(0) @binding(6) var<storage, read_write> inputs: array<f32>;
@group(0) @binding(7) var<storage, read_write> labels: array<f32>;

const WORKGROUP: u32 = 256u;

fn thread_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WORKGROUP + lid;
}

@compute @workgroup_size(256)
fn gather_pairs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= 2u * PAIRS * PIXELS) {
        return;
    }
    let k = idx % PIXELS;
    let row = idx / PIXELS;
    let branch = row / PAIRS;
    let i = row % PAIRS;
    let valid = i < s.valid_pairs;
    let pair = s.batch_start + select(0u, i, valid);
    let byte_index = pair_images[2u * pair + branch] * PIXELS + k;
    let byte = (images[byte_index / 4u] >> (8u * (byte_index % 4u))) & 0xffu;
    inputs[idx] = byte_values[byte];
    if (branch == 0u && k == 0u) {
        labels[i] = select(0.0, pair_labels[pair], valid);
    }
}
