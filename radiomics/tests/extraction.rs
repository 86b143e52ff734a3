//! Feature extraction on bad inputs gives a clear per-case error (never a panic), and the
//! `extract` command writes the documented CSV.

use std::path::Path;
use std::process::Command;

use fedrad_imaging::nifti::{self, StoredType};
use fedrad_imaging::{Geometry, Volume};
use fedrad_radiomics::extract::{ExtractionError, extract};
use fedrad_radiomics::settings::Settings;

fn image() -> Volume {
    let g = Geometry::axis_aligned([12, 12, 6], [1.0, 1.0, 2.0]);
    let data = (0..g.voxel_count()).map(|i| ((i * 37) % 101) as f32 + 10.0).collect();
    Volume::new(g, data)
}

fn mask_with(f: impl Fn(usize, usize, usize) -> f32) -> Volume {
    let g = Geometry::axis_aligned([12, 12, 6], [1.0, 1.0, 2.0]);
    let mut d = vec![0.0; g.voxel_count()];
    for z in 0..6 {
        for y in 0..12 {
            for x in 0..12 {
                d[x + 12 * (y + 12 * z)] = f(x, y, z);
            }
        }
    }
    Volume::new(g, d)
}

fn cube(x: usize, y: usize, z: usize) -> f32 {
    if (3..9).contains(&x) && (3..9).contains(&y) && (1..5).contains(&z) { 1.0 } else { 0.0 }
}

#[test]
fn a_good_case_gives_every_family() {
    let f = extract(&image(), &mask_with(cube), &Settings::original_only()).unwrap();
    assert_eq!(f.len(), 28 + 2 + 18 + 5 + 23 + 6 + 25 + 16 + 16 + 16 + 5 + 17);
    assert!(f.iter().all(|f| f.name.starts_with("original_")));
    assert!(f.iter().filter(|f| !f.name.contains("MoransI") && !f.name.contains("GearysC")).all(|f| f.value.is_finite()), "non-finite feature");
}

#[test]
fn the_study_default_adds_wavelet_and_log_images() {
    let f = extract(&image(), &mask_with(cube), &Settings::study_default()).unwrap();
    assert_eq!(f.len(), 177 + 10 * 102);
    for prefix in ["original_", "wavelet-LLH_", "wavelet-HHH_", "wavelet-LLL_", "log-sigma-1-0-mm-3D_", "log-sigma-3-0-mm-3D_"] {
        assert!(f.iter().any(|f| f.name.starts_with(prefix)), "{prefix}");
    }
    assert!(f.iter().any(|f| f.name == "wavelet-HLL_glcm_Contrast"), "PyRadiomics-style names");
    // Shape only once, on the original image.
    assert!(!f.iter().any(|f| f.name.starts_with("wavelet-LLH_shape")));
}

#[test]
fn an_lbp3d_kurtosis_without_spread_is_a_clear_error() {
    // A flat image: every icosphere sample equals its centre, the kurtosis is 0/0.
    let g = Geometry::axis_aligned([12, 12, 6], [1.0, 1.0, 2.0]);
    let flat = Volume::new(g, vec![50.0; 12 * 12 * 6]);
    let s = Settings::from_pyradiomics_yaml("imageType:\n  LBP3D: {}\nfeatureClass:\n  firstorder:\n").unwrap();
    let e = extract(&flat, &mask_with(cube), &s).unwrap_err();
    assert_eq!(e, ExtractionError::FilteredNonFinite { image: "lbp-3D-k".into(), cause: "LBP3D's kurtosis is undefined where all sampled neighbours are equal" });
    assert_eq!(e.reason(), "non_finite_voxels");
    // A textured image gives finite LBP3D features, named as PyRadiomics names them.
    let f = extract(&image(), &mask_with(cube), &s).unwrap();
    for prefix in ["lbp-3D-m1_", "lbp-3D-m2_", "lbp-3D-k_"] {
        assert!(f.iter().any(|f| f.name.starts_with(prefix) && f.name.ends_with("firstorder_Mean") && f.value.is_finite()), "{prefix}");
    }
}

#[test]
fn a_log_sigma_the_image_cannot_hold_is_a_clear_error() {
    let s = Settings::from_pyradiomics_yaml("imageType:\n  LoG: {sigma: [30.0]}\n").unwrap();
    let e = extract(&image(), &mask_with(cube), &s).unwrap_err();
    assert!(matches!(e, ExtractionError::FilterDoesNotFit(_)), "{e}");
    assert_eq!(e.reason(), "image_too_small_for_filter");
    assert!(e.to_string().contains("σ = 30"), "{e}");
}

#[test]
fn each_bad_input_has_its_own_error() {
    let s = Settings::study_default();
    let img = image();
    // Grids that differ.
    let other = Volume::new(Geometry::axis_aligned([12, 12, 5], [1.0, 1.0, 2.0]), vec![1.0; 720]);
    assert!(matches!(extract(&img, &other, &s), Err(ExtractionError::GeometryMismatch(_))));
    let mut shifted = mask_with(cube);
    shifted.geometry.spacing[2] = 2.5;
    assert!(matches!(extract(&img, &shifted, &s), Err(ExtractionError::GeometryMismatch(_))));
    // Empty, fractional and wrong-label masks.
    assert_eq!(extract(&img, &mask_with(|_, _, _| 0.0), &s), Err(ExtractionError::EmptyMask));
    assert!(matches!(extract(&img, &mask_with(|x, y, z| cube(x, y, z) * 0.5), &s), Err(ExtractionError::NonIntegralMask(_))));
    for bad in [f32::NAN, f32::INFINITY, -2.5, 8_388_607.5] {
        let mut m = mask_with(cube);
        m.data[7] = bad;
        assert!(matches!(extract(&img, &m, &s), Err(ExtractionError::NonIntegralMask(v)) if v.to_bits() == bad.to_bits()), "mask value {bad}");
    }
    // Labels beyond i32 are whole numbers too: only the label is missing.
    let huge = mask_with(|x, y, z| cube(x, y, z) * 3.0e9);
    assert_eq!(extract(&img, &huge, &s), Err(ExtractionError::MissingLabel { label: 1, present: vec![3_000_000_000] }));
    let two = mask_with(|x, y, z| cube(x, y, z) * 2.0);
    assert_eq!(extract(&img, &two, &s), Err(ExtractionError::MissingLabel { label: 1, present: vec![2] }));
    assert!(extract(&img, &two, &Settings { label: 2, ..s.clone() }).is_ok());
    // Non-finite voxels.
    let mut nan = image();
    nan.data[5] = f32::NAN;
    assert_eq!(extract(&nan, &mask_with(cube), &s), Err(ExtractionError::NonFinite));
    // A ROI too small or too flat for the settings.
    let single = mask_with(|x, y, z| if (x, y, z) == (5, 5, 2) { 1.0 } else { 0.0 });
    assert!(matches!(extract(&img, &single, &s), Err(ExtractionError::RoiTooFlat { dims: 0, minimum: 2 })));
    let strict = Settings { minimum_roi_size: Some(1000), ..s.clone() };
    assert!(matches!(extract(&img, &mask_with(cube), &strict), Err(ExtractionError::RoiTooSmall { voxels: 144, minimum: 1000 })));
    // Resegmentation that empties the ROI.
    let reseg = Settings { resegment: Some((fedrad_radiomics::settings::ResegmentMode::Absolute, 1e9, None)), ..s.clone() };
    assert!(matches!(extract(&img, &mask_with(cube), &reseg), Err(ExtractionError::RoiTooSmall { voxels: 0, .. })));
}

#[test]
fn the_extract_command_writes_ibsi_tagged_csv_and_reports_bad_cases() {
    let dir = std::env::temp_dir().join(format!("fedrad-extract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ibsi");
    let params = dir.join("phantom.yaml");
    std::fs::write(&params, "setting:\n  featureNaming: ibsi\n  binCount: 6\n  ibsiAggregation: [\"3D, averaged\", \"2D, slice-merged\", \"3D\"]\n").unwrap();
    let out = dir.join("features.csv");
    let status = Command::new(env!("CARGO_BIN_EXE_fedrad-radiomics"))
        .args(["extract", "--image"])
        .arg(data.join("phantom_image.nii.gz"))
        .arg("--mask")
        .arg(data.join("phantom_mask.nii.gz"))
        .arg("--params")
        .arg(&params)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.starts_with("feature,value,ibsi_code,aggregation\n"));
    assert!(csv.contains("original_glcm_JointMaximum,"));
    assert!(csv.lines().any(|l| l.contains(",GYBY,\"2D, slice-merged\"")));
    assert!(csv.lines().any(|l| l.starts_with("original_shape_VolumeVoxelCounting,592,YEKZ,")));
    // A bad parameter file and a bad mask: non-zero exit, a message naming the problem.
    std::fs::write(&params, "setting:\n  binWdth: 6\n").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_fedrad-radiomics"))
        .args(["extract", "--image"])
        .arg(data.join("phantom_image.nii.gz"))
        .arg("--mask")
        .arg(data.join("phantom_mask.nii.gz"))
        .arg("--params")
        .arg(&params)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("binWdth"));
    let empty = dir.join("empty.nii.gz");
    let m = nifti::read(&data.join("phantom_mask.nii.gz")).unwrap();
    nifti::write(&empty, &Volume::new(m.geometry.clone(), vec![0.0; m.data.len()]), StoredType::U8).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_fedrad-radiomics"))
        .args(["extract", "--image"])
        .arg(data.join("phantom_image.nii.gz"))
        .arg("--mask")
        .arg(&empty)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the mask is empty"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nrrd_and_nifti_inputs_give_the_same_features() {
    let dir = std::env::temp_dir().join(format!("fedrad-extract-nrrd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (img, mask) = (image(), mask_with(cube));
    fedrad_imaging::nrrd::write(&dir.join("img.nrrd"), &img).unwrap();
    nifti::write(&dir.join("mask.nii.gz"), &mask, StoredType::U8).unwrap();
    let s = Settings::study_default();
    let from_files = fedrad_radiomics::extract::extract_files(&dir.join("img.nrrd"), &dir.join("mask.nii.gz"), None, &s).unwrap();
    let in_memory = extract(&img, &mask, &s).unwrap();
    assert_eq!(from_files.len(), in_memory.len());
    for (a, b) in from_files.iter().zip(&in_memory) {
        assert!(a.value == b.value || (a.value.is_nan() && b.value.is_nan()), "{}", a.name);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn extraction_is_bit_for_bit_repeatable() {
    // A box-shaped ROI: many coplanar mesh points, where an order-dependent hull would vary.
    let (img, mask) = (image(), mask_with(cube));
    let s =
        Settings { image_types: fedrad_radiomics::filters::PointTransform::ALL.map(fedrad_radiomics::filters::ImageType::Point).to_vec(), ..Settings::original_only() };
    let first = extract(&img, &mask, &s).unwrap();
    for _ in 0..5 {
        let again = extract(&img, &mask, &s).unwrap();
        for (a, b) in first.iter().zip(&again) {
            assert!(a.value.to_bits() == b.value.to_bits(), "{}: {} vs {}", a.name, a.value, b.value);
        }
    }
    assert_eq!(first.len(), 177 + 4 * (177 - 28));
    assert!(first.iter().any(|f| f.name == "squareroot_glcm_Contrast"));
}
