// ReLU as a layer of its own: y = max(x, 0); the gradient passes where y > 0 (TensorFlow's: 0 at 0).

override COUNT: u32;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= COUNT) {
        return;
    }
    y[i] = max(x[i], 0.0);
}

@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= COUNT) {
        return;
    }
    dx[i] = select(dy[i], 0.0, y[i] <= 0.0);
}

// The same, four elements a lane, for counts in multiples of 4: a CPU adapter turns each load into a
// loop over the lanes, so one vec4 load in place of four scalar ones is most of the time saved.
@group(0) @binding(5) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> y4_in: array<vec4<f32>>;

@compute @workgroup_size(256)
fn relu_forward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= COUNT / 4u) {
        return;
    }
    y4[i] = max(x4[i], vec4<f32>(0.0));
}

@compute @workgroup_size(256)
fn relu_backward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= COUNT / 4u) {
        return;
    }
    dx4[i] = select(dy4[i], vec4<f32>(0.0), y4_in[i] <= vec4<f32>(0.0));
}
