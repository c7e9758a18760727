//! The twin network on the GPU: every buffer allocated once for a batch size, every dispatch built once,
//! and a whole training step (forward, loss, backward, Adam) recorded into one compute pass and submitted
//! without reading anything back. It runs the same sequence as `reference::TwinReference`.

use crate::feed::{DeviceImages, DevicePairs};
use crate::optimizer::AdamConfig;
use crate::data::Augment;
use crate::objective::Objective;
use crate::gpu::ops::{BATCH_CONTRASTIVE_BACKWARD, BATCH_CONTRASTIVE_FORWARD, BATCH_TRIPLET_BACKWARD, BATCH_TRIPLET_FORWARD};
use crate::gpu::{submit, Dispatch, Gpu, Kernels, Region, StepUniform};
use crate::layers::conv2d::PoolEpilogue;
use crate::layers::{Fusion, Io, LayerOp};
use crate::model::Plan;
use std::fmt;

/// A batch that does not fit the adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct TooLarge(pub String);

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TooLarge {}

pub struct GpuTwin<'a> {
    gpu: &'a Gpu,
    pub plan: Plan,
    pub objective: Objective,
    pub adam: AdamConfig,
    pub margin: f32,
    /// Adam updates done so far; also the step counter dropout masks are drawn from.
    pub step: u64,
    pub inputs: wgpu::Buffer,
    pub labels: wgpu::Buffer,
    pub activations: Vec<wgpu::Buffer>,
    pub params: wgpu::Buffer,
    /// The layers' non-trainable state (moving statistics).
    pub state: wgpu::Buffer,
    pub grads: wgpu::Buffer,
    pub adam_m: wgpu::Buffer,
    pub adam_v: wgpu::Buffer,
    pub distances: wgpu::Buffer,
    /// One slot per training step, modulo `loss_capacity`, then one for evaluation.
    pub losses: wgpu::Buffer,
    loss_capacity: usize,
    step_uniform: wgpu::Buffer,
    /// The tower, then the pair distances and the pair loss (the tutorial's objective, and evaluation).
    forward: Vec<Dispatch>,
    /// How many of `forward`'s dispatches are the tower's.
    tower_len: usize,
    /// A batch objective's distances between every two rows and its loss; empty for the pair objective.
    batch_head: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    /// Buffers only the dispatches use, kept here so their lifetime is plain to see.
    _scratch: Vec<wgpu::Buffer>,
}

impl<'a> GpuTwin<'a> {
    /// Allocates everything for `plan.batch` images and builds the step's dispatches.
    /// `loss_capacity` is how many steps' losses are kept on the GPU before the slots wrap around.
    /// With `fuse`, a tower that starts with conv -> maxpool -> dropout -> gap ([`Plan::fused_head`])
    /// runs that block as one kernel each way; the result is the same, bit for bit, and the block's
    /// intermediate activations are then never stored (nor readable).
    pub fn new(
        gpu: &'a Gpu,
        kernels: &Kernels,
        plan: Plan,
        adam: AdamConfig,
        margin: f32,
        loss_capacity: usize,
        fuse: bool,
    ) -> Result<GpuTwin<'a>, TooLarge> {
        GpuTwin::with_objective(gpu, kernels, plan, adam, margin, loss_capacity, fuse, Objective::Pairs)
    }

    /// A twin that minimises `objective`: a batch objective trains on every pair or triplet of its
    /// class-balanced batches, whose rows come in classes of `k`; evaluation still scores pairs.
    #[allow(clippy::too_many_arguments)]
    pub fn with_objective(
        gpu: &'a Gpu,
        kernels: &Kernels,
        plan: Plan,
        adam: AdamConfig,
        margin: f32,
        loss_capacity: usize,
        fuse: bool,
        objective: Objective,
    ) -> Result<GpuTwin<'a>, TooLarge> {
        let pairs = plan.pairs();
        let dim = plan.embedding_dim;
        let branches = 2;
        let scratch_len = plan.layers.iter().map(|l| l.op.scratch_len(branches)).max().unwrap_or(0).max(1);
        let fusion = Fusion::of(&plan, fuse);
        let fused = fusion.head;
        check_fits(gpu, &plan, scratch_len, &fusion)?;

        let inputs = gpu.storage("inputs", plan.batch * plan.input.len());
        let labels = gpu.storage("labels", pairs);
        let layer_buffer = |label: &str, i: usize| gpu.storage(label, if fusion.stored[i] { plan.layers[i].output_len } else { 1 });
        let activations: Vec<_> = (0..plan.layers.len()).map(|i| layer_buffer("activation", i)).collect();
        let act_grads: Vec<_> = (0..plan.layers.len()).map(|i| layer_buffer("activation gradient", i)).collect();
        let aux: Vec<_> = plan.layers.iter().enumerate().map(|(i, l)| gpu.storage("kept for backward", if fusion.records[i] { l.op.aux_len() } else { 1 })).collect();
        let codes = gpu.storage("pooling codes", fused.map_or(1, |(d, _)| d.codes_len()));
        let pool_codes: Vec<Option<wgpu::Buffer>> = plan
            .layers
            .iter()
            .zip(&fusion.pools)
            .map(|(l, pool)| match (&l.op, pool) {
                (LayerOp::Conv2d(d), Some(_)) => Some(gpu.storage("pooling codes", d.codes_len())),
                _ => None,
            })
            .collect();
        let params = gpu.storage("params", plan.param_len);
        let state = gpu.storage_from("state", &plan.initial_state());
        let grads = gpu.storage("grads", plan.param_len);
        let adam_m = gpu.storage("adam m", plan.param_len);
        let adam_v = gpu.storage("adam v", plan.param_len);
        let distances = gpu.storage("distances", pairs);
        let ddist = gpu.storage("distance gradient", pairs);
        let losses = gpu.storage("losses", loss_capacity + 1);
        let scratch = gpu.storage("weight-gradient partial sums", scratch_len);
        let step_uniform = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: std::mem::size_of::<StepUniform>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let step = Region::whole(&step_uniform);
        let whole = Region::whole;
        let region = |range: &Option<std::ops::Range<usize>>, buffer: &wgpu::Buffer| range.as_ref().map(|r| Region::new(buffer, r.start, r.len()));

        // Layers up to the first one with parameters need no input gradient: nothing before them trains.
        let first_trained = plan.layers.iter().position(|l| l.params.is_some()).unwrap_or(plan.layers.len());
        let io = |i: usize| {
            let layer = &plan.layers[i];
            let out = fusion.writes(i);
            Io {
                step: step.clone(),
                x: whole(if i == 0 { &inputs } else { &activations[i - 1] }),
                y: whole(&activations[out]),
                dy: whole(&act_grads[out]),
                dx: (i > first_trained).then(|| whole(&act_grads[i - 1])),
                params: region(&layer.params, &params),
                grads: region(&layer.params, &grads),
                state: region(&layer.state, &state),
                aux: Some(whole(&aux[i])),
                scratch: whole(&scratch),
                branches,
                exact: plan.exact,
                pool: fusion.pools[i].map(|(dropout, _)| PoolEpilogue { dropout, codes: whole(pool_codes[i].as_ref().unwrap()) }),
            }
        };
        let mut forward = Vec::new();
        if let Some((d, layers)) = &fused {
            let conv = region(&plan.layers[0].params, &params).unwrap();
            let y = whole(&activations[layers - 1]);
            forward.push(kernels.conv2d_maxpool_gap_forward(d, step.clone(), whole(&inputs), conv, y, whole(&codes)));
        }
        for (i, layer) in plan.layers.iter().enumerate().filter(|&(i, _)| fusion.records[i]) {
            forward.extend(layer.op.record_forward(kernels, &io(i)));
        }
        let tower_len = forward.len();
        let embeddings = whole(activations.last().unwrap());
        forward.push(kernels.distance_forward(pairs, dim, embeddings.clone(), whole(&distances)));
        forward.push(kernels.contrastive_forward(pairs, margin, step.clone(), whole(&distances), whole(&labels), whole(&losses)));

        let rows = plan.batch;
        let batch_len = if objective == Objective::Pairs { 1 } else { rows * rows };
        let (batch_dist, batch_ss, batch_ddist) =
            (gpu.storage("batch distances", batch_len), gpu.storage("batch squared distances", batch_len), gpu.storage("batch distance gradient", batch_len));
        let mut batch_head = Vec::new();
        let mut backward = match objective {
            Objective::Pairs => vec![
                kernels.contrastive_backward(pairs, margin, step.clone(), whole(&distances), whole(&labels), whole(&ddist)),
                kernels.distance_backward(pairs, dim, whole(&ddist), embeddings, whole(act_grads.last().unwrap())),
            ],
            Objective::BatchContrastive { k } | Objective::BatchTriplet { k } => {
                let (loss_forward, loss_backward) = match objective {
                    Objective::BatchTriplet { .. } => (BATCH_TRIPLET_FORWARD, BATCH_TRIPLET_BACKWARD),
                    _ => (BATCH_CONTRASTIVE_FORWARD, BATCH_CONTRASTIVE_BACKWARD),
                };
                batch_head.push(kernels.pairwise_distance_forward(rows, dim, embeddings.clone(), whole(&batch_dist), whole(&batch_ss)));
                batch_head.push(kernels.batch_loss_forward(loss_forward, rows, k, margin, step.clone(), whole(&batch_dist), whole(&losses)));
                vec![
                    kernels.batch_loss_backward(loss_backward, rows, k, margin, whole(&batch_dist), whole(&batch_ddist)),
                    kernels.pairwise_distance_backward(rows, dim, embeddings, whole(&batch_ss), whole(&batch_ddist), whole(act_grads.last().unwrap())),
                ]
            }
        };
        for (i, layer) in plan.layers.iter().enumerate().filter(|&(i, _)| fusion.records[i]).rev() {
            backward.extend(layer.op.record_backward(kernels, &io(i)));
        }
        if let Some((d, layers)) = &fused {
            let conv = region(&plan.layers[0].params, &grads).unwrap();
            backward.extend(kernels.conv2d_maxpool_gap_backward_weight(
                d, branches, whole(&inputs), whole(&act_grads[layers - 1]), whole(&codes), whole(&scratch), conv,
            ));
        }
        backward.push(kernels.adam_update(
            plan.param_len, &adam, step, whole(&grads), whole(&params), whole(&adam_m), whole(&adam_v),
        ));

        let mut kept = act_grads;
        kept.extend(aux);
        kept.extend(pool_codes.into_iter().flatten());
        kept.extend([ddist, scratch, codes, batch_dist, batch_ss, batch_ddist]);
        Ok(GpuTwin {
            gpu,
            plan,
            objective,
            adam,
            margin,
            step: 0,
            inputs,
            labels,
            activations,
            params,
            state,
            grads,
            adam_m,
            adam_v,
            distances,
            losses,
            loss_capacity,
            step_uniform,
            forward,
            tower_len,
            batch_head,
            backward,
            _scratch: kept,
        })
    }

    /// Loads weights (in the plan's flat layout) and restarts Adam from zero.
    pub fn set_params(&mut self, params: &[f32]) {
        assert_eq!(params.len(), self.plan.param_len, "parameter buffer length");
        let zeros = vec![0.0; self.plan.param_len];
        self.gpu.write(&self.params, 0, params);
        self.gpu.write(&self.adam_m, 0, &zeros);
        self.gpu.write(&self.adam_v, 0, &zeros);
        self.step = 0;
    }

    /// Uploads a batch: the pairs' first images then their second images, and the pairs' labels.
    pub fn set_batch(&self, inputs: &[f32], labels: &[f32]) {
        assert_eq!(inputs.len(), self.plan.batch * self.plan.input.len(), "batch images");
        assert_eq!(labels.len(), self.plan.pairs(), "batch labels");
        self.gpu.write(&self.inputs, 0, inputs);
        self.gpu.write(&self.labels, 0, labels);
    }

    fn write_step(&self, training: bool, loss_slot: usize, batch_start: usize, valid_pairs: usize) {
        let uniform = StepUniform {
            step: self.step as u32,
            training: training as u32,
            loss_slot: loss_slot as u32,
            alpha: self.adam.alpha(self.step + 1),
            batch_start: batch_start as u32,
            valid_pairs: valid_pairs as u32,
            _pad: [0; 2],
        };
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&uniform));
    }

    /// The slot of `losses` where training step `step` (0-based) left its loss.
    pub fn loss_slot(&self, step: u64) -> usize {
        (step % self.loss_capacity as u64) as usize
    }

    /// Submits one training step on the batch last uploaded with `set_batch`; returns without waiting.
    pub fn train_step(&mut self) -> wgpu::SubmissionIndex {
        self.submit_step(None, 0, self.plan.pairs())
    }

    /// Submits one training step on pairs `start..start + valid` of a dataset on the GPU, gathered by
    /// `gather` (from [`GpuTwin::gather_from`]); `valid` below the batch size pads a last, partial batch.
    pub fn train_step_gathered(&mut self, gather: &Dispatch, start: usize, valid: usize) -> wgpu::SubmissionIndex {
        self.submit_step(Some(gather), start, valid)
    }

    fn submit_step(&mut self, gather: Option<&Dispatch>, start: usize, valid: usize) -> wgpu::SubmissionIndex {
        assert!(valid >= 1 && valid <= self.plan.pairs(), "{valid} valid pairs in a batch of {}", self.plan.pairs());
        self.write_step(true, self.loss_slot(self.step), start, valid);
        let dispatches: Vec<&Dispatch> = self.train_dispatches(gather);
        let index = submit(self.gpu, &dispatches);
        self.step += 1;
        index
    }

    /// Distances and mean loss of the batch last uploaded, with dropout off; waits for the GPU.
    pub fn evaluate(&self) -> (Vec<f32>, f32) {
        self.write_step(false, self.loss_capacity, 0, self.plan.pairs());
        submit(self.gpu, &self.forward.iter().collect::<Vec<_>>());
        let distances = self.gpu.read(&self.distances, 0, self.plan.pairs());
        let loss = self.gpu.read(&self.losses, self.loss_capacity, 1)[0];
        (distances, loss)
    }

    /// The launch that gathers this twin's batches from `pairs` over `images`: built once per list.
    /// With `augment` (and its seed), training steps augment every image they gather.
    pub fn gather_from(&self, kernels: &Kernels, images: &DeviceImages, pairs: &DevicePairs, augment: Option<(&Augment, u32)>) -> Dispatch {
        assert_eq!(images.image_len, self.plan.input.len(), "image size");
        let whole = Region::whole;
        kernels.gather_pairs(
            self.plan.pairs(),
            self.plan.input,
            augment,
            whole(&self.step_uniform),
            whole(&images.images),
            whole(&pairs.pair_images),
            whole(&pairs.pair_labels),
            whole(&images.byte_values),
            whole(&self.inputs),
            whole(&self.labels),
        )
    }

    /// Losses of training steps `first..first + count`, which must still be in the ring of slots.
    pub fn read_losses(&self, first: u64, count: usize) -> Vec<f32> {
        assert!(count <= self.loss_capacity && first + count as u64 <= self.step, "losses {first}+{count} are gone");
        let start = self.loss_slot(first);
        let head = count.min(self.loss_capacity - start);
        let mut losses = self.gpu.read(&self.losses, start, head);
        losses.extend(self.gpu.read(&self.losses, 0, count - head));
        losses
    }

    /// The loss of training step `step` (0-based), if it is still in the ring of slots.
    pub fn read_loss(&self, step: u64) -> f32 {
        self.read_losses(step, 1)[0]
    }

    /// Overwrites the optimiser's state: the moments and the number of updates done (resuming a run).
    pub fn set_adam_state(&mut self, m: &[f32], v: &[f32], step: u64) {
        self.gpu.write(&self.adam_m, 0, m);
        self.gpu.write(&self.adam_v, 0, v);
        self.step = step;
    }

    /// Loads the layers' state (moving statistics, in the plan's state layout).
    pub fn set_state(&self, state: &[f32]) {
        assert_eq!(state.len(), self.plan.state_len, "state buffer length");
        self.gpu.write(&self.state, 0, state);
    }

    pub fn read_state(&self) -> Vec<f32> {
        self.gpu.read(&self.state, 0, self.plan.state_len)
    }

    pub fn read_params(&self) -> Vec<f32> {
        self.gpu.read(&self.params, 0, self.plan.param_len)
    }

    pub fn read_grads(&self) -> Vec<f32> {
        self.gpu.read(&self.grads, 0, self.plan.param_len)
    }

    pub fn read_adam(&self) -> (Vec<f32>, Vec<f32>) {
        (self.gpu.read(&self.adam_m, 0, self.plan.param_len), self.gpu.read(&self.adam_v, 0, self.plan.param_len))
    }

    /// The output of layer `layer` (0-based) for the last batch; not for the layers inside a fused block.
    /// Whether layer `layer`'s output is kept (not inside a fused run).
    pub fn stores(&self, layer: usize) -> bool {
        self.activations[layer].size() >= 4 * self.plan.layers[layer].output_len as u64
    }

    pub fn read_activation(&self, layer: usize) -> Vec<f32> {
        assert!(self.stores(layer), "layer {layer} runs inside a fused run: its output is never stored");
        self.gpu.read(&self.activations[layer], 0, self.plan.layers[layer].output_len)
    }

    pub fn read_distances(&self) -> Vec<f32> {
        self.gpu.read(&self.distances, 0, self.plan.pairs())
    }

    /// Every dispatch of one training step, in order (for timing them one by one).
    pub fn step_dispatches(&self) -> Vec<&Dispatch> {
        self.train_dispatches(None)
    }

    /// A training step: the gather, if any, the tower, the objective's loss, the backward pass, Adam.
    fn train_dispatches<'s>(&'s self, gather: Option<&'s Dispatch>) -> Vec<&'s Dispatch> {
        let head: &[Dispatch] = if self.batch_head.is_empty() { &self.forward } else { &self.forward[..self.tower_len] };
        gather.into_iter().chain(head).chain(&self.batch_head).chain(&self.backward).collect()
    }
}

/// Checks every buffer the plan needs against the adapter's limits, before allocating any; the first
/// `fused_layers` but one run inside the fused block and store nothing.
fn check_fits(gpu: &Gpu, plan: &Plan, scratch_len: usize, fusion: &Fusion) -> Result<(), TooLarge> {
    let limit = gpu.max_binding_bytes();
    let mut needs = vec![("the input images".to_string(), plan.batch * plan.input.len()), ("the weight-gradient partial sums".to_string(), scratch_len)];
    for (i, l) in plan.layers.iter().enumerate() {
        if fusion.stored[i] {
            needs.push((format!("layer {}'s output", i + 1), l.output_len));
        }
        if fusion.records[i] {
            needs.push((format!("layer {}'s gradient at its pre-activation", i + 1), l.op.aux_len()));
        }
    }
    for (what, len) in needs {
        let bytes = len as u64 * 4;
        if bytes > limit {
            return Err(TooLarge(format!(
                "a batch of {} pairs needs {:.0} MiB for {what}, more than this adapter binds at once ({:.0} MiB); use a smaller batch size",
                plan.pairs(),
                bytes as f64 / 1048576.0,
                limit as f64 / 1048576.0
            )));
        }
    }
    Ok(())
}
