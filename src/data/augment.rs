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

/// In words, as a run prints it: "flipped left-right at random, shifted up to 2 pixels".
impl std::fmt::Display for Augment {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.flip {
            parts.push("flipped left-right at random".to_string());
        }
        if self.shift > 0 {
            parts.push(format!("shifted up to {} pixels", self.shift));
        }
        if self.brightness > 0.0 {
            parts.push(format!("brightness +-{}", self.brightness));
        }
        if self.contrast > 0.0 {
            parts.push(format!("contrast x(1 +- {})", self.contrast));
        }
        f.write_str(&parts.join(", "))
    }
}
