//! A tower on the GPU for inference: embeddings of images and distances between pairs of them, with no
//! gradients and no optimiser state. Validation, `evaluate`, `compare`, `embed`, `report` and `search`
//! use it. Every image is embedded once, however many pairs it is in, and each forward pass takes as
//! many images as the adapter binds comfortably (or as asked), so a model that trained can always be
//! used, whatever its input size.
//!
//! It runs the training twin's forward kernels with dropout off, so an image's embedding, and a pair's
//! distance, are the same bits as the twin's.

use crate::gpu::{submit, Dispatch, Gpu, Kernels, ReadBack, Region, StepUniform};
use crate::layers::conv2d::PoolEpilogue;
use crate::layers::{Fusion, Io, LayerOp};
use crate::model::{InputShape, Plan, TowerSpec};
use crate::reference::byte_value;
use crate::twin::TooLarge;

/// Images per forward pass unless asked otherwise: enough to keep an adapter busy, small enough to
/// keep the activations of most towers well inside what it binds.
pub const DEFAULT_BATCH: usize = 256;
/// The most memory the tower's buffers take together unless asked otherwise.
const MEMORY_BUDGET: u64 = 1 << 30;

/// The weights a tower runs with: uploaded from the host, or a training twin's own buffers (shared,
/// so validation sees the weights as they are after the last step).
pub enum Weights<'w> {
    Host { params: &'w [f32], state: &'w [f32] },
    Device { params: wgpu::Buffer, state: wgpu::Buffer },
}

/// Embeddings kept on the GPU, [count, dim].
pub struct DeviceEmbeddings {
    pub buffer: wgpu::Buffer,
    pub count: usize,
    pub dim: usize,
}

pub struct GpuTower<'a> {
    gpu: &'a Gpu,
    kernels: &'a Kernels,
    /// The tower laid out for one forward pass: `plan.batch` images.
    pub plan: Plan,
    inputs: wgpu::Buffer,
    embeddings: wgpu::Buffer,
    forward: Vec<Dispatch>,
    _buffers: Vec<wgpu::Buffer>,
}

impl<'a> GpuTower<'a> {
    /// The tower `like` lays out (its spec, input and arithmetic; not its batch), in passes of `batch`
    /// images (or as many as fit, up to [`DEFAULT_BATCH`]).
    pub fn new(gpu: &'a Gpu, kernels: &'a Kernels, like: &Plan, weights: Weights, batch: Option<usize>) -> Result<GpuTower<'a>, TooLarge> {
        let mut plan = fitting_plan(gpu, &like.spec, like.input, batch)?;
        plan.exact = like.exact;
        let (params, state) = match weights {
            Weights::Host { params, state } => {
                assert_eq!((params.len(), state.len()), (plan.param_len, plan.state_len), "weights for the tower");
                (gpu.storage_from("params", params), gpu.storage_from("state", state))
            }
            Weights::Device { params, state } => (params, state),
        };
        let inputs = gpu.storage("inputs", plan.batch * plan.input.len());
        // Dropout passes its input through at inference: a dropout layer's output is its input's
        // buffer, unless a conv's pooling epilogue writes it.
        let fusion = Fusion::of(&plan, true);
        let mut outputs: Vec<wgpu::Buffer> = Vec::new();
        let mut buffers = Vec::new();
        for (i, layer) in plan.layers.iter().enumerate() {
            let previous = || if i == 0 { inputs.clone() } else { outputs[i - 1].clone() };
            outputs.push(match layer.op {
                _ if !fusion.stored[i] => gpu.storage("unused", 1),
                LayerOp::Dropout(_) if fusion.records[i] => previous(),
                _ if layer.op.is_view() => previous(),
                _ => gpu.storage("activation", layer.output_len),
            });
        }
        let step_uniform = gpu.uniform_from("step", &StepUniform::default());
        let step = Region::whole(&step_uniform);
        let unused = gpu.storage("unused", 1);
        let region = |range: &Option<std::ops::Range<usize>>, buffer: &wgpu::Buffer| range.as_ref().map(|r| Region::new(buffer, r.start, r.len()));
        let mut forward = Vec::new();
        if let Some((d, layers)) = &fusion.head {
            let codes = gpu.storage("pooling codes", d.codes_len());
            let conv = region(&plan.layers[0].params, &params).unwrap();
            forward.push(kernels.conv2d_maxpool_gap_forward(d, step.clone(), Region::whole(&inputs), conv, Region::whole(&outputs[layers - 1]), Region::whole(&codes)));
            buffers.push(codes);
        }
        for (i, layer) in plan.layers.iter().enumerate().filter(|&(i, _)| fusion.records[i]) {
            if matches!(layer.op, LayerOp::Dropout(_)) {
                continue;
            }
            let pool = match (&layer.op, fusion.pools[i]) {
                (LayerOp::Conv2d(d), Some((dropout, _))) => {
                    let codes = gpu.storage("pooling codes", d.codes_len());
                    let pool = PoolEpilogue { dropout, codes: Region::whole(&codes) };
                    buffers.push(codes);
                    Some(pool)
                }
                _ => None,
            };
            let io = Io {
                step: step.clone(),
                x: Region::whole(if i == 0 { &inputs } else { &outputs[i - 1] }),
                y: Region::whole(&outputs[fusion.writes(i)]),
                dy: Region::whole(&unused),
                dx: None,
                params: region(&layer.params, &params),
                grads: None,
                state: region(&layer.state, &state),
                aux: Some(match layer.op.inference_aux_len() {
                    0 => Region::whole(&unused),
                    len => {
                        let aux = gpu.storage("inference statistics", len);
                        let region = Region::whole(&aux);
                        buffers.push(aux);
                        region
                    }
                }),
                partials: None,
                branches: 1,
                whole_batch: plan.batch,
                first_pair: 0,
                exact: plan.exact,
                pool,
            };
            forward.extend(layer.op.record_forward(kernels, &io));
        }
        let embeddings = outputs.last().unwrap().clone();
        buffers.extend(outputs);
        buffers.extend([params, state, step_uniform, unused]);
        Ok(GpuTower { gpu, kernels, plan, inputs, embeddings, forward, _buffers: buffers })
    }

    pub fn dim(&self) -> usize {
        self.plan.embedding_dim
    }

    /// The embeddings of `images` (bytes, one input after another), kept on the GPU; a large set shows
    /// its progress on a terminal.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed_on_gpu(&self, images: &[u8]) -> Result<DeviceEmbeddings, TooLarge> {
        let count = images.len() / self.plan.input.len();
        // Every 8 batches the GPU is waited for, so the bar shows what is done, not what is queued.
        let bar = if count.div_ceil(self.plan.batch) >= 32 {
            let bar = indicatif::ProgressBar::new(count as u64);
            bar.set_style(indicatif::ProgressStyle::with_template("embedding {pos}/{len} pictures {wide_bar} {eta}").expect("a valid template"));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let embeddings = self.embed_on_gpu_with(images, |done| {
            self.gpu.wait();
            bar.set_position(done as u64);
        });
        bar.finish_and_clear();
        embeddings
    }

    /// The embeddings of `images` kept on the GPU, `progress` told how many are submitted every 8
    /// batches.
    pub fn embed_on_gpu_with(&self, images: &[u8], mut progress: impl FnMut(usize)) -> Result<DeviceEmbeddings, TooLarge> {
        let (len, batch, dim) = (self.plan.input.len(), self.plan.batch, self.dim());
        assert_eq!(images.len() % len, 0, "whole images");
        let count = images.len() / len;
        let bytes = (count * dim * 4) as u64;
        if bytes > self.gpu.limits.max_buffer_size {
            return Err(TooLarge(format!(
                "the embeddings of {count} images take {:.0} MiB, more than this adapter's largest buffer ({:.0} MiB)",
                bytes as f64 / 1048576.0,
                self.gpu.limits.max_buffer_size as f64 / 1048576.0
            )));
        }
        let out = self.gpu.storage("embeddings", count * dim);
        let mut inputs = vec![0.0f32; batch * len];
        for (b, start) in (0..count).step_by(batch).enumerate() {
            if b % 8 == 7 {
                progress(start);
            }
            let n = batch.min(count - start);
            for (x, &b) in inputs.iter_mut().zip(&images[start * len..(start + n) * len]) {
                *x = byte_value(b);
            }
            inputs[n * len..].fill(0.0);
            self.gpu.write(&self.inputs, 0, &inputs);
            let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
            crate::gpu::record(&mut encoder, &self.forward.iter().collect::<Vec<_>>());
            encoder.copy_buffer_to_buffer(&self.embeddings, 0, &out, (start * dim * 4) as u64, (n * dim * 4) as u64);
            self.gpu.queue.submit([encoder.finish()]);
        }
        Ok(DeviceEmbeddings { buffer: out, count, dim })
    }

    /// The embeddings of `images` (bytes, one input after another), [count, dim].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed(&self, images: &[u8]) -> Result<Vec<f32>, TooLarge> {
        let embeddings = self.embed_on_gpu(images)?;
        Ok(embeddings.read(self.gpu))
    }

    /// The distance between rows a and b of `embeddings` for each pair (a, b), as the twin's distance
    /// kernel computes it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn pair_distances(&self, embeddings: &DeviceEmbeddings, pairs: &[(u32, u32)]) -> Result<Vec<f32>, TooLarge> {
        Ok(pollster::block_on(self.pair_distances_async(embeddings, pairs)?))
    }

    /// `pair_distances`, its read-back to await.
    pub fn pair_distances_async(&self, embeddings: &DeviceEmbeddings, pairs: &[(u32, u32)]) -> Result<ReadBack, TooLarge> {
        let bytes = (embeddings.count * embeddings.dim * 4) as u64;
        if bytes > self.gpu.max_binding_bytes() {
            return Err(TooLarge(format!(
                "{} embeddings take {:.0} MiB, more than this adapter binds at once ({:.0} MiB)",
                embeddings.count,
                bytes as f64 / 1048576.0,
                self.gpu.max_binding_bytes() as f64 / 1048576.0
            )));
        }
        assert!(pairs.iter().all(|&(a, b)| (a as usize) < embeddings.count && (b as usize) < embeddings.count), "pairs within the embeddings");
        let rows: Vec<u32> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        let rows = self.gpu.storage_from_bytes("pair rows", bytemuck::cast_slice(&rows));
        let dist = self.gpu.storage("distances", pairs.len());
        let d = self.kernels.pair_distance(pairs.len(), embeddings.dim, Region::whole(&embeddings.buffer), Region::whole(&rows), Region::whole(&dist));
        submit(self.gpu, &[&d]);
        Ok(self.gpu.read_async(&dist, 0, pairs.len()))
    }

    /// The distances of `pairs` (indices into `images`, bytes one input after another): each image
    /// embedded once, each pair's distance from its two embeddings.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn distances(&self, images: &[u8], pairs: &[(u32, u32)]) -> Result<Vec<f32>, TooLarge> {
        let embeddings = self.embed_on_gpu(images)?;
        self.pair_distances(&embeddings, pairs)
    }
}

impl DeviceEmbeddings {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, gpu: &Gpu) -> Vec<f32> {
        pollster::block_on(self.fetch(gpu))
    }

    /// The embeddings, [count, dim], read back.
    pub fn fetch(&self, gpu: &Gpu) -> ReadBack {
        gpu.read_async(&self.buffer, 0, self.count * self.dim)
    }
}

/// The tower laid out for the largest even batch, up to `batch` (or [`DEFAULT_BATCH`]), whose every
/// buffer the adapter binds and whose buffers together stay within the memory budget.
fn fitting_plan(gpu: &Gpu, spec: &TowerSpec, input: InputShape, batch: Option<usize>) -> Result<Plan, TooLarge> {
    let wanted = batch.unwrap_or(DEFAULT_BATCH).max(2).div_ceil(2) * 2;
    let one = Plan::new(spec, input, 2, 0).map_err(|e| TooLarge(e.to_string()))?;
    if one.param_len as u64 * 4 > gpu.max_binding_bytes() {
        return Err(TooLarge(format!(
            "the tower's {} parameters take {:.0} MiB, more than this adapter binds at once ({:.0} MiB)",
            one.trainable_params(),
            one.param_len as f64 * 4.0 / 1048576.0,
            gpu.max_binding_bytes() as f64 / 1048576.0
        )));
    }
    let fits = |plan: &Plan| {
        let lens = std::iter::once(plan.batch * plan.input.len()).chain(plan.layers.iter().map(|l| l.output_len));
        let largest = lens.clone().max().unwrap_or(0) as u64 * 4;
        let total = lens.map(|l| l as u64 * 4).sum::<u64>();
        largest <= gpu.max_binding_bytes() && (batch.is_some() || total <= MEMORY_BUDGET)
    };
    let mut size = wanted;
    loop {
        let plan = Plan::new(spec, input, size, 0).map_err(|e| TooLarge(e.to_string()))?;
        if fits(&plan) {
            return Ok(plan);
        }
        if size == 2 {
            let largest = plan.layers.iter().map(|l| l.output_len).max().unwrap_or(0).max(plan.batch * plan.input.len());
            return Err(TooLarge(format!(
                "one {}x{}x{} image through this tower needs {:.0} MiB for its largest activation, more than this adapter binds at once ({:.0} MiB)",
                input.h,
                input.w,
                input.c,
                largest as f64 * 2.0 / 1048576.0,
                gpu.max_binding_bytes() as f64 / 1048576.0
            )));
        }
        size = (size / 2).div_ceil(2) * 2;
    }
}
