use super::Real;
use crate::objective::DISTANCE_EPSILON;

/// d[i] = sqrt(max(sum over k of (a[i, k] - b[i, k])^2, 1e-7)), where `emb` holds the first images'
/// embeddings in rows [0, pairs) and the second images' in rows [pairs, 2 * pairs).
pub fn distance_forward<T: Real>(emb: &[T], pairs: usize, dim: usize) -> Vec<T> {
    (0..pairs).map(|i| squared_distance(emb, pairs, dim, i).max(epsilon()).sqrt()).collect()
}

fn epsilon<T: Real>() -> T {
    T::from_f64(DISTANCE_EPSILON as f64)
}

fn squared_distance<T: Real>(emb: &[T], pairs: usize, dim: usize, i: usize) -> T {
    let mut ss = T::zero();
    for k in 0..dim {
        let diff = emb[i * dim + k] - emb[(pairs + i) * dim + k];
        ss += diff * diff;
    }
    ss
}

/// TensorFlow's chain: sqrt gives dd * 0.5 / d; max passes it on only where the sum reached the floor
/// (ties go to the sum); the square gives 2 * (a - b); b gets the negation.
pub fn distance_backward<T: Real>(ddist: &[T], emb: &[T], pairs: usize, dim: usize) -> Vec<T> {
    let mut demb = vec![T::zero(); emb.len()];
    for i in 0..pairs {
        let ss = squared_distance(emb, pairs, dim, i);
        if ss < epsilon() {
            continue;
        }
        for k in 0..dim {
            let diff = emb[i * dim + k] - emb[(pairs + i) * dim + k];
            let g = ddist[i] * T::from_f64(0.5) / ss.sqrt() * T::from_f64(2.0) * diff;
            demb[i * dim + k] = g;
            demb[(pairs + i) * dim + k] = -g;
        }
    }
    demb
}
