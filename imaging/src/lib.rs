//! Medical volumes: a 3D grid of intensities with the geometry that places it in the
//! patient, and readers/writers for the formats hospitals export.

pub mod dicom;
pub mod nifti;
pub mod nrrd;
mod volume;

pub use volume::{Geometry, SampleType, Volume};

#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a NIfTI-1 file ({detail})")]
    NotNifti { path: String, detail: String },
    #[error("{path}: unsupported {what}: {value}")]
    Unsupported { path: String, what: &'static str, value: String },
    #[error("{path}: header claims {voxels} voxels, more than the limit of {limit}; refusing to allocate")]
    TooLarge { path: String, voxels: u128, limit: u128 },
    #[error("{path}: file is truncated: expected {expected} bytes of voxel data, found {found}")]
    Truncated { path: String, expected: usize, found: usize },
    #[error("{path}: invalid header: {detail}")]
    InvalidHeader { path: String, detail: String },
    #[error("{path}: {detail}")]
    Dicom { path: String, detail: String },
}

/// Largest volume a reader will allocate unless told otherwise (2^28 voxels, 1 GiB as f32).
pub const DEFAULT_MAX_VOXELS: u128 = 1 << 28;

/// Reads a volume in any supported format, chosen by the file name: `.nii`, `.nii.gz`
/// (NIfTI-1), `.nrrd`, `.nhdr` (NRRD), or a folder holding one DICOM image series.
pub fn read_volume(path: &std::path::Path) -> Result<Volume, ImagingError> {
    if path.is_dir() {
        return dicom::read_series(path).map(|s| s.volume);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if name.ends_with(".nrrd") || name.ends_with(".nhdr") {
        nrrd::read(path)
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        nifti::read(path)
    } else {
        Err(ImagingError::Unsupported { path: path.display().to_string(), what: "file type", value: name })
    }
}

/// Whether `path` names a DICOM file (by extension, else by the `DICM` preamble marker).
pub fn is_dicom_file(path: &std::path::Path) -> bool {
    if !path.is_file() {
        return false;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if name.ends_with(".dcm") || name.ends_with(".dicom") {
        return true;
    }
    let mut head = [0u8; 132];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok() && &head[128..132] == b"DICM"
}

/// Threshold of a fractional DICOM SEG: voxels at or above half of the maximum are inside.
pub const FRACTIONAL_SEG_THRESHOLD: f64 = 0.5;

/// An image and its mask as a site's manifest names them: NIfTI/NRRD files, or a folder
/// holding a DICOM series with an RTSTRUCT or SEG file and the name of the region (`roi`, the
/// site's own name for the study's tumour, e.g. `GTVnx`).
pub fn read_image_and_mask(image: &std::path::Path, mask: &std::path::Path, roi: Option<&str>) -> Result<(Volume, Volume), ImagingError> {
    if is_dicom_file(mask) {
        let Some(roi) = roi.filter(|r| !r.trim().is_empty()) else {
            return Err(ImagingError::Dicom {
                path: mask.display().to_string(),
                detail: "a DICOM mask needs the name of its region (the manifest's t1c_roi / t2_roi column)".into(),
            });
        };
        if !image.is_dir() {
            return Err(ImagingError::Dicom {
                path: mask.display().to_string(),
                detail: format!("an RTSTRUCT or SEG mask needs its image as a DICOM series folder, not {}", image.display()),
            });
        }
        let series = dicom::read_series(image)?;
        let m = dicom::read_mask(mask, roi, &series, FRACTIONAL_SEG_THRESHOLD)?;
        return Ok((series.volume, m));
    }
    Ok((read_volume(image)?, read_volume(mask)?))
}
