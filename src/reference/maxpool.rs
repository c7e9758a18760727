use super::Real;
use crate::dims::PoolDims;

/// Index into x of the first maximum, in row-major order, of output (n, oy, ox, c)'s 2x2 window.
fn window_argmax<T: Real>(x: &[T], d: &PoolDims, n: usize, oy: usize, ox: usize, c: usize) -> usize {
    let at = |wy: usize, wx: usize| ((n * d.in_h + 2 * oy + wy) * d.in_w + 2 * ox + wx) * d.channels + c;
    let mut best = at(0, 0);
    for (wy, wx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        if x[at(wy, wx)] > x[best] {
            best = at(wy, wx);
        }
    }
    best
}

/// 2x2 max-pooling, stride 2; an odd last row/column is dropped.
pub fn maxpool2_forward<T: Real>(x: &[T], d: &PoolDims) -> Vec<T> {
    let mut y = Vec::with_capacity(d.output_len());
    for n in 0..d.batch {
        for oy in 0..d.out_h() {
            for ox in 0..d.out_w() {
                for c in 0..d.channels {
                    y.push(x[window_argmax(x, d, n, oy, ox, c)]);
                }
            }
        }
    }
    y
}

/// Each window's gradient goes to its first maximum; every other input gets zero.
pub fn maxpool2_backward<T: Real>(dy: &[T], x: &[T], d: &PoolDims) -> Vec<T> {
    let mut dx = vec![T::zero(); d.input_len()];
    let mut o = 0;
    for n in 0..d.batch {
        for oy in 0..d.out_h() {
            for ox in 0..d.out_w() {
                for c in 0..d.channels {
                    dx[window_argmax(x, d, n, oy, ox, c)] = dy[o];
                    o += 1;
                }
            }
        }
    }
    dx
}
