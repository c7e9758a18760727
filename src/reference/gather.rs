use super::{pcg_hash, Real};
use crate::data::Augment;
use crate::model::InputShape;

/// A pixel byte as the network sees it: v / 255 in double precision, rounded once, as the tutorial's
/// `x / 255.0` in NumPy followed by Keras' cast to float32.
pub fn byte_value<T: Real>(v: u8) -> T {
    T::from_f64((v as f64 / 255.0) as f32 as f64)
}

/// One image's draw of an [`Augment`]: what is done to the image in batch row `row` at training step
/// `step`, a counter-based hash of (seed, step, row) like dropout's masks, so nothing is stored and a
/// resumed run draws the same.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AugmentDraw {
    pub flip: bool,
    pub dx: i32,
    pub dy: i32,
    pub contrast: f32,
    pub brightness: f32,
}

pub fn augment_draw(a: &Augment, seed: u32, step: u32, row: u32) -> AugmentDraw {
    let h1 = pcg_hash(row ^ pcg_hash(step ^ pcg_hash(seed)));
    let (h2, h3, h4, h5) = {
        let h2 = pcg_hash(h1);
        let h3 = pcg_hash(h2);
        let h4 = pcg_hash(h3);
        (h2, h3, h4, pcg_hash(h4))
    };
    let span = 2 * a.shift + 1;
    // A uniform draw in [0, 1) from the hash's top 24 bits, exactly representable.
    let unit = |h: u32| (h >> 8) as f32 * (1.0 / 16777216.0);
    AugmentDraw {
        flip: a.flip && h1 & 1 == 1,
        dx: (h2 % span) as i32 - a.shift as i32,
        dy: (h3 % span) as i32 - a.shift as i32,
        contrast: 1.0 + (unit(h4) * 2.0 - 1.0) * a.contrast,
        brightness: (unit(h5) * 2.0 - 1.0) * a.brightness,
    }
}

/// The augmented image: pixel (y, x) comes from (y - dy, x' - dx), x' being x mirrored when flipped,
/// with coordinates clamped to the image (edges repeated); then (v - 0.5) * contrast + 0.5 + brightness,
/// clamped to [0, 1]. `image` holds the image's values, HWC.
pub fn augment_image(image: &[f32], shape: InputShape, draw: &AugmentDraw) -> Vec<f32> {
    let (h, w, c) = (shape.h as i32, shape.w as i32, shape.c);
    let mut out = Vec::with_capacity(image.len());
    for y in 0..h {
        for x in 0..w {
            let mirrored = if draw.flip { w - 1 - x } else { x };
            let sx = (mirrored - draw.dx).clamp(0, w - 1) as usize;
            let sy = (y - draw.dy).clamp(0, h - 1) as usize;
            for ch in 0..c {
                let v = image[(sy * w as usize + sx) * c + ch];
                let t = (v - 0.5) * draw.contrast;
                out.push((t + 0.5 + draw.brightness).clamp(0.0, 1.0));
            }
        }
    }
    out
}

/// The batch of pairs `start..start + valid` from `pixels` ([images, image_len] bytes), padded with the
/// first pair (label 0) up to `batch_pairs`: the pairs' first images, then their second images, and the
/// labels. `pair_images` holds (first, second) image indices, `pair_labels` 1 or 0. With `augment`
/// (the augmentation, the image shape, its seed and the training step), each image is augmented as
/// drawn for its row of the batch.
#[allow(clippy::too_many_arguments)]
pub fn gather_pairs<T: Real>(
    pixels: &[u8],
    image_len: usize,
    pair_images: &[(u32, u32)],
    pair_labels: &[f32],
    start: usize,
    valid: usize,
    batch_pairs: usize,
    augment: Option<(&Augment, InputShape, u32, u32)>,
) -> (Vec<T>, Vec<T>) {
    let pair_of = |i: usize| if i < valid { start + i } else { start };
    let mut inputs = Vec::with_capacity(2 * batch_pairs * image_len);
    for branch in 0..2 {
        for i in 0..batch_pairs {
            let (a, b) = pair_images[pair_of(i)];
            let image = if branch == 0 { a } else { b } as usize;
            let values = pixels[image * image_len..(image + 1) * image_len].iter().map(|&v| byte_value::<f32>(v));
            match augment {
                // The augmentation is specified in f32, as the kernel computes it.
                Some((a, shape, seed, step)) => {
                    let draw = augment_draw(a, seed, step, (branch * batch_pairs + i) as u32);
                    inputs.extend(augment_image(&values.collect::<Vec<_>>(), shape, &draw).into_iter().map(|v| T::from_f64(v as f64)));
                }
                None => inputs.extend(values.map(|v| T::from_f64(v as f64))),
            }
        }
    }
    let labels = (0..batch_pairs)
        .map(|i| if i < valid { T::from_f64(pair_labels[start + i] as f64) } else { T::zero() })
        .collect();
    (inputs, labels)
}
