//! The optimiser: Adam in Keras 3's form, its hyper-parameters and the step size of each update.

/// Adam's hyper-parameters; the defaults are Keras'. Kept in double precision, as Keras keeps them in
/// Python floats, and rounded to f32 exactly where Keras casts them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { learning_rate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }
    }
}

impl AdamConfig {
    /// The step size of update `t` (1-based), in f32 as Keras computes it:
    /// lr * sqrt(1 - beta2^t) / (1 - beta1^t).
    pub fn alpha(&self, t: u64) -> f32 {
        let t = t as f32;
        let beta1_power = (self.beta1 as f32).powf(t);
        let beta2_power = (self.beta2 as f32).powf(t);
        self.learning_rate as f32 * (1.0 - beta2_power).sqrt() / (1.0 - beta1_power)
    }
    /// 1 - beta1, taken in double precision and rounded once, as Python computes it before Keras casts it.
    pub fn one_minus_beta1(&self) -> f32 {
        (1.0 - self.beta1) as f32
    }
    pub fn one_minus_beta2(&self) -> f32 {
        (1.0 - self.beta2) as f32
    }
}

impl AdamConfig {
    /// The step size of update `t` (1-based) at learning rate `lr` (a schedule's), as [`AdamConfig::alpha`].
    pub fn alpha_at(&self, t: u64, lr: f64) -> f32 {
        AdamConfig { learning_rate: lr, ..*self }.alpha(t)
    }
}

/// How the learning rate moves over a run, after its warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LrSchedule {
    /// The learning rate throughout (the tutorial's).
    #[default]
    Constant,
    /// Half a cosine from the learning rate down to 0 over `epochs` epochs (the run's, fixed when it
    /// starts; a run resumed beyond them stays at 0), as Keras' CosineDecay.
    Cosine { epochs: usize },
    /// Multiplied by `factor` every `every_epochs` epochs.
    Step { every_epochs: usize, factor: f64 },
}

/// The learning rate at each update of a run: a linear warm-up over `warmup_steps` updates, then the
/// schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: LrSchedule,
    pub warmup_steps: u64,
    pub steps_per_epoch: u64,
}

impl Schedule {
    /// The learning rate throughout, no warm-up.
    pub fn constant() -> Schedule {
        Schedule { kind: LrSchedule::Constant, warmup_steps: 0, steps_per_epoch: 1 }
    }

    /// What multiplies the learning rate at update `step` (0-based).
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine { epochs } => {
                let span = (epochs as u64 * self.steps_per_epoch).saturating_sub(self.warmup_steps).max(1);
                let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
                0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            LrSchedule::Step { every_epochs, factor } => factor.powi((step / self.steps_per_epoch.max(1) / every_epochs.max(1) as u64) as i32),
        }
    }

    pub fn is_constant(&self) -> bool {
        self.kind == LrSchedule::Constant && self.warmup_steps == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_warm_up_then_decay() {
        let s = |kind| Schedule { kind, warmup_steps: 4, steps_per_epoch: 10 };
        let cosine = Schedule { kind: LrSchedule::Cosine { epochs: 13 }, warmup_steps: 4, steps_per_epoch: 8 };
        assert_eq!((cosine.factor(0), cosine.factor(3)), (0.25, 1.0));
        assert_eq!(cosine.factor(4), 1.0);
        assert!((cosine.factor(54) - 0.5).abs() < 1e-12);
        assert!(cosine.factor(103) < 1e-3 && cosine.factor(500) == 0.0);
        let step = s(LrSchedule::Step { every_epochs: 3, factor: 0.1 });
        assert_eq!((step.factor(29), step.factor(30)), (1.0, 0.1));
        assert!((step.factor(65) - 0.01).abs() < 1e-15);
        assert_eq!(Schedule::constant().factor(1_000_000), 1.0);
        // The constant schedule's rate is the learning rate itself: the same step sizes, bit for bit.
        let adam = AdamConfig::default();
        assert_eq!(adam.alpha_at(7, adam.learning_rate * Schedule::constant().factor(6)), adam.alpha(7));
    }
}
