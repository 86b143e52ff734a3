//! Grey level run length matrix (IBSI 3.7, TP0I).
//!
//! For a direction δ, r[i][j] counts runs of j consecutive ROI voxels of grey level i along
//! δ (a run ends at a different level or at the ROI's edge). N_s = Σ r (runs), N_v = ROI
//! voxels (summed over merged matrices), p_ij = r_ij/N_s.
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Short runs emphasis | 22OV | Σ r_ij/j² / N_s |
//! | Long runs emphasis | W4KF | Σ r_ij j² / N_s |
//! | Low grey level run emphasis | V3SW | Σ r_ij/i² / N_s |
//! | High grey level run emphasis | G3QZ | Σ r_ij i² / N_s |
//! | Short run low grey level emphasis | HTZT | Σ r_ij/(i² j²) / N_s |
//! | Short run high grey level emphasis | GD3A | Σ r_ij i²/j² / N_s |
//! | Long run low grey level emphasis | IVPO | Σ r_ij j²/i² / N_s |
//! | Long run high grey level emphasis | 3KUM | Σ r_ij i² j² / N_s |
//! | Grey level non-uniformity | R5YN | Σ_i (Σ_j r_ij)² / N_s |
//! | Normalised grey level non-uniformity | OVBL | Σ_i (Σ_j r_ij)² / N_s² |
//! | Run length non-uniformity | W92Y | Σ_j (Σ_i r_ij)² / N_s |
//! | Normalised run length non-uniformity | IC23 | Σ_j (Σ_i r_ij)² / N_s² |
//! | Run percentage | 9ZK5 | N_s / N_v |
//! | Grey level variance | 8CE5 | Σ (i − μ_i)² p_ij |
//! | Run length variance | SXLW | Σ (j − μ_j)² p_ij |
//! | Run entropy | HJ9O | −Σ p_ij log2 p_ij |

use super::texture::{CountMatrix, TextureSettings, directional, directions, named, size_zone_features};
use super::{Aggregation, Feature, GreyLevels, PaddedLevels};

pub const FEATURES: [(&str, &str); 16] = [
    ("ShortRunsEmphasis", "22OV"),
    ("LongRunsEmphasis", "W4KF"),
    ("LowGreyLevelRunEmphasis", "V3SW"),
    ("HighGreyLevelRunEmphasis", "G3QZ"),
    ("ShortRunLowGreyLevelEmphasis", "HTZT"),
    ("ShortRunHighGreyLevelEmphasis", "GD3A"),
    ("LongRunLowGreyLevelEmphasis", "IVPO"),
    ("LongRunHighGreyLevelEmphasis", "3KUM"),
    ("GreyLevelNonUniformity", "R5YN"),
    ("NormalisedGreyLevelNonUniformity", "OVBL"),
    ("RunLengthNonUniformity", "W92Y"),
    ("NormalisedRunLengthNonUniformity", "IC23"),
    ("RunPercentage", "9ZK5"),
    ("GreyLevelVariance", "8CE5"),
    ("RunLengthVariance", "SXLW"),
    ("RunEntropy", "HJ9O"),
];

/// Run counts of one grid along `d`; column j − 1 holds runs of length j.
pub fn matrix(grid: &PaddedLevels, d: [isize; 3]) -> CountMatrix {
    let mut m = CountMatrix::new(grid.ng as usize, 1);
    m.voxels = grid.roi_voxels() as f64;
    // δ is one voxel long, so any border ends every run.
    debug_assert!(grid.pad() >= 1 && d.iter().all(|v| v.abs() <= 1));
    let step = grid.offset(d);
    grid.for_each_roi_voxel(|i, a| {
        // A run starts where the previous voxel along δ differs.
        if grid.at(i, -step) != a {
            let mut len = 1;
            while grid.at(i, len * step) == a {
                len += 1;
            }
            m.add(a as usize - 1, len as usize - 1, 1.0);
        }
    });
    m
}

pub fn from_matrix(m: &CountMatrix) -> Vec<f64> {
    size_zone_features(m, 1.0).sixteen()
}

/// GLRLM features of a grid: runs along the 13 (3D) or 4 (in-plane) directions at distance
/// 1, whatever `distances` says (as PyRadiomics). `spacing` (mm) weighs directions when
/// `t.weighting` is set.
pub fn features(g: &GreyLevels, agg: Aggregation, t: &TextureSettings, spacing: [f64; 3]) -> Vec<Feature> {
    let dirs = directions(&[1], false);
    let weight = t.weighting.map(|w| move |d: [isize; 3]| w.glrlm_weight(d, spacing));
    let weight = weight.as_ref().map(|w| w as &dyn Fn([isize; 3]) -> f64);
    named("glrlm", &FEATURES, directional(g, agg, &dirs, weight, &matrix, &from_matrix), agg)
}
