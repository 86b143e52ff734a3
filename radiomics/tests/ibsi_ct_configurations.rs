//! The IBSI lung CT phantom (PAT1, GTV-1) through the whole pipeline — DICOM series and RT
//! structure set as a hospital exports them, a parameter file, `extract_files` — against the
//! IBSI's reference values for its processing configurations.
//!
//!     cargo test -p fedrad-radiomics --test ibsi_ct_configurations -- --nocapture
//!
//! Configuration A (no interpolation; re-segmentation to [−500, 400] HU; fixed bin size 25 HU
//! from −500; texture per slice, 2D and 2.5D; the IVH on the integer HU themselves, over the
//! re-segmentation range; GLDZM distances to the morphological mask's edge, per slice):
//! every one of its 346 reference values. Configurations B–E interpolate onto the IBSI's grid,
//! which FedRad does not have yet (it resamples as PyRadiomics does): issue 19.

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

#[test]
fn configuration_a_every_reference_value_from_dicom() {
    let params = r#"
setting:
  featureNaming: ibsi
  resegmentRange: [-500, 400]
  ibsiDiscretisation: fixedBinSize
  binWidth: 25
  ibsiBinLowerBound: -500
  ivhDiscretisation: none
  ibsiAggregation: ["2D, averaged", "2D, slice-merged", "2.5D, direction-merged", "2.5D, merged", "2D", "2.5D"]
featureClass:
  shape:
  localintensity:
  firstorder:
  histogram:
  ivh:
  glcm:
  glrlm:
  glszm:
  gldzm:
  ngtdm:
  gldm:
"#;
    let settings = Settings::from_pyradiomics_yaml(params).unwrap();
    let dir = data();
    let features = extract_files(&dir.join("dicom/image"), &dir.join("dicom/mask/DCM_RS_00060.dcm"), Some("GTV-1"), &settings).unwrap();
    let (rows, missed) = compare(&features, "A");
    println!("configuration A: {} of {rows} reference values met", rows - missed.len());
    assert_eq!(rows, 346);
    assert!(missed.is_empty(), "{} missed:\n{}", missed.len(), missed.join("\n"));
}
