//! A training run held in memory and stepped by its host: the data's pairs, the twin, the feed and the
//! validation tower, with no files, threads or clock. `train` drives it a step at a time, with its
//! files, progress bar and Ctrl-C, waiting for its read-backs; the page a few steps per frame,
//! awaiting them. Either way the same pairs from the same seed, the same epoch figures, the same bits.

use crate::checkpoint::{encode, Progress};
use crate::config::{Sampler, TrainConfig};
use crate::data::{ImageSet, Pair};
use crate::feed::PairFeed;
use crate::gpu::{Gpu, Kernels};
use crate::metrics::{accuracy_at, best_threshold};
use crate::model::{glorot_uniform, Plan, TowerSpec};
use crate::optimizer::{AdamConfig, Schedule};
use crate::run::*;
use crate::tower::{GpuTower, Weights};
use crate::twin::{GpuTwin, TwinOptions};

/// An epoch's figures, as `train` prints and keeps them in metrics.csv.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EpochScores {
    pub epoch: usize,
    pub loss: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub threshold: f32,
    pub val_acc_at_threshold: f64,
}

/// How a run's batches meet the adapter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Setup {
    /// Bytes a step's buffers may take; a batch that needs more runs in micro-batches.
    pub memory_budget: Option<u64>,
    /// Stream each batch's images to the GPU even when they all fit.
    pub stream: bool,
}

pub struct Trainer<'a> {
    gpu: &'a Gpu,
    pub config: TrainConfig,
    pub plan: Plan,
    pub twin: GpuTwin<'a>,
    feed: PairFeed<'a>,
    tower: GpuTower<'a>,
    train: &'a ImageSet,
    test: &'a ImageSet,
    base_pairs: Vec<Pair>,
    test_pairs: Vec<Pair>,
    calibration_pairs: Vec<Pair>,
    calibration_images: Vec<u8>,
    calibration_rows: Vec<(u32, u32)>,
    pub steps_per_epoch: usize,
    /// Epochs completed.
    pub epoch: usize,
    /// Steps of the current epoch submitted, and the epoch's pairs (0 before it starts).
    step_in_epoch: usize,
    epoch_pairs: usize,
    /// The twin's step count when the current epoch began.
    epoch_first_step: u64,
    /// The epoch's losses read back so far.
    losses: Vec<f32>,
    pub last: Option<EpochScores>,
}

impl<'a> Trainer<'a> {
    /// A fresh run of `config` (the contrastive pairs of the tutorial, any tower) on `train`, validated
    /// on `test`, weights drawn from the seed as `train` draws them.
    pub fn new(gpu: &'a Gpu, kernels: &'a Kernels, config: TrainConfig, train: &'a ImageSet, test: &'a ImageSet) -> Result<Trainer<'a>, String> {
        Trainer::with_setup(gpu, kernels, config, train, test, Setup::default())
    }

    /// As [`Trainer::new`], with a memory budget or streamed images.
    pub fn with_setup(gpu: &'a Gpu, kernels: &'a Kernels, config: TrainConfig, train: &'a ImageSet, test: &'a ImageSet, setup: Setup) -> Result<Trainer<'a>, String> {
        let mut config = config;
        check_usable(train, "training")?;
        check_usable(test, "test")?;
        settle_sampler(&mut config, train)?;
        let input = train.shape();
        config.input = [input.h, input.w, input.c];
        if config.background.is_none() {
            config.background = Some(crate::data::background_of(&train.pixels, input));
        }
        let spec: TowerSpec = config.arch.parse().map_err(|e| format!("--arch \"{}\": {e}", config.arch))?;
        let mut plan = Plan::new(&spec, input, 2 * config.batch_size, config.seed).map_err(|e| format!("--arch \"{}\": {e}", config.arch))?;
        plan.exact = config.exact;
        let adam = AdamConfig { learning_rate: config.learning_rate, beta1: config.beta1, beta2: config.beta2, epsilon: config.epsilon };
        let base_pairs = crate::data::make_pairs_with(&train.labels, &mut rng(config.seed, TRAIN_PAIRS), !config.no_self_pairs);
        if config.sampler == Sampler::Pairs && config.batch_size > base_pairs.len() {
            return Err(format!("--batch-size {}: more than the {} training pairs of an epoch; at most {}", config.batch_size, base_pairs.len(), base_pairs.len()));
        }
        let test_pairs = test_pairs(&config, &test.labels);
        let calibration_pairs = calibration_pairs(&config, &train.labels);
        let (calibration_images, calibration_rows) = paired_images(train, &calibration_pairs);
        let steps_per_epoch = steps_per_epoch(&config, base_pairs.len(), train.count);
        let options = TwinOptions { objective: objective(&config), memory_budget: setup.memory_budget, ..TwinOptions::new(true) };
        let mut twin = GpuTwin::with_options(gpu, kernels, plan.clone(), adam, config.margin, steps_per_epoch, options).map_err(|e| e.to_string())?;
        twin.schedule = Schedule {
            kind: config.lr_schedule,
            warmup_steps: (config.warmup_epochs * steps_per_epoch as f64).round() as u64,
            steps_per_epoch: steps_per_epoch as u64,
        };
        twin.set_params(&glorot_uniform(&plan, config.seed));
        let capacity = base_pairs.len().max(steps_per_epoch * config.batch_size);
        let augment = Some((&config.augment, augment_seed(config.seed)));
        let feed = PairFeed::new(gpu, kernels, &twin, &train.pixels, capacity, augment, setup.stream);
        let weights = Weights::Device { params: twin.params.clone(), state: twin.state.clone() };
        let tower = GpuTower::new(gpu, kernels, &plan, weights, None).map_err(|e| e.to_string())?;
        Ok(Trainer {
            gpu,
            config,
            plan,
            twin,
            feed,
            tower,
            train,
            test,
            base_pairs,
            test_pairs,
            calibration_pairs,
            calibration_images,
            calibration_rows,
            steps_per_epoch,
            epoch: 0,
            step_in_epoch: 0,
            epoch_pairs: 0,
            epoch_first_step: 0,
            losses: Vec::new(),
            last: None,
        })
    }

    /// Training pairs of an epoch.
    pub fn pairs_per_epoch(&self) -> usize {
        self.base_pairs.len()
    }

    /// Test pairs each epoch is scored on.
    pub fn test_pairs(&self) -> usize {
        self.test_pairs.len()
    }

    /// Whether each batch's images are streamed to the GPU (they do not all fit in one binding, or
    /// the setup asked for it).
    pub fn is_streamed(&self) -> bool {
        self.feed.is_streamed()
    }

    /// Continues a run after `epochs` epochs: its weights, layer state, Adam's moments and step count.
    pub fn resume(&mut self, params: &[f32], state: &[f32], adam: (&[f32], &[f32]), step: u64, epochs: usize) {
        self.twin.set_params(params);
        self.twin.set_state(state);
        self.twin.set_adam_state(adam.0, adam.1, step);
        self.epoch = epochs;
        self.step_in_epoch = 0;
    }

    /// The current epoch's losses read back so far.
    pub fn epoch_losses(&self) -> &[f32] {
        &self.losses
    }

    /// The twin's step count when the current epoch began.
    pub fn epoch_first_step(&self) -> u64 {
        self.epoch_first_step
    }

    /// Submits up to `most` more steps of the current epoch (drawing its pairs first when it has not
    /// begun); returns how many. Nothing is waited for.
    pub fn submit_steps(&mut self, most: usize) -> usize {
        if self.step_in_epoch == 0 {
            let pairs = epoch_pairs(&self.config, &self.base_pairs, &self.train.labels, self.epoch, self.steps_per_epoch);
            self.feed.set_pairs(self.gpu, &pairs);
            self.epoch_pairs = pairs.len();
            self.epoch_first_step = self.twin.step;
            self.losses.clear();
        }
        let n = most.min(self.steps_per_epoch - self.step_in_epoch);
        for s in self.step_in_epoch..self.step_in_epoch + n {
            let valid = pairs_in_step(s, self.config.batch_size, self.epoch_pairs);
            self.feed.train_step(self.gpu, &mut self.twin, s * self.config.batch_size, valid);
        }
        self.step_in_epoch += n;
        n
    }

    /// Steps of the current epoch submitted so far.
    pub fn steps_done(&self) -> usize {
        self.step_in_epoch
    }

    /// Whether every step of the current epoch has been submitted (validate next).
    pub fn epoch_submitted(&self) -> bool {
        self.step_in_epoch == self.steps_per_epoch
    }

    /// The losses of the epoch's submitted steps not read yet, read back, and the epoch's running loss
    /// (the mean over its pairs so far, as Keras' bar shows it).
    pub async fn new_losses(&mut self) -> (Vec<f32>, f64) {
        let done = self.losses.len();
        let fresh = self.twin.fetch_losses(self.epoch_first_step + done as u64, self.step_in_epoch - done).await;
        self.losses.extend(&fresh);
        (fresh, self.running_loss())
    }

    fn running_loss(&self) -> f64 {
        let weights = (0..self.losses.len()).map(|i| pairs_in_step(i, self.config.batch_size, self.epoch_pairs) as f64);
        let pairs: f64 = weights.clone().sum();
        self.losses.iter().zip(weights).map(|(&l, w)| l as f64 * w).sum::<f64>() / pairs.max(1.0)
    }

    /// Ends the epoch whose steps are all submitted: its loss, then the test pairs' loss and accuracy
    /// and the threshold calibrated on training pairs, with the weights as they are now.
    pub async fn validate(&mut self) -> Result<EpochScores, String> {
        assert!(self.epoch_submitted(), "the epoch's steps are submitted before it is validated");
        self.new_losses().await;
        if let Some(i) = self.losses.iter().position(|l| !l.is_finite()) {
            return Err(format!("the loss became {} at step {} of epoch {}: try a lower learning rate", self.losses[i], i + 1, self.epoch + 1));
        }
        let loss = self.running_loss();
        let test_d = self.distances(&self.test.pixels, &pair_rows(&self.test_pairs)).await?;
        let test_labels = labels_of(&self.test_pairs);
        let val_loss = pair_set_loss(&self.config, &test_d, &self.test_pairs);
        let (_, val_acc) = best_threshold(&test_d, &test_labels);
        let calibration_d = self.distances(&self.calibration_images, &self.calibration_rows).await?;
        let (threshold, _) = best_threshold(&calibration_d, &labels_of(&self.calibration_pairs));
        let scores = EpochScores { epoch: self.epoch + 1, loss, val_loss, val_acc, threshold, val_acc_at_threshold: accuracy_at(&test_d, &test_labels, threshold) };
        self.epoch += 1;
        self.step_in_epoch = 0;
        self.last = Some(scores.clone());
        Ok(scores)
    }

    async fn distances(&self, images: &[u8], rows: &[(u32, u32)]) -> Result<Vec<f32>, String> {
        let embeddings = self.tower.embed_on_gpu_with(images, |_| {}).map_err(|e| e.to_string())?;
        Ok(self.tower.pair_distances_async(&embeddings, rows).map_err(|e| e.to_string())?.await)
    }

    /// The run as a checkpoint (`train`'s last.safetensors of the last validated epoch, with the weights
    /// as they are now), which `evaluate`, `compare` and the page load.
    pub async fn checkpoint(&self) -> Vec<u8> {
        let (params, state) = (self.twin.fetch_params(), self.twin.fetch_state());
        let (params, state) = (params.await, state.await);
        let last = self.last.clone().unwrap_or(EpochScores { epoch: 0, loss: f64::NAN, val_loss: f64::NAN, val_acc: 0.0, threshold: 0.5, val_acc_at_threshold: 0.0 });
        let progress = Progress { epoch: last.epoch, step: self.twin.step, loss: last.loss, val_loss: last.val_loss, val_acc: last.val_acc, threshold: last.threshold };
        let mut config = self.config.clone();
        config.epochs = config.epochs.max(self.epoch);
        encode(&self.plan, &params, &state, &[], &config, &progress)
    }
}
