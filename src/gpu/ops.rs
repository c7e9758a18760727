//! The launches of the twin's own operations, outside its layers (each layer's are in its module):
//! gathering a batch, the distances, the losses and Adam. Under the CPU reference's names: the
//! constants its shape gives the shader and the buffers it binds; binding numbers follow the
//! `@binding` attributes of the shaders.

use super::kernels::{Dispatch, Kernel, Kernels, Region};
use crate::optimizer::AdamConfig;
use crate::data::Augment;
use crate::model::InputShape;
use bytemuck::{Pod, Zeroable};

const DISTANCE: &str = include_str!("../../shaders/distance.wgsl");
const CONTRASTIVE: &str = include_str!("../../shaders/contrastive.wgsl");
const BATCH_LOSS: &str = include_str!("../../shaders/batch_loss.wgsl");
const GATHER: &str = include_str!("../../shaders/gather.wgsl");
const ADAM: &str = include_str!("../../shaders/adam.wgsl");
pub const DISTANCE_FORWARD: Kernel = Kernel::new("distance", &[("distance", DISTANCE)], "distance_forward");
pub const DISTANCE_BACKWARD: Kernel = Kernel::new("distance", &[("distance", DISTANCE)], "distance_backward");
pub const PAIR_DISTANCE: Kernel = Kernel::new("distance", &[("distance", DISTANCE)], "pair_distance");
pub const CONTRASTIVE_FORWARD: Kernel = Kernel::new("contrastive", &[("contrastive", CONTRASTIVE)], "contrastive_forward");
pub const CONTRASTIVE_BACKWARD: Kernel = Kernel::new("contrastive", &[("contrastive", CONTRASTIVE)], "contrastive_backward");
pub const PAIRWISE_DISTANCE_FORWARD: Kernel = Kernel::new("batch_loss", &[("batch_loss", BATCH_LOSS)], "pairwise_distance_forward");
pub const PAIRWISE_DISTANCE_BACKWARD: Kernel = Kernel::new("batch_loss", &[("batch_loss", BATCH_LOSS)], "pairwise_distance_backward");
pub const BATCH_CONTRASTIVE_FORWARD: Kernel = Kernel::new("batch_loss", &[("batch_loss", BATCH_LOSS)], "batch_contrastive_forward");
pub const BATCH_CONTRASTIVE_BACKWARD: Kernel = Kernel::new("batch_loss", &[("batch_loss", BATCH_LOSS)], "batch_contrastive_backward");
pub const BATCH_TRIPLET_FORWARD: Kernel = Kernel::new("batch_loss", &[("batch_loss", BATCH_LOSS)], "batch_triplet_forward");
pub const BATCH_TRIPLET_BACKWARD: Kernel = Kernel::new("batch_loss", &[("batch_loss", BATCH_LOSS)], "batch_triplet_backward");
pub const GATHER_PAIRS: Kernel = Kernel::new("gather", &[("gather", GATHER)], "gather_pairs");
/// gather_pairs four values a lane, for pictures of a multiple of 4 values without augmentation.
pub const GATHER_PAIRS4: Kernel = Kernel::new("gather", &[("gather", GATHER)], "gather_pairs4");
pub const ADAM_UPDATE: Kernel = Kernel::new("adam", &[("adam", ADAM)], "adam_update");

pub const KERNELS: &[Kernel] = &[
    DISTANCE_FORWARD,
    DISTANCE_BACKWARD,
    PAIR_DISTANCE,
    CONTRASTIVE_FORWARD,
    CONTRASTIVE_BACKWARD,
    PAIRWISE_DISTANCE_FORWARD,
    PAIRWISE_DISTANCE_BACKWARD,
    BATCH_CONTRASTIVE_FORWARD,
    BATCH_CONTRASTIVE_BACKWARD,
    BATCH_TRIPLET_FORWARD,
    BATCH_TRIPLET_BACKWARD,
    GATHER_PAIRS,
    GATHER_PAIRS4,
    ADAM_UPDATE,
];

/// The values that change every step, one small uniform buffer written before each submission
/// (`Step` in common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct StepUniform {
    /// The training step, 0-based: dropout's masks are drawn from it.
    pub step: u32,
    /// 1 while training (dropout on), 0 at evaluation.
    pub training: u32,
    /// Where contrastive_forward writes this step's loss.
    pub loss_slot: u32,
    /// Adam's step size for update step + 1.
    pub alpha: f32,
    /// The index, in the GPU's pair list, of this batch's first pair (gather_pairs).
    pub batch_start: u32,
    /// How many of the batch's pairs are real; the rest pad a last, partial batch.
    pub valid_pairs: u32,
    /// The whole batch's pairs, when the step runs in micro-batches (0 otherwise: batch_image).
    pub batch_pairs: u32,
    /// The micro-batch's first pair in the step's batch, and its pairs (0 when not in micro-batches).
    pub micro_start: u32,
    pub micro_pairs: u32,
    pub _pad: [u32; 3],
}

impl Kernels {
    /// The distances of `pairs` pairs of embeddings `emb` into `dist`, from the step's `micro_start`.
    pub fn distance_forward(&self, pairs: usize, dim: usize, step: Region, emb: Region, dist: Region) -> Dispatch {
        let c = [("PAIRS", pairs as f64), ("DIM", dim as f64)];
        self.dispatch(DISTANCE_FORWARD, &c, &[(1, emb), (2, dist), (6, step)], pairs).with_work(3 * pairs * dim, 2 * pairs * dim + pairs)
    }

    pub fn distance_backward(&self, pairs: usize, dim: usize, ddist: Region, emb: Region, demb: Region) -> Dispatch {
        let c = [("PAIRS", pairs as f64), ("DIM", dim as f64)];
        self.dispatch(DISTANCE_BACKWARD, &c, &[(1, emb), (3, ddist), (4, demb)], pairs)
            .with_work(3 * pairs * dim, 4 * pairs * dim + pairs)
    }

    /// The distance between rows `pair_rows[i]` (two u32 each) of the embeddings `emb`, [rows, dim], for
    /// each of `pairs` pairs.
    pub fn pair_distance(&self, pairs: usize, dim: usize, emb: Region, pair_rows: Region, dist: Region) -> Dispatch {
        let c = [("PAIRS", pairs as f64), ("DIM", dim as f64)];
        self.dispatch(PAIR_DISTANCE, &c, &[(1, emb), (2, dist), (5, pair_rows)], pairs).with_work(3 * pairs * dim, 2 * pairs * dim + 3 * pairs)
    }

    /// Writes the mean loss into `losses[step.loss_slot]`; one workgroup.
    pub fn contrastive_forward(
        &self,
        pairs: usize,
        margin: f32,
        step: Region,
        dist: Region,
        label: Region,
        losses: Region,
    ) -> Dispatch {
        let c = [("PAIRS", pairs as f64), ("MARGIN", margin as f64)];
        let bindings = [(1, step), (2, dist), (3, label), (4, losses)];
        self.dispatch(CONTRASTIVE_FORWARD, &c, &bindings, super::WORKGROUP_SIZE as usize).with_work(6 * pairs, 2 * pairs)
    }

    pub fn contrastive_backward(
        &self,
        pairs: usize,
        margin: f32,
        step: Region,
        dist: Region,
        label: Region,
        ddist: Region,
    ) -> Dispatch {
        let c = [("PAIRS", pairs as f64), ("MARGIN", margin as f64)];
        self.dispatch(CONTRASTIVE_BACKWARD, &c, &[(1, step), (2, dist), (3, label), (5, ddist)], pairs).with_work(6 * pairs, 3 * pairs)
    }

    /// Distances between every two of `rows` embeddings: `dist` and the squared sums `ss`, rows x rows.
    pub fn pairwise_distance_forward(&self, rows: usize, dim: usize, emb: Region, dist: Region, ss: Region) -> Dispatch {
        let c = [("ROWS", rows as f64), ("DIM", dim as f64)];
        self.dispatch(PAIRWISE_DISTANCE_FORWARD, &c, &[(2, emb), (3, dist), (4, ss)], rows * rows)
            .with_work(3 * rows * rows * dim, 2 * rows * rows * dim + 2 * rows * rows)
    }

    pub fn pairwise_distance_backward(&self, rows: usize, dim: usize, emb: Region, ss: Region, ddist: Region, demb: Region) -> Dispatch {
        let c = [("ROWS", rows as f64), ("DIM", dim as f64)];
        self.dispatch(PAIRWISE_DISTANCE_BACKWARD, &c, &[(2, emb), (4, ss), (6, ddist), (7, demb)], rows * dim)
            .with_work(6 * rows * rows * dim, 4 * rows * rows * dim)
    }

    /// The loss over every pair (`BATCH_CONTRASTIVE_FORWARD`) or triplet
    /// (`BATCH_TRIPLET_FORWARD`) of a batch of `rows` in classes of `k`, into
    /// `losses[step.loss_slot]`; one workgroup.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_loss_forward(&self, kernel: Kernel, rows: usize, k: usize, margin: f32, step: Region, dist: Region, losses: Region) -> Dispatch {
        let c = [("ROWS", rows as f64), ("K", k as f64), ("MARGIN", margin as f64)];
        let terms = if kernel == BATCH_TRIPLET_FORWARD { rows * rows * rows } else { rows * rows };
        self.dispatch(kernel, &c, &[(1, step), (3, dist), (5, losses)], super::WORKGROUP_SIZE as usize).with_work(3 * terms, 4 * rows * rows)
    }

    /// The distances' gradient of that loss (`BATCH_CONTRASTIVE_BACKWARD` or
    /// `BATCH_TRIPLET_BACKWARD`).
    pub fn batch_loss_backward(&self, kernel: Kernel, rows: usize, k: usize, margin: f32, dist: Region, ddist: Region) -> Dispatch {
        let c = [("ROWS", rows as f64), ("K", k as f64), ("MARGIN", margin as f64)];
        let terms = if kernel == BATCH_TRIPLET_BACKWARD { rows * rows * rows } else { rows * rows };
        self.dispatch(kernel, &c, &[(3, dist), (6, ddist)], rows * rows).with_work(3 * terms, 8 * rows * rows)
    }

    /// Gathers the step's batch of `pairs` pairs of images of `shape` into `inputs` and `labels`,
    /// augmenting them in training steps when `augment` (with its seed) is given.
    #[allow(clippy::too_many_arguments)]
    pub fn gather_pairs(
        &self,
        pairs: usize,
        shape: InputShape,
        augment: Option<(&Augment, u32)>,
        step: Region,
        images: Region,
        pair_images: Region,
        pair_labels: Region,
        byte_values: Region,
        inputs: Region,
        labels: Region,
    ) -> Dispatch {
        let pixels = shape.len();
        let mut c = vec![("PAIRS", pairs as f64), ("PIXELS", pixels as f64)];
        let augment = augment.filter(|(a, _)| !a.is_off());
        // Reads a byte per pixel (a quarter of an f32) and two indices per pair; writes f32 pixels.
        let work = (0, 2 * pairs * pixels * 5 / 4 + 4 * pairs);
        if augment.is_none() && pixels.is_multiple_of(4) {
            let bindings = [(1, step), (2, images), (3, pair_images), (4, pair_labels), (5, byte_values), (8, inputs), (7, labels)];
            return self.dispatch(GATHER_PAIRS4, &c, &bindings, 2 * pairs * pixels / 4).with_work(work.0, work.1);
        }
        if let Some((a, seed)) = augment {
            c.extend([
                ("AUGMENT", 1.0),
                ("HEIGHT", shape.h as f64),
                ("WIDTH", shape.w as f64),
                ("CHANNELS", shape.c as f64),
                ("AUG_SEED", seed as f64),
                ("FLIP", a.flip as u8 as f64),
                ("SHIFT", a.shift as f64),
                ("CONTRAST", a.contrast as f64),
                ("BRIGHTNESS", a.brightness as f64),
            ]);
        }
        let bindings =
            [(1, step), (2, images), (3, pair_images), (4, pair_labels), (5, byte_values), (6, inputs), (7, labels)];
        self.dispatch(GATHER_PAIRS, &c, &bindings, 2 * pairs * pixels).with_work(work.0, work.1)
    }

    /// Adam over `count` parameters; the step size comes from `step.alpha`.
    #[allow(clippy::too_many_arguments)]
    pub fn adam_update(
        &self,
        count: usize,
        config: &AdamConfig,
        step: Region,
        grad: Region,
        w: Region,
        m: Region,
        v: Region,
    ) -> Dispatch {
        let c = [
            ("COUNT", count as f64),
            ("ONE_MINUS_BETA1", config.one_minus_beta1() as f64),
            ("ONE_MINUS_BETA2", config.one_minus_beta2() as f64),
            ("EPSILON", config.epsilon as f32 as f64),
        ];
        self.dispatch(ADAM_UPDATE, &c, &[(1, step), (2, grad), (3, w), (4, m), (5, v)], count).with_work(12 * count, 7 * count)
    }
}
