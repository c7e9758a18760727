// Adam in Keras 3's form, over one flat buffer holding every parameter:
//   m += (g - m) * (1 - beta1);  v += (g^2 - v) * (1 - beta2);  w -= (m * alpha) / (sqrt(v) + epsilon)
// with alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t), computed by the host in f32 as Keras does and
// written into the step's uniform. (PyTorch adds epsilon to the bias-corrected sqrt(v); Keras does not.)

override COUNT: u32;
override ONE_MINUS_BETA1: f32;
override ONE_MINUS_BETA2: f32;
override EPSILON: f32;

@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn adam_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, nwg, lid);
    if (i >= COUNT) {
        return;
    }
    let g = grad[i];
    let m_new = m[i] + (g - m[i]) * ONE_MINUS_BETA1;
    let v_new = v[i] + (g * g - v[i]) * ONE_MINUS_BETA2;
    m[i] = m_new;
    v[i] = v_new;
    w[i] = w[i] - (m_new * s.alpha) / (sqrt(v_new) + EPSILON);
}
