//! The IBSI lung CT phantom (PAT1, GTV-1) through the whole pipeline — DICOM series and RT
//! structure set as a hospital exports them, a parameter file, `extract_files` — against the
//! IBSI's reference values for its five processing configurations: every value of each
//! (A and B 346, C 209 — one of its 210 has no consensus value —, D and E 210).
//!
//!     cargo test -p fedrad-radiomics --test ibsi_ct_configurations -- --nocapture
//!
//! | | A | B | C | D | E |
//! |---|---|---|---|---|---|
//! | interpolation (IBSI grid) | none | 2 × 2 mm in-plane, linear | 2 mm, linear | 2 mm, linear | 2 mm, cubic spline |
//! | re-segmentation | [−500, 400] | [−500, 400] | [−1000, 400] | 3σ | [−1000, 400] and 3σ |
//! | discretisation | 25 HU from −500 | 32 bins | 25 HU from −1000 | 32 bins | 32 bins |
//! | IVH | HU | HU | 2.5 HU bins | HU | 1000 bins |
//! | texture | 2D, 2.5D | 2D, 2.5D | 3D | 3D | 3D |
//!
//! Interpolated HU are rounded to integers and the mask interpolated linearly with a
//! partial-volume threshold of 0.5 (see `fedrad_radiomics::ibsi_interpolation`); GLDZM distances
//! run to the morphological mask's edge.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fedrad_radiomics::Feature;
use fedrad_radiomics::extract::extract_files;
use fedrad_radiomics::settings::Settings;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../imaging/tests/data/ibsi-ct")
}

/// The IBSI's comparison: round to 3 significant digits, then within the tolerance.
fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// (rows of `config`, the ones `features` misses, each described).
fn compare(features: &[Feature], config: &str) -> (usize, Vec<String>) {
    let mut reader = csv::Reader::from_path(data().join("ibsi1_reference_values_ct_phantom.csv")).unwrap();
    let (mut rows, mut missed) = (0, Vec::new());
    for row in reader.deserialize::<HashMap<String, String>>() {
        let row = row.unwrap();
        if row["data"] != format!("config. {config}") || row["value"].is_empty() {
            continue;
        }
        rows += 1;
        let (code, agg) = (&row["ibsi_code"], &row["aggregation"]);
        let expected: f64 = row["value"].parse().unwrap();
        let tolerance: f64 = row["tolerance"].parse().unwrap();
        // The IVH's V10/V90 and I10/I90 share a code; the `feature` column tells them apart.
        let matching: Vec<&Feature> = features.iter().filter(|f| f.ibsi_code == code && f.aggregation.map_or("", |a| a.ibsi_label()) == agg).collect();
        let which = ["V10", "V90", "I10", "I90"].iter().find(|k| row["feature"].contains(&format!("({k})")));
        let found = match which {
            Some(k) => matching.iter().find(|f| f.name.ends_with(&format!("_{k}"))).copied(),
            None => matching.first().copied(),
        };
        match found {
            Some(f) if (round_sig(f.value, 3) - expected).abs() <= tolerance + 1e-12 * expected.abs() => {}
            Some(f) => missed.push(format!("{} {code} [{agg}]: {} vs {expected} ± {tolerance}", row["feature"], f.value)),
            None => missed.push(format!("{} {code} [{agg}]: not computed", row["feature"])),
        }
    }
    (rows, missed)
}

/// Every IBSI family, as the configurations' parameter files enable them.
const FAMILIES: &str = "featureClass:\n  shape:\n  localintensity:\n  firstorder:\n  histogram:\n  ivh:\n  glcm:\n  glrlm:\n  glszm:\n  gldzm:\n  ngtdm:\n  gldm:\n";

/// The features of the phantom (DICOM + RTSTRUCT) under a `setting:` block.
fn phantom_features(setting: &str) -> Vec<Feature> {
    let settings = Settings::from_pyradiomics_yaml(&format!("{setting}{FAMILIES}")).unwrap_or_else(|e| panic!("{e}\n{setting}"));
    let dir = data();
    extract_files(&dir.join("dicom/image"), &dir.join("dicom/mask/DCM_RS_00060.dcm"), Some("GTV-1"), &settings).unwrap()
}

fn report(config: &str, features: &[Feature]) -> (usize, Vec<String>) {
    let (rows, missed) = compare(features, config);
    println!("configuration {config}: {} of {rows} reference values met", rows - missed.len());
    for m in &missed {
        println!("  {m}");
    }
    (rows, missed)
}

/// B: in-plane bilinear interpolation to 2 × 2 mm, HU rounded, mask threshold 0.5; [−500, 400]
/// HU; fixed bin number 32; texture 2D and 2.5D; IVH on the HU.
#[test]
fn configuration_b_from_dicom() {
    let features = phantom_features(
        "setting:\n  featureNaming: ibsi\n  ibsiResampledPixelSpacing: [2, 2, 0]\n  ibsiRoundIntensities: true\n  ibsiMaskThreshold: 0.5\n  resegmentRange: [-500, 400]\n  ibsiDiscretisation: fixedBinNumber\n  binCount: 32\n  ivhDiscretisation: none\n  ibsiAggregation: [\"2D, averaged\", \"2D, slice-merged\", \"2.5D, direction-merged\", \"2.5D, merged\", \"2D\", \"2.5D\"]\n",
    );
    let (rows, missed) = report("B", &features);
    assert_eq!(rows, 346);
    assert!(missed.is_empty(), "{} missed", missed.len());
}

/// C: trilinear interpolation to 2 mm, HU rounded, mask threshold 0.5; [−1000, 400] HU; fixed
/// bin size 25 HU; texture 3D; IVH in bins of 2.5 HU.
#[test]
fn configuration_c_from_dicom() {
    let features = phantom_features(
        "setting:\n  featureNaming: ibsi\n  ibsiResampledPixelSpacing: [2, 2, 2]\n  ibsiRoundIntensities: true\n  resegmentRange: [-1000, 400]\n  ibsiDiscretisation: fixedBinSize\n  binWidth: 25\n  ibsiBinLowerBound: -1000\n  ivhDiscretisation: fixedBinSize\n  ivhBinSize: 2.5\n  ibsiAggregation: [\"3D, averaged\", \"3D, merged\", \"3D\"]\n",
    );
    let (rows, missed) = report("C", &features);
    // 210 features, one without a consensus value.
    assert_eq!(rows, 209);
    assert!(missed.is_empty(), "{} missed", missed.len());
}

/// D: trilinear interpolation to 2 mm, HU rounded, mask threshold 0.5; outliers beyond 3σ
/// removed (no range); fixed bin number 32; texture 3D; IVH on the HU.
#[test]
fn configuration_d_from_dicom() {
    let features = phantom_features(
        "setting:\n  featureNaming: ibsi\n  ibsiResampledPixelSpacing: [2, 2, 2]\n  ibsiRoundIntensities: true\n  ibsiOutlierSigma: 3\n  ibsiDiscretisation: fixedBinNumber\n  binCount: 32\n  ivhDiscretisation: none\n  ibsiAggregation: [\"3D, averaged\", \"3D, merged\", \"3D\"]\n",
    );
    let (rows, missed) = report("D", &features);
    assert_eq!(rows, 210);
    assert!(missed.is_empty(), "{} missed", missed.len());
}

/// E: tricubic spline interpolation to 2 mm (the mask trilinear), HU rounded, threshold 0.5;
/// [−1000, 400] HU and outliers beyond 3σ; fixed bin number 32; texture 3D; IVH in 1000 bins.
#[test]
fn configuration_e_from_dicom() {
    let features = phantom_features(
        "setting:\n  featureNaming: ibsi\n  ibsiResampledPixelSpacing: [2, 2, 2]\n  ibsiInterpolator: cubicSpline\n  ibsiRoundIntensities: true\n  resegmentRange: [-1000, 400]\n  ibsiOutlierSigma: 3\n  ibsiDiscretisation: fixedBinNumber\n  binCount: 32\n  ivhDiscretisation: fixedBinNumber\n  ivhBinNumber: 1000\n  ibsiAggregation: [\"3D, averaged\", \"3D, merged\", \"3D\"]\n",
    );
    let (rows, missed) = report("E", &features);
    assert_eq!(rows, 210);
    assert!(missed.is_empty(), "{} missed", missed.len());
}

#[test]
fn configuration_a_every_reference_value_from_dicom() {
    let features = phantom_features(
        "setting:\n  featureNaming: ibsi\n  resegmentRange: [-500, 400]\n  ibsiDiscretisation: fixedBinSize\n  binWidth: 25\n  ibsiBinLowerBound: -500\n  ivhDiscretisation: none\n  ibsiAggregation: [\"2D, averaged\", \"2D, slice-merged\", \"2.5D, direction-merged\", \"2.5D, merged\", \"2D\", \"2.5D\"]\n",
    );
    let (rows, missed) = report("A", &features);
    assert_eq!(rows, 346);
    assert!(missed.is_empty(), "{} missed", missed.len());
}
