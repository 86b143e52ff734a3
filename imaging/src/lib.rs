//! Medical volumes: a 3D grid of intensities with the geometry that places it in the
//! patient, and readers/writers for the formats hospitals export.

pub mod nifti;
mod volume;

pub use volume::{Geometry, Volume};

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
