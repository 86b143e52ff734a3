//! Medical volumes: a 3D grid of intensities with the geometry that places it in the
//! patient, and readers/writers for the formats hospitals export.

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
}

/// Largest volume a reader will allocate unless told otherwise (2^28 voxels, 1 GiB as f32).
pub const DEFAULT_MAX_VOXELS: u128 = 1 << 28;

/// Reads a volume in any supported format, chosen by the file name: `.nii`, `.nii.gz`
/// (NIfTI-1), `.nrrd`, `.nhdr` (NRRD).
pub fn read_volume(path: &std::path::Path) -> Result<Volume, ImagingError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if name.ends_with(".nrrd") || name.ends_with(".nhdr") {
        nrrd::read(path)
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        nifti::read(path)
    } else {
        Err(ImagingError::Unsupported { path: path.display().to_string(), what: "file type", value: name })
    }
}
