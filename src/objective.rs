//! What a training step minimises, and the distance every objective is built on.

/// Keras' `K.epsilon()`, the floor of the squared distance.
pub const DISTANCE_EPSILON: f32 = 1e-7;

/// What a training step minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// The tutorial's: the contrastive loss of each pair, a batch's first images against its second.
    Pairs,
    /// The contrastive loss over every pair of a class-balanced batch, rows in classes of `k`.
    BatchContrastive { k: usize },
    /// The triplet loss over every triplet of a class-balanced batch, rows in classes of `k`.
    BatchTriplet { k: usize },
}
