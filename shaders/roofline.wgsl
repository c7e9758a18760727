// The adapter's own ceilings, for `gpu-siamese bench --roofline`: what it does at best on plain
// arithmetic (independent multiply-add chains, nothing loaded), and on moving memory (a vec4 copy).
// Every kernel's rate is then set beside them.

override ITERATIONS: u32;
override QUADS: u32;

@group(0) @binding(1) var<storage, read> origin: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> sink: array<vec4<f32>>;

// 8 independent vec4 multiply-add chains a lane, ITERATIONS long: 64 floating-point operations an
// iteration. The result is stored so that nothing is optimised away.
@compute @workgroup_size(256)
fn roofline_arithmetic(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    let m = vec4<f32>(0.999, 0.998, 0.997, 0.996);
    let a = vec4<f32>(0.001, 0.002, 0.003, 0.004);
    var c0 = vec4<f32>(f32(i));
    var c1 = c0 + 1.0;
    var c2 = c0 + 2.0;
    var c3 = c0 + 3.0;
    var c4 = c0 + 4.0;
    var c5 = c0 + 5.0;
    var c6 = c0 + 6.0;
    var c7 = c0 + 7.0;
    for (var k = 0u; k < ITERATIONS; k++) {
        c0 = fma(c0, m, a);
        c1 = fma(c1, m, a);
        c2 = fma(c2, m, a);
        c3 = fma(c3, m, a);
        c4 = fma(c4, m, a);
        c5 = fma(c5, m, a);
        c6 = fma(c6, m, a);
        c7 = fma(c7, m, a);
    }
    sink[i] = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7));
}

// sink = origin, a vec4 a lane.
@compute @workgroup_size(256)
fn roofline_copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i < QUADS) {
        sink[i] = origin[i];
    }
}
