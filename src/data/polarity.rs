//! Which way round a picture's brightness is. Fashion-MNIST's pictures are light objects on black; most
//! photos are dark objects on light. A model sees the two as different things, so a checkpoint records
//! the background its training pictures had (the mean brightness of their borders), and the commands
//! that take pictures invert those whose background is the other way round, saying so.

use crate::model::InputShape;

/// How pictures given to a trained model are made to match its training pictures' background.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Polarity {
    /// Invert a picture whose background is the opposite of the training pictures' (when the
    /// checkpoint records it).
    #[default]
    Auto,
    /// Invert every picture (`--invert`).
    Invert,
    /// Invert none (`--no-invert`).
    Keep,
}

/// Backgrounds on opposite sides of mid-grey, each at least this far from it (on 0-255), are opposite;
/// a grey one is neither.
const CLEAR_OF_GREY: f32 = 40.0;

fn side(brightness: f32) -> Option<bool> {
    let from_grey = brightness - 127.5;
    (from_grey.abs() >= CLEAR_OF_GREY).then_some(from_grey > 0.0)
}

/// The mean brightness (0-255) of a picture's border: its outermost rows and columns, all channels.
pub fn border_mean(picture: &[u8], shape: InputShape) -> f32 {
    let (h, w, c) = (shape.h, shape.w, shape.c);
    let (mut sum, mut count) = (0u64, 0u64);
    for y in 0..h {
        for x in 0..w {
            if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                let at = (y * w + x) * c;
                sum += picture[at..at + c].iter().map(|&v| v as u64).sum::<u64>();
                count += c as u64;
            }
        }
    }
    sum as f32 / count.max(1) as f32
}

/// The training pictures' background: the mean of their border means (of the first 10,000 at most).
pub fn background_of(pixels: &[u8], shape: InputShape) -> f32 {
    let pictures: Vec<&[u8]> = pixels.chunks_exact(shape.len()).take(10_000).collect();
    pictures.iter().map(|p| border_mean(p, shape)).sum::<f32>() / pictures.len().max(1) as f32
}

/// Inverts (255 - v) the pictures of `pixels` (one after another, each of `shape`) as `polarity` says,
/// against the training `background` where it is known; returns a note when any was inverted.
pub fn match_polarity(pixels: &mut [u8], shape: InputShape, background: Option<f32>, polarity: Polarity) -> Option<String> {
    let count = pixels.len() / shape.len().max(1);
    let invert_all = |pixels: &mut [u8]| pixels.iter_mut().for_each(|v| *v = 255 - *v);
    match (polarity, background) {
        (Polarity::Keep, _) | (Polarity::Auto, None) => None,
        (Polarity::Invert, _) => {
            invert_all(pixels);
            None
        }
        (Polarity::Auto, Some(background)) => {
            let mut inverted = Vec::new();
            for picture in pixels.chunks_exact_mut(shape.len()) {
                let own = border_mean(picture, shape);
                if matches!((side(own), side(background)), (Some(a), Some(b)) if a != b) {
                    invert_all(picture);
                    inverted.push(own);
                }
            }
            let first = *inverted.first()?;
            Some(format!(
                "inverted {} of {count} pictures: their background is {} (border brightness {first:.0} of 255{}) where the model's training pictures had a {} one ({background:.0}); --no-invert keeps them as they are",
                inverted.len(),
                if first > background { "light" } else { "dark" },
                if inverted.len() > 1 { ", the first" } else { "" },
                if background < 127.5 { "dark" } else { "light" }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_on_the_other_background_are_inverted_and_others_kept() {
        let shape = InputShape { h: 4, w: 5, c: 1 };
        // A dark object on white, a light object on black, and one on mid-grey.
        let mut on_white = vec![250u8; 20];
        on_white[6] = 10;
        let mut on_black = vec![2u8; 20];
        on_black[7] = 240;
        let grey = vec![128u8; 20];
        let mut pixels = [on_white.clone(), on_black.clone(), grey.clone()].concat();
        let background = background_of(&on_black, shape);
        assert_eq!(background, 2.0);
        let note = match_polarity(&mut pixels, shape, Some(background), Polarity::Auto).unwrap();
        assert!(note.starts_with("inverted 1 of 3 pictures: their background is light (border brightness 250"), "{note}");
        assert_eq!(&pixels[..20], on_white.iter().map(|v| 255 - v).collect::<Vec<_>>());
        assert_eq!(&pixels[20..], [on_black.clone(), grey.clone()].concat());
        // Forced either way, and without a recorded background, nothing is guessed.
        let mut pixels = on_black.clone();
        assert!(match_polarity(&mut pixels, shape, None, Polarity::Auto).is_none());
        assert_eq!(pixels, on_black);
        match_polarity(&mut pixels, shape, Some(background), Polarity::Invert);
        assert_eq!(pixels, on_black.iter().map(|v| 255 - v).collect::<Vec<_>>());
        let mut pixels = on_white.clone();
        assert!(match_polarity(&mut pixels, shape, Some(background), Polarity::Keep).is_none());
        assert_eq!(pixels, on_white);
    }
}
