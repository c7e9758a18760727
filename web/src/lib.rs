//! The page's host: gpu-siamese's core on the browser's WebGPU, exported to JavaScript through
//! wasm-bindgen. Everything here is glue: bytes in (files the user dropped, data the page fetched),
//! JSON and numbers out, every read-back awaited. The page (web/page/) calls it; the browser tests
//! (tests/browser_page.rs) call it through the same page.

use gpu_siamese::config::TrainConfig;
use gpu_siamese::data::{decode_picture, image_set, parse_idx_prefix, ImageSet, Polarity};
use gpu_siamese::gpu::{Gpu, Kernels};
use gpu_siamese::tower::GpuTower;
use gpu_siamese::trained::Trained;
use gpu_siamese::trainer::Trainer;
use std::path::Path;
use wasm_bindgen::prelude::*;

fn js(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// The adapter and its kernels, opened once for the page's lifetime (every model and run borrows them).
#[wasm_bindgen]
pub struct Engine {
    gpu: &'static Gpu,
    kernels: &'static Kernels,
}

/// Opens the browser's WebGPU adapter; the error says what is missing.
#[wasm_bindgen]
pub async fn open_engine() -> Result<Engine, JsValue> {
    std::panic::set_hook(Box::new(|info| web_log(&format!("panic: {info}"))));
    let has_webgpu = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()))
        .is_ok_and(|g| !g.is_undefined());
    if !has_webgpu {
        return Err(js("this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome, Edge or Firefox, served over https or from localhost; Chromium on Linux needs --enable-unsafe-webgpu"));
    }
    let gpu = Gpu::in_browser().await.map_err(|e| {
        js(match e {
            gpu_siamese::gpu::GpuError::NoAdapter => "WebGPU is there but offers no adapter: the GPU may be blocklisted or WebGPU disabled (chrome://gpu says which); Chromium on Linux needs --enable-unsafe-webgpu".to_string(),
            other => other.to_string(),
        })
    })?;
    let gpu: &'static Gpu = Box::leak(Box::new(gpu));
    let kernels: &'static Kernels = Box::leak(Box::new(Kernels::new(gpu)));
    Ok(Engine { gpu, kernels })
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_log(message: &str);
}

#[wasm_bindgen]
impl Engine {
    /// The adapter, as `gpu-siamese adapters` describes one.
    pub fn adapter(&self) -> String {
        self.gpu.describe()
    }

    /// The limits that matter to the twin, as JSON.
    pub fn limits(&self) -> String {
        let l = &self.gpu.limits;
        serde_json::json!({
            "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
            "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
            "max_buffer_size": l.max_buffer_size,
            "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
            "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
            "subgroups": self.gpu.subgroups,
        })
        .to_string()
    }

    /// Every layer kind against its CPU reference on awkward shapes (see the library's layer_check):
    /// JSON, a list of {what, relative_error}, and the tolerance.
    pub async fn check_layers(&self, seed: u64) -> Result<String, JsValue> {
        let found = gpu_siamese::layer_check::every_layer_kind(self.gpu, self.kernels, seed).await.map_err(js)?;
        Ok(serde_json::json!({"tolerance": gpu_siamese::layer_check::TOLERANCE, "comparisons": found}).to_string())
    }

    /// A checkpoint (a .safetensors file's bytes, `name` for messages) made ready to run.
    pub fn load_model(&self, bytes: &[u8], name: &str) -> Result<Model, JsValue> {
        let trained = Trained::from_bytes(bytes, name).map_err(js)?;
        let tower = trained.tower(self.gpu, self.kernels, None).map_err(js)?;
        Ok(Model { gpu: self.gpu, trained, tower })
    }

    /// A training run of the tutorial's tower (or `arch`) on IDX data the page fetched (the four
    /// Fashion-MNIST files' bytes, gzip or not), the first `train_limit` and `test_limit` images of each
    /// split (0: all).
    pub fn train(
        &self,
        train_images: &[u8],
        train_labels: &[u8],
        test_images: &[u8],
        test_labels: &[u8],
        options: &str,
    ) -> Result<Training, JsValue> {
        let options: TrainOptions = serde_json::from_str(options).map_err(|e| js(format!("training options: {e}")))?;
        let split = |images: &[u8], labels: &[u8], split: &str, limit: usize| -> Result<ImageSet, JsValue> {
            let limit = (limit > 0).then_some(limit);
            let (ip, lp) = (format!("{split}-images-idx3-ubyte"), format!("{split}-labels-idx1-ubyte"));
            let images = parse_idx_prefix(std::io::Cursor::new(images), Path::new(&ip), limit).map_err(js)?;
            let labels = parse_idx_prefix(std::io::Cursor::new(labels), Path::new(&lp), limit).map_err(js)?;
            image_set(images, Path::new(&ip), labels, Path::new(&lp)).map_err(js)
        };
        let sets = Box::new([split(train_images, train_labels, "train", options.train_limit)?, split(test_images, test_labels, "t10k", options.test_limit)?]);
        let sets = Box::into_raw(sets);
        // SAFETY: the sets live on the heap until Training's drop, which drops the trainer (their only
        // borrower) first; the 'static lifetime never leaves Training.
        let [train, test]: &'static [ImageSet; 2] = unsafe { &*sets };
        let mut config = TrainConfig::tutorial(options.epochs, options.seed);
        config.batch_size = options.batch_size;
        config.learning_rate = options.learning_rate;
        if let Some(arch) = options.arch {
            config.arch = gpu_siamese::run::tower(&arch, None).map_err(js)?.to_string();
        }
        config.train_limit = (options.train_limit > 0).then_some(options.train_limit);
        config.test_limit = (options.test_limit > 0).then_some(options.test_limit);
        config.class_names = (0..train.classes().max(test.classes())).map(|c| c.to_string()).collect();
        match Trainer::new(self.gpu, self.kernels, config, train, test) {
            Ok(trainer) => Ok(Training { trainer: std::mem::ManuallyDrop::new(trainer), sets }),
            Err(e) => {
                // SAFETY: nothing borrows the sets any more.
                drop(unsafe { Box::from_raw(sets) });
                Err(js(e))
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct TrainOptions {
    epochs: usize,
    seed: u64,
    batch_size: usize,
    learning_rate: f64,
    #[serde(default)]
    arch: Option<String>,
    #[serde(default)]
    train_limit: usize,
    #[serde(default)]
    test_limit: usize,
}

/// A trained model on the GPU: pictures in, embeddings and distances out.
#[wasm_bindgen]
pub struct Model {
    gpu: &'static Gpu,
    trained: Trained,
    tower: GpuTower<'static>,
}

#[wasm_bindgen]
impl Model {
    /// Its tower, input, embedding width and calibrated threshold, as JSON.
    pub fn info(&self) -> String {
        let c = &self.trained.checkpoint;
        let input = self.trained.input();
        serde_json::json!({
            "arch": c.arch,
            "input": [input.h, input.w, input.c],
            "embedding_dim": self.tower.dim(),
            "threshold": self.trained.threshold(),
            "epoch": c.progress.epoch,
            "val_acc": c.progress.val_acc,
            "parameters": self.trained.plan.trainable_params(),
        })
        .to_string()
    }

    /// A picture file's bytes as the model sees it: its input size and channels, in HWC bytes, made to
    /// match its training pictures' background (inverted if the checkpoint says so).
    pub fn prepare(&self, picture: &[u8], name: &str) -> Result<Vec<u8>, JsValue> {
        let mut input = decode_picture(picture, self.trained.input(), false).map_err(|e| js(format!("{name}: {e}")))?;
        self.trained.match_polarity_noted(&mut input, Polarity::Auto);
        Ok(input)
    }

    /// Embeddings of prepared pictures (their bytes one after another), [count, dim].
    pub async fn embed(&self, inputs: &[u8]) -> Result<Vec<f32>, JsValue> {
        let embeddings = self.tower.embed_on_gpu_with(inputs, |_| {}).map_err(js)?;
        Ok(embeddings.fetch(self.gpu).await)
    }

    /// The distances of pairs of prepared pictures: `rows` as (a, b) indices, flattened.
    pub async fn distances(&self, inputs: &[u8], rows: &[u32]) -> Result<Vec<f32>, JsValue> {
        let embeddings = self.tower.embed_on_gpu_with(inputs, |_| {}).map_err(js)?;
        let pairs: Vec<(u32, u32)> = rows.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        Ok(self.tower.pair_distances_async(&embeddings, &pairs).map_err(js)?.await)
    }
}

/// A training run in the tab, stepped by the page. It owns its data (a run's images, 47 MB for the
/// whole of Fashion-MNIST), freed with it when the page calls free().
#[wasm_bindgen]
pub struct Training {
    trainer: std::mem::ManuallyDrop<Trainer<'static>>,
    sets: *mut [ImageSet; 2],
}

impl Drop for Training {
    fn drop(&mut self) {
        // SAFETY: the trainer, which borrows the sets, goes first; the sets were made by Box::into_raw.
        unsafe {
            std::mem::ManuallyDrop::drop(&mut self.trainer);
            drop(Box::from_raw(self.sets));
        }
    }
}

#[wasm_bindgen]
impl Training {
    /// The run's figures before it starts, as JSON.
    pub fn info(&self) -> String {
        let t = &self.trainer;
        serde_json::json!({
            "arch": t.plan.spec.to_string(),
            "parameters": t.plan.trainable_params(),
            "steps_per_epoch": t.steps_per_epoch,
            "pairs_per_epoch": t.pairs_per_epoch(),
            "batch_size": t.config.batch_size,
            "epochs": t.config.epochs,
        })
        .to_string()
    }

    /// Submits up to `most` steps of the current epoch; returns how many.
    pub fn submit(&mut self, most: usize) -> usize {
        self.trainer.submit_steps(most)
    }

    pub fn epoch(&self) -> usize {
        self.trainer.epoch
    }

    pub fn steps_done(&self) -> usize {
        self.trainer.steps_done()
    }

    pub fn epoch_submitted(&self) -> bool {
        self.trainer.epoch_submitted()
    }

    /// The losses of the steps submitted since the last call (waited for) and the epoch's running
    /// loss, as JSON.
    pub async fn losses(&mut self) -> String {
        let (losses, running) = self.trainer.new_losses().await;
        serde_json::json!({"losses": losses, "running": running}).to_string()
    }

    /// Ends the epoch: loss, val_loss, val_acc and the calibrated threshold, as JSON.
    pub async fn validate(&mut self) -> Result<String, JsValue> {
        let scores = self.trainer.validate().await.map_err(js)?;
        Ok(serde_json::to_string(&scores).map_err(js)?)
    }

    /// The weights as they are now.
    pub async fn params(&self) -> Vec<f32> {
        self.trainer.twin.fetch_params().await
    }

    /// The run as a checkpoint file's bytes (`gpu-siamese evaluate` loads it).
    pub async fn checkpoint(&self) -> Vec<u8> {
        self.trainer.checkpoint().await
    }
}
