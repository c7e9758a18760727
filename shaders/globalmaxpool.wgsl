// Global max-pooling over NHWC: y[n, c] = max over positions of x[n, p, c]. The gradient is
// TensorFlow's for a maximum: dy shared equally by every position equal to it, 0 elsewhere. One lane
// per (image, channel), neighbouring lanes on neighbouring channels.

override BATCH: u32;
override AREA: u32;
override CHANNELS: u32;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read> y_in: array<f32>;

@compute @workgroup_size(256)
fn globalmaxpool_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let o = thread_index(wg, nwg, lid);
    if (o >= BATCH * CHANNELS) {
        return;
    }
    let base = (o / CHANNELS) * AREA * CHANNELS + o % CHANNELS;
    var best = x[base];
    for (var i = 1u; i < AREA; i++) {
        best = max(best, x[base + i * CHANNELS]);
    }
    y[o] = best;
}

@compute @workgroup_size(256)
fn globalmaxpool_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let o = thread_index(wg, nwg, lid);
    if (o >= BATCH * CHANNELS) {
        return;
    }
    let base = (o / CHANNELS) * AREA * CHANNELS + o % CHANNELS;
    let best = y_in[o];
    var ties = 0u;
    for (var i = 0u; i < AREA; i++) {
        ties += select(0u, 1u, x[base + i * CHANNELS] == best);
    }
    let g = (1.0 / f32(ties)) * dy[o];
    for (var i = 0u; i < AREA; i++) {
        dx[base + i * CHANNELS] = select(0.0, g, x[base + i * CHANNELS] == best);
    }
}
