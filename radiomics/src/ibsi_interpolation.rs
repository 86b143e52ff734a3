//! Interpolation onto the IBSI's grid (IBSI reference manual, "Interpolation"), beside
//! PyRadiomics' resampling in [`super::resample`], which keeps its own grid.
//!
//! The IBSI's grid, per axis with n voxels of spacing s resampled to spacing t:
//! - m = ⌈n·s/t⌉ voxels ("fit to original grid" by ceiling);
//! - centre aligned with the original grid's centre: new voxel k sits at the original
//!   continuous index ½(n − 1) − ½(m − 1)·t/s + k·t/s;
//! - an axis with target spacing 0 keeps its voxels (2D configurations interpolate in-plane).
//!
//! Intensities are interpolated linearly, coordinates beyond the grid taking the edge value
//! (`scipy.ndimage.map_coordinates(order=1, mode="nearest")`, as MIRP does), then optionally
//! rounded to the nearest integer, ties to even as numpy rounds (the IBSI asks for it with
//! CT, whose HU are integers). The ROI mask is interpolated linearly, 0 beyond the grid
//! (`mode="constant"`), and kept where the interpolated value reaches the partial-volume threshold (0.5 in the IBSI's
//! configurations), after rounding to 6 decimals as MIRP does. The morphological mask is the
//! interpolated mask; re-segmentation comes after.

use super::Roi;

/// How intensities are interpolated (`ibsiInterpolator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IbsiInterpolator {
    /// (Bi/tri)linear (`linear`).
    Linear,
    /// Cubic B-spline (`cubicSpline`): `map_coordinates(order=3, mode="nearest")`, i.e. the
    /// image padded by 12 edge voxels, its interpolating B-spline coefficients with mirror
    /// boundaries, evaluated with the four cubic B-spline weights per axis.
    CubicSpline,
}

/// How the ROI is interpolated (the parameter-file keys `ibsiResampledPixelSpacing`,
/// `ibsiInterpolator`, `ibsiRoundIntensities`, `ibsiMaskThreshold`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IbsiInterpolation {
    /// Target spacing in mm (x, y, z); 0 keeps an axis as it is.
    pub spacing: [f64; 3],
    /// The intensities' interpolator; the mask is always interpolated linearly.
    pub interpolator: IbsiInterpolator,
    /// Round interpolated intensities to the nearest integer (ties to even).
    pub round_intensities: bool,
    /// Partial-volume threshold of the interpolated mask.
    pub mask_threshold: f64,
}

/// Per axis: the new voxel count and the original continuous index of new voxel 0 and the
/// step between new voxels (in original voxels).
fn grid(n: usize, s: f64, t: f64) -> (usize, f64, f64) {
    if t == 0.0 {
        return (n, 0.0, 1.0);
    }
    let m = (n as f64 * s / t).ceil() as usize;
    let step = t / s;
    (m, 0.5 * (n as f64 - 1.0) - 0.5 * (m as f64 - 1.0) * step, step)
}

/// The linear interpolation weights of continuous index `c` on an axis of `n` voxels: the lower
/// voxel, the upper voxel and the upper's weight. With `clamp`, positions beyond the grid take
/// the edge voxel (scipy's `mode="nearest"`); otherwise they are zero, with no interpolation
/// towards the edge (scipy's `mode="constant"`: −0.25 gives 0, not ¾ of voxel 0).
fn weights(c: f64, n: usize, clamp: bool) -> (Option<usize>, Option<usize>, f64) {
    let last = n as f64 - 1.0;
    if !clamp && !(0.0..=last).contains(&c) {
        return (None, None, 0.0);
    }
    let c = c.clamp(0.0, last);
    let lower = c.floor();
    let frac = c - lower;
    let index = |i: f64| (i >= 0.0 && i <= last).then_some(i as usize);
    (index(lower), index(lower + 1.0), frac)
}

/// Linear interpolation of `values` (x-fastest, `dims`) at the separable grid `points`.
fn interpolate(values: &[f64], dims: [usize; 3], points: &[Vec<f64>; 3], clamp: bool) -> Vec<f64> {
    let [nx, ny, _] = dims;
    let w: [Vec<(Option<usize>, Option<usize>, f64)>; 3] = [0, 1, 2].map(|a| points[a].iter().map(|c| weights(*c, dims[a], clamp)).collect());
    let mut out = Vec::with_capacity(points[0].len() * points[1].len() * points[2].len());
    for (z0, z1, fz) in &w[2] {
        for (y0, y1, fy) in &w[1] {
            for (x0, x1, fx) in &w[0] {
                let mut v = 0.0;
                for (z, wz) in [(z0, 1.0 - fz), (z1, *fz)] {
                    let Some(z) = z else { continue };
                    for (y, wy) in [(y0, 1.0 - fy), (y1, *fy)] {
                        let Some(y) = y else { continue };
                        for (x, wx) in [(x0, 1.0 - fx), (x1, *fx)] {
                            let Some(x) = x else { continue };
                            let weight = wz * wy * wx;
                            if weight != 0.0 {
                                v += weight * values[x + nx * (y + ny * z)];
                            }
                        }
                    }
                }
                out.push(v);
            }
        }
    }
    out
}

/// Cubic B-spline interpolation of `values` at the separable grid `points`, as scipy's
/// `map_coordinates(order=3, mode="nearest")` does it: pad by 12 edge voxels per side (scipy's
/// `_prepad_for_spline_filter`), B-spline coefficients with mirror boundaries, evaluate.
fn interpolate_cubic(values: &[f64], dims: [usize; 3], points: &[Vec<f64>; 3]) -> Vec<f64> {
    const PAD: usize = 12;
    let padded_dims = dims.map(|n| n + 2 * PAD);
    let [px, py, pz] = padded_dims;
    let mut padded = Vec::with_capacity(px * py * pz);
    let clamp = |i: usize, n: usize| i.saturating_sub(PAD).min(n - 1);
    for z in 0..pz {
        for y in 0..py {
            for x in 0..px {
                padded.push(values[clamp(x, dims[0]) + dims[0] * (clamp(y, dims[1]) + dims[1] * clamp(z, dims[2]))]);
            }
        }
    }
    let c = super::resample::bspline_coefficients(&padded, padded_dims);
    // Per axis and point: the first of the four coefficients and their weights.
    let taps: [Vec<(usize, [f64; 4])>; 3] = [0, 1, 2].map(|a| {
        points[a]
            .iter()
            .map(|p| {
                let p = (p + PAD as f64).clamp(0.0, padded_dims[a] as f64 - 1.0);
                let base = p.floor();
                let t = p - base;
                let w = [(1.0 - t).powi(3) / 6.0, (4.0 - 6.0 * t * t + 3.0 * t.powi(3)) / 6.0, (1.0 + 3.0 * t + 3.0 * t * t - 3.0 * t.powi(3)) / 6.0, t.powi(3) / 6.0];
                ((base as usize).saturating_sub(1).min(padded_dims[a] - 4), w)
            })
            .collect()
    });
    let mut out = Vec::with_capacity(points[0].len() * points[1].len() * points[2].len());
    for (z0, wz) in &taps[2] {
        for (y0, wy) in &taps[1] {
            for (x0, wx) in &taps[0] {
                let mut v = 0.0;
                for (k, wk) in wz.iter().enumerate() {
                    for (j, wj) in wy.iter().enumerate() {
                        let row = px * ((y0 + j) + py * (z0 + k));
                        let mut line = 0.0;
                        for (i, wi) in wx.iter().enumerate() {
                            line += wi * c[row + x0 + i];
                        }
                        v += wk * wj * line;
                    }
                }
                out.push(v);
            }
        }
    }
    out
}

/// The ROI (image and mask on one grid) interpolated onto the IBSI's grid.
pub fn interpolate_roi(roi: &Roi, how: &IbsiInterpolation) -> Roi {
    let axes = [0, 1, 2].map(|a| grid(roi.dims[a], roi.spacing[a], how.spacing[a]));
    let dims = axes.map(|(m, _, _)| m);
    let points = [0, 1, 2].map(|a| {
        let (m, first, step) = axes[a];
        (0..m).map(|k| first + k as f64 * step).collect::<Vec<f64>>()
    });
    let mut intensities = match how.interpolator {
        IbsiInterpolator::Linear => interpolate(&roi.intensities, roi.dims, &points, true),
        IbsiInterpolator::CubicSpline => interpolate_cubic(&roi.intensities, roi.dims, &points),
    };
    if how.round_intensities {
        intensities.iter_mut().for_each(|v| *v = v.round_ties_even());
    }
    let shape: Vec<f64> = roi.morph_mask.iter().map(|m| *m as u8 as f64).collect();
    let threshold = (how.mask_threshold * 1e6).round() / 1e6;
    let mask: Vec<bool> = interpolate(&shape, roi.dims, &points, false).into_iter().map(|v| (v * 1e6).round() / 1e6 >= threshold).collect();
    let spacing = [0, 1, 2].map(|a| if how.spacing[a] == 0.0 { roi.spacing[a] } else { how.spacing[a] });
    Roi { dims, spacing, intensities, morph_mask: mask.clone(), mask }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interpolating cubic B-spline passes through the samples, and reproduces a quadratic
    /// between them far from the edges (where the edge extension's influence has decayed by
    /// (2 − √3)^k).
    #[test]
    fn the_cubic_spline_interpolates_the_samples_and_reproduces_a_quadratic() {
        let n = 60;
        let dims = [n, 1, 1];
        let values: Vec<f64> = (0..n).map(|i| (i as f64 - 30.0).powi(2)).collect();
        let at = |xs: Vec<f64>| interpolate_cubic(&values, dims, &[xs, vec![0.0], vec![0.0]]);
        let on_samples = at((0..n).map(|i| i as f64).collect());
        assert!(on_samples.iter().zip(&values).all(|(a, b)| (a - b).abs() < 1e-6), "{on_samples:?}");
        let xs = [29.5, 30.25, 31.75];
        for (x, got) in xs.iter().zip(at(xs.to_vec())) {
            assert!((got - (x - 30.0f64).powi(2)).abs() < 1e-9, "{x}: {got}");
        }
    }

    #[test]
    fn the_grid_is_fitted_by_ceiling_and_centred_on_the_original() {
        // 60 slices of 3 mm to 2 mm: 90 slices, the centre (index 29.5) kept.
        let (m, first, step) = grid(60, 3.0, 2.0);
        assert_eq!(m, 90);
        assert!((first + 0.5 * (m as f64 - 1.0) * step - 29.5).abs() < 1e-12);
        // 0 keeps the axis.
        assert_eq!(grid(7, 3.0, 0.0), (7, 0.0, 1.0));
    }

    #[test]
    fn a_linear_ramp_is_reproduced_and_the_mask_keeps_half_covered_voxels() {
        let dims = [4, 3, 2];
        let n = 24;
        let intensities: Vec<f64> = (0..n).map(|i| (i % 4) as f64 * 10.0).collect();
        let mask: Vec<bool> = (0..n).map(|i| i % 4 < 2).collect();
        let roi = Roi { dims, spacing: [1.0, 1.0, 1.0], intensities, morph_mask: mask.clone(), mask };
        let out =
            interpolate_roi(&roi, &IbsiInterpolation { spacing: [0.5, 0.0, 0.0], interpolator: IbsiInterpolator::Linear, round_intensities: false, mask_threshold: 0.5 });
        assert_eq!(out.dims, [8, 3, 2]);
        // New x positions −0.25, 0.25, …, 3.25: clamped at the ends, linear inside.
        let row: Vec<f64> = out.intensities[..8].to_vec();
        assert_eq!(row, [0.0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30.0]);
        // The mask covers x 0..1: −0.25 is beyond the grid (0), then 1, 1, 0.75, 0.25, 0, ...
        assert_eq!(out.mask[..8], [false, true, true, true, false, false, false, false]);
        let rounded =
            interpolate_roi(&roi, &IbsiInterpolation { spacing: [0.5, 0.0, 0.0], interpolator: IbsiInterpolator::Linear, round_intensities: true, mask_threshold: 0.5 });
        assert_eq!(rounded.intensities[..8], [0.0, 2.0, 8.0, 12.0, 18.0, 22.0, 28.0, 30.0]);
    }
}
