//! Image types: the image the features are computed on. Point-wise transforms act on the
//! whole (normalised) image, as in PyRadiomics, and keep the original's masks; each is
//! rescaled to the range of the original so one bin width suits all.
//!
//! | image type | formula (M = max \|x\| over the image) |
//! |---|---|
//! | `Original` | x |
//! | `Square` | (x/√M)² |
//! | `SquareRoot` | sign(x) √(\|x\| M) |
//! | `Logarithm` | sign(x) ln(\|x\| + 1), rescaled so that max \|·\| = M |
//! | `Exponential` | exp(x ln(M)/M) |

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageType {
    Original,
    Square,
    SquareRoot,
    Logarithm,
    Exponential,
}

impl ImageType {
    pub const ALL: [ImageType; 5] = [ImageType::Original, ImageType::Square, ImageType::SquareRoot, ImageType::Logarithm, ImageType::Exponential];

    /// The key in a PyRadiomics parameter file.
    pub fn key(self) -> &'static str {
        match self {
            ImageType::Original => "Original",
            ImageType::Square => "Square",
            ImageType::SquareRoot => "SquareRoot",
            ImageType::Logarithm => "Logarithm",
            ImageType::Exponential => "Exponential",
        }
    }

    /// The prefix of feature names, as PyRadiomics names them (`square_firstorder_Mean`).
    pub fn prefix(self) -> &'static str {
        match self {
            ImageType::Original => "original",
            ImageType::Square => "square",
            ImageType::SquareRoot => "squareroot",
            ImageType::Logarithm => "logarithm",
            ImageType::Exponential => "exponential",
        }
    }

    /// The filtered values. `m` is max |x| over the *whole* image (the transforms are
    /// point-wise given m, so they can be applied to a cropped region with the whole
    /// image's m and give the same values). For the logarithm, max |sign(x) ln(|x| + 1)|
    /// over the image is ln(m + 1), since ln is monotonic.
    pub fn apply(self, values: &[f64], m: f64) -> Vec<f64> {
        if m == 0.0 {
            return values.to_vec();
        }
        match self {
            ImageType::Original => values.to_vec(),
            ImageType::Square => {
                let c = 1.0 / m.sqrt();
                values.iter().map(|x| (c * x).powi(2)).collect()
            }
            ImageType::SquareRoot => values.iter().map(|&x| if x > 0.0 { (x * m).sqrt() } else if x < 0.0 { -(-x * m).sqrt() } else { 0.0 }).collect(),
            ImageType::Logarithm => {
                let scale = m / (m + 1.0).ln();
                values.iter().map(|&x| scale * if x > 0.0 { (x + 1.0).ln() } else if x < 0.0 { -(-(x - 1.0)).ln() } else { 0.0 }).collect()
            }
            ImageType::Exponential => {
                let c = m.ln() / m;
                values.iter().map(|x| (c * x).exp()).collect()
            }
        }
    }
}

/// max |x|, the scale of the point transforms.
pub fn max_abs(values: &[f64]) -> f64 {
    values.iter().fold(0.0f64, |a, v| a.max(v.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_transforms_keep_sign_and_range() {
        let x = [-4.0, -1.0, 0.0, 1.0, 9.0, 16.0];
        let m = max_abs(&x);
        assert_eq!(ImageType::Square.apply(&x, m), vec![1.0, 1.0 / 16.0, 0.0, 1.0 / 16.0, 81.0 / 16.0, 16.0]);
        assert_eq!(ImageType::SquareRoot.apply(&x, m), vec![-8.0, -4.0, 0.0, 4.0, 12.0, 16.0]);
        let l = ImageType::Logarithm.apply(&x, m);
        assert!((l[5] - 16.0).abs() < 1e-12 && l[0] < 0.0 && l[2] == 0.0);
        let e = ImageType::Exponential.apply(&x, m);
        // Applied to a part with the whole image's m: the same values.
        assert_eq!(ImageType::Logarithm.apply(&x[3..], m), l[3..].to_vec());
        assert!((e[5] - 16.0).abs() < 1e-9 && (e[2] - 1.0).abs() < 1e-15);
    }
}
