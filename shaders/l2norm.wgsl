// Unit-length rows, as Keras' UnitNormalization: y = x * r, r = min(1 / sqrt(sum x^2), 1e12). One lane
// per row, its sums in order. Gradient: dx = r dy - r^3 x (dy . x), or r dy where the bound holds.

override BATCH: u32;
override DIM: u32;

const MAX_SCALE: f32 = 1e12;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

fn row_scale(n: u32) -> f32 {
    var ss = 0.0;
    for (var k = 0u; k < DIM; k++) {
        let v = x[n * DIM + k];
        ss = fma(v, v, ss);
    }
    return min(1.0 / sqrt(ss), MAX_SCALE);
}

@compute @workgroup_size(256)
fn l2norm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let n = thread_index(wg, nwg, lid);
    if (n >= BATCH) {
        return;
    }
    let r = row_scale(n);
    for (var k = 0u; k < DIM; k++) {
        y[n * DIM + k] = x[n * DIM + k] * r;
    }
}

@compute @workgroup_size(256)
fn l2norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let n = thread_index(wg, nwg, lid);
    if (n >= BATCH) {
        return;
    }
    let r = row_scale(n);
    var dot = 0.0;
    for (var k = 0u; k < DIM; k++) {
        dot = fma(x[n * DIM + k], dy[n * DIM + k], dot);
    }
    let r3 = select(r * r * r, 0.0, r >= MAX_SCALE);
    for (var k = 0u; k < DIM; k++) {
        dx[n * DIM + k] = dy[n * DIM + k] * r - x[n * DIM + k] * r3 * dot;
    }
}
