//! Checkpoints as safetensors files: the weights under their layer names (Keras' layouts), with the
//! architecture, the training configuration and the calibrated threshold as metadata. A resume file
//! adds Adam's moments and the step count. Every file is written atomically: a temporary file beside it,
//! flushed to disk, then renamed over the old one, so a crash leaves either the old file or the new.

use crate::model::Plan;
use safetensors::{Dtype, SafeTensors};
use crate::config::TrainConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
#[cfg(not(target_arch = "wasm32"))]
use std::io::Write;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

/// Where a run stands when a checkpoint is written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Adam updates done (the step dropout masks are drawn from next).
    pub step: u64,
    pub loss: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    /// The distance below which a pair is called "same", calibrated on training pairs.
    pub threshold: f32,
}

const FORMAT: &str = "gpu-siamese checkpoint 1";

#[cfg(not(target_arch = "wasm32"))]
/// Where `path` is written before it is renamed into place.
pub fn temporary_of(path: &Path) -> std::path::PathBuf {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    path.with_file_name(tmp_name)
}

/// Writes `bytes` to `path`'s temporary and flushes it to disk; a failed write (a full disk, say)
/// removes the partial temporary rather than leave it taking the space.
#[cfg(not(target_arch = "wasm32"))]
fn write_temporary(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_temporary_with(path, |file| file.write_all(bytes))
}

#[cfg(not(target_arch = "wasm32"))]
/// As [`write_temporary`], what `write` writes, through a buffer.
fn write_temporary_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()> {
    let tmp = temporary_of(path);
    let written = std::fs::File::create(&tmp).and_then(|file| {
        let mut buffered = std::io::BufWriter::new(file);
        write(&mut buffered)?;
        buffered.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(not(target_arch = "wasm32"))]
/// Writes what `write` writes to `path` atomically, streamed: never whole in memory.
pub fn write_atomically_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()> {
    write_temporary_with(path, write)?;
    std::fs::rename(temporary_of(path), path)?;
    sync_folder(path);
    Ok(())
}

/// Makes renames in `path`'s folder durable where the platform allows it.
#[cfg(not(target_arch = "wasm32"))]
fn sync_folder(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Writes `bytes` to `path` atomically.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

#[cfg(not(target_arch = "wasm32"))]
/// Writes several files as one set: every temporary first, and only when all are on disk the renames,
/// in the order given (the last one marks the set complete). If any write fails, the temporaries are
/// removed and the files already there are left as they were.
pub fn write_set(files: &[(std::path::PathBuf, Vec<u8>)]) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    for (i, (path, bytes)) in files.iter().enumerate() {
        if let Err(e) = write_temporary(path, bytes) {
            for (written, _) in &files[..i] {
                let _ = std::fs::remove_file(temporary_of(written));
            }
            return Err((path.clone(), e));
        }
    }
    for (i, (path, _)) in files.iter().enumerate() {
        if let Err(e) = std::fs::rename(temporary_of(path), path) {
            // The files not yet in place stay as they were, and their temporaries go.
            for (left, _) in &files[i..] {
                let _ = std::fs::remove_file(temporary_of(left));
            }
            return Err((path.clone(), e));
        }
    }
    if let Some((path, _)) = files.first() {
        sync_folder(path);
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
/// Saves the weights in `params` and the layers' state in `state` (the plan's flat layouts), plus any
/// `extra` buffers of the parameters' layout under a name prefix (the resume file's Adam moments),
/// with the run's metadata.
pub fn save(
    path: &Path,
    plan: &Plan,
    params: &[f32],
    state: &[f32],
    extra: &[(&str, &[f32])],
    config: &TrainConfig,
    progress: &Progress,
) -> Result<(), String> {
    write_atomically(path, &encode(plan, params, state, extra, config, progress)).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A checkpoint's bytes (see [`save`]).
pub fn encode(plan: &Plan, params: &[f32], state: &[f32], extra: &[(&str, &[f32])], config: &TrainConfig, progress: &Progress) -> Vec<u8> {
    let tensors = plan.param_tensors();
    let mut named: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for (prefix, buffer) in std::iter::once(("", params)).chain(extra.iter().copied()) {
        for t in &tensors {
            named.push((format!("{prefix}{}", t.name), t.shape.clone(), &buffer[t.range.clone()]));
        }
    }
    for t in plan.state_tensors() {
        named.push((t.name.clone(), t.shape.clone(), &state[t.range.clone()]));
    }
    let metadata: BTreeMap<&str, String> = [
        ("format", FORMAT.to_string()),
        ("arch", plan.spec.to_string()),
        ("layout", "Keras: conv kernel [kh, kw, in, out], dense kernel [in, out]; images NHWC scaled to [0, 1]".to_string()),
        ("config", serde_json::to_string(config).expect("config serialises")),
        ("progress", serde_json::to_string(progress).expect("progress serialises")),
        ("threshold", progress.threshold.to_string()),
    ]
    .into_iter()
    .collect();
    serialize(&mut named, &metadata)
}

/// The safetensors encoding with its header's keys in sorted order, so that the same weights and
/// metadata always give the same bytes (the safetensors crate writes its metadata map in hash order).
/// Layout: header length (u64, little-endian), the JSON header padded with spaces to 8 bytes, the data.
fn serialize(tensors: &mut [(String, Vec<usize>, &[f32])], metadata: &BTreeMap<&str, String>) -> Vec<u8> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("metadata serialises"));
    let mut offset = 0;
    for (name, shape, values) in tensors.iter() {
        let end = offset + 4 * values.len();
        header.insert(name.clone(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    // serde_json's map keeps keys sorted, so the header is the same for the same content.
    let mut json = serde_json::to_string(&header).expect("header serialises").into_bytes();
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut bytes = Vec::with_capacity(8 + json.len() + offset);
    bytes.extend((json.len() as u64).to_le_bytes());
    bytes.extend(json);
    for (_, _, values) in tensors.iter() {
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    bytes
}

#[cfg(not(target_arch = "wasm32"))]
/// Whether `path` holds a gpu-siamese checkpoint: a safetensors header whose metadata names the format.
/// Reads the header only (bounded), so it is cheap on any file.
pub fn is_checkpoint(path: &Path) -> bool {
    use std::io::Read;
    // A checkpoint's header is its tensors' names and offsets and a few kilobytes of metadata.
    const MOST_HEADER: u64 = 16 << 20;
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let mut length = [0u8; 8];
    if file.read_exact(&mut length).is_err() {
        return false;
    }
    let length = u64::from_le_bytes(length);
    if length > MOST_HEADER {
        return false;
    }
    let mut header = Vec::with_capacity(length as usize);
    if file.take(length).read_to_end(&mut header).is_err() || header.len() as u64 != length {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&header).is_ok_and(|h| h["__metadata__"]["format"] == FORMAT)
}

/// A checkpoint read back.
pub struct Checkpoint {
    pub arch: String,
    pub config: TrainConfig,
    pub progress: Progress,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Checkpoint {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &Path) -> Result<Checkpoint, String> {
        // The largest tower a checkpoint may hold is 2^29 parameters (2 GiB), its resume file twice
        // that again in Adam's moments.
        let bytes = crate::inputs::read_bounded(path, "checkpoint", 7 << 30)?;
        Checkpoint::from_bytes(&bytes, &path.display().to_string())
    }

    /// A checkpoint from its bytes; errors begin with `name`.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Checkpoint, String> {
        let err = |m: String| format!("{name}: {m}");
        let bytes = bytes;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| err(format!("not a safetensors file ({e})")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| err(format!("{e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(err("not a gpu-siamese checkpoint (its metadata has no gpu-siamese format)".into()));
        }
        let field = |name: &str| metadata.get(name).ok_or_else(|| err(format!("metadata lacks '{name}'")));
        let config = serde_json::from_str(field("config")?).map_err(|e| err(format!("bad 'config' metadata: {e}")))?;
        let progress = serde_json::from_str(field("progress")?).map_err(|e| err(format!("bad 'progress' metadata: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(err(format!("tensor {name} is {:?}, not F32", view.dtype())));
            }
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
            // A run that diverged is never saved; a checkpoint holding NaN was damaged afterwards, and
            // resuming from it would train a whole epoch for nothing.
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(err(format!("tensor {name} holds {} (element {i}): the checkpoint is damaged", values[i])));
            }
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(Checkpoint { arch: field("arch")?.clone(), config, progress, tensors })
    }

    /// The flat parameter buffer for `plan` from the tensors named `prefix` + each parameter's name,
    /// checking that the checkpoint holds this architecture with these shapes.
    pub fn flat(&self, plan: &Plan, prefix: &str) -> Result<Vec<f32>, String> {
        self.fill(plan, plan.param_len, &plan.param_tensors(), prefix)
    }

    /// The flat state buffer for `plan` (the layers' moving statistics).
    pub fn state(&self, plan: &Plan) -> Result<Vec<f32>, String> {
        self.fill(plan, plan.state_len, &plan.state_tensors(), "")
    }

    fn fill(&self, plan: &Plan, len: usize, tensors: &[crate::model::ParamTensor], prefix: &str) -> Result<Vec<f32>, String> {
        let mut flat = vec![0.0; len];
        for t in tensors {
            let name = format!("{prefix}{}", t.name);
            let (shape, values) = self.tensors.get(&name).ok_or_else(|| {
                if self.arch == plan.spec.to_string() {
                    format!("the checkpoint has no tensor {name}, which its own tower \"{}\" has: it is damaged or was not written by gpu-siamese", self.arch)
                } else {
                    format!("the checkpoint has no tensor {name}: it was trained with --arch \"{}\", not \"{}\"", self.arch, plan.spec)
                }
            })?;
            if *shape != t.shape {
                return Err(format!(
                    "tensor {name} is {shape:?} in the checkpoint but {:?} for this network: it was trained with --arch \"{}\", not \"{}\"",
                    t.shape, self.arch, plan.spec
                ));
            }
            flat[t.range.clone()].copy_from_slice(values);
        }
        Ok(flat)
    }
}
