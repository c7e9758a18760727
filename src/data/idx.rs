//! The IDX format (LeCun's MNIST files): two zero bytes, a type code (0x08 = unsigned bytes), the number
//! of dimensions, each dimension as a big-endian u32, then the data. Files may be gzip-compressed.

use super::DataError;
use flate2::read::GzDecoder;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Refuse files that claim more than this many bytes of data, before reading any of it.
const MAX_DATA_BYTES: u64 = 1 << 32;

#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, checking its header against its contents. Memory grows only as
/// data actually arrives, so a header claiming absurd dimensions cannot make it allocate gigabytes.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    read_idx_prefix(path, None)
}

/// The memory this machine has free for new data (Linux's MemAvailable), when `bytes` is more than 80%
/// of it; None when it fits, or the machine does not say.
pub fn beyond_free_memory(bytes: u64) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let free = line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024;
    (bytes > free / 10 * 8).then_some(free)
}

/// As [`read_idx`], but of the first `items` entries along the first dimension at most: the rest of the
/// file is not read (nor decompressed), so a limit keeps a huge or hostile file cheap. What is read
/// must fit in the memory the machine has free.
pub fn read_idx_prefix(path: &Path, items: Option<usize>) -> Result<IdxArray, DataError> {
    let file = File::open(path).map_err(|e| DataError::new(path, format!("cannot open: {e}")))?;
    parse_idx_prefix(BufReader::new(file), path, items)
}

/// As [`read_idx_prefix`], from a reader (a file, or bytes a page fetched); `path` names it in errors.
pub fn parse_idx_prefix(mut reader: impl std::io::BufRead, path: &Path, items: Option<usize>) -> Result<IdxArray, DataError> {
    let err = |message: String| DataError::new(path, message);
    let mut gzip_magic = [0u8; 2];
    let is_gzip = {
        let buffered = std::io::BufRead::fill_buf(&mut reader).map_err(|e| err(format!("cannot read: {e}")))?;
        if buffered.len() >= 2 {
            gzip_magic.copy_from_slice(&buffered[..2]);
        }
        gzip_magic == [0x1f, 0x8b]
    };
    let mut source: Box<dyn Read> = if is_gzip { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) };
    let what = if is_gzip { "the decompressed data" } else { "the file" };
    let read_error = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            err(format!("truncated: {what} ends inside the IDX header"))
        } else {
            err(format!("corrupt or unreadable ({e})"))
        }
    };

    let mut magic = [0u8; 4];
    source.read_exact(&mut magic).map_err(read_error)?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(err(format!(
            "not an IDX file: it starts with bytes {:02x} {:02x}, not 00 00",
            magic[0], magic[1]
        )));
    }
    if magic[2] != 0x08 {
        return Err(err(format!("IDX data type 0x{:02x} is not supported: only unsigned bytes (0x08)", magic[2])));
    }
    let ndims = magic[3] as usize;
    if ndims == 0 {
        return Err(err("the IDX header has zero dimensions".into()));
    }
    let mut dims = Vec::with_capacity(ndims);
    for _ in 0..ndims {
        let mut d = [0u8; 4];
        source.read_exact(&mut d).map_err(read_error)?;
        dims.push(u32::from_be_bytes(d) as usize);
    }
    let expected = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).filter(|&n| n <= MAX_DATA_BYTES);
    let Some(mut expected) = expected else {
        return Err(err(format!("absurd dimensions {dims:?}: more than {MAX_DATA_BYTES} bytes of data")));
    };
    let whole = match items {
        Some(items) if items < dims[0] => {
            expected = expected / dims[0] as u64 * items as u64;
            dims[0] = items;
            false
        }
        _ => true,
    };
    if let Some(free) = beyond_free_memory(expected) {
        return Err(err(format!(
            "its header {dims:?} promises {:.1} GiB of data, more than this machine has free ({:.1} GiB): read fewer images (--train-limit, --test-limit)",
            expected as f64 / (1u64 << 30) as f64,
            free as f64 / (1u64 << 30) as f64
        )));
    }
    let mut data = Vec::new();
    (&mut source)
        .take(expected)
        .read_to_end(&mut data)
        .map_err(|e| err(format!("corrupt or unreadable after {} of {expected} data bytes ({e})", data.len())))?;
    if (data.len() as u64) < expected {
        return Err(err(format!(
            "truncated: the header {dims:?} promises {expected} data bytes, {what} holds {}",
            data.len()
        )));
    }
    if !whole {
        return Ok(IdxArray { dims, data });
    }
    let mut extra = [0u8; 1];
    match source.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err(err(format!("{what} holds more than the {expected} data bytes its header {dims:?} promises"))),
        Err(e) => return Err(err(format!("corrupt or unreadable at its end ({e})"))),
    }
    Ok(IdxArray { dims, data })
}
