//! The `LBP2D` image type: local binary patterns in each slice, as PyRadiomics computes them
//! with scikit-image's `local_binary_pattern`.
//!
//! For a voxel of value g_c, P samples g_p lie on a circle of radius R in its slice, at
//! row offset −R sin(2πp/P) and column offset R cos(2πp/P) (rounded to 5 decimals), read by
//! bilinear interpolation with 0 outside the image. Their signs s_p = [g_p ≥ g_c] give
//!
//! | method | value |
//! |---|---|
//! | `default` | Σ s_p 2^p |
//! | `ror` | the smallest of the P bit rotations of `default` |
//! | `uniform` | Σ s_p when s_0 … s_{P−1} change at most twice (not counting s_{P−1} → s_0), else P + 1 |
//! | `nri_uniform` | the index of the uniform pattern among P(P − 1) + 2 (non-rotation-invariant), P(P − 1) + 2 for the rest |
//!
//! Slices run across the `force2Ddimension` axis (axial by default); rows and columns are
//! the slice's axes in numpy order, as PyRadiomics passes them to scikit-image: (y, x) for
//! axial slices, (z, x) for coronal, (y, z) for sagittal. Why: the sampling order on the
//! circle and its row/column orientation decide the pattern codes, and with them every
//! feature of the image.

/// LBP2D options (PyRadiomics `lbp2DRadius`, `lbp2DSamples`, `lbp2DMethod`).
#[derive(Debug, Clone, PartialEq)]
pub struct Lbp2dSettings {
    /// Radius in voxels (scikit-image keeps it in single precision).
    pub radius: f32,
    pub samples: u32,
    pub method: LbpMethod,
    /// The axis (0 = x, 1 = y, 2 = z) the slices run across.
    pub slice_axis: usize,
}

impl Default for Lbp2dSettings {
    /// PyRadiomics' defaults: R = 1, P = 8, uniform, axial slices.
    fn default() -> Self {
        Lbp2dSettings { radius: 1.0, samples: 8, method: LbpMethod::Uniform, slice_axis: 2 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbpMethod {
    Default,
    Ror,
    Uniform,
    NriUniform,
}

impl LbpMethod {
    pub fn from_name(name: &str) -> Option<LbpMethod> {
        Some(match name.to_ascii_lowercase().as_str() {
            "default" => LbpMethod::Default,
            "ror" => LbpMethod::Ror,
            "uniform" => LbpMethod::Uniform,
            "nri_uniform" => LbpMethod::NriUniform,
            _ => return None,
        })
    }
}

/// The LBP image on the inclusive box `lo..=hi` of a volume (`data` x-fastest, `dims`),
/// x-fastest over the box. Samples outside the image read 0, as scikit-image's constant mode.
pub fn lbp_2d(data: &[f64], dims: [usize; 3], lo: [usize; 3], hi: [usize; 3], s: &Lbp2dSettings) -> Vec<f64> {
    let p = s.samples as usize;
    let r = s.radius as f64;
    // numpy.round(x, 5): x·10⁵ rounded half to even, divided back.
    let round5 = |x: f64| (x * 1e5).round_ties_even() / 1e5;
    let offsets: Vec<(f64, f64)> = (0..p)
        .map(|i| {
            let angle = 2.0 * std::f64::consts::PI * i as f64 / p as f64;
            (round5(-r * angle.sin()), round5(r * angle.cos()))
        })
        .collect();
    let (row_axis, col_axis) = match s.slice_axis {
        0 => (1, 2),
        1 => (2, 0),
        _ => (1, 0),
    };
    let (rows, cols) = (dims[row_axis] as i64, dims[col_axis] as i64);
    let at = |v: [usize; 3]| data[v[0] + dims[0] * (v[1] + dims[1] * v[2])];
    let mut out = Vec::with_capacity((0..3).map(|a| hi[a] - lo[a] + 1).product());
    let mut signs = vec![0u8; p];
    for z in lo[2]..=hi[2] {
        for y in lo[1]..=hi[1] {
            for x in lo[0]..=hi[0] {
                let v = [x, y, z];
                let centre = at(v);
                let pixel = |row: i64, col: i64| {
                    if row < 0 || row >= rows || col < 0 || col >= cols {
                        return 0.0;
                    }
                    let mut w = v;
                    w[row_axis] = row as usize;
                    w[col_axis] = col as usize;
                    at(w)
                };
                for (i, (dr, dc)) in offsets.iter().enumerate() {
                    let (rf, cf) = (v[row_axis] as f64 + dr, v[col_axis] as f64 + dc);
                    // scikit-image's bilinear_interpolation, term for term.
                    let (minr, minc, maxr, maxc) = (rf.floor() as i64, cf.floor() as i64, rf.ceil() as i64, cf.ceil() as i64);
                    let (wr, wc) = (rf - minr as f64, cf - minc as f64);
                    let top = (1.0 - wc) * pixel(minr, minc) + wc * pixel(minr, maxc);
                    let bottom = (1.0 - wc) * pixel(maxr, minc) + wc * pixel(maxr, maxc);
                    let sample = (1.0 - wr) * top + wr * bottom;
                    signs[i] = u8::from(sample - centre >= 0.0);
                }
                out.push(code(&signs, s.method));
            }
        }
    }
    out
}

/// The pattern code of one voxel's signs, as scikit-image's `_local_binary_pattern`.
fn code(signs: &[u8], method: LbpMethod) -> f64 {
    let p = signs.len();
    let changes = signs.windows(2).filter(|w| w[0] != w[1]).count();
    let ones = signs.iter().filter(|s| **s == 1).count();
    match method {
        LbpMethod::Uniform => {
            if changes <= 2 {
                ones as f64
            } else {
                (p + 1) as f64
            }
        }
        LbpMethod::NriUniform => {
            if changes > 2 {
                return (p * (p - 1) + 2) as f64;
            }
            if ones == 0 {
                return 0.0;
            }
            if ones == p {
                return (p * (p - 1) + 1) as f64;
            }
            let first_one = signs.iter().position(|s| *s == 1).unwrap_or(0);
            let first_zero = signs.iter().position(|s| *s == 0).unwrap_or(0);
            let rot = if first_one == 0 { ones - first_zero } else { p - first_one };
            (1 + (ones - 1) * p + rot) as f64
        }
        LbpMethod::Default | LbpMethod::Ror => {
            let value: u64 = signs.iter().enumerate().map(|(i, s)| (*s as u64) << i).sum();
            if method == LbpMethod::Default {
                return value as f64;
            }
            // The smallest cyclic right rotation over P bits.
            let mut best = value;
            let mut v = value;
            for _ in 1..p {
                v = (v >> 1) | ((v & 1) << (p - 1));
                best = best.min(v);
            }
            best as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_scikit_image() {
        // 8 samples: 00011100 has 2 changes → uniform 3; 01010000 has 4 → P + 1 = 9.
        assert_eq!(code(&[0, 0, 0, 1, 1, 1, 0, 0], LbpMethod::Uniform), 3.0);
        assert_eq!(code(&[0, 1, 0, 1, 0, 0, 0, 0], LbpMethod::Uniform), 9.0);
        // Wrap-around is not counted: 10000001 is uniform with 2 ones.
        assert_eq!(code(&[1, 0, 0, 0, 0, 0, 0, 1], LbpMethod::Uniform), 2.0);
        assert_eq!(code(&[1, 1, 0, 0, 0, 0, 0, 0], LbpMethod::Default), 3.0);
        assert_eq!(code(&[0, 0, 0, 0, 0, 0, 1, 1], LbpMethod::Ror), 3.0);
        assert_eq!(code(&[0, 0, 0, 0, 0, 0, 0, 0], LbpMethod::NriUniform), 0.0);
        assert_eq!(code(&[1; 8], LbpMethod::NriUniform), 57.0);
        assert_eq!(code(&[0, 1, 0, 1, 0, 0, 0, 0], LbpMethod::NriUniform), 58.0);
    }

    /// A flat slice: every inner voxel's samples equal it (all ones, uniform P); the corners
    /// see zeros outside the image.
    #[test]
    fn flat_image_and_edges() {
        let dims = [5, 5, 1];
        let data = vec![4.0; 25];
        let out = lbp_2d(&data, dims, [0; 3], [4, 4, 0], &Lbp2dSettings::default());
        assert_eq!(out[2 + 5 * 2], 8.0);
        assert!(out[0] < 8.0);
    }
}
