//! IBSI configuration A on the lung CT phantom, from the DICOM series and RT structure set as a
//! hospital exports them and from the IBSI's own NIfTI conversion: the same features, so the
//! same reference values pass (or fail) from both inputs.
//!
//!     cargo test -p fedrad-radiomics --test ibsi_ct_dicom -- --nocapture   # prints the counts
//!
//! Configuration A: no interpolation, re-segmentation to [−500, 400] HU, fixed bin size 25 HU
//! from −500, texture per slice (2D). This test checks the input path — the DICOM input must
//! not move a single value — on the IBSI families' entry point, whose IVH takes the grey
//! levels (so its six IVH rows miss here); `ibsi_ct_configurations` runs configuration A
//! through the parameter file and the whole pipeline and meets all 346.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fedrad_imaging::dicom::{read_rtstruct_mask, read_series};
use fedrad_imaging::{Volume, nifti};
use fedrad_radiomics::discretise::{Discretisation, discretise};
use fedrad_radiomics::{Feature, Roi, ibsi_features};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../imaging/tests/data/ibsi-ct")
}

fn config_a(image: &Volume, mask: &Volume) -> Vec<Feature> {
    let mut roi = Roi::from_volumes(image, mask, 1.0);
    for (m, x) in roi.mask.iter_mut().zip(&roi.intensities) {
        *m &= (-500.0..=400.0).contains(x);
    }
    let grey = discretise(&roi, Discretisation::FixedBinSize { width: 25.0, lower: -500.0 }).unwrap();
    ibsi_features(&roi, &grey, 1.0)
}

fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// Reference rows of configuration A that `features` meets, by (code, aggregation).
fn passing(features: &[Feature]) -> (Vec<String>, usize) {
    let mut reader = csv::Reader::from_path(data().join("ibsi1_reference_values_ct_phantom.csv")).unwrap();
    let (mut pass, mut rows) = (Vec::new(), 0);
    for row in reader.deserialize::<HashMap<String, String>>() {
        let row = row.unwrap();
        if row["data"] != "config. A" || row["value"].is_empty() {
            continue;
        }
        rows += 1;
        let (code, agg) = (&row["ibsi_code"], &row["aggregation"]);
        let expected: f64 = row["value"].parse().unwrap();
        let tolerance: f64 = row["tolerance"].parse().unwrap();
        if let Some(f) = features.iter().find(|f| f.ibsi_code == code && f.aggregation.map_or("", |a| a.ibsi_label()) == agg)
            && (round_sig(f.value, 3) - expected).abs() <= tolerance + 1e-12 * expected.abs()
        {
            pass.push(format!("{code} {agg}"));
        }
    }
    (pass, rows)
}

#[test]
fn configuration_a_from_dicom_equals_configuration_a_from_the_ibsis_nifti() {
    let dir = data();
    let series = read_series(&dir.join("dicom/image")).unwrap();
    let mask = read_rtstruct_mask(&dir.join("dicom/mask/DCM_RS_00060.dcm"), "GTV-1", &series).unwrap();
    let mut nii = nifti::read(&dir.join("nifti/image/phantom.nii.gz")).unwrap();
    // The IBSI asks that NIfTI intensities be rounded to the nearest integer.
    nii.data.iter_mut().for_each(|v| *v = v.round());
    let nii_mask = nifti::read(&dir.join("nifti/mask/mask.nii.gz")).unwrap();
    let from_dicom = config_a(&series.volume, &mask);
    let from_nifti = config_a(&nii, &nii_mask);
    assert_eq!(from_dicom.len(), from_nifti.len());
    let mut worst: f64 = 0.0;
    for (d, n) in from_dicom.iter().zip(&from_nifti) {
        assert_eq!(d.name, n.name);
        let rel = (d.value - n.value).abs() / n.value.abs().max(1e-12);
        if d.value.is_finite() || n.value.is_finite() {
            worst = worst.max(rel);
        }
        assert!(rel <= 1e-9 || (d.value.is_nan() && n.value.is_nan()), "{}: DICOM {} vs NIfTI {}", d.name, d.value, n.value);
    }
    let (pass_dicom, rows) = passing(&from_dicom);
    let (pass_nifti, _) = passing(&from_nifti);
    println!("{} features; largest relative difference DICOM vs NIfTI {worst:.1e}", from_dicom.len());
    println!("configuration A: {} of {rows} reference values met from DICOM, {} from NIfTI", pass_dicom.len(), pass_nifti.len());
    assert_eq!(pass_dicom, pass_nifti);
    // All but the six IVH rows, which need the intensities (`ivhDiscretisation: none`).
    assert_eq!(pass_dicom.len(), rows - 6, "{} of {rows}", pass_dicom.len());
}
