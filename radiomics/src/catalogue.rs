//! The feature columns a parameter file produces, without an image of one's own.
//!
//! Column names depend only on the settings, so they are read off a small built-in phantom (a
//! lumpy ellipsoid) through the same code path as a patient. That keeps the coordinator's
//! catalogue (which it builds from the study's parameter file, holding no image) and the
//! sites' tables in step by construction rather than by a second list to maintain.

use fedrad_imaging::{Geometry, Volume};

use crate::extract::{ExtractionError, extract};
use crate::settings::Settings;

/// The feature columns (`<image type>_<family>_<feature>[_<aggregation>]`) that `settings`
/// produces, in table order.
pub fn feature_catalogue(settings: &Settings) -> Result<Vec<String>, ExtractionError> {
    let (image, mask) = phantom();
    let features = extract(&image, &mask, settings)?;
    Ok(features.iter().map(|f| f.column()).collect())
}

/// A 24 × 24 × 16 ellipsoid with a wavy border, a sinusoidal background and noise from a fixed
/// linear congruential stream: large enough for every filter and family of the study's settings.
fn phantom() -> (Volume, Volume) {
    let dims = [24usize, 24, 16];
    let geometry = Geometry::axis_aligned(dims, [1.0, 1.0, 1.5]);
    let mut image = Vec::with_capacity(dims.iter().product());
    let mut mask = Vec::with_capacity(dims.iter().product());
    let mut state = 0x5eed_u64;
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = (state >> 40) as f32 / (1u64 << 24) as f32;
                let (x, y, z) = (i as f32 - 11.5, j as f32 - 11.5, (k as f32 - 7.5) * 1.5);
                let r = (x * x / 64.0 + y * y / 49.0 + z * z / 81.0).sqrt();
                let inside = r < 1.0 + 0.15 * (x * 0.7).sin() * (y * 0.5).cos();
                image.push(200.0 + 60.0 * (x * 0.4).sin() + 40.0 * noise + if inside { 150.0 } else { 0.0 });
                mask.push(inside as u8 as f32);
            }
        }
    }
    (Volume::new(geometry.clone(), image), Volume::new(geometry, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_follows_the_parameter_file() {
        let all = feature_catalogue(&Settings::study_default()).unwrap();
        let original_only = Settings::from_pyradiomics_yaml("imageType:\n  Original: {}\n").unwrap();
        let few = feature_catalogue(&original_only).unwrap();
        assert!(few.len() < all.len(), "{} !< {}", few.len(), all.len());
        assert!(few.iter().all(|c| c.starts_with("original_")), "{few:?}");
        assert!(all.iter().any(|c| c.starts_with("wavelet-")), "the study default has wavelet bands");
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "column names are unique");
    }
}
