//! Just enough drawing for the report's charts, on an `image::RgbImage`: anti-aliased lines and discs,
//! rectangles, pictures, text in the public-domain 8x8 bitmap font of the `font8x8` crate, and axes
//! with round-numbered ticks.

use crate::model::InputShape;
use image::{Rgb, RgbImage};
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

pub type Colour = [u8; 3];

pub const BLACK: Colour = [0, 0, 0];
pub const GREY: Colour = [110, 110, 110];
pub const LIGHT_GREY: Colour = [225, 225, 225];
pub const WHITE: Colour = [255, 255, 255];
pub const GREEN: Colour = [24, 150, 60];
pub const RED: Colour = [214, 39, 40];
/// matplotlib's "tab10" colours, the ones Keras and PyTorch users' plots have.
pub const PALETTE: [Colour; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Pixels per glyph side at scale 1.
pub const GLYPH: u32 = 8;

pub struct Canvas {
    pub image: RgbImage,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas { image: RgbImage::from_pixel(width, height, Rgb(WHITE)) }
    }

    /// Mixes `colour` into pixel (x, y) with weight `alpha`; outside the canvas, nothing.
    pub fn blend(&mut self, x: i64, y: i64, colour: Colour, alpha: f32) {
        if x < 0 || y < 0 || x >= self.image.width() as i64 || y >= self.image.height() as i64 || alpha <= 0.0 {
            return;
        }
        let a = alpha.min(1.0);
        let p = self.image.get_pixel_mut(x as u32, y as u32);
        for (v, &c) in p.0.iter_mut().zip(&colour) {
            *v = (*v as f32 * (1.0 - a) + c as f32 * a).round() as u8;
        }
    }

    /// Fills the pixels whose centres lie in [x0, x1) x [y0, y1).
    pub fn fill_rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, colour: Colour, alpha: f32) {
        for y in y0.min(y1).round() as i64..y0.max(y1).round() as i64 {
            for x in x0.min(x1).round() as i64..x0.max(x1).round() as i64 {
                self.blend(x, y, colour, alpha);
            }
        }
    }

    /// The outline of a rectangle, `width` pixels thick, inside [x0, x1) x [y0, y1).
    pub fn frame(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, colour: Colour, width: f32) {
        self.fill_rect(x0, y0, x1, y0 + width, colour, 1.0);
        self.fill_rect(x0, y1 - width, x1, y1, colour, 1.0);
        self.fill_rect(x0, y0 + width, x0 + width, y1 - width, colour, 1.0);
        self.fill_rect(x1 - width, y0 + width, x1, y1 - width, colour, 1.0);
    }

    /// A segment `width` pixels wide, anti-aliased: each pixel is covered by how far its centre is from
    /// the segment.
    pub fn line(&mut self, (x0, y0): (f32, f32), (x1, y1): (f32, f32), colour: Colour, width: f32) {
        let reach = width / 2.0 + 1.0;
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        for y in (y0.min(y1) - reach).floor() as i64..=(y0.max(y1) + reach).ceil() as i64 {
            for x in (x0.min(x1) - reach).floor() as i64..=(x0.max(x1) + reach).ceil() as i64 {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let t = if len2 == 0.0 { 0.0 } else { (((px - x0) * dx + (py - y0) * dy) / len2).clamp(0.0, 1.0) };
                let (cx, cy) = (x0 + t * dx - px, y0 + t * dy - py);
                let distance = (cx * cx + cy * cy).sqrt();
                self.blend(x, y, colour, (width / 2.0 + 0.5 - distance).clamp(0.0, 1.0));
            }
        }
    }

    pub fn polyline(&mut self, points: &[(f32, f32)], colour: Colour, width: f32) {
        for w in points.windows(2) {
            self.line(w[0], w[1], colour, width);
        }
    }

    /// A vertical dashed line from y0 to y1.
    pub fn dashed_vline(&mut self, x: f32, y0: f32, y1: f32, colour: Colour, width: f32) {
        let mut y = y0.min(y1);
        while y < y0.max(y1) {
            self.line((x, y), (x, (y + 6.0).min(y0.max(y1))), colour, width);
            y += 10.0;
        }
    }

    /// A filled disc, its edge anti-aliased.
    pub fn disc(&mut self, cx: f32, cy: f32, radius: f32, colour: Colour, alpha: f32) {
        for y in (cy - radius - 1.0).floor() as i64..=(cy + radius + 1.0).ceil() as i64 {
            for x in (cx - radius - 1.0).floor() as i64..=(cx + radius + 1.0).ceil() as i64 {
                let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                self.blend(x, y, colour, alpha * (radius + 0.5 - d).clamp(0.0, 1.0));
            }
        }
    }

    /// The width of `text` at `scale`, in pixels.
    pub fn text_width(text: &str, scale: u32) -> f32 {
        (text.chars().count() as u32 * GLYPH * scale) as f32
    }

    /// `text` with its top-left corner at (x, y); characters beyond Latin-1 show as '?'.
    pub fn text(&mut self, x: f32, y: f32, text: &str, colour: Colour, scale: u32) {
        self.glyphs(x, y, text, colour, scale, false);
    }

    /// `text` turned a quarter to the left (reading upwards), its bottom-left corner at (x, y).
    pub fn text_up(&mut self, x: f32, y: f32, text: &str, colour: Colour, scale: u32) {
        self.glyphs(x, y, text, colour, scale, true);
    }

    fn glyphs(&mut self, x: f32, y: f32, text: &str, colour: Colour, scale: u32, up: bool) {
        let (x, y, s) = (x.round() as i64, y.round() as i64, scale as i64);
        for (i, ch) in text.chars().enumerate() {
            let glyph = glyph(ch);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    // Bit 0 is the glyph's leftmost pixel.
                    if bits >> col & 1 == 0 {
                        continue;
                    }
                    let along = i as i64 * 8 * s + col * s;
                    for dy in 0..s {
                        for dx in 0..s {
                            let (px, py) = if up {
                                (x + row as i64 * s + dy, y - along - dx)
                            } else {
                                (x + along + dx, y + row as i64 * s + dy)
                            };
                            self.blend(px, py, colour, 1.0);
                        }
                    }
                }
            }
        }
    }

    /// A picture of `shape` (1 or 3 bytes per pixel), each pixel drawn as a `scale` x `scale` square.
    pub fn picture(&mut self, x: u32, y: u32, pixels: &[u8], shape: InputShape, scale: u32) {
        let (width, height, channels) = (shape.w, shape.h, shape.c);
        for py in 0..height {
            for px in 0..width {
                let v = &pixels[(py * width + px) * channels..(py * width + px + 1) * channels];
                let colour = if channels == 1 { [v[0]; 3] } else { [v[0], v[1], v[2]] };
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (cx, cy) = (x + px as u32 * scale + dx, y + py as u32 * scale + dy);
                        if cx < self.image.width() && cy < self.image.height() {
                            self.image.put_pixel(cx, cy, Rgb(colour));
                        }
                    }
                }
            }
        }
    }

    /// Writes the canvas as a PNG file, atomically.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut bytes = Vec::new();
        self.image
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
        crate::checkpoint::write_atomically(path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// The 8x8 bitmap of `ch`: ASCII and the Latin-1 supplement (accented letters), else '?'.
fn glyph(ch: char) -> [u8; 8] {
    match ch as u32 {
        c @ 0..=0x7f => font8x8::legacy::BASIC_LEGACY[c as usize],
        c @ 0xa0..=0xff => font8x8::legacy::LATIN_LEGACY[(c - 0xa0) as usize],
        _ => font8x8::legacy::BASIC_LEGACY['?' as usize],
    }
}

/// About `target` round tick values (steps of 1, 2 or 5 times a power of ten) covering [min, max].
pub fn nice_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    if max.partial_cmp(&min) != Some(std::cmp::Ordering::Greater) {
        return vec![min];
    }
    let rough = (max - min) / target.max(1) as f64;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|&s| s >= rough).unwrap_or(10.0 * power);
    let first = (min / step).ceil() as i64;
    let last = (max / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A tick's label with as many decimals as the step between ticks needs.
fn tick_label(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10()).ceil() as usize };
    format!("{value:.decimals$}")
}

/// A chart's plotting area on the canvas and the data ranges it shows.
pub struct Axes {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
    pub x: (f64, f64),
    pub y: (f64, f64),
    /// Ticks on x at whole numbers only (epochs).
    pub whole_x: bool,
}

impl Axes {
    pub fn px(&self, x: f64) -> f32 {
        self.left + ((x - self.x.0) / (self.x.1 - self.x.0)) as f32 * (self.right - self.left)
    }

    pub fn py(&self, y: f64) -> f32 {
        self.bottom - ((y - self.y.0) / (self.y.1 - self.y.0)) as f32 * (self.bottom - self.top)
    }

    /// Grid, frame, ticks and their labels, the axis titles and the chart's title.
    pub fn draw(&self, canvas: &mut Canvas, title: &str, x_title: &str, y_title: &str) {
        let mut xs = nice_ticks(self.x.0, self.x.1, 6);
        if self.whole_x {
            xs.retain(|x| x.fract() == 0.0);
            if xs.is_empty() {
                xs = vec![((self.x.0 + self.x.1) / 2.0).round()];
            }
        }
        let ys = nice_ticks(self.y.0, self.y.1, 6);
        let x_step = if xs.len() > 1 { xs[1] - xs[0] } else { 1.0 };
        let y_step = if ys.len() > 1 { ys[1] - ys[0] } else { 1.0 };
        for &x in &xs {
            canvas.line((self.px(x), self.top), (self.px(x), self.bottom), LIGHT_GREY, 1.0);
            let label = tick_label(x, x_step);
            canvas.text(self.px(x) - Canvas::text_width(&label, 1) / 2.0, self.bottom + 6.0, &label, GREY, 1);
        }
        for &y in &ys {
            canvas.line((self.left, self.py(y)), (self.right, self.py(y)), LIGHT_GREY, 1.0);
            let label = tick_label(y, y_step);
            canvas.text(self.left - 6.0 - Canvas::text_width(&label, 1), self.py(y) - 4.0, &label, GREY, 1);
        }
        canvas.frame(self.left - 1.0, self.top - 1.0, self.right + 1.0, self.bottom + 1.0, GREY, 1.0);
        let mid_x = (self.left + self.right) / 2.0;
        canvas.text(mid_x - Canvas::text_width(title, 2) / 2.0, self.top - 30.0, title, BLACK, 2);
        canvas.text(mid_x - Canvas::text_width(x_title, 1) / 2.0, self.bottom + 22.0, x_title, BLACK, 1);
        let mid_y = (self.top + self.bottom) / 2.0;
        canvas.text_up(self.left - 56.0, mid_y + Canvas::text_width(y_title, 1) / 2.0, y_title, BLACK, 1);
    }

    /// A key in the top-right (or bottom-right) corner of the plotting area: a colour swatch and a label
    /// per entry.
    pub fn legend(&self, canvas: &mut Canvas, entries: &[(&str, Colour)], top: bool) {
        let width = entries.iter().map(|(l, _)| Canvas::text_width(l, 1)).fold(0.0, f32::max) + 34.0;
        let height = 8.0 + 16.0 * entries.len() as f32;
        let (x, y) = (self.right - width - 8.0, if top { self.top + 8.0 } else { self.bottom - 8.0 - height });
        canvas.fill_rect(x, y, x + width, y + height, WHITE, 0.85);
        canvas.frame(x, y, x + width, y + height, LIGHT_GREY, 1.0);
        for (i, (label, colour)) in entries.iter().enumerate() {
            let row = y + 6.0 + 16.0 * i as f32;
            canvas.fill_rect(x + 6.0, row + 1.0, x + 22.0, row + 9.0, *colour, 1.0);
            canvas.text(x + 28.0, row + 1.0, label, BLACK, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(nice_ticks(1.0, 70.0, 6), vec![20.0, 40.0, 60.0], "a step of 20 (10 would give 7 ticks for 6 wanted)");
        assert_eq!(nice_ticks(-3.0, 250.0, 5), vec![0.0, 100.0, 200.0]);
        assert_eq!(nice_ticks(3.0, 3.0, 5), vec![3.0]);
        assert_eq!(tick_label(0.15, 0.05), "0.15");
        assert_eq!(tick_label(20.0, 10.0), "20");
    }

    #[test]
    fn accented_letters_have_their_own_glyphs() {
        assert_ne!(glyph('é'), glyph('?'));
        assert_ne!(glyph('é'), glyph('e'));
        assert_eq!(glyph('日'), glyph('?'), "beyond Latin-1: a question mark");
    }

    #[test]
    fn text_lands_where_it_is_written() {
        let mut canvas = Canvas::new(40, 20);
        canvas.text(2.0, 3.0, "T", BLACK, 1);
        let dark: Vec<(u32, u32)> = canvas.image.enumerate_pixels().filter(|(_, _, p)| p.0 == BLACK).map(|(x, y, _)| (x, y)).collect();
        assert!(!dark.is_empty());
        assert!(dark.iter().all(|&(x, y)| (2..10).contains(&x) && (3..11).contains(&y)), "{dark:?}");
        // The T's bar is its top row: its widest.
        let top = dark.iter().map(|p| p.1).min().unwrap();
        assert!(dark.iter().filter(|p| p.1 == top).count() >= 5);
    }
}
