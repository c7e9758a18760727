use super::{grad_z, Real};
use crate::dims::DenseDims;

/// y[n, o] = act(sum over i of x[n, i] * W[i, o] + b[o]).  `wb` is the kernel [in, out] then the bias.
pub fn dense_forward<T: Real>(x: &[T], wb: &[T], d: &DenseDims) -> Vec<T> {
    let mut y = vec![T::zero(); d.batch * d.out_dim];
    for n in 0..d.batch {
        for o in 0..d.out_dim {
            let mut acc = T::zero();
            for i in 0..d.in_dim {
                acc = x[n * d.in_dim + i].mul_add(wb[i * d.out_dim + o], acc);
            }
            acc += wb[d.kernel_len() + o];
            if d.relu {
                acc = acc.max(T::zero());
            }
            y[n * d.out_dim + o] = acc;
        }
    }
    y
}

/// dx[n, i] = sum over o of dz[n, o] * W[i, o]
pub fn dense_backward_input<T: Real>(dy: &[T], y: &[T], wb: &[T], d: &DenseDims) -> Vec<T> {
    let mut dx = vec![T::zero(); d.batch * d.in_dim];
    for n in 0..d.batch {
        for i in 0..d.in_dim {
            let mut acc = T::zero();
            for o in 0..d.out_dim {
                let k = n * d.out_dim + o;
                acc = grad_z(dy[k], y[k], d.relu).mul_add(wb[i * d.out_dim + o], acc);
            }
            dx[n * d.in_dim + i] = acc;
        }
    }
    dx
}

/// dW[i, o] = sum over n of x[n, i] * dz[n, o], then db[o] = sum over n of dz[n, o]; each of the
/// `branches` equal parts of the batch is summed on its own, then the parts are added. Accumulated in
/// f64, like the convolution's weight gradient.
pub fn dense_backward_weight<T: Real>(x: &[T], dy: &[T], y: &[T], d: &DenseDims, branches: usize) -> Vec<T> {
    let rows = d.batch / branches;
    let mut total = vec![0.0f64; d.param_len()];
    for branch in 0..branches {
        let mut dwb = vec![0.0f64; d.param_len()];
        for n in branch * rows..(branch + 1) * rows {
            for o in 0..d.out_dim {
                let k = n * d.out_dim + o;
                let g = grad_z(dy[k], y[k], d.relu).to_f64();
                for i in 0..d.in_dim {
                    dwb[i * d.out_dim + o] += x[n * d.in_dim + i].to_f64() * g;
                }
                dwb[d.kernel_len() + o] += g;
            }
        }
        for (t, v) in total.iter_mut().zip(dwb) {
            *t += v;
        }
    }
    total.into_iter().map(T::from_f64).collect()
}
