//! Datasets on the GPU: images kept as bytes, lists of pairs over them, and the feed that gives a twin
//! its batches, resident or streamed.

use crate::data::{Augment, Pair};
use crate::gpu::{Gpu, Kernels};
use crate::reference::byte_value;
use crate::twin::{Gather, GpuTwin, TooLarge};

/// Images resident on the GPU as bytes (four to a u32), with the byte-to-f32 table; uploaded once.
pub struct DeviceImages {
    pub images: wgpu::Buffer,
    pub image_len: usize,
    pub byte_values: wgpu::Buffer,
}

impl DeviceImages {
    /// Uploads `pixels` ([count, image_len] bytes).
    pub fn new(gpu: &Gpu, pixels: &[u8], image_len: usize) -> Result<DeviceImages, TooLarge> {
        let limit = gpu.max_binding_bytes();
        if pixels.len() as u64 > limit {
            return Err(TooLarge(format!(
                "the images take {:.0} MiB, more than this adapter binds at once ({:.0} MiB); use --train-limit",
                pixels.len() as f64 / 1048576.0,
                limit as f64 / 1048576.0
            )));
        }
        let table: Vec<f32> = (0..=255u8).map(byte_value::<f32>).collect();
        Ok(DeviceImages {
            images: gpu.storage_from_bytes("images", pixels),
            image_len,
            byte_values: gpu.storage_from("byte values", &table),
        })
    }
}

/// A list of pairs on the GPU, over the images of a [`DeviceImages`]; the host rewrites it when it
/// reshuffles (once per epoch).
pub struct DevicePairs {
    pub pair_images: wgpu::Buffer,
    pub pair_labels: wgpu::Buffer,
    pub capacity: usize,
    pub len: usize,
}

impl DevicePairs {
    pub fn new(gpu: &Gpu, pairs: &[Pair]) -> DevicePairs {
        let mut list = DevicePairs::with_capacity(gpu, pairs.len());
        list.set(gpu, pairs);
        list
    }

    /// An empty list with room for `capacity` pairs.
    pub fn with_capacity(gpu: &Gpu, capacity: usize) -> DevicePairs {
        DevicePairs {
            pair_images: gpu.storage("pair images", 2 * capacity.max(1)),
            pair_labels: gpu.storage("pair labels", capacity.max(1)),
            capacity,
            len: 0,
        }
    }

    /// Replaces the list (written in the queue's order, before the next submission runs).
    pub fn set(&mut self, gpu: &Gpu, pairs: &[Pair]) {
        assert!(pairs.len() <= self.capacity, "{} pairs, room for {}", pairs.len(), self.capacity);
        let images: Vec<u32> = pairs.iter().flat_map(|p| [p.a, p.b]).collect();
        let labels: Vec<f32> = pairs.iter().map(|p| p.label).collect();
        gpu.queue.write_buffer(&self.pair_images, 0, bytemuck::cast_slice(&images));
        gpu.write(&self.pair_labels, 0, &labels);
        self.len = pairs.len();
    }
}

/// A list of pairs over a set of images, fed to a twin batch by batch. The images are resident on the GPU,
/// uploaded once, when the adapter can bind them all; otherwise (or when asked) they are streamed: each
/// batch's images are uploaded, as bytes, into a buffer of one batch's size just before its step, in the
/// queue's order, so the host never waits for the GPU. Both gather the same values for the same step,
/// so a streamed run gives the same weights, bit for bit.
pub struct PairFeed<'p> {
    gather: Gather,
    list: DevicePairs,
    mode: FeedMode<'p>,
}

enum FeedMode<'p> {
    Resident(DeviceImages),
    Streamed {
        pixels: &'p [u8],
        images: DeviceImages,
        /// The host's copy of the list (the GPU holds one batch of it at a time).
        pairs: Vec<Pair>,
    },
}

impl<'p> PairFeed<'p> {
    /// A feed of up to `capacity` pairs over `pixels` (images of the twin's input size, one after
    /// another) for `twin`, augmenting training steps when `augment` is given.
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        twin: &GpuTwin,
        pixels: &'p [u8],
        capacity: usize,
        augment: Option<(&Augment, u32)>,
        stream: bool,
    ) -> PairFeed<'p> {
        let image_len = twin.plan.input.len();
        let batch = twin.plan.pairs();
        let fits = pixels.len() as u64 <= gpu.max_binding_bytes();
        let mode = if fits && !stream {
            FeedMode::Resident(DeviceImages::new(gpu, pixels, image_len).expect("checked against the adapter's limit"))
        } else {
            let staging = DeviceImages::new(gpu, &vec![0; 2 * batch * image_len], image_len).expect("one batch of images fits");
            FeedMode::Streamed { pixels, images: staging, pairs: vec![] }
        };
        let list = DevicePairs::with_capacity(gpu, if matches!(mode, FeedMode::Resident(_)) { capacity } else { batch });
        let images = match &mode {
            FeedMode::Resident(images) | FeedMode::Streamed { images, .. } => images,
        };
        PairFeed { gather: twin.gather_from(kernels, images, &list, augment), list, mode }
    }

    pub fn is_streamed(&self) -> bool {
        matches!(self.mode, FeedMode::Streamed { .. })
    }

    /// Replaces the list of pairs (an epoch's order).
    pub fn set_pairs(&mut self, gpu: &Gpu, pairs: &[Pair]) {
        match &mut self.mode {
            FeedMode::Resident(_) => self.list.set(gpu, pairs),
            FeedMode::Streamed { pairs: host, .. } => *host = pairs.to_vec(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.mode {
            FeedMode::Resident(_) => self.list.len,
            FeedMode::Streamed { pairs, .. } => pairs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes pairs `start..start + valid` the GPU's to gather; returns where they start in its list.
    fn stage(&mut self, gpu: &Gpu, start: usize, valid: usize) -> usize {
        let FeedMode::Streamed { pixels, images, pairs } = &self.mode else {
            return start;
        };
        // The batch's images, a pair's two side by side, and the pairs over them.
        let image_len = images.image_len;
        let batch = &pairs[start..start + valid];
        let mut bytes: Vec<u8> = batch
            .iter()
            .flat_map(|p| [p.a, p.b])
            .flat_map(|i| pixels[i as usize * image_len..(i as usize + 1) * image_len].iter().copied())
            .collect();
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        gpu.queue.write_buffer(&images.images, 0, &bytes);
        let local: Vec<Pair> = batch.iter().enumerate().map(|(i, p)| Pair { a: 2 * i as u32, b: 2 * i as u32 + 1, label: p.label }).collect();
        self.list.set(gpu, &local);
        0
    }

    /// Submits a training step on pairs `start..start + valid`.
    pub fn train_step(&mut self, gpu: &Gpu, twin: &mut GpuTwin, start: usize, valid: usize) {
        let at = self.stage(gpu, start, valid);
        twin.train_step_gathered(&self.gather, at, valid);
    }
}
