//! The flat parameter and state buffers: the tensors they hold, named as checkpoints name them, and
//! their initialisation as Keras does it.

use super::plan::Plan;
use crate::layers::{Init, TensorSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// One named tensor of a flat buffer, in Keras' layout.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub range: Range<usize>,
    pub init: Init,
}

/// `layerN.<name>` for each tensor of each layer's region, N being the layer's 0-based index.
fn named(plan: &Plan, region: impl Fn(usize) -> Option<(Range<usize>, Vec<TensorSpec>)>) -> Vec<ParamTensor> {
    let mut tensors = Vec::new();
    for i in 0..plan.layers.len() {
        let Some((range, specs)) = region(i) else { continue };
        let mut at = range.start;
        for t in specs {
            tensors.push(ParamTensor { name: format!("layer{i}.{}", t.name), range: at..at + t.len(), shape: t.shape, init: t.init });
            at += tensors.last().unwrap().range.len();
        }
        debug_assert_eq!(at, range.end, "a layer's tensors fill its region");
    }
    tensors
}

impl Plan {
    /// Every trainable tensor: `layerN.kernel` ([kh, kw, in, out] for conv, [in, out] for dense) and
    /// `layerN.bias`, N being the layer's 0-based index in the spec.
    pub fn param_tensors(&self) -> Vec<ParamTensor> {
        named(self, |i| self.layers[i].params.clone().map(|r| (r, self.layers[i].op.params())))
    }

    /// Every non-trainable tensor (a layer's moving statistics), in the state buffer.
    pub fn state_tensors(&self) -> Vec<ParamTensor> {
        named(self, |i| self.layers[i].state.clone().map(|r| (r, self.layers[i].op.state())))
    }

    /// The state a run starts from.
    pub fn initial_state(&self) -> Vec<f32> {
        let mut state = vec![0.0f32; self.state_len];
        for t in self.state_tensors() {
            state[t.range].fill(if t.init == Init::Ones { 1.0 } else { 0.0 });
        }
        state
    }
}

/// Keras' default initialisation: Glorot-uniform kernels, U(-l, l) with l = sqrt(6 / (fan_in + fan_out))
/// where a conv kernel's fans are kh * kw * in and kh * kw * out; zero biases (and ones where a layer
/// asks for them). Padding stays zero.
pub fn glorot_uniform(plan: &Plan, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut params = vec![0.0f32; plan.param_len];
    for tensor in plan.param_tensors() {
        match tensor.init {
            Init::Zeros => {}
            Init::Ones => params[tensor.range].fill(1.0),
            Init::GlorotUniform => {
                let receptive: usize = tensor.shape[..tensor.shape.len() - 2].iter().product();
                let fan_in = receptive * tensor.shape[tensor.shape.len() - 2];
                let fan_out = receptive * tensor.shape[tensor.shape.len() - 1];
                let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                for p in &mut params[tensor.range] {
                    *p = rng.random_range(-limit..limit);
                }
            }
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
        assert_eq!(tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["layer0.kernel", "layer0.bias", "layer4.kernel", "layer4.bias"]);
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
