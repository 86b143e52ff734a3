//! Resampling to a new voxel spacing, and PyRadiomics' pre-crop: the image preparation that
//! PyRadiomics' `resampleImage` and `cropToTumorMask` perform before any feature.
//!
//! Why a site resamples: hospitals scan with different in-plane resolutions and slice
//! thicknesses, and texture measured on voxels of different sizes is not comparable.
//! Resampling every case to one spacing removes that source of site difference.
//!
//! The new grid is PyRadiomics' (imageoperations.resampleImage):
//! - where the target spacing is 0, or the ROI spans one voxel along an axis, that axis keeps
//!   its spacing;
//! - if the spacing then equals the image's (`numpy.allclose`), nothing is interpolated: image
//!   and mask are cropped to the ROI's bounding box plus `padDistance` voxels;
//! - otherwise, with r = old/new spacing and the ROI's bounding box [lo, lo + size), the new
//!   index range is ⌊(lo − ½)·r − pad⌋ … ⌈(lo + size − ½)·r + pad⌉, clipped to
//!   [0, ⌈N·r⌉ − 1]; new voxel k sits at old continuous index
//!   ½·(new − old)/old + lb/r + k·new/old, so voxel corners of the old and new grids coincide
//!   at the image origin.
//!
//! The image is sampled with the chosen interpolator exactly as ITK's `ResampleImageFilter`
//! does (points outside [−½, N − ½) get 0; output cast back to the input pixel type), the
//! mask with nearest neighbour. All three interpolators are tensor products of 1-D
//! kernels, and the new grid is axis-aligned with the old one, so sampling runs as three
//! 1-D passes.
//!
//! Known difference from ITK: where a new voxel centre falls exactly half-way between two
//! old ones (e.g. halving the resolution), nearest neighbour rounds the half up here; ITK
//! reaches the same point through a physical-space round trip whose last-bit rounding can
//! fall either side.

use fedrad_imaging::SampleType;

use super::Roi;

/// The interpolators PyRadiomics' `interpolator` setting names (SimpleITK's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interpolator {
    /// `sitkNearestNeighbor`: the closest voxel, halves rounded up.
    NearestNeighbor,
    /// `sitkLinear`: trilinear, the edge voxels extended outwards.
    Linear,
    /// `sitkBSpline` (`sitkBSpline3`): cubic B-spline interpolation of the coefficients
    /// computed by ITK's `BSplineDecompositionImageFilter` (mirror boundaries).
    BSpline,
}

impl Interpolator {
    /// From the parameter-file value: a SimpleITK name, or its enum number (1, 2, 23).
    pub fn from_sitk(name: &str) -> Option<Interpolator> {
        match name {
            "sitkNearestNeighbor" | "1" => Some(Interpolator::NearestNeighbor),
            "sitkLinear" | "2" => Some(Interpolator::Linear),
            "sitkBSpline" | "sitkBSpline3" | "23" => Some(Interpolator::BSpline),
            _ => None,
        }
    }
}

/// The inclusive box `lo − pad … hi + pad` around the intensity mask, clipped to the image
/// (PyRadiomics `cropToTumorMask`, used by `preCrop` and by resampling to the same spacing).
pub fn padded_mask_box(roi: &Roi, pad: usize) -> ([usize; 3], [usize; 3]) {
    let Some((lo, hi)) = roi.bounding_box(|i| roi.mask[i]) else { return ([0; 3], roi.dims.map(|n| n - 1)) };
    ([0, 1, 2].map(|a| lo[a].saturating_sub(pad)), [0, 1, 2].map(|a| (hi[a] + pad).min(roi.dims[a] - 1)))
}

/// PyRadiomics `resampleImage` on a ROI whose morphological and intensity masks are still
/// the label mask. `spacing` is the target (0 = keep); `sample` is the pixel type the image
/// is written back in.
pub fn resample(roi: &Roi, spacing: [f64; 3], interpolator: Interpolator, pad: usize, sample: SampleType) -> Roi {
    let old = roi.spacing;
    let Some((lo, hi)) = roi.bounding_box(|i| roi.mask[i]) else { return roi.clone() };
    let new: [f64; 3] = [0, 1, 2].map(|a| if spacing[a] == 0.0 || hi[a] == lo[a] { old[a] } else { spacing[a] });
    if (0..3).all(|a| (old[a] - new[a]).abs() <= 1e-8 + 1e-5 * new[a].abs()) {
        let (lo, hi) = padded_mask_box(roi, pad);
        return super::extract::crop_to(roi, lo, hi);
    }
    let axes: [AxisGrid; 3] = [0, 1, 2].map(|a| {
        let r = old[a] / new[a];
        let n = roi.dims[a] as f64;
        let first = ((lo[a] as f64 - 0.5) * r - pad as f64).floor().max(0.0);
        let last = ((hi[a] as f64 + 1.0 - 0.5) * r + pad as f64).ceil().min((n * r).ceil() - 1.0);
        let count = (last - first + 1.0).max(1.0) as usize;
        let origin = 0.5 * (new[a] - old[a]) / old[a] + first / r;
        let step = new[a] / old[a];
        AxisGrid { positions: (0..count).map(|k| origin + k as f64 * step).collect(), len: roi.dims[a] }
    });
    let dims = axes.each_ref().map(|g| g.positions.len());
    let image_taps = axes.each_ref().map(|g| g.taps(interpolator));
    let coefficients;
    let source = if interpolator == Interpolator::BSpline {
        coefficients = bspline_coefficients(&roi.intensities, roi.dims);
        &coefficients
    } else {
        &roi.intensities
    };
    let intensities: Vec<f64> = sample_separable(source, roi.dims, &image_taps).into_iter().map(|v| sample.cast(v)).collect();
    let mask_taps = axes.each_ref().map(|g| g.taps(Interpolator::NearestNeighbor));
    let as_f64: Vec<f64> = roi.mask.iter().map(|m| if *m { 1.0 } else { 0.0 }).collect();
    let mask: Vec<bool> = sample_separable(&as_f64, roi.dims, &mask_taps).into_iter().map(|v| v > 0.5).collect();
    Roi { dims, spacing: new, intensities, morph_mask: mask.clone(), mask }
}

/// The old continuous indices of the new voxels along one axis, and the old length.
struct AxisGrid {
    positions: Vec<f64>,
    len: usize,
}

/// For one output position: the input indices and weights to sum (empty outside the image).
type Taps = Vec<(usize, f64)>;

impl AxisGrid {
    fn taps(&self, interpolator: Interpolator) -> Vec<Taps> {
        self.positions.iter().map(|&x| kernel(x, self.len, interpolator)).collect()
    }
}

/// ITK's 1-D sampling rule at continuous index `x` on an axis of `n` voxels.
fn kernel(x: f64, n: usize, interpolator: Interpolator) -> Taps {
    // ResampleImageFilter asks IsInsideBuffer first: [start − ½, end + ½).
    if !(x >= -0.5 && x < n as f64 - 0.5) {
        return Vec::new();
    }
    let last = n as isize - 1;
    match interpolator {
        Interpolator::NearestNeighbor => vec![(((x + 0.5).floor() as isize).clamp(0, last) as usize, 1.0)],
        Interpolator::Linear => {
            // LinearInterpolateImageFunction: the base index clamped to the start, the upper
            // neighbour dropped past the end (the edge value extends half a voxel out).
            let base = (x.floor() as isize).max(0);
            let d = x - base as f64;
            if d <= 0.0 || base + 1 > last {
                vec![(base as usize, 1.0)]
            } else {
                vec![(base as usize, 1.0 - d), (base as usize + 1, d)]
            }
        }
        Interpolator::BSpline => {
            if n == 1 {
                return vec![(0, 1.0)];
            }
            // BSplineInterpolateImageFunction, order 3: support ⌊x⌋ − 1 … ⌊x⌋ + 2 (ITK takes the
            // floor of x in single precision), cubic B-spline weights, mirrored indices.
            let first = (x as f32).floor() as isize - 1;
            let w = x - (first + 1) as f64;
            let w3 = w * w * w / 6.0;
            let w0 = 1.0 / 6.0 + 0.5 * w * (w - 1.0) - w3;
            let w2 = w + w0 - 2.0 * w3;
            let w1 = 1.0 - w0 - w2 - w3;
            let mirror = |k: isize| {
                let k = if k < 0 { -k } else { k };
                let k = if k > last { 2 * last - k } else { k };
                k.clamp(0, last) as usize
            };
            [w0, w1, w2, w3].iter().enumerate().map(|(j, w)| (mirror(first + j as isize), *w)).collect()
        }
    }
}

/// Applies per-axis taps in three passes (x, then y, then z), visiting only the input lines
/// the later passes read.
fn sample_separable(data: &[f64], dims: [usize; 3], taps: &[Vec<Taps>; 3]) -> Vec<f64> {
    let range = |a: usize| {
        let idx = taps[a].iter().flatten().map(|(i, _)| *i);
        let lo = idx.clone().min().unwrap_or(0);
        let hi = idx.max().unwrap_or(0);
        (lo, hi + 1 - lo.min(hi + 1))
    };
    let (y0, ny) = range(1);
    let (z0, nz) = range(2);
    let [nx_in, ny_in, _] = dims;
    let mx = taps[0].len();
    // Pass x: (nx_in, ny, nz) → (mx, ny, nz), over the y/z window only.
    let mut a = vec![0.0; mx * ny * nz];
    for z in 0..nz {
        for y in 0..ny {
            let row = &data[nx_in * ((y0 + y) + ny_in * (z0 + z))..][..nx_in];
            let out = &mut a[mx * (y + ny * z)..][..mx];
            for (o, t) in out.iter_mut().zip(&taps[0]) {
                *o = t.iter().map(|(i, w)| w * row[*i]).sum();
            }
        }
    }
    // Pass y: (mx, ny, nz) → (mx, my, nz).
    let my = taps[1].len();
    let mut b = vec![0.0; mx * my * nz];
    for z in 0..nz {
        for (k, t) in taps[1].iter().enumerate() {
            let out = mx * (k + my * z);
            for (i, w) in t {
                let src = mx * ((i - y0) + ny * z);
                for x in 0..mx {
                    b[out + x] += w * a[src + x];
                }
            }
        }
    }
    // Pass z: (mx, my, nz) → (mx, my, mz).
    let plane = mx * my;
    let mut c = vec![0.0; plane * taps[2].len()];
    for (k, t) in taps[2].iter().enumerate() {
        for (i, w) in t {
            let src = plane * (i - z0);
            for p in 0..plane {
                c[plane * k + p] += w * b[src + p];
            }
        }
    }
    c
}

/// ITK `BSplineDecompositionImageFilter` (order 3): the coefficients whose cubic B-spline
/// interpolates the image, by the recursive filter of Unser et al. (1993) with mirror
/// boundaries, applied along x, then y, then z.
pub fn bspline_coefficients(data: &[f64], dims: [usize; 3]) -> Vec<f64> {
    let mut c = data.to_vec();
    let [nx, ny, nz] = dims;
    let mut line = Vec::new();
    for axis in 0..3 {
        let n = dims[axis];
        if n == 1 {
            continue;
        }
        // The stride along the axis and the first voxel of every line along it.
        let (s, starts): (usize, Vec<usize>) = match axis {
            0 => (1, (0..ny * nz).map(|l| l * nx).collect()),
            1 => (nx, (0..nz).flat_map(|z| (0..nx).map(move |x| x + nx * ny * z)).collect()),
            _ => (nx * ny, (0..nx * ny).collect()),
        };
        for start in starts {
            line.clear();
            line.extend((0..n).map(|k| c[start + k * s]));
            cubic_coefficients_1d(&mut line);
            for (k, v) in line.iter().enumerate() {
                c[start + k * s] = *v;
            }
        }
    }
    c
}

/// ITK's `DataToCoefficients1D` for the single cubic pole z = √3 − 2.
fn cubic_coefficients_1d(c: &mut [f64]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z = 3f64.sqrt() - 2.0;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    c.iter_mut().for_each(|v| *v *= gain);
    c[0] = initial_causal_coefficient(c, z);
    for k in 1..n {
        c[k] += z * c[k - 1];
    }
    c[n - 1] = (z / (z * z - 1.0)) * (z * c[n - 2] + c[n - 1]);
    for k in (0..n - 1).rev() {
        c[k] = z * (c[k + 1] - c[k]);
    }
}

/// ITK's `SetInitialCausalCoefficient` (mirror boundaries, tolerance 1e-10): a truncated sum
/// when the pole's powers fall below the tolerance within the line, else the exact sum.
fn initial_causal_coefficient(c: &[f64], z: f64) -> f64 {
    const TOLERANCE: f64 = 1e-10;
    let n = c.len();
    let horizon = (TOLERANCE.ln() / z.abs().ln()).ceil() as usize;
    let mut zn = z;
    if horizon < n {
        let mut sum = c[0];
        for v in &c[1..horizon] {
            sum += zn * v;
            zn *= z;
        }
        sum
    } else {
        let iz = 1.0 / z;
        let mut z2n = z.powf((n - 1) as f64);
        let mut sum = c[0] + z2n * c[n - 1];
        z2n *= z2n * iz;
        for v in &c[1..n - 1] {
            sum += (zn + z2n) * v;
            zn *= z;
            z2n *= iz;
        }
        sum / (1.0 - zn * zn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roi(dims: [usize; 3], spacing: [f64; 3], f: impl Fn(usize, usize, usize) -> f64, inside: impl Fn(usize, usize, usize) -> bool) -> Roi {
        let mut intensities = Vec::new();
        let mut mask = Vec::new();
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    intensities.push(f(x, y, z));
                    mask.push(inside(x, y, z));
                }
            }
        }
        Roi { dims, spacing, intensities, morph_mask: mask.clone(), mask }
    }

    /// Cubic B-spline interpolation reproduces the samples at the grid points and
    /// polynomials up to degree 3 away from the mirrored edges.
    #[test]
    fn bspline_interpolates_samples_and_cubics() {
        let n = 40;
        let f = |x: f64| 0.02 * x * x * x - 0.7 * x * x + 3.0 * x - 5.0;
        let data: Vec<f64> = (0..n).map(|x| f(x as f64)).collect();
        let c = bspline_coefficients(&data, [n, 1, 1]);
        let at = |x: f64| kernel(x, n, Interpolator::BSpline).iter().map(|(i, w)| w * c[*i]).sum::<f64>();
        for k in 0..n {
            assert!((at(k as f64) - data[k]).abs() < 1e-9 * data[k].abs().max(1.0), "sample {k}");
        }
        for x in [10.25, 17.5, 23.9] {
            assert!((at(x) - f(x)).abs() < 1e-6 * f(x).abs().max(1.0), "x = {x}: {} vs {}", at(x), f(x));
        }
    }

    #[test]
    fn short_lines_use_the_exact_initial_coefficient() {
        // 10 samples < horizon 18: the full mirror sum; the interpolant still passes through them.
        let data: Vec<f64> = (0..10).map(|x| ((x * 7) % 5) as f64).collect();
        let c = bspline_coefficients(&data, [10, 1, 1]);
        for k in 0..10 {
            let v: f64 = kernel(k as f64, 10, Interpolator::BSpline).iter().map(|(i, w)| w * c[*i]).sum();
            assert!((v - data[k]).abs() < 1e-12, "{k}: {v}");
        }
    }

    #[test]
    fn kernels_follow_itk_at_the_edges() {
        assert!(kernel(-0.51, 5, Interpolator::Linear).is_empty());
        assert_eq!(kernel(-0.3, 5, Interpolator::Linear), vec![(0, 1.0)]);
        assert_eq!(kernel(4.3, 5, Interpolator::Linear), vec![(4, 1.0)]);
        assert!(kernel(4.5, 5, Interpolator::NearestNeighbor).is_empty());
        assert_eq!(kernel(1.5, 5, Interpolator::NearestNeighbor), vec![(2, 1.0)]);
        let t = kernel(2.25, 5, Interpolator::Linear);
        assert_eq!(t, vec![(2, 0.75), (3, 0.25)]);
    }

    /// Halving a 1 mm grid to 2 mm: the grid and crop PyRadiomics computes, by hand.
    #[test]
    fn new_grid_follows_pyradiomics() {
        let r = roi([20, 20, 10], [1.0, 1.0, 2.0], |x, _, _| x as f64, |x, y, z| (8..12).contains(&x) && (8..12).contains(&y) && z == 4);
        let out = resample(&r, [2.0, 0.0, 0.0], Interpolator::Linear, 1, SampleType::Float64);
        // x: r = 0.5, lb = ⌊7.5·0.5 − 1⌋ = 2, ub = ⌈11.5·0.5 + 1⌉ = 7 → 6 voxels. y keeps 1 mm
        // (target 0): ⌊7.5 − 1⌋ = 6 … ⌈11.5 + 1⌉ = 13 → 8 voxels. z spans one voxel, so it
        // keeps 2 mm: ⌊3.5 − 1⌋ = 2 … ⌈4.5 + 1⌉ = 6 → 5 voxels.
        assert_eq!(out.spacing, [2.0, 1.0, 2.0]);
        assert_eq!(out.dims, [6, 8, 5]);
        // New x voxel k sits at old index ½·(2 − 1)/1 + 2/0.5 + 2k = 4.5 + 2k.
        for k in 0..6 {
            assert!((out.intensities[k] - (4.5 + 2.0 * k as f64)).abs() < 1e-12);
        }
        assert_eq!(out.mask.iter().filter(|m| **m).count(), 2 * 4);
    }

    #[test]
    fn same_spacing_only_crops() {
        let r = roi([20, 20, 10], [1.0; 3], |x, y, z| (x + 10 * y + 100 * z) as f64, |x, y, z| (5..9).contains(&x) && (6..8).contains(&y) && (2..4).contains(&z));
        let out = resample(&r, [1.0, 1.0, 0.0], Interpolator::BSpline, 2, SampleType::Float64);
        assert_eq!(out.dims, [8, 6, 6]);
        assert_eq!(out.intensities[0], (3 + 10 * 4) as f64);
    }

    #[test]
    fn integer_images_are_truncated_like_itk() {
        let r = roi([12, 12, 12], [1.0; 3], |x, _, _| if x % 2 == 0 { 10.0 } else { 13.0 }, |x, y, z| (4..8).contains(&x) && (4..8).contains(&y) && (4..8).contains(&z));
        let out = resample(&r, [0.75, 0.75, 0.75], Interpolator::Linear, 0, SampleType::Integer { min: -32768.0, max: 32767.0 });
        assert!(out.intensities.iter().all(|v| v.fract() == 0.0));
        assert!(out.intensities.iter().any(|v| *v == 11.0 || *v == 12.0));
    }
}
