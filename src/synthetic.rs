//! Labelled images made up from a seed, for training and benchmarking without a dataset: each class is
//! a random smooth pattern, each image its class' pattern plus noise. Pairs follow the tutorial's
//! `create_pairs`: for every image one positive pair (same class, label 1) and one negative pair (another
//! class, label 0).

use crate::model::InputShape;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct SyntheticSet {
    pub shape: InputShape,
    /// [count, h, w, c] in [0, 1].
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
}

impl SyntheticSet {
    pub fn new(shape: InputShape, classes: usize, count: usize, noise: f32, seed: u64) -> SyntheticSet {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A class pattern: a few Gaussian blobs at random places.
        let patterns: Vec<Vec<f32>> = (0..classes)
            .map(|_| {
                let blobs: Vec<(f32, f32, f32, f32)> = (0..3)
                    .map(|_| (rng.random_range(0.0..shape.h as f32), rng.random_range(0.0..shape.w as f32), rng.random_range(1.5..4.0), rng.random_range(0.5..1.0)))
                    .collect();
                let mut p = vec![0.0f32; shape.len()];
                for y in 0..shape.h {
                    for x in 0..shape.w {
                        let v: f32 = blobs
                            .iter()
                            .map(|&(by, bx, r, a)| a * (-((y as f32 - by).powi(2) + (x as f32 - bx).powi(2)) / (2.0 * r * r)).exp())
                            .sum();
                        for c in 0..shape.c {
                            p[(y * shape.w + x) * shape.c + c] = v.min(1.0);
                        }
                    }
                }
                p
            })
            .collect();
        let labels: Vec<usize> = (0..count).map(|i| i % classes).collect();
        let mut images = Vec::with_capacity(count * shape.len());
        for &label in &labels {
            for &v in &patterns[label] {
                images.push((v + rng.random_range(-noise..noise)).clamp(0.0, 1.0));
            }
        }
        SyntheticSet { shape, images, labels }
    }

    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.shape.len()..(i + 1) * self.shape.len()]
    }

    /// The tutorial's pairs: (first, second, label) with two pairs per image.
    pub fn pairs(&self, seed: u64) -> Vec<(usize, usize, f32)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let classes = self.labels.iter().max().map_or(0, |m| m + 1);
        let by_class: Vec<Vec<usize>> =
            (0..classes).map(|c| (0..self.labels.len()).filter(|&i| self.labels[i] == c).collect()).collect();
        let mut pairs = Vec::with_capacity(2 * self.labels.len());
        for (i, &label) in self.labels.iter().enumerate() {
            let same = &by_class[label];
            pairs.push((i, same[rng.random_range(0..same.len())], 1.0));
            let other = loop {
                let j = rng.random_range(0..self.labels.len());
                if self.labels[j] != label {
                    break j;
                }
            };
            pairs.push((i, other, 0.0));
        }
        pairs
    }

    /// The twin's batch for `pairs`: the first images, then the second images, and the labels.
    pub fn batch(&self, pairs: &[(usize, usize, f32)]) -> (Vec<f32>, Vec<f32>) {
        let mut inputs = Vec::with_capacity(2 * pairs.len() * self.shape.len());
        for &(a, _, _) in pairs {
            inputs.extend_from_slice(self.image(a));
        }
        for &(_, b, _) in pairs {
            inputs.extend_from_slice(self.image(b));
        }
        (inputs, pairs.iter().map(|p| p.2).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_the_tutorials_rule() {
        let set = SyntheticSet::new(InputShape { h: 6, w: 5, c: 1 }, 4, 40, 0.1, 1);
        let pairs = set.pairs(2);
        assert_eq!(pairs.len(), 80);
        for (k, &(a, b, label)) in pairs.iter().enumerate() {
            assert_eq!(a, k / 2, "every image starts two pairs");
            assert_eq!(label, if k % 2 == 0 { 1.0 } else { 0.0 });
            assert_eq!(set.labels[a] == set.labels[b], label == 1.0);
        }
        assert_eq!(pairs, set.pairs(2));
        assert_ne!(pairs, set.pairs(3));
        assert!(set.images.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
