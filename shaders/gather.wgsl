// Gathers a batch of pairs from a dataset resident on the GPU. The images are bytes, four to a u32
// (little-endian), and become f32 through `byte_values` (v / 255, rounded once on the host as Keras'
// float64 division then cast does). Pairs are (first, second) image indices, two u32 per pair.
// Output: the batch's first images, then its second images, [2 * PAIRS, PIXELS], and its labels. A
// micro-batch gathers its PAIRS pairs from micro_start; its labels go to their places in the batch's.
// Pairs past the step's `valid_pairs` (the padding of a last, partial batch) repeat the first pair
// with label 0; the loss ignores them.
// With AUGMENT, each training image is changed as drawn for its batch row and the step (a counter-based
// hash, as dropout's masks): mirrored (FLIP), shifted by up to SHIFT pixels each way with the edges
// repeated, then (v - 0.5) * contrast + 0.5 + brightness, kept in [0, 1]. Evaluation (training == 0)
// sees the images as they are. The CPU reference is `reference::gather`.

override PAIRS: u32;
override PIXELS: u32;
override AUGMENT: u32 = 0u;
override HEIGHT: u32 = 1u;
override WIDTH: u32 = 1u;
override CHANNELS: u32 = 1u;
override AUG_SEED: u32 = 0u;
override FLIP: u32 = 0u;
override SHIFT: u32 = 0u;
override CONTRAST: f32 = 0.0;
override BRIGHTNESS: f32 = 0.0;

@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read> images: array<u32>;
@group(0) @binding(3) var<storage, read> pair_images: array<u32>;
@group(0) @binding(4) var<storage, read> pair_labels: array<f32>;
@group(0) @binding(5) var<storage, read> byte_values: array<f32, 256>;
@group(0) @binding(6) var<storage, read_write> inputs: array<f32>;
@group(0) @binding(7) var<storage, read_write> labels: array<f32>;

// A uniform draw in [0, 1) from a hash's top 24 bits, exactly representable.
fn unit(h: u32) -> f32 {
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

fn byte_at(byte_index: u32) -> f32 {
    return byte_values[(images[byte_index / 4u] >> (8u * (byte_index % 4u))) & 0xffu];
}

// Pixel k of the image starting at byte `base`, as drawn for batch row `row`.
fn augmented(base: u32, k: u32, row: u32) -> f32 {
    let h1 = pcg_hash(row ^ pcg_hash(s.step ^ pcg_hash(AUG_SEED)));
    let h2 = pcg_hash(h1);
    let h3 = pcg_hash(h2);
    let h4 = pcg_hash(h3);
    let h5 = pcg_hash(h4);
    let span = 2u * SHIFT + 1u;
    let flip = FLIP == 1u && (h1 & 1u) == 1u;
    let dx = i32(h2 % span) - i32(SHIFT);
    let dy = i32(h3 % span) - i32(SHIFT);
    let contrast = 1.0 + (unit(h4) * 2.0 - 1.0) * CONTRAST;
    let brightness = (unit(h5) * 2.0 - 1.0) * BRIGHTNESS;
    let ch = k % CHANNELS;
    let x = i32((k / CHANNELS) % WIDTH);
    let y = i32(k / (CHANNELS * WIDTH));
    let mirrored = select(x, i32(WIDTH) - 1 - x, flip);
    let sx = u32(clamp(mirrored - dx, 0, i32(WIDTH) - 1));
    let sy = u32(clamp(y - dy, 0, i32(HEIGHT) - 1));
    let v = byte_at(base + (sy * WIDTH + sx) * CHANNELS + ch);
    let t = (v - 0.5) * contrast;
    return clamp(t + 0.5 + brightness, 0.0, 1.0);
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
    // A micro-batch's pair i is pair micro_start + i of the step's batch.
    let valid = s.micro_start + i < s.valid_pairs;
    let pair = s.batch_start + select(0u, s.micro_start + i, valid);
    let base = pair_images[2u * pair + branch] * PIXELS;
    if (AUGMENT == 1u && s.training == 1u) {
        inputs[idx] = augmented(base, k, batch_image(s, row));
    } else {
        inputs[idx] = byte_at(base + k);
    }
    if (branch == 0u && k == 0u) {
        labels[s.micro_start + i] = select(0.0, pair_labels[pair], valid);
    }
}

// gather_pairs without augmentation for pictures of a multiple of 4 values: a lane per four values,
// one word of the images (their four bytes) read and one vec4 written.
@group(0) @binding(8) var<storage, read_write> inputs4: array<vec4<f32>>;

fn byte_value(word: u32, byte: u32) -> f32 {
    return byte_values[(word >> (8u * byte)) & 0xffu];
}

@compute @workgroup_size(256)
fn gather_pairs4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    let quads = PIXELS / 4u;
    if (idx >= 2u * PAIRS * quads) {
        return;
    }
    let q = idx % quads;
    let row = idx / quads;
    let branch = row / PAIRS;
    let i = row % PAIRS;
    let valid = s.micro_start + i < s.valid_pairs;
    let pair = s.batch_start + select(0u, s.micro_start + i, valid);
    let word = images[pair_images[2u * pair + branch] * quads + q];
    inputs4[idx] = vec4<f32>(byte_value(word, 0u), byte_value(word, 1u), byte_value(word, 2u), byte_value(word, 3u));
    if (branch == 0u && q == 0u) {
        labels[s.micro_start + i] = select(0.0, pair_labels[pair], valid);
    }
}
