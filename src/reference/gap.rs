use super::Real;
use crate::dims::GapDims;

/// y[n, c] = mean over (y, x) of x[n, y, x, c]
pub fn gap_forward<T: Real>(x: &[T], d: &GapDims) -> Vec<T> {
    let area = d.h * d.w;
    let mut y = vec![T::zero(); d.output_len()];
    for n in 0..d.batch {
        for c in 0..d.channels {
            let mut acc = T::zero();
            for i in 0..area {
                acc += x[(n * area + i) * d.channels + c];
            }
            y[n * d.channels + c] = acc / T::from_f64(area as f64);
        }
    }
    y
}

/// Every position of a channel gets an equal share of its gradient.
pub fn gap_backward<T: Real>(dy: &[T], d: &GapDims) -> Vec<T> {
    let area = d.h * d.w;
    let mut dx = vec![T::zero(); d.input_len()];
    for n in 0..d.batch {
        for i in 0..area {
            for c in 0..d.channels {
                dx[(n * area + i) * d.channels + c] = dy[n * d.channels + c] / T::from_f64(area as f64);
            }
        }
    }
    dx
}
