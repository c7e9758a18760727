use super::Real;

/// mean over pairs of y * d^2 + (1 - y) * max(margin - d, 0)^2, label 1 = same pair.
pub fn contrastive_forward<T: Real>(dist: &[T], label: &[T], margin: T) -> T {
    let mut acc = T::zero();
    for (&d, &y) in dist.iter().zip(label) {
        let gap = (margin - d).max(T::zero());
        acc += y * d * d + (T::from_f64(1.0) - y) * gap * gap;
    }
    acc / T::from_f64(dist.len() as f64)
}

/// d loss / d d_i = (y * 2 d - (1 - y) * 2 max(margin - d, 0)) / pairs
pub fn contrastive_backward<T: Real>(dist: &[T], label: &[T], margin: T) -> Vec<T> {
    let g = T::from_f64(1.0) / T::from_f64(dist.len() as f64);
    let two = T::from_f64(2.0);
    dist.iter()
        .zip(label)
        .map(|(&d, &y)| g * y * two * d - g * (T::from_f64(1.0) - y) * two * (margin - d).max(T::zero()))
        .collect()
}
