// Global average pooling over NHWC: y[n, c] = mean over (y, x) of x[n, y, x, c].

struct GapParams {
    batch: u32, h: u32, w: u32, channels: u32,
}

@group(0) @binding(0) var<uniform> p: GapParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

const WORKGROUP: u32 = 256u;

fn thread_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WORKGROUP + lid;
}

@compute @workgroup_size(256)
fn gap_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    if (idx >= p.batch * p.channels) {
        return;
    }
    let c = idx % p.channels;
    let n = idx / p.channels;
    let area = p.h * p.w;
    var acc = 0.0;
    for (var i = 0u; i < area; i++) {
        acc += x[(n * area + i) * p.channels + c];
    }
    y[idx] = acc / f32(area);
}

@compute @workgroup_size(256)
fn gap_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let idx = thread_index(wg, nwg, lid);
    let area = p.h * p.w;
    if (idx >= p.batch * area * p.channels) {
        return;
    }
    let c = idx % p.channels;
    let n = idx / (area * p.channels);
    dx[idx] = dy[n * p.channels + c] / f32(area);
}
