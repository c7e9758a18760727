//! Folders of image files: every picture under a folder, in a fixed order, with the sub-folder it lies
//! in (its class, in the one-folder-per-class layout).

use super::DataError;
use std::path::{Path, PathBuf};

/// The file name endings taken as pictures (case-insensitive); other files are not looked at.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"];

#[derive(Clone, Debug, PartialEq)]
pub struct ImageFile {
    pub path: PathBuf,
    /// The first folder under the root it lies in, if any: its class in the one-folder-per-class layout.
    pub class: Option<String>,
}

/// Every picture under `root`, sorted by path; hidden files and folders (names starting with '.') are
/// skipped, as are files whose names do not end in an image extension.
pub fn list_images(root: &Path) -> Result<Vec<ImageFile>, DataError> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|e| DataError::new(&folder, format!("cannot list: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| DataError::new(&folder, format!("cannot list: {e}")))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else if is_image_name(&path) {
                let class = path
                    .strip_prefix(root)
                    .ok()
                    .filter(|rel| rel.components().count() > 1)
                    .and_then(|rel| rel.components().next())
                    .map(|c| c.as_os_str().to_string_lossy().into_owned());
                files.push(ImageFile { path, class });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}
