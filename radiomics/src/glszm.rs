//! Grey level size zone matrix (IBSI 3.8, 9SAK).
//!
//! A zone is a connected set of ROI voxels with the same grey level (26-connected in 3D,
//! 8-connected in a slice). s[i][j] counts zones of level i and size j voxels; N_z = Σ s,
//! N_v = ROI voxels, p_ij = s_ij/N_z. The formulas are those of the GLRLM with zones for runs:
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Small zone emphasis | 5QRC | Σ s_ij/j² / N_z |
//! | Large zone emphasis | 48P8 | Σ s_ij j² / N_z |
//! | Low grey level zone emphasis | XMSY | Σ s_ij/i² / N_z |
//! | High grey level zone emphasis | 5GN9 | Σ s_ij i² / N_z |
//! | Small zone low grey level emphasis | 5RAI | Σ s_ij/(i² j²) / N_z |
//! | Small zone high grey level emphasis | HW1V | Σ s_ij i²/j² / N_z |
//! | Large zone low grey level emphasis | YH51 | Σ s_ij j²/i² / N_z |
//! | Large zone high grey level emphasis | J17V | Σ s_ij i² j² / N_z |
//! | Grey level non-uniformity | JNSA | Σ_i (Σ_j s_ij)² / N_z |
//! | Normalised grey level non-uniformity | Y1RO | Σ_i (Σ_j s_ij)² / N_z² |
//! | Zone size non-uniformity | 4JP3 | Σ_j (Σ_i s_ij)² / N_z |
//! | Normalised zone size non-uniformity | VB3A | Σ_j (Σ_i s_ij)² / N_z² |
//! | Zone percentage | P30P | N_z / N_v |
//! | Grey level variance | BYLV | Σ (i − μ_i)² p_ij |
//! | Zone size variance | 3NSA | Σ (j − μ_j)² p_ij |
//! | Zone size entropy | GU8N | −Σ p_ij log2 p_ij |

use super::texture::{CountMatrix, named, neighbours, size_zone_features, zonal};
use super::{Aggregation, Feature, GreyLevels, PaddedLevels};

pub const FEATURES: [(&str, &str); 16] = [
    ("SmallZoneEmphasis", "5QRC"),
    ("LargeZoneEmphasis", "48P8"),
    ("LowGreyLevelZoneEmphasis", "XMSY"),
    ("HighGreyLevelZoneEmphasis", "5GN9"),
    ("SmallZoneLowGreyLevelEmphasis", "5RAI"),
    ("SmallZoneHighGreyLevelEmphasis", "HW1V"),
    ("LargeZoneLowGreyLevelEmphasis", "YH51"),
    ("LargeZoneHighGreyLevelEmphasis", "J17V"),
    ("GreyLevelNonUniformity", "JNSA"),
    ("NormalisedGreyLevelNonUniformity", "Y1RO"),
    ("ZoneSizeNonUniformity", "4JP3"),
    ("NormalisedZoneSizeNonUniformity", "VB3A"),
    ("ZonePercentage", "P30P"),
    ("GreyLevelVariance", "BYLV"),
    ("ZoneSizeVariance", "3NSA"),
    ("ZoneSizeEntropy", "GU8N"),
];

/// Connected zones of equal grey level on a bordered grid (border ≥ 1, which stops the
/// search at the grid's ends without bounds tests): (level, voxel indices in the bordered
/// grid) per zone, zones in the order of their first voxel, each zone's voxels in the order
/// the search reaches them.
pub fn zones(grid: &PaddedLevels, planar: bool) -> Vec<(u32, Vec<usize>)> {
    debug_assert!(grid.pad() >= 1);
    let steps: Vec<isize> = neighbours(&[1], planar).iter().map(|o| grid.offset(*o)).collect();
    let mut seen = vec![false; grid.levels().len()];
    let mut out = Vec::new();
    let mut zone = Vec::new();
    grid.for_each_roi_voxel(|start, level| {
        if seen[start] {
            return;
        }
        seen[start] = true;
        zone.clear();
        zone.push(start);
        let mut k = 0;
        while k < zone.len() {
            let v = zone[k];
            k += 1;
            for step in &steps {
                let w = v.wrapping_add_signed(*step);
                if !seen[w] && grid.levels()[w] == level {
                    seen[w] = true;
                    zone.push(w);
                }
            }
        }
        out.push((level, std::mem::take(&mut zone)));
    });
    out
}

pub fn matrix(g: &GreyLevels, planar: bool) -> CountMatrix {
    let grid = g.padded(1);
    let mut m = CountMatrix::new(g.ng as usize, 1);
    m.voxels = grid.roi_voxels() as f64;
    for (level, zone) in zones(&grid, planar) {
        m.add(level as usize - 1, zone.len() - 1, 1.0);
    }
    m
}

pub fn features(g: &GreyLevels, agg: Aggregation) -> Vec<Feature> {
    let values = zonal(g, agg, &matrix, &|a: &mut CountMatrix, b| a.merge(b), &|m| m.total() == 0.0, &|m| size_zone_features(m, 1.0).sixteen());
    named("glszm", &FEATURES, values, agg)
}
