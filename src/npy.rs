//! NumPy's `.npy` format (version 1.0), written by hand: a magic string, a Python-literal header
//! giving dtype, order and shape, then the raw little-endian data. `numpy.load` reads it.

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
        let one = npy_f32(&[7.0], &[1]);
        assert!(std::str::from_utf8(&one[10..one.len() - 4]).unwrap().contains("'shape': (1,)"));
    }
}
