//! Grey level distance zone matrix (IBSI 3.9, VMDZ).
//!
//! Zones as in the GLSZM; the distance of a ROI voxel to the ROI's edge is the least number
//! of face-neighbour steps (6-connected in 3D, 4-connected in a slice) to a voxel outside the
//! ROI or the grid, so voxels on the edge have distance 1. A zone's distance is the least
//! distance of its voxels. d[i][j] counts zones of level i at distance j; N_z = Σ d.
//! Same formulas as the GLSZM with distance for size:
//!
//! | feature | code |
//! |---|---|
//! | Small distance emphasis | 0GBI |
//! | Large distance emphasis | MB4I |
//! | Low grey level zone emphasis | S1RA |
//! | High grey level zone emphasis | K26C |
//! | Small distance low grey level emphasis | RUVG |
//! | Small distance high grey level emphasis | DKNJ |
//! | Large distance low grey level emphasis | A7WM |
//! | Large distance high grey level emphasis | KLTH |
//! | Grey level non-uniformity | VFT7 |
//! | Normalised grey level non-uniformity | 7HP3 |
//! | Zone distance non-uniformity | V294 |
//! | Normalised zone distance non-uniformity | IATH |
//! | Zone percentage | VIWW |
//! | Grey level variance | QK93 |
//! | Zone distance variance | 7WT1 |
//! | Zone distance entropy | GBDU |

use std::collections::VecDeque;

use super::texture::{CountMatrix, named, size_zone_features, zonal};
use super::{Aggregation, Feature, GreyLevels, PaddedLevels};

pub const FEATURES: [(&str, &str); 16] = [
    ("SmallDistanceEmphasis", "0GBI"),
    ("LargeDistanceEmphasis", "MB4I"),
    ("LowGreyLevelZoneEmphasis", "S1RA"),
    ("HighGreyLevelZoneEmphasis", "K26C"),
    ("SmallDistanceLowGreyLevelEmphasis", "RUVG"),
    ("SmallDistanceHighGreyLevelEmphasis", "DKNJ"),
    ("LargeDistanceLowGreyLevelEmphasis", "A7WM"),
    ("LargeDistanceHighGreyLevelEmphasis", "KLTH"),
    ("GreyLevelNonUniformity", "VFT7"),
    ("NormalisedGreyLevelNonUniformity", "7HP3"),
    ("ZoneDistanceNonUniformity", "V294"),
    ("NormalisedZoneDistanceNonUniformity", "IATH"),
    ("ZonePercentage", "VIWW"),
    ("GreyLevelVariance", "QK93"),
    ("ZoneDistanceVariance", "7WT1"),
    ("ZoneDistanceEntropy", "GBDU"),
];

/// City-block distance of every ROI voxel to the ROI edge (0 outside), indexed as the
/// bordered grid, by breadth-first search from the edge voxels. The border (≥ 1) stands for
/// "outside the grid", so a neighbour is one index offset away.
pub fn edge_distance(grid: &PaddedLevels, planar: bool) -> Vec<u32> {
    debug_assert!(grid.pad() >= 1);
    let faces: &[[isize; 3]] =
        if planar { &[[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]] } else { &[[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]] };
    let offsets: Vec<isize> = faces.iter().map(|f| grid.offset(*f)).collect();
    let mut dist = vec![0u32; grid.levels().len()];
    let mut queue = VecDeque::new();
    grid.for_each_roi_voxel(|v, _| {
        if offsets.iter().any(|o| grid.at(v, *o) == 0) {
            dist[v] = 1;
            queue.push_back(v);
        }
    });
    while let Some(v) = queue.pop_front() {
        for o in &offsets {
            let w = v.wrapping_add_signed(*o);
            if grid.levels()[w] != 0 && dist[w] == 0 {
                dist[w] = dist[v] + 1;
                queue.push_back(w);
            }
        }
    }
    dist
}

pub fn matrix(g: &GreyLevels, planar: bool) -> CountMatrix {
    // Zones and distances on one bordered grid, indexed alike.
    let grid = g.padded(1);
    let dist = edge_distance(&grid, planar);
    let mut m = CountMatrix::new(g.ng as usize, 1);
    m.voxels = grid.roi_voxels() as f64;
    for (level, zone) in super::glszm::zones(&grid, planar) {
        let d = zone.iter().map(|v| dist[*v]).min().unwrap_or(1);
        m.add(level as usize - 1, d as usize - 1, 1.0);
    }
    m
}

pub fn features(g: &GreyLevels, agg: Aggregation) -> Vec<Feature> {
    let values = zonal(g, agg, &matrix, &|a: &mut CountMatrix, b| a.merge(b), &|m| m.total() == 0.0, &|m| size_zone_features(m, 1.0).sixteen());
    named("gldzm", &FEATURES, values, agg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search's distance is the least city-block distance to a voxel outside the ROI,
    /// counting the voxels just beyond the grid as outside: a nearest such voxel is reached
    /// by a monotone path whose voxels are all nearer, hence all in the ROI.
    fn nearest_outside(g: &GreyLevels, planar: bool, v: usize) -> u32 {
        let [nx, ny, nz] = g.dims;
        let (x, y, z) = (v % nx, (v / nx) % ny, v / (nx * ny));
        let mut best = [x + 1, nx - x, y + 1, ny - y].into_iter().chain(if planar { vec![] } else { vec![z + 1, nz - z] }).min().unwrap();
        for (w, level) in g.levels.iter().enumerate() {
            let (a, b, c) = (w % nx, (w / nx) % ny, w / (nx * ny));
            if *level == 0 && (!planar || c == z) {
                best = best.min(a.abs_diff(x) + b.abs_diff(y) + c.abs_diff(z));
            }
        }
        best as u32
    }

    #[test]
    fn edge_distance_is_the_city_block_distance_to_the_nearest_voxel_outside() {
        let dims = [9, 8, 6];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let levels = (0..dims[0] * dims[1] * dims[2])
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state % 10 < 8 { 1 + (state % 3) as u32 } else { 0 }
            })
            .collect();
        let g = GreyLevels { dims, levels, ng: 3 };
        let grid = g.padded(1);
        for planar in [false, true] {
            let dist = edge_distance(&grid, planar);
            assert!(dist.iter().zip(grid.levels()).all(|(d, l)| *l > 0 || *d == 0), "distance outside the ROI");
            grid.for_each_roi_voxel(|i, _| {
                let v = grid.unpadded(i);
                assert_eq!(dist[i], nearest_outside(&g, planar, v), "voxel {v}, planar {planar}");
            });
            assert!(dist.iter().any(|d| *d >= 2), "the grid should have interior voxels");
        }
    }
}
