//! What the texture families share: neighbour directions, count matrices, and the IBSI
//! aggregation of matrices and features over slices and directions.

use super::{Aggregation, Feature, GreyLevels, PaddedLevels, feature};

/// PyRadiomics' texture settings; the defaults (distance 1, symmetric GLCM, no weighting,
/// α = 0) are IBSI's usual choices.
#[derive(Debug, Clone, PartialEq)]
pub struct TextureSettings {
    /// Chebyshev distances of the neighbours (PyRadiomics `distances`): GLCM pairs and the
    /// NGTDM and NGLDM neighbourhoods. GLRLM, GLSZM and GLDZM do not use them.
    pub distances: Vec<u32>,
    /// Count each GLCM pair both ways (`symmetricalGLCM`). IBSI's GLCM is symmetric, so an
    /// asymmetric one carries no IBSI codes.
    pub symmetrical_glcm: bool,
    /// How directions are weighted when their matrices are merged (`weightingNorm`).
    pub weighting: Option<WeightingNorm>,
    /// NGLDM coarseness α (`gldm_a`): a neighbour within α grey levels counts as dependent.
    pub gldm_alpha: u32,
    /// Also compute PyRadiomics' GLCM maximal correlation coefficient (`MCC`), which has no
    /// IBSI code; asked for only under PyRadiomics naming, where it is a default feature.
    pub maximal_correlation: bool,
}

impl TextureSettings {
    /// Whether neighbourhoods are IBSI's at distance 1. PyRadiomics' other `distances` take
    /// Chebyshev shells (not balls) and average over several distances, which IBSI does not
    /// define, so those values carry no IBSI codes.
    pub fn ibsi_distances(&self) -> bool {
        self.distances == [1]
    }
}

/// Clears the IBSI codes of features whose settings leave IBSI's definitions.
pub fn without_ibsi_codes(mut features: Vec<Feature>, keep: bool) -> Vec<Feature> {
    if !keep {
        features.iter_mut().for_each(|f| f.ibsi_code = "");
    }
    features
}

impl Default for TextureSettings {
    fn default() -> Self {
        TextureSettings { distances: vec![1], symmetrical_glcm: true, weighting: None, gldm_alpha: 0, maximal_correlation: false }
    }
}

/// PyRadiomics `weightingNorm`: the length in mm of a direction's offset, by which merged
/// matrices are weighted (GLCM by exp(−length²), GLRLM by the length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightingNorm {
    Manhattan,
    Euclidean,
    Infinity,
    /// Every direction weighs 1: the plain sum of the matrices.
    NoWeighting,
}

impl WeightingNorm {
    pub fn from_name(name: &str) -> Option<WeightingNorm> {
        Some(match name {
            "manhattan" => WeightingNorm::Manhattan,
            "euclidean" => WeightingNorm::Euclidean,
            "infinity" => WeightingNorm::Infinity,
            "no_weighting" => WeightingNorm::NoWeighting,
            _ => return None,
        })
    }

    /// GLCM weight, exp(−‖δ‖²) (PyRadiomics glcm.py; the squared norm for Euclidean).
    pub fn glcm_weight(self, d: [isize; 3], spacing: [f64; 3]) -> f64 {
        let mm = [0, 1, 2].map(|a| d[a].unsigned_abs() as f64 * spacing[a]);
        match self {
            WeightingNorm::Infinity => (-mm.iter().fold(0.0f64, |m, v| m.max(*v)).powi(2)).exp(),
            WeightingNorm::Euclidean => (-mm.iter().map(|v| v * v).sum::<f64>()).exp(),
            WeightingNorm::Manhattan => (-mm.iter().sum::<f64>().powi(2)).exp(),
            WeightingNorm::NoWeighting => 1.0,
        }
    }

    /// GLRLM weight, ‖δ‖ (PyRadiomics glrlm.py).
    pub fn glrlm_weight(self, d: [isize; 3], spacing: [f64; 3]) -> f64 {
        let mm = [0, 1, 2].map(|a| d[a].unsigned_abs() as f64 * spacing[a]);
        match self {
            WeightingNorm::Infinity => mm.iter().fold(0.0f64, |m, v| m.max(*v)),
            WeightingNorm::Euclidean => mm.iter().map(|v| v * v).sum::<f64>().sqrt(),
            WeightingNorm::Manhattan => mm.iter().sum(),
            WeightingNorm::NoWeighting => 1.0,
        }
    }
}

/// One offset (dx, dy, dz) of each ± pair at the given Chebyshev distances, in PyRadiomics'
/// order (`build_angles`: z, then y, then x, each from +max to −max; the pair member whose
/// first non-zero component in z, y, x order is positive). `planar` keeps dz = 0. The sign
/// matters only for an asymmetric GLCM.
pub fn directions(distances: &[u32], planar: bool) -> Vec<[isize; 3]> {
    let max = distances.iter().copied().max().unwrap_or(1) as isize;
    let mut out = Vec::new();
    let zs: Vec<isize> = if planar { vec![0] } else { (-max..=max).rev().collect() };
    for &dz in &zs {
        for dy in (-max..=max).rev() {
            for dx in (-max..=max).rev() {
                let chebyshev = dx.abs().max(dy.abs()).max(dz.abs());
                let positive = dz > 0 || (dz == 0 && (dy > 0 || (dy == 0 && dx > 0)));
                if positive && distances.contains(&(chebyshev as u32)) {
                    out.push([dx, dy, dz]);
                }
            }
        }
    }
    out
}

/// Every neighbour offset at the given Chebyshev distances (both members of each pair):
/// 26 (3D) or 8 (one slice) at distance 1.
pub fn neighbours(distances: &[u32], planar: bool) -> Vec<[isize; 3]> {
    directions(distances, planar).into_iter().flat_map(|d| [d, d.map(|v| -v)]).collect()
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
        self.merge_weighted(o, 1.0);
    }

    /// Adds `w` times another matrix, and `w` times its voxels (PyRadiomics' distance-weighted
    /// merging).
    pub fn merge_weighted(&mut self, o: &CountMatrix, w: f64) {
        if o.cols > self.cols {
            self.grow(o.cols);
        }
        for r in 0..self.rows {
            for c in 0..o.cols {
                self.data[r * self.cols + c] += w * o.data[r * o.cols + c];
            }
        }
        self.voxels += w * o.voxels;
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

/// Directional families (GLCM, GLRLM): build one matrix per grid and direction in `dirs`
/// (3D directions; the in-plane ones serve 2D and 2.5D) and aggregate as `agg` says. Empty
/// matrices (no pairs or runs) are left out of averages. Merged aggregations add the
/// matrices, weighted by `weight(direction)` when given. `None` if nothing remains.
pub fn directional(
    grid: &GreyLevels,
    agg: Aggregation,
    dirs: &[[isize; 3]],
    weight: Option<&dyn Fn([isize; 3]) -> f64>,
    build: &dyn Fn(&PaddedLevels, [isize; 3]) -> CountMatrix,
    features: &dyn Fn(&CountMatrix) -> Vec<f64>,
) -> Option<Vec<f64>> {
    let nonempty = |m: &CountMatrix| m.total() > 0.0;
    // Each grid (or slice) is bordered once, wide enough for every direction, and shared by
    // the directions' scans.
    let pad = dirs.iter().flatten().map(|v| v.unsigned_abs()).max().unwrap_or(0).max(1);
    let slices = || -> Vec<PaddedLevels> { grid.slices().iter().map(|s| s.padded(pad)).collect() };
    let planar: Vec<[isize; 3]> = dirs.iter().copied().filter(|d| d[2] == 0).collect();
    let merged = |ms: Vec<([isize; 3], CountMatrix)>| -> Option<CountMatrix> {
        let mut it = ms.into_iter();
        let (d, first) = it.next()?;
        let w = |d| weight.map_or(1.0, |f| f(d));
        let mut acc = CountMatrix { data: vec![0.0; first.data.len()], voxels: 0.0, ..first.clone() };
        acc.merge_weighted(&first, w(d));
        for (d, m) in it {
            acc.merge_weighted(&m, w(d));
        }
        nonempty(&acc).then_some(acc)
    };
    match agg {
        Aggregation::TwoDAveraged => {
            let sets: Vec<Vec<f64>> = slices().iter().flat_map(|s| planar.iter().map(move |d| build(s, *d))).filter(nonempty).map(|m| features(&m)).collect();
            average(&sets)
        }
        Aggregation::TwoDSliceMerged => {
            let sets: Vec<Vec<f64>> = slices().iter().filter_map(|s| merged(planar.iter().map(|d| (*d, build(s, *d))).collect())).map(|m| features(&m)).collect();
            average(&sets)
        }
        Aggregation::TwoPointFiveDDirectionMerged => {
            let slices = slices();
            let sets: Vec<Vec<f64>> = planar.iter().filter_map(|d| merged(slices.iter().map(|s| (*d, build(s, *d))).collect())).map(|m| features(&m)).collect();
            average(&sets)
        }
        Aggregation::TwoPointFiveDMerged => {
            let slices = slices();
            merged(slices.iter().flat_map(|s| planar.iter().map(move |d| (*d, build(s, *d)))).collect()).map(|m| features(&m))
        }
        Aggregation::ThreeDAveraged => {
            let grid = grid.padded(pad);
            let sets: Vec<Vec<f64>> = dirs.iter().map(|d| build(&grid, *d)).filter(nonempty).map(|m| features(&m)).collect();
            average(&sets)
        }
        Aggregation::ThreeDMerged => {
            let grid = grid.padded(pad);
            merged(dirs.iter().map(|d| (*d, build(&grid, *d))).collect()).map(|m| features(&m))
        }
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
    table.iter().enumerate().map(|(i, (name, code))| feature(&format!("{family}_{name}"), values.as_ref().map_or(f64::NAN, |v| v[i]), code, Some(agg))).collect()
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
            self.small,
            self.large,
            self.low_grey,
            self.high_grey,
            self.small_low,
            self.small_high,
            self.large_low,
            self.large_high,
            self.grey_nonuniformity,
            self.grey_nonuniformity_norm,
            self.size_nonuniformity,
            self.size_nonuniformity_norm,
            self.percentage,
            self.grey_variance,
            self.size_variance,
            self.entropy,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyRadiomics' 13 angles at distance 1, in its order, as (z, y, x).
    #[test]
    fn directions_follow_pyradiomics_angles() {
        let zyx: Vec<[isize; 3]> = directions(&[1], false).into_iter().map(|[x, y, z]| [z, y, x]).collect();
        assert_eq!(
            zyx,
            vec![[1, 1, 1], [1, 1, 0], [1, 1, -1], [1, 0, 1], [1, 0, 0], [1, 0, -1], [1, -1, 1], [1, -1, 0], [1, -1, -1], [0, 1, 1], [0, 1, 0], [0, 1, -1], [0, 0, 1],]
        );
        assert_eq!(directions(&[1, 2], false).len(), 13 + 49);
        assert_eq!(directions(&[2], true).len(), 8);
        assert_eq!(neighbours(&[1], false).len(), 26);
        assert_eq!(neighbours(&[1], true).len(), 8);
    }

    #[test]
    fn weights_follow_pyradiomics() {
        let sp = [0.5, 0.5, 2.0];
        let d = [1, -1, 1];
        assert!((WeightingNorm::Euclidean.glcm_weight(d, sp) - (-(0.25 + 0.25 + 4.0f64)).exp()).abs() < 1e-15);
        assert!((WeightingNorm::Manhattan.glcm_weight(d, sp) - (-(3.0f64 * 3.0)).exp()).abs() < 1e-15);
        assert!((WeightingNorm::Infinity.glrlm_weight(d, sp) - 2.0).abs() < 1e-15);
        assert_eq!(WeightingNorm::NoWeighting.glcm_weight(d, sp), 1.0);
    }
}
