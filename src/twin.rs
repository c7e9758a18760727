//! The twin network on the GPU: every buffer allocated once for a batch size, every dispatch built once,
//! and a whole training step (forward, loss, backward, Adam) recorded into one compute pass and submitted
//! without reading anything back. It runs the same sequence as `reference::TwinReference`.
//!
//! A step whose activations do not fit what the adapter binds at once (or the memory budget) runs in
//! micro-batches: slices of the batch's pairs, each through the tower and back with buffers sized for
//! one slice, whose weight gradients' partial sums land in their own chunks of buffers laid out over
//! the whole batch (`WeightChunks`). Those are added up once, in the same fixed order, before one Adam
//! update: a micro-batched step gives the whole batch's weights bit for bit. Dropout's masks and
//! augmentation's draws hash an image's place in the whole batch, and the loss adds every pair's term
//! after the last micro-batch, so they do not notice either.

use crate::data::Augment;
use crate::feed::{DeviceImages, DevicePairs};
use crate::gpu::ops::{BATCH_CONTRASTIVE_BACKWARD, BATCH_CONTRASTIVE_FORWARD, BATCH_TRIPLET_BACKWARD, BATCH_TRIPLET_FORWARD};
use crate::gpu::{submit, Dispatch, Gpu, Kernels, ReadBack, Region, StepUniform};
use crate::layers::conv2d::{PoolEpilogue, WeightChunks};
use crate::layers::{Fusion, Io, LayerOp};
use crate::model::Plan;
use crate::objective::Objective;
use crate::optimizer::{AdamConfig, Schedule};
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

/// How a twin runs its plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TwinOptions {
    /// Run a tower that starts with conv -> maxpool -> dropout -> gap ([`Plan::fused_head`]) as one
    /// kernel each way, and max-pooling in its conv's epilogue ([`Plan::fused_pools`]); the result is
    /// the same, bit for bit, and the fused layers' intermediate activations are never stored.
    pub fuse: bool,
    pub objective: Objective,
    /// Pairs per micro-batch; None: the whole batch when it fits, else the largest slice that does.
    pub micro_pairs: Option<usize>,
    /// Bytes the twin's buffers may take in all; None: only what the adapter binds at once counts.
    pub memory_budget: Option<u64>,
}

impl TwinOptions {
    pub fn new(fuse: bool) -> TwinOptions {
        TwinOptions { fuse, objective: Objective::Pairs, micro_pairs: None, memory_budget: None }
    }
}

/// One slice of the step's batch: its pairs, its own step uniform (where it starts), and its
/// launches.
struct Micro {
    start: usize,
    pairs: usize,
    uniform: wgpu::Buffer,
    /// The tower, then the pairs' distances.
    forward: Vec<Dispatch>,
    /// How many of `forward`'s dispatches are the tower's.
    tower_len: usize,
    /// The loss's gradient at the distances (the pair objective's), then the tower backwards, into
    /// the partial sums.
    backward: Vec<Dispatch>,
}

/// The launches that gather each micro-batch's pairs from a dataset on the GPU: built once per list.
pub struct Gather(Vec<Dispatch>);

impl Gather {
    pub fn dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.0.iter()
    }
}

pub struct GpuTwin<'a> {
    gpu: &'a Gpu,
    pub plan: Plan,
    pub objective: Objective,
    pub adam: AdamConfig,
    pub margin: f32,
    /// Adam updates done so far; also the step counter dropout masks are drawn from.
    pub step: u64,
    /// The learning rate over the run (constant unless set).
    pub schedule: Schedule,
    /// Pairs per micro-batch: the whole batch's when the step runs whole.
    pub micro_pairs: usize,
    /// One micro-batch's images: its pairs' first images, then their second images.
    pub inputs: wgpu::Buffer,
    /// The whole batch's labels and distances.
    pub labels: wgpu::Buffer,
    pub distances: wgpu::Buffer,
    /// One micro-batch's layer outputs.
    pub activations: Vec<wgpu::Buffer>,
    pub params: wgpu::Buffer,
    /// The layers' non-trainable state (moving statistics).
    pub state: wgpu::Buffer,
    pub grads: wgpu::Buffer,
    pub adam_m: wgpu::Buffer,
    pub adam_v: wgpu::Buffer,
    /// One slot per training step, modulo `loss_capacity`, then one for evaluation.
    pub losses: wgpu::Buffer,
    loss_capacity: usize,
    micros: Vec<Micro>,
    /// The pair loss over the whole batch (the tutorial's objective, and evaluation).
    loss: Dispatch,
    /// A batch objective's distances between every two rows and its loss; empty for the pair objective.
    batch_head: Vec<Dispatch>,
    /// A batch objective's gradient at the embeddings, before the tower backwards.
    batch_backward: Vec<Dispatch>,
    /// The partial sums added into the gradients, then Adam.
    update: Vec<Dispatch>,
    /// The batch last uploaded with `set_batch`, kept on the host when the step runs in micro-batches
    /// (each is uploaded before its own submission).
    host_inputs: Vec<f32>,
    /// Buffers only the dispatches use, kept here so their lifetime is plain to see.
    _scratch: Vec<wgpu::Buffer>,
}

impl<'a> GpuTwin<'a> {
    /// Allocates everything for `plan.batch` images and builds the step's dispatches.
    /// `loss_capacity` is how many steps' losses are kept on the GPU before the slots wrap around.
    pub fn new(
        gpu: &'a Gpu,
        kernels: &Kernels,
        plan: Plan,
        adam: AdamConfig,
        margin: f32,
        loss_capacity: usize,
        fuse: bool,
    ) -> Result<GpuTwin<'a>, TooLarge> {
        GpuTwin::with_options(gpu, kernels, plan, adam, margin, loss_capacity, TwinOptions::new(fuse))
    }

    /// A twin that minimises `options.objective`: a batch objective trains on every pair or triplet of
    /// its class-balanced batches, whose rows come in classes of `k`; evaluation still scores pairs.
    pub fn with_options(
        gpu: &'a Gpu,
        kernels: &Kernels,
        plan: Plan,
        adam: AdamConfig,
        margin: f32,
        loss_capacity: usize,
        options: TwinOptions,
    ) -> Result<GpuTwin<'a>, TooLarge> {
        let pairs = plan.pairs();
        let dim = plan.embedding_dim;
        let branches = 2;
        let fusion = Fusion::of(&plan, options.fuse);
        let fused = fusion.head;
        let micro_pairs = micro_size(gpu, &plan, &fusion, &options)?;
        let slices: Vec<(usize, usize)> = (0..pairs).step_by(micro_pairs).map(|start| (start, micro_pairs.min(pairs - start))).collect();
        let micro_plan = plan.with_batch(2 * micro_pairs);

        // Buffers for one micro-batch (the largest), and the whole batch's gradients' partial sums.
        // A view (flatten) is its input's buffers.
        let layer_buffers = |label: &str, first: &wgpu::Buffer| {
            let mut buffers: Vec<wgpu::Buffer> = Vec::new();
            for (i, layer) in micro_plan.layers.iter().enumerate() {
                buffers.push(match (layer.op.is_view(), i) {
                    (true, 0) => first.clone(),
                    (true, _) => buffers[i - 1].clone(),
                    _ => gpu.storage(label, if fusion.stored[i] { layer.output_len } else { 1 }),
                });
            }
            buffers
        };
        let inputs = gpu.storage("inputs", micro_plan.batch * plan.input.len());
        let activations = layer_buffers("activation", &inputs);
        let act_grads = layer_buffers("activation gradient", &gpu.storage("unused", 1));
        let aux: Vec<_> = micro_plan
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| gpu.storage("kept for backward", if fusion.records[i] { l.op.aux_len() } else { 1 }))
            .collect();
        let codes = gpu.storage("pooling codes", fused.map_or(1, |_| micro_fused(&micro_plan, options.fuse).codes_len()));
        let pool_codes: Vec<Option<wgpu::Buffer>> = micro_plan
            .layers
            .iter()
            .zip(&fusion.pools)
            .map(|(l, pool)| match (&l.op, pool) {
                (LayerOp::Conv2d(d), Some(_)) => Some(gpu.storage("pooling codes", d.codes_len())),
                _ => None,
            })
            .collect();
        let partials: Vec<Option<wgpu::Buffer>> =
            (0..plan.layers.len()).map(|i| partials_len(&plan, &fusion, i).map(|len| gpu.storage("weight-gradient partial sums", len))).collect();
        let params = gpu.storage("params", plan.param_len);
        let state = gpu.storage_from("state", &plan.initial_state());
        let grads = gpu.storage("grads", plan.param_len);
        let adam_m = gpu.storage("adam m", plan.param_len);
        let adam_v = gpu.storage("adam v", plan.param_len);
        let labels = gpu.storage("labels", pairs);
        let distances = gpu.storage("distances", pairs);
        let ddist = gpu.storage("distance gradient", micro_pairs);
        let losses = gpu.storage("losses", loss_capacity + 1);
        let whole = Region::whole;
        let region = |range: &Option<std::ops::Range<usize>>, buffer: &wgpu::Buffer| range.as_ref().map(|r| Region::new(buffer, r.start, r.len()));

        // Layers up to the first one with parameters need no input gradient: nothing before them trains.
        let first_trained = plan.layers.iter().position(|l| l.params.is_some()).unwrap_or(plan.layers.len());
        let io = |layers: &Plan, i: usize, step: &Region, first_pair: usize| {
            let layer = &layers.layers[i];
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
                partials: partials[i].as_ref().map(whole),
                branches,
                whole_batch: plan.batch,
                first_pair,
                exact: plan.exact,
                pool: fusion.pools[i].map(|(dropout, _)| PoolEpilogue { dropout, codes: whole(pool_codes[i].as_ref().unwrap()) }),
            }
        };
        let head_chunks = fused.map(|(d, _)| WeightChunks::of(&d.conv, branches, plan.batch));

        let rows = plan.batch;
        let batch_len = if options.objective == Objective::Pairs { 1 } else { rows * rows };
        let (batch_dist, batch_ss, batch_ddist) =
            (gpu.storage("batch distances", batch_len), gpu.storage("batch squared distances", batch_len), gpu.storage("batch distance gradient", batch_len));
        let embeddings = whole(activations.last().unwrap());
        let demb = whole(act_grads.last().unwrap());
        let mut micros = Vec::new();
        for &(start, count) in &slices {
            let layers = if count == micro_pairs { micro_plan.clone() } else { plan.with_batch(2 * count) };
            let uniform = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("step"),
                size: std::mem::size_of::<StepUniform>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let step = whole(&uniform);
            let mut forward = Vec::new();
            if let Some((_, last)) = &fused {
                let d = micro_fused(&layers, true);
                let conv = region(&plan.layers[0].params, &params).unwrap();
                forward.push(kernels.conv2d_maxpool_gap_forward(&d, step.clone(), whole(&inputs), conv, whole(&activations[last - 1]), whole(&codes)));
            }
            for (i, layer) in layers.layers.iter().enumerate().filter(|&(i, _)| fusion.records[i]) {
                forward.extend(layer.op.record_forward(kernels, &io(&layers, i, &step, start)));
            }
            let tower_len = forward.len();
            forward.push(kernels.distance_forward(count, dim, step.clone(), embeddings.clone(), whole(&distances)));
            let mut backward = Vec::new();
            if options.objective == Objective::Pairs {
                backward.push(kernels.contrastive_backward(count, margin, step.clone(), whole(&distances), whole(&labels), whole(&ddist)));
                backward.push(kernels.distance_backward(count, dim, whole(&ddist), embeddings.clone(), demb.clone()));
            }
            for (i, layer) in layers.layers.iter().enumerate().filter(|&(i, _)| fusion.records[i]).rev() {
                backward.extend(layer.op.record_backward(kernels, &io(&layers, i, &step, start)));
            }
            if let (Some((_, last)), Some(chunks)) = (&fused, &head_chunks) {
                let d = micro_fused(&layers, true);
                let partial = whole(partials[0].as_ref().unwrap());
                backward.push(kernels.conv2d_maxpool_gap_backward_weight(&d, branches, chunks, start, step.clone(), whole(&inputs), whole(&act_grads[last - 1]), whole(&codes), partial));
            }
            micros.push(Micro { start, pairs: count, uniform, forward, tower_len, backward });
        }

        let step0 = whole(&micros[0].uniform);
        let loss = kernels.contrastive_forward(pairs, margin, step0.clone(), whole(&distances), whole(&labels), whole(&losses));
        let (mut batch_head, mut batch_backward) = (Vec::new(), Vec::new());
        if let Objective::BatchContrastive { k } | Objective::BatchTriplet { k } = options.objective {
            let (loss_forward, loss_backward) = match options.objective {
                Objective::BatchTriplet { .. } => (BATCH_TRIPLET_FORWARD, BATCH_TRIPLET_BACKWARD),
                _ => (BATCH_CONTRASTIVE_FORWARD, BATCH_CONTRASTIVE_BACKWARD),
            };
            batch_head.push(kernels.pairwise_distance_forward(rows, dim, embeddings.clone(), whole(&batch_dist), whole(&batch_ss)));
            batch_head.push(kernels.batch_loss_forward(loss_forward, rows, k, margin, step0.clone(), whole(&batch_dist), whole(&losses)));
            batch_backward.push(kernels.batch_loss_backward(loss_backward, rows, k, margin, whole(&batch_dist), whole(&batch_ddist)));
            batch_backward.push(kernels.pairwise_distance_backward(rows, dim, embeddings, whole(&batch_ss), whole(&batch_ddist), demb));
        }
        let mut update = Vec::new();
        for (i, layer) in plan.layers.iter().enumerate().filter(|&(i, _)| fusion.records[i]) {
            update.extend(layer.op.record_gradient(kernels, &io(&plan, i, &step0, 0)));
        }
        if let (Some((d, _)), Some(chunks)) = (&fused, &head_chunks) {
            let conv = region(&plan.layers[0].params, &grads).unwrap();
            update.push(kernels.sum_partials(d.conv.param_len(), branches, chunks.per_branch, whole(partials[0].as_ref().unwrap()), conv));
        }
        update.push(kernels.adam_update(plan.param_len, &adam, step0, whole(&grads), whole(&params), whole(&adam_m), whole(&adam_v)));

        let mut kept = act_grads;
        kept.extend(aux);
        kept.extend(pool_codes.into_iter().flatten());
        kept.extend(partials.into_iter().flatten());
        kept.extend([ddist, codes, batch_dist, batch_ss, batch_ddist]);
        Ok(GpuTwin {
            gpu,
            plan,
            objective: options.objective,
            adam,
            margin,
            step: 0,
            schedule: Schedule::constant(),
            micro_pairs,
            inputs,
            labels,
            distances,
            activations,
            params,
            state,
            grads,
            adam_m,
            adam_v,
            losses,
            loss_capacity,
            micros,
            loss,
            batch_head,
            batch_backward,
            update,
            host_inputs: Vec::new(),
            _scratch: kept,
        })
    }

    /// How many micro-batches a step runs in (1: the whole batch at once).
    /// Bytes of GPU memory the twin's buffers take (the step's working set; the dataset's images, when
    /// resident, come on top).
    pub fn memory_bytes(&self) -> u64 {
        let named = [&self.inputs, &self.labels, &self.distances, &self.params, &self.state, &self.grads, &self.adam_m, &self.adam_v, &self.losses];
        named.into_iter().chain(&self.activations).chain(&self._scratch).map(|b| b.size()).sum()
    }

    pub fn micro_batches(&self) -> usize {
        self.micros.len()
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
    pub fn set_batch(&mut self, inputs: &[f32], labels: &[f32]) {
        assert_eq!(inputs.len(), self.plan.batch * self.plan.input.len(), "batch images");
        assert_eq!(labels.len(), self.plan.pairs(), "batch labels");
        self.gpu.write(&self.labels, 0, labels);
        if self.micros.len() == 1 {
            self.gpu.write(&self.inputs, 0, inputs);
        } else {
            self.host_inputs = inputs.to_vec();
        }
    }

    /// Uploads micro-batch `m`'s slice of the batch last given to `set_batch`.
    fn upload_micro(&self, m: &Micro) {
        if self.micros.len() == 1 {
            return;
        }
        let len = self.plan.input.len();
        let pairs = self.plan.pairs();
        let first = &self.host_inputs[m.start * len..(m.start + m.pairs) * len];
        let second = &self.host_inputs[(pairs + m.start) * len..(pairs + m.start + m.pairs) * len];
        self.gpu.write(&self.inputs, 0, &[first, second].concat());
    }

    fn write_step(&self, training: bool, loss_slot: usize, batch_start: usize, valid_pairs: usize) {
        for m in &self.micros {
            let uniform = StepUniform {
                step: self.step as u32,
                training: training as u32,
                loss_slot: loss_slot as u32,
                alpha: self.adam.alpha_at(self.step + 1, self.learning_rate()),
                batch_start: batch_start as u32,
                valid_pairs: valid_pairs as u32,
                batch_pairs: self.plan.pairs() as u32,
                micro_start: m.start as u32,
                micro_pairs: m.pairs as u32,
                _pad: [0; 3],
            };
            self.gpu.queue.write_buffer(&m.uniform, 0, bytemuck::bytes_of(&uniform));
        }
    }

    /// The learning rate of the next update.
    pub fn learning_rate(&self) -> f64 {
        self.adam.learning_rate * self.schedule.factor(self.step)
    }

    /// The slot of `losses` where training step `step` (0-based) left its loss.
    pub fn loss_slot(&self, step: u64) -> usize {
        (step % self.loss_capacity as u64) as usize
    }

    /// Submits one training step on the batch last uploaded with `set_batch`; returns without waiting
    /// (unless the step runs in micro-batches: each is uploaded once the GPU has the one before).
    pub fn train_step(&mut self) -> wgpu::SubmissionIndex {
        self.write_step(true, self.loss_slot(self.step), 0, self.plan.pairs());
        for m in &self.micros[..self.micros.len() - 1] {
            self.upload_micro(m);
            submit(self.gpu, &self.micro_dispatches(m, None));
        }
        let last = self.micros.last().unwrap();
        self.upload_micro(last);
        let dispatches: Vec<&Dispatch> = self.micro_dispatches(last, None).into_iter().chain(self.step_end()).collect();
        let index = submit(self.gpu, &dispatches);
        self.step += 1;
        index
    }

    /// Submits one training step on pairs `start..start + valid` of a dataset on the GPU, gathered by
    /// `gather` (from [`GpuTwin::gather_from`]); `valid` below the batch size pads a last, partial batch.
    pub fn train_step_gathered(&mut self, gather: &Gather, start: usize, valid: usize) -> wgpu::SubmissionIndex {
        assert!(valid >= 1 && valid <= self.plan.pairs(), "{valid} valid pairs in a batch of {}", self.plan.pairs());
        self.write_step(true, self.loss_slot(self.step), start, valid);
        let index = submit(self.gpu, &self.train_dispatches(Some(gather)));
        self.step += 1;
        index
    }

    /// Distances and mean loss of the batch last uploaded, with dropout off; waits for the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(&self) -> (Vec<f32>, f32) {
        pollster::block_on(self.evaluate_async())
    }

    /// `evaluate`, its read-backs awaited.
    pub async fn evaluate_async(&self) -> (Vec<f32>, f32) {
        self.write_step(false, self.loss_capacity, 0, self.plan.pairs());
        for m in &self.micros {
            self.upload_micro(m);
            submit(self.gpu, &m.forward.iter().collect::<Vec<_>>());
        }
        submit(self.gpu, &[&self.loss]);
        let distances = self.gpu.read_async(&self.distances, 0, self.plan.pairs());
        let loss = self.gpu.read_async(&self.losses, self.loss_capacity, 1);
        (distances.await, loss.await[0])
    }

    /// The launches that gather this twin's batches from `pairs` over `images`: built once per list.
    /// With `augment` (and its seed), training steps augment every image they gather.
    pub fn gather_from(&self, kernels: &Kernels, images: &DeviceImages, pairs: &DevicePairs, augment: Option<(&Augment, u32)>) -> Gather {
        assert_eq!(images.image_len, self.plan.input.len(), "image size");
        let whole = Region::whole;
        Gather(
            self.micros
                .iter()
                .map(|m| {
                    kernels.gather_pairs(
                        m.pairs,
                        self.plan.input,
                        augment,
                        whole(&m.uniform),
                        whole(&images.images),
                        whole(&pairs.pair_images),
                        whole(&pairs.pair_labels),
                        whole(&images.byte_values),
                        whole(&self.inputs),
                        whole(&self.labels),
                    )
                })
                .collect(),
        )
    }

    /// Losses of training steps `first..first + count`, which must still be in the ring of slots.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_losses(&self, first: u64, count: usize) -> Vec<f32> {
        pollster::block_on(self.fetch_losses(first, count))
    }

    /// `read_losses`, awaited.
    pub async fn fetch_losses(&self, first: u64, count: usize) -> Vec<f32> {
        assert!(count <= self.loss_capacity && first + count as u64 <= self.step, "losses {first}+{count} are gone");
        let start = self.loss_slot(first);
        let head = count.min(self.loss_capacity - start);
        let (front, back) = (self.gpu.read_async(&self.losses, start, head), self.gpu.read_async(&self.losses, 0, count - head));
        let mut losses = front.await;
        losses.extend(back.await);
        losses
    }

    /// The loss of training step `step` (0-based), if it is still in the ring of slots.
    #[cfg(not(target_arch = "wasm32"))]
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

    /// The layers' state (moving statistics), read back.
    pub fn fetch_state(&self) -> ReadBack {
        self.gpu.read_async(&self.state, 0, self.plan.state_len)
    }

    /// The weights, read back.
    pub fn fetch_params(&self) -> ReadBack {
        self.gpu.read_async(&self.params, 0, self.plan.param_len)
    }

    /// Adam's two moments, read back.
    pub fn fetch_adam(&self) -> (ReadBack, ReadBack) {
        (self.gpu.read_async(&self.adam_m, 0, self.plan.param_len), self.gpu.read_async(&self.adam_v, 0, self.plan.param_len))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_state(&self) -> Vec<f32> {
        pollster::block_on(self.fetch_state())
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_params(&self) -> Vec<f32> {
        pollster::block_on(self.fetch_params())
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_grads(&self) -> Vec<f32> {
        self.gpu.read(&self.grads, 0, self.plan.param_len)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_adam(&self) -> (Vec<f32>, Vec<f32>) {
        let (m, v) = self.fetch_adam();
        (pollster::block_on(m), pollster::block_on(v))
    }

    /// Whether layer `layer`'s output is kept (not inside a fused run).
    pub fn stores(&self, layer: usize) -> bool {
        self.activations[layer].size() >= 4 * self.plan.layers[layer].output_len as u64
    }

    /// The output of layer `layer` (0-based) for the last batch; not for the layers inside a fused
    /// run, nor when the step runs in micro-batches (the buffers hold one micro-batch's).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_activation(&self, layer: usize) -> Vec<f32> {
        assert!(self.stores(layer), "layer {layer}'s output for the whole batch is never stored");
        self.gpu.read(&self.activations[layer], 0, self.plan.layers[layer].output_len)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_distances(&self) -> Vec<f32> {
        self.gpu.read(&self.distances, 0, self.plan.pairs())
    }

    /// Every dispatch of one training step, in order (for timing them one by one), after `gather`'s.
    pub fn step_dispatches<'s>(&'s self, gather: Option<&'s Gather>) -> Vec<&'s Dispatch> {
        self.train_dispatches(gather)
    }

    /// Micro-batch `m`'s part of a training step: its gather, if any, its tower forward and, for the
    /// pair objective, its distances and backward.
    fn micro_dispatches<'s>(&'s self, m: &'s Micro, gather: Option<&'s Dispatch>) -> Vec<&'s Dispatch> {
        let gather = gather.into_iter();
        if self.batch_head.is_empty() {
            gather.chain(&m.forward).chain(&m.backward).collect()
        } else {
            gather.chain(&m.forward[..m.tower_len]).chain(&self.batch_head).chain(&self.batch_backward).chain(&m.backward).collect()
        }
    }

    /// What ends a step: the pair loss, the gradients' sums, Adam.
    fn step_end(&self) -> impl Iterator<Item = &Dispatch> {
        let loss = self.batch_head.is_empty().then_some(&self.loss);
        loss.into_iter().chain(&self.update)
    }

    /// A whole training step: each micro-batch's part, then the loss, the gradients' sums and Adam.
    fn train_dispatches<'s>(&'s self, gather: Option<&'s Gather>) -> Vec<&'s Dispatch> {
        let mut dispatches = Vec::new();
        for (i, m) in self.micros.iter().enumerate() {
            dispatches.extend(self.micro_dispatches(m, gather.map(|g| &g.0[i])));
        }
        dispatches.extend(self.step_end());
        dispatches
    }
}

/// The fused head laid out for a micro-batch's plan.
fn micro_fused(plan: &Plan, fuse: bool) -> crate::layers::conv_block::Conv2dMaxPoolGapDims {
    Fusion::of(plan, fuse).head.expect("the micro-batch's plan fuses as the batch's").0
}

/// f32s of layer `i`'s weight-gradient partial sums over the whole batch, if it has any: its own
/// launches', or the fused head's conv's.
fn partials_len(plan: &Plan, fusion: &Fusion, i: usize) -> Option<usize> {
    let len = if fusion.records[i] {
        plan.layers[i].op.partials_len(2, plan.batch)
    } else if let (Some((d, _)), 0) = (&fusion.head, i) {
        WeightChunks::of(&d.conv, 2, plan.batch).partials_len(2, d.conv.param_len())
    } else {
        0
    };
    (len > 0).then_some(len)
}

/// Every buffer one micro-batch of `pairs` needs that grows with it, by what it holds.
fn micro_buffers(plan: &Plan, fusion: &Fusion, pairs: usize) -> Vec<(String, usize)> {
    let micro = plan.with_batch(2 * pairs);
    let mut needs = vec![("the input images".to_string(), micro.batch * plan.input.len())];
    for (i, l) in micro.layers.iter().enumerate() {
        if fusion.stored[i] && !l.op.is_view() {
            needs.push((format!("layer {}'s output", i + 1), l.output_len));
            needs.push((format!("layer {}'s output gradient", i + 1), l.output_len));
        }
        if fusion.records[i] {
            needs.push((format!("layer {}'s gradient at its pre-activation", i + 1), l.op.aux_len()));
        }
        if let (Some(_), LayerOp::Conv2d(d)) = (&fusion.pools[i], &l.op) {
            needs.push((format!("layer {}'s pooling codes", i + 1), d.codes_len()));
        }
    }
    if fusion.head.is_some() {
        needs.push(("the fused block's pooling codes".to_string(), micro_fused(&micro, true).codes_len()));
    }
    needs
}

/// The pairs each micro-batch takes: the whole batch when everything fits what the adapter binds at
/// once and the memory budget, else the largest multiple of the chunks' images that does.
fn micro_size(gpu: &Gpu, plan: &Plan, fusion: &Fusion, options: &TwinOptions) -> Result<usize, TooLarge> {
    let limit = gpu.max_binding_bytes();
    let pairs = plan.pairs();
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    // What does not shrink with micro-batches: the parameters and Adam's moments, the state, the
    // partial sums, the whole batch's labels and distances, a batch objective's matrices.
    let mut fixed = vec![("the parameters (and each of their gradients and Adam moments)".to_string(), plan.param_len)];
    for i in 0..plan.layers.len() {
        if let Some(len) = partials_len(plan, fusion, i) {
            fixed.push((format!("layer {}'s weight-gradient partial sums", i + 1), len));
        }
    }
    if options.objective != Objective::Pairs {
        fixed.push(("the batch objective's distances between every two rows".to_string(), plan.batch * plan.batch));
    }
    for (what, len) in &fixed {
        if *len as u64 * 4 > limit {
            return Err(TooLarge(format!(
                "a batch of {pairs} pairs needs {:.0} MiB for {what}, more than this adapter binds at once ({:.0} MiB); use a smaller --batch-size",
                mib(*len as u64 * 4),
                mib(limit)
            )));
        }
    }
    let fixed_bytes = 4 * (fixed.iter().map(|(_, l)| *l as u64).sum::<u64>() + 4 * plan.param_len as u64 + plan.state_len as u64 + 4 * pairs as u64);
    let budget = options.memory_budget.unwrap_or(u64::MAX);
    let too_big = |m: usize| {
        let needs = micro_buffers(plan, fusion, m);
        let largest = needs.iter().max_by_key(|(_, l)| *l).cloned().unwrap();
        let total = fixed_bytes + needs.iter().map(|(_, l)| 4 * *l as u64).sum::<u64>();
        if largest.1 as u64 * 4 > limit {
            Some(format!("{:.0} MiB for {}, more than this adapter binds at once ({:.0} MiB)", mib(largest.1 as u64 * 4), largest.0, mib(limit)))
        } else if total > budget {
            let (total, budget) = two_sizes(total, budget);
            Some(format!("{total} in all, more than the memory budget ({budget})"))
        } else {
            None
        }
    };
    let wanted = options.micro_pairs.unwrap_or(pairs).clamp(1, pairs);
    let Some(why) = too_big(wanted) else {
        return Ok(wanted);
    };
    if options.micro_pairs.is_some() || options.objective != Objective::Pairs {
        let whole = if options.objective != Objective::Pairs { " (a batch objective needs every embedding of the batch at once, so it does not run in micro-batches)" } else { "" };
        return Err(TooLarge(format!("a batch of {wanted} pairs needs {why}{whole}; use a smaller --batch-size")));
    }
    if let Some(why) = too_big(1) {
        let image = format!("{}x{}x{}", plan.input.h, plan.input.w, plan.input.c);
        return Err(TooLarge(format!("one pair of {image} images through this tower needs {why}")));
    }
    // The largest micro-batch that fits: between one pair (fits) and `wanted` (does not).
    let (mut fits, mut fails) = (1, wanted);
    while fails - fits > 1 {
        let mid = (fits + fails) / 2;
        if too_big(mid).is_none() {
            fits = mid;
        } else {
            fails = mid;
        }
    }
    Ok(fits)
}

/// Two byte counts in MiB with as many decimals as it takes to tell them apart (bytes where even three
/// do not), so that "needs X, more than Y" never reads as X = Y.
pub fn two_sizes(a: u64, b: u64) -> (String, String) {
    let mib = |bytes: u64, decimals: usize| format!("{:.*} MiB", decimals, bytes as f64 / (1u64 << 20) as f64);
    (0..=3)
        .map(|d| (mib(a, d), mib(b, d)))
        .find(|(x, y)| x != y)
        .unwrap_or_else(|| (format!("{a} bytes"), format!("{b} bytes")))
}
