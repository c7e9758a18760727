//! A checkpoint made ready to run: its tower laid out for its input, its weights checked, its
//! calibrated threshold and training background; put on the GPU as an inference tower. The command line
//! loads it from a file, the page from the bytes the user dropped.

use crate::checkpoint::Checkpoint;
use crate::gpu::{Gpu, Kernels};
use crate::model::{InputShape, Plan, TowerSpec};
use crate::tower::{GpuTower, Weights};
use std::path::{Path, PathBuf};

pub struct Trained {
    /// Where it came from (a file's path, or the name of a file the page was given), for messages.
    pub path: PathBuf,
    pub checkpoint: Checkpoint,
    /// The tower laid out for its input (the batch is the inference tower's to choose).
    pub plan: Plan,
    pub params: Vec<f32>,
    pub state: Vec<f32>,
}

impl Trained {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &Path) -> Result<Trained, String> {
        Trained::from_checkpoint(Checkpoint::load(path)?, path)
    }

    /// A checkpoint's bytes, read from `name`.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Trained, String> {
        Trained::from_checkpoint(Checkpoint::from_bytes(bytes, name)?, Path::new(name))
    }

    fn from_checkpoint(checkpoint: Checkpoint, path: &Path) -> Result<Trained, String> {
        let spec: TowerSpec =
            checkpoint.arch.parse().map_err(|e| format!("{}: its tower \"{}\" does not parse: {e}", path.display(), checkpoint.arch))?;
        let [h, w, c] = checkpoint.config.input;
        let mut plan = Plan::new(&spec, InputShape { h, w, c }, 2, checkpoint.config.seed).map_err(|e| format!("{}: {e}", path.display()))?;
        plan.exact = checkpoint.config.exact;
        let params = checkpoint.flat(&plan, "").map_err(|e| format!("{}: {e}", path.display()))?;
        let state = checkpoint.state(&plan).map_err(|e| format!("{}: {e}", path.display()))?;
        let tensors = plan.param_tensors().into_iter().map(|t| (t, &params)).chain(plan.state_tensors().into_iter().map(|t| (t, &state)));
        for (t, values) in tensors {
            if values[t.range.clone()].iter().any(|w| !w.is_finite()) {
                return Err(format!("{}: tensor {} holds NaN or infinity", path.display(), t.name));
            }
        }
        Ok(Trained { path: path.to_path_buf(), checkpoint, plan, params, state })
    }

    /// Makes pictures given to the model match its training pictures' background, as `polarity` says;
    /// the note says what was inverted, if anything.
    pub fn match_polarity_noted(&self, pixels: &mut [u8], polarity: crate::data::Polarity) -> Option<String> {
        crate::data::match_polarity(pixels, self.input(), self.checkpoint.config.background, polarity)
    }

    /// As [`Trained::match_polarity_noted`], printing the note.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn match_polarity(&self, pixels: &mut [u8], polarity: crate::data::Polarity) {
        if let Some(note) = self.match_polarity_noted(pixels, polarity) {
            eprintln!("note: {note}");
        }
    }

    /// The distance below which a pair is called "same", calibrated on training pairs when it was saved.
    pub fn threshold(&self) -> f32 {
        self.checkpoint.progress.threshold
    }

    pub fn input(&self) -> InputShape {
        self.plan.input
    }

    /// The model on the GPU for inference, weights loaded, `batch` images a pass (or as many as fit).
    pub fn tower<'a>(&self, gpu: &'a Gpu, kernels: &'a Kernels, batch: Option<usize>) -> Result<GpuTower<'a>, String> {
        let weights = Weights::Host { params: &self.params, state: &self.state };
        GpuTower::new(gpu, kernels, &self.plan, weights, batch).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}
