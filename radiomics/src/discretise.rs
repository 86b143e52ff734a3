//! Intensity discretisation into grey levels 1..=Ng (IBSI section 2.7).

use super::{GreyLevels, Roi};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Discretisation {
    /// Intensities are already integer grey levels ≥ 1 (the IBSI digital phantom);
    /// Ng is the largest level in the ROI.
    None,
    /// Fixed bin number (IBSI K15C): g = ⌊n (x − min)/(max − min)⌋ + 1, with g = n at max.
    FixedBinNumber(u32),
    /// Fixed bin size from a lower bound (IBSI Q3RU): g = ⌊(x − lower)/w⌋ + 1.
    FixedBinSize { width: f64, lower: f64 },
    /// PyRadiomics' `binWidth`: bin edges at multiples of w, g = ⌊x/w⌋ − ⌊min/w⌋ + 1.
    PyRadiomicsBinWidth(f64),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DiscretisationError {
    #[error("the ROI is empty")]
    EmptyRoi,
    #[error("intensity {0} is not an integer grey level ≥ 1 (discretisation 'none')")]
    NotAGreyLevel(f64),
    #[error("invalid discretisation parameter: {0}")]
    Parameter(String),
}

pub fn discretise(roi: &Roi, how: Discretisation) -> Result<GreyLevels, DiscretisationError> {
    let values = roi.roi_intensities();
    if values.is_empty() {
        return Err(DiscretisationError::EmptyRoi);
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let level = |x: f64| -> Result<u32, DiscretisationError> {
        Ok(match how {
            Discretisation::None => {
                if x.fract() != 0.0 || x < 1.0 {
                    return Err(DiscretisationError::NotAGreyLevel(x));
                }
                x as u32
            }
            Discretisation::FixedBinNumber(n) => {
                if n == 0 {
                    return Err(DiscretisationError::Parameter("bin count 0".into()));
                }
                if max == min { 1 } else { ((n as f64 * (x - min) / (max - min)).floor() as u32 + 1).min(n) }
            }
            Discretisation::FixedBinSize { width, lower } => {
                if !(width > 0.0) {
                    return Err(DiscretisationError::Parameter(format!("bin width {width}")));
                }
                ((x - lower) / width).floor().max(0.0) as u32 + 1
            }
            Discretisation::PyRadiomicsBinWidth(w) => {
                if !(w > 0.0) {
                    return Err(DiscretisationError::Parameter(format!("bin width {w}")));
                }
                ((x / w).floor() - (min / w).floor()) as u32 + 1
            }
        })
    };
    let mut levels = vec![0u32; roi.mask.len()];
    let mut ng = 0;
    for (i, (x, m)) in roi.intensities.iter().zip(&roi.mask).enumerate() {
        if *m {
            let g = level(*x)?;
            levels[i] = g;
            ng = ng.max(g);
        }
    }
    if let Discretisation::FixedBinNumber(n) = how {
        ng = n;
    }
    Ok(GreyLevels { dims: roi.dims, levels, ng })
}
