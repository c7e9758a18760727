// Inverted dropout: in training, each element is kept with probability 1 - rate and scaled by
// 1 / (1 - rate); at evaluation it passes through. The mask is not stored: it is a counter-based hash of
// (layer seed, training step, element index), so the backward pass, the CPU reference and a resumed run
// all draw the same mask without any state. An element is kept when its hash >= threshold, where
// threshold = round(rate * 2^32), computed once on the host. The element index is hashed on its own
// before it meets the step's key: a single round over element ^ key leaves elements a fixed stride apart
// (one channel's, in the NHWC layout) slightly alike.

override COUNT: u32;
// Elements per image: an element's index in the whole batch is its image's (batch_image) times this,
// plus its place in the image.
override PER_IMAGE: u32;
override SEED: u32;
override THRESHOLD: u32;
override SCALE: f32;

@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

fn dropout_factor(i: u32) -> f32 {
    if (s.training == 0u) {
        return 1.0;
    }
    let element = batch_image(s, i / PER_IMAGE) * PER_IMAGE + i % PER_IMAGE;
    if (dropout_hash(SEED, s.step, element) >= THRESHOLD) {
        return SCALE;
    }
    return 0.0;
}

@compute @workgroup_size(256)
fn dropout_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= COUNT) {
        return;
    }
    y[i] = x[i] * dropout_factor(i);
}

@compute @workgroup_size(256)
fn dropout_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= COUNT) {
        return;
    }
    dx[i] = dy[i] * dropout_factor(i);
}
