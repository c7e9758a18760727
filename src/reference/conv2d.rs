use super::{grad_z, Real};
use crate::dims::Conv2dDims;

fn kernel_index(d: &Conv2dDims, ky: usize, kx: usize, ci: usize, co: usize) -> usize {
    ((ky * d.kernel_w + kx) * d.in_c + ci) * d.out_c + co
}

/// The input pixel that kernel tap (ky, kx) reads for output (oy, ox), or None in the zero padding.
fn input_pixel(d: &Conv2dDims, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
    let iy = (oy + ky).checked_sub(d.pad_top())?;
    let ix = (ox + kx).checked_sub(d.pad_left())?;
    (iy < d.in_h && ix < d.in_w).then_some((iy, ix))
}

/// y[n, oy, ox, co] = act(sum over (ky, kx, ci) of x[n, oy + ky - pad_top, ox + kx - pad_left, ci]
///                        * w[ky, kx, ci, co] + b[co]).  `wb` is the kernel followed by the bias.
/// Products accumulate in this order with fused multiply-adds, then the bias is added: the order and
/// the roundings of oneDNN under Keras. Max-pooling and ReLU make discrete choices on these values, so a
/// near-tie in a pooling window goes the same way as in Keras only if they are computed the same way.
pub fn conv2d_forward<T: Real>(x: &[T], wb: &[T], d: &Conv2dDims) -> Vec<T> {
    let (out_h, out_w) = (d.out_h(), d.out_w());
    let bias = &wb[d.kernel_len()..];
    let mut y = vec![T::zero(); d.output_len()];
    for n in 0..d.batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for co in 0..d.out_c {
                    let mut acc = T::zero();
                    for ky in 0..d.kernel_h {
                        for kx in 0..d.kernel_w {
                            let Some((iy, ix)) = input_pixel(d, oy, ox, ky, kx) else { continue };
                            for ci in 0..d.in_c {
                                let xv = x[((n * d.in_h + iy) * d.in_w + ix) * d.in_c + ci];
                                acc = xv.mul_add(wb[kernel_index(d, ky, kx, ci, co)], acc);
                            }
                        }
                    }
                    acc += bias[co];
                    if d.relu {
                        acc = acc.max(T::zero());
                    }
                    y[((n * out_h + oy) * out_w + ox) * d.out_c + co] = acc;
                }
            }
        }
    }
    y
}

/// The gradient with respect to the input, scattered from each output through the kernel taps.
pub fn conv2d_backward_input<T: Real>(dy: &[T], y: &[T], wb: &[T], d: &Conv2dDims) -> Vec<T> {
    let (out_h, out_w) = (d.out_h(), d.out_w());
    let mut dx = vec![T::zero(); d.input_len()];
    for n in 0..d.batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for co in 0..d.out_c {
                    let o = ((n * out_h + oy) * out_w + ox) * d.out_c + co;
                    let g = grad_z(dy[o], y[o], d.relu);
                    for ky in 0..d.kernel_h {
                        for kx in 0..d.kernel_w {
                            let Some((iy, ix)) = input_pixel(d, oy, ox, ky, kx) else { continue };
                            for ci in 0..d.in_c {
                                let i = ((n * d.in_h + iy) * d.in_w + ix) * d.in_c + ci;
                                dx[i] = g.mul_add(wb[kernel_index(d, ky, kx, ci, co)], dx[i]);
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

/// The gradient of the kernel then the bias. The batch is `branches` equal parts (the twin's towers):
/// each part's sum is taken on its own and the parts are added, as Keras adds a shared layer's gradients.
/// These sums run over every output position of the batch (tens of thousands of terms), so the
/// reference accumulates them in f64: it is the accurate side of every comparison.
pub fn conv2d_backward_weight<T: Real>(x: &[T], dy: &[T], y: &[T], d: &Conv2dDims, branches: usize) -> Vec<T> {
    let (out_h, out_w) = (d.out_h(), d.out_w());
    let per_branch = d.batch / branches;
    let mut total = vec![0.0f64; d.param_len()];
    for branch in 0..branches {
        let mut dwb = vec![0.0f64; d.param_len()];
        for n in branch * per_branch..(branch + 1) * per_branch {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    for co in 0..d.out_c {
                        let o = ((n * out_h + oy) * out_w + ox) * d.out_c + co;
                        let g = grad_z(dy[o], y[o], d.relu).to_f64();
                        dwb[d.kernel_len() + co] += g;
                        for ky in 0..d.kernel_h {
                            for kx in 0..d.kernel_w {
                                let Some((iy, ix)) = input_pixel(d, oy, ox, ky, kx) else { continue };
                                for ci in 0..d.in_c {
                                    let xv = x[((n * d.in_h + iy) * d.in_w + ix) * d.in_c + ci].to_f64();
                                    dwb[kernel_index(d, ky, kx, ci, co)] += xv * g;
                                }
                            }
                        }
                    }
                }
            }
        }
        for (t, v) in total.iter_mut().zip(dwb) {
            *t += v;
        }
    }
    total.into_iter().map(T::from_f64).collect()
}
