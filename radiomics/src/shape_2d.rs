//! PyRadiomics' `shape2D` class: the shape of a ROI that lies in one slice.
//!
//! The outline is traced by marching squares over the mask padded with one empty pixel:
//! each 2 × 2 square of pixel centres whose corners are partly inside contributes line
//! segments between the midpoints of its edges (the two diagonal cases give two separate
//! segments, so diagonal pixels do not connect). With the segments oriented so that the ROI
//! is on one side, and points in mm:
//!
//! | feature | formula |
//! |---|---|
//! | MeshSurface | A = ½ Σ (a_y b_x − b_y a_x) over the segments a → b |
//! | PixelSurface | N_p · Δy Δx |
//! | Perimeter | P = Σ \|b − a\| |
//! | PerimeterSurfaceRatio | P / A |
//! | Sphericity | 2 √(π A) / P |
//! | SphericalDisproportion | P / (2 √(π A)) |
//! | MaximumDiameter | the largest distance between two outline points |
//! | MajorAxisLength | 4 √λ_major |
//! | MinorAxisLength | 4 √λ_minor |
//! | Elongation | √(λ_minor / λ_major) |
//!
//! λ are the eigenvalues of the covariance (over N_p) of the pixel centres in mm. IBSI has no
//! 2D morphology, so no feature carries an IBSI code. A ROI that spans more than one slice
//! across the slice axis has no 2D shape: the features are NaN (PyRadiomics leaves them out).
//! Rows and columns are the slice's axes in numpy order, as PyRadiomics takes them — (y, x)
//! for axial, (z, x) for coronal, (z, y) for sagittal slices — because the outline's
//! orientation, and with it the sign convention of the area, follows them.

use super::{Feature, Roi, feature};

pub const FEATURES: [&str; 10] = [
    "MeshSurface",
    "PixelSurface",
    "Perimeter",
    "PerimeterSurfaceRatio",
    "Sphericity",
    "SphericalDisproportion",
    "MaximumDiameter",
    "MajorAxisLength",
    "MinorAxisLength",
    "Elongation",
];

/// The 2D shape of the morphological mask, in slices across `slice_axis` (0 = x, 1 = y, 2 = z).
pub fn features(roi: &Roi, slice_axis: usize) -> Vec<Feature> {
    let values = values(roi, slice_axis).unwrap_or([f64::NAN; 10]);
    FEATURES.iter().zip(values).map(|(n, v)| feature(&format!("shape2D_{n}"), v, "", None)).collect()
}

fn values(roi: &Roi, slice_axis: usize) -> Option<[f64; 10]> {
    let (lo, hi) = roi.bounding_box(|i| roi.morph_mask[i])?;
    if lo[slice_axis] != hi[slice_axis] {
        return None;
    }
    let (row_axis, col_axis) = match slice_axis {
        0 => (2, 1),
        1 => (2, 0),
        _ => (1, 0),
    };
    // The padded 2D mask over the bounding box: one empty pixel all round.
    let (rows, cols) = (hi[row_axis] - lo[row_axis] + 3, hi[col_axis] - lo[col_axis] + 3);
    let mut mask = vec![false; rows * cols];
    let mut centres = Vec::new();
    let spacing = [roi.spacing[row_axis], roi.spacing[col_axis]];
    for r in 0..rows - 2 {
        for c in 0..cols - 2 {
            let mut v = lo;
            v[row_axis] += r;
            v[col_axis] += c;
            if roi.morph_mask[roi.index(v[0], v[1], v[2])] {
                mask[(r + 1) * cols + c + 1] = true;
                centres.push([(r + 1) as f64 * spacing[0], (c + 1) as f64 * spacing[1]]);
            }
        }
    }
    let (perimeter, surface, diameter) = outline(&mask, rows, cols, spacing);
    let n = centres.len() as f64;
    let (major, minor) = principal_variances(&centres);
    let sphericity = 2.0 * (std::f64::consts::PI * surface).sqrt() / perimeter;
    Some([
        surface,
        n * spacing[0] * spacing[1],
        perimeter,
        perimeter / surface,
        sphericity,
        1.0 / sphericity,
        diameter,
        if major >= 0.0 { major.sqrt() * 4.0 } else { f64::NAN },
        if minor >= 0.0 { minor.sqrt() * 4.0 } else { f64::NAN },
        if minor >= 0.0 && major > 0.0 { (minor / major).sqrt() } else { f64::NAN },
    ])
}

/// Marching squares over a padded mask: perimeter, area and the largest distance between the
/// outline's points. Square corners are numbered p0 (top left), p1 (top right), p2 (bottom
/// right), p3 (bottom left); edge k joins p_k to p_{k+1}, and its midpoint is where the
/// outline crosses it. Going round the edges, an entering crossing (outside → inside) is
/// joined to the next leaving one.
fn outline(mask: &[bool], rows: usize, cols: usize, spacing: [f64; 2]) -> (f64, f64, f64) {
    const CORNERS: [[usize; 2]; 4] = [[0, 0], [0, 1], [1, 1], [1, 0]];
    const MIDPOINTS: [[f64; 2]; 4] = [[0.0, 0.5], [0.5, 1.0], [1.0, 0.5], [0.5, 0.0]];
    let (mut perimeter, mut twice_area) = (0.0, 0.0);
    let mut points: Vec<[f64; 2]> = Vec::new();
    for r in 0..rows - 1 {
        for c in 0..cols - 1 {
            let inside = CORNERS.map(|[dr, dc]| mask[(r + dr) * cols + c + dc]);
            if inside.iter().all(|v| *v) || !inside.iter().any(|v| *v) {
                continue;
            }
            let point = |k: usize| [(r as f64 + MIDPOINTS[k][0]) * spacing[0], (c as f64 + MIDPOINTS[k][1]) * spacing[1]];
            for enter in (0..4).filter(|&k| !inside[k] && inside[(k + 1) % 4]) {
                let leave = (1..4).map(|s| (enter + s) % 4).find(|&k| inside[k] && !inside[(k + 1) % 4]).unwrap_or(enter);
                let (a, b) = (point(enter), point(leave));
                twice_area += a[0] * b[1] - b[0] * a[1];
                perimeter += ((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])).sqrt();
            }
            // Each crossing is kept once: by the square whose left (p3–p0) or bottom (p2–p3)
            // edge it lies on.
            if inside[3] != inside[0] {
                points.push(point(3));
            }
            if inside[2] != inside[3] {
                points.push(point(2));
            }
        }
    }
    let mut diameter_sq: f64 = 0.0;
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let d = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]);
            diameter_sq = diameter_sq.max(d);
        }
    }
    (perimeter, twice_area / 2.0, diameter_sq.sqrt())
}

/// The eigenvalues (larger, smaller) of the population covariance of 2D points.
fn principal_variances(points: &[[f64; 2]]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = [0, 1].map(|k| points.iter().map(|p| p[k]).sum::<f64>() / n);
    let (mut a, mut b, mut d) = (0.0, 0.0, 0.0);
    for p in points {
        let (y, x) = (p[0] - mean[0], p[1] - mean[1]);
        a += y * y / n;
        b += y * x / n;
        d += x * x / n;
    }
    let half_trace = (a + d) / 2.0;
    let root = (((a - d) / 2.0).powi(2) + b * b).sqrt();
    let minor = half_trace - root;
    // Round machine-error negatives to 0, as PyRadiomics does.
    (half_trace + root, if minor < 0.0 && minor > -1e-10 { 0.0 } else { minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_roi(side: usize, spacing: [f64; 3]) -> Roi {
        let dims = [side + 4, side + 4, 3];
        let mut mask = vec![false; dims.iter().product()];
        for y in 2..2 + side {
            for x in 2..2 + side {
                mask[x + dims[0] * (y + dims[1])] = true; // slice z = 1
            }
        }
        Roi { dims, spacing, intensities: vec![0.0; mask.len()], morph_mask: mask.clone(), mask }
    }

    /// A 4 × 4 pixel square: its outline cuts the corners, so the area is 16 − 4·⅛ = 15.5
    /// and the perimeter 4·3 + 4·√½.
    #[test]
    fn a_square_by_hand() {
        let f = features(&square_roi(4, [1.0, 1.0, 5.0]), 2);
        let v = |n: &str| f.iter().find(|f| f.name == format!("shape2D_{n}")).unwrap().value;
        assert!((v("MeshSurface") - 15.5).abs() < 1e-12, "{}", v("MeshSurface"));
        assert!((v("Perimeter") - (12.0 + 4.0 * 0.5f64.sqrt())).abs() < 1e-12);
        assert_eq!(v("PixelSurface"), 16.0);
        assert!((v("Elongation") - 1.0).abs() < 1e-12);
        // The farthest outline points are opposite corner cuts, (0.5, 1) and (4.5, 4): 5 apart.
        assert!((v("MaximumDiameter") - 5.0).abs() < 1e-12);
    }

    #[test]
    fn a_roi_over_two_slices_has_no_2d_shape() {
        let mut r = square_roi(3, [1.0; 3]);
        let i = r.index(3, 3, 2);
        r.morph_mask[i] = true;
        assert!(features(&r, 2).iter().all(|f| f.value.is_nan()));
    }
}
