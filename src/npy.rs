//! NumPy's `.npy` format, written (version 1.0) and read (1.0 to 3.0) by hand: a magic string, a
//! Python-literal header giving dtype, order and shape, then the raw little-endian data. `numpy.load`
//! reads what `npy_f32` writes; `read_f32` reads float32 arrays in C order, as `numpy.save` writes them.

/// The bytes of a C-ordered float32 array of `shape` holding `values`.
pub fn npy_f32(values: &[f32], shape: &[usize]) -> Vec<u8> {
    assert_eq!(values.len(), shape.iter().product::<usize>(), "values for the shape");
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    // A one-dimensional shape is written "(n,)", as Python writes a 1-tuple.
    let shape_text = if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces and ended by a newline
    // to a multiple of 64 bytes so the data is aligned.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.div_ceil(64) * 64 - unpadded));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    bytes
}

/// A float32 array read from `.npy` bytes: its shape and values (C order).
pub fn read_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes.get(start..start + header_len).ok_or("the .npy header is cut short")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or("the .npy header has no 'descr'")?;
    if !(descr.starts_with("'<f4'") || descr.starts_with("'float32'")) {
        return Err(format!("holds {}, not little-endian float32 ('<f4')", descr.split([',', '}']).next().unwrap_or(descr).trim()));
    }
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("is in Fortran order; save it in C order".into());
    }
    let shape_text = field("shape").ok_or("the .npy header has no 'shape'")?;
    let inner = shape_text.strip_prefix('(').and_then(|t| t.split_once(')')).map(|(t, _)| t).ok_or("the .npy shape does not parse")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<usize>().map_err(|_| format!("the .npy shape ({inner}) does not parse")))
        .collect::<Result<Vec<usize>, String>>()?;
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("the .npy shape is too large")?;
    let data = &bytes[start + header_len..];
    if count.checked_mul(4) != Some(data.len()) {
        return Err(format!("its shape {shape:?} needs {} bytes of data, the file has {}", count.saturating_mul(4), data.len()));
    }
    Ok((shape, data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_data_as_numpy_writes_them() {
        let bytes = npy_f32(&[1.0, -2.5, 3.0, 0.0, 5.0, 6.0], &[2, 3]);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "data aligned to 64 bytes");
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), "{header}");
        assert!(header.ends_with('\n'));
        let data: Vec<f32> = bytes[10 + header_len..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(data, [1.0, -2.5, 3.0, 0.0, 5.0, 6.0]);
        assert_eq!(read_f32(&bytes).unwrap(), (vec![2, 3], vec![1.0, -2.5, 3.0, 0.0, 5.0, 6.0]));
        assert!(read_f32(&bytes[..bytes.len() - 4]).unwrap_err().contains("needs 24 bytes"));
        assert!(read_f32(b"PK\x03\x04 not numpy").unwrap_err().contains("magic"));
        let one = npy_f32(&[7.0], &[1]);
        assert!(std::str::from_utf8(&one[10..one.len() - 4]).unwrap().contains("'shape': (1,)"));
    }
}
