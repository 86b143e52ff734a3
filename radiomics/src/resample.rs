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
//! The image is sampled with the chosen interpolator as ITK's `ResampleImageFilter` does,
//! operation for operation: each voxel's continuous index is found through the same
//! physical-space round trip and per-line interpolation, so that voxels falling exactly
//! half-way (nearest neighbour) or interpolating to an exact integer (integer images, where
//! ITK truncates) come out as ITK's; points outside [−½, N − ½) get 0; the output is cast
//! back to the input's pixel type. The mask is sampled with nearest neighbour. For grids
//! whose directions are not axis-aligned, the inverse direction matrix can differ from
//! ITK's SVD inverse in the last bit.

use fedrad_imaging::{Geometry, SampleType};

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
/// the label mask, on the image's grid. `image` and `mask` are the two files' geometries
/// (PyRadiomics lays the new grid out from the mask's); `spacing` is the target (0 = keep);
/// `sample` is the pixel type the image is written back in.
pub fn resample(roi: &Roi, image: &Geometry, mask: &Geometry, spacing: [f64; 3], interpolator: Interpolator, pad: usize, sample: SampleType) -> Roi {
    let Some((lo, hi)) = roi.bounding_box(|i| roi.mask[i]) else { return roi.clone() };
    let old = mask.spacing;
    let new: [f64; 3] = [0, 1, 2].map(|a| if spacing[a] == 0.0 || hi[a] == lo[a] { old[a] } else { spacing[a] });
    if (0..3).all(|a| (image.spacing[a] - new[a]).abs() <= 1e-8 + 1e-5 * new[a].abs()) {
        let (lo, hi) = padded_mask_box(roi, pad);
        return roi.crop(lo, hi);
    }
    // The new grid, in PyRadiomics' own arithmetic (numpy, element by element).
    let mut first = [0.0; 3];
    let mut dims = [0usize; 3];
    let mut origin_index = [0.0; 3];
    for a in 0..3 {
        let ratio = old[a] / new[a];
        let lb = ((lo[a] as f64 - 0.5) * ratio - pad as f64).floor().max(0.0);
        let ub = ((hi[a] as f64 + 1.0 - 0.5) * ratio + pad as f64).ceil().min((roi.dims[a] as f64 * ratio).ceil() - 1.0);
        first[a] = lb;
        dims[a] = (ub - lb + 1.0).max(1.0) as usize;
        origin_index[a] = 0.5 * (new[a] - old[a]) / old[a] + lb / ratio;
    }
    let mask_frame = Frame::new(mask);
    let output = Frame { origin: mask_frame.continuous_index_to_point(origin_index), ..Frame::new(&Geometry { spacing: new, ..mask.clone() }) };
    let coefficients;
    let source = match interpolator {
        Interpolator::BSpline => {
            coefficients = bspline_coefficients(&roi.intensities, roi.dims);
            &coefficients
        }
        _ => &roi.intensities,
    };
    let intensities =
        sample_grid(&output, dims, &Frame::new(image), roi.dims, |c| interpolate(source, roi.dims, c, interpolator)).into_iter().map(|v| sample.cast(v)).collect();
    let as_f64: Vec<f64> = roi.mask.iter().map(|m| if *m { 1.0 } else { 0.0 }).collect();
    let mask: Vec<bool> =
        sample_grid(&output, dims, &mask_frame, roi.dims, |c| interpolate(&as_f64, roi.dims, c, Interpolator::NearestNeighbor)).into_iter().map(|v| v > 0.5).collect();
    Roi { dims, spacing: new, intensities, morph_mask: mask.clone(), mask }
}

/// ITK's index ↔ physical point arithmetic for one image, operation for operation, so that
/// continuous indices (and with them nearest-neighbour ties and integer truncation) come out
/// as ITK's do.
struct Frame {
    origin: [f64; 3],
    /// direction · diag(spacing)
    to_point: [[f64; 3]; 3],
    /// Its inverse. Exact reciprocals for axis-aligned grids, as ITK's SVD inverse gives them
    /// there; a general inverse otherwise.
    to_index: [[f64; 3]; 3],
}

impl Frame {
    fn new(g: &Geometry) -> Frame {
        let m: [[f64; 3]; 3] = [0, 1, 2].map(|r| [0, 1, 2].map(|c| g.direction[r][c] * g.spacing[c]));
        let axis_aligned = g.direction.iter().flatten().all(|v| *v == 0.0 || v.abs() == 1.0);
        let to_index = if axis_aligned {
            [0, 1, 2].map(|r| [0, 1, 2].map(|c| if m[c][r] != 0.0 { 1.0 / m[c][r] } else { 0.0 }))
        } else {
            let det =
                m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
            [0, 1, 2].map(|r| {
                [0, 1, 2].map(|c| {
                    let (r1, r2, c1, c2) = ((c + 1) % 3, (c + 2) % 3, (r + 1) % 3, (r + 2) % 3);
                    (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / det
                })
            })
        };
        Frame { origin: g.origin, to_point: m, to_index }
    }

    /// `TransformIndexToPhysicalPoint`: the origin, plus each column in turn.
    fn index_to_point(&self, idx: [f64; 3]) -> [f64; 3] {
        [0, 1, 2].map(|r| {
            let mut p = self.origin[r];
            for c in 0..3 {
                p += self.to_point[r][c] * idx[c];
            }
            p
        })
    }

    /// `TransformContinuousIndexToPhysicalPoint`: the sum of the columns, then the origin.
    fn continuous_index_to_point(&self, idx: [f64; 3]) -> [f64; 3] {
        [0, 1, 2].map(|r| {
            let mut sum = 0.0;
            for c in 0..3 {
                sum += self.to_point[r][c] * idx[c];
            }
            sum + self.origin[r]
        })
    }

    /// `TransformPhysicalPointToContinuousIndex`.
    fn point_to_continuous_index(&self, p: [f64; 3]) -> [f64; 3] {
        let v = [0, 1, 2].map(|k| p[k] - self.origin[k]);
        [0, 1, 2].map(|r| {
            let mut sum = 0.0;
            for c in 0..3 {
                sum += self.to_index[r][c] * v[c];
            }
            sum
        })
    }
}

/// ITK `ResampleImageFilter` with a linear (here identity) transform: each output x-line
/// maps its first voxel and the voxel one past its end into the input, and voxel x of the
/// line sits at start + (x / n)·(end − start). Points outside
/// [−½, N − ½) on any axis get 0.
fn sample_grid(output: &Frame, dims: [usize; 3], input: &Frame, input_dims: [usize; 3], value: impl Fn([f64; 3]) -> f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(dims.iter().product());
    let nx = dims[0] as f64;
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            let (y, z) = (y as f64, z as f64);
            let start = input.point_to_continuous_index(output.index_to_point([0.0, y, z]));
            let end = input.point_to_continuous_index(output.index_to_point([nx, y, z]));
            let along = [0, 1, 2].map(|i| end[i] - start[i]);
            for x in 0..dims[0] {
                let alpha = x as f64 / nx;
                let c = [0, 1, 2].map(|i| start[i] + alpha * along[i]);
                let inside = (0..3).all(|i| c[i] >= -0.5 && c[i] < input_dims[i] as f64 - 0.5);
                out.push(if inside { value(c) } else { 0.0 });
            }
        }
    }
    out
}

/// The value at continuous index `c` (inside the image) with ITK's interpolator.
fn interpolate(data: &[f64], dims: [usize; 3], c: [f64; 3], interpolator: Interpolator) -> f64 {
    let at = |i: [usize; 3]| data[i[0] + dims[0] * (i[1] + dims[1] * i[2])];
    match interpolator {
        // ConvertContinuousIndexToNearestIndex: halves round up.
        Interpolator::NearestNeighbor => at([0, 1, 2].map(|a| ((c[a] + 0.5).floor().max(0.0) as usize).min(dims[a] - 1))),
        Interpolator::Linear => {
            // LinearInterpolateImageFunction::EvaluateOptimized: an axis is interpolated when
            // the point lies past its base voxel and the next voxel exists; the interpolation
            // runs as v0 + (v1 − v0)·d, along x, then y, then z.
            let mut base = [0usize; 3];
            let mut d = [0.0; 3];
            let mut active = [false; 3];
            for a in 0..3 {
                let b = c[a].floor().max(0.0);
                base[a] = b as usize;
                d[a] = c[a] - b;
                active[a] = d[a] > 0.0 && base[a] + 1 < dims[a];
            }
            let corner = |k: usize| at([0, 1, 2].map(|a| base[a] + ((k >> a) & 1)));
            // Corner values over the active axes, then lerp away x, y, z in turn.
            let mut v: Vec<f64> = (0..8).filter(|k| (0..3).all(|a| active[a] || (k >> a) & 1 == 0)).map(corner).collect();
            for a in (0..3).filter(|a| active[*a]) {
                v = v.chunks(2).map(|p| p[0] + (p[1] - p[0]) * d[a]).collect();
            }
            v[0]
        }
        Interpolator::BSpline => {
            // BSplineInterpolateImageFunction, order 3.
            let mut index = [[0usize; 4]; 3];
            let mut weight = [[0.0; 4]; 3];
            for a in 0..3 {
                let (i, w) = cubic_taps(c[a], dims[a]);
                index[a] = i;
                weight[a] = w;
            }
            let mut sum = 0.0;
            for p in 0..64 {
                let k = [p % 4, (p / 4) % 4, p / 16];
                let mut w = 1.0;
                for a in 0..3 {
                    w *= weight[a][k[a]];
                }
                sum += w * at([0, 1, 2].map(|a| index[a][k[a]]));
            }
            sum
        }
    }
}

/// The four coefficient indices (mirrored at the ends) and cubic B-spline weights along one
/// axis of `n` voxels at continuous index `x`, as ITK's `DetermineRegionOfSupport`,
/// `SetInterpolationWeights` and `ApplyMirrorBoundaryConditions` compute them.
fn cubic_taps(x: f64, n: usize) -> ([usize; 4], [f64; 4]) {
    // ITK takes the floor of x in single precision.
    let first = (x as f32).floor() as isize - 1;
    let w = x - (first + 1) as f64;
    let w3 = (1.0 / 6.0) * w * w * w;
    let w0 = (1.0 / 6.0) + 0.5 * w * (w - 1.0) - w3;
    let w2 = w + w0 - 2.0 * w3;
    let w1 = 1.0 - w0 - w2 - w3;
    let last = n as isize - 1;
    let mirror = |k: isize| {
        if n == 1 {
            return 0;
        }
        let k = if k < 0 { -k } else { k };
        let k = if k >= last { last - (k - last) } else { k };
        k.clamp(0, last) as usize
    };
    ([0, 1, 2, 3].map(|j| mirror(first + j)), [w0, w1, w2, w3])
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
        z2n = z2n * (z2n * iz); // z^(2n−2) · z^(2n−2) / z, in the order ITK multiplies
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

    fn line(data: &[f64], x: f64, interpolator: Interpolator) -> f64 {
        interpolate(data, [data.len(), 1, 1], [x, 0.0, 0.0], interpolator)
    }

    /// Cubic B-spline interpolation reproduces the samples at the grid points and
    /// polynomials up to degree 3 away from the mirrored edges.
    #[test]
    fn bspline_interpolates_samples_and_cubics() {
        let n = 40;
        let f = |x: f64| 0.02 * x * x * x - 0.7 * x * x + 3.0 * x - 5.0;
        let data: Vec<f64> = (0..n).map(|x| f(x as f64)).collect();
        let c = bspline_coefficients(&data, [n, 1, 1]);
        for k in 0..n {
            let v = line(&c, k as f64, Interpolator::BSpline);
            assert!((v - data[k]).abs() < 1e-9 * data[k].abs().max(1.0), "sample {k}");
        }
        for x in [10.25, 17.5, 23.9] {
            let v = line(&c, x, Interpolator::BSpline);
            assert!((v - f(x)).abs() < 1e-6 * f(x).abs().max(1.0), "x = {x}: {v} vs {}", f(x));
        }
    }

    #[test]
    fn short_lines_use_the_exact_initial_coefficient() {
        // 10 samples < horizon 18: the full mirror sum; the interpolant still passes through them.
        let data: Vec<f64> = (0..10).map(|x| ((x * 7) % 5) as f64).collect();
        let c = bspline_coefficients(&data, [10, 1, 1]);
        for k in 0..10 {
            let v = line(&c, k as f64, Interpolator::BSpline);
            assert!((v - data[k]).abs() < 1e-12, "{k}: {v}");
        }
    }

    #[test]
    fn interpolators_follow_itk_at_the_edges() {
        let data = [10.0, 20.0, 40.0, 80.0, 160.0];
        assert_eq!(line(&data, -0.3, Interpolator::Linear), 10.0);
        assert_eq!(line(&data, 4.3, Interpolator::Linear), 160.0);
        assert_eq!(line(&data, 2.25, Interpolator::Linear), 50.0);
        assert_eq!(line(&data, 1.5, Interpolator::NearestNeighbor), 40.0);
        assert_eq!(cubic_taps(0.2, 5).0, [1, 0, 1, 2]);
        assert_eq!(cubic_taps(3.7, 5).0, [2, 3, 4, 3]);
    }

    /// Halving a 1 mm grid to 2 mm: the grid and crop PyRadiomics computes, by hand.
    #[test]
    fn new_grid_follows_pyradiomics() {
        let r = roi([20, 20, 10], [1.0, 1.0, 2.0], |x, _, _| x as f64, |x, y, z| (8..12).contains(&x) && (8..12).contains(&y) && z == 4);
        let g = Geometry::axis_aligned(r.dims, r.spacing);
        let out = resample(&r, &g, &g, [2.0, 0.0, 0.0], Interpolator::Linear, 1, SampleType::Float64);
        // x: r = 0.5, lb = ⌊7.5·0.5 − 1⌋ = 2, ub = ⌈11.5·0.5 + 1⌉ = 7 → 6 voxels. y keeps 1 mm
        // (target 0): ⌊7.5 − 1⌋ = 6 … ⌈11.5 + 1⌉ = 13 → 8 voxels. z spans one voxel, so it
        // keeps 2 mm: ⌊3.5 − 1⌋ = 2 … ⌈4.5 + 1⌉ = 6 → 5 voxels.
        assert_eq!(out.spacing, [2.0, 1.0, 2.0]);
        assert_eq!(out.dims, [6, 8, 5]);
        // New x voxel k sits at old index ½·(2 − 1)/1 + 2/0.5 + 2k = 4.5 + 2k.
        for k in 0..6 {
            assert!((out.intensities[k] - (4.5 + 2.0 * k as f64)).abs() < 1e-12);
        }
        // Old x 9 and 11 are nearest (halves round up) to new voxels in the ROI: 2 × 4 × 1.
        assert_eq!(out.mask.iter().filter(|m| **m).count(), 2 * 4);
    }

    #[test]
    fn same_spacing_only_crops() {
        let r = roi([20, 20, 10], [1.0; 3], |x, y, z| (x + 10 * y + 100 * z) as f64, |x, y, z| (5..9).contains(&x) && (6..8).contains(&y) && (2..4).contains(&z));
        let g = Geometry::axis_aligned(r.dims, r.spacing);
        let out = resample(&r, &g, &g, [1.0, 1.0, 0.0], Interpolator::BSpline, 2, SampleType::Float64);
        assert_eq!(out.dims, [8, 6, 6]);
        assert_eq!(out.intensities[0], (3 + 10 * 4) as f64);
    }

    #[test]
    fn integer_images_are_truncated_like_itk() {
        let r = roi([12, 12, 12], [1.0; 3], |x, _, _| if x % 2 == 0 { 10.0 } else { 13.0 }, |x, y, z| (4..8).contains(&x) && (4..8).contains(&y) && (4..8).contains(&z));
        let g = Geometry::axis_aligned(r.dims, r.spacing);
        let out = resample(&r, &g, &g, [0.75, 0.75, 0.75], Interpolator::Linear, 0, SampleType::Integer { min: -32768.0, max: 32767.0 });
        assert!(out.intensities.iter().all(|v| v.fract() == 0.0));
        assert!(out.intensities.iter().any(|v| *v == 11.0 || *v == 12.0));
    }

    /// The general inverse agrees with the axis-aligned one, and a point maps back to its index.
    #[test]
    fn frames_round_trip() {
        let mut g = Geometry::axis_aligned([10, 10, 10], [0.8, 0.9, 4.0]);
        g.origin = [39.5, -12.25, 7.0];
        let (c, s) = (0.6f64, 0.8f64);
        g.direction = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let f = Frame::new(&g);
        let back = f.point_to_continuous_index(f.continuous_index_to_point([1.25, 3.5, 2.0]));
        for (a, b) in back.iter().zip([1.25, 3.5, 2.0]) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
