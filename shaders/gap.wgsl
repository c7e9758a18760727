// Global average pooling over NHWC: y[n, c] = mean over (y, x) of x[n, y, x, c].

override BATCH: u32;
override H: u32;
override W: u32;
override CHANNELS: u32;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn gap_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= BATCH * CHANNELS) {
        return;
    }
    let c = idx % CHANNELS;
    let n = idx / CHANNELS;
    let area = H * W;
    var acc = 0.0;
    for (var i = 0u; i < area; i++) {
        acc += x[(n * area + i) * CHANNELS + c];
    }
    y[idx] = acc / f32(area);
}

@compute @workgroup_size(256)
fn gap_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    let area = H * W;
    if (idx >= BATCH * area * CHANNELS) {
        return;
    }
    let c = idx % CHANNELS;
    let n = idx / (area * CHANNELS);
    dx[idx] = dy[n * CHANNELS + c] / f32(area);
}
