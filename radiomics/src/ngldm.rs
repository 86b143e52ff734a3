//! Neighbouring grey level dependence matrix (IBSI 3.11, REK0): coarseness α (`gldm_a`,
//! default 0) and neighbourhood distance (`distances`, default 1) as PyRadiomics' GLDM.
//!
//! For each ROI voxel of level i, its dependence j is 1 + the number of ROI voxels in its
//! neighbourhood (26 in 3D, 8 in a slice) with the same level. s[i][j] counts voxels;
//! N_s = Σ s, N_v = ROI voxels, p_ij = s_ij/N_s.
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Low dependence emphasis | SODN | Σ s_ij/j² / N_s |
//! | High dependence emphasis | IMOQ | Σ s_ij j² / N_s |
//! | Low grey level count emphasis | TL9H | Σ s_ij/i² / N_s |
//! | High grey level count emphasis | OAE7 | Σ s_ij i² / N_s |
//! | Low dependence low grey level emphasis | EQ3F | Σ s_ij/(i² j²) / N_s |
//! | Low dependence high grey level emphasis | JA6D | Σ s_ij i²/j² / N_s |
//! | High dependence low grey level emphasis | NBZI | Σ s_ij j²/i² / N_s |
//! | High dependence high grey level emphasis | 9QMG | Σ s_ij i² j² / N_s |
//! | Grey level non-uniformity | FP8K | Σ_i (Σ_j s_ij)² / N_s |
//! | Normalised grey level non-uniformity | 5SPA | Σ_i (Σ_j s_ij)² / N_s² |
//! | Dependence count non-uniformity | Z87G | Σ_j (Σ_i s_ij)² / N_s |
//! | Normalised dependence count non-uniformity | OKJI | Σ_j (Σ_i s_ij)² / N_s² |
//! | Dependence count percentage | 6XV8 | N_s / N_v |
//! | Grey level variance | 1PFV | Σ (i − μ_i)² p_ij |
//! | Dependence count variance | DNX2 | Σ (j − μ_j)² p_ij |
//! | Dependence count entropy | FCBV | −Σ p_ij log2 p_ij |
//! | Dependence count energy | CAS9 | Σ p_ij² |

use super::texture::{CountMatrix, TextureSettings, named, neighbours, size_zone_features, without_ibsi_codes, zonal};
use super::{Aggregation, Feature, GreyLevels};

pub const FEATURES: [(&str, &str); 17] = [
    ("LowDependenceEmphasis", "SODN"),
    ("HighDependenceEmphasis", "IMOQ"),
    ("LowGreyLevelCountEmphasis", "TL9H"),
    ("HighGreyLevelCountEmphasis", "OAE7"),
    ("LowDependenceLowGreyLevelEmphasis", "EQ3F"),
    ("LowDependenceHighGreyLevelEmphasis", "JA6D"),
    ("HighDependenceLowGreyLevelEmphasis", "NBZI"),
    ("HighDependenceHighGreyLevelEmphasis", "9QMG"),
    ("GreyLevelNonUniformity", "FP8K"),
    ("NormalisedGreyLevelNonUniformity", "5SPA"),
    ("DependenceCountNonUniformity", "Z87G"),
    ("NormalisedDependenceCountNonUniformity", "OKJI"),
    ("DependenceCountPercentage", "6XV8"),
    ("GreyLevelVariance", "1PFV"),
    ("DependenceCountVariance", "DNX2"),
    ("DependenceCountEntropy", "FCBV"),
    ("DependenceCountEnergy", "CAS9"),
];

/// The NGLDM of a grid: neighbours at the Chebyshev `distances`, dependent when in the ROI
/// and within `alpha` grey levels of the centre.
pub fn matrix(g: &GreyLevels, planar: bool, distances: &[u32], alpha: u32) -> CountMatrix {
    let mut m = CountMatrix::new(g.ng as usize, 1);
    m.voxels = g.roi_voxels() as f64;
    let offsets = neighbours(distances, planar);
    let grid = g.padded(distances.iter().max().copied().unwrap_or(0) as usize);
    let steps: Vec<isize> = offsets.iter().map(|o| grid.offset(*o)).collect();
    grid.for_each_roi_voxel(|i, a| {
        let same = steps
            .iter()
            .filter(|step| {
                let b = grid.at(i, **step);
                b > 0 && b.abs_diff(a) <= alpha
            })
            .count();
        m.add(a as usize - 1, same, 1.0);
    });
    m
}

pub fn from_matrix(m: &CountMatrix) -> Vec<f64> {
    let s = size_zone_features(m, 1.0);
    let mut v = s.sixteen();
    v.push(s.energy);
    v
}

pub fn features(g: &GreyLevels, agg: Aggregation, t: &TextureSettings) -> Vec<Feature> {
    let values = zonal(g, agg, &|g, planar| matrix(g, planar, &t.distances, t.gldm_alpha), &|a: &mut CountMatrix, b| a.merge(b), &|m| m.total() == 0.0, &from_matrix);
    without_ibsi_codes(named("gldm", &FEATURES, values, agg), t.ibsi_distances())
}
