//! A tower spec made concrete for an input shape and a batch: every layer's dimensions, and where each
//! layer's parameters sit in the one flat parameter buffer.

use super::spec::{LayerSpec, TowerSpec};
use crate::dims::{Conv2dDims, Conv2dMaxPoolGapDims, DenseDims, DropoutDims, GapDims, PoolDims, MAX_FUSED_TAPS};
use crate::reference::pcg_hash;
use std::fmt;
use std::ops::Range;

/// Each layer's parameters start at a multiple of this many f32s (256 bytes), the largest storage-buffer
/// offset alignment WebGPU allows an adapter to ask for, so every layer can be bound on its own.
pub const PARAM_ALIGN: usize = 64;

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

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerOp {
    Conv2d(Conv2dDims),
    MaxPool2(PoolDims),
    Dropout(DropoutDims),
    Gap(GapDims),
    Dense(DenseDims),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedLayer {
    pub op: LayerOp,
    /// Where the layer's kernel-then-bias region sits in the flat parameter buffer.
    pub params: Option<Range<usize>>,
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
    /// Width of the tower's output, the embedding.
    pub embedding_dim: usize,
}

/// A spec that cannot be laid out for the given input.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

/// The seed of the dropout layer at `layer_index`, derived from the run's seed.
pub fn dropout_seed(seed: u64, layer_index: usize) -> u32 {
    pcg_hash((seed as u32) ^ pcg_hash((seed >> 32) as u32 ^ pcg_hash(layer_index as u32)))
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
        // The shape flowing through the tower: (h, w, c) while spatial, (1, 1, features) once flat.
        let (mut h, mut w, mut c) = (input.h, input.w, input.c);
        let mut flat = false;
        let mut layers = Vec::new();
        let mut param_len = 0;
        let mut take_params = |len: usize| {
            let start = param_len;
            param_len = (start + len).div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
            Some(start..start + len)
        };
        for (index, layer) in spec.layers.iter().enumerate() {
            let at = |what: &str| PlanError(format!("layer {} ({}): {what}", index + 1, layer_name(layer)));
            let planned = match *layer {
                LayerSpec::Conv2d { filters, kernel_h, kernel_w, padding, relu } => {
                    if flat {
                        return Err(at("a convolution needs an image, but the input is already flat (after gap or dense)"));
                    }
                    let d = Conv2dDims { batch, in_h: h, in_w: w, in_c: c, out_c: filters, kernel_h, kernel_w, padding, relu };
                    if padding == crate::dims::Padding::Valid && (kernel_h > h || kernel_w > w) {
                        return Err(at(&format!("a {kernel_h}x{kernel_w} 'valid' kernel does not fit a {h}x{w} input")));
                    }
                    (h, w, c) = (d.out_h(), d.out_w(), filters);
                    PlannedLayer { op: LayerOp::Conv2d(d), params: take_params(d.param_len()), output_len: d.output_len() }
                }
                LayerSpec::MaxPool2 => {
                    if flat || h < 2 || w < 2 {
                        return Err(at(&format!("2x2 max-pooling needs an image of at least 2x2, not {h}x{w}")));
                    }
                    let d = PoolDims { batch, in_h: h, in_w: w, channels: c };
                    (h, w) = (d.out_h(), d.out_w());
                    PlannedLayer { op: LayerOp::MaxPool2(d), params: None, output_len: d.output_len() }
                }
                LayerSpec::Dropout { rate } => {
                    let count = batch * h * w * c;
                    let d = DropoutDims { count, rate, seed: dropout_seed(seed, index) };
                    PlannedLayer { op: LayerOp::Dropout(d), params: None, output_len: count }
                }
                LayerSpec::GlobalAvgPool => {
                    if flat {
                        return Err(at("global average pooling needs an image, but the input is already flat"));
                    }
                    let d = GapDims { batch, h, w, channels: c };
                    (h, w, flat) = (1, 1, true);
                    PlannedLayer { op: LayerOp::Gap(d), params: None, output_len: d.output_len() }
                }
                LayerSpec::Dense { units, relu } => {
                    if !flat {
                        return Err(at("a dense layer needs a flat input: put gap before it"));
                    }
                    let d = DenseDims { batch, in_dim: c, out_dim: units, relu };
                    c = units;
                    PlannedLayer { op: LayerOp::Dense(d), params: take_params(d.param_len()), output_len: batch * units }
                }
            };
            layers.push(planned);
        }
        if !flat {
            return Err(PlanError("the tower must end in a flat embedding: add gap (and dense) at the end".into()));
        }
        Ok(Plan { spec: spec.clone(), input, batch, layers, param_len, embedding_dim: c })
    }

    pub fn pairs(&self) -> usize {
        self.batch / 2
    }

    /// The fused block the tower starts with, if it does: conv2d -> maxpool -> dropout (optional) -> gap,
    /// with at most MAX_FUSED_TAPS taps per output channel, and how many layers it covers. Only a
    /// leading block fuses: nothing before it trains, so its input gradient is never needed.
    pub fn fused_head(&self) -> Option<(Conv2dMaxPoolGapDims, usize)> {
        let op = |i: usize| self.layers.get(i).map(|l| l.op);
        let Some(LayerOp::Conv2d(conv)) = op(0) else { return None };
        if conv.kernel_h * conv.kernel_w * conv.in_c > MAX_FUSED_TAPS || !matches!(op(1), Some(LayerOp::MaxPool2(_))) {
            return None;
        }
        let (dropout, gap_index) = match op(2) {
            Some(LayerOp::Dropout(d)) => (Some(d), 3),
            _ => (None, 2),
        };
        match op(gap_index) {
            Some(LayerOp::Gap(_)) => Some((Conv2dMaxPoolGapDims { conv, dropout }, gap_index + 1)),
            _ => None,
        }
    }

    /// Number of trainable parameters (padding excluded).
    pub fn trainable_params(&self) -> usize {
        self.layers.iter().filter_map(|l| l.params.as_ref()).map(|r| r.len()).sum()
    }
}

fn layer_name(layer: &LayerSpec) -> String {
    TowerSpec { layers: vec![layer.clone()] }.to_string()
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
        // More taps than the fused kernels keep in registers.
        assert_eq!(head("conv(4,4x3),maxpool,gap,dense(2)"), None);
        let plan = Plan::new(&TowerSpec::tutorial(), InputShape::FASHION_MNIST, 128, 0).unwrap();
        let (d, _) = plan.fused_head().unwrap();
        assert_eq!((d.output_len(), d.codes_len()), (128 * 128, 128 * 14 * 14 * 16));
    }

    #[test]
    fn dropout_layers_get_distinct_seeds() {
        let spec: TowerSpec = super::super::TUTORIAL_INTENDED_TOWER.parse().unwrap();
        let plan = Plan::new(&spec, InputShape::FASHION_MNIST, 2, 0).unwrap();
        let seeds: Vec<u32> = plan.layers.iter().filter_map(|l| match l.op {
            LayerOp::Dropout(d) => Some(d.seed),
            _ => None,
        }).collect();
        assert_eq!(seeds.len(), 2);
        assert_ne!(seeds[0], seeds[1]);
    }
}
