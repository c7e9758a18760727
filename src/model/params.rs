//! The flat parameter buffer: Keras' initialisation and the tensors it holds.

use super::plan::{LayerOp, Plan};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// One named tensor of the flat parameter buffer, in Keras' layout.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub range: Range<usize>,
}

impl Plan {
    /// Every parameter tensor: `layerN.kernel` ([kh, kw, in, out] for conv, [in, out] for dense) and
    /// `layerN.bias`, N being the layer's 0-based index in the spec.
    pub fn param_tensors(&self) -> Vec<ParamTensor> {
        let mut tensors = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let (Some(range), kernel_shape, bias) = (match layer.op {
                LayerOp::Conv2d(d) => (layer.params.clone(), vec![d.kernel_h, d.kernel_w, d.in_c, d.out_c], d.out_c),
                LayerOp::Dense(d) => (layer.params.clone(), vec![d.in_dim, d.out_dim], d.out_dim),
                _ => (None, vec![], 0),
            }) else {
                continue;
            };
            let kernel_len: usize = kernel_shape.iter().product();
            let split = range.start + kernel_len;
            tensors.push(ParamTensor { name: format!("layer{i}.kernel"), shape: kernel_shape, range: range.start..split });
            tensors.push(ParamTensor { name: format!("layer{i}.bias"), shape: vec![bias], range: split..range.end });
        }
        tensors
    }
}

/// Keras' default initialisation: Glorot-uniform kernels, U(-l, l) with l = sqrt(6 / (fan_in + fan_out))
/// where a conv kernel's fans are kh * kw * in and kh * kw * out; zero biases. Padding stays zero.
pub fn glorot_uniform(plan: &Plan, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut params = vec![0.0f32; plan.param_len];
    for tensor in plan.param_tensors() {
        if !tensor.name.ends_with(".kernel") {
            continue;
        }
        let receptive: usize = tensor.shape[..tensor.shape.len() - 2].iter().product();
        let fan_in = receptive * tensor.shape[tensor.shape.len() - 2];
        let fan_out = receptive * tensor.shape[tensor.shape.len() - 1];
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
        for p in &mut params[tensor.range] {
            *p = rng.random_range(-limit..limit);
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InputShape, TowerSpec};

    #[test]
    fn glorot_limits_zero_biases_and_seeds() {
        let plan = Plan::new(&TowerSpec::tutorial(), InputShape::FASHION_MNIST, 2, 0).unwrap();
        let params = glorot_uniform(&plan, 1);
        let tensors = plan.param_tensors();
        assert_eq!(tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                   ["layer0.kernel", "layer0.bias", "layer4.kernel", "layer4.bias"]);
        // conv: fans 4 and 512; dense: 128 and 48.
        for (t, limit) in [(&tensors[0], (6.0f32 / 516.0).sqrt()), (&tensors[2], (6.0f32 / 176.0).sqrt())] {
            let values = &params[t.range.clone()];
            assert!(values.iter().all(|v| v.abs() <= limit));
            let largest = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(largest > 0.9 * limit, "{} spans its range", t.name);
        }
        assert!(params[tensors[1].range.clone()].iter().all(|&v| v == 0.0));
        assert_eq!(params, glorot_uniform(&plan, 1));
        assert_ne!(params, glorot_uniform(&plan, 2));
    }
}
