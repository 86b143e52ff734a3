//! Handcrafted radiomic features from an image and a mask: FedRad's extraction engine, which
//! every site agent runs on its own images and the coordinator uses for the feature catalogue,
//! and which anyone can use without the federation (the `fedrad-radiomics` command line).
//!
//! One module per feature family, each documenting its formulas with the IBSI code of every
//! feature (Zwanenburg et al., *The Image Biomarker Standardization Initiative*, Radiology
//! 2020; the IBSI reference manual, arXiv:1612.07003). Texture families support the IBSI
//! aggregation methods (2D/2.5D/3D, averaged/merged), see [`texture`].
//!
//! The pipeline for one image and mask: build a [`Roi`] (intensities and mask on the image
//! grid), discretise its intensities into grey levels 1..=Ng ([`discretise`]), then compute
//! the families on the ROI and on the discretised grid.

pub mod catalogue;
pub mod cli;
pub mod discretise;
pub mod extract;
pub mod filters;
pub mod glcm;
pub mod gldzm;
pub mod glrlm;
pub mod glszm;
pub mod gradient;
pub mod hull;
pub mod ibsi_interpolation;
pub mod intensity_histogram;
pub mod ivh;
pub mod laplacian_of_gaussian;
pub mod local_binary_pattern;
pub mod local_binary_pattern_3d;
pub mod local_intensity;
pub mod marching_cubes_table;
pub mod memory;
pub mod mesh;
pub mod morphology;
pub mod naming;
pub mod ngldm;
pub mod ngtdm;
pub mod resample;
pub mod settings;
pub mod shape_2d;
pub mod statistics;
pub mod texture;
pub mod wavelet;
mod wavelet_filters;

use fedrad_imaging::Volume;

/// IBSI texture aggregation methods, worded as in the IBSI reference tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aggregation {
    /// Features per slice and direction, averaged (IBSI BTW3).
    TwoDAveraged,
    /// Per slice, matrices merged over directions; features averaged over slices (SUJT).
    TwoDSliceMerged,
    /// Per direction, matrices merged over slices; features averaged over directions (JJUI).
    TwoPointFiveDDirectionMerged,
    /// One matrix merged over slices and directions (ZW7Z).
    TwoPointFiveDMerged,
    /// Features per 3D direction, averaged (ITBB).
    ThreeDAveraged,
    /// One matrix merged over the 13 3D directions (IAZD).
    ThreeDMerged,
    /// Direction-free matrices per slice, features averaged over slices.
    TwoD,
    /// Direction-free matrices merged over slices.
    TwoPointFiveD,
    /// One direction-free matrix of the volume.
    ThreeD,
}

impl Aggregation {
    pub const DIRECTIONAL: [Aggregation; 6] = [
        Aggregation::TwoDAveraged,
        Aggregation::TwoDSliceMerged,
        Aggregation::TwoPointFiveDDirectionMerged,
        Aggregation::TwoPointFiveDMerged,
        Aggregation::ThreeDAveraged,
        Aggregation::ThreeDMerged,
    ];
    pub const ZONAL: [Aggregation; 3] = [Aggregation::TwoD, Aggregation::TwoPointFiveD, Aggregation::ThreeD];

    /// Short form used in feature column names.
    pub fn short(self) -> &'static str {
        match self {
            Aggregation::TwoDAveraged => "2Davg",
            Aggregation::TwoDSliceMerged => "2Dsmrg",
            Aggregation::TwoPointFiveDDirectionMerged => "25Ddmrg",
            Aggregation::TwoPointFiveDMerged => "25Dmrg",
            Aggregation::ThreeDAveraged => "3Davg",
            Aggregation::ThreeDMerged => "3Dmrg",
            Aggregation::TwoD => "2D",
            Aggregation::TwoPointFiveD => "25D",
            Aggregation::ThreeD => "3D",
        }
    }

    /// The wording of the IBSI reference tables (and of our CSV output).
    pub fn ibsi_label(self) -> &'static str {
        match self {
            Aggregation::TwoDAveraged => "2D, averaged",
            Aggregation::TwoDSliceMerged => "2D, slice-merged",
            Aggregation::TwoPointFiveDDirectionMerged => "2.5D, direction-merged",
            Aggregation::TwoPointFiveDMerged => "2.5D, merged",
            Aggregation::ThreeDAveraged => "3D, averaged",
            Aggregation::ThreeDMerged => "3D, merged",
            Aggregation::TwoD => "2D",
            Aggregation::TwoPointFiveD => "2.5D",
            Aggregation::ThreeD => "3D",
        }
    }
}

/// One computed feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// Family and feature, e.g. `glcm_JointMaximum`.
    pub name: String,
    pub value: f64,
    /// IBSI identifier where the value follows the IBSI definition, else empty.
    pub ibsi_code: &'static str,
    pub aggregation: Option<Aggregation>,
    /// Whose name `name` is; see [`naming`].
    pub naming: FeatureNaming,
}

/// Which vocabulary feature names follow (see [`naming`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeatureNaming {
    /// FedRad's IBSI names (`glcm_JointMaximum`), the aggregation appended to the column.
    #[default]
    Ibsi,
    /// PyRadiomics' names and feature set (`glcm_MaximumProbability`), one aggregation per
    /// class and so none in the column.
    PyRadiomics,
}

/// The region of interest on the image grid: voxel intensities and the ROI mask.
/// Voxels are x-fastest, as in [`Volume`].
#[derive(Debug, Clone)]
pub struct Roi {
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub intensities: Vec<f64>,
    /// The intensity mask: voxels whose intensities enter the features.
    pub mask: Vec<bool>,
    /// The morphological mask: the shape of the ROI (differs from `mask` after
    /// resegmentation, unless the shape is resegmented too).
    pub morph_mask: Vec<bool>,
}

impl Roi {
    pub fn from_volumes(image: &Volume, mask: &Volume, label: f32) -> Roi {
        let m: Vec<bool> = mask.data.iter().map(|v| (*v - label).abs() < 0.5).collect();
        Roi { dims: image.geometry.dims, spacing: image.geometry.spacing, intensities: image.data.iter().map(|v| *v as f64).collect(), morph_mask: m.clone(), mask: m }
    }

    /// The box `lo..=hi` (inclusive voxel indices) of the ROI.
    pub fn crop(&self, lo: [usize; 3], hi: [usize; 3]) -> Roi {
        let [nx, ny, _] = self.dims;
        let dims = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
        let n = dims[0] * dims[1] * dims[2];
        let (mut intensities, mut mask, mut morph_mask) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for z in lo[2]..=hi[2] {
            for y in lo[1]..=hi[1] {
                for x in lo[0]..=hi[0] {
                    let i = x + nx * (y + ny * z);
                    intensities.push(self.intensities[i]);
                    mask.push(self.mask[i]);
                    morph_mask.push(self.morph_mask[i]);
                }
            }
        }
        Roi { dims, spacing: self.spacing, intensities, mask, morph_mask }
    }

    /// The morphological mask as a grid of levels (1 inside), for families that need the
    /// ROI's shape beside its grey levels (GLDZM's distances).
    pub fn morphological_levels(&self) -> GreyLevels {
        GreyLevels { dims: self.dims, levels: self.morph_mask.iter().map(|m| *m as u32).collect(), ng: 1 }
    }

    pub fn voxel_count(&self) -> usize {
        self.mask.iter().filter(|m| **m).count()
    }

    /// Intensities of the voxels in the ROI, in voxel order.
    pub fn roi_intensities(&self) -> Vec<f64> {
        self.intensities.iter().zip(&self.mask).filter(|(_, m)| **m).map(|(v, _)| *v).collect()
    }

    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        x + self.dims[0] * (y + self.dims[1] * z)
    }

    /// Inclusive voxel bounds (low, high) of the voxels set in `mask`, if any.
    pub fn bounding_box(&self, mask: impl Fn(usize) -> bool) -> Option<([usize; 3], [usize; 3])> {
        let [nx, ny, _] = self.dims;
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for i in (0..self.mask.len()).filter(|i| mask(*i)) {
            let c = [i % nx, (i / nx) % ny, i / (nx * ny)];
            for a in 0..3 {
                lo[a] = lo[a].min(c[a]);
                hi[a] = hi[a].max(c[a]);
            }
        }
        (lo[0] != usize::MAX).then_some((lo, hi))
    }
}

/// Which original axes become (x, y, z) when slices run across `axis`. PyRadiomics orders
/// angles by (z, y, x) with the out-of-plane offset 0, so the remaining axes keep that order:
/// across y, (x, z, y); across x, (y, z, x).
pub fn turned_axes(axis: usize) -> [usize; 3] {
    match axis {
        0 => [1, 2, 0],
        1 => [0, 2, 1],
        _ => [0, 1, 2],
    }
}

/// Grey levels 1..=`ng` on a grid; 0 marks voxels outside the ROI.
#[derive(Debug, Clone, PartialEq)]
pub struct GreyLevels {
    pub dims: [usize; 3],
    pub levels: Vec<u32>,
    pub ng: u32,
}

impl GreyLevels {
    /// Axial slices (constant z) that contain ROI voxels, each as a one-slice grid.
    pub fn slices(&self) -> Vec<GreyLevels> {
        let n = self.dims[0] * self.dims[1];
        (0..self.dims[2])
            .map(|z| GreyLevels { dims: [self.dims[0], self.dims[1], 1], levels: self.levels[z * n..(z + 1) * n].to_vec(), ng: self.ng })
            .filter(|s| s.levels.iter().any(|l| *l > 0))
            .collect()
    }

    /// The same grid with its axes turned so that slices (constant third axis) run across
    /// `axis` (0 = x: sagittal slices, 1 = y: coronal, 2 = z: unchanged), keeping a
    /// right-handed cycle of the other two as the slice's x and y (see [`turned_axes`]).
    pub fn with_slices_across(&self, axis: usize) -> GreyLevels {
        let order = turned_axes(axis);
        let dims = order.map(|a| self.dims[a]);
        let mut levels = vec![0; self.levels.len()];
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    let mut old = [0usize; 3];
                    old[order[0]] = x;
                    old[order[1]] = y;
                    old[order[2]] = z;
                    levels[x + dims[0] * (y + dims[1] * z)] = self.levels[old[0] + self.dims[0] * (old[1] + self.dims[1] * old[2])];
                }
            }
        }
        GreyLevels { dims, levels, ng: self.ng }
    }

    pub fn roi_voxels(&self) -> usize {
        self.levels.iter().filter(|l| **l > 0).count()
    }

    /// The grid inside a border of `pad` voxels of level 0, for scans that look at neighbours
    /// up to `pad` voxels away: a neighbour is then one offset from the voxel's index, with
    /// no bounds to test.
    pub fn padded(&self, pad: usize) -> PaddedLevels {
        let dims = self.dims.map(|n| n + 2 * pad);
        let mut levels = vec![0; dims[0] * dims[1] * dims[2]];
        let mut roi = Vec::new();
        for z in 0..self.dims[2] {
            for y in 0..self.dims[1] {
                let (from, to) = (self.dims[0] * (y + self.dims[1] * z), pad + dims[0] * (y + pad + dims[1] * (z + pad)));
                let row = &self.levels[from..from + self.dims[0]];
                levels[to..to + self.dims[0]].copy_from_slice(row);
                roi.extend(row.iter().enumerate().filter(|(_, l)| **l > 0).map(|(x, l)| (to + x, *l)));
            }
        }
        PaddedLevels { levels, roi, dims, pad, inner: self.dims, ng: self.ng }
    }
}

/// A [`GreyLevels`] grid inside a border of zeros (see [`GreyLevels::padded`]).
pub struct PaddedLevels {
    levels: Vec<u32>,
    pub ng: u32,
    /// (index, level) of the ROI voxels in voxel order, listed once so that the scans (13
    /// directions for GLCM and GLRLM alone) visit only them, not the whole box around them.
    roi: Vec<(usize, u32)>,
    dims: [usize; 3],
    pad: usize,
    inner: [usize; 3],
}

impl PaddedLevels {
    /// Every level of the bordered grid, x fastest.
    pub fn levels(&self) -> &[u32] {
        &self.levels
    }

    /// The width of the border.
    pub fn pad(&self) -> usize {
        self.pad
    }

    pub fn roi_voxels(&self) -> usize {
        self.roi.len()
    }

    /// The index step of the displacement `d`, whose components must not exceed the border.
    pub fn offset(&self, d: [isize; 3]) -> isize {
        debug_assert!(d.iter().all(|v| v.unsigned_abs() <= self.pad));
        d[0] + self.dims[0] as isize * (d[1] + self.dims[1] as isize * d[2])
    }

    /// The index in the unpadded grid of the voxel at padded `index`.
    pub fn unpadded(&self, index: usize) -> usize {
        let (x, y, z) = (index % self.dims[0], (index / self.dims[0]) % self.dims[1], index / (self.dims[0] * self.dims[1]));
        let p = self.pad;
        (x - p) + self.inner[0] * ((y - p) + self.inner[1] * (z - p))
    }

    /// The level at `index + offset`.
    #[inline(always)]
    pub fn at(&self, index: usize, offset: isize) -> u32 {
        self.levels[index.wrapping_add_signed(offset)]
    }

    /// Calls `f(index, level)` for every ROI voxel in voxel order (z, then y, then x), the
    /// order in which sums over voxels are added.
    pub fn for_each_roi_voxel(&self, mut f: impl FnMut(usize, u32)) {
        for (index, level) in &self.roi {
            f(*index, *level);
        }
    }
}

impl Feature {
    /// A name unique within one extraction: under IBSI naming the aggregation is appended to
    /// texture features; PyRadiomics' names are unique as they are.
    pub fn column(&self) -> String {
        match (self.aggregation, self.naming) {
            (Some(a), FeatureNaming::Ibsi) => format!("{}_{}", self.name, a.short()),
            _ => self.name.clone(),
        }
    }
}

pub(crate) fn feature(name: &str, value: f64, ibsi_code: &'static str, aggregation: Option<Aggregation>) -> Feature {
    Feature { name: name.to_string(), value, ibsi_code, aggregation, naming: FeatureNaming::Ibsi }
}

/// Every IBSI family on one ROI: statistics and local intensity on the raw intensities, the
/// histogram, IVH and texture families on `grey`, texture in every aggregation method.
/// `ivh_step` is the grid step of the intensity-volume histogram.
pub fn ibsi_features(roi: &Roi, grey: &GreyLevels, ivh_step: f64) -> Vec<Feature> {
    let mut out = morphology::features(roi);
    out.extend(local_intensity::features(roi));
    out.extend(statistics::features(&roi.roi_intensities()));
    out.extend(intensity_histogram::features(grey));
    let grey_values: Vec<f64> = grey.levels.iter().filter(|l| **l > 0).map(|l| *l as f64).collect();
    out.extend(ivh::features(&grey_values, ivh_step));
    let t = texture::TextureSettings::default();
    for agg in Aggregation::DIRECTIONAL {
        out.extend(glcm::features(grey, agg, &t, roi.spacing));
        out.extend(glrlm::features(grey, agg, &t, roi.spacing));
    }
    for agg in Aggregation::ZONAL {
        out.extend(glszm::features(grey, agg));
        out.extend(gldzm::features(grey, agg, Some(&roi.morphological_levels())));
        out.extend(ngtdm::features(grey, agg, &t));
        out.extend(ngldm::features(grey, agg, &t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5×4×3 grid with ROI voxels on every face of the box and holes inside.
    fn grid() -> GreyLevels {
        let dims = [5, 4, 3];
        let levels = (0..60u32).map(|i| if i % 3 == 0 || i % 7 == 1 { 1 + i % 4 } else { 0 }).collect();
        GreyLevels { dims, levels, ng: 4 }
    }

    /// The level at (x, y, z), 0 outside the grid: what a bordered grid must see.
    fn level_at(g: &GreyLevels, x: isize, y: isize, z: isize) -> u32 {
        let inside = [x, y, z].iter().zip(g.dims).all(|(c, n)| (0..n as isize).contains(c));
        if inside { g.levels[x as usize + g.dims[0] * (y as usize + g.dims[1] * z as usize)] } else { 0 }
    }

    #[test]
    fn a_bordered_grid_visits_the_same_voxels_in_the_same_order_and_sees_the_same_neighbours() {
        let g = grid();
        for pad in [1, 2] {
            let p = g.padded(pad);
            assert_eq!(p.pad(), pad);
            assert_eq!(p.roi_voxels(), g.roi_voxels());
            let mut visited = Vec::new();
            p.for_each_roi_voxel(|index, level| visited.push((p.unpadded(index), level, index)));
            let expected: Vec<(usize, u32)> = g.levels.iter().enumerate().filter(|(_, l)| **l > 0).map(|(i, l)| (i, *l)).collect();
            assert_eq!(visited.iter().map(|(i, l, _)| (*i, *l)).collect::<Vec<_>>(), expected);
            let span = pad as isize;
            for (i, _, index) in visited {
                let (x, y, z) = ((i % 5) as isize, ((i / 5) % 4) as isize, (i / 20) as isize);
                for dz in -span..=span {
                    for dy in -span..=span {
                        for dx in -span..=span {
                            let seen = p.at(index, p.offset([dx, dy, dz]));
                            assert_eq!(seen, level_at(&g, x + dx, y + dy, z + dz), "voxel {i}, step {:?}, border {pad}", [dx, dy, dz]);
                        }
                    }
                }
            }
        }
    }
}
