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

/// What a walk of a folder found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every picture, sorted by path.
    pub files: Vec<ImageFile>,
    /// Paths not taken because they lead (through a link) to a folder or picture already met: a link
    /// loop is walked once, and a picture reached twice counts once.
    pub repeated: Vec<PathBuf>,
}

/// The note a command prints when links led to `repeated` paths already met.
pub fn repeat_note(repeated: &[PathBuf]) -> Option<String> {
    let first = repeated.first()?;
    Some(format!(
        "{} path{} under the folder lead (through links) to a folder or picture already met and were not followed, e.g. {}",
        repeated.len(),
        if repeated.len() == 1 { "" } else { "s" },
        first.display()
    ))
}

/// What makes two paths one file: its device and inode where there are such, else its canonical path.
#[cfg(unix)]
type FileIdentity = (u64, u64);
#[cfg(not(unix))]
type FileIdentity = PathBuf;

#[cfg(unix)]
fn identity(path: &Path) -> std::io::Result<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}
#[cfg(not(unix))]
fn identity(path: &Path) -> std::io::Result<FileIdentity> {
    std::fs::canonicalize(path)
}

/// Every picture under `root`, sorted by path; hidden files and folders (names starting with '.') are
/// skipped, as are files whose names do not end in an image extension. Links are followed, but never
/// into a folder already walked, and a picture reached by two paths is listed once (by the first path
/// in sorted order), so a link loop neither hangs the walk nor multiplies pictures.
pub fn list_images(root: &Path) -> Result<Listing, DataError> {
    let mut listing = Listing::default();
    let mut seen = std::collections::HashSet::new();
    seen.insert(identity(root).map_err(|e| DataError::new(root, format!("cannot list: {e}")))?);
    walk(root, root, &mut seen, &mut listing)?;
    listing.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
}

fn walk(root: &Path, folder: &Path, seen: &mut std::collections::HashSet<FileIdentity>, listing: &mut Listing) -> Result<(), DataError> {
    let cannot_list = |e: std::io::Error| DataError::new(folder, format!("cannot list: {e}"));
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(cannot_list)? {
        let entry = entry.map_err(cannot_list)?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            entries.push(entry.path());
        }
    }
    entries.sort();
    for path in entries {
        let is_dir = path.is_dir();
        if !is_dir && !is_image_name(&path) {
            continue;
        }
        // A dangling link has no identity: it is listed, and reported when it cannot be read.
        if let Ok(id) = identity(&path) {
            if !seen.insert(id) {
                listing.repeated.push(path);
                continue;
            }
        }
        if is_dir {
            walk(root, &path, seen, listing)?;
        } else {
            let class = path
                .strip_prefix(root)
                .ok()
                .filter(|rel| rel.components().count() > 1)
                .and_then(|rel| rel.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned());
            listing.files.push(ImageFile { path, class });
        }
    }
    Ok(())
}

pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}
