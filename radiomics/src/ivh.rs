//! Intensity-volume histogram features (IBSI 3.5, P88C).
//!
//! Intensities are taken on a grid of step w from X_min to X_max (the discretised levels,
//! or the raw intensities when they are already integral, w = 1; X_min and X_max are the
//! re-segmentation range's bounds where [`features_in_range`] is given one). The intensity fraction of
//! level i is γ = (i − X_min)/(X_max − X_min); the volume fraction ν(i) is the fraction of
//! ROI voxels with intensity ≥ i.
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Volume at intensity fraction x (V10, V90) | BC2M | fraction of voxels with γ ≥ x |
//! | Intensity at volume fraction x (I10, I90) | GBPN | least grid level i with ν(i) ≤ x |
//! | Volume fraction difference | DDTU | V10 − V90 |
//! | Intensity fraction difference | CNV2 | I10 − I90 |

use super::{Feature, feature};

/// The features of `xs` on a grid of `step` from the least to the largest value.
pub fn features(xs: &[f64], step: f64) -> Vec<Feature> {
    features_in_range(xs, step, None)
}

/// The features with the intensity fraction γ taken over `range` (X_min, X_max) instead of
/// the values' own extremes: the IBSI's choice for intensities with a definite scale (CT in
/// HU) re-segmented to a range, whose bounds are then X_min and X_max.
pub fn features_in_range(xs: &[f64], step: f64, range: Option<(f64, f64)>) -> Vec<Feature> {
    let names = [("V10", "BC2M"), ("V90", "BC2M"), ("I10", "GBPN"), ("I90", "GBPN"), ("VolumeFractionDifference", "DDTU"), ("IntensityFractionDifference", "CNV2")];
    if xs.is_empty() || !(step > 0.0) {
        return names.iter().map(|(n, c)| feature(&format!("ivh_{n}"), f64::NAN, c, None)).collect();
    }
    let n = xs.len() as f64;
    let (min, max) = range.unwrap_or_else(|| (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
    let volume_at = |fraction: f64| -> f64 {
        if max == min {
            return 1.0;
        }
        xs.iter().filter(|x| (*x - min) / (max - min) >= fraction - 1e-12).count() as f64 / n
    };
    let intensity_at = |fraction: f64| -> f64 {
        let steps = ((max - min) / step).round() as usize;
        for k in 0..=steps {
            let i = min + k as f64 * step;
            let nu = xs.iter().filter(|x| **x >= i - 1e-9).count() as f64 / n;
            if nu <= fraction {
                return i;
            }
        }
        max + step
    };
    let (v10, v90, i10, i90) = (volume_at(0.1), volume_at(0.9), intensity_at(0.1), intensity_at(0.9));
    let values = [v10, v90, i10, i90, v10 - v90, i10 - i90];
    names.iter().zip(values).map(|((nm, c), x)| feature(&format!("ivh_{nm}"), x, c, None)).collect()
}
