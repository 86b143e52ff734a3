//! What the texture families share: neighbour directions, count matrices, and the IBSI
//! aggregation of matrices and features over slices and directions.

use super::{Aggregation, Feature, GreyLevels, feature};

/// The 13 unique 3D directions at Chebyshev distance 1 (each also counts its opposite).
pub const DIRECTIONS_3D: [[isize; 3]; 13] = [
    [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, -1, 0],
    [0, 0, 1], [1, 0, 1], [1, 0, -1], [0, 1, 1], [0, 1, -1],
    [1, 1, 1], [1, 1, -1], [1, -1, 1], [1, -1, -1],
];

/// The 4 unique in-plane directions.
pub const DIRECTIONS_2D: [[isize; 3]; 4] = [[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, -1, 0]];

/// All 26 (3D) or 8 (2D, one slice) neighbours at Chebyshev distance 1.
pub fn neighbours(planar: bool) -> Vec<[isize; 3]> {
    let mut v = Vec::new();
    let zr: &[isize] = if planar { &[0] } else { &[-1, 0, 1] };
    for &dz in zr {
        for dy in -1..=1 {
            for dx in -1..=1 {
                if (dx, dy, dz) != (0, 0, 0) {
                    v.push([dx, dy, dz]);
                }
            }
        }
    }
    v
}

/// A matrix of counts indexed by grey level (rows 1..=Ng, stored from 0) and a second index
/// (grey level, run length, zone size, distance, dependence count), plus how many ROI voxels
/// it was built from (run and zone percentages need it after merging).
#[derive(Debug, Clone, PartialEq)]
pub struct CountMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
    pub voxels: f64,
}

impl CountMatrix {
    pub fn new(rows: usize, cols: usize) -> Self {
        CountMatrix { rows, cols, data: vec![0.0; rows * cols], voxels: 0.0 }
    }

    pub fn add(&mut self, r: usize, c: usize, v: f64) {
        if c >= self.cols {
            self.grow(c + 1);
        }
        self.data[r * self.cols + c] += v;
    }

    pub fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    fn grow(&mut self, cols: usize) {
        let mut d = vec![0.0; self.rows * cols];
        for r in 0..self.rows {
            d[r * cols..r * cols + self.cols].copy_from_slice(&self.data[r * self.cols..(r + 1) * self.cols]);
        }
        self.data = d;
        self.cols = cols;
    }

    pub fn merge(&mut self, o: &CountMatrix) {
        if o.cols > self.cols {
            self.grow(o.cols);
        }
        for r in 0..self.rows {
            for c in 0..o.cols {
                self.data[r * self.cols + c] += o.data[r * o.cols + c];
            }
        }
        self.voxels += o.voxels;
    }

    pub fn total(&self) -> f64 {
        self.data.iter().sum()
    }

    /// Non-zero entries as (row, col, count).
    pub fn entries(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        self.data.iter().enumerate().filter(|(_, v)| **v > 0.0).map(|(i, v)| (i / self.cols, i % self.cols, *v))
    }
}

fn average(sets: &[Vec<f64>]) -> Option<Vec<f64>> {
    let first = sets.first()?;
    let mut acc = vec![0.0; first.len()];
    for s in sets {
        for (a, v) in acc.iter_mut().zip(s) {
            *a += v;
        }
    }
    Some(acc.into_iter().map(|a| a / sets.len() as f64).collect())
}

/// Directional families (GLCM, GLRLM): build one matrix per grid and direction and aggregate
/// as `agg` says. Empty matrices (no pairs or runs) are left out. `None` if nothing remains.
pub fn directional(
    grid: &GreyLevels,
    agg: Aggregation,
    build: &dyn Fn(&GreyLevels, [isize; 3]) -> CountMatrix,
    features: &dyn Fn(&CountMatrix) -> Vec<f64>,
) -> Option<Vec<f64>> {
    let nonempty = |m: &CountMatrix| m.total() > 0.0;
    let merged = |ms: Vec<CountMatrix>| -> Option<CountMatrix> {
        let mut it = ms.into_iter();
        let mut first = it.next()?;
        for m in it {
            first.merge(&m);
        }
        nonempty(&first).then_some(first)
    };
    match agg {
        Aggregation::TwoDAveraged => {
            let sets: Vec<Vec<f64>> = grid
                .slices()
                .iter()
                .flat_map(|s| DIRECTIONS_2D.iter().map(move |d| build(s, *d)))
                .filter(nonempty)
                .map(|m| features(&m))
                .collect();
            average(&sets)
        }
        Aggregation::TwoDSliceMerged => {
            let sets: Vec<Vec<f64>> = grid
                .slices()
                .iter()
                .filter_map(|s| merged(DIRECTIONS_2D.iter().map(|d| build(s, *d)).collect()))
                .map(|m| features(&m))
                .collect();
            average(&sets)
        }
        Aggregation::TwoPointFiveDDirectionMerged => {
            let slices = grid.slices();
            let sets: Vec<Vec<f64>> = DIRECTIONS_2D
                .iter()
                .filter_map(|d| merged(slices.iter().map(|s| build(s, *d)).collect()))
                .map(|m| features(&m))
                .collect();
            average(&sets)
        }
        Aggregation::TwoPointFiveDMerged => {
            let slices = grid.slices();
            merged(slices.iter().flat_map(|s| DIRECTIONS_2D.iter().map(move |d| build(s, *d))).collect()).map(|m| features(&m))
        }
        Aggregation::ThreeDAveraged => {
            let sets: Vec<Vec<f64>> = DIRECTIONS_3D.iter().map(|d| build(grid, *d)).filter(nonempty).map(|m| features(&m)).collect();
            average(&sets)
        }
        Aggregation::ThreeDMerged => merged(DIRECTIONS_3D.iter().map(|d| build(grid, *d)).collect()).map(|m| features(&m)),
        _ => None,
    }
}

/// Direction-free families (GLSZM, GLDZM, NGTDM, NGLDM): 2D = per slice, averaged;
/// 2.5D = merged over slices; 3D = the volume. `planar` tells `build` which neighbourhood.
pub fn zonal<M: Clone>(
    grid: &GreyLevels,
    agg: Aggregation,
    build: &dyn Fn(&GreyLevels, bool) -> M,
    merge: &dyn Fn(&mut M, &M),
    is_empty: &dyn Fn(&M) -> bool,
    features: &dyn Fn(&M) -> Vec<f64>,
) -> Option<Vec<f64>> {
    match agg {
        Aggregation::TwoD => {
            let sets: Vec<Vec<f64>> = grid.slices().iter().map(|s| build(s, true)).filter(|m| !is_empty(m)).map(|m| features(&m)).collect();
            average(&sets)
        }
        Aggregation::TwoPointFiveD => {
            let mut it = grid.slices().into_iter().map(|s| build(&s, true));
            let mut acc = it.next()?;
            for m in it {
                merge(&mut acc, &m);
            }
            (!is_empty(&acc)).then(|| features(&acc))
        }
        Aggregation::ThreeD => {
            let m = build(grid, false);
            (!is_empty(&m)).then(|| features(&m))
        }
        _ => None,
    }
}

/// Names, codes and values into features; NaN where the aggregation gave nothing.
pub fn named(family: &str, table: &[(&str, &'static str)], values: Option<Vec<f64>>, agg: Aggregation) -> Vec<Feature> {
    table
        .iter()
        .enumerate()
        .map(|(i, (name, code))| {
            feature(&format!("{family}_{name}"), values.as_ref().map_or(f64::NAN, |v| v[i]), code, Some(agg))
        })
        .collect()
}

/// Σ p log2 p over positive entries, negated.
pub fn entropy(ps: impl Iterator<Item = f64>) -> f64 {
    -ps.filter(|p| *p > 0.0).map(|p| p * p.log2()).sum::<f64>()
}

/// Features shared by the run/zone/distance/dependence families (IBSI 3.7–3.11): from a
/// matrix m[i][j] of counts (grey level i, second index j), N = Σ m.
pub fn size_zone_features(m: &CountMatrix, col_offset: f64) -> SizeZone {
    let n = m.total();
    let mut s = SizeZone::default();
    let rows = m.rows;
    let mut row_sums = vec![0.0; rows];
    let mut col_sums = vec![0.0; m.cols];
    for (r, c, v) in m.entries() {
        let i = (r + 1) as f64;
        let j = c as f64 + col_offset;
        s.small += v / (j * j);
        s.large += v * j * j;
        s.low_grey += v / (i * i);
        s.high_grey += v * i * i;
        s.small_low += v / (i * i * j * j);
        s.small_high += v * i * i / (j * j);
        s.large_low += v * j * j / (i * i);
        s.large_high += v * i * i * j * j;
        row_sums[r] += v;
        col_sums[c] += v;
    }
    for x in [&mut s.small, &mut s.large, &mut s.low_grey, &mut s.high_grey, &mut s.small_low, &mut s.small_high, &mut s.large_low, &mut s.large_high] {
        *x /= n;
    }
    s.grey_nonuniformity = row_sums.iter().map(|v| v * v).sum::<f64>() / n;
    s.grey_nonuniformity_norm = s.grey_nonuniformity / n;
    s.size_nonuniformity = col_sums.iter().map(|v| v * v).sum::<f64>() / n;
    s.size_nonuniformity_norm = s.size_nonuniformity / n;
    s.percentage = n / m.voxels;
    let (mut mu_i, mut mu_j) = (0.0, 0.0);
    for (r, c, v) in m.entries() {
        mu_i += (r + 1) as f64 * v / n;
        mu_j += (c as f64 + col_offset) * v / n;
    }
    for (r, c, v) in m.entries() {
        let p = v / n;
        s.grey_variance += ((r + 1) as f64 - mu_i).powi(2) * p;
        s.size_variance += (c as f64 + col_offset - mu_j).powi(2) * p;
    }
    s.entropy = entropy(m.entries().map(|(_, _, v)| v / n));
    s.energy = m.entries().map(|(_, _, v)| (v / n).powi(2)).sum();
    s
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SizeZone {
    pub small: f64,
    pub large: f64,
    pub low_grey: f64,
    pub high_grey: f64,
    pub small_low: f64,
    pub small_high: f64,
    pub large_low: f64,
    pub large_high: f64,
    pub grey_nonuniformity: f64,
    pub grey_nonuniformity_norm: f64,
    pub size_nonuniformity: f64,
    pub size_nonuniformity_norm: f64,
    pub percentage: f64,
    pub grey_variance: f64,
    pub size_variance: f64,
    pub entropy: f64,
    pub energy: f64,
}

impl SizeZone {
    /// The 16 features in the order of the IBSI tables for GLRLM/GLSZM/GLDZM.
    pub fn sixteen(&self) -> Vec<f64> {
        vec![
            self.small, self.large, self.low_grey, self.high_grey, self.small_low, self.small_high, self.large_low, self.large_high,
            self.grey_nonuniformity, self.grey_nonuniformity_norm, self.size_nonuniformity, self.size_nonuniformity_norm,
            self.percentage, self.grey_variance, self.size_variance, self.entropy,
        ]
    }
}
