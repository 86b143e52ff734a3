//! Morphological features (IBSI 3.1, HCUG), from voxel centres in world millimetres.
//!
//! Implemented here: the features defined on voxels. The features defined on the
//! marching-cubes mesh of the mask (mesh volume RNU0, surface area C0JK and everything built
//! on them: surface-to-volume ratio, compactness, sphericity, asphericity, maximum diameter,
//! bounding-box/ellipsoid/convex-hull densities, integrated intensity) are not implemented
//! yet and are not reported.
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Volume (voxel counting) | YEKZ | N_v · voxel volume |
//! | Centre of mass shift | KLMA | ‖ mean of voxel centres − intensity-weighted mean ‖ |
//! | Major / minor / least axis length | TDIC P9VJ 7J51 | 4 √λ for the eigenvalues λ₁ ≥ λ₂ ≥ λ₃ of the sample covariance (n − 1) of voxel centres |
//! | Elongation | Q3CK | √(λ₂/λ₁) |
//! | Flatness | N17B | √(λ₃/λ₁) |
//! | Moran's I | N365 | N_v/Σw · Σ_{k≠l} w_kl (X_k − μ)(X_l − μ) / Σ_k (X_k − μ)², w_kl = 1/‖r_k − r_l‖ |
//! | Geary's C | NPT7 | (N_v − 1)/(2 Σw) · Σ_{k≠l} w_kl (X_k − X_l)² / Σ_k (X_k − μ)² |
//!
//! Moran's I and Geary's C sum over all voxel pairs (O(N_v²)); for ROIs above 10 000 voxels
//! they are reported as NaN rather than approximated.

use super::{Feature, Roi, feature};

const MAX_PAIRWISE_VOXELS: usize = 10_000;

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

pub fn features(roi: &Roi) -> Vec<Feature> {
    let [nx, ny, _] = roi.dims;
    let sp = roi.spacing;
    let mut pos = Vec::new();
    let mut vals = Vec::new();
    for (i, m) in roi.mask.iter().enumerate() {
        if *m {
            let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
            pos.push([x as f64 * sp[0], y as f64 * sp[1], z as f64 * sp[2]]);
            vals.push(roi.intensities[i]);
        }
    }
    let n = pos.len() as f64;
    let names = [
        ("VolumeVoxelCounting", "YEKZ"),
        ("CentreOfMassShift", "KLMA"),
        ("MajorAxisLength", "TDIC"),
        ("MinorAxisLength", "P9VJ"),
        ("LeastAxisLength", "7J51"),
        ("Elongation", "Q3CK"),
        ("Flatness", "N17B"),
        ("MoransI", "N365"),
        ("GearysC", "NPT7"),
    ];
    if pos.is_empty() {
        return names.iter().map(|(nm, c)| feature(&format!("morph_{nm}"), f64::NAN, c, None)).collect();
    }
    let centre = [0, 1, 2].map(|a| pos.iter().map(|p| p[a]).sum::<f64>() / n);
    let total: f64 = vals.iter().sum();
    let weighted = [0, 1, 2].map(|a| pos.iter().zip(&vals).map(|(p, v)| p[a] * v).sum::<f64>() / total);
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
    let (moran, geary) = if pos.len() <= MAX_PAIRWISE_VOXELS { autocorrelation(&pos, &vals) } else { (f64::NAN, f64::NAN) };
    let values = [
        n * sp[0] * sp[1] * sp[2],
        shift,
        4.0 * ev[0].sqrt(),
        4.0 * ev[1].sqrt(),
        4.0 * ev[2].sqrt(),
        if ev[0] > 0.0 { (ev[1] / ev[0]).sqrt() } else { f64::NAN },
        if ev[0] > 0.0 { (ev[2] / ev[0]).sqrt() } else { f64::NAN },
        moran,
        geary,
    ];
    names.iter().zip(values).map(|((nm, c), x)| feature(&format!("morph_{nm}"), x, c, None)).collect()
}

fn autocorrelation(pos: &[[f64; 3]], vals: &[f64]) -> (f64, f64) {
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    let denom: f64 = vals.iter().map(|v| (v - mean).powi(2)).sum();
    let (mut sw, mut moran, mut geary) = (0.0, 0.0, 0.0);
    for k in 0..pos.len() {
        for l in 0..pos.len() {
            if k == l {
                continue;
            }
            let d = (0..3).map(|a| (pos[k][a] - pos[l][a]).powi(2)).sum::<f64>().sqrt();
            let w = 1.0 / d;
            sw += w;
            moran += w * (vals[k] - mean) * (vals[l] - mean);
            geary += w * (vals[k] - vals[l]).powi(2);
        }
    }
    if denom == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    (n / sw * moran / denom, (n - 1.0) / (2.0 * sw) * geary / denom)
}
