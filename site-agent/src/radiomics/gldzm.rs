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
use super::{Aggregation, Feature, GreyLevels};

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

/// City-block distance of every ROI voxel to the ROI edge (0 outside).
pub fn edge_distance(g: &GreyLevels, planar: bool) -> Vec<u32> {
    let [nx, ny, _] = g.dims;
    let faces: &[[isize; 3]] = if planar {
        &[[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]]
    } else {
        &[[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    };
    let mut dist = vec![0u32; g.levels.len()];
    let mut queue = VecDeque::new();
    let coords = |v: usize| ((v % nx) as isize, ((v / nx) % ny) as isize, (v / (nx * ny)) as isize);
    for v in 0..g.levels.len() {
        if g.levels[v] == 0 {
            continue;
        }
        let (x, y, z) = coords(v);
        if faces.iter().any(|f| g.get(x + f[0], y + f[1], z + f[2]) == 0) {
            dist[v] = 1;
            queue.push_back(v);
        }
    }
    while let Some(v) = queue.pop_front() {
        let (x, y, z) = coords(v);
        for f in faces {
            let (a, b, c) = (x + f[0], y + f[1], z + f[2]);
            if g.get(a, b, c) == 0 {
                continue;
            }
            let w = a as usize + nx * (b as usize + ny * c as usize);
            if dist[w] == 0 {
                dist[w] = dist[v] + 1;
                queue.push_back(w);
            }
        }
    }
    dist
}

pub fn matrix(g: &GreyLevels, planar: bool) -> CountMatrix {
    let dist = edge_distance(g, planar);
    let mut m = CountMatrix::new(g.ng as usize, 1);
    m.voxels = g.roi_voxels() as f64;
    for (level, zone) in super::glszm::zones(g, planar) {
        let d = zone.iter().map(|v| dist[*v]).min().unwrap_or(1);
        m.add(level as usize - 1, d as usize - 1, 1.0);
    }
    m
}

pub fn features(g: &GreyLevels, agg: Aggregation) -> Vec<Feature> {
    let values = zonal(g, agg, &matrix, &|a: &mut CountMatrix, b| a.merge(b), &|m| m.total() == 0.0, &|m| size_zone_features(m, 1.0).sixteen());
    named("gldzm", &FEATURES, values, agg)
}
