//! A tower spec made concrete for an input shape and a batch: every layer's dimensions, and where each
//! layer's parameters sit in the one flat parameter buffer (and its state in the state buffer).

use super::spec::TowerSpec;
use crate::layers::{LayerOp, PlanContext, Shape};
use std::fmt;
use std::ops::Range;

/// Each layer's parameters start at a multiple of this many f32s (256 bytes), the largest storage-buffer
/// offset alignment WebGPU allows an adapter to ask for, so every layer can be bound on its own.
pub const PARAM_ALIGN: usize = 64;

/// The images a tower takes: height, width and channels (1 grayscale, 3 RGB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputShape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl InputShape {
    pub const FASHION_MNIST: InputShape = InputShape { h: 28, w: 28, c: 1 };
    /// Values in one image.
    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedLayer {
    pub op: LayerOp,
    /// Where the layer's parameters sit in the flat parameter buffer (its tensors one after another).
    pub params: Option<Range<usize>>,
    /// Where its non-trainable state sits in the flat state buffer.
    pub state: Option<Range<usize>>,
    /// The number of f32s the layer outputs for the whole batch.
    pub output_len: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub spec: TowerSpec,
    pub input: InputShape,
    /// Images per batch: the twin runs both images of `batch / 2` pairs as one batch.
    pub batch: usize,
    pub layers: Vec<PlannedLayer>,
    /// Length of the flat parameter buffer, padding included.
    pub param_len: usize,
    /// Length of the flat state buffer, padding included.
    pub state_len: usize,
    /// Width of the tower's output, the embedding.
    pub embedding_dim: usize,
    /// Whether convolutions round each multiply-add once, as a fused multiply-add does, whatever the
    /// adapter's fma does (`--exact`: Keras' bits, at ~17 operations a multiply-add on an adapter
    /// without a fused one); by default they use the adapter's fma.
    pub exact: bool,
    /// The run's seed, which dropout layers derive their masks' seeds from.
    pub seed: u64,
}

/// The most values one image may have at the input or at any layer's output (1 GiB of f32s), and the
/// most parameters a tower may have (2 GiB of f32s): beyond these no adapter binds the buffers, and a
/// crafted tower or checkpoint would have the host allocate without end before anything else failed.
pub const MAX_VALUES_PER_IMAGE: u64 = 1 << 28;
pub const MAX_PARAMS: u64 = 1 << 29;

/// A spec that cannot be laid out for the given input.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

/// Regions of a flat buffer, each starting at a multiple of PARAM_ALIGN.
fn take(len: &mut usize, size: usize) -> Option<Range<usize>> {
    (size > 0).then(|| {
        let start = *len;
        *len = (start + size).div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
        start..start + size
    })
}

impl Plan {
    /// Lays out `spec` for `batch` images of shape `input`; `seed` derives each dropout layer's seed.
    pub fn new(spec: &TowerSpec, input: InputShape, batch: usize, seed: u64) -> Result<Plan, PlanError> {
        if spec.layers.is_empty() {
            return Err(PlanError("the tower has no layers".into()));
        }
        if batch == 0 || !batch.is_multiple_of(2) {
            return Err(PlanError(format!("the twin's batch holds both images of each pair, so it must be even and above 0, not {batch}")));
        }
        let values = [input.h, input.w, input.c].iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).unwrap_or(u64::MAX);
        if values == 0 || values > MAX_VALUES_PER_IMAGE {
            return Err(PlanError(format!(
                "an input of {}x{}x{} is {}; a tower takes from 1 up to {MAX_VALUES_PER_IMAGE} values per image",
                input.h,
                input.w,
                input.c,
                if values == 0 { "empty".to_string() } else { format!("{values} values") }
            )));
        }
        let mut shape = Shape::map(input.h, input.w, input.c);
        let mut layers = Vec::new();
        let (mut param_len, mut state_len) = (0, 0);
        for (index, layer) in spec.layers.iter().enumerate() {
            let op = layer
                .plan(shape, &PlanContext { index, batch, seed })
                .map_err(|what| PlanError(format!("layer {} ({layer}): {what}", index + 1)))?;
            let sizes = |tensors: Vec<crate::layers::TensorSpec>| tensors.iter().map(|t| t.len() as u64).sum::<u64>();
            let (layer_params, layer_state) = (sizes(op.params()), sizes(op.state()));
            let per_image = op.output().len() as u64;
            if per_image > MAX_VALUES_PER_IMAGE {
                return Err(PlanError(format!(
                    "layer {} ({layer}) outputs {per_image} values per {}x{}x{} image ({} MiB), more than the {MAX_VALUES_PER_IMAGE} a tower may",
                    index + 1,
                    input.h,
                    input.w,
                    input.c,
                    (per_image * 4) >> 20
                )));
            }
            if param_len as u64 + layer_params + state_len as u64 + layer_state > MAX_PARAMS {
                return Err(PlanError(format!(
                    "layer {} ({layer}) has {} parameters, which makes more than the {MAX_PARAMS} a tower may have (2 GiB)",
                    index + 1,
                    layer_params + layer_state
                )));
            }
            let params = take(&mut param_len, layer_params as usize);
            let state = take(&mut state_len, layer_state as usize);
            shape = op.output();
            layers.push(PlannedLayer { output_len: op.output_len(), op, params, state });
        }
        if !shape.flat {
            return Err(PlanError("the tower must end in a flat embedding: add gap (and dense) at the end".into()));
        }
        Ok(Plan { spec: spec.clone(), input, batch, layers, param_len, state_len, embedding_dim: shape.c, exact: false, seed })
    }

    pub fn pairs(&self) -> usize {
        self.batch / 2
    }

    /// The same tower laid out for `batch` images (a micro-batch): the same parameters, state and
    /// dropout seeds.
    pub fn with_batch(&self, batch: usize) -> Plan {
        let mut plan = Plan::new(&self.spec, self.input, batch, self.seed).expect("a plan that lays out at one batch lays out at any even batch");
        plan.exact = self.exact;
        plan
    }

    /// Number of trainable parameters (padding excluded).
    pub fn trainable_params(&self) -> usize {
        self.layers.iter().filter_map(|l| l.params.as_ref()).map(|r| r.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tutorial_tower_has_keras_parameter_count_and_shapes() {
        let plan = Plan::new(&TowerSpec::tutorial(), InputShape::FASHION_MNIST, 128, 7).unwrap();
        // Keras' model.summary() for the tower: 640 + 6,192 = 6,832 parameters.
        assert_eq!(plan.trainable_params(), 6832);
        assert_eq!(plan.embedding_dim, 48);
        assert_eq!(plan.layers[0].output_len, 128 * 28 * 28 * 128);
        assert_eq!(plan.layers[1].output_len, 128 * 14 * 14 * 128);
        assert_eq!(plan.layers[0].params, Some(0..640));
        assert_eq!(plan.layers[4].params, Some(640..640 + 6192));
        assert_eq!(plan.param_len % PARAM_ALIGN, 0);
        assert_eq!(plan.state_len, 0);
    }

    #[test]
    fn intended_tower_and_errors() {
        let spec: TowerSpec = super::super::TUTORIAL_INTENDED_TOWER.parse().unwrap();
        let plan = Plan::new(&spec, InputShape::FASHION_MNIST, 2, 0).unwrap();
        assert_eq!(plan.layers[4].output_len, 2 * 7 * 7 * 128);
        let bad = |s: &str| Plan::new(&s.parse().unwrap(), InputShape::FASHION_MNIST, 2, 0).unwrap_err().0;
        assert!(bad("conv(4,2),dense(3)").contains("layer 2"));
        assert!(bad("conv(4,2)").contains("flat embedding"));
        assert!(bad("conv(4,29,valid),gap").contains("does not fit"));
        assert!(bad("gap,conv(4,2)").contains("already flat"));
        assert!(Plan::new(&TowerSpec::tutorial(), InputShape::FASHION_MNIST, 3, 0).is_err());
    }

    #[test]
    fn only_a_leading_conv_pool_gap_block_fuses() {
        let head = |spec: &str| {
            let plan = Plan::new(&spec.parse().unwrap(), InputShape { h: 9, w: 8, c: 1 }, 4, 0).unwrap();
            plan.fused_head().map(|(d, layers)| (d.dropout.is_some(), layers))
        };
        assert_eq!(head(super::super::TUTORIAL_TOWER), Some((true, 4)));
        assert_eq!(head("conv(4,3),maxpool,gap,dense(2)"), Some((false, 3)));
        // Two conv blocks: the first is followed by a conv, not gap.
        assert_eq!(head(super::super::TUTORIAL_INTENDED_TOWER), None);
        assert_eq!(head("maxpool,conv(4,2),maxpool,gap,dense(2)"), None);
        assert_eq!(head("conv(4,2),gap,dense(2)"), None);
        assert_eq!(head("conv(4,2),maxpool,dropout(0.1),dropout(0.1),gap,dense(2)"), None);
        // Up to 27 taps fuse (3x3 on colour; the tutorial's 2x2 on colour has 12), more do not; nor a
        // strided conv.
        assert_eq!(head("conv(4,4x3),maxpool,gap,dense(2)"), Some((false, 3)));
        assert_eq!(head("conv(4,7x4),maxpool,gap,dense(2)"), None);
        assert_eq!(head("conv(4,2,stride=2),maxpool,gap,dense(2)"), None);
        let colour = |spec: &str| Plan::new(&spec.parse().unwrap(), InputShape { h: 9, w: 8, c: 3 }, 4, 0).unwrap().fused_head().is_some();
        assert!(colour("conv(8,2),maxpool,gap,dense(2)") && colour("conv(8,3),maxpool,gap,dense(2)"));
        let plan = Plan::new(&TowerSpec::tutorial(), InputShape::FASHION_MNIST, 128, 0).unwrap();
        let (d, _) = plan.fused_head().unwrap();
        assert_eq!((d.output_len(), d.codes_len()), (128 * 128, 128 * 14 * 14 * 16));
    }

    #[test]
    fn dropout_layers_get_distinct_seeds() {
        let spec: TowerSpec = super::super::TUTORIAL_INTENDED_TOWER.parse().unwrap();
        let plan = Plan::new(&spec, InputShape::FASHION_MNIST, 2, 0).unwrap();
        let seeds: Vec<u32> = plan
            .layers
            .iter()
            .filter_map(|l| match &l.op {
                LayerOp::Dropout(d) => Some(d.seed),
                _ => None,
            })
            .collect();
        assert_eq!(seeds.len(), 2);
        assert_ne!(seeds[0], seeds[1]);
    }
}
