//! Choosing the convolution engine's variant for each layer shape on the adapter at hand, by measuring
//! them: the first time a shape is met on an adapter, every candidate (way of sharing loads, tile
//! shape) is run a few times on the layer's own sizes, and the fastest kept, in memory and in a cache
//! file per adapter and driver (`$XDG_CACHE_HOME/gpu-siamese/tuning.json`). This is how one binary is
//! fast both on a CPU adapter (subgroup shuffles, no workgroup memory) and on a real GPU (workgroup
//! memory). Every variant adds each output's terms in the same order, so the choice never changes a
//! result: the tuner checks each candidate's bits against the default's and drops one that differs
//! (an adapter whose subgroups are not runs of consecutive invocations, say).

use super::{Gpu, Kernels};
#[cfg(not(target_arch = "wasm32"))]
use super::{record, Dispatch, Region};
#[cfg(not(target_arch = "wasm32"))]
use crate::layers::conv2d::{PoolEpilogue, WeightChunks};
use crate::layers::conv2d::{Conv2dDims, Product, Share, Variant};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The cache: per adapter (name, backend, driver), per layer shape and product, the variant chosen.
type Cache = BTreeMap<String, BTreeMap<String, Variant>>;

/// Where measured choices are kept between runs: $XDG_CACHE_HOME/gpu-siamese/tuning.json, else
/// ~/.cache/gpu-siamese/tuning.json.
pub fn cache_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("gpu-siamese").join("tuning.json"))
}

/// What identifies an adapter's behaviour and the kernels measured on it: the program's version and a
/// fingerprint of the engine's shaders (a choice measured on other kernels may no longer be the
/// fastest), the adapter's name, backend, driver, and whether kernels may use subgroups on it.
pub fn adapter_key(gpu: &Gpu) -> String {
    let i = &gpu.info;
    format!(
        "gpu-siamese {} engine {:016x} | {} | {:?} | {} {} | subgroups {}",
        env!("CARGO_PKG_VERSION"),
        engine_fingerprint(),
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        gpu.subgroups
    )
}

/// FNV-1a over the prelude and every convolution-engine module's source: stable across builds and
/// toolchains, changed by any edit to the kernels the tuner chooses between.
fn engine_fingerprint() -> u64 {
    let mut sources: Vec<String> = super::all_kernels().into_iter().filter(|k| k.module.starts_with("conv2d_gemm")).map(|k| k.source()).collect();
    sources.sort();
    sources.dedup();
    std::iter::once(super::PRELUDE.to_string()).chain(sources).flat_map(String::into_bytes).fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn shape_key(d: &Conv2dDims, product: Product) -> String {
    format!("{product:?} {d:?}")
}

/// The cache on disk; none where it is missing, unreadable or damaged (measured again then).
#[cfg(not(target_arch = "wasm32"))]
fn read_cache(path: &Option<PathBuf>) -> Cache {
    let Some(path) = path.as_ref().filter(|p| p.exists()) else { return Cache::default() };
    match crate::inputs::read_text(path, "tuning cache", crate::inputs::MOST_TEXT_BYTES).and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string())) {
        Ok(cache) => cache,
        Err(e) => {
            eprintln!("note: the tuning cache {} is unreadable ({e}); the kernels are measured again", path.display());
            Cache::default()
        }
    }
}

/// A browser's page keeps no cache: it runs the default variants.
#[cfg(target_arch = "wasm32")]
fn read_cache(_: &Option<PathBuf>) -> Cache {
    Cache::default()
}

/// The variants worth measuring for `product` of `d`: with subgroups every tile shape shuffled, and the
/// default tile through workgroup memory and with no sharing; without, every tile shape with no
/// sharing and through workgroup memory.
pub fn candidates(d: &Conv2dDims, product: Product, subgroups: bool) -> Vec<Variant> {
    let default = product.default_variant(d, subgroups);
    let tiles = product.tiles(d);
    let mut list = vec![default];
    let mut add = |v: Variant| {
        if v.col_quads <= v.share.most_col_quads() && !list.contains(&v) {
            list.push(v);
        }
    };
    if subgroups {
        tiles.iter().for_each(|&(rows, col_quads)| add(Variant { share: Share::Subgroup, rows, col_quads }));
        add(Variant { share: Share::Workgroup, ..default });
        add(Variant { share: Share::Direct, ..default });
    } else {
        for share in [Share::Direct, Share::Workgroup] {
            tiles.iter().for_each(|&(rows, col_quads)| add(Variant { share, rows, col_quads }));
        }
    }
    list
}

/// How tuning goes, and what it found.
pub struct Tuning {
    pub enabled: bool,
    path: Option<PathBuf>,
    adapter: String,
    cache: std::sync::Mutex<Cache>,
    /// Whether this process has said that it is measuring (the first time can take tens of seconds).
    announced: std::sync::atomic::AtomicBool,
}

impl Tuning {
    /// Tuning on this adapter, its choices kept in `path` (none: in memory only).
    pub fn new(gpu: &Gpu, enabled: bool, path: Option<PathBuf>) -> Tuning {
        Tuning { enabled, adapter: adapter_key(gpu), cache: std::sync::Mutex::new(read_cache(&path)), path, announced: false.into() }
    }

    pub fn off(gpu: &Gpu) -> Tuning {
        Tuning::new(gpu, false, None)
    }

    fn cached(&self, key: &str) -> Option<Variant> {
        self.cache.lock().unwrap().get(&self.adapter).and_then(|shapes| shapes.get(key)).copied()
    }

    fn remember(&self, key: String, variant: Variant) {
        let mut cache = self.cache.lock().unwrap();
        // Another run may have written the file since it was read: keep its choices too.
        let mut on_disk = read_cache(&self.path);
        for (adapter, shapes) in std::mem::take(&mut *cache) {
            on_disk.entry(adapter).or_default().extend(shapes);
        }
        on_disk.entry(self.adapter.clone()).or_default().insert(key, variant);
        *cache = on_disk;
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(path) = &self.path {
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| crate::checkpoint::write_atomically(path, serde_json::to_string_pretty(&*cache).expect("the cache serialises").as_bytes()));
            if let Err(e) = written {
                eprintln!("note: could not keep the kernels' tuning in {}: {e}", path.display());
            }
        }
    }
}

impl Kernels {
    /// The variant of `product` for layers shaped `d`: measured on this adapter once (or the default
    /// when tuning is off).
    pub(crate) fn tuned_variant(&self, d: &Conv2dDims, product: Product) -> Variant {
        let default = product.default_variant(d, self.subgroups);
        if !self.tuning.enabled {
            return default;
        }
        let key = shape_key(d, product);
        let valid = candidates(d, product, self.subgroups);
        match self.tuning.cached(&key) {
            Some(v) if valid.contains(&v) => return v,
            // The cache is a file anyone can edit: a choice that is not one of this shape's variants
            // on this adapter (a tile of another shape, zero or absurd sizes) is never launched.
            Some(v) => eprintln!("note: the tuning cache holds {v:?} for {key}, not a variant of that shape on this adapter; measuring again"),
            None => {}
        }
        if !self.tuning.announced.swap(true, std::sync::atomic::Ordering::Relaxed) {
            let kept = self.tuning.path.as_ref().map_or(String::new(), |p| format!(", kept in {}", p.display()));
            eprintln!("tuning the convolution kernels for this adapter: each new layer shape once (seconds each{kept}; GPU_SIAMESE_NO_TUNE=1, or train's and bench's --no-tune, skips it)");
        }
        #[cfg(target_arch = "wasm32")]
        let chosen = default;
        #[cfg(not(target_arch = "wasm32"))]
        let chosen = self.measure(d, product).unwrap_or(default);
        self.tuning.remember(key, chosen);
        chosen
    }

    /// Times every candidate on the layer's sizes; the fastest whose bits are the default's.
    #[cfg(not(target_arch = "wasm32"))]
    fn measure(&self, d: &Conv2dDims, product: Product) -> Option<Variant> {
        let device = self.device.clone();
        let storage = |len: usize, seed: u32| {
            // Small values of both signs, so that every product and sum is exercised.
            let values: Vec<f32> = (0..len.max(4).div_ceil(4) * 4).map(|i| ((i as u32 ^ seed).wrapping_mul(2654435761) >> 8) as f32 / 16777216.0 - 0.5).collect();
            wgpu::util::DeviceExt::create_buffer_init(&device, &wgpu::util::BufferInitDescriptor {
                label: Some("tuning"),
                contents: bytemuck::cast_slice(&values),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            })
        };
        let branches = if d.batch.is_multiple_of(2) { 2 } else { 1 };
        let (x, wb, dz) = (storage(d.input_len(), 1), storage(d.param_len(), 2), storage(d.output_len(), 3));
        let (out_len, out) = match product {
            Product::Forward => (d.output_len(), storage(d.output_len(), 0)),
            Product::ForwardPooled => (d.pooled_positions() * d.out_c, storage(d.pooled_positions() * d.out_c, 0)),
            Product::BackwardInput => (d.input_len(), storage(d.input_len(), 0)),
            Product::BackwardWeight => (d.param_len(), storage(d.param_len(), 0)),
        };
        let chunks = WeightChunks::of(d, branches, d.batch);
        let partial = storage(chunks.partials_len(branches, d.param_len()), 0);
        // A step uniform of zeros: the whole batch, from its first pair.
        let step_uniform = wgpu::util::DeviceExt::create_buffer_init(&device, &wgpu::util::BufferInitDescriptor {
            label: Some("tuning step"),
            contents: bytemuck::bytes_of(&super::StepUniform::default()),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let codes = storage(d.codes_len(), 0);
        let launch = |v: Variant| -> Vec<Dispatch> {
            match product {
                Product::Forward => vec![self.conv2d_gemm_forward_as(d, v, (&x).into(), (&wb).into(), (&out).into())],
                Product::ForwardPooled => {
                    let pool = PoolEpilogue { dropout: None, codes: (&codes).into() };
                    vec![self.conv2d_gemm_forward_pooled_as(d, v, &pool, (&step_uniform).into(), (&x).into(), (&wb).into(), (&out).into())]
                }
                Product::BackwardInput => vec![self.conv2d_gemm_backward_input_as(d, v, (&dz).into(), (&wb).into(), (&out).into())],
                Product::BackwardWeight => vec![
                    self.conv2d_gemm_backward_weight_as(d, v, branches, &chunks, 0, (&step_uniform).into(), (&x).into(), (&dz).into(), (&partial).into()),
                    self.sum_partials(d.param_len(), branches, chunks.per_branch, (&partial).into(), (&out).into()),
                ],
            }
        };
        let run = |dispatches: &[Dispatch]| {
            let start = std::time::Instant::now();
            let mut encoder = self.device.create_command_encoder(&Default::default());
            record(&mut encoder, &dispatches.iter().collect::<Vec<_>>());
            self.queue.submit([encoder.finish()]);
            self.device.poll(wgpu::PollType::wait_indefinitely()).expect("waiting for the GPU");
            start.elapsed().as_secs_f64()
        };
        let mut best: Option<(f64, Variant)> = None;
        let mut baseline: Option<Vec<u8>> = None;
        for v in candidates(d, product, self.subgroups) {
            let dispatches = launch(v);
            run(&dispatches);
            let bits = read_bytes(&self.device, &self.queue, &Region::new(&out, 0, out_len));
            match &baseline {
                None => baseline = Some(bits),
                Some(b) if *b != bits => continue,
                Some(_) => {}
            }
            let seconds = (0..3).map(|_| run(&dispatches)).fold(f64::INFINITY, f64::min);
            if best.is_none_or(|(s, _)| seconds < s) {
                best = Some((seconds, v));
            }
        }
        best.map(|(_, v)| v)
    }
}

/// The bytes of `region`, copied back and waited for.
#[cfg(not(target_arch = "wasm32"))]
fn read_bytes(device: &wgpu::Device, queue: &wgpu::Queue, region: &Region) -> Vec<u8> {
    let size = (region.len * 4) as u64;
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tuning read-back"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&region.buffer, (region.offset * 4) as u64, &staging, 0, size);
    queue.submit([encoder.finish()]);
    staging.map_async(wgpu::MapMode::Read, .., |_| {});
    device.poll(wgpu::PollType::wait_indefinitely()).expect("waiting for the GPU");
    let bytes = staging.get_mapped_range(..).expect("mapped range").to_vec();
    staging.unmap();
    bytes
}
