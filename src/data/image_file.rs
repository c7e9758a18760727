//! Image files (any format the `image` crate decodes) made into the model's input, always the same way:
//!
//! 1. decoded; alpha, if any, is dropped;
//! 2. made grayscale (luma = 0.2126 R + 0.7152 G + 0.0722 B, the `image` crate's) for a 1-channel model,
//!    or RGB for a 3-channel one;
//! 3. scaled, aspect kept, to fit the model's height and width, with a triangle (bilinear) filter whose
//!    support widens when shrinking, so every source pixel counts;
//! 4. centred, the rest padded with the mean colour of the scaled image's border pixels (a photo on
//!    white is padded with white, a Fashion-MNIST-like picture on black with black);
//! 5. optionally inverted (255 - v): Fashion-MNIST's pictures are light objects on black, most photos
//!    are dark objects on light.

#[cfg(not(target_arch = "wasm32"))]
use super::DataError;
use crate::model::InputShape;
use image::imageops::FilterType;
use image::DynamicImage;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

/// The picture at `path` as the model's input: `shape.h * shape.w * shape.c` bytes, rows of pixels of
/// channels (HWC).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_image(path: &Path, shape: InputShape, invert: bool) -> Result<Vec<u8>, DataError> {
    // Only a regular file of a picture's size is read: a FIFO or /dev/zero under a picture's name would
    // never end. (The message names the path itself.)
    let bytes = crate::inputs::read_bounded(path, "picture", crate::inputs::MOST_PICTURE_BYTES).map_err(|e| DataError::new(path, strip_path(&e, path)))?;
    decode_picture(&bytes, shape, invert).map_err(|e| DataError::new(path, e))
}

/// A picture file's bytes as the model's input (see [`load_image`]); the error says what is wrong
/// with them.
pub fn decode_picture(bytes: &[u8], shape: InputShape, invert: bool) -> Result<Vec<u8>, String> {
    // The contents say what a file is, not its name.
    let format = image::guess_format(bytes)
        .map_err(|_| "not an image file (its contents match no format this build decodes: PNG, JPEG, BMP, GIF, WebP, TIFF)".to_string())?;
    // The size its header claims, checked before anything is decoded: a small file can hold a huge
    // picture (a 389 KB PNG of 20000x20000 decodes to 1.6 GB).
    let reader = || image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (w, h) = reader().into_dimensions().map_err(|e| format!("cannot decode the image: {e}"))?;
    let budget = pixel_budget();
    if w as u64 * h as u64 > budget {
        return Err(format!(
                "{w}x{h} pixels, more than the {} megapixels a picture may have (GPU_SIAMESE_MAX_PIXELS={budget} raises it; the model sees {}x{} anyway)",
                budget / 1_000_000,
                shape.w,
                shape.h
        ));
    }
    let mut decoder = reader();
    let mut limits = image::Limits::default();
    // Eight bytes a pixel (16-bit RGBA, the widest a format here decodes to) and room for the decoder.
    limits.max_alloc = Some(budget * 8 + (64 << 20));
    decoder.limits(limits);
    let picture = decoder.decode().map_err(|e| format!("cannot decode the image: {e}"))?;
    Ok(to_input(&picture, shape, invert))
}

/// The most pixels a picture may have: GPU_SIAMESE_MAX_PIXELS, else 40 million (a 40-megapixel photo
/// decodes to at most 320 MB).
pub fn pixel_budget() -> u64 {
    std::env::var("GPU_SIAMESE_MAX_PIXELS").ok().and_then(|v| v.parse().ok()).filter(|&v| v > 0).unwrap_or(40_000_000)
}

/// A message of `inputs` without its leading path (DataError names the path itself).
#[cfg(not(target_arch = "wasm32"))]
fn strip_path(message: &str, path: &Path) -> String {
    message.strip_prefix(&format!("{}: ", path.display())).unwrap_or(message).to_string()
}

/// A decoded picture as the model's input (steps 2 to 5 above).
pub fn to_input(picture: &DynamicImage, shape: InputShape, invert: bool) -> Vec<u8> {
    assert!(shape.c == 1 || shape.c == 3, "models take 1 or 3 channels");
    let (w, h) = (picture.width().max(1), picture.height().max(1));
    let scale = (shape.w as f64 / w as f64).min(shape.h as f64 / h as f64);
    let fit_w = ((w as f64 * scale).round() as u32).clamp(1, shape.w as u32);
    let fit_h = ((h as f64 * scale).round() as u32).clamp(1, shape.h as u32);
    let scaled: Vec<u8> = if shape.c == 1 {
        let luma = picture.to_luma8();
        let resized = if (w, h) == (fit_w, fit_h) { luma } else { image::imageops::resize(&luma, fit_w, fit_h, FilterType::Triangle) };
        resized.into_raw()
    } else {
        let rgb = picture.to_rgb8();
        let resized = if (w, h) == (fit_w, fit_h) { rgb } else { image::imageops::resize(&rgb, fit_w, fit_h, FilterType::Triangle) };
        resized.into_raw()
    };
    let (fit_w, fit_h, c) = (fit_w as usize, fit_h as usize, shape.c);
    let pixel = |x: usize, y: usize| &scaled[(y * fit_w + x) * c..(y * fit_w + x + 1) * c];

    // The border's mean colour, per channel.
    let border: Vec<(usize, usize)> = (0..fit_w)
        .flat_map(|x| [(x, 0), (x, fit_h - 1)])
        .chain((0..fit_h).flat_map(|y| [(0, y), (fit_w - 1, y)]))
        .collect();
    let pad: Vec<u8> = (0..c)
        .map(|ch| {
            let sum: u64 = border.iter().map(|&(x, y)| pixel(x, y)[ch] as u64).sum();
            ((sum as f64 / border.len() as f64).round()) as u8
        })
        .collect();

    let (left, top) = ((shape.w - fit_w) / 2, (shape.h - fit_h) / 2);
    let mut out = Vec::with_capacity(shape.len());
    for y in 0..shape.h {
        for x in 0..shape.w {
            let inside = (left..left + fit_w).contains(&x) && (top..top + fit_h).contains(&y);
            out.extend_from_slice(if inside { pixel(x - left, y - top) } else { &pad });
        }
    }
    if invert {
        out.iter_mut().for_each(|v| *v = 255 - *v);
    }
    out
}
