//! The whole twin network on the CPU: both images of every pair through one tower as one batch, the
//! distance, the contrastive loss, the backward pass and Adam. `src/twin.rs` records the same sequence
//! of kernels on the GPU.

use super::*;
use crate::optimizer::AdamConfig;
use crate::objective::Objective;
use crate::layers::{Backward, Pass};
use crate::model::Plan;

/// One batch: `inputs` holds the pairs' first images, then their second images ([2 * pairs, h, w, c]);
/// `labels` is 1 for a same-class pair, 0 otherwise. Only the first `valid` pairs count: the rest pad a
/// last, partial batch to the batch size and add nothing to the loss or the gradients.
#[derive(Clone, Debug)]
pub struct TwinBatch<T> {
    pub inputs: Vec<T>,
    pub labels: Vec<T>,
    pub valid: usize,
}

impl<T: Real> TwinBatch<T> {
    /// A full batch: every pair counts.
    pub fn new(inputs: Vec<T>, labels: Vec<T>) -> Self {
        let valid = labels.len();
        TwinBatch { inputs, labels, valid }
    }
}

/// Everything one step computes.
#[derive(Clone, Debug)]
pub struct TwinTrace<T> {
    /// Each layer's output, for the whole batch of 2 * pairs images.
    pub activations: Vec<Vec<T>>,
    pub distances: Vec<T>,
    pub loss: T,
    /// Gradient of the loss for every parameter, in the flat parameter layout.
    pub grads: Vec<T>,
}

pub struct TwinReference<T> {
    pub plan: Plan,
    pub params: Vec<T>,
    /// The layers' non-trainable state (moving statistics), in the plan's state layout.
    pub state: Vec<T>,
    pub adam_m: Vec<T>,
    pub adam_v: Vec<T>,
    /// Adam updates done so far; also the step counter that dropout masks are drawn from.
    pub step: u64,
    pub adam: AdamConfig,
    pub margin: T,
    pub objective: Objective,
}

impl<T: Real> TwinReference<T> {
    pub fn new(plan: Plan, params: Vec<T>, adam: AdamConfig, margin: T) -> Self {
        assert_eq!(params.len(), plan.param_len, "parameter buffer length");
        let zeros = vec![T::zero(); plan.param_len];
        let state = convert(&plan.initial_state());
        TwinReference { plan, params, state, adam_m: zeros.clone(), adam_v: zeros, step: 0, adam, margin, objective: Objective::Pairs }
    }

    /// The same twin minimising `objective` instead of the tutorial's pair loss.
    pub fn with_objective(mut self, objective: Objective) -> Self {
        self.objective = objective;
        self
    }

    /// How a pass over the twin's batch runs: both branches at once, at this step.
    fn pass(&self, training: bool) -> Pass {
        Pass { training, step: self.step as u32, branches: 2 }
    }

    /// The parameters and state of layer `i`.
    fn layer_tensors(&self, i: usize) -> (&[T], &[T]) {
        let layer = &self.plan.layers[i];
        (layer.params.clone().map_or(&[][..], |r| &self.params[r]), layer.state.clone().map_or(&[][..], |r| &self.state[r]))
    }

    /// The tower's forward pass over a batch; dropout is on when `training`, drawn for `self.step`.
    pub fn forward(&self, inputs: &[T], training: bool) -> Vec<Vec<T>> {
        let pass = self.pass(training);
        let mut activations: Vec<Vec<T>> = Vec::new();
        for (i, layer) in self.plan.layers.iter().enumerate() {
            let x = activations.last().map(|a| a.as_slice()).unwrap_or(inputs);
            let (params, state) = self.layer_tensors(i);
            activations.push(layer.op.forward(x, params, state, &pass));
        }
        activations
    }

    /// Forward (dropout on), loss and backward, without updating anything.
    pub fn loss_and_gradients(&self, batch: &TwinBatch<T>) -> TwinTrace<T> {
        let (pairs, dim) = (self.plan.pairs(), self.plan.embedding_dim);
        let activations = self.forward(&batch.inputs, true);
        let embeddings = activations.last().unwrap();
        let distances = distance_forward(embeddings, pairs, dim);
        let valid = batch.valid;
        let (loss, mut grad) = match self.objective {
            Objective::Pairs => {
                let loss = contrastive_forward(&distances[..valid], &batch.labels[..valid], self.margin);
                let mut ddist = contrastive_backward(&distances[..valid], &batch.labels[..valid], self.margin);
                ddist.resize(pairs, T::zero());
                (loss, distance_backward(&ddist, embeddings, pairs, dim))
            }
            Objective::BatchContrastive { k } | Objective::BatchTriplet { k } => {
                let rows = 2 * pairs;
                let (dist, ss) = pairwise_distance_forward(embeddings, rows, dim);
                let (loss, ddist) = if let Objective::BatchTriplet { .. } = self.objective {
                    (batch_triplet_forward(&dist, rows, k, self.margin), batch_triplet_backward(&dist, rows, k, self.margin))
                } else {
                    (batch_contrastive_forward(&dist, rows, k, self.margin), batch_contrastive_backward(&dist, rows, k, self.margin))
                };
                (loss, pairwise_distance_backward(&ddist, embeddings, &ss, rows, dim))
            }
        };
        let mut grads = vec![T::zero(); self.plan.param_len];
        let pass = self.pass(true);
        for (i, layer) in self.plan.layers.iter().enumerate().rev() {
            let (params, state) = self.layer_tensors(i);
            // The images need no gradient: the first layer only produces its parameters' gradient.
            let b = Backward {
                x: if i == 0 { &batch.inputs } else { &activations[i - 1] },
                y: &activations[i],
                dy: &grad,
                params,
                state,
                pass,
                need_dx: i > 0,
            };
            let (dx, dparams) = layer.op.backward(&b);
            if let Some(range) = layer.params.clone() {
                grads[range].copy_from_slice(&dparams);
            }
            grad = dx;
        }
        TwinTrace { activations, distances, loss, grads }
    }

    /// One training step: gradients at the current weights, the layers' state moved on by the
    /// training forward pass, then Adam update number `step + 1`.
    pub fn train_step(&mut self, batch: &TwinBatch<T>) -> TwinTrace<T> {
        let trace = self.loss_and_gradients(batch);
        let pass = self.pass(true);
        for (i, layer) in self.plan.layers.iter().enumerate() {
            if let Some(range) = layer.state.clone() {
                let x = if i == 0 { &batch.inputs } else { &trace.activations[i - 1] };
                layer.op.update_state(x, &mut self.state[range], &pass);
            }
        }
        self.step += 1;
        adam_update(&mut self.params, &trace.grads, &mut self.adam_m, &mut self.adam_v, &self.adam, self.step);
        trace
    }

    /// Distances and mean loss with dropout off, as at evaluation.
    pub fn evaluate(&self, batch: &TwinBatch<T>) -> (Vec<T>, T) {
        let activations = self.forward(&batch.inputs, false);
        let distances = distance_forward(activations.last().unwrap(), self.plan.pairs(), self.plan.embedding_dim);
        let loss = contrastive_forward(&distances[..batch.valid], &batch.labels[..batch.valid], self.margin);
        (distances, loss)
    }
}
