//! Losses over every pair, or every triplet, of a class-balanced batch: B = P x K images in rows of
//! class order, rows [sK, (s + 1)K) holding the K images of the batch's s-th class (which class it is
//! does not matter, only which rows share one). Distances are the tutorial's, between every two rows.

use super::Real;
use crate::objective::DISTANCE_EPSILON;

/// Whether rows `i` and `j` hold images of the same class.
pub fn same_class(i: usize, j: usize, k: usize) -> bool {
    i / k == j / k
}

fn epsilon<T: Real>() -> T {
    T::from_f64(DISTANCE_EPSILON as f64)
}

/// The squared distances ss[i * rows + j] = sum over e of (emb[i, e] - emb[j, e])^2, and the distances
/// sqrt(max(ss, 1e-7)), between every two of the `rows` embeddings.
pub fn pairwise_distance_forward<T: Real>(emb: &[T], rows: usize, dim: usize) -> (Vec<T>, Vec<T>) {
    let mut ss = vec![T::zero(); rows * rows];
    for i in 0..rows {
        for j in 0..rows {
            let mut acc = T::zero();
            for e in 0..dim {
                let diff = emb[i * dim + e] - emb[j * dim + e];
                acc += diff * diff;
            }
            ss[i * rows + j] = acc;
        }
    }
    let dist = ss.iter().map(|&s| s.max(epsilon()).sqrt()).collect();
    (dist, ss)
}

/// The embeddings' gradient from the distances' (`ddist`, rows x rows; both (i, j) and (j, i) may be
/// non-zero): row i gets (ddist[i][j] + ddist[j][i]) * 0.5 / sqrt(ss) * 2 * (emb[i] - emb[j]) from
/// every j whose squared distance reached the floor 1e-7 (below it the clamp passes no gradient).
pub fn pairwise_distance_backward<T: Real>(ddist: &[T], emb: &[T], ss: &[T], rows: usize, dim: usize) -> Vec<T> {
    let mut demb = vec![T::zero(); rows * dim];
    for i in 0..rows {
        for e in 0..dim {
            let mut acc = T::zero();
            for j in 0..rows {
                let s = ss[i * rows + j];
                if j == i || s < epsilon() {
                    continue;
                }
                let g = ddist[i * rows + j] + ddist[j * rows + i];
                acc += g * T::from_f64(0.5) / s.sqrt() * T::from_f64(2.0) * (emb[i * dim + e] - emb[j * dim + e]);
            }
            demb[i * dim + e] = acc;
        }
    }
    demb
}

/// The pairs i < j of a batch of `rows`.
pub fn batch_pairs(rows: usize) -> usize {
    rows * (rows - 1) / 2
}

/// The contrastive loss over every pair i < j of the batch: mean of y d^2 + (1 - y) max(margin - d, 0)^2,
/// y = 1 when the two rows share a class.
pub fn batch_contrastive_forward<T: Real>(dist: &[T], rows: usize, k: usize, margin: T) -> T {
    let mut acc = T::zero();
    for i in 0..rows {
        for j in i + 1..rows {
            let d = dist[i * rows + j];
            acc += if same_class(i, j, k) { d * d } else { (margin - d).max(T::zero()) * (margin - d).max(T::zero()) };
        }
    }
    acc / T::from_f64(batch_pairs(rows) as f64)
}

/// d loss / d dist[i][j] for i < j: (y 2 d - (1 - y) 2 max(margin - d, 0)) / pairs; 0 elsewhere.
pub fn batch_contrastive_backward<T: Real>(dist: &[T], rows: usize, k: usize, margin: T) -> Vec<T> {
    let g = T::from_f64(1.0) / T::from_f64(batch_pairs(rows) as f64);
    let two = T::from_f64(2.0);
    let mut ddist = vec![T::zero(); rows * rows];
    for i in 0..rows {
        for j in i + 1..rows {
            let d = dist[i * rows + j];
            ddist[i * rows + j] = if same_class(i, j, k) { g * two * d } else { -(g * two * (margin - d).max(T::zero())) };
        }
    }
    ddist
}

/// The triplets (anchor, positive, negative) of a batch: every anchor, every other row of its class,
/// every row of another class.
pub fn batch_triplets(rows: usize, k: usize) -> usize {
    rows * (k - 1) * (rows - k)
}

/// The triplet loss over every triplet of the batch ("batch all"): mean of
/// max(d(anchor, positive) - d(anchor, negative) + margin, 0).
pub fn batch_triplet_forward<T: Real>(dist: &[T], rows: usize, k: usize, margin: T) -> T {
    let mut acc = T::zero();
    for a in 0..rows {
        for p in (0..rows).filter(|&p| p != a && same_class(a, p, k)) {
            for n in (0..rows).filter(|&n| !same_class(a, n, k)) {
                acc += (dist[a * rows + p] - dist[a * rows + n] + margin).max(T::zero());
            }
        }
    }
    acc / T::from_f64(batch_triplets(rows, k) as f64)
}

/// d loss / d dist[a][x]: for a positive x, the count of negatives whose triplet is active (its hinge
/// above zero) over the triplet count; for a negative x, minus the count of active positives over it.
pub fn batch_triplet_backward<T: Real>(dist: &[T], rows: usize, k: usize, margin: T) -> Vec<T> {
    let active = |a: usize, p: usize, n: usize| dist[a * rows + p] - dist[a * rows + n] + margin > T::zero();
    let triplets = T::from_f64(batch_triplets(rows, k) as f64);
    let mut ddist = vec![T::zero(); rows * rows];
    for a in 0..rows {
        for x in (0..rows).filter(|&x| x != a) {
            ddist[a * rows + x] = if same_class(a, x, k) {
                let count = (0..rows).filter(|&n| !same_class(a, n, k) && active(a, x, n)).count();
                T::from_f64(count as f64) / triplets
            } else {
                let count = (0..rows).filter(|&p| p != a && same_class(a, p, k) && active(a, p, x)).count();
                -(T::from_f64(count as f64) / triplets)
            };
        }
    }
    ddist
}
