//! What a command reads from disk, read with bounds: only regular files (a FIFO would block forever, a
//! device such as /dev/zero never ends), and a file's size checked before it is read whole, so that a
//! hostile or mistaken path ends in a message naming it rather than a hang or the machine's memory.

use std::io::Read;
use std::path::Path;

/// The most bytes a picture file may hold: far beyond any real photograph (a 100-megapixel JPEG is
/// ~50 MB), far below what would strain memory.
pub const MOST_PICTURE_BYTES: u64 = 256 << 20;

/// The most bytes a text file a command reads whole (a pairs list, an embed index, the tuning cache)
/// may hold: millions of lines.
pub const MOST_TEXT_BYTES: u64 = 256 << 20;

/// What `path` is when it is not a regular file (following links), in words; None for a regular file.
pub fn not_regular(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(path).ok()?.file_type();
    Some(if kind.is_file() {
        return None;
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

/// Refuses `path` unless it is a regular file (a link to one counts) of at most `most` bytes; `what`
/// names it in the message ("picture", "pairs list"). Returns its size.
pub fn check_file(path: &Path, what: &str, most: u64) -> Result<u64, String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| format!("{shown}: cannot open: {e}"))?;
    if let Some(kind) = not_regular(path) {
        return Err(format!("{shown}: is {kind}, not a regular file; a {what} must be a file"));
    }
    let size = metadata.len();
    if size > most {
        return Err(format!("{shown}: {size} bytes, more than a {what} may hold ({} MiB); is it the right file?", most >> 20));
    }
    Ok(size)
}

/// The whole of `path`, a regular file of at most `most` bytes. The bytes read stop at the bound even
/// if the file grows while it is read.
pub fn read_bounded(path: &Path, what: &str, most: u64) -> Result<Vec<u8>, String> {
    let size = check_file(path, what, most)?;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(most + 1).read_to_end(&mut bytes).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if bytes.len() as u64 > most {
        return Err(format!("{}: grew past {} MiB while it was read", path.display(), most >> 20));
    }
    Ok(bytes)
}

/// A text file read whole within `most` bytes, as UTF-8.
pub fn read_text(path: &Path, what: &str, most: u64) -> Result<String, String> {
    String::from_utf8(read_bounded(path, what, most)?).map_err(|_| format!("{}: not text (UTF-8); a {what} is", path.display()))
}
