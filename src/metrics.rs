//! Scores of a verifier from the distances it gives pairs: the contrastive loss and the pair accuracy
//! at the best distance threshold (a pair is called "same" when its distance is below the threshold).

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
    let mut order: Vec<usize> = (0..distances.len()).collect();
    order.sort_by(|&i, &j| distances[i].total_cmp(&distances[j]));
    let negatives = labels.iter().filter(|&&y| y != 1.0).count();
    // Threshold below everything: every pair called "different", so the negatives are right.
    let (mut right, mut best_right) = (negatives, negatives);
    let mut best = distances[order[0]] - 1.0;
    let mut k = 0;
    while k < order.len() {
        // Move every pair at this distance below the threshold.
        let d = distances[order[k]];
        while k < order.len() && distances[order[k]] == d {
            if labels[order[k]] == 1.0 {
                right += 1;
            } else {
                right -= 1;
            }
            k += 1;
        }
        if right > best_right {
            best_right = right;
            best = if k < order.len() { (d + distances[order[k]]) / 2.0 } else { d + 1.0 };
        }
    }
    (best, best_right as f64 / distances.len() as f64)
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
}
