//! Scores of a verifier from the distances it gives pairs (a pair is called "same", accepted, when its
//! distance is below the threshold): the contrastive loss, accuracy, the confusion counts and what
//! follows from them, the ROC curve, its area and the equal-error rate, thresholds for a wanted
//! false-accept rate; and scores of the embeddings themselves: retrieval (precision@1, MAP@R) and
//! N-way K-shot classification.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use crate::data::Label;
use serde::Serialize;

/// The tutorial's contrastive loss over all pairs, in f64: mean of y d^2 + (1 - y) max(margin - d, 0)^2.
pub fn contrastive_loss(distances: &[f32], labels: &[f32], margin: f32) -> f64 {
    let total: f64 = distances
        .iter()
        .zip(labels)
        .map(|(&d, &y)| {
            let (d, y) = (d as f64, y as f64);
            let gap = (margin as f64 - d).max(0.0);
            y * d * d + (1.0 - y) * gap * gap
        })
        .sum();
    total / distances.len().max(1) as f64
}

/// The triplet loss of (d(anchor, positive), d(anchor, negative)) pairs of distances, in f64: the mean
/// of max(d_pos - d_neg + margin, 0).
pub fn triplet_loss(triplets: &[(f32, f32)], margin: f32) -> f64 {
    let total: f64 = triplets.iter().map(|&(p, n)| (p as f64 - n as f64 + margin as f64).max(0.0)).sum();
    total / triplets.len().max(1) as f64
}

/// The fraction of pairs called right with `threshold`: same (label 1) when distance < threshold.
pub fn accuracy_at(distances: &[f32], labels: &[f32], threshold: f32) -> f64 {
    let right = distances.iter().zip(labels).filter(|(&d, &y)| (d < threshold) == (y == 1.0)).count();
    right as f64 / distances.len().max(1) as f64
}

/// The threshold that calls the most pairs right, and that accuracy. Candidates are the midpoints
/// between consecutive distinct distances (and below the smallest, above the largest); among equally
/// good ones the smallest wins. Pairs at equal distances always fall on the same side.
pub fn best_threshold(distances: &[f32], labels: &[f32]) -> (f32, f64) {
    assert_eq!(distances.len(), labels.len());
    if distances.is_empty() {
        return (0.0, 0.0);
    }
    let groups = distance_groups(distances, labels);
    let negatives: usize = groups.iter().map(|g| g.2).sum();
    // Threshold below everything: every pair called "different", so the negatives are right.
    let (mut right, mut best_right) = (negatives, negatives);
    let mut best = groups[0].0 - 1.0;
    for (k, &(_, same, different)) in groups.iter().enumerate() {
        // Move every pair at this distance below the threshold.
        right = right + same - different;
        if right > best_right {
            best_right = right;
            best = threshold_after(&groups, k);
        }
    }
    (best, best_right as f64 / distances.len() as f64)
}

/// What a threshold does to a set of pairs. "Accept" means "called same": distance < threshold.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Confusion {
    pub threshold: f32,
    /// Same-class pairs accepted.
    pub true_accepts: usize,
    /// Different-class pairs accepted.
    pub false_accepts: usize,
    /// Different-class pairs rejected.
    pub true_rejects: usize,
    /// Same-class pairs rejected.
    pub false_rejects: usize,
}

/// `a / b`, or 0 when there is nothing to divide (as scikit-learn reports an undefined precision).
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Confusion {
    pub fn at(distances: &[f32], labels: &[f32], threshold: f32) -> Confusion {
        let mut c = Confusion { threshold, true_accepts: 0, false_accepts: 0, true_rejects: 0, false_rejects: 0 };
        for (&d, &y) in distances.iter().zip(labels) {
            match (d < threshold, y == 1.0) {
                (true, true) => c.true_accepts += 1,
                (true, false) => c.false_accepts += 1,
                (false, false) => c.true_rejects += 1,
                (false, true) => c.false_rejects += 1,
            }
        }
        c
    }
    pub fn accuracy(&self) -> f64 {
        ratio(self.true_accepts + self.true_rejects, self.true_accepts + self.true_rejects + self.false_accepts + self.false_rejects)
    }
    /// Of the pairs called same, the fraction that are.
    pub fn precision(&self) -> f64 {
        ratio(self.true_accepts, self.true_accepts + self.false_accepts)
    }
    /// Of the same-class pairs, the fraction called same (the true-accept rate).
    pub fn recall(&self) -> f64 {
        ratio(self.true_accepts, self.true_accepts + self.false_rejects)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    /// False-accept rate: of the different-class pairs, the fraction called same.
    pub fn far(&self) -> f64 {
        ratio(self.false_accepts, self.false_accepts + self.true_rejects)
    }
    /// False-reject rate: of the same-class pairs, the fraction called different.
    pub fn frr(&self) -> f64 {
        ratio(self.false_rejects, self.true_accepts + self.false_rejects)
    }
}

/// One point of the ROC curve: accepting pairs below `threshold` accepts the fraction `far` of the
/// different-class pairs and `tar` of the same-class pairs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RocPoint {
    pub threshold: f32,
    pub far: f64,
    pub tar: f64,
}

/// The ROC curve: a point for a threshold below every distance (nothing accepted), then one after each
/// distinct distance (its threshold the midpoint to the next distance, or the last distance + 1), so the
/// curve runs from (0, 0) to (1, 1). Pairs at equal distances move together, which makes a tie a
/// diagonal step. Empty when either kind of pair is missing.
pub fn roc_curve(distances: &[f32], labels: &[f32]) -> Vec<RocPoint> {
    let groups = distance_groups(distances, labels);
    let positives: usize = groups.iter().map(|g| g.1).sum();
    let negatives: usize = groups.iter().map(|g| g.2).sum();
    if positives == 0 || negatives == 0 {
        return Vec::new();
    }
    let mut points = vec![RocPoint { threshold: groups[0].0, far: 0.0, tar: 0.0 }];
    let (mut accepted_pos, mut accepted_neg) = (0, 0);
    for (k, &(_, p, n)) in groups.iter().enumerate() {
        accepted_pos += p;
        accepted_neg += n;
        points.push(RocPoint { threshold: threshold_after(&groups, k), far: ratio(accepted_neg, negatives), tar: ratio(accepted_pos, positives) });
    }
    points
}

/// The distinct distances in ascending order, each with how many same-class and different-class pairs
/// lie at it.
fn distance_groups(distances: &[f32], labels: &[f32]) -> Vec<(f32, usize, usize)> {
    let mut order: Vec<usize> = (0..distances.len()).collect();
    order.sort_by(|&i, &j| distances[i].total_cmp(&distances[j]));
    let mut groups: Vec<(f32, usize, usize)> = Vec::new();
    for i in order {
        let same = (labels[i] == 1.0) as usize;
        match groups.last_mut() {
            Some(g) if g.0 == distances[i] => {
                g.1 += same;
                g.2 += 1 - same;
            }
            _ => groups.push((distances[i], same, 1 - same)),
        }
    }
    groups
}

/// The threshold that accepts groups `..=k` of [`distance_groups`] and no more: the midpoint to the next
/// distance, or the last distance + 1.
fn threshold_after(groups: &[(f32, usize, usize)], k: usize) -> f32 {
    let d = groups[k].0;
    groups.get(k + 1).map_or(d + 1.0, |next| (d + next.0) / 2.0)
}

/// The area under the ROC curve: the chance that a random same-class pair is closer than a random
/// different-class pair, ties counting one half (the Mann-Whitney statistic). None when either kind of
/// pair is missing.
pub fn roc_auc(distances: &[f32], labels: &[f32]) -> Option<f64> {
    let groups = distance_groups(distances, labels);
    let positives: usize = groups.iter().map(|g| g.1).sum();
    let negatives: usize = groups.iter().map(|g| g.2).sum();
    if positives == 0 || negatives == 0 {
        return None;
    }
    // For each different-class pair: the same-class pairs strictly closer, plus half of those tied.
    let (mut wins, mut closer_positives) = (0.0f64, 0usize);
    for (_, p, n) in groups {
        wins += n as f64 * (closer_positives as f64 + 0.5 * p as f64);
        closer_positives += p;
    }
    Some(wins / (positives as f64 * negatives as f64))
}

/// The equal-error rate and its threshold: where the false-accept rate meets the false-reject rate,
/// interpolated linearly between the two ROC points that straddle it. None when either kind of pair is
/// missing.
pub fn equal_error_rate(distances: &[f32], labels: &[f32]) -> Option<(f64, f32)> {
    let roc = roc_curve(distances, labels);
    // far - frr rises from -1 (nothing accepted) to +1 (everything accepted).
    let gap = |p: &RocPoint| p.far - (1.0 - p.tar);
    let i = roc.iter().position(|p| gap(p) >= 0.0)?;
    let (a, b) = (roc[i - 1], roc[i]);
    let s = gap(&a) / (gap(&a) - gap(&b));
    let eer = a.far + s * (b.far - a.far);
    let threshold = a.threshold + s as f32 * (b.threshold - a.threshold);
    Some((eer, threshold))
}

/// The largest threshold whose false-accept rate on these pairs is at most `target`: with the
/// different-class distances sorted, n[0] <= n[1] <= ..., it is n[k] for k = floor(target * count), so
/// at most k of them fall below it. None without different-class pairs.
pub fn threshold_for_far(distances: &[f32], labels: &[f32], target: f64) -> Option<f32> {
    let mut negatives: Vec<f32> = distances.iter().zip(labels).filter(|(_, &y)| y != 1.0).map(|(&d, _)| d).collect();
    if negatives.is_empty() {
        return None;
    }
    negatives.sort_by(f32::total_cmp);
    let k = (target * negatives.len() as f64 + 1e-9).floor() as usize;
    Some(match negatives.get(k) {
        Some(&d) => d,
        None => distances.iter().copied().fold(f32::MIN, f32::max) + 1.0,
    })
}

/// Squared Euclidean distance between two embeddings (the same order as the distance: ranking by it
/// ranks by the distance).
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Retrieval scores over a set of embeddings, every item a query against all the others, as
/// pytorch-metric-learning's AccuracyCalculator reports them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Retrieval {
    /// The fraction of queries whose nearest other item has their class.
    pub precision_at_1: f64,
    /// Mean average precision at R (Musgrave et al., "A Metric Learning Reality Check"): R is the
    /// number of other items of the query's class; among its R nearest, the precision at each rank that
    /// holds a match, summed and divided by R.
    pub map_at_r: f64,
    /// Queries scored (those with at least one other item of their class).
    pub queries: usize,
}

/// Retrieval scores of `embeddings` ([count, dim]) with their `labels`. Neighbours are ranked by
/// distance, ties by index, the query itself left out. Queries alone in their class are skipped.
pub fn retrieval(embeddings: &[f32], dim: usize, labels: &[Label]) -> Retrieval {
    let count = labels.len();
    assert_eq!(embeddings.len(), count * dim);
    let mut class_size = std::collections::HashMap::new();
    for &l in labels {
        *class_size.entry(l).or_insert(0usize) += 1;
    }
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    // One query's (precision@1, AP@R), or None when it has no match to find.
    let score = |q: usize| -> Option<(f64, f64)> {
        let r = class_size[&labels[q]] - 1;
        if r == 0 {
            return None;
        }
        let mut neighbours: Vec<(f32, usize)> =
            (0..count).filter(|&i| i != q).map(|i| (squared_distance(row(q), row(i)), i)).collect();
        let by_distance = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if r < neighbours.len() {
            neighbours.select_nth_unstable_by(r - 1, by_distance);
            neighbours.truncate(r);
        }
        neighbours.sort_by(by_distance);
        let (mut hits, mut ap) = (0usize, 0.0f64);
        for (rank, &(_, i)) in neighbours.iter().enumerate() {
            if labels[i] == labels[q] {
                hits += 1;
                ap += hits as f64 / (rank + 1) as f64;
            }
        }
        Some(((labels[neighbours[0].1] == labels[q]) as u8 as f64, ap / r as f64))
    };
    // Every query against every item is count^2 distances: split the queries over the CPU's cores.
    // (A browser's page has no threads: available_parallelism fails there and the queries run here.)
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(count.max(1));
    let chunk = count.div_ceil(threads.max(1)).max(1);
    let scores: Vec<Option<(f64, f64)>> = if threads <= 1 { (0..count).map(score).collect() } else { std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| scope.spawn(move || (start..(start + chunk).min(count)).map(score).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("retrieval thread")).collect()
    }) };
    let scored: Vec<(f64, f64)> = scores.into_iter().flatten().collect();
    let n = scored.len().max(1) as f64;
    Retrieval {
        precision_at_1: scored.iter().map(|s| s.0).sum::<f64>() / n,
        map_at_r: scored.iter().map(|s| s.1).sum::<f64>() / n,
        queries: scored.len(),
    }
}

/// N-way K-shot classification over episodes, and how much it varies between them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FewShot {
    pub n_way: usize,
    pub k_shot: usize,
    pub episodes: usize,
    /// The classes episodes are drawn from.
    pub classes: Vec<Label>,
    /// Mean over episodes of the fraction of the episode's queries classified right.
    pub accuracy: f64,
    /// Standard deviation of the per-episode accuracy.
    pub std: f64,
    /// Half-width of the 95% confidence interval of `accuracy` (1.96 std / sqrt(episodes)).
    pub ci95: f64,
}

/// What N-way K-shot episodes to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Episodes {
    pub n_way: usize,
    pub k_shot: usize,
    pub episodes: usize,
    pub seed: u64,
}

/// Koch et al.'s one-shot protocol, generalised to K shots: each episode draws `n_way` of `classes`,
/// then K + 1 distinct items of each (K support, one query). Each query goes to the class whose
/// support is nearest on average (mean distance over its K items); a tie goes to the class drawn first.
/// Episodes come from `seed`. An error when fewer than `n_way` classes have K + 1 items.
pub fn few_shot(embeddings: &[f32], dim: usize, labels: &[Label], classes: &[Label], spec: Episodes) -> Result<FewShot, String> {
    let Episodes { n_way, k_shot, episodes, seed } = spec;
    assert_eq!(embeddings.len(), labels.len() * dim);
    if n_way < 2 || k_shot < 1 || episodes < 1 {
        return Err(format!("{n_way}-way {k_shot}-shot over {episodes} episodes: need at least 2 ways, 1 shot and 1 episode"));
    }
    let members: Vec<(Label, Vec<usize>)> = classes
        .iter()
        .map(|&c| (c, (0..labels.len()).filter(|&i| labels[i] == c).collect::<Vec<_>>()))
        .filter(|(_, m)| m.len() > k_shot)
        .collect();
    if members.len() < n_way {
        return Err(format!(
            "{n_way}-way {k_shot}-shot needs {n_way} classes with at least {} images each; there are {} among classes {classes:?}",
            k_shot + 1,
            members.len()
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    let mut accuracies = Vec::with_capacity(episodes);
    for _ in 0..episodes {
        let drawn: Vec<Vec<usize>> = sample(&mut rng, members.len(), n_way)
            .into_iter()
            .map(|c| sample(&mut rng, members[c].1.len(), k_shot + 1).into_iter().map(|i| members[c].1[i]).collect())
            .collect();
        let right = (0..n_way)
            .filter(|&truth| {
                let query = row(drawn[truth][k_shot]);
                let mean_distance = |c: usize| drawn[c][..k_shot].iter().map(|&s| squared_distance(query, row(s)).sqrt() as f64).sum::<f64>();
                let mut best = 0;
                for c in 1..n_way {
                    if mean_distance(c) < mean_distance(best) {
                        best = c;
                    }
                }
                best == truth
            })
            .count();
        accuracies.push(right as f64 / n_way as f64);
    }
    let mean = accuracies.iter().sum::<f64>() / episodes as f64;
    let std = (accuracies.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / episodes as f64).sqrt();
    Ok(FewShot {
        n_way,
        k_shot,
        episodes,
        classes: members.iter().map(|(c, _)| *c).collect(),
        accuracy: mean,
        std,
        ci95: 1.96 * std / (episodes as f64).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_by_hand() {
        // same pair at 0.5: 0.25; different pair at 0.25: 0.75^2; different pair beyond the margin: 0.
        let loss = contrastive_loss(&[0.5, 0.25, 1.5], &[1.0, 0.0, 0.0], 1.0);
        assert!((loss - (0.25 + 0.5625) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn best_threshold_by_hand() {
        let d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let y = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        let (t, acc) = best_threshold(&d, &y);
        assert_eq!((t, acc), (0.25, 5.0 / 6.0));
        assert_eq!(accuracy_at(&d, &y, t), acc);
        assert_eq!(accuracy_at(&d, &y, 0.45), 5.0 / 6.0);
    }

    #[test]
    fn ties_fall_on_one_side_and_degenerate_sets() {
        // Two pairs at the same distance, one of each label: no threshold separates them.
        let (t, acc) = best_threshold(&[0.2, 0.2, 0.9], &[1.0, 0.0, 0.0]);
        assert_eq!(acc, 2.0 / 3.0);
        assert_eq!(accuracy_at(&[0.2, 0.2, 0.9], &[1.0, 0.0, 0.0], t), acc);
        // All one class: everything on one side.
        assert_eq!(best_threshold(&[0.3, 0.1], &[1.0, 1.0]).1, 1.0);
        assert_eq!(best_threshold(&[0.3, 0.1], &[0.0, 0.0]).1, 1.0);
        assert!(best_threshold(&[0.3, 0.1], &[0.0, 0.0]).0 < 0.1);
        assert_eq!(best_threshold(&[], &[]), (0.0, 0.0));
    }

    #[test]
    fn confusion_counts_and_rates_by_hand() {
        let d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let y = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        let c = Confusion::at(&d, &y, 0.35);
        assert_eq!((c.true_accepts, c.false_accepts, c.true_rejects, c.false_rejects), (2, 1, 2, 1));
        assert_eq!((c.precision(), c.recall(), c.far(), c.frr()), (2.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0));
        assert!((c.f1() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.accuracy(), accuracy_at(&d, &y, 0.35));
        // Nothing accepted: precision is undefined and reported as 0, like scikit-learn.
        let none = Confusion::at(&d, &y, 0.0);
        assert_eq!((none.precision(), none.recall(), none.f1(), none.far()), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn auc_by_hand_with_ties() {
        // Same-class at 0.1 and 0.3, different at 0.2 and 0.4: 3 of the 4 (same, different) pairs are ordered.
        assert_eq!(roc_auc(&[0.1, 0.2, 0.3, 0.4], &[1.0, 0.0, 1.0, 0.0]), Some(0.75));
        // A tie counts one half.
        assert_eq!(roc_auc(&[0.2, 0.2], &[1.0, 0.0]), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.2, 0.2, 0.5], &[1.0, 1.0, 0.0, 0.0]), Some(0.875));
        assert_eq!(roc_auc(&[0.9, 0.1], &[1.0, 0.0]), Some(0.0));
    }

    #[test]
    fn auc_is_the_area_under_the_roc_curve() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        use rand::Rng;
        // Coarse distances so that many tie.
        let d: Vec<f32> = (0..500).map(|_| rng.random_range(0..40) as f32 / 20.0).collect();
        let y: Vec<f32> = d.iter().map(|&d| (rng.random::<f32>() > d / 2.0) as u8 as f32).collect();
        let roc = roc_curve(&d, &y);
        assert_eq!((roc[0].far, roc[0].tar), (0.0, 0.0));
        assert_eq!((roc.last().unwrap().far, roc.last().unwrap().tar), (1.0, 1.0));
        let area: f64 = roc.windows(2).map(|w| (w[1].far - w[0].far) * (w[1].tar + w[0].tar) / 2.0).sum();
        let auc = roc_auc(&d, &y).unwrap();
        assert!((area - auc).abs() < 1e-12, "trapezoids {area} vs Mann-Whitney {auc}");
        assert!(auc > 0.6, "the distances were drawn to separate: {auc}");
        // Each point's threshold accepts exactly what the point says.
        for p in &roc {
            let c = Confusion::at(&d, &y, p.threshold);
            assert_eq!((c.far(), c.recall()), (p.far, p.tar));
        }
    }

    #[test]
    fn equal_error_rate_by_hand() {
        // At 0.25 one of two different pairs and one of two same pairs are wrong.
        assert_eq!(equal_error_rate(&[0.1, 0.2, 0.3, 0.4], &[1.0, 0.0, 1.0, 0.0]), Some((0.5, 0.25)));
        // Separable: no error, at the midpoint of the gap.
        assert_eq!(equal_error_rate(&[0.1, 0.2, 0.8, 0.9], &[1.0, 1.0, 0.0, 0.0]), Some((0.0, 0.5)));
        // Interpolated between two points: FAR stays 1/2 while FRR falls from 2/3 to 1/3.
        let (eer, t) = equal_error_rate(&[0.1, 0.2, 0.3, 0.4, 0.5], &[1.0, 0.0, 1.0, 1.0, 0.0]).unwrap();
        assert!((eer - 0.5).abs() < 1e-12 && (t - 0.3).abs() < 1e-6, "{eer} {t}");
    }

    #[test]
    fn threshold_for_a_false_accept_rate() {
        let d = [0.2, 0.5, 0.7, 0.9, 0.1, 0.3];
        let y = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        assert_eq!(threshold_for_far(&d, &y, 0.25), Some(0.5));
        assert_eq!(Confusion::at(&d, &y, 0.5).far(), 0.25);
        assert_eq!(threshold_for_far(&d, &y, 0.0), Some(0.2));
        assert_eq!(threshold_for_far(&d, &y, 0.2), Some(0.2), "one in four would be 25%, above 20%");
        assert_eq!(threshold_for_far(&d, &y, 1.0), Some(1.9), "everything accepted");
        // Tied different-class pairs cannot be split: both stay rejected.
        assert_eq!(threshold_for_far(&[0.2, 0.2, 0.5], &[0.0, 0.0, 0.0], 0.34), Some(0.2));
        assert_eq!(Confusion::at(&[0.2, 0.2, 0.5], &[0.0, 0.0, 0.0], 0.2).far(), 0.0);
    }

    #[test]
    fn degenerate_sets_of_one_kind_of_pair() {
        let d = [0.3, 0.1, 0.2];
        for y in [[1.0; 3], [0.0; 3]] {
            assert!(roc_curve(&d, &y).is_empty());
            assert_eq!(roc_auc(&d, &y), None);
            assert_eq!(equal_error_rate(&d, &y), None);
        }
        assert_eq!(threshold_for_far(&d, &[1.0; 3], 0.1), None);
        assert_eq!(retrieval(&[0.0, 1.0, 2.0], 1, &[4, 4, 4]), Retrieval { precision_at_1: 1.0, map_at_r: 1.0, queries: 3 });
    }

    #[test]
    fn retrieval_by_hand() {
        // Two classes on a line; neighbours ranked by distance, ties by index.
        let r = retrieval(&[0.0, 0.1, 0.15, 1.0], 1, &[0, 0, 1, 1]);
        assert_eq!(r, Retrieval { precision_at_1: 0.5, map_at_r: 0.5, queries: 4 });
        // R = 2 for class 0: query 0 finds a miss then a hit (AP 1/4), query 1 a miss then the tie at 1
        // resolved to the lower index, a hit (1/4), query 2 a hit then a miss (1/2); class 1's two
        // queries miss. The lone class-2 item is no query.
        let r = retrieval(&[0.0, 1.0, 2.0, 0.5, 5.0, 10.0], 1, &[0, 0, 0, 1, 1, 2]);
        assert_eq!(r.queries, 5);
        assert!((r.precision_at_1 - 0.2).abs() < 1e-12 && (r.map_at_r - 0.2).abs() < 1e-12, "{r:?}");
        // Two dimensions: a 2 x 3 rectangle whose near corners differ in class, whose far ones match.
        let r = retrieval(&[0.0, 0.0, 2.0, 0.0, 0.0, 3.0, 2.0, 3.0], 2, &[0, 1, 0, 1]);
        assert_eq!((r.precision_at_1, r.map_at_r), (0.0, 0.0));
        let r = retrieval(&[0.0, 0.0, 2.0, 0.0, 0.0, 3.0, 2.0, 3.0], 2, &[0, 0, 1, 1]);
        assert_eq!((r.precision_at_1, r.map_at_r), (1.0, 1.0));
    }

    #[test]
    fn few_shot_on_sets_with_a_known_answer() {
        let (dim, per_class) = (4, 12);
        let labels: Vec<Label> = (0..4).flat_map(|c| std::iter::repeat_n(c as Label, per_class)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        use rand::Rng;
        // Well-separated classes: every query is right.
        let separated: Vec<f32> = labels
            .iter()
            .flat_map(|&l| (0..dim).map(|j| if j == l as usize { 10.0 } else { 0.0 }).collect::<Vec<_>>())
            .map(|v| v + rng.random_range(-1.0..1.0))
            .collect();
        let f = few_shot(&separated, dim, &labels, &[0, 1, 2, 3], Episodes { n_way: 4, k_shot: 1, episodes: 200, seed: 7 }).unwrap();
        assert_eq!((f.accuracy, f.std, f.classes.clone()), (1.0, 0.0, vec![0, 1, 2, 3]));
        let f = few_shot(&separated, dim, &labels, &[1, 3], Episodes { n_way: 2, k_shot: 5, episodes: 50, seed: 7 }).unwrap();
        assert_eq!(f.accuracy, 1.0);
        // All embeddings equal: every query ties and goes to the class drawn first, so exactly one of
        // the N queries of each episode is right.
        let same = vec![0.5; labels.len() * dim];
        let f = few_shot(&same, dim, &labels, &[0, 1, 2, 3], Episodes { n_way: 4, k_shot: 1, episodes: 100, seed: 7 }).unwrap();
        assert_eq!((f.accuracy, f.std), (0.25, 0.0));
        // Same seed, same episodes.
        assert_eq!(few_shot(&separated, dim, &labels, &[0, 1, 2, 3], Episodes { n_way: 3, k_shot: 2, episodes: 30, seed: 9 }), few_shot(&separated, dim, &labels, &[0, 1, 2, 3], Episodes { n_way: 3, k_shot: 2, episodes: 30, seed: 9 }));
        // Not enough classes, or not enough images for K + 1 of each.
        assert!(few_shot(&separated, dim, &labels, &[0, 1, 2], Episodes { n_way: 4, k_shot: 1, episodes: 10, seed: 7 }).unwrap_err().contains("needs 4 classes"));
        assert!(few_shot(&separated, dim, &labels, &[0, 1, 2, 3], Episodes { n_way: 2, k_shot: 12, episodes: 10, seed: 7 }).unwrap_err().contains("at least 13 images"));
    }
}
