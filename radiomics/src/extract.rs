//! One case: image + mask + settings → features, or a typed reason why not.
//!
//! Order of operations (PyRadiomics' where it defines one): check geometry and mask; z-score
//! normalise the whole image (clip outliers); select the label; resample to a new spacing or
//! pre-crop, keeping `padDistance` voxels around the ROI; resegment the intensity mask
//! (and the shape mask with `resegmentShape`); check the ROI's size and extent; then per image
//! type: filter the whole image, crop, discretise, compute the families (shape on the
//! original only).

use std::path::Path;

use fedrad_imaging::{ImagingError, SampleType, Volume};

use super::discretise::{DiscretisationError, discretise};
use super::filters::ImageType;
use super::resample;
use super::settings::{Family, IvhInput, ResegmentMode, Settings};
use super::turned_axes;
use super::*;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractionError {
    #[error("cannot read the volume: {0}")]
    Read(String),
    #[error("mask and image grids differ: {0}")]
    GeometryMismatch(String),
    #[error("the mask is not integral (holds {0})")]
    NonIntegralMask(f32),
    #[error("the mask is empty")]
    EmptyMask,
    #[error("label {label} is not in the mask (labels present: {present:?})")]
    MissingLabel { label: u32, present: Vec<i64> },
    #[error("the image has non-finite voxels")]
    NonFinite,
    /// A filter gave a non-finite value inside the ROI; `cause` is that filter's way of
    /// doing so (see [`ImageType::non_finite_cause`]).
    #[error("the {image} image has non-finite values in the ROI ({cause})")]
    FilteredNonFinite { image: String, cause: &'static str },
    #[error("the ROI has {voxels} voxels after resegmentation, fewer than the minimum {minimum}")]
    RoiTooSmall { voxels: usize, minimum: usize },
    #[error("the ROI extends in {dims} dimension(s), fewer than minimumROIDimensions = {minimum}")]
    RoiTooFlat { dims: u32, minimum: u32 },
    #[error("{0}")]
    FilterDoesNotFit(String),
    #[error("discretisation failed: {0}")]
    Discretisation(#[from] DiscretisationError),
}

impl ExtractionError {
    /// Short reason for per-reason counts (the only thing a site reports).
    pub fn reason(&self) -> &'static str {
        match self {
            ExtractionError::Read(_) => "unreadable_volume",
            ExtractionError::GeometryMismatch(_) => "geometry_mismatch",
            ExtractionError::NonIntegralMask(_) => "non_integral_mask",
            ExtractionError::EmptyMask => "empty_mask",
            ExtractionError::MissingLabel { .. } => "missing_label",
            ExtractionError::NonFinite | ExtractionError::FilteredNonFinite { .. } => "non_finite_voxels",
            ExtractionError::RoiTooSmall { .. } => "roi_too_small",
            ExtractionError::RoiTooFlat { .. } => "roi_too_flat",
            ExtractionError::Discretisation(_) => "discretisation",
            ExtractionError::FilterDoesNotFit(_) => "image_too_small_for_filter",
        }
    }

    /// Every reason, in the order the study summary counts them.
    pub const REASONS: [&'static str; 10] = [
        "unreadable_volume",
        "geometry_mismatch",
        "non_integral_mask",
        "empty_mask",
        "missing_label",
        "non_finite_voxels",
        "roi_too_small",
        "roi_too_flat",
        "discretisation",
        "image_too_small_for_filter",
    ];
}

impl From<ImagingError> for ExtractionError {
    fn from(e: ImagingError) -> Self {
        ExtractionError::Read(e.to_string())
    }
}

/// Features of an image and mask as files: NIfTI/NRRD, or a DICOM series folder with an
/// RTSTRUCT or SEG file and the region's name `roi` (see [`fedrad_imaging::read_image_and_mask`]).
pub fn extract_files(image: &Path, mask: &Path, roi: Option<&str>, settings: &Settings) -> Result<Vec<Feature>, ExtractionError> {
    let (image, mask) = fedrad_imaging::read_image_and_mask(image, mask, roi)?;
    extract(&image, &mask, settings)
}

pub fn extract(image: &Volume, mask: &Volume, s: &Settings) -> Result<Vec<Feature>, ExtractionError> {
    if let Some(d) = image.geometry.mismatch(&mask.geometry, s.geometry_tolerance) {
        return Err(ExtractionError::GeometryMismatch(d));
    }
    // Whole without `fract`, which is a libm call per voxel on baseline x86-64: every float
    // of magnitude 2²³ or more is a whole number, and below that the cast to i32 is exact.
    // Labels 0 and 1 (nearly every mask voxel) answer on the first two comparisons.
    let whole = |v: f32| v == 0.0 || v == 1.0 || (v.is_finite() && (v.abs() >= 8_388_608.0 || v as i32 as f32 == v));
    if let Some(v) = mask.data.iter().find(|v| !whole(**v)) {
        return Err(ExtractionError::NonIntegralMask(*v));
    }
    let mut present: Vec<i64> = mask.data.iter().filter(|v| **v != 0.0).map(|v| *v as i64).collect();
    present.sort();
    present.dedup();
    if present.is_empty() {
        return Err(ExtractionError::EmptyMask);
    }
    if !present.contains(&(s.label as i64)) {
        return Err(ExtractionError::MissingLabel { label: s.label, present });
    }
    if image.data.iter().any(|v| !v.is_finite()) {
        return Err(ExtractionError::NonFinite);
    }
    let mut roi = Roi::from_volumes(image, mask, s.label as f32);
    if let Some(scale) = s.normalize_scale {
        // ITK's NormalizeImageFilter (PyRadiomics `normalize`), in its own arithmetic: mean and
        // unbiased variance from the sum and the sum of squares, then (x − mean)·(1/σ). For
        // integer images both sums are exact, so the normalised values are ITK's to the last
        // bit — which matters where a filter compares values (LBP) or ties are broken.
        let n = roi.intensities.len() as f64;
        let (sum, sum_sq) = roi.intensities.iter().fold((0.0, 0.0), |(s, q), x| (s + x, q + x * x));
        let mean = sum / n;
        let sd = ((sum_sq - sum * sum / n) / (n - 1.0).max(1.0)).max(0.0).sqrt();
        let inverse_sd = if sd > 0.0 { 1.0 / sd } else { 1.0 };
        let shift = -mean;
        for x in &mut roi.intensities {
            let mut z = (*x + shift) * inverse_sd;
            if let Some(k) = s.remove_outliers {
                z = z.clamp(-k, k);
            }
            *x = z * scale;
        }
    }
    // PyRadiomics resamples (or pre-crops) after normalising the whole image; the result is
    // the image every filter and feature then sees. Normalised images are doubles in ITK.
    let sample = if s.normalize_scale.is_some() { SampleType::Float64 } else { image.sample };
    match (s.resampled_spacing, s.interpolator) {
        _ if s.ibsi_interpolation.is_some() => {
            if let Some(how) = &s.ibsi_interpolation {
                roi = super::ibsi_interpolation::interpolate_roi(&roi, how);
            }
        }
        (Some(spacing), Some(interpolator)) => {
            roi = resample::resample(&roi, &image.geometry, &mask.geometry, spacing, interpolator, s.pad_distance, sample);
        }
        _ if s.pre_crop => {
            let (lo, hi) = resample::padded_mask_box(&roi, s.pad_distance);
            roi = roi.crop(lo, hi);
        }
        _ => {}
    }
    if s.resegment.is_some() || s.outlier_sigma.is_some() {
        let vals = roi.roi_intensities();
        let (min, max) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let sd = (vals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
        let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
        if let Some((mode, l, h)) = s.resegment {
            let bound = |b: f64| match mode {
                ResegmentMode::Absolute => b,
                ResegmentMode::Relative => min + b * (max - min),
                ResegmentMode::Sigma => mean + b * sd,
            };
            (lo, hi) = (bound(l), h.map(bound).unwrap_or(f64::INFINITY));
        }
        // The IBSI's range and outlier re-segmentation together: both must hold, the outlier
        // bounds from the ROI before either (as MIRP computes them).
        if let Some(k) = s.outlier_sigma {
            (lo, hi) = (lo.max(mean - k * sd), hi.min(mean + k * sd));
        }
        for i in 0..roi.mask.len() {
            if roi.mask[i] && !(roi.intensities[i] >= lo && roi.intensities[i] <= hi) {
                roi.mask[i] = false;
                if s.resegment_shape {
                    roi.morph_mask[i] = false;
                }
            }
        }
    }
    let voxels = roi.voxel_count();
    let minimum = s.minimum_roi_size.unwrap_or(1);
    if voxels < minimum.max(1) {
        return Err(ExtractionError::RoiTooSmall { voxels, minimum: minimum.max(1) });
    }
    let dims = extent_dimensions(&roi);
    if dims < s.minimum_roi_dimensions {
        return Err(ExtractionError::RoiTooFlat { dims, minimum: s.minimum_roi_dimensions });
    }
    // Filters see the whole image through its max |x|; the features only the cropped region.
    for t in &s.image_types {
        t.check(roi.dims, roi.spacing).map_err(ExtractionError::FilterDoesNotFit)?;
    }
    let m = super::filters::max_abs(&roi.intensities);
    let (lo, hi) = crop_box(&roi);
    let cropped = roi.crop(lo, hi);
    let mut out = Vec::new();
    // PyRadiomics computes the shape classes on the original image whether or not the
    // Original image type is enabled.
    if !s.image_types.contains(&ImageType::ORIGINAL) {
        out.extend(shape_families(&cropped, s).into_iter().map(|mut f| {
            f.name = format!("original_{}", f.name);
            f
        }));
    }
    for image_type in &s.image_types {
        for (prefix, values) in image_type.derive(&roi, &cropped.intensities, lo, hi, m, sample) {
            let filtered = Roi { intensities: values, ..cropped.clone() };
            if filtered.roi_intensities().iter().any(|v| !v.is_finite()) {
                return Err(ExtractionError::FilteredNonFinite { image: prefix, cause: image_type.non_finite_cause() });
            }
            let grey = discretise(&filtered, s.discretisation)?;
            out.extend(families(&filtered, &grey, s, &prefix, *image_type == ImageType::ORIGINAL));
        }
    }
    Ok(match s.naming {
        FeatureNaming::Ibsi => out,
        FeatureNaming::PyRadiomics => super::naming::to_pyradiomics(out, &s.pyradiomics_selection),
    })
}

/// The ROI's bounding box plus a margin that holds the local-intensity sphere (every other
/// family looks only at ROI voxels and their direct neighbours). Features do not change;
/// the work no longer scales with the size of the scan.
pub fn crop(roi: &Roi) -> Roi {
    let (lo, hi) = crop_box(roi);
    roi.crop(lo, hi)
}

/// The inclusive voxel box [`crop`] keeps.
pub fn crop_box(roi: &Roi) -> ([usize; 3], [usize; 3]) {
    let Some((lo, hi)) = roi.bounding_box(|i| roi.mask[i] || roi.morph_mask[i]) else { return ([0; 3], roi.dims.map(|n| n - 1)) };
    let margin = [0, 1, 2].map(|a| (local_intensity::RADIUS_MM / roi.spacing[a]).ceil() as usize + 1);
    let lo = [0, 1, 2].map(|a| lo[a].saturating_sub(margin[a]));
    let hi = [0, 1, 2].map(|a| (hi[a] + margin[a]).min(roi.dims[a] - 1));
    (lo, hi)
}

/// In how many axes the ROI spans more than one voxel.
fn extent_dimensions(roi: &Roi) -> u32 {
    roi.bounding_box(|i| roi.mask[i]).map_or(0, |(lo, hi)| (0..3).filter(|a| hi[*a] > lo[*a]).count() as u32)
}

/// The shape classes (3D and 2D) the settings enable, unprefixed.
fn shape_families(roi: &Roi, s: &Settings) -> Vec<Feature> {
    let mut out = Vec::new();
    if s.families.contains(&Family::Shape) {
        out.extend(match s.naming {
            FeatureNaming::Ibsi => morphology::features(roi),
            FeatureNaming::PyRadiomics => morphology::features_with_plane_diameters(roi),
        });
    }
    if s.families.contains(&Family::Shape2D) {
        out.extend(shape_2d::features(roi, s.slice_axis));
    }
    out
}

fn families(roi: &Roi, grey: &GreyLevels, s: &Settings, prefix: &str, original: bool) -> Vec<Feature> {
    let has = |f| s.families.contains(&f) && (original || s.filtered_families.as_ref().is_none_or(|only| only.contains(&f)));
    let mut out = if original { shape_families(roi, s) } else { Vec::new() };
    if has(Family::LocalIntensity) {
        out.extend(local_intensity::features(roi));
    }
    if has(Family::FirstOrder) {
        let xs = roi.roi_intensities();
        out.extend(statistics::features(&xs));
        let levels: Vec<u32> = grey.levels.iter().copied().filter(|l| *l > 0).collect();
        out.extend(statistics::pyradiomics_features(&xs, &levels, roi.spacing.iter().product()));
        if s.voxel_array_shift != 0.0 {
            statistics::shift_energies(&mut out, &xs, s.voxel_array_shift, roi.spacing.iter().product());
        }
    }
    if has(Family::Histogram) {
        out.extend(intensity_histogram::features(grey));
    }
    if has(Family::Ivh) {
        let levels: Vec<f64> = grey.levels.iter().filter(|l| **l > 0).map(|l| *l as f64).collect();
        let step = s.ivh_step.unwrap_or(1.0);
        out.extend(match s.ivh_input {
            IvhInput::GreyLevels => ivh::features(&levels, step),
            input => {
                let xs = roi.roi_intensities();
                let (min, max) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
                // X_min and X_max: the absolute re-segmentation range's bounds where it has them.
                let (r0, r1) = match s.resegment {
                    Some((ResegmentMode::Absolute, lo, hi)) => (lo, hi.unwrap_or(max)),
                    _ => (min, max),
                };
                match input {
                    IvhInput::FixedBinSize(w) => {
                        let bins = ((r1 - r0) / w).ceil() + 1.0;
                        let centres: Vec<f64> = xs.iter().map(|x| r0 + (((x - r0) / w).floor() + 1.0).max(1.0) * w - 0.5 * w).collect();
                        ivh::features_in_range(&centres, w, Some((r0 + 0.5 * w, r0 + (bins - 0.5) * w)))
                    }
                    IvhInput::FixedBinNumber(n) => {
                        let nf = n as f64;
                        let bins: Vec<f64> = xs.iter().map(|x| if max > min { ((nf * (x - min) / (max - min)).floor() + 1.0).clamp(1.0, nf) } else { 1.0 }).collect();
                        ivh::features_in_range(&bins, 1.0, Some((1.0, nf)))
                    }
                    _ => ivh::features_in_range(&xs, step, Some((r0, r1))),
                }
            }
        });
    }
    // 2D and 2.5D texture take slices across `slice_axis` (PyRadiomics `force2Ddimension`):
    // the grid is turned so that this axis is the third.
    let turned = (s.slice_axis != 2).then(|| grey.with_slices_across(s.slice_axis));
    let shape = has(Family::Gldzm).then(|| roi.morphological_levels());
    let turned_shape = shape.as_ref().filter(|_| s.slice_axis != 2).map(|m| m.with_slices_across(s.slice_axis));
    let turned_spacing = turned_axes(s.slice_axis).map(|a| roi.spacing[a]);
    for &agg in &s.aggregations {
        let in_slices = !matches!(agg, Aggregation::ThreeDAveraged | Aggregation::ThreeDMerged | Aggregation::ThreeD);
        let (grey, spacing, shape) = match &turned {
            Some(t) if in_slices => (t, turned_spacing, turned_shape.as_ref()),
            _ => (grey, roi.spacing, shape.as_ref()),
        };
        if Aggregation::DIRECTIONAL.contains(&agg) {
            if has(Family::Glcm) {
                out.extend(glcm::features(grey, agg, &s.texture, spacing));
            }
            if has(Family::Glrlm) {
                out.extend(glrlm::features(grey, agg, &s.texture, spacing));
            }
        } else {
            if has(Family::Glszm) {
                out.extend(glszm::features(grey, agg));
            }
            if has(Family::Gldzm) {
                out.extend(gldzm::features(grey, agg, shape));
            }
            if has(Family::Ngtdm) {
                out.extend(ngtdm::features(grey, agg, &s.texture));
            }
            if has(Family::Gldm) {
                out.extend(ngldm::features(grey, agg, &s.texture));
            }
        }
    }
    for f in &mut out {
        f.name = format!("{prefix}_{}", f.name);
    }
    out
}

/// The CSV the `extract` command writes: feature,value,ibsi_code,aggregation (the feature's
/// name without the aggregation suffix; PyRadiomics' names have none).
pub fn to_csv(features: &[Feature]) -> String {
    let mut s = String::from("feature,value,ibsi_code,aggregation\n");
    for f in features {
        let agg = f.aggregation.map_or(String::new(), |a| format!("\"{}\"", a.ibsi_label()));
        s.push_str(&format!("{},{},{},{}\n", f.name, f.value, f.ibsi_code, agg));
    }
    s
}
