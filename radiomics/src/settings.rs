//! Extraction settings, from a PyRadiomics parameter file (YAML with `setting`, `imageType`,
//! `featureClass`) or FedRad's study default.
//!
//! PyRadiomics keys supported with PyRadiomics semantics: `label`, `binWidth`, `binCount`,
//! `normalize`, `normalizeScale`, `removeOutliers`, `resegmentRange`, `resegmentMode`
//! (absolute, relative, sigma), `resegmentShape`, `minimumROIDimensions`, `minimumROISize`,
//! `geometryTolerance`, `resampledPixelSpacing`, `interpolator` (`sitkNearestNeighbor`,
//! `sitkLinear`, `sitkBSpline`), `padDistance`, `preCrop`, `distances`, `symmetricalGLCM`,
//! `weightingNorm` (directions merged with weights; needs merged aggregations, and turns the
//! PyRadiomics default "3D, averaged" into "3D, merged"), `gldm_a`, `voxelArrayShift`,
//! `force2D` (texture in slices merged over the volume: IBSI's 2.5D aggregations replace the
//! 3D ones) and `force2Ddimension` (the axis slices run across, for every 2D and 2.5D
//! aggregation). Image
//! types: `Original`, `Square`, `SquareRoot`, `Logarithm`, `Exponential` (see
//! [`super::filters`]), `Wavelet` (options `wavelet`, `start_level`, `level`; see
//! [`super::wavelet`]), `LoG` (option `sigma`; see [`super::laplacian_of_gaussian`]) and
//! `Gradient` (option `gradientUseSpacing`; see [`super::gradient`]) and `LBP2D` (options
//! `lbp2DRadius`, `lbp2DSamples`, `lbp2DMethod`; see [`super::local_binary_pattern`]) and
//! `LBP3D` (options `lbp3DLevels`, `lbp3DIcosphereRadius`, `lbp3DIcosphereSubdivision`; see
//! [`super::local_binary_pattern_3d`]), their options given under the image type or, as
//! PyRadiomics allows, under `setting`. IBSI-only keys: `ibsiDiscretisation` (`fixedBinNumber`,
//! `fixedBinSize`, `pyradiomics`), `ibsiBinLowerBound`, `ibsiAggregation` (a list of IBSI
//! aggregation names, e.g. `["3D, averaged", "3D"]`), `ivhStep`, `ivhDiscretisation`
//! (`greyLevels`, `none`, `fixedBinSize` with `ivhBinSize`, `fixedBinNumber` with
//! `ivhBinNumber`; see [`IvhInput`]), `ibsiOutlierSigma` (outlier re-segmentation, with the
//! range), `ibsiResampledPixelSpacing`, `ibsiInterpolator` (`linear`, `cubicSpline`), `ibsiRoundIntensities`,
//! `ibsiMaskThreshold` (the IBSI's
//! interpolation grid, see [`super::ibsi_interpolation`]).
//!
//! Feature classes: `shape` (IBSI morphology), `shape2D` (PyRadiomics' 2D shape of a
//! one-slice ROI, see [`super::shape_2d`]), `firstorder` (IBSI intensity statistics),
//! `glcm`, `glrlm`, `glszm`, `gldm` (IBSI NGLDM), `ngtdm`, and the IBSI families
//! `histogram`, `ivh`, `localintensity`, `gldzm`.
//!
//! Names (`featureNaming`, see [`super::naming`]): a parameter file gets PyRadiomics' names
//! and feature set, as PyRadiomics' `execute` returns them — no `featureClass` means its seven
//! default classes, a class may list features by PyRadiomics' names (deprecated ones it still
//! computes included). `featureNaming: ibsi` gives FedRad's IBSI names with the aggregation in
//! the column, the IBSI-only classes and `ibsiAggregation`, which PyRadiomics' names cannot
//! express and are refused without it. FedRad's study default is IBSI-named.

use std::collections::{BTreeMap, BTreeSet};

use yaml_rust2::{Yaml, YamlLoader};

use super::discretise::Discretisation;
use super::filters::{ImageType, PointTransform};
use super::ibsi_interpolation::{IbsiInterpolation, IbsiInterpolator};
use super::local_binary_pattern::{Lbp2dSettings, LbpMethod};
use super::local_binary_pattern_3d::Lbp3dSettings;
use super::naming::{self, PyRadiomicsFeature};
use super::resample::Interpolator;
use super::texture::{TextureSettings, WeightingNorm};
use super::wavelet::WaveletSettings;
use super::{Aggregation, FeatureNaming};

/// Bump whenever any feature's value can change, so cached features are recomputed.
pub const FEATURE_CODE_VERSION: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Shape,
    /// PyRadiomics' 2D shape of a one-slice ROI; asked for by name only.
    Shape2D,
    FirstOrder,
    Histogram,
    Ivh,
    LocalIntensity,
    Glcm,
    Glrlm,
    Glszm,
    Gldzm,
    Ngtdm,
    Gldm,
}

impl Family {
    pub const ALL: [Family; 11] = [
        Family::Shape,
        Family::FirstOrder,
        Family::Histogram,
        Family::Ivh,
        Family::LocalIntensity,
        Family::Glcm,
        Family::Glrlm,
        Family::Glszm,
        Family::Gldzm,
        Family::Ngtdm,
        Family::Gldm,
    ];

    /// Every family a parameter file can name: [`Family::ALL`] and `shape2D`.
    pub fn from_key(name: &str) -> Option<Family> {
        Family::ALL.into_iter().chain([Family::Shape2D]).find(|f| f.key() == name)
    }

    pub fn key(self) -> &'static str {
        match self {
            Family::Shape => "shape",
            Family::Shape2D => "shape2D",
            Family::FirstOrder => "firstorder",
            Family::Histogram => "histogram",
            Family::Ivh => "ivh",
            Family::LocalIntensity => "localintensity",
            Family::Glcm => "glcm",
            Family::Glrlm => "glrlm",
            Family::Glszm => "glszm",
            Family::Gldzm => "gldzm",
            Family::Ngtdm => "ngtdm",
            Family::Gldm => "gldm",
        }
    }
}

/// The classes PyRadiomics enables when a parameter file names none (all but `shape2D`).
pub const PYRADIOMICS_DEFAULT_CLASSES: [Family; 7] = [Family::Shape, Family::FirstOrder, Family::Glcm, Family::Glrlm, Family::Glszm, Family::Gldm, Family::Ngtdm];

/// What the intensity-volume histogram is taken of (IBSI "IVH discretisation").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IvhInput {
    /// The texture's grey levels (`ivhDiscretisation: greyLevels`, the default), step
    /// `ivhStep` (1).
    GreyLevels,
    /// The intensities themselves (`none`), on a grid of `ivhStep` (1: integer HU), with the
    /// intensity fraction over the absolute re-segmentation range where there is one.
    Intensities,
    /// Bins of this width from the re-segmentation range's lower bound (else the ROI's
    /// minimum), each voxel at its bin's centre (`fixedBinSize` with `ivhBinSize`).
    FixedBinSize(f64),
    /// This many bins between the ROI's minimum and maximum (`fixedBinNumber` with
    /// `ivhBinNumber`).
    FixedBinNumber(u32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResegmentMode {
    Absolute,
    Relative,
    Sigma,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub label: u32,
    pub discretisation: Discretisation,
    /// z-score the whole image, then multiply by this scale (PyRadiomics `normalize`).
    pub normalize_scale: Option<f64>,
    /// With normalisation, clip at ± this many SDs first (PyRadiomics `removeOutliers`).
    pub remove_outliers: Option<f64>,
    pub resegment: Option<(ResegmentMode, f64, Option<f64>)>,
    /// IBSI outlier re-segmentation, combined with the range above (`ibsiOutlierSigma`):
    /// only voxels within μ ± kσ of the ROI's intensities (σ the population SD) stay.
    pub outlier_sigma: Option<f64>,
    /// Interpolation onto the IBSI's grid instead of PyRadiomics' (see
    /// [`super::ibsi_interpolation`]).
    pub ibsi_interpolation: Option<IbsiInterpolation>,
    /// Resegmentation also trims the shape mask (PyRadiomics `resegmentShape`).
    pub resegment_shape: bool,
    pub minimum_roi_dimensions: u32,
    pub minimum_roi_size: Option<usize>,
    pub geometry_tolerance: f64,
    pub families: BTreeSet<Family>,
    pub aggregations: Vec<Aggregation>,
    pub ivh_step: Option<f64>,
    /// What the intensity-volume histogram is taken of (`ivhDiscretisation`).
    pub ivh_input: IvhInput,
    /// Images the features are computed on (shape only on the original).
    pub image_types: Vec<ImageType>,
    /// Feature classes on derived (filtered) images, when narrower than `families`
    /// (FedRad key `filteredImageFeatureClasses`).
    pub filtered_families: Option<BTreeSet<Family>>,
    /// Target voxel spacing in mm, 0 keeping an axis (PyRadiomics `resampledPixelSpacing`);
    /// see [`super::resample`]. Resampling needs an interpolator too.
    pub resampled_spacing: Option<[f64; 3]>,
    /// PyRadiomics `interpolator` (default `sitkBSpline`; null turns resampling off).
    pub interpolator: Option<Interpolator>,
    /// Voxels kept around the ROI's bounding box when resampling or pre-cropping
    /// (PyRadiomics `padDistance`, default 5). Filters see only this box.
    pub pad_distance: usize,
    /// Crop image and mask to the padded bounding box before filtering (PyRadiomics `preCrop`,
    /// without resampling).
    pub pre_crop: bool,
    /// Texture neighbourhoods and GLCM options (`distances`, `symmetricalGLCM`,
    /// `weightingNorm`, `gldm_a`).
    pub texture: TextureSettings,
    /// Added to intensities for Energy, TotalEnergy and RootMeanSquare (PyRadiomics
    /// `voxelArrayShift`, default 0).
    pub voxel_array_shift: f64,
    /// The axis (0 = x, 1 = y, 2 = z) that 2D and 2.5D texture slices across (PyRadiomics
    /// `force2Ddimension` 2, 1, 0); 2, axial slices, unless set.
    pub slice_axis: usize,
    /// PyRadiomics' names and feature set, or FedRad's IBSI names (`featureNaming`; see
    /// [`super::naming`]). Parameter files default to PyRadiomics', the study default to IBSI.
    pub naming: FeatureNaming,
    /// Under PyRadiomics naming, the features of each enabled class: a class's `featureClass`
    /// list, or its non-deprecated features.
    pub pyradiomics_selection: BTreeMap<Family, Vec<&'static PyRadiomicsFeature>>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("parameter file is not valid YAML: {0}")]
    Yaml(String),
    #[error("unknown key `{0}`")]
    UnknownKey(String),
    #[error("`{key}`: {detail}")]
    BadValue { key: String, detail: String },
    #[error("`{key}` = {value} is not supported by FedRad yet (only its default is)")]
    Unsupported { key: String, value: String },
    #[error(transparent)]
    Naming(#[from] naming::NamingError),
}

impl Settings {
    /// The study default for MRI, 1 197 features per sequence:
    /// - z-score normalisation of the whole image (×100): MR intensities have no units;
    /// - IBSI fixed bin number 32 within the ROI, robust to scanner intensity scales;
    /// - texture as "3D, averaged" (GLCM, GLRLM) and "3D" (the zone and neighbourhood
    ///   families);
    /// - the original image with all 11 families (177 features: morphology with the axis
    ///   lengths both as PyRadiomics and as the IBSI define them, local intensity,
    ///   statistics, intensity histogram, IVH, GLCM, GLRLM, GLSZM, GLDZM, NGTDM, NGLDM);
    /// - 8 coif1 wavelet sub-bands and LoG at σ = 1 and 3 mm (fine and coarse texture of
    ///   tumours of 4–85 cm³), each with the PyRadiomics classes firstorder, glcm, glrlm,
    ///   glszm, gldm and ngtdm (102 features per image, 1 020 in all).
    pub fn study_default() -> Settings {
        Settings {
            image_types: vec![ImageType::ORIGINAL, ImageType::Wavelet(WaveletSettings::default()), ImageType::LoG(vec![(1.0, "1.0".into()), (3.0, "3.0".into())])],
            filtered_families: Some([Family::FirstOrder, Family::Glcm, Family::Glrlm, Family::Glszm, Family::Gldm, Family::Ngtdm].into_iter().collect()),
            ..Settings::original_only()
        }
    }

    /// The study default's treatment of the original image alone (177 features).
    pub fn original_only() -> Settings {
        Settings {
            label: 1,
            discretisation: Discretisation::FixedBinNumber(32),
            normalize_scale: Some(100.0),
            remove_outliers: None,
            resegment: None,
            outlier_sigma: None,
            ibsi_interpolation: None,
            resegment_shape: false,
            minimum_roi_dimensions: 2,
            minimum_roi_size: None,
            geometry_tolerance: 1e-3,
            families: Family::ALL.into_iter().collect(),
            aggregations: vec![Aggregation::ThreeDAveraged, Aggregation::ThreeD],
            ivh_step: None,
            ivh_input: IvhInput::GreyLevels,
            image_types: vec![ImageType::ORIGINAL],
            filtered_families: None,
            resampled_spacing: None,
            interpolator: Some(Interpolator::BSpline),
            pad_distance: 5,
            pre_crop: false,
            texture: TextureSettings::default(),
            voxel_array_shift: 0.0,
            slice_axis: 2,
            naming: FeatureNaming::Ibsi,
            pyradiomics_selection: BTreeMap::new(),
        }
    }

    /// PyRadiomics' own defaults (binWidth 25, no normalisation, its names and its seven
    /// default classes), the base of a parameter file.
    pub fn pyradiomics_default() -> Settings {
        Settings {
            discretisation: Discretisation::PyRadiomicsBinWidth(25.0),
            normalize_scale: None,
            minimum_roi_dimensions: 2,
            naming: FeatureNaming::PyRadiomics,
            families: PYRADIOMICS_DEFAULT_CLASSES.into_iter().collect(),
            ..Settings::original_only()
        }
    }

    /// A canonical text of everything that changes the values, for cache keys: the
    /// settings, the agent version and [`FEATURE_CODE_VERSION`].
    pub fn digest_text(&self) -> String {
        format!("fedrad-radiomics {} {} {self:?}", env!("CARGO_PKG_VERSION"), FEATURE_CODE_VERSION)
    }

    pub fn from_pyradiomics_yaml(text: &str) -> Result<Settings, SettingsError> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| SettingsError::Yaml(e.to_string()))?;
        let mut s = Settings::pyradiomics_default();
        // An empty file (or one of comments only) is PyRadiomics' defaults.
        let empty = yaml_rust2::yaml::Hash::new();
        let top = match docs.first() {
            None | Some(Yaml::Null) => &empty,
            Some(doc) => doc.as_hash().ok_or_else(|| SettingsError::Yaml("the top level must be a mapping".into()))?,
        };
        let mut bin_width = None;
        let mut bin_count = None;
        let mut normalize = false;
        let mut scale = 1.0;
        let mut discretisation_kind: Option<String> = None;
        let mut lower_bound = None;
        let mut reseg_range: Option<Vec<f64>> = None;
        let mut reseg_mode = ResegmentMode::Absolute;
        let mut weighting_given = false;
        let mut force_2d = false;
        let mut aggregation_given = false;
        let mut naming_given = None;
        let mut ibsi_spacing: Option<[f64; 3]> = None;
        let mut round_intensities = false;
        let mut ibsi_interpolator = IbsiInterpolator::Linear;
        let mut mask_threshold = 0.5;
        let mut ivh_bin_size = None;
        let mut ivh_bin_number = None;
        let mut class_lists: Vec<(Family, Vec<String>)> = Vec::new();
        let mut classes_given = false;
        // Image types with their own options; filter options under `setting` apply to all.
        let mut image_options: Vec<(String, yaml_rust2::yaml::Hash)> = Vec::new();
        let mut filter_settings = yaml_rust2::yaml::Hash::new();
        for (k, v) in top {
            let key = k.as_str().unwrap_or("").to_string();
            match key.as_str() {
                "setting" => {
                    let Some(map) = v.as_hash() else {
                        if v.is_null() {
                            continue;
                        }
                        return Err(bad("setting", "must be a mapping"));
                    };
                    for (k, v) in map {
                        let key = k.as_str().unwrap_or("").to_string();
                        match key.as_str() {
                            "label" => s.label = uint(&key, v)? as u32,
                            "binWidth" => bin_width = Some(positive(&key, v)?),
                            "binCount" => bin_count = Some(uint(&key, v)? as u32),
                            "normalize" => normalize = boolean(&key, v)?,
                            "normalizeScale" => scale = positive(&key, v)?,
                            "removeOutliers" => s.remove_outliers = if v.is_null() { None } else { Some(positive(&key, v)?) },
                            "resegmentRange" => reseg_range = if v.is_null() { None } else { Some(list(&key, v)?) },
                            "resegmentMode" => {
                                reseg_mode = match v.as_str() {
                                    Some("absolute") => ResegmentMode::Absolute,
                                    Some("relative") => ResegmentMode::Relative,
                                    Some("sigma") => ResegmentMode::Sigma,
                                    _ => return Err(bad(&key, "must be absolute, relative or sigma")),
                                }
                            }
                            "resegmentShape" => s.resegment_shape = boolean(&key, v)?,
                            "minimumROIDimensions" => {
                                let d = uint(&key, v)?;
                                if !(1..=3).contains(&d) {
                                    return Err(bad(&key, "must be 1, 2 or 3"));
                                }
                                s.minimum_roi_dimensions = d as u32;
                            }
                            "minimumROISize" => s.minimum_roi_size = if v.is_null() { None } else { Some(uint(&key, v)? as usize) },
                            "geometryTolerance" => s.geometry_tolerance = positive(&key, v)?,
                            "preCrop" => s.pre_crop = boolean(&key, v)?,
                            "resampledPixelSpacing" => {
                                s.resampled_spacing = if v.is_null() {
                                    None
                                } else {
                                    let l = list(&key, v)?;
                                    if l.len() != 3 || l.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
                                        return Err(bad(&key, "must be three spacings in mm (x, y, z), each ≥ 0 (0 keeps that axis)"));
                                    }
                                    Some([l[0], l[1], l[2]])
                                }
                            }
                            "interpolator" => {
                                s.interpolator = match v {
                                    Yaml::Null => None,
                                    Yaml::String(name) => Some(Interpolator::from_sitk(name).ok_or_else(|| interpolator_error(&key, name))?),
                                    Yaml::Integer(i) => Some(Interpolator::from_sitk(&i.to_string()).ok_or_else(|| interpolator_error(&key, &i.to_string()))?),
                                    _ => return Err(bad(&key, "must be a SimpleITK interpolator name, e.g. sitkBSpline")),
                                }
                            }
                            "padDistance" => s.pad_distance = v.as_i64().filter(|i| *i >= 0).ok_or_else(|| bad(&key, "must be an integer ≥ 0"))? as usize,
                            "additionalInfo" | "enableCExtensions" => {
                                boolean(&key, v)?;
                            }
                            "ibsiDiscretisation" => discretisation_kind = Some(v.as_str().ok_or_else(|| bad(&key, "must be a string"))?.to_string()),
                            "ibsiBinLowerBound" => lower_bound = Some(number(&key, v)?),
                            "ibsiAggregation" => {
                                aggregation_given = true;
                                let names = v.as_vec().ok_or_else(|| bad(&key, "must be a list"))?;
                                s.aggregations = names
                                    .iter()
                                    .map(|n| {
                                        let n = n.as_str().unwrap_or("");
                                        Aggregation::DIRECTIONAL
                                            .iter()
                                            .chain(Aggregation::ZONAL.iter())
                                            .find(|a| a.ibsi_label() == n)
                                            .copied()
                                            .ok_or_else(|| bad(&key, &format!("unknown aggregation {n:?}")))
                                    })
                                    .collect::<Result<_, _>>()?;
                            }
                            "ivhStep" => s.ivh_step = Some(positive(&key, v)?),
                            "ivhDiscretisation" => {
                                s.ivh_input = match v.as_str() {
                                    Some("greyLevels") => IvhInput::GreyLevels,
                                    Some("none") => IvhInput::Intensities,
                                    Some("fixedBinSize") => IvhInput::FixedBinSize(0.0),
                                    Some("fixedBinNumber") => IvhInput::FixedBinNumber(0),
                                    _ => {
                                        return Err(bad(
                                            &key,
                                            "must be greyLevels (the texture's discretisation), none (the intensities themselves), fixedBinSize or fixedBinNumber",
                                        ));
                                    }
                                }
                            }
                            "ivhBinSize" => ivh_bin_size = Some(positive(&key, v)?),
                            "ivhBinNumber" => ivh_bin_number = Some(uint(&key, v)? as u32),
                            "ibsiOutlierSigma" => s.outlier_sigma = Some(positive(&key, v)?),
                            "ibsiResampledPixelSpacing" => {
                                let l = list(&key, v)?;
                                if l.len() != 3 || l.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
                                    return Err(bad(&key, "must be three spacings in mm (x, y, z), each ≥ 0 (0 keeps that axis: [2, 2, 0] interpolates in-plane)"));
                                }
                                ibsi_spacing = Some([l[0], l[1], l[2]]);
                            }
                            "ibsiRoundIntensities" => round_intensities = boolean(&key, v)?,
                            "ibsiInterpolator" => {
                                ibsi_interpolator = match v.as_str() {
                                    Some("linear") => IbsiInterpolator::Linear,
                                    Some("cubicSpline") => IbsiInterpolator::CubicSpline,
                                    _ => return Err(bad(&key, "must be linear or cubicSpline")),
                                }
                            }
                            "ibsiMaskThreshold" => {
                                mask_threshold = positive(&key, v)?;
                                if mask_threshold > 1.0 {
                                    return Err(bad(&key, "is a fraction of a voxel, in (0, 1]"));
                                }
                            }
                            "filteredImageFeatureClasses" => {
                                let names = v.as_vec().ok_or_else(|| bad(&key, "must be a list of feature classes"))?;
                                s.filtered_families = Some(
                                    names
                                        .iter()
                                        .map(|n| {
                                            let n = n.as_str().unwrap_or("");
                                            Family::from_key(n).ok_or_else(|| bad(&key, &format!("unknown feature class {n:?}")))
                                        })
                                        .collect::<Result<_, _>>()?,
                                );
                            }
                            "sigma" | "wavelet" | "start_level" | "level" | "gradientUseSpacing" => {
                                filter_settings.insert(k.clone(), v.clone());
                            }
                            "lbp2DRadius" | "lbp2DSamples" | "lbp2DMethod" => {
                                filter_settings.insert(k.clone(), v.clone());
                            }
                            "lbp3DLevels" | "lbp3DIcosphereRadius" | "lbp3DIcosphereSubdivision" => {
                                filter_settings.insert(k.clone(), v.clone());
                            }
                            // Known to PyRadiomics; only the default is honoured.
                            "force2D" => force_2d = boolean(&key, v)?,
                            "force2Ddimension" => {
                                // PyRadiomics counts axes in numpy order (z, y, x).
                                s.slice_axis = match v.as_i64() {
                                    Some(d @ 0..=2) => 2 - d as usize,
                                    _ => return Err(bad(&key, "must be 0 (axial slices), 1 (coronal) or 2 (sagittal)")),
                                }
                            }
                            "distances" => {
                                let l = v.as_vec().ok_or_else(|| bad(&key, "must be a list of distances, e.g. [1, 2]"))?;
                                let d: Vec<u32> = l
                                    .iter()
                                    .map(|x| x.as_i64().filter(|d| (1..=10).contains(d)).map(|d| d as u32))
                                    .collect::<Option<_>>()
                                    .ok_or_else(|| bad(&key, "distances must be integers 1–10"))?;
                                if d.is_empty() {
                                    return Err(bad(&key, "is empty"));
                                }
                                s.texture.distances = d;
                            }
                            "symmetricalGLCM" => s.texture.symmetrical_glcm = boolean(&key, v)?,
                            "weightingNorm" => {
                                s.texture.weighting = match v {
                                    Yaml::Null => None,
                                    _ => Some(
                                        v.as_str()
                                            .and_then(WeightingNorm::from_name)
                                            .ok_or_else(|| bad(&key, "must be manhattan, euclidean, infinity or no_weighting"))?,
                                    ),
                                };
                                weighting_given = s.texture.weighting.is_some();
                            }
                            "gldm_a" => {
                                let a = number(&key, v)?;
                                if !(a >= 0.0 && a.fract() == 0.0 && a <= 1000.0) {
                                    return Err(bad(&key, "must be a whole number of grey levels ≥ 0"));
                                }
                                s.texture.gldm_alpha = a as u32;
                            }
                            "voxelArrayShift" => s.voxel_array_shift = number(&key, v)?,
                            "featureNaming" => {
                                naming_given = Some(match v.as_str() {
                                    Some("pyradiomics") => FeatureNaming::PyRadiomics,
                                    Some("ibsi") => FeatureNaming::Ibsi,
                                    _ => return Err(bad(&key, "must be pyradiomics (PyRadiomics' names and feature set) or ibsi (FedRad's IBSI names)")),
                                })
                            }
                            // PyRadiomics' mask correction for a 2D shape test case; masks
                            // here must already lie on the image grid.
                            "correctMask" => {
                                if boolean(&key, v)? {
                                    return Err(SettingsError::Unsupported {
                                        key: "setting.correctMask".into(),
                                        value: "true (resample the mask onto the image grid first)".into(),
                                    });
                                }
                            }
                            _ => return Err(SettingsError::UnknownKey(format!("setting.{key}"))),
                        }
                    }
                }
                "imageType" => {
                    let Some(map) = v.as_hash() else { return Err(bad("imageType", "must be a mapping")) };
                    // An empty mapping keeps the default (Original), as in PyRadiomics.
                    for (k, opts) in map {
                        let name = k.as_str().unwrap_or("").to_string();
                        let options = match opts {
                            Yaml::Null => Default::default(),
                            Yaml::Hash(h) => h.clone(),
                            _ => return Err(bad(&format!("imageType.{name}"), "options must be a mapping")),
                        };
                        image_options.push((name, options));
                    }
                }
                "featureClass" => {
                    let Some(map) = v.as_hash() else { return Err(bad("featureClass", "must be a mapping")) };
                    // An empty mapping keeps the default classes, as in PyRadiomics.
                    if map.is_empty() {
                        continue;
                    }
                    s.families.clear();
                    classes_given = true;
                    for (k, v) in map {
                        let name = k.as_str().unwrap_or("");
                        let fam = Family::from_key(name).ok_or_else(|| SettingsError::UnknownKey(format!("featureClass.{name}")))?;
                        let listed: Vec<String> = match v {
                            Yaml::Null => Vec::new(),
                            Yaml::Array(l) => l
                                .iter()
                                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| bad(&format!("featureClass.{name}"), "must list feature names")))
                                .collect::<Result<_, _>>()?,
                            _ => return Err(bad(&format!("featureClass.{name}"), "must be empty or a list of feature names")),
                        };
                        s.families.insert(fam);
                        class_lists.push((fam, listed));
                    }
                }
                other => return Err(SettingsError::UnknownKey(other.to_string())),
            }
        }
        if !image_options.is_empty() {
            s.image_types = image_options.iter().map(|(name, opts)| image_type(name, opts, &filter_settings)).collect::<Result<_, _>>()?;
            s.image_types.sort_by_key(ImageType::rank);
            // LBP2D slices across the force2Ddimension axis, as PyRadiomics.
            for t in &mut s.image_types {
                if let ImageType::Lbp2d(l) = t {
                    l.slice_axis = s.slice_axis;
                }
            }
        }
        if normalize {
            s.normalize_scale = Some(scale);
        }
        if let Some(spacing) = ibsi_spacing {
            if s.resampled_spacing.is_some() {
                return Err(bad("setting.ibsiResampledPixelSpacing", "give it or resampledPixelSpacing (PyRadiomics' grid), not both"));
            }
            s.ibsi_interpolation = Some(IbsiInterpolation { spacing, interpolator: ibsi_interpolator, round_intensities, mask_threshold });
        }
        s.ivh_input = match s.ivh_input {
            IvhInput::FixedBinSize(_) => IvhInput::FixedBinSize(ivh_bin_size.ok_or_else(|| bad("setting.ivhBinSize", "required with ivhDiscretisation: fixedBinSize"))?),
            IvhInput::FixedBinNumber(_) => {
                IvhInput::FixedBinNumber(ivh_bin_number.ok_or_else(|| bad("setting.ivhBinNumber", "required with ivhDiscretisation: fixedBinNumber"))?)
            }
            other => other,
        };
        s.naming = naming_given.unwrap_or(FeatureNaming::PyRadiomics);
        match s.naming {
            FeatureNaming::Ibsi => {
                if !classes_given {
                    s.families = Family::ALL.into_iter().collect();
                }
                if let Some((fam, _)) = class_lists.iter().find(|(_, l)| !l.is_empty()) {
                    return Err(SettingsError::Unsupported {
                        key: format!("featureClass.{}", fam.key()),
                        value: "a feature list under featureNaming: ibsi (all features of a class are computed; lists take PyRadiomics' names)".into(),
                    });
                }
            }
            FeatureNaming::PyRadiomics => {
                if aggregation_given {
                    return Err(bad(
                        "setting.ibsiAggregation",
                        "names IBSI aggregations, which PyRadiomics' names do not carry (each class has PyRadiomics' one): add `featureNaming: ibsi`",
                    ));
                }
                if !classes_given {
                    class_lists = PYRADIOMICS_DEFAULT_CLASSES.into_iter().map(|f| (f, Vec::new())).collect();
                }
                for (fam, listed) in &class_lists {
                    s.pyradiomics_selection.insert(*fam, naming::select(*fam, listed)?);
                }
                if let Some(only) = &s.filtered_families
                    && let Some(f) = only.iter().find(|f| !naming::PYRADIOMICS_CLASSES.contains(f))
                {
                    return Err(naming::NamingError::IbsiOnlyClass(f.key()).into());
                }
                if force_2d && s.image_types.iter().any(|t| matches!(t, ImageType::Wavelet(_))) {
                    return Err(SettingsError::Unsupported {
                        key: "imageType.Wavelet".into(),
                        value: "with force2D (PyRadiomics' 2D wavelet, 4 sub-bands per level named wavelet-HH …, is not implemented; `featureNaming: ibsi` gives the 3D transform)".into(),
                    });
                }
                s.texture.maximal_correlation = s.pyradiomics_selection.get(&Family::Glcm).is_some_and(|l| l.iter().any(|p| p.name == "MCC"));
            }
        }
        // PyRadiomics' weighted directions give one merged matrix, not a per-direction average.
        if weighting_given && !aggregation_given {
            s.aggregations = s.aggregations.iter().map(|a| if *a == Aggregation::ThreeDAveraged { Aggregation::ThreeDMerged } else { *a }).collect();
        }
        // PyRadiomics' force2D: in-plane neighbours, matrices over all slices, i.e. IBSI's 2.5D.
        if force_2d && !aggregation_given {
            s.aggregations = s
                .aggregations
                .iter()
                .map(|a| match a {
                    Aggregation::ThreeDAveraged => Aggregation::TwoPointFiveDDirectionMerged,
                    Aggregation::ThreeDMerged => Aggregation::TwoPointFiveDMerged,
                    Aggregation::ThreeD => Aggregation::TwoPointFiveD,
                    other => *other,
                })
                .collect();
        }
        if weighting_given
            && let Some(a) =
                s.aggregations.iter().find(|a| matches!(a, Aggregation::TwoDAveraged | Aggregation::TwoPointFiveDDirectionMerged | Aggregation::ThreeDAveraged))
        {
            return Err(bad("setting.weightingNorm", &format!("weights directions as they are merged, so it needs merged aggregations, not {:?}", a.ibsi_label())));
        }
        if s.remove_outliers.is_some() && !normalize {
            return Err(bad("setting.removeOutliers", "only applies with normalize: true"));
        }
        s.discretisation = match (discretisation_kind.as_deref(), bin_width, bin_count) {
            (_, Some(_), Some(_)) => return Err(bad("setting.binCount", "give binWidth or binCount, not both")),
            (None | Some("pyradiomics"), w, None) => Discretisation::PyRadiomicsBinWidth(w.unwrap_or(25.0)),
            (None | Some("fixedBinNumber"), None, Some(n)) => Discretisation::FixedBinNumber(n),
            (Some("fixedBinSize"), w, None) => Discretisation::FixedBinSize {
                width: w.unwrap_or(25.0),
                lower: lower_bound.ok_or_else(|| bad("setting.ibsiBinLowerBound", "required with fixedBinSize"))?,
            },
            (Some(other), _, _) => return Err(bad("setting.ibsiDiscretisation", &format!("{other:?} does not fit the bin settings given"))),
        };
        if let Some(r) = reseg_range {
            if r.is_empty() || r.len() > 2 || (r.len() == 2 && r[1] < r[0]) {
                return Err(bad("setting.resegmentRange", "must be [lower] or [lower, upper] with lower ≤ upper"));
            }
            s.resegment = Some((reseg_mode, r[0], r.get(1).copied()));
        }
        Ok(s)
    }
}

/// A named interpolator FedRad does not have is "unsupported"; anything else is a bad value.
fn interpolator_error(key: &str, name: &str) -> SettingsError {
    const SITK: [&str; 7] = [
        "sitkGaussian",
        "sitkLabelGaussian",
        "sitkHammingWindowedSinc",
        "sitkCosineWindowedSinc",
        "sitkWelchWindowedSinc",
        "sitkLanczosWindowedSinc",
        "sitkBlackmanWindowedSinc",
    ];
    if SITK.contains(&name) || name.parse::<i64>().is_ok_and(|i| (3..=10).contains(&i)) {
        SettingsError::Unsupported { key: format!("setting.{key}"), value: format!("{name} (FedRad has sitkNearestNeighbor, sitkLinear and sitkBSpline)") }
    } else {
        bad(key, &format!("unknown interpolator {name:?}: use sitkNearestNeighbor, sitkLinear or sitkBSpline"))
    }
}

/// One `imageType` entry with its options (which override those under `setting`).
fn image_type(name: &str, opts: &yaml_rust2::yaml::Hash, general: &yaml_rust2::yaml::Hash) -> Result<ImageType, SettingsError> {
    let key = |o: &str| format!("imageType.{name}.{o}");
    let get = |o: &str| opts.get(&Yaml::String(o.into())).or_else(|| general.get(&Yaml::String(o.into())));
    let allow = |allowed: &[&str]| -> Result<(), SettingsError> {
        for k in opts.keys() {
            let k = k.as_str().unwrap_or("");
            if !allowed.contains(&k) {
                return Err(SettingsError::UnknownKey(key(k)));
            }
        }
        Ok(())
    };
    if let Some(p) = PointTransform::ALL.iter().find(|p| p.key() == name) {
        allow(&[])?;
        return Ok(ImageType::Point(*p));
    }
    match name {
        "Wavelet" => {
            allow(&["wavelet", "start_level", "level"])?;
            let mut w = WaveletSettings::default();
            if let Some(v) = get("wavelet") {
                w.wavelet = v.as_str().ok_or_else(|| bad(&key("wavelet"), "must be a wavelet name"))?.to_string();
                if super::wavelet::filters(&w.wavelet).is_none() {
                    let known: Vec<&str> = super::wavelet::known_wavelets().collect();
                    return Err(bad(&key("wavelet"), &format!("unknown wavelet {:?} (known: {})", w.wavelet, known.join(", "))));
                }
            }
            if let Some(v) = get("start_level") {
                w.start_level = v.as_i64().filter(|l| (0..=8).contains(l)).ok_or_else(|| bad(&key("start_level"), "must be an integer 0–8"))? as u32;
            }
            if let Some(v) = get("level") {
                w.level = v.as_i64().filter(|l| (1..=8).contains(l)).ok_or_else(|| bad(&key("level"), "must be an integer 1–8"))? as u32;
            }
            Ok(ImageType::Wavelet(w))
        }
        "LoG" => {
            allow(&["sigma"])?;
            let v = get("sigma").ok_or_else(|| bad(&key("sigma"), "LoG needs a list of σ values in mm, e.g. sigma: [1.0, 3.0]"))?;
            let list = v.as_vec().ok_or_else(|| bad(&key("sigma"), "must be a list of σ values in mm"))?;
            let sigmas = list
                .iter()
                .map(|x| {
                    // The text PyRadiomics prints (str() of the number) names the image.
                    let (value, text) = match x {
                        Yaml::Integer(i) => (*i as f64, i.to_string()),
                        Yaml::Real(_) => {
                            let f = x.as_f64().unwrap_or(f64::NAN);
                            (f, format!("{f:?}"))
                        }
                        _ => (f64::NAN, String::new()),
                    };
                    if value > 0.0 && value.is_finite() { Ok((value, text)) } else { Err(bad(&key("sigma"), "σ values must be positive numbers (mm)")) }
                })
                .collect::<Result<Vec<_>, _>>()?;
            if sigmas.is_empty() {
                return Err(bad(&key("sigma"), "is empty"));
            }
            Ok(ImageType::LoG(sigmas))
        }
        "Gradient" => {
            allow(&["gradientUseSpacing"])?;
            let use_spacing = match get("gradientUseSpacing") {
                None => true,
                Some(v) => v.as_bool().ok_or_else(|| bad(&key("gradientUseSpacing"), "must be true or false"))?,
            };
            Ok(ImageType::Gradient { use_spacing })
        }
        "LBP2D" => {
            allow(&["lbp2DRadius", "lbp2DSamples", "lbp2DMethod"])?;
            let mut l = Lbp2dSettings::default();
            if let Some(v) = get("lbp2DRadius") {
                let r = number(&key("lbp2DRadius"), v)?;
                if !(r > 0.0 && r <= 50.0) {
                    return Err(bad(&key("lbp2DRadius"), "must be a radius in voxels, 0 < R ≤ 50"));
                }
                l.radius = r as f32;
            }
            if let Some(v) = get("lbp2DSamples") {
                l.samples = v.as_i64().filter(|p| (1..=32).contains(p)).ok_or_else(|| bad(&key("lbp2DSamples"), "must be an integer 1–32"))? as u32;
            }
            if let Some(v) = get("lbp2DMethod") {
                let name = v.as_str().unwrap_or("");
                l.method = match LbpMethod::from_name(name) {
                    Some(m) => m,
                    None if name == "var" => {
                        return Err(SettingsError::Unsupported { key: key("lbp2DMethod"), value: "var (default, ror, uniform and nri_uniform are supported)".into() });
                    }
                    None => return Err(bad(&key("lbp2DMethod"), "must be default, ror, uniform, nri_uniform or var")),
                };
            }
            Ok(ImageType::Lbp2d(l))
        }
        "LBP3D" => {
            allow(&["lbp3DLevels", "lbp3DIcosphereRadius", "lbp3DIcosphereSubdivision"])?;
            let mut l = Lbp3dSettings::default();
            if let Some(v) = get("lbp3DLevels") {
                l.levels = v.as_i64().filter(|n| (1..=10).contains(n)).ok_or_else(|| bad(&key("lbp3DLevels"), "must be an integer 1–10"))? as u32;
            }
            if let Some(v) = get("lbp3DIcosphereRadius") {
                let r = number(&key("lbp3DIcosphereRadius"), v)?;
                if !(r > 0.0 && r <= 50.0) {
                    return Err(bad(&key("lbp3DIcosphereRadius"), "must be a radius in voxels, 0 < R ≤ 50"));
                }
                l.radius = r;
            }
            if let Some(v) = get("lbp3DIcosphereSubdivision") {
                // 4 subdivisions are 2 562 points per voxel; more is beyond any use.
                l.subdivisions = v.as_i64().filter(|n| (0..=4).contains(n)).ok_or_else(|| bad(&key("lbp3DIcosphereSubdivision"), "must be an integer 0–4"))? as u32;
            }
            Ok(ImageType::Lbp3d(l))
        }
        _ => Err(SettingsError::UnknownKey(format!("imageType.{name}"))),
    }
}

fn bad(key: &str, detail: &str) -> SettingsError {
    SettingsError::BadValue { key: key.to_string(), detail: detail.to_string() }
}

fn number(key: &str, v: &Yaml) -> Result<f64, SettingsError> {
    v.as_f64().or_else(|| v.as_i64().map(|i| i as f64)).ok_or_else(|| bad(key, "must be a number"))
}

fn positive(key: &str, v: &Yaml) -> Result<f64, SettingsError> {
    let x = number(key, v)?;
    if x > 0.0 && x.is_finite() { Ok(x) } else { Err(bad(key, "must be a positive number")) }
}

fn uint(key: &str, v: &Yaml) -> Result<u64, SettingsError> {
    v.as_i64().filter(|i| *i >= 1).map(|i| i as u64).ok_or_else(|| bad(key, "must be a positive integer"))
}

fn boolean(key: &str, v: &Yaml) -> Result<bool, SettingsError> {
    v.as_bool().ok_or_else(|| bad(key, "must be true or false"))
}

fn list(key: &str, v: &Yaml) -> Result<Vec<f64>, SettingsError> {
    v.as_vec().ok_or_else(|| bad(key, "must be a list"))?.iter().map(|x| number(key, x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pyradiomics_parameter_file() {
        let s = Settings::from_pyradiomics_yaml(
            "setting:\n  binWidth: 5\n  label: 2\n  normalize: true\n  normalizeScale: 100\n  resegmentRange: [-3, 3]\n  resegmentMode: sigma\n  interpolator: sitkBSpline\n  distances: [1]\nimageType:\n  Original: {}\nfeatureClass:\n  glcm:\n  firstorder: []\n",
        )
        .unwrap();
        assert_eq!(s.label, 2);
        assert_eq!(s.discretisation, Discretisation::PyRadiomicsBinWidth(5.0));
        assert_eq!(s.normalize_scale, Some(100.0));
        assert_eq!(s.resegment, Some((ResegmentMode::Sigma, -3.0, Some(3.0))));
        assert_eq!(s.families, [Family::Glcm, Family::FirstOrder].into_iter().collect());
    }

    #[test]
    fn reads_resampling_as_pyradiomics_writes_it() {
        let s = Settings::from_pyradiomics_yaml("setting:\n  resampledPixelSpacing: [1, 1, 0]\n  interpolator: 'sitkLinear'\n  padDistance: 0\n").unwrap();
        assert_eq!(s.resampled_spacing, Some([1.0, 1.0, 0.0]));
        assert_eq!(s.interpolator, Some(Interpolator::Linear));
        assert_eq!(s.pad_distance, 0);
        let s = Settings::from_pyradiomics_yaml("setting:\n  resampledPixelSpacing: [2, 2, 2]\n  preCrop: true\n").unwrap();
        assert_eq!((s.interpolator, s.pad_distance, s.pre_crop), (Some(Interpolator::BSpline), 5, true));
        let s = Settings::from_pyradiomics_yaml("setting:\n  interpolator: 1\n").unwrap();
        assert_eq!(s.interpolator, Some(Interpolator::NearestNeighbor));
    }

    #[test]
    fn an_empty_parameter_file_is_pyradiomics_defaults_with_its_107_features() {
        for text in ["", "# nothing but a comment\n"] {
            let s = Settings::from_pyradiomics_yaml(text).unwrap();
            assert_eq!(s.naming, FeatureNaming::PyRadiomics);
            assert_eq!(s.pyradiomics_selection.values().map(Vec::len).sum::<usize>(), 107, "{text:?}");
        }
    }

    #[test]
    fn reads_texture_settings() {
        let s = Settings::from_pyradiomics_yaml(
            "setting:\n  distances: [1, 2]\n  symmetricalGLCM: false\n  weightingNorm: manhattan\n  gldm_a: 2\n  voxelArrayShift: 1000\n",
        )
        .unwrap();
        // PyRadiomics' default GLCM features include MCC.
        let expected =
            TextureSettings { distances: vec![1, 2], symmetrical_glcm: false, weighting: Some(WeightingNorm::Manhattan), gldm_alpha: 2, maximal_correlation: true };
        assert_eq!(s.texture, expected);
        assert_eq!(s.voxel_array_shift, 1000.0);
        // Weighted directions are merged: PyRadiomics' "3D, averaged" default becomes "3D, merged".
        assert_eq!(s.aggregations, vec![Aggregation::ThreeDMerged, Aggregation::ThreeD]);
        // force2D is IBSI's 2.5D; force2Ddimension counts axes as numpy does (z, y, x).
        let s = Settings::from_pyradiomics_yaml("setting:\n  force2D: true\n  force2Ddimension: 1\n").unwrap();
        assert_eq!(s.aggregations, vec![Aggregation::TwoPointFiveDDirectionMerged, Aggregation::TwoPointFiveD]);
        assert_eq!(s.slice_axis, 1);
    }

    #[test]
    fn reads_filter_image_types_with_their_options() {
        let s = Settings::from_pyradiomics_yaml("setting:\n  sigma: [1, 2.5]\nimageType:\n  LoG: {}\n  Wavelet: {wavelet: haar, level: 2}\n  Original: {}\n").unwrap();
        assert_eq!(
            s.image_types,
            vec![
                ImageType::ORIGINAL,
                ImageType::Wavelet(WaveletSettings { wavelet: "haar".into(), start_level: 0, level: 2 }),
                ImageType::LoG(vec![(1.0, "1".into()), (2.5, "2.5".into())]),
            ]
        );
        // Options under the image type override `setting`.
        let s = Settings::from_pyradiomics_yaml("setting:\n  sigma: [1.0]\nimageType:\n  LoG: {sigma: [3.0]}\n").unwrap();
        assert_eq!(s.image_types, vec![ImageType::LoG(vec![(3.0, "3.0".into())])]);
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, needle) in [
            ("setting:\n  binWidht: 5\n", "setting.binWidht"),
            ("setting:\n  binWidth: -5\n", "binWidth"),
            ("setting:\n  binWidth: 5\n  binCount: 16\n", "binCount"),
            ("setting:\n  resampledPixelSpacing: [1, 1]\n", "resampledPixelSpacing"),
            ("setting:\n  resampledPixelSpacing: [1, -1, 1]\n", "resampledPixelSpacing"),
            ("setting:\n  interpolator: sitkLanczosWindowedSinc\n", "setting.interpolator"),
            ("setting:\n  interpolator: sitkCubic\n", "interpolator"),
            ("setting:\n  padDistance: -1\n", "padDistance"),
            ("setting:\n  distances: [0]\n", "distances"),
            ("setting:\n  weightingNorm: l2\n", "weightingNorm"),
            ("setting:\n  featureNaming: ibsi\n  weightingNorm: euclidean\n  ibsiAggregation: [\"3D, averaged\"]\n", "weightingNorm"),
            ("setting:\n  featureNaming: IBSI\n", "featureNaming"),
            ("setting:\n  correctMask: true\n", "setting.correctMask"),
            ("setting:\n  ibsiResampledPixelSpacing: [2, 2]\n", "ibsiResampledPixelSpacing"),
            ("setting:\n  ibsiResampledPixelSpacing: [2, 2, 2]\n  resampledPixelSpacing: [1, 1, 1]\n", "not both"),
            ("setting:\n  ibsiInterpolator: cubic\n", "ibsiInterpolator"),
            ("setting:\n  ibsiMaskThreshold: 2\n", "ibsiMaskThreshold"),
            ("setting:\n  ivhDiscretisation: fixedBinSize\n", "ivhBinSize"),
            ("setting:\n  ivhDiscretisation: fixedBinNumber\n", "ivhBinNumber"),
            ("setting:\n  ibsiOutlierSigma: -3\n", "ibsiOutlierSigma"),
            ("featureClass:\n  glcm: 3\n", "featureClass.glcm"),
            ("setting:\n  gldm_a: 0.5\n", "gldm_a"),
            ("setting:\n  force2D: 1\n", "force2D"),
            ("setting:\n  force2Ddimension: 3\n", "force2Ddimension"),
            ("imageType:\n  LBP3D: {lbp3DLevels: 0}\n", "imageType.LBP3D.lbp3DLevels"),
            ("imageType:\n  LBP3D: {lbp3DIcosphereSubdivision: 9}\n", "imageType.LBP3D.lbp3DIcosphereSubdivision"),
            ("imageType:\n  LBP2D: {lbp2DMethod: var}\n", "imageType.LBP2D.lbp2DMethod"),
            ("imageType:\n  LBP2D: {lbp2DSamples: 0}\n", "imageType.LBP2D.lbp2DSamples"),
            ("imageType:\n  Gradient: {gradientUseSpacing: 1}\n", "imageType.Gradient.gradientUseSpacing"),
            ("imageType:\n  LoG: {}\n", "imageType.LoG.sigma"),
            ("imageType:\n  LoG: {sigma: [0, 1]}\n", "imageType.LoG.sigma"),
            ("imageType:\n  Wavelet: {wavelet: coif99}\n", "imageType.Wavelet.wavelet"),
            ("imageType:\n  Wavelet: {levle: 2}\n", "imageType.Wavelet.levle"),
            ("imageType:\n  Square: {sigma: [1]}\n", "imageType.Square.sigma"),
            ("featureClass:\n  glcmm:\n", "featureClass.glcmm"),
            ("setting:\n  resegmentMode: fuzzy\n", "resegmentMode"),
            ("colour: blue\n", "colour"),
            ("setting: [1\n", "YAML"),
        ] {
            let e = Settings::from_pyradiomics_yaml(yaml).unwrap_err().to_string();
            assert!(e.contains(needle), "{yaml:?}: {e}");
        }
    }
}
