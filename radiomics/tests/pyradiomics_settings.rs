//! PyRadiomics settings beyond the defaults, against PyRadiomics itself: resampling
//! (`resampledPixelSpacing`, `interpolator`, `padDistance`) and the texture settings
//! (`distances`, `symmetricalGLCM`, `weightingNorm`, `gldm_a`, `voxelArrayShift`) and
//! `force2D` with `force2Ddimension`, the LBP2D and LBP3D image types, the shape2D class, and
//! the shape class's mesh volume and surface area, diameter and PyRadiomics-defined axis
//! lengths, elongation and flatness (every setting also checks them, on the resampled mask
//! where there is one).
//!
//! `tests/data/pyradiomics_settings/` holds an int16 volume and its mask written by
//! SimpleITK, and the features PyRadiomics 3.1.4 computed on them under each setting
//! (`scripts/make_pyradiomics_settings_fixture.py`). Integer images are where resampling is
//! delicate: ITK truncates interpolated values back to int16, so a voxel that interpolates to
//! an exact integer must land on the same side as ITK's arithmetic or a feature moves.

use std::path::Path;

use fedrad_radiomics::extract::extract_files;
use fedrad_radiomics::settings::Settings;

#[test]
fn features_match_pyradiomics_under_each_setting() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pyradiomics_settings");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let configs = reference["configs"].as_object().unwrap();
    assert_eq!(configs.len(), 12);
    let mut report = Vec::new();
    let mut worst: f64 = 0.0;
    for (name, config) in configs {
        // The aggregations follow from the settings as in a plain PyRadiomics file (weighted
        // directions are merged, force2D is 2.5D). The fixture names features as FedRad's IBSI
        // output does (`tests/pyradiomics_baseline.rs` checks PyRadiomics' names).
        let mut yaml = String::from("setting:\n  featureNaming: ibsi\n");
        for (key, value) in config["setting"].as_object().unwrap() {
            yaml.push_str(&format!("  {key}: {value}\n"));
        }
        yaml.push_str("imageType:\n");
        for t in config["imageType"].as_array().unwrap() {
            yaml.push_str(&format!("  {}: {{}}\n", t.as_str().unwrap()));
        }
        yaml.push_str("featureClass:\n");
        for class in config["classes"].as_array().unwrap() {
            yaml.push_str(&format!("  {}:\n", class.as_str().unwrap()));
        }
        let settings = Settings::from_pyradiomics_yaml(&yaml).unwrap_or_else(|e| panic!("{name}: {e}\n{yaml}"));
        let ours = extract_files(&dir.join("image.nii.gz"), &dir.join(config["mask"].as_str().unwrap()), None, &settings).unwrap();
        for (column, expected) in config["features"].as_object().unwrap() {
            let expected = expected.as_f64().unwrap();
            let got = ours.iter().find(|f| f.column() == *column).unwrap_or_else(|| panic!("{name}: no {column}")).value;
            let rel = (got - expected).abs() / expected.abs().max(1e-12);
            worst = worst.max(rel);
            report.push(format!("{name:<20} {column:<40} {expected:>16.9e} {got:>16.9e} {rel:.1e}"));
        }
    }
    println!("{}", report.join("\n"));
    assert!(worst <= 1e-9, "largest relative difference {worst:e}:\n{}", report.join("\n"));
}

/// With `preCrop`, filters see only the ROI's box plus `padDistance` voxels, as in
/// PyRadiomics: a LoG filter near the crop edge then sees the edge, so values change.
#[test]
fn pre_crop_limits_what_the_filters_see() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pyradiomics_settings");
    let run = |extra: &str| {
        let s = Settings::from_pyradiomics_yaml(&format!(
            "setting:\n  padDistance: 1\n{extra}imageType:\n  Original: {{}}\n  LoG: {{sigma: [2.0]}}\nfeatureClass:\n  firstorder:\n"
        ))
        .unwrap();
        extract_files(&dir.join("image.nii.gz"), &dir.join("mask.nii.gz"), None, &s).unwrap()
    };
    let (whole, cropped) = (run(""), run("  preCrop: true\n"));
    let value = |f: &[fedrad_radiomics::Feature], n: &str| f.iter().find(|f| f.name == n).unwrap().value;
    assert_eq!(value(&whole, "original_firstorder_Mean"), value(&cropped, "original_firstorder_Mean"));
    assert_ne!(value(&whole, "log-sigma-2-0-mm-3D_firstorder_Mean"), value(&cropped, "log-sigma-2-0-mm-3D_firstorder_Mean"));
}
