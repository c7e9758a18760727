//! Augmentation's settings; the GPU applies them as it gathers a batch (`gather.wgsl`), the reference
//! in `reference::gather`.

/// Random changes to each training image, drawn afresh every step (evaluation sees the images as they
/// are): a horizontal flip, a shift of up to `shift` pixels each way (edges repeated), a contrast
/// factor in [1 - contrast, 1 + contrast] about mid-grey, then a brightness offset in
/// [-brightness, brightness], the result kept in [0, 1]. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    pub flip: bool,
    pub shift: u32,
    pub brightness: f32,
    pub contrast: f32,
}

impl Augment {
    pub fn is_off(&self) -> bool {
        !self.flip && self.shift == 0 && self.brightness == 0.0 && self.contrast == 0.0
    }
}
