//! Scale/min searches shared by the k-quant encoders.
//!
//! These follow the reference quantizers of ggml as candle-core ports them
//! (`make_qx_quants`, `make_qkx1_quants`, `make_q3_quants`,
//! `make_qkx3_quants`, `make_qp_quants`), because byte-identical output is
//! the contract: the same floats in the same order give the same bytes.

/// Round half away from zero, as candle's `nearest_int` does.
#[inline(always)]
pub fn nearest_int(v: f32) -> i32 {
    v.round() as i32
}

/// Symmetric search with `2*nmax` levels; writes `l[i] + nmax` into `ls`.
/// `rmse_type` 0 = plain, 1 = x²-weighted refinement (or `qw` if given).
pub fn make_qx_quants(nmax: i32, x: &[f32], ls: &mut [i8], rmse_type: i32, qw: Option<&[f32]>) -> f32 {
    let n = x.len();
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        ls[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    let q = |v: f32, is: f32| nearest_int(is * v).clamp(-nmax, nmax - 1);
    if rmse_type == 0 {
        for i in 0..n {
            ls[i] = (nmax + q(x[i], iscale)) as i8;
        }
        return 1.0 / iscale;
    }
    let weight_type = rmse_type % 2;
    let w = |i: usize| match qw {
        Some(qw) => qw[i],
        None if weight_type == 1 => x[i] * x[i],
        None => 1.0,
    };
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..n {
        let l = q(x[i], iscale);
        ls[i] = (l + nmax) as i8;
        let l = l as f32;
        sumlx += w(i) * x[i] * l;
        suml2 += w(i) * l * l;
    }
    let mut scale = sumlx / suml2;
    let mut best = scale * sumlx;
    for _ in 0..3 {
        let is = 1.0 / scale;
        let (mut slx, mut sl2, mut changed) = (0f32, 0f32, false);
        for i in 0..n {
            let l = q(x[i], is);
            if l + nmax != ls[i] as i32 {
                changed = true;
            }
            let lf = l as f32;
            slx += w(i) * x[i] * lf;
            sl2 += w(i) * lf * lf;
        }
        if !changed || sl2 == 0.0 || slx * slx <= best * sl2 {
            break;
        }
        for i in 0..n {
            ls[i] = (nmax + q(x[i], is)) as i8;
        }
        sumlx = slx;
        suml2 = sl2;
        scale = sumlx / suml2;
        best = scale * sumlx;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let wi = w(i);
            let l = ls[i] as i32 - nmax;
            let mut slx = sumlx - wi * x[i] * l as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - wi * l as f32 * l as f32;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l {
                    slx += wi * x[i] * new_l as f32;
                    sl2 += wi * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        ls[i] = (nmax + new_l) as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        scale = sumlx / suml2;
                        best = scale * sumlx;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if rmse_type < 3 {
        return scale;
    }
    for is in -4..4 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (mut slx, mut sl2) = (0f32, 0f32);
        for i in 0..n {
            let l = q(x[i], iscale) as f32;
            slx += w(i) * x[i] * l;
            sl2 += w(i) * l * l;
        }
        if sl2 > 0.0 && slx * slx > best * sl2 {
            for i in 0..n {
                ls[i] = (nmax + q(x[i], iscale)) as i8;
            }
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    scale
}

/// Asymmetric (scale, -min) search over `0..=nmax`, unweighted.
pub fn make_qkx1_quants(nmax: i32, ntry: usize, x: &[f32]) -> (f32, f32) {
    let n = x.len();
    let mut l = [0u8; 32];
    let min = x.iter().copied().min_by(|a, b| a.total_cmp(b)).unwrap_or(0.0);
    let max = x.iter().copied().max_by(|a, b| a.total_cmp(b)).unwrap_or(0.0);
    if max == min {
        return (0.0, 0.0);
    }
    let mut min = min.min(0.0);
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    for _ in 0..ntry {
        let mut sumlx = 0f32;
        let mut suml2 = 0i32;
        let mut changed = false;
        for (i, &v) in x.iter().enumerate() {
            let li = nearest_int(iscale * (v - min)).clamp(0, nmax);
            if li as u8 != l[i] {
                l[i] = li as u8;
                changed = true;
            }
            sumlx += (v - min) * li as f32;
            suml2 += li * li;
        }
        scale = sumlx / suml2 as f32;
        let sum: f32 = x.iter().zip(&l[..n]).map(|(&v, &li)| v - scale * li as f32).sum();
        min = sum / n as f32;
        if min > 0.0 {
            min = 0.0;
        }
        iscale = 1.0 / scale;
        if !changed {
            break;
        }
    }
    (scale, -min)
}

/// Q3_K's symmetric search (levels -nmax..nmax-1).
pub fn make_q3_quants(x: &[f32], nmax: i32, do_rmse: bool) -> f32 {
    let n = x.len();
    let mut l = [0i8; 32];
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let mut sumlx = 0f32;
        let mut suml2 = 0f32;
        for i in 0..n {
            let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            l[i] = li as i8;
            let w = x[i] * x[i];
            sumlx += w * x[i] * li as f32;
            suml2 += w * (li * li) as f32;
        }
        for _ in 0..5 {
            let mut n_changed = 0;
            for i in 0..n {
                let w = x[i] * x[i];
                let mut slx = sumlx - w * x[i] * l[i] as f32;
                if slx > 0.0 {
                    let li = l[i] as i32;
                    let mut sl2 = suml2 - w * (li * li) as f32;
                    let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != li {
                        slx += w * x[i] * new_l as f32;
                        sl2 += w * (new_l * new_l) as f32;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            l[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        return sumlx / suml2;
    }
    1.0 / iscale
}

/// Weighted asymmetric search with a grid of trial scales; returns (scale, -min).
pub fn make_qkx3_quants(nmax: i32, x: &[f32], weights: &[f32], rmin: f32, rdelta: f32, nstep: usize) -> (f32, f32) {
    let n = x.len();
    let mut l_aux = [0u8; 32];
    let mut min_val = x[0];
    let mut max_val = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min_val {
            min_val = x[i];
        }
        if x[i] > max_val {
            max_val = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min_val > 0.0 {
        min_val = 0.0;
    }
    if max_val <= min_val {
        return (0.0, -min_val);
    }
    let mut iscale = nmax as f32 / (max_val - min_val);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0f32;
    for i in 0..n {
        let lv = nearest_int(iscale * (x[i] - min_val)).clamp(0, nmax) as u8;
        let diff = scale * lv as f32 + min_val - x[i];
        best_mad += weights[i] * diff * diff;
    }
    if nstep < 1 {
        return (scale, -min_val);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max_val - min_val);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let lv = nearest_int(iscale * (x[i] - min_val)).clamp(0, nmax) as u8;
            l_aux[i] = lv;
            let w = weights[i];
            sum_l += w * lv as f32;
            sum_l2 += w * (lv as f32).powi(2);
            sum_xl += w * lv as f32 * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0f32;
            for i in 0..n {
                let diff = this_scale * l_aux[i] as f32 + this_min - x[i];
                mad += weights[i] * diff * diff;
            }
            if mad < best_mad {
                best_mad = mad;
                scale = this_scale;
                min_val = this_min;
            }
        }
    }
    (scale, -min_val)
}

/// Weighted search for a non-negative quantizer `0..=nmax` (the super-block
/// scales of the importance-weighted k-quants); fills `l`, returns the scale.
pub fn make_qp_quants(nmax: u8, x: &[f32], l: &mut [u8], qw: &[f32]) -> f32 {
    let max = x.iter().copied().fold(0.0, f32::max);
    if max == 0.0 {
        l.fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for (xi, li) in x.iter().zip(l.iter_mut()) {
        *li = nearest_int(iscale * xi) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse: f32 = x
        .iter()
        .zip(l.iter())
        .zip(qw)
        .map(|((&xi, &li), &w)| {
            let d = xi - scale * li as f32;
            w * d * d
        })
        .sum();
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mse: f32 = x
            .iter()
            .zip(qw)
            .map(|(&xi, &w)| {
                let li = (nearest_int(iscale_is * xi) as u8).min(nmax);
                let d = xi - scale_is * li as f32;
                w * d * d
            })
            .sum();
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for ((xi, li), &w) in x.iter().zip(l.iter_mut()).zip(qw) {
        let v = ((iscale * xi).round() as u8).min(nmax);
        *li = v;
        sumlx += w * xi * v as f32;
        suml2 += w * (v as f32).powi(2);
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for ((xi, li), &w) in x.iter().zip(l.iter_mut()).zip(qw) {
            let mut slx = sumlx - w * xi * *li as f32;
            let mut sl2 = suml2 - w * (*li as f32).powi(2);
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = (nearest_int(xi * sl2 / slx) as u8).min(nmax);
                if new_l != *li {
                    slx += w * xi * new_l as f32;
                    sl2 += w * (new_l as f32).powi(2);
                    if slx.powi(2) * suml2 > sumlx.powi(2) * sl2 {
                        *li = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    sumlx / suml2
}

/// Unpack the 6-bit (scale, min) pair `j` of a Q4_K/Q5_K block.
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Pack eight 6-bit (scale, min) pairs into Q4_K/Q5_K's 12 scale bytes.
pub fn put_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8], out: &mut [u8]) {
    out[..12].fill(0);
    for j in 0..8 {
        let (s, m) = (ls[j], lm[j]);
        if j < 4 {
            out[j] = s;
            out[j + 4] = m;
        } else {
            out[j + 4] = (s & 0xF) | ((m & 0xF) << 4);
            out[j - 4] |= (s >> 4) << 6;
            out[j] |= (m >> 4) << 6;
        }
    }
}
