//! Grey level distance zone matrix (IBSI 3.9, VMDZ).
//!
//! Zones as in the GLSZM; the distance of a ROI voxel to the ROI's edge is the least number
//! of face-neighbour steps (6-connected in 3D, 4-connected in a slice) to a voxel outside the
//! ROI or the grid, so voxels on the edge have distance 1. A zone's distance is the least
//! distance of its voxels. d[i][j] counts zones of level i at distance j; N_z = Σ d.
//!
//! The edge is the morphological mask's, as the IBSI (and MIRP) define it: after
//! re-segmentation removes voxels inside the ROI (air in a lung tumour, say), the zones are
//! the intensity mask's but their distances still run to the outline of the ROI. [`features`]
//! takes the morphological voxels that re-segmentation removed as a grid level above `ng`,
//! so that the 2D slicing and axis turning of the texture code carry them along.
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

/// The matrix of a grid whose levels 1..=`ng` are the intensity mask's and whose level
/// `ng + 1`, if any, marks morphological voxels outside it (see the module doc).
pub fn matrix(g: &GreyLevels, planar: bool) -> CountMatrix {
    // Zones and distances on one bordered grid, indexed alike.
    let grid = g.padded(1);
    let dist = edge_distance(&grid, planar);
    let mut m = CountMatrix::new(g.ng as usize, 1);
    m.voxels = g.levels.iter().filter(|l| (1..=g.ng).contains(*l)).count() as f64;
    for (level, zone) in super::glszm::zones(&grid, planar) {
        if level > g.ng {
            continue;
        }
        let d = zone.iter().map(|v| dist[*v]).min().unwrap_or(1);
        m.add(level as usize - 1, d as usize - 1, 1.0);
    }
    m
}

/// GLDZM features of `g` (the intensity mask's grey levels), with distances to the edge of
/// `morphological` (the ROI's shape on the same grid, level > 0 inside) where re-segmentation
/// made the two differ.
pub fn features(g: &GreyLevels, agg: Aggregation, morphological: Option<&GreyLevels>) -> Vec<Feature> {
    let with_shape;
    let g = match morphological {
        Some(shape) if shape.levels.iter().zip(&g.levels).any(|(m, l)| *m > 0 && *l == 0) => {
            let outside_level = g.ng + 1;
            let levels = g.levels.iter().zip(&shape.levels).map(|(l, m)| if *l == 0 && *m > 0 { outside_level } else { *l }).collect();
            with_shape = GreyLevels { dims: g.dims, levels, ng: g.ng };
            &with_shape
        }
        _ => g,
    };
    let values = zonal(g, agg, &matrix, &|a: &mut CountMatrix, b| a.merge(b), &|m| m.total() == 0.0, &|m| size_zone_features(m, 1.0).sixteen());
    named("gldzm", &FEATURES, values, agg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5×5 slice: a ring of level 1 around a 3×3 block of level 2 whose centre
    /// re-segmentation removed. Against the intensity mask the block's zone touches the hole
    /// (distance 1); against the ROI's outline, as the IBSI defines it, it lies 2 steps in.
    #[test]
    fn distances_run_to_the_morphological_edge_not_to_resegmentation_holes() {
        let levels: Vec<u32> = (0..25)
            .map(|i| {
                if i == 12 {
                    0
                } else if [6, 7, 8, 11, 13, 16, 17, 18].contains(&i) {
                    2
                } else {
                    1
                }
            })
            .collect();
        let g = GreyLevels { dims: [5, 5, 1], levels, ng: 2 };
        let shape = GreyLevels { dims: [5, 5, 1], levels: vec![1; 25], ng: 1 };
        let distance_of_level_2 = |features: Vec<Feature>| features.iter().find(|f| f.name == "gldzm_LargeDistanceEmphasis").unwrap().value;
        // Two zones (level 1 at distance 1, level 2 at distance d): LDE = (1 + d²)/2.
        assert_eq!(distance_of_level_2(features(&g, Aggregation::TwoD, None)), 1.0);
        assert_eq!(distance_of_level_2(features(&g, Aggregation::TwoD, Some(&shape))), 2.5);
        // The removed voxel is no zone and no voxel of the matrix.
        let mut encoded = g.clone();
        encoded.levels[12] = 3;
        let m = matrix(&encoded, true);
        assert_eq!((m.total(), m.voxels), (2.0, 24.0));
    }

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
