// The adapter's own ceilings, for `gpu-siamese bench --roofline`: what it does at best on plain
// arithmetic (independent multiply-add chains, nothing loaded; several shapes of them, the best kept),
// on moving memory (a vec4 copy), and on the loads lanes make from addresses of their own.
// Every kernel's rate is then set beside them.

override ITERATIONS: u32;
override QUADS: u32;

@group(0) @binding(1) var<storage, read> origin: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> sink: array<vec4<f32>>;

// The probes of arithmetic: CHAINS independent multiply-add chains a lane (4, 8 or 16; more chains hide
// more latency, until registers run out), each a vec4 or a scalar, as fma() or as a multiply then an add
// (a compiler may fuse one and not the other), ITERATIONS long. A vec4 chain step is 8 floating-point
// operations, a scalar one 2. The results are stored so that nothing is optimised away; the host keeps
// the fastest probe as the ceiling and names it.
override CHAINS: u32 = 8u;
override FUSED: bool = true;
// Steps of every chain an iteration of the loop, 1 or 4: a CPU adapter spends tens of cycles on each
// iteration's bookkeeping (execution masks, its loop limiter), which one step of a few chains does not
// cover.
override UNROLL: u32 = 1u;

fn step4(c: vec4<f32>, m: vec4<f32>, a: vec4<f32>) -> vec4<f32> {
    if (FUSED) {
        return fma(c, m, a);
    }
    return c * m + a;
}

fn step1(c: f32, m: f32, a: f32) -> f32 {
    if (FUSED) {
        return fma(c, m, a);
    }
    return c * m + a;
}

// One step of every chain.
fn chains4(c: ptr<function, array<vec4<f32>, 16>>, m: vec4<f32>, a: vec4<f32>) {
    (*c)[0] = step4((*c)[0], m, a);
    (*c)[1] = step4((*c)[1], m, a);
    (*c)[2] = step4((*c)[2], m, a);
    (*c)[3] = step4((*c)[3], m, a);
    if (CHAINS > 4u) {
        (*c)[4] = step4((*c)[4], m, a);
        (*c)[5] = step4((*c)[5], m, a);
        (*c)[6] = step4((*c)[6], m, a);
        (*c)[7] = step4((*c)[7], m, a);
    }
    if (CHAINS > 8u) {
        (*c)[8] = step4((*c)[8], m, a);
        (*c)[9] = step4((*c)[9], m, a);
        (*c)[10] = step4((*c)[10], m, a);
        (*c)[11] = step4((*c)[11], m, a);
        (*c)[12] = step4((*c)[12], m, a);
        (*c)[13] = step4((*c)[13], m, a);
        (*c)[14] = step4((*c)[14], m, a);
        (*c)[15] = step4((*c)[15], m, a);
    }
}

@compute @workgroup_size(256)
fn roofline_arithmetic(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    let m = vec4<f32>(0.999, 0.998, 0.997, 0.996);
    let a = vec4<f32>(0.001, 0.002, 0.003, 0.004);
    // Every index a literal: a register array indexed by a loop counter may live in memory.
    let v = vec4<f32>(f32(i));
    var c = array<vec4<f32>, 16>(v, v + 1.0, v + 2.0, v + 3.0, v + 4.0, v + 5.0, v + 6.0, v + 7.0,
                                 v + 8.0, v + 9.0, v + 10.0, v + 11.0, v + 12.0, v + 13.0, v + 14.0, v + 15.0);
    for (var k = 0u; k < ITERATIONS / UNROLL; k++) {
        chains4(&c, m, a);
        if (UNROLL > 1u) {
            chains4(&c, m, a);
            chains4(&c, m, a);
            chains4(&c, m, a);
        }
    }
    var sum = (c[0] + c[1]) + (c[2] + c[3]);
    if (CHAINS > 4u) {
        sum += (c[4] + c[5]) + (c[6] + c[7]);
    }
    if (CHAINS > 8u) {
        sum += ((c[8] + c[9]) + (c[10] + c[11])) + ((c[12] + c[13]) + (c[14] + c[15]));
    }
    sink[i] = sum;
}

// One step of every scalar chain.
fn chains1(c: ptr<function, array<f32, 16>>) {
    (*c)[0] = step1((*c)[0], 0.999, 0.001);
    (*c)[1] = step1((*c)[1], 0.998, 0.002);
    (*c)[2] = step1((*c)[2], 0.997, 0.003);
    (*c)[3] = step1((*c)[3], 0.996, 0.004);
    if (CHAINS > 4u) {
        (*c)[4] = step1((*c)[4], 0.999, 0.001);
        (*c)[5] = step1((*c)[5], 0.998, 0.002);
        (*c)[6] = step1((*c)[6], 0.997, 0.003);
        (*c)[7] = step1((*c)[7], 0.996, 0.004);
    }
    if (CHAINS > 8u) {
        (*c)[8] = step1((*c)[8], 0.999, 0.001);
        (*c)[9] = step1((*c)[9], 0.998, 0.002);
        (*c)[10] = step1((*c)[10], 0.997, 0.003);
        (*c)[11] = step1((*c)[11], 0.996, 0.004);
        (*c)[12] = step1((*c)[12], 0.999, 0.001);
        (*c)[13] = step1((*c)[13], 0.998, 0.002);
        (*c)[14] = step1((*c)[14], 0.997, 0.003);
        (*c)[15] = step1((*c)[15], 0.996, 0.004);
    }
}

@compute @workgroup_size(256)
fn roofline_arithmetic_scalar(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    let v = f32(i);
    var c = array<f32, 16>(v, v + 1.0, v + 2.0, v + 3.0, v + 4.0, v + 5.0, v + 6.0, v + 7.0,
                           v + 8.0, v + 9.0, v + 10.0, v + 11.0, v + 12.0, v + 13.0, v + 14.0, v + 15.0);
    for (var k = 0u; k < ITERATIONS / UNROLL; k++) {
        chains1(&c);
        if (UNROLL > 1u) {
            chains1(&c);
            chains1(&c);
            chains1(&c);
        }
    }
    var sum = (c[0] + c[1]) + (c[2] + c[3]);
    if (CHAINS > 4u) {
        sum += (c[4] + c[5]) + (c[6] + c[7]);
    }
    if (CHAINS > 8u) {
        sum += ((c[8] + c[9]) + (c[10] + c[11])) + ((c[12] + c[13]) + (c[14] + c[15]));
    }
    sink[i] = vec4<f32>(sum);
}

// The probe of loads as the kernels make them: each lane reads four vec4s a step from addresses of its
// own (consecutive lanes, consecutive vec4s, all within a 64 KiB window that stays in cache), the way a
// product reads its rows. A CPU adapter may turn each such load into a loop over the lanes, so that a
// float loaded costs more than a multiply-add; `bench` counts the floats each kernel's lanes load and
// sets them beside this rate.
@compute @workgroup_size(256)
fn roofline_loads(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var s3 = vec4<f32>(0.0);
    for (var k = 0u; k < ITERATIONS; k++) {
        let base = (i * 4u + k * 1024u) % 4096u;
        s0 += origin[base];
        s1 += origin[base + 1u];
        s2 += origin[base + 2u];
        s3 += origin[base + 3u];
    }
    sink[i] = (s0 + s1) + (s2 + s3);
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
