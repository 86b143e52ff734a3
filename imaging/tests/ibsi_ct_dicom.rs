//! The IBSI lung CT phantom read as a hospital exports it (a DICOM series and an RT structure
//! set) must give the IBSI's own NIfTI conversion: the image exactly, voxel for voxel in patient
//! space, and the GTV-1 mask with the agreement reported.
//!
//!     cargo test -p fedrad-imaging --test ibsi_ct_dicom -- --nocapture

use std::path::{Path, PathBuf};

use fedrad_imaging::dicom::{read_rtstruct_mask, read_series, rtstruct_rois};
use fedrad_imaging::{Volume, nifti};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ibsi-ct")
}

/// World position (RAS, mm) of voxel (i, j, k).
fn world(v: &Volume, i: usize, j: usize, k: usize) -> [f64; 3] {
    let a = v.geometry.affine();
    let p = [i as f64, j as f64, k as f64];
    [0, 1, 2].map(|r| a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3])
}

/// The voxel of `v` whose centre is at `x`, if `x` is a voxel centre of `v` (to 0.01 voxel).
fn voxel_at(v: &Volume, x: [f64; 3]) -> Option<usize> {
    let g = &v.geometry;
    let d = [x[0] - g.origin[0], x[1] - g.origin[1], x[2] - g.origin[2]];
    let mut idx = [0usize; 3];
    for axis in 0..3 {
        let c = (0..3).map(|r| g.direction[r][axis] * d[r]).sum::<f64>() / g.spacing[axis];
        if (c - c.round()).abs() > 0.01 || c.round() < 0.0 || c.round() as usize >= g.dims[axis] {
            return None;
        }
        idx[axis] = c.round() as usize;
    }
    Some(v.index(idx[0], idx[1], idx[2]))
}

#[test]
fn the_dicom_series_and_rtstruct_give_the_ibsis_nifti_image_and_mask() {
    let dir = data();
    let series = read_series(&dir.join("dicom/image")).unwrap();
    let nii = nifti::read(&dir.join("nifti/image/phantom.nii.gz")).unwrap();
    let nii_mask = nifti::read(&dir.join("nifti/mask/mask.nii.gz")).unwrap();
    println!(
        "DICOM: {} slices, {:?} voxels, spacing {:?}, modality {}, transfer syntax {}",
        series.slices, series.volume.geometry.dims, series.volume.geometry.spacing, series.modality, series.transfer_syntax
    );
    println!("NIfTI: {:?} voxels, spacing {:?}", nii.geometry.dims, nii.geometry.spacing);
    assert_eq!(series.slices, 60);
    assert_eq!(series.modality, "CT");
    assert_eq!(series.volume.geometry.voxel_count(), nii.geometry.voxel_count());
    for a in 0..3 {
        assert!((series.volume.geometry.spacing[a] - nii.geometry.spacing[a]).abs() < 1e-4, "spacing {:?} vs {:?}", series.volume.geometry.spacing, nii.geometry.spacing);
    }

    let rois = rtstruct_rois(&dir.join("dicom/mask/DCM_RS_00060.dcm")).unwrap();
    println!("ROIs: {rois:?}");
    let mask = read_rtstruct_mask(&dir.join("dicom/mask/DCM_RS_00060.dcm"), "GTV-1", &series).unwrap();

    // Compare in patient space: every NIfTI voxel centre is a DICOM voxel centre.
    let [nx, ny, nz] = nii.geometry.dims;
    let (mut image_equal, mut both, mut only_nifti, mut only_dicom) = (0usize, 0usize, 0usize, 0usize);
    let mut worst: f64 = 0.0;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let n = nii.index(i, j, k);
                let d = voxel_at(&series.volume, world(&nii, i, j, k)).expect("the NIfTI voxel centre is on the DICOM grid");
                // The IBSI asks that NIfTI intensities be rounded to the nearest integer.
                let diff = (f64::from(nii.data[n]).round() - f64::from(series.volume.data[d])).abs();
                worst = worst.max(diff);
                image_equal += usize::from(diff == 0.0);
                match (nii_mask.data[n] > 0.5, mask.data[d] > 0.5) {
                    (true, true) => both += 1,
                    (true, false) => only_nifti += 1,
                    (false, true) => only_dicom += 1,
                    _ => {}
                }
            }
        }
    }
    let total = nx * ny * nz;
    let dice = 2.0 * both as f64 / (2 * both + only_nifti + only_dicom) as f64;
    println!("image: {image_equal}/{total} voxels equal (largest difference {worst})");
    println!("mask: {both} voxels in both, {only_nifti} only in the IBSI's NIfTI, {only_dicom} only from the RTSTRUCT; Dice {dice:.5}");
    assert_eq!(image_equal, total, "the image must be the NIfTI's exactly (largest difference {worst})");
    // Measured: all 125 256 voxels agree. The rule (voxel centre in polygon, even–odd) is the
    // one the IBSI's conversion used, so any disagreement is a regression.
    assert!(both > 100_000);
    assert_eq!((only_nifti, only_dicom), (0, 0), "mask agreement: Dice {dice}");
}

/// The same GTV as DICOM SEG objects written by another tool (highdicom; see
/// `scripts/make_seg_fixture.py`), binary and fractional: the same voxels as the RTSTRUCT.
#[test]
fn segmentations_written_by_highdicom_give_the_same_mask() {
    use fedrad_imaging::dicom::{read_mask, read_seg_mask, seg_segments};
    let dir = data();
    let series = read_series(&dir.join("dicom/image")).unwrap();
    let from_contours = read_rtstruct_mask(&dir.join("dicom/mask/DCM_RS_00060.dcm"), "GTV-1", &series).unwrap();
    let binary = dir.join("seg/gtv1_binary.dcm");
    let segments = seg_segments(&binary).unwrap();
    println!("segments: {segments:?}");
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].label, "GTV-1");
    assert!(segments[0].frames > 0 && segments[0].frames < 60, "empty frames are omitted: {}", segments[0].frames);
    assert_eq!(read_seg_mask(&binary, "GTV-1", &series, 0.5).unwrap().data, from_contours.data);
    // The fractional object stores 0.8 inside: in at threshold 0.5, out at 0.9.
    let fractional = dir.join("seg/gtv1_fractional.dcm");
    assert_eq!(read_mask(&fractional, "gtv-1", &series, 0.5).unwrap().data, from_contours.data);
    assert!(read_seg_mask(&fractional, "GTV-1", &series, 0.9).unwrap().data.iter().all(|v| *v == 0.0));
    let e = read_seg_mask(&binary, "GTVnx", &series, 0.5).unwrap_err().to_string();
    assert!(e.contains("GTV-1"), "{e}");
}
