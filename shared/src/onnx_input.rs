//! How a 2.5D crop becomes the input of a study-supplied ONNX network: part of the study's
//! plan, so both the coordinator (which validates the study file) and the site (which runs the
//! network) read it from here.

use crate::algorithms::encoder::Architecture;

/// How a crop becomes the network's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intensity {
    Zscore,
    Imagenet,
}

impl Intensity {
    pub fn parse(s: &str) -> Option<Intensity> {
        match s {
            "zscore" => Some(Intensity::Zscore),
            "imagenet" => Some(Intensity::Imagenet),
            _ => None,
        }
    }
}

/// The input recipe of a study-supplied network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputRecipe {
    pub size: usize,
    pub channels: usize,
    pub field_mm: f64,
    pub intensity: Intensity,
}

impl InputRecipe {
    pub fn validate(&self) -> Result<(), String> {
        if self.size < 8 || self.size > 512 || !self.size.is_multiple_of(4) {
            return Err(format!("input_size must be a multiple of 4 from 8 to 512, not {}", self.size));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(format!("channels must be 1 or 3, not {}", self.channels));
        }
        if !(self.field_mm.is_finite() && self.field_mm >= 4.0 && self.field_mm <= 500.0) {
            return Err(format!("field_mm must be from 4 to 500, not {}", self.field_mm));
        }
        Ok(())
    }

    /// The crop recipe shared with the encoder (3 slices; one is kept for 1 channel).
    pub fn crop_architecture(&self) -> Architecture {
        Architecture { crop: self.size, field_mm: self.field_mm, ..Architecture::default() }
    }

    /// The network input (channels × size × size) from a 3-slice z-scored crop.
    pub fn input(&self, crop: &[f64]) -> Vec<f32> {
        let plane = self.size * self.size;
        let slices: Vec<&[f64]> = if self.channels == 1 { vec![&crop[plane..2 * plane]] } else { crop.chunks(plane).collect() };
        match self.intensity {
            Intensity::Zscore => slices.iter().flat_map(|s| s.iter().map(|v| *v as f32)).collect(),
            Intensity::Imagenet => {
                const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
                const SD: [f64; 3] = [0.229, 0.224, 0.225];
                let lo = slices.iter().flat_map(|s| s.iter()).cloned().fold(f64::INFINITY, f64::min);
                let hi = slices.iter().flat_map(|s| s.iter()).cloned().fold(f64::NEG_INFINITY, f64::max);
                let range = (hi - lo).max(1e-12);
                let mut out = Vec::with_capacity(self.channels * plane);
                for (c, s) in slices.iter().enumerate() {
                    let k = if self.channels == 1 { 0 } else { c };
                    out.extend(s.iter().map(|v| (((v - lo) / range - MEAN[k]) / SD[k]) as f32));
                }
                out
            }
        }
    }
}
