//! The `LoG` image type: the Laplacian of Gaussian, scale-normalised, as PyRadiomics computes
//! it with ITK's `LaplacianRecursiveGaussianImageFilter` (`SetNormalizeAcrossScale(True)`).
//!
//! ```text
//! LoG_σ(x) = σ² Σ_d ∂²/∂x_d² (G_σ * x)        σ in mm
//! ```
//!
//! ITK approximates the Gaussian and its second derivative by 4th-order recursive (IIR)
//! filters, Deriche's causal + anti-causal pair with the coefficients of Farnebäck and
//! Westin, normalised so that the response to a constant (order 0) or a parabola (order 2)
//! is exact; a line is extended beyond its ends by its end values. For each axis d the
//! second-derivative filter runs along d and the smoothing filter along the other two axes,
//! and the results are summed with weight 1/spacing_d². ITK keeps the intermediate images in
//! single precision (`InternalRealType = float`) while computing each line in double; this
//! port rounds at the same places so its values are ITK's, not a better approximation of
//! the true LoG — the point is that a model trained on PyRadiomics LoG features means the
//! same here.
//!
//! The recursion forgets a voxel at distance k at rate exp(−1.37 k·spacing/σ), so
//! [`log_filter`] runs on a box around the ROI with a margin of 22 σ/spacing + 8 voxels
//! (≤ 1e−12 of the input's scale) and uses the image's own ends where the margin reaches
//! them.
//!
//! PyRadiomics skips a σ for which an image axis is shorter than ⌈σ/spacing⌉ + 1 voxels,
//! and the whole image type when an axis has fewer than 4 voxels; [`sigma_fits`] says so.

/// Name prefix, as PyRadiomics writes it from the σ given: `log-sigma-1-0-mm-3D` for 1.0.
pub fn prefix(sigma_text: &str) -> String {
    format!("log-sigma-{}-mm-3D", sigma_text.replace('.', "-"))
}

/// Whether PyRadiomics computes this σ on an image of these dims and spacing.
pub fn sigma_fits(sigma: f64, dims: [usize; 3], spacing: [f64; 3]) -> bool {
    sigma > 0.0 && dims.iter().all(|n| *n >= 4) && (0..3).all(|a| dims[a] as f64 >= (sigma / spacing[a]).ceil() + 1.0)
}

/// Coefficients of one recursive filter (ITK `RecursiveSeparableImageFilter`).
#[derive(Debug, Clone, Copy)]
struct Recursive {
    n: [f64; 4],
    d: [f64; 4],
    m: [f64; 4],
    bn: [f64; 4],
    bm: [f64; 4],
}

/// Deriche/Farnebäck–Westin constants: (A1, B1) and (A2, B2) per order; W1, L1, W2, L2.
const A1: [f64; 3] = [1.3530, -0.6724, -1.3563];
const B1: [f64; 3] = [1.8151, -3.4327, 5.2318];
const A2: [f64; 3] = [-0.3531, 0.6724, 0.3446];
const B2: [f64; 3] = [0.0902, 0.6100, -2.2355];
const W1: f64 = 0.6681;
const L1: f64 = -1.3932;
const W2: f64 = 2.0787;
const L2: f64 = -1.3732;

/// (N0..N3, SN, DN, EN) for one order's constants.
fn n_coefficients(sigmad: f64, a1: f64, b1: f64, a2: f64, b2: f64) -> ([f64; 4], f64, f64, f64) {
    let (sin1, sin2) = ((W1 / sigmad).sin(), (W2 / sigmad).sin());
    let (cos1, cos2) = ((W1 / sigmad).cos(), (W2 / sigmad).cos());
    let (exp1, exp2) = ((L1 / sigmad).exp(), (L2 / sigmad).exp());
    let n0 = a1 + a2;
    let mut n1 = exp2 * (b2 * sin2 - (a2 + 2.0 * a1) * cos2);
    n1 += exp1 * (b1 * sin1 - (a1 + 2.0 * a2) * cos1);
    let mut n2 = (a1 + a2) * cos2 * cos1;
    n2 -= b1 * cos2 * sin1 + b2 * cos1 * sin2;
    n2 *= 2.0 * exp1 * exp2;
    n2 += a2 * exp1 * exp1 + a1 * exp2 * exp2;
    let mut n3 = exp2 * exp1 * exp1 * (b2 * sin2 - a2 * cos2);
    n3 += exp1 * exp2 * exp2 * (b1 * sin1 - a1 * cos1);
    let sn = n0 + n1 + n2 + n3;
    let dn = n1 + 2.0 * n2 + 3.0 * n3;
    let en = n1 + 4.0 * n2 + 9.0 * n3;
    ([n0, n1, n2, n3], sn, dn, en)
}

impl Recursive {
    /// ITK `RecursiveGaussianImageFilter::SetUp` for order 0 or 2, normalised across scale.
    fn gaussian(sigma: f64, spacing: f64, second_order: bool) -> Recursive {
        let sigmad = sigma / spacing;
        let (cos1, cos2) = ((W1 / sigmad).cos(), (W2 / sigmad).cos());
        let (exp1, exp2) = ((L1 / sigmad).exp(), (L2 / sigmad).exp());
        let d4 = exp1 * exp1 * exp2 * exp2;
        let mut d3 = -2.0 * cos1 * exp1 * exp2 * exp2;
        d3 += -2.0 * cos2 * exp2 * exp1 * exp1;
        let mut d2 = 4.0 * cos2 * cos1 * exp1 * exp2;
        d2 += exp1 * exp1 + exp2 * exp2;
        let d1 = -2.0 * (exp2 * cos2 + exp1 * cos1);
        let sd = 1.0 + d1 + d2 + d3 + d4;
        let dd = d1 + 2.0 * d2 + 3.0 * d3 + 4.0 * d4;
        let ed = d1 + 4.0 * d2 + 9.0 * d3 + 16.0 * d4;
        let n = if !second_order {
            let (n, sn, _, _) = n_coefficients(sigmad, A1[0], B1[0], A2[0], B2[0]);
            let alpha0 = 2.0 * sn / sd - n[0];
            n.map(|v| v * (1.0 / alpha0))
        } else {
            let normalisation = sigma * sigma;
            let (n0c, sn0, dn0, en0) = n_coefficients(sigmad, A1[0], B1[0], A2[0], B2[0]);
            let (n2c, sn2, dn2, en2) = n_coefficients(sigmad, A1[2], B1[2], A2[2], B2[2]);
            let beta = -(2.0 * sn2 - sd * n2c[0]) / (2.0 * sn0 - sd * n0c[0]);
            let n = [0, 1, 2, 3].map(|i| n2c[i] + beta * n0c[i]);
            let sn = sn2 + beta * sn0;
            let dn = dn2 + beta * dn0;
            let en = en2 + beta * en0;
            let mut alpha2 = en * sd * sd - ed * sn * sd - 2.0 * dn * dd * sd + 2.0 * dd * dd * sn;
            alpha2 /= sd * sd * sd;
            n.map(|v| v * (normalisation / alpha2))
        };
        // Symmetric kernels (orders 0 and 2).
        let d = [d1, d2, d3, d4];
        let m = [n[1] - d1 * n[0], n[2] - d2 * n[0], n[3] - d3 * n[0], -d4 * n[0]];
        let sn = n[0] + n[1] + n[2] + n[3];
        let sm = m[0] + m[1] + m[2] + m[3];
        let sd = 1.0 + d1 + d2 + d3 + d4;
        Recursive { n, d, m, bn: d.map(|v| v * sn / sd), bm: d.map(|v| v * sm / sd) }
    }

    /// ITK `FilterDataArray`: causal pass into `outs`, anti-causal into `scratch`, summed.
    fn filter_line(&self, data: &[f64], outs: &mut [f64], scratch: &mut [f64]) {
        let ln = data.len();
        let (n, d, m, bn, bm) = (self.n, self.d, self.m, self.bn, self.bm);
        let ema = |a1: f64, b1: f64, a2: f64, b2: f64, a3: f64, b3: f64, a4: f64, b4: f64| a1 * b1 + a2 * b2 + a3 * b3 + a4 * b4;
        let s1 = outs;
        let v1 = data[0];
        s1[0] = ema(v1, n[0], v1, n[1], v1, n[2], v1, n[3]);
        s1[1] = ema(data[1], n[0], v1, n[1], v1, n[2], v1, n[3]);
        s1[2] = ema(data[2], n[0], data[1], n[1], v1, n[2], v1, n[3]);
        s1[3] = ema(data[3], n[0], data[2], n[1], data[1], n[2], v1, n[3]);
        s1[0] -= ema(v1, bn[0], v1, bn[1], v1, bn[2], v1, bn[3]);
        s1[1] -= ema(s1[0], d[0], v1, bn[1], v1, bn[2], v1, bn[3]);
        s1[2] -= ema(s1[1], d[0], s1[0], d[1], v1, bn[2], v1, bn[3]);
        s1[3] -= ema(s1[2], d[0], s1[1], d[1], s1[0], d[2], v1, bn[3]);
        for i in 4..ln {
            s1[i] = ema(data[i], n[0], data[i - 1], n[1], data[i - 2], n[2], data[i - 3], n[3]);
            s1[i] -= ema(s1[i - 1], d[0], s1[i - 2], d[1], s1[i - 3], d[2], s1[i - 4], d[3]);
        }
        let s2 = scratch;
        let v2 = data[ln - 1];
        s2[ln - 1] = ema(v2, m[0], v2, m[1], v2, m[2], v2, m[3]);
        s2[ln - 2] = ema(data[ln - 1], m[0], v2, m[1], v2, m[2], v2, m[3]);
        s2[ln - 3] = ema(data[ln - 2], m[0], data[ln - 1], m[1], v2, m[2], v2, m[3]);
        s2[ln - 4] = ema(data[ln - 3], m[0], data[ln - 2], m[1], data[ln - 1], m[2], v2, m[3]);
        s2[ln - 1] -= ema(v2, bm[0], v2, bm[1], v2, bm[2], v2, bm[3]);
        s2[ln - 2] -= ema(s2[ln - 1], d[0], v2, bm[1], v2, bm[2], v2, bm[3]);
        s2[ln - 3] -= ema(s2[ln - 2], d[0], s2[ln - 1], d[1], v2, bm[2], v2, bm[3]);
        s2[ln - 4] -= ema(s2[ln - 3], d[0], s2[ln - 2], d[1], s2[ln - 1], d[2], v2, bm[3]);
        for i in (1..=ln - 4).rev() {
            s2[i - 1] = ema(data[i], m[0], data[i + 1], m[1], data[i + 2], m[2], data[i + 3], m[3]);
            s2[i - 1] -= ema(s2[i], d[0], s2[i + 1], d[1], s2[i + 2], d[2], s2[i + 3], d[3]);
        }
        for i in 0..ln {
            s1[i] += s2[i];
        }
    }

    /// Filters every line of `image` along `axis`, storing single precision as ITK does.
    fn apply(&self, image: &[f64], dims: [usize; 3], axis: usize) -> Vec<f32> {
        let [nx, ny, nz] = dims;
        let n = dims[axis];
        let stride = [1, nx, nx * ny][axis];
        let starts: Vec<usize> = match axis {
            0 => (0..ny * nz).map(|k| k * nx).collect(),
            1 => (0..nz).flat_map(|z| (0..nx).map(move |x| x + nx * ny * z)).collect(),
            _ => (0..nx * ny).collect(),
        };
        let mut out = vec![0f32; image.len()];
        let (mut line, mut outs, mut scratch) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for start in starts {
            for (i, v) in line.iter_mut().enumerate() {
                *v = image[start + i * stride];
            }
            self.filter_line(&line, &mut outs, &mut scratch);
            for (i, v) in outs.iter().enumerate() {
                out[start + i * stride] = *v as f32;
            }
        }
        out
    }
}

/// The LoG image over the output box `lo..=hi` of `image` (dims, x-fastest, spacing in mm).
/// Every axis of the image must have at least 4 voxels.
pub fn log_filter(image: &[f64], dims: [usize; 3], spacing: [f64; 3], sigma: f64, lo: [usize; 3], hi: [usize; 3]) -> Vec<f64> {
    // The working box: the output box plus the margin, cut at the image's ends.
    let (mut blo, mut bhi) = ([0usize; 3], [0usize; 3]);
    for a in 0..3 {
        let margin = (22.0 * sigma / spacing[a]).ceil() as usize + 8;
        blo[a] = lo[a].saturating_sub(margin);
        bhi[a] = (hi[a] + margin).min(dims[a] - 1);
    }
    let bdims = [0, 1, 2].map(|a| bhi[a] - blo[a] + 1);
    let mut block = Vec::with_capacity(bdims[0] * bdims[1] * bdims[2]);
    for z in blo[2]..=bhi[2] {
        for y in blo[1]..=bhi[1] {
            for x in blo[0]..=bhi[0] {
                block.push(image[x + dims[0] * (y + dims[1] * z)]);
            }
        }
    }
    let mut cumulative = vec![0f32; block.len()];
    for dim in 0..3 {
        let second = Recursive::gaussian(sigma, spacing[dim], true);
        let mut current = second.apply(&block, bdims, dim);
        for dir in (0..3).filter(|d| *d != dim) {
            let smooth = Recursive::gaussian(sigma, spacing[dir], false);
            let as_f64: Vec<f64> = current.iter().map(|v| *v as f64).collect();
            current = smooth.apply(&as_f64, bdims, dir);
        }
        let scale = 1.0 / (spacing[dim] * spacing[dim]);
        for (c, v) in cumulative.iter_mut().zip(&current) {
            *c = (*c as f64 + *v as f64 * scale) as f32;
        }
    }
    let mut out = Vec::with_capacity((hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1) * (hi[2] - lo[2] + 1));
    for z in lo[2]..=hi[2] {
        for y in lo[1]..=hi[1] {
            for x in lo[0]..=hi[0] {
                out.push(cumulative[(x - blo[0]) + bdims[0] * ((y - blo[1]) + bdims[1] * (z - blo[2]))] as f64);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_laplacian_of_a_parabola_is_exact_and_of_a_constant_is_zero() {
        // x² + 2y² − z² has Laplacian 2 + 4 − 2 = 4 everywhere; σ² scales it. The recursive
        // filters are normalised to be exact on polynomials up to degree 2, away from the
        // ends (whose constant extension bends the parabola).
        let dims = [40, 40, 40];
        let spacing = [1.0, 0.8, 1.5];
        let sigma = 1.5;
        let mut img = Vec::new();
        for z in 0..40 {
            for y in 0..40 {
                for x in 0..40 {
                    let (px, py, pz) = (x as f64 * spacing[0] - 20.0, y as f64 * spacing[1] - 16.0, z as f64 * spacing[2] - 30.0);
                    img.push(px * px + 2.0 * py * py - pz * pz);
                }
            }
        }
        let v = log_filter(&img, dims, spacing, sigma, [20, 20, 20], [20, 20, 20]);
        assert!((v[0] - 4.0 * sigma * sigma).abs() < 1e-3 * 9.0, "{}", v[0]);
        let flat = log_filter(&vec![7.0; 64000], dims, spacing, sigma, [0, 0, 0], [39, 39, 39]);
        assert!(flat.iter().all(|v| v.abs() < 1e-4));
    }

    #[test]
    fn a_box_gives_the_whole_image_values() {
        let dims = [60, 50, 12];
        let img: Vec<f64> = (0..dims[0] * dims[1] * dims[2]).map(|i| ((i * 7919) % 101) as f64 + (i as f64 * 0.01).sin() * 30.0).collect();
        let spacing = [0.7, 0.7, 3.0];
        let whole = log_filter(&img, dims, spacing, 1.0, [0, 0, 0], [59, 49, 11]);
        let part = log_filter(&img, dims, spacing, 1.0, [30, 25, 5], [33, 27, 6]);
        let mut k = 0;
        for z in 5..=6 {
            for y in 25..=27 {
                for x in 30..=33 {
                    let w = whole[x + 60 * (y + 50 * z)];
                    assert!((w - part[k]).abs() <= 1e-5 * w.abs().max(1.0), "{w} {}", part[k]);
                    k += 1;
                }
            }
        }
    }

    #[test]
    fn names_and_limits_follow_pyradiomics() {
        assert_eq!(prefix("1.0"), "log-sigma-1-0-mm-3D");
        assert_eq!(prefix("3"), "log-sigma-3-mm-3D");
        assert!(sigma_fits(5.0, [256, 256, 25], [0.5, 0.5, 4.0]));
        assert!(!sigma_fits(5.0, [256, 256, 2], [0.5, 0.5, 4.0]));
        assert!(!sigma_fits(50.0, [256, 256, 12], [0.5, 0.5, 4.0]));
    }
}
