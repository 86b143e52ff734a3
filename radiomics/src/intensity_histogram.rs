//! Intensity histogram features (IBSI 3.4, ZVCW) on the discretised grey levels X_d of the
//! ROI. The first 9 and the deviations use the formulas of [`super::statistics`] on X_d;
//! with H(i) the number of voxels at level i and p_i = H(i)/N_v:
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Mean … maximum | X6K6 CH89 88K1 C3I7 WIFQ 1PR8 GPMT OZ0C 3NCY | as the statistics, on X_d |
//! | Mode | AMMC | the most frequent level (the lowest if tied) |
//! | Interquartile range, range | WR0O 5Z3W | on X_d |
//! | Mean, robust mean, median absolute deviation | D2ZX WRZB 4RNL | on X_d |
//! | Coefficient of variation, quartile coefficient of dispersion | CWYJ SLWD | on X_d |
//! | Entropy | TLU2 | −Σ p_i log2 p_i |
//! | Uniformity | BJ5W | Σ p_i² |
//! | Maximum histogram gradient, and its level | 12CE 8E6O | max H′(i) |
//! | Minimum histogram gradient, and its level | VQB3 RHQZ | min H′(i) |
//!
//! H′(1) = H(2) − H(1), H′(N_g) = H(N_g) − H(N_g − 1), else H′(i) = (H(i+1) − H(i−1))/2.

use super::texture::entropy;
use super::{Feature, GreyLevels, feature};

pub const FEATURES: [(&str, &str); 23] = [
    ("Mean", "X6K6"),
    ("Variance", "CH89"),
    ("Skewness", "88K1"),
    ("ExcessKurtosis", "C3I7"),
    ("Median", "WIFQ"),
    ("Minimum", "1PR8"),
    ("Percentile10", "GPMT"),
    ("Percentile90", "OZ0C"),
    ("Maximum", "3NCY"),
    ("Mode", "AMMC"),
    ("InterquartileRange", "WR0O"),
    ("Range", "5Z3W"),
    ("MeanAbsoluteDeviation", "D2ZX"),
    ("RobustMeanAbsoluteDeviation", "WRZB"),
    ("MedianAbsoluteDeviation", "4RNL"),
    ("CoefficientOfVariation", "CWYJ"),
    ("QuartileCoefficientOfDispersion", "SLWD"),
    ("Entropy", "TLU2"),
    ("Uniformity", "BJ5W"),
    ("MaximumHistogramGradient", "12CE"),
    ("MaximumHistogramGradientGreyLevel", "8E6O"),
    ("MinimumHistogramGradient", "VQB3"),
    ("MinimumHistogramGradientGreyLevel", "RHQZ"),
];

pub fn features(g: &GreyLevels) -> Vec<Feature> {
    let xs: Vec<f64> = g.levels.iter().filter(|l| **l > 0).map(|l| *l as f64).collect();
    if xs.is_empty() {
        return FEATURES.iter().map(|(n, c)| feature(&format!("histogram_{n}"), f64::NAN, c, None)).collect();
    }
    let s = super::statistics::values(&xs);
    let ng = g.ng as usize;
    let mut h = vec![0.0; ng + 1];
    for x in &xs {
        h[*x as usize] += 1.0;
    }
    let n = xs.len() as f64;
    let mode = (1..=ng).fold(1, |best, i| if h[i] > h[best] { i } else { best }) as f64;
    let grad = |i: usize| -> f64 {
        if ng == 1 {
            0.0
        } else if i == 1 {
            h[2] - h[1]
        } else if i == ng {
            h[ng] - h[ng - 1]
        } else {
            (h[i + 1] - h[i - 1]) / 2.0
        }
    };
    let (mut gmax, mut imax, mut gmin, mut imin) = (f64::NEG_INFINITY, 1, f64::INFINITY, 1);
    for i in 1..=ng {
        let gi = grad(i);
        if gi > gmax {
            gmax = gi;
            imax = i;
        }
        if gi < gmin {
            gmin = gi;
            imin = i;
        }
    }
    let values = vec![
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
        s[7],
        s[8],
        mode,
        s[9],
        s[10],
        s[11],
        s[12],
        s[13],
        s[14],
        s[15],
        entropy(h.iter().map(|c| c / n)),
        h.iter().map(|c| (c / n).powi(2)).sum(),
        gmax,
        imax as f64,
        gmin,
        imin as f64,
    ];
    FEATURES.iter().zip(values).map(|((nm, c), x)| feature(&format!("histogram_{nm}"), x, c, None)).collect()
}
