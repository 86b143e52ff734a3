//! Neighbourhood grey tone difference matrix (IBSI 3.10, IPET).
//!
//! For each ROI voxel of level i whose neighbourhood (26 voxels in 3D, 8 in a slice) holds
//! at least one ROI voxel, Ā is the mean level of those neighbours; s_i = Σ |i − Ā| over the
//! voxels of level i and n_i their number. N_vc = Σ n_i, p_i = n_i/N_vc, N_g,p = #{i: p_i > 0};
//! sums over i, j run over levels with p > 0.
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Coarseness | QCDE | 1 / Σ p_i s_i |
//! | Contrast | 65HE | [Σ_i Σ_j p_i p_j (i − j)² / (N_g,p (N_g,p − 1))] · Σ s_i / N_vc |
//! | Busyness | NQ30 | Σ p_i s_i / Σ_i Σ_j \|i p_i − j p_j\| |
//! | Complexity | HDEZ | Σ_i Σ_j \|i − j\| (p_i s_i + p_j s_j)/(p_i + p_j) / N_vc |
//! | Strength | 1X9X | Σ_i Σ_j (p_i + p_j)(i − j)² / Σ s_i |

//!
//! PyRadiomics differs in one case: it also counts a ROI voxel with no ROI neighbour, with
//! s = 0, where IBSI (and FedRad) leave it out. The two agree unless the ROI has such
//! voxels — rare in 3D, commoner in 2D slices across thick slices (PyRadiomics `force2D`
//! with `force2Ddimension` 1 or 2).

use super::texture::{TextureSettings, named, neighbours, without_ibsi_codes, zonal};
use super::{Aggregation, Feature, GreyLevels};

pub const FEATURES: [(&str, &str); 5] = [("Coarseness", "QCDE"), ("Contrast", "65HE"), ("Busyness", "NQ30"), ("Complexity", "HDEZ"), ("Strength", "1X9X")];

#[derive(Debug, Clone, PartialEq)]
pub struct Ngtdm {
    pub s: Vec<f64>,
    pub n: Vec<f64>,
}

/// The NGTDM of a grid over the neighbours at the Chebyshev `distances`.
pub fn matrix(g: &GreyLevels, planar: bool, distances: &[u32]) -> Ngtdm {
    let ng = g.ng as usize;
    let mut m = Ngtdm { s: vec![0.0; ng], n: vec![0.0; ng] };
    let offsets = neighbours(distances, planar);
    let grid = g.padded(distances.iter().max().copied().unwrap_or(0) as usize);
    let steps: Vec<isize> = offsets.iter().map(|o| grid.offset(*o)).collect();
    grid.for_each_roi_voxel(|i, a| {
        let (mut sum, mut count) = (0.0, 0.0);
        for step in &steps {
            let b = grid.at(i, *step);
            if b > 0 {
                sum += b as f64;
                count += 1.0;
            }
        }
        if count > 0.0 {
            m.s[a as usize - 1] += (a as f64 - sum / count).abs();
            m.n[a as usize - 1] += 1.0;
        }
    });
    m
}

pub fn from_matrix(m: &Ngtdm) -> Vec<f64> {
    let nvc: f64 = m.n.iter().sum();
    let levels: Vec<(f64, f64, f64)> = m.n.iter().zip(&m.s).enumerate().filter(|(_, (n, _))| **n > 0.0).map(|(i, (n, s))| ((i + 1) as f64, n / nvc, *s)).collect();
    let ngp = levels.len() as f64;
    let sum_ps: f64 = levels.iter().map(|(_, p, s)| p * s).sum();
    let sum_s: f64 = levels.iter().map(|(_, _, s)| s).sum();
    let (mut c, mut busy_den, mut complexity, mut strength) = (0.0, 0.0, 0.0, 0.0);
    for &(i, pi, si) in &levels {
        for &(j, pj, sj) in &levels {
            c += pi * pj * (i - j).powi(2);
            busy_den += (i * pi - j * pj).abs();
            complexity += (i - j).abs() * (pi * si + pj * sj) / (pi + pj);
            strength += (pi + pj) * (i - j).powi(2);
        }
    }
    let coarseness = if sum_ps > 0.0 { 1.0 / sum_ps } else { 1.0e6 };
    let contrast = if ngp > 1.0 { c / (ngp * (ngp - 1.0)) * sum_s / nvc } else { 0.0 };
    let busyness = if busy_den > 0.0 { sum_ps / busy_den } else { 0.0 };
    let strength = if sum_s > 0.0 { strength / sum_s } else { 0.0 };
    vec![coarseness, contrast, busyness, complexity / nvc, strength]
}

pub fn features(g: &GreyLevels, agg: Aggregation, t: &TextureSettings) -> Vec<Feature> {
    let merge = |a: &mut Ngtdm, b: &Ngtdm| {
        a.s.iter_mut().zip(&b.s).for_each(|(x, y)| *x += y);
        a.n.iter_mut().zip(&b.n).for_each(|(x, y)| *x += y);
    };
    let values = zonal(g, agg, &|g, planar| matrix(g, planar, &t.distances), &merge, &|m: &Ngtdm| m.n.iter().sum::<f64>() == 0.0, &from_matrix);
    without_ibsi_codes(named("ngtdm", &FEATURES, values, agg), t.ibsi_distances())
}
