//! Deep features at the site: the encoder's 2.5D tumour crops, local FedAvg training on the
//! study's training patients, and the embedding table beside the handcrafted features.
//!
//! Crop recipe (see `fedrad_shared::algorithms::encoder` for why 2.5D):
//! 1. The axial slice k* with the most label-1 mask voxels (ties: the lower slice), and the
//!    slices k* − 1 and k* + 1 (repeated at the volume's edge) as three channels.
//! 2. Centre: the mask's centroid on slice k*, in voxel coordinates.
//! 3. A `crop × crop` grid spanning `field_mm` millimetres in plane, sampled bilinearly with
//!    the voxel spacing of the image (clamped at the volume's edge), along the voxel axes.
//! 4. Intensities z-scored with the mean and SD of the mask voxels on the three slices (MR
//!    intensities have no absolute scale), clipped to ±5.
//!
//! Files (at the site only): `studies/<study>/features/<sequence>.deep.csv` (patient id,
//! `deep_0000` …) and `<sequence>.deep.json` (the weights' SHA-256, the architecture, the
//! patients that failed and why).

use rayon::prelude::*;

use fedrad_imaging::Volume;

use crate::manifest::ImagePair;
use fedrad_shared::algorithms::encoder::{Architecture, INPUT_CHANNELS};

/// Why a patient has no crop.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CropError {
    #[error("cannot read {0}")]
    Unreadable(String),
    #[error("image and mask grids differ: {0}")]
    GeometryMismatch(String),
    #[error("the mask has no voxel with label 1")]
    EmptyMask,
    #[error("the image has non-finite voxels in the tumour")]
    NonFinite,
}

impl CropError {
    /// Short reason, as counted in the embedding summary.
    pub fn reason(&self) -> &'static str {
        match self {
            CropError::Unreadable(_) => "unreadable_volume",
            CropError::GeometryMismatch(_) => "geometry_mismatch",
            CropError::EmptyMask => "empty_mask",
            CropError::NonFinite => "non_finite_voxels",
        }
    }
}

pub use fedrad_shared::algorithms::encoder::CROP_FAILURE_REASONS;

pub fn crop_files(pair: &ImagePair, arch: &Architecture) -> Result<Vec<f64>, CropError> {
    let (image, mask) = pair.read().map_err(|e| CropError::Unreadable(e.to_string()))?;
    crop(&image, &mask, arch)
}

/// The 2.5D crop of one image and mask (`3 × crop × crop`, row-major, z-scored).
pub fn crop(image: &Volume, mask: &Volume, arch: &Architecture) -> Result<Vec<f64>, CropError> {
    if let Some(d) = image.geometry.mismatch(&mask.geometry, 1e-3) {
        return Err(CropError::GeometryMismatch(d));
    }
    let [nx, ny, nz] = image.dims();
    let in_roi = |v: f32| v == 1.0;
    let mut best = (0usize, 0usize);
    for k in 0..nz {
        let area = (0..nx * ny).filter(|&p| in_roi(mask.data[k * nx * ny + p])).count();
        if area > best.1 {
            best = (k, area);
        }
    }
    if best.1 == 0 {
        return Err(CropError::EmptyMask);
    }
    let k_star = best.0;
    let (mut ci, mut cj) = (0.0, 0.0);
    for j in 0..ny {
        for i in 0..nx {
            if in_roi(mask.data[mask.index(i, j, k_star)]) {
                ci += i as f64;
                cj += j as f64;
            }
        }
    }
    let (ci, cj) = (ci / best.1 as f64, cj / best.1 as f64);
    let slices: [usize; INPUT_CHANNELS] = [k_star.saturating_sub(1), k_star, (k_star + 1).min(nz - 1)];
    let (mut n, mut sum, mut sq) = (0usize, 0.0, 0.0);
    for &k in &slices {
        for p in 0..nx * ny {
            if in_roi(mask.data[k * nx * ny + p]) {
                let v = image.data[k * nx * ny + p] as f64;
                if !v.is_finite() {
                    return Err(CropError::NonFinite);
                }
                n += 1;
                sum += v;
                sq += v * v;
            }
        }
    }
    let mean = sum / n as f64;
    let sd = (sq / n as f64 - mean * mean).max(0.0).sqrt().max(1e-6 * mean.abs().max(1.0));
    let c = arch.crop;
    let [sx, sy, _] = image.geometry.spacing;
    let mut out = Vec::with_capacity(arch.input_len());
    let at = |i: usize, j: usize, k: usize| image.data[image.index(i, j, k)] as f64;
    for &k in &slices {
        for v in 0..c {
            for u in 0..c {
                let (dx, dy) = (((u as f64 + 0.5) / c as f64 - 0.5) * arch.field_mm, ((v as f64 + 0.5) / c as f64 - 0.5) * arch.field_mm);
                let x = (ci + dx / sx).clamp(0.0, (nx - 1) as f64);
                let y = (cj + dy / sy).clamp(0.0, (ny - 1) as f64);
                let (x0, y0) = (x.floor() as usize, y.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(nx - 1), (y0 + 1).min(ny - 1));
                let (fx, fy) = (x - x0 as f64, y - y0 as f64);
                let value = (1.0 - fy) * ((1.0 - fx) * at(x0, y0, k) + fx * at(x1, y0, k)) + fy * ((1.0 - fx) * at(x0, y1, k) + fx * at(x1, y1, k));
                let z = (value - mean) / sd;
                out.push(if z.is_finite() { z.clamp(-5.0, 5.0) } else { 0.0 });
            }
        }
    }
    Ok(out)
}

/// Crops for a list of (image, mask) pairs, in parallel; order kept.
pub fn crop_all(pairs: &[ImagePair], arch: &Architecture) -> Vec<Result<Vec<f64>, CropError>> {
    pairs.par_iter().map(|p| crop_files(p, arch)).collect()
}
