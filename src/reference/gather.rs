use super::Real;

/// A pixel byte as the network sees it: v / 255 in double precision, rounded once, as the tutorial's
/// `x / 255.0` in NumPy followed by Keras' cast to float32.
pub fn byte_value<T: Real>(v: u8) -> T {
    T::from_f64((v as f64 / 255.0) as f32 as f64)
}

/// The batch of pairs `start..start + valid` from `pixels` ([images, image_len] bytes), padded with the
/// first pair (label 0) up to `batch_pairs`: the pairs' first images, then their second images, and the
/// labels. `pair_images` holds (first, second) image indices, `pair_labels` 1 or 0.
pub fn gather_pairs<T: Real>(
    pixels: &[u8],
    image_len: usize,
    pair_images: &[(u32, u32)],
    pair_labels: &[f32],
    start: usize,
    valid: usize,
    batch_pairs: usize,
) -> (Vec<T>, Vec<T>) {
    let pair_of = |i: usize| if i < valid { start + i } else { start };
    let mut inputs = Vec::with_capacity(2 * batch_pairs * image_len);
    for branch in 0..2 {
        for i in 0..batch_pairs {
            let (a, b) = pair_images[pair_of(i)];
            let image = if branch == 0 { a } else { b } as usize;
            inputs.extend(pixels[image * image_len..(image + 1) * image_len].iter().map(|&v| byte_value::<T>(v)));
        }
    }
    let labels = (0..batch_pairs)
        .map(|i| if i < valid { T::from_f64(pair_labels[start + i] as f64) } else { T::zero() })
        .collect();
    (inputs, labels)
}
