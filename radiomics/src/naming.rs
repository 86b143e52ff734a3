//! PyRadiomics' feature names and feature set, beside FedRad's IBSI names.
//!
//! FedRad computes every feature under its IBSI name (`glcm_JointMaximum`), with the IBSI
//! aggregation as a column suffix (`_3D_avg`). A lab with a PyRadiomics pipeline expects
//! PyRadiomics' columns instead (`original_glcm_MaximumProbability`), exactly the set
//! PyRadiomics' `execute` returns, with no suffix (PyRadiomics computes one aggregation per
//! class). A parameter file therefore names features as PyRadiomics does unless it says
//! `featureNaming: ibsi` under `setting`; FedRad's study default keeps the IBSI names.
//!
//! [`PYRADIOMICS_FEATURES`] is the one table between the two: every feature of PyRadiomics'
//! seven classes, FedRad's name for it, and whether PyRadiomics computes it by default, only
//! when listed (deprecated but still computed) or not at all (deprecated, raising). The
//! values agree because the definitions are PyRadiomics' own where they differ from the
//! IBSI's (e.g. `Kurtosis` is PyRadiomics' excess + 3, `MajorAxisLength` its population
//! covariance); two features exist only for PyRadiomics and are computed only under its
//! naming: GLCM `MCC` and the shape `Maximum2DDiameterSlice/Column/Row`.

use std::collections::BTreeMap;

use super::settings::Family;
use super::{Feature, FeatureNaming};

/// Whether PyRadiomics computes a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Enabled when its class is enabled with no feature list.
    Default,
    /// Deprecated: computed only when a parameter file lists it.
    Deprecated,
    /// Deprecated and no longer computed by PyRadiomics (its getter raises); the text says
    /// what replaced it.
    Withdrawn(&'static str),
}

/// One PyRadiomics feature: its class, PyRadiomics' name, FedRad's name in that family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PyRadiomicsFeature {
    pub class: Family,
    pub name: &'static str,
    pub fedrad: &'static str,
    pub availability: Availability,
}

const fn f(class: Family, name: &'static str, fedrad: &'static str, availability: Availability) -> PyRadiomicsFeature {
    PyRadiomicsFeature { class, name, fedrad, availability }
}

use Availability::{Default as D, Deprecated as Dep, Withdrawn as W};
use Family::{FirstOrder as FO, Glcm as CM, Gldm as DM, Glrlm as RL, Glszm as SZ, Ngtdm as TD, Shape as SH, Shape2D as S2};

/// Every feature of PyRadiomics 3.1's classes (`radiomics/<class>.py`), in PyRadiomics'
/// order within a class (its `get<Name>FeatureValue` methods in Python's string order).
/// Classes come in FedRad's computing order, not the parameter file's; names and values are
/// what a PyRadiomics pipeline keys on.
pub const PYRADIOMICS_FEATURES: &[PyRadiomicsFeature] = &[
    f(SH, "Compactness1", "Compactness1", Dep),
    f(SH, "Compactness2", "Compactness2", Dep),
    f(SH, "Elongation", "Elongation", D),
    f(SH, "Flatness", "Flatness", D),
    f(SH, "LeastAxisLength", "LeastAxisLength", D),
    f(SH, "MajorAxisLength", "MajorAxisLength", D),
    f(SH, "Maximum2DDiameterColumn", "Maximum2DDiameterColumn", D),
    f(SH, "Maximum2DDiameterRow", "Maximum2DDiameterRow", D),
    f(SH, "Maximum2DDiameterSlice", "Maximum2DDiameterSlice", D),
    f(SH, "Maximum3DDiameter", "Maximum3DDiameter", D),
    f(SH, "MeshVolume", "VolumeMesh", D),
    f(SH, "MinorAxisLength", "MinorAxisLength", D),
    f(SH, "SphericalDisproportion", "SphericalDisproportion", Dep),
    f(SH, "Sphericity", "Sphericity", D),
    f(SH, "SurfaceArea", "SurfaceArea", D),
    f(SH, "SurfaceVolumeRatio", "SurfaceToVolumeRatio", D),
    f(SH, "VoxelVolume", "VolumeVoxelCounting", D),
    f(S2, "Elongation", "Elongation", D),
    f(S2, "MajorAxisLength", "MajorAxisLength", D),
    f(S2, "MaximumDiameter", "MaximumDiameter", D),
    f(S2, "MeshSurface", "MeshSurface", D),
    f(S2, "MinorAxisLength", "MinorAxisLength", D),
    f(S2, "Perimeter", "Perimeter", D),
    f(S2, "PerimeterSurfaceRatio", "PerimeterSurfaceRatio", D),
    f(S2, "PixelSurface", "PixelSurface", D),
    f(S2, "SphericalDisproportion", "SphericalDisproportion", Dep),
    f(S2, "Sphericity", "Sphericity", D),
    f(FO, "10Percentile", "Percentile10", D),
    f(FO, "90Percentile", "Percentile90", D),
    f(FO, "Energy", "Energy", D),
    f(FO, "Entropy", "Entropy", D),
    f(FO, "InterquartileRange", "InterquartileRange", D),
    f(FO, "Kurtosis", "Kurtosis", D),
    f(FO, "Maximum", "Maximum", D),
    f(FO, "MeanAbsoluteDeviation", "MeanAbsoluteDeviation", D),
    f(FO, "Mean", "Mean", D),
    f(FO, "Median", "Median", D),
    f(FO, "Minimum", "Minimum", D),
    f(FO, "Range", "Range", D),
    f(FO, "RobustMeanAbsoluteDeviation", "RobustMeanAbsoluteDeviation", D),
    f(FO, "RootMeanSquared", "RootMeanSquare", D),
    f(FO, "Skewness", "Skewness", D),
    f(FO, "StandardDeviation", "StandardDeviation", Dep),
    f(FO, "TotalEnergy", "TotalEnergy", D),
    f(FO, "Uniformity", "Uniformity", D),
    f(FO, "Variance", "Variance", D),
    f(CM, "Autocorrelation", "Autocorrelation", D),
    f(CM, "ClusterProminence", "ClusterProminence", D),
    f(CM, "ClusterShade", "ClusterShade", D),
    f(CM, "ClusterTendency", "ClusterTendency", D),
    f(CM, "Contrast", "Contrast", D),
    f(CM, "Correlation", "Correlation", D),
    f(CM, "DifferenceAverage", "DifferenceAverage", D),
    f(CM, "DifferenceEntropy", "DifferenceEntropy", D),
    f(CM, "DifferenceVariance", "DifferenceVariance", D),
    f(CM, "Dissimilarity", "Dissimilarity", W("DifferenceAverage")),
    f(CM, "Homogeneity1", "InverseDifference", W("Id")),
    f(CM, "Homogeneity2", "InverseDifferenceMoment", W("Idm")),
    f(CM, "Id", "InverseDifference", D),
    f(CM, "Idm", "InverseDifferenceMoment", D),
    f(CM, "Idmn", "NormalisedInverseDifferenceMoment", D),
    f(CM, "Idn", "NormalisedInverseDifference", D),
    f(CM, "Imc1", "InformationCorrelation1", D),
    f(CM, "Imc2", "InformationCorrelation2", D),
    f(CM, "InverseVariance", "InverseVariance", D),
    f(CM, "JointAverage", "JointAverage", D),
    f(CM, "JointEnergy", "AngularSecondMoment", D),
    f(CM, "JointEntropy", "JointEntropy", D),
    f(CM, "MCC", "MaximalCorrelationCoefficient", D),
    f(CM, "MaximumProbability", "JointMaximum", D),
    f(CM, "SumAverage", "SumAverage", D),
    f(CM, "SumEntropy", "SumEntropy", D),
    f(CM, "SumSquares", "JointVariance", D),
    f(CM, "SumVariance", "SumVariance", W("ClusterTendency")),
    f(RL, "GrayLevelNonUniformity", "GreyLevelNonUniformity", D),
    f(RL, "GrayLevelNonUniformityNormalized", "NormalisedGreyLevelNonUniformity", D),
    f(RL, "GrayLevelVariance", "GreyLevelVariance", D),
    f(RL, "HighGrayLevelRunEmphasis", "HighGreyLevelRunEmphasis", D),
    f(RL, "LongRunEmphasis", "LongRunsEmphasis", D),
    f(RL, "LongRunHighGrayLevelEmphasis", "LongRunHighGreyLevelEmphasis", D),
    f(RL, "LongRunLowGrayLevelEmphasis", "LongRunLowGreyLevelEmphasis", D),
    f(RL, "LowGrayLevelRunEmphasis", "LowGreyLevelRunEmphasis", D),
    f(RL, "RunEntropy", "RunEntropy", D),
    f(RL, "RunLengthNonUniformity", "RunLengthNonUniformity", D),
    f(RL, "RunLengthNonUniformityNormalized", "NormalisedRunLengthNonUniformity", D),
    f(RL, "RunPercentage", "RunPercentage", D),
    f(RL, "RunVariance", "RunLengthVariance", D),
    f(RL, "ShortRunEmphasis", "ShortRunsEmphasis", D),
    f(RL, "ShortRunHighGrayLevelEmphasis", "ShortRunHighGreyLevelEmphasis", D),
    f(RL, "ShortRunLowGrayLevelEmphasis", "ShortRunLowGreyLevelEmphasis", D),
    f(SZ, "GrayLevelNonUniformity", "GreyLevelNonUniformity", D),
    f(SZ, "GrayLevelNonUniformityNormalized", "NormalisedGreyLevelNonUniformity", D),
    f(SZ, "GrayLevelVariance", "GreyLevelVariance", D),
    f(SZ, "HighGrayLevelZoneEmphasis", "HighGreyLevelZoneEmphasis", D),
    f(SZ, "LargeAreaEmphasis", "LargeZoneEmphasis", D),
    f(SZ, "LargeAreaHighGrayLevelEmphasis", "LargeZoneHighGreyLevelEmphasis", D),
    f(SZ, "LargeAreaLowGrayLevelEmphasis", "LargeZoneLowGreyLevelEmphasis", D),
    f(SZ, "LowGrayLevelZoneEmphasis", "LowGreyLevelZoneEmphasis", D),
    f(SZ, "SizeZoneNonUniformity", "ZoneSizeNonUniformity", D),
    f(SZ, "SizeZoneNonUniformityNormalized", "NormalisedZoneSizeNonUniformity", D),
    f(SZ, "SmallAreaEmphasis", "SmallZoneEmphasis", D),
    f(SZ, "SmallAreaHighGrayLevelEmphasis", "SmallZoneHighGreyLevelEmphasis", D),
    f(SZ, "SmallAreaLowGrayLevelEmphasis", "SmallZoneLowGreyLevelEmphasis", D),
    f(SZ, "ZoneEntropy", "ZoneSizeEntropy", D),
    f(SZ, "ZonePercentage", "ZonePercentage", D),
    f(SZ, "ZoneVariance", "ZoneSizeVariance", D),
    f(DM, "DependenceEntropy", "DependenceCountEntropy", D),
    f(DM, "DependenceNonUniformity", "DependenceCountNonUniformity", D),
    f(DM, "DependenceNonUniformityNormalized", "NormalisedDependenceCountNonUniformity", D),
    f(DM, "DependencePercentage", "DependenceCountPercentage", W("nothing: it is 1 by definition")),
    f(DM, "DependenceVariance", "DependenceCountVariance", D),
    f(DM, "GrayLevelNonUniformity", "GreyLevelNonUniformity", D),
    f(DM, "GrayLevelNonUniformityNormalized", "NormalisedGreyLevelNonUniformity", W("firstorder Uniformity, which equals it")),
    f(DM, "GrayLevelVariance", "GreyLevelVariance", D),
    f(DM, "HighGrayLevelEmphasis", "HighGreyLevelCountEmphasis", D),
    f(DM, "LargeDependenceEmphasis", "HighDependenceEmphasis", D),
    f(DM, "LargeDependenceHighGrayLevelEmphasis", "HighDependenceHighGreyLevelEmphasis", D),
    f(DM, "LargeDependenceLowGrayLevelEmphasis", "HighDependenceLowGreyLevelEmphasis", D),
    f(DM, "LowGrayLevelEmphasis", "LowGreyLevelCountEmphasis", D),
    f(DM, "SmallDependenceEmphasis", "LowDependenceEmphasis", D),
    f(DM, "SmallDependenceHighGrayLevelEmphasis", "LowDependenceHighGreyLevelEmphasis", D),
    f(DM, "SmallDependenceLowGrayLevelEmphasis", "LowDependenceLowGreyLevelEmphasis", D),
    f(TD, "Busyness", "Busyness", D),
    f(TD, "Coarseness", "Coarseness", D),
    f(TD, "Complexity", "Complexity", D),
    f(TD, "Contrast", "Contrast", D),
    f(TD, "Strength", "Strength", D),
];

/// The PyRadiomics classes: the families a parameter file may enable under PyRadiomics naming.
pub const PYRADIOMICS_CLASSES: [Family; 8] = [SH, S2, FO, CM, RL, SZ, DM, TD];

/// Why a PyRadiomics feature list cannot be honoured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NamingError {
    #[error("PyRadiomics' class {class} has no feature {name:?} (it has: {known})")]
    Unknown { class: &'static str, name: String, known: String },
    #[error("{class} {name} is deprecated and no longer computed by PyRadiomics; use {replacement}")]
    Withdrawn { class: &'static str, name: String, replacement: &'static str },
    #[error("the class {0} exists only under IBSI naming: add `featureNaming: ibsi` under `setting`")]
    IbsiOnlyClass(&'static str),
}

/// The PyRadiomics features of `class` a parameter file asks for: all non-deprecated ones
/// when `listed` is empty, else the listed ones in the listed order (deprecated ones that
/// PyRadiomics still computes included).
pub fn select(class: Family, listed: &[String]) -> Result<Vec<&'static PyRadiomicsFeature>, NamingError> {
    if !PYRADIOMICS_CLASSES.contains(&class) {
        return Err(NamingError::IbsiOnlyClass(class.key()));
    }
    let of_class = || PYRADIOMICS_FEATURES.iter().filter(move |p| p.class == class);
    if listed.is_empty() {
        return Ok(of_class().filter(|p| p.availability == Availability::Default).collect());
    }
    listed
        .iter()
        .map(|name| {
            let p = of_class().find(|p| p.name == name).ok_or_else(|| NamingError::Unknown {
                class: class.key(),
                name: name.clone(),
                known: of_class().filter(|p| !matches!(p.availability, Availability::Withdrawn(_))).map(|p| p.name).collect::<Vec<_>>().join(", "),
            })?;
            match p.availability {
                Availability::Withdrawn(replacement) => Err(NamingError::Withdrawn { class: class.key(), name: name.clone(), replacement }),
                _ => Ok(p),
            }
        })
        .collect()
}

/// FedRad's features renamed to PyRadiomics' and narrowed to `selection` (per class, from
/// [`select`]), in PyRadiomics' order: per image type, classes in the order FedRad computes
/// them, features in the selection's order. Column names carry no aggregation suffix; the
/// `aggregation` and `ibsi_code` columns stay.
pub fn to_pyradiomics(features: Vec<Feature>, selection: &BTreeMap<Family, Vec<&'static PyRadiomicsFeature>>) -> Vec<Feature> {
    // Index FedRad's features by (image type prefix, family key, FedRad name).
    let mut by_name: BTreeMap<(String, String, String), Feature> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for feature in features {
        let mut parts = feature.name.splitn(3, '_');
        let (Some(prefix), Some(family), Some(name)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let key = (prefix.to_string(), family.to_string());
        if !order.contains(&key) {
            order.push(key.clone());
        }
        by_name.insert((key.0, key.1, name.to_string()), feature);
    }
    let mut out = Vec::new();
    for (prefix, family) in order {
        let Some(class) = Family::from_key(&family) else { continue };
        for p in selection.get(&class).into_iter().flatten() {
            if let Some(mut f) = by_name.remove(&(prefix.clone(), family.clone(), p.fedrad.to_string())) {
                f.name = format!("{prefix}_{family}_{}", p.name);
                f.naming = FeatureNaming::PyRadiomics;
                out.push(f);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyradiomics_default_feature_set_has_its_107_features() {
        let counts: Vec<usize> = [SH, FO, CM, RL, SZ, DM, TD].iter().map(|c| select(*c, &[]).unwrap().len()).collect();
        assert_eq!(counts, [14, 18, 24, 16, 16, 14, 5]);
        assert_eq!(counts.iter().sum::<usize>(), 107);
        assert_eq!(select(S2, &[]).unwrap().len(), 9);
    }

    #[test]
    fn names_are_unique_within_a_class_and_listed_in_pyradiomics_order() {
        for class in PYRADIOMICS_CLASSES {
            let names: Vec<&str> = PYRADIOMICS_FEATURES.iter().filter(|p| p.class == class).map(|p| p.name).collect();
            // PyRadiomics sorts its `get<Name>FeatureValue` methods: `MeanAbsoluteDeviation`
            // comes before `Mean`.
            let mut sorted = names.clone();
            sorted.sort_by_key(|n| format!("{n}FeatureValue"));
            assert_eq!(names, sorted, "{}", class.key());
        }
    }

    #[test]
    fn lists_name_deprecated_features_and_refuse_withdrawn_or_unknown_ones() {
        let listed = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let picked = select(FO, &listed(&["StandardDeviation", "Mean"])).unwrap();
        assert_eq!(picked.iter().map(|p| p.name).collect::<Vec<_>>(), ["StandardDeviation", "Mean"]);
        let e = select(CM, &listed(&["SumVariance"])).unwrap_err();
        assert!(e.to_string().contains("ClusterTendency"), "{e}");
        let e = select(CM, &listed(&["JointMaximum"])).unwrap_err();
        assert!(e.to_string().contains("MaximumProbability"), "names what exists: {e}");
        assert_eq!(select(Family::Gldzm, &[]).unwrap_err(), NamingError::IbsiOnlyClass("gldzm"));
    }
}
