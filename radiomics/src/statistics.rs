//! Intensity-based statistical features (IBSI 3.3, UHIW), on the ROI's intensities X
//! (N_v voxels), and — with the same formulas — the intensity histogram features on the
//! discretised grey levels. Percentiles interpolate linearly between order statistics
//! (NumPy's default, as MIRP and PyRadiomics).
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Mean | Q4LE | μ = Σ X / N_v |
//! | Variance | ECT3 | Σ (X − μ)² / N_v |
//! | Skewness | KE2A | m₃ / m₂^{3/2} (central moments m_k = Σ (X − μ)^k / N_v) |
//! | Excess kurtosis | IPH6 | m₄ / m₂² − 3 |
//! | Median | Y12H | P50 |
//! | Minimum | 1GSF | min X |
//! | 10th percentile | QG58 | P10 |
//! | 90th percentile | 8DWT | P90 |
//! | Maximum | 84IY | max X |
//! | Interquartile range | SALO | P75 − P25 |
//! | Range | 2OJQ | max − min |
//! | Mean absolute deviation | 4FUA | Σ \|X − μ\| / N_v |
//! | Robust mean absolute deviation | 1128 | mean \|X − μ₁₀₋₉₀\| over P10 ≤ X ≤ P90 |
//! | Median absolute deviation | N72L | Σ \|X − P50\| / N_v |
//! | Coefficient of variation | 7TET | σ / μ |
//! | Quartile coefficient of dispersion | 9S40 | (P75 − P25)/(P75 + P25) |
//! | Energy | N8CA | Σ X² |
//! | Root mean square | 5ZWQ | √(Σ X² / N_v) |

use super::{Feature, feature};

pub const FEATURES: [(&str, &str); 18] = [
    ("Mean", "Q4LE"),
    ("Variance", "ECT3"),
    ("Skewness", "KE2A"),
    ("ExcessKurtosis", "IPH6"),
    ("Median", "Y12H"),
    ("Minimum", "1GSF"),
    ("Percentile10", "QG58"),
    ("Percentile90", "8DWT"),
    ("Maximum", "84IY"),
    ("InterquartileRange", "SALO"),
    ("Range", "2OJQ"),
    ("MeanAbsoluteDeviation", "4FUA"),
    ("RobustMeanAbsoluteDeviation", "1128"),
    ("MedianAbsoluteDeviation", "N72L"),
    ("CoefficientOfVariation", "7TET"),
    ("QuartileCoefficientOfDispersion", "9S40"),
    ("Energy", "N8CA"),
    ("RootMeanSquare", "5ZWQ"),
];

/// Linear-interpolation percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The 18 values, in [`FEATURES`] order, of a non-empty set of values.
pub fn values(xs: &[f64]) -> Vec<f64> {
    let n = xs.len() as f64;
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let mean = xs.iter().sum::<f64>() / n;
    let m = |k: i32| xs.iter().map(|x| (x - mean).powi(k)).sum::<f64>() / n;
    let (m2, m3, m4) = (m(2), m(3), m(4));
    let (p10, p25, p50, p75, p90) = (percentile(&s, 0.1), percentile(&s, 0.25), percentile(&s, 0.5), percentile(&s, 0.75), percentile(&s, 0.9));
    let robust: Vec<f64> = s.iter().copied().filter(|x| *x >= p10 && *x <= p90).collect();
    let robust_mean = robust.iter().sum::<f64>() / robust.len() as f64;
    let energy: f64 = xs.iter().map(|x| x * x).sum();
    vec![
        mean,
        m2,
        if m2 > 0.0 { m3 / m2.powf(1.5) } else { 0.0 },
        if m2 > 0.0 { m4 / (m2 * m2) - 3.0 } else { 0.0 },
        p50,
        s[0],
        p10,
        p90,
        s[s.len() - 1],
        p75 - p25,
        s[s.len() - 1] - s[0],
        xs.iter().map(|x| (x - mean).abs()).sum::<f64>() / n,
        robust.iter().map(|x| (x - robust_mean).abs()).sum::<f64>() / robust.len() as f64,
        xs.iter().map(|x| (x - p50).abs()).sum::<f64>() / n,
        m2.sqrt() / mean,
        if p75 + p25 != 0.0 { (p75 - p25) / (p75 + p25) } else { f64::NAN },
        energy,
        (energy / n).sqrt(),
    ]
}

/// PyRadiomics' first-order features that the IBSI defines differently or not at all; they
/// carry no IBSI code. `levels` are the discretised grey levels of the ROI voxels.
///
/// | feature | formula |
/// |---|---|
/// | Entropy | −Σ p_i log2(p_i + ε), p_i over discretised levels, ε = 2.2·10⁻¹⁶ |
/// | Uniformity | Σ p_i² |
/// | TotalEnergy | voxel volume · Σ X² |
/// | StandardDeviation | √(Σ (X − μ)² / N_v) |
/// | Kurtosis | m₄ / m₂² (not excess; 0 for a flat region) |
pub fn pyradiomics_features(xs: &[f64], levels: &[u32], voxel_volume: f64) -> Vec<Feature> {
    let names = ["Entropy", "Uniformity", "TotalEnergy", "StandardDeviation", "Kurtosis"];
    if xs.is_empty() {
        return names.iter().map(|n| feature(&format!("firstorder_{n}"), f64::NAN, "", None)).collect();
    }
    let n = xs.len() as f64;
    let mut counts = std::collections::BTreeMap::new();
    for l in levels {
        *counts.entry(*l).or_insert(0.0) += 1.0;
    }
    let total: f64 = counts.values().sum();
    let eps = f64::EPSILON;
    let entropy = -counts.values().map(|c| c / total).map(|p| p * (p + eps).log2()).sum::<f64>();
    let uniformity = counts.values().map(|c| (c / total).powi(2)).sum::<f64>();
    let mean = xs.iter().sum::<f64>() / n;
    let m2 = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let m4 = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
    let energy: f64 = xs.iter().map(|x| x * x).sum();
    let values = [entropy, uniformity, energy * voxel_volume, m2.sqrt(), if m2 > 0.0 { m4 / (m2 * m2) } else { 0.0 }];
    names.iter().zip(values).map(|(nm, v)| feature(&format!("firstorder_{nm}"), v, "", None)).collect()
}

/// PyRadiomics `voxelArrayShift` c: Energy, TotalEnergy and RootMeanSquare are computed on
/// X + c, so that negative intensities do not add energy. Shifted values no longer follow
/// IBSI's definitions and lose their codes.
///
/// | feature | formula |
/// |---|---|
/// | Energy | Σ (X + c)² |
/// | TotalEnergy | voxel volume · Σ (X + c)² |
/// | RootMeanSquare | √(Σ (X + c)² / N_v) |
pub fn shift_energies(features: &mut [Feature], xs: &[f64], shift: f64, voxel_volume: f64) {
    let energy: f64 = xs.iter().map(|x| (x + shift).powi(2)).sum();
    let n = xs.len() as f64;
    for f in features.iter_mut() {
        let value = match f.name.as_str() {
            "firstorder_Energy" => energy,
            "firstorder_TotalEnergy" => energy * voxel_volume,
            "firstorder_RootMeanSquare" => (energy / n).sqrt(),
            _ => continue,
        };
        f.value = if xs.is_empty() { f64::NAN } else { value };
        f.ibsi_code = "";
    }
}

pub fn features(roi_intensities: &[f64]) -> Vec<Feature> {
    let v = if roi_intensities.is_empty() { vec![f64::NAN; FEATURES.len()] } else { values(roi_intensities) };
    FEATURES.iter().zip(v).map(|((n, c), x)| feature(&format!("firstorder_{n}"), x, c, None)).collect()
}
