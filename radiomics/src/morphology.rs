//! Morphological features (IBSI 3.1, HCUG), from voxel centres in world millimetres.
//!
//! Mesh features use the marching-cubes surface of the mask from [`super::mesh`] (volume V,
//! area A, as PyRadiomics computes them);
//! λ₁ ≥ λ₂ ≥ λ₃ are the eigenvalues of the sample covariance (n − 1) of voxel centres.
//!
//! The axis lengths come twice because the two references differ: PyRadiomics divides the
//! covariance by n, the IBSI by n − 1 (its digital phantom's reference values need it), so
//! the lengths differ by √(n/(n − 1)). `MajorAxisLength` and its siblings are PyRadiomics'
//! and carry no IBSI code; `IbsiMajorAxisLength` and its siblings carry the codes.
//! Elongation and flatness are ratios, the same under both.
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Volume (mesh) | RNU0 | V |
//! | Surface area (mesh) | C0JK | A |
//! | Surface to volume ratio | 2PR5 | A/V |
//! | Compactness 1 | SKGS | V/(π^{1/2} A^{3/2}) |
//! | Compactness 2 | BQWJ | 36π V²/A³ |
//! | Spherical disproportion | KRCK | A/(36π V²)^{1/3} |
//! | Sphericity | QCFX | (36π V²)^{1/3}/A |
//! | Asphericity | 25C7 | (A³/(36π V²))^{1/3} − 1 |
//! | Maximum 3D diameter | L0JK | largest distance between mesh (hull) vertices |
//! | Maximum 2D diameter slice / column / row | — | largest distance between mesh vertices in one axial (same z) / coronal (same y) / sagittal (same x) plane; PyRadiomics' features, computed only under its naming ([`plane_diameters`]) |
//! | Volume / area density, axis-aligned bounding box | PBX1 R59B | V/V_aabb, A/A_aabb of the mesh's box |
//! | Volume / area density, approximate enclosing ellipsoid | 6BDE RDD2 | semi-axes 2√λ_k; area by the Legendre series (20 terms) |
//! | Volume / area density, convex hull | R3ER 7T7F | V/V_hull, A/A_hull |
//! | Integrated intensity | 99N0 | mean ROI intensity · V |
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Volume (voxel counting) | YEKZ | N_v · voxel volume |
//! | Centre of mass shift | KLMA | ‖ mean of voxel centres − intensity-weighted mean ‖ |
//! | Major / minor / least axis length | — | 4 √λ′ for the eigenvalues λ′_k = λ_k (n − 1)/n of the population covariance (PyRadiomics' definition) |
//! | IBSI major / minor / least axis length | TDIC P9VJ 7J51 | 4 √λ for the eigenvalues λ₁ ≥ λ₂ ≥ λ₃ of the sample covariance (n − 1) of voxel centres (IBSI's definition) |
//! | Elongation | Q3CK | √(λ₂/λ₁) |
//! | Flatness | N17B | √(λ₃/λ₁) |
//! | Moran's I | N365 | N_v/Σw · Σ_{k≠l} w_kl (X_k − μ)(X_l − μ) / Σ_k (X_k − μ)², w_kl = 1/‖r_k − r_l‖ |
//! | Geary's C | NPT7 | (N_v − 1)/(2 Σw) · Σ_{k≠l} w_kl (X_k − X_l)² / Σ_k (X_k − μ)² |
//!
//! Moran's I and Geary's C sum over all voxel pairs, but w_kl depends only on the offset
//! between voxels, so the sums are weighted auto- and cross-correlations of the ROI's
//! (centred) intensities and its indicator, computed exactly by FFT in O(M log M) for a
//! bounding box of M voxels instead of O(N_v²) (see [`autocorrelation`]).

use super::mesh::Surface;
use super::{Feature, Roi, feature};

/// Eigenvalues of a symmetric 3×3 matrix, descending (cyclic Jacobi).
pub fn symmetric_eigenvalues(mut a: [[f64; 3]; 3]) -> [f64; 3] {
    for _ in 0..100 {
        let off = a[0][1].powi(2) + a[0][2].powi(2) + a[1][2].powi(2);
        if off < 1e-30 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q].abs() < 1e-300 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            let mut b = a;
            for k in 0..3 {
                b[k][p] = c * a[k][p] - s * a[k][q];
                b[k][q] = s * a[k][p] + c * a[k][q];
            }
            let mut d = b;
            for k in 0..3 {
                d[p][k] = c * b[p][k] - s * b[q][k];
                d[q][k] = s * b[p][k] + c * b[q][k];
            }
            a = d;
        }
    }
    let mut e = [a[0][0], a[1][1], a[2][2]];
    e.sort_by(|x, y| y.total_cmp(x));
    e
}

/// Surface area of an ellipsoid with semi-axes a ≥ b ≥ c (IBSI's Legendre series).
pub fn ellipsoid_area(a: f64, b: f64, c: f64) -> f64 {
    let alpha = (1.0 - (b * b) / (a * a)).max(0.0).sqrt();
    let beta = (1.0 - (c * c) / (a * a)).max(0.0).sqrt();
    let ab = alpha * beta;
    if ab == 0.0 {
        // α or β is 0: the first term alone (the series' other terms vanish).
        return 4.0 * std::f64::consts::PI * a * b * if alpha == 0.0 && beta == 0.0 { 1.0 } else { legendre_sum(alpha, beta) };
    }
    4.0 * std::f64::consts::PI * a * b * legendre_sum(alpha, beta)
}

fn legendre_sum(alpha: f64, beta: f64) -> f64 {
    let ab = alpha * beta;
    if ab == 0.0 {
        return 1.0;
    }
    let x = (alpha * alpha + beta * beta) / (2.0 * ab);
    let (mut p_prev, mut p) = (1.0, x);
    let mut sum = 1.0;
    for nu in 1..=20 {
        let nu_f = nu as f64;
        if nu > 1 {
            let next = ((2.0 * nu_f - 1.0) * x * p - (nu_f - 1.0) * p_prev) / nu_f;
            p_prev = p;
            p = next;
        }
        sum += ab.powi(nu) / (1.0 - 4.0 * nu_f * nu_f) * p;
    }
    sum
}

/// The mesh-based features, in the order of the table above.
fn mesh_features(mesh: &Surface, eigenvalues: [f64; 3], mean_intensity: f64) -> Vec<(&'static str, &'static str, f64)> {
    use std::f64::consts::PI;
    let (v, a) = (mesh.volume, mesh.area);
    let hull = super::hull::Hull::new(&mesh.vertices);
    let hull_points: Vec<[f64; 3]> = hull.as_ref().map_or(mesh.vertices.clone(), |h| h.vertices().iter().map(|i| h.points[*i]).collect());
    let mut diameter = 0.0f64;
    for i in 0..hull_points.len() {
        for j in i + 1..hull_points.len() {
            diameter = diameter.max(super::mesh::norm(super::mesh::sub(hull_points[i], hull_points[j])));
        }
    }
    let lo = [0, 1, 2].map(|k| mesh.vertices.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min));
    let hi = [0, 1, 2].map(|k| mesh.vertices.iter().map(|p| p[k]).fold(f64::NEG_INFINITY, f64::max));
    let e = [0, 1, 2].map(|k| hi[k] - lo[k]);
    let (box_v, box_a) = (e[0] * e[1] * e[2], 2.0 * (e[0] * e[1] + e[1] * e[2] + e[0] * e[2]));
    let [sa, sb, sc] = eigenvalues.map(|l| 2.0 * l.sqrt());
    let (ell_v, ell_a) = (4.0 * PI * sa * sb * sc / 3.0, ellipsoid_area(sa, sb, sc));
    let (hull_v, hull_a) = hull.as_ref().map_or((f64::NAN, f64::NAN), |h| (h.volume(), h.area()));
    let s = (36.0 * PI * v * v).cbrt();
    vec![
        ("VolumeMesh", "RNU0", v),
        ("SurfaceArea", "C0JK", a),
        ("SurfaceToVolumeRatio", "2PR5", a / v),
        ("Compactness1", "SKGS", v / (PI.sqrt() * a.powf(1.5))),
        ("Compactness2", "BQWJ", 36.0 * PI * v * v / a.powi(3)),
        ("SphericalDisproportion", "KRCK", a / s),
        ("Sphericity", "QCFX", s / a),
        ("Asphericity", "25C7", (a.powi(3) / (36.0 * PI * v * v)).cbrt() - 1.0),
        ("Maximum3DDiameter", "L0JK", diameter),
        ("VolumeDensityAABB", "PBX1", v / box_v),
        ("AreaDensityAABB", "R59B", a / box_a),
        ("VolumeDensityEnclosingEllipsoid", "6BDE", v / ell_v),
        ("AreaDensityEnclosingEllipsoid", "RDD2", a / ell_a),
        ("VolumeDensityConvexHull", "R3ER", v / hull_v),
        ("AreaDensityConvexHull", "7T7F", a / hull_a),
        ("IntegratedIntensity", "99N0", mean_intensity * v),
    ]
}

/// PyRadiomics' `Maximum2DDiameterSlice`, `Maximum2DDiameterColumn` and
/// `Maximum2DDiameterRow` of the morphological mask: for each axis z, y, x, the largest
/// distance between two mesh vertices with the same coordinate on that axis. The largest
/// distance within a plane is between two vertices of the plane's convex hull, so each plane
/// takes its 2D hull first instead of PyRadiomics' all pairs.
fn plane_diameters(mesh: &Surface, spacing: [f64; 3]) -> [f64; 3] {
    if mesh.vertices.is_empty() {
        return [f64::NAN; 3];
    }
    // Vertices lie on grid lines or edge midpoints: twice the index is a whole number.
    let half_index = |p: &[f64; 3], axis: usize| (p[axis] / spacing[axis] * 2.0).round() as i64;
    [2, 1, 0].map(|axis| {
        let mut planes: std::collections::BTreeMap<i64, Vec<[f64; 2]>> = std::collections::BTreeMap::new();
        let [u, v] = match axis {
            2 => [0, 1],
            1 => [0, 2],
            _ => [1, 2],
        };
        for p in &mesh.vertices {
            planes.entry(half_index(p, axis)).or_default().push([p[u], p[v]]);
        }
        planes.into_values().map(|points| widest_pair(&convex_hull_2d(points))).fold(0.0, f64::max)
    })
}

/// The convex hull of points in the plane (Andrew's monotone chain), without collinear points.
fn convex_hull_2d(mut points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: [f64; 2], a: [f64; 2], b: [f64; 2]| (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(2 * points.len());
    for pass in 0..2 {
        let start = hull.len();
        let ordered: Box<dyn Iterator<Item = &[f64; 2]>> = if pass == 0 { Box::new(points.iter()) } else { Box::new(points.iter().rev()) };
        for &p in ordered {
            while hull.len() >= start + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// The largest distance between two of `points`.
fn widest_pair(points: &[[f64; 2]]) -> f64 {
    let mut widest = 0.0f64;
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            widest = widest.max(((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt());
        }
    }
    widest
}

/// The features of the table above.
pub fn features(roi: &Roi) -> Vec<Feature> {
    features_of(roi, &Surface::of_mask(&roi.morph_mask, roi.dims, roi.spacing))
}

/// [`features`] and, from the same mesh, PyRadiomics' `Maximum2DDiameterSlice`, `…Column` and
/// `…Row` ([`plane_diameters`]), for PyRadiomics' names.
pub fn features_with_plane_diameters(roi: &Roi) -> Vec<Feature> {
    let mesh = Surface::of_mask(&roi.morph_mask, roi.dims, roi.spacing);
    let mut out = features_of(roi, &mesh);
    let [slice, column, row] = plane_diameters(&mesh, roi.spacing);
    for (name, value) in [("Slice", slice), ("Column", column), ("Row", row)] {
        out.push(feature(&format!("shape_Maximum2DDiameter{name}"), value, "", None));
    }
    out
}

fn features_of(roi: &Roi, mesh: &Surface) -> Vec<Feature> {
    let [nx, ny, _] = roi.dims;
    let sp = roi.spacing;
    let centre_of = |i: usize| [(i % nx) as f64 * sp[0], ((i / nx) % ny) as f64 * sp[1], (i / (nx * ny)) as f64 * sp[2]];
    // Shape from the morphological mask; intensity-weighted quantities from the intensity mask.
    let pos: Vec<[f64; 3]> = (0..roi.morph_mask.len()).filter(|i| roi.morph_mask[*i]).map(centre_of).collect();
    let ipos: Vec<[f64; 3]> = (0..roi.mask.len()).filter(|i| roi.mask[*i]).map(centre_of).collect();
    let vals: Vec<f64> = roi.roi_intensities();
    let n = pos.len() as f64;
    let names = [
        ("VolumeVoxelCounting", "YEKZ"),
        ("CentreOfMassShift", "KLMA"),
        ("MajorAxisLength", ""),
        ("MinorAxisLength", ""),
        ("LeastAxisLength", ""),
        ("IbsiMajorAxisLength", "TDIC"),
        ("IbsiMinorAxisLength", "P9VJ"),
        ("IbsiLeastAxisLength", "7J51"),
        ("Elongation", "Q3CK"),
        ("Flatness", "N17B"),
        ("MoransI", "N365"),
        ("GearysC", "NPT7"),
    ];
    if pos.is_empty() || ipos.is_empty() {
        return names.iter().map(|(nm, c)| feature(&format!("shape_{nm}"), f64::NAN, c, None)).collect();
    }
    let centre = [0, 1, 2].map(|a| pos.iter().map(|p| p[a]).sum::<f64>() / n);
    let total: f64 = vals.iter().sum();
    let weighted = [0, 1, 2].map(|a| ipos.iter().zip(&vals).map(|(p, v)| p[a] * v).sum::<f64>() / total);
    let shift = (0..3).map(|a| (centre[a] - weighted[a]).powi(2)).sum::<f64>().sqrt();
    let mut cov = [[0.0; 3]; 3];
    for p in &pos {
        for r in 0..3 {
            for c in 0..3 {
                cov[r][c] += (p[r] - centre[r]) * (p[c] - centre[c]) / (n - 1.0).max(1.0);
            }
        }
    }
    let ev = symmetric_eigenvalues(cov).map(|e| e.max(0.0));
    let population = ev.map(|e| e * (n - 1.0).max(1.0) / n);
    let (moran, geary) = autocorrelation(roi);
    let values = [
        n * sp[0] * sp[1] * sp[2],
        shift,
        4.0 * population[0].sqrt(),
        4.0 * population[1].sqrt(),
        4.0 * population[2].sqrt(),
        4.0 * ev[0].sqrt(),
        4.0 * ev[1].sqrt(),
        4.0 * ev[2].sqrt(),
        if ev[0] > 0.0 { (ev[1] / ev[0]).sqrt() } else { f64::NAN },
        if ev[0] > 0.0 { (ev[2] / ev[0]).sqrt() } else { f64::NAN },
        moran,
        geary,
    ];
    let mut out: Vec<Feature> = names.iter().zip(values).map(|((nm, c), x)| feature(&format!("shape_{nm}"), x, c, None)).collect();
    let mean_intensity = vals.iter().sum::<f64>() / vals.len() as f64;
    out.extend(mesh_features(mesh, ev, mean_intensity).into_iter().map(|(nm, c, x)| feature(&format!("shape_{nm}"), x, c, None)));
    out
}

/// Moran's I and Geary's C over the intensity mask. With I the mask indicator and
/// Y = (X − μ)·I on the bounding box, and sums over offsets o ≠ 0 with w(o) = 1/‖o‖:
/// Σw = Σ_o w(o) (I⋆I)(o), Moran's numerator Σ_o w(o) (Y⋆Y)(o), Geary's
/// Σ_o w(o) 2[(Y²⋆I)(o) − (Y⋆Y)(o)], where ⋆ is cross-correlation, done by FFT on a grid
/// padded to twice the box so nothing wraps around.
fn autocorrelation(roi: &Roi) -> (f64, f64) {
    use rustfft::FftPlanner;
    use rustfft::num_complex::Complex;
    // Work on the tight bounding box of the intensity mask.
    let [gx, gy, _] = roi.dims;
    let Some((lo, hi)) = roi.bounding_box(|i| roi.mask[i]) else { return (f64::NAN, f64::NAN) };
    let [nx, ny, nz] = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
    let source = |x: usize, y: usize, z: usize| (x + lo[0]) + gx * ((y + lo[1]) + gy * (z + lo[2]));
    let vals = roi.roi_intensities();
    let n = vals.len() as f64;
    if vals.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mean = vals.iter().sum::<f64>() / n;
    let denom: f64 = vals.iter().map(|v| (v - mean).powi(2)).sum();
    if denom == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    // Padded to at least 2n − 1 per axis (no wrap-around), rounded up to a 2·3·5-smooth size.
    let smooth = |min: usize| {
        (min..)
            .find(|&m| {
                let mut r = m;
                for f in [2, 3, 5] {
                    while r % f == 0 {
                        r /= f;
                    }
                }
                r == 1
            })
            .unwrap()
    };
    let p = [smooth(2 * nx - 1), smooth(2 * ny - 1), smooth(2 * nz - 1)];
    let len = p[0] * p[1] * p[2];
    let mut planner = FftPlanner::<f64>::new();
    let ffts = [0, 1, 2].map(|a| (planner.plan_fft_forward(p[a]), planner.plan_fft_inverse(p[a])));
    let scratch_len = ffts.iter().map(|(f, i)| f.get_inplace_scratch_len().max(i.get_inplace_scratch_len())).max().unwrap_or(0);
    // Lines along each axis are gathered a batch at a time (neighbours along x, so the
    // gathers read contiguous memory) and transformed by one call; a forward transform skips
    // the lines that are still all zero — those beyond the box in the axes not yet
    // transformed — since their transform is zero. Both leave every value bit for bit as a
    // line-by-line transform would.
    const BATCH: usize = 16;
    let transform = |data: &mut Vec<Complex<f64>>, inverse: bool| {
        let mut lines = Vec::with_capacity(BATCH * p[0].max(p[1]).max(p[2]));
        let mut scratch = vec![Complex::new(0.0, 0.0); scratch_len];
        for a in 0..3 {
            let fft = if inverse { &ffts[a].1 } else { &ffts[a].0 };
            // Lines start at every coordinate pair of the other two axes (b, c), within the
            // region that can be nonzero.
            let limit = |b: usize| if inverse || b < a { p[b] } else { [nx, ny, nz][b] };
            let (b, c) = match a {
                0 => (1, 2),
                1 => (0, 2),
                _ => (0, 1),
            };
            let stride = [1, p[0], p[0] * p[1]];
            for jc in 0..limit(c) {
                let mut jb = 0;
                while jb < limit(b) {
                    // A batch of lines neighbouring along axis b.
                    let k = BATCH.min(limit(b) - jb);
                    lines.clear();
                    for q in 0..k {
                        let start = (jb + q) * stride[b] + jc * stride[c];
                        lines.extend((0..p[a]).map(|t| data[start + t * stride[a]]));
                    }
                    fft.process_with_scratch(&mut lines, &mut scratch);
                    for q in 0..k {
                        let start = (jb + q) * stride[b] + jc * stride[c];
                        for (t, v) in lines[q * p[a]..(q + 1) * p[a]].iter().enumerate() {
                            data[start + t * stride[a]] = *v;
                        }
                    }
                    jb += k;
                }
            }
        }
    };
    let grid = |f: &dyn Fn(usize) -> f64| -> Vec<Complex<f64>> {
        let mut g = vec![Complex::new(0.0, 0.0); len];
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let i = source(x, y, z);
                    if roi.mask[i] {
                        g[x + p[0] * (y + p[1] * z)] = Complex::new(f(i), 0.0);
                    }
                }
            }
        }
        g
    };
    let mut ind = grid(&|_| 1.0);
    let mut y = grid(&|i| roi.intensities[i] - mean);
    let mut y2 = grid(&|i| (roi.intensities[i] - mean).powi(2));
    for g in [&mut ind, &mut y, &mut y2] {
        transform(g, false);
    }
    // corr(a, b)(o) = Σ_k a_k b_{k+o} = IFFT(conj(A)·B)
    let corr = |a: &[Complex<f64>], b: &[Complex<f64>]| -> Vec<Complex<f64>> {
        let mut c: Vec<Complex<f64>> = a.iter().zip(b).map(|(x, y)| x.conj() * y).collect();
        transform(&mut c, true);
        c
    };
    let (c_ii, c_yy, c_y2i) = (corr(&ind, &ind), corr(&y, &y), corr(&y2, &ind));
    let scale = 1.0 / len as f64;
    let sp = roi.spacing;
    let (mut sw, mut moran, mut geary) = (0.0, 0.0, 0.0);
    for z in 0..p[2] {
        for yy in 0..p[1] {
            for x in 0..p[0] {
                let off = |c: usize, n: usize, p: usize| if c < n { c as f64 } else { c as f64 - p as f64 };
                let (dx, dy, dz) = (off(x, nx, p[0]), off(yy, ny, p[1]), off(z, nz, p[2]));
                if dx.abs() >= nx as f64 || dy.abs() >= ny as f64 || dz.abs() >= nz as f64 {
                    continue; // padding between the positive and negative offsets
                }
                if dx == 0.0 && dy == 0.0 && dz == 0.0 {
                    continue;
                }
                let i = x + p[0] * (yy + p[1] * z);
                let pairs = c_ii[i].re * scale;
                if pairs < 0.5 {
                    continue; // no voxel pair at this offset (FFT noise only)
                }
                let w = 1.0 / ((dx * sp[0]).powi(2) + (dy * sp[1]).powi(2) + (dz * sp[2]).powi(2)).sqrt();
                sw += w * pairs.round();
                moran += w * c_yy[i].re * scale;
                geary += w * 2.0 * (c_y2i[i].re - c_yy[i].re) * scale;
            }
        }
    }
    (n / sw * moran / denom, (n - 1.0) / (2.0 * sw) * geary / denom)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, pair by pair, as a reference for the FFT form.
    fn pairwise(roi: &Roi) -> (f64, f64) {
        let [nx, ny, _] = roi.dims;
        let pts: Vec<([f64; 3], f64)> = (0..roi.mask.len())
            .filter(|i| roi.mask[*i])
            .map(|i| ([(i % nx) as f64 * roi.spacing[0], ((i / nx) % ny) as f64 * roi.spacing[1], (i / (nx * ny)) as f64 * roi.spacing[2]], roi.intensities[i]))
            .collect();
        let n = pts.len() as f64;
        let mean = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let denom: f64 = pts.iter().map(|p| (p.1 - mean).powi(2)).sum();
        let (mut sw, mut m, mut g) = (0.0, 0.0, 0.0);
        for a in &pts {
            for b in &pts {
                let d = (0..3).map(|k| (a.0[k] - b.0[k]).powi(2)).sum::<f64>().sqrt();
                if d > 0.0 {
                    sw += 1.0 / d;
                    m += (a.1 - mean) * (b.1 - mean) / d;
                    g += (a.1 - b.1).powi(2) / d;
                }
            }
        }
        (n / sw * m / denom, (n - 1.0) / (2.0 * sw) * g / denom)
    }

    #[test]
    fn fft_moran_and_geary_equal_the_pairwise_definition() {
        let dims = [7, 5, 4];
        let n = 140;
        let intensities: Vec<f64> = (0..n).map(|i| ((i * 37 % 11) as f64).sin() * 10.0 + i as f64 * 0.1).collect();
        let mask: Vec<bool> = (0..n).map(|i| (i * 7 % 5) != 0 && i % 13 != 3).collect();
        let roi = Roi { dims, spacing: [0.8, 1.1, 3.0], intensities, morph_mask: mask.clone(), mask };
        let (m1, g1) = autocorrelation(&roi);
        let (m2, g2) = pairwise(&roi);
        assert!((m1 - m2).abs() < 1e-10 * m2.abs().max(1e-3), "{m1} vs {m2}");
        assert!((g1 - g2).abs() < 1e-10 * g2.abs().max(1e-3), "{g1} vs {g2}");
    }
}
