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
//!
//! Neighbourhood filters, each in its own module: `Wavelet` ([`super::wavelet`], 8 sub-band
//! images per level), `LoG` ([`super::laplacian_of_gaussian`], one image per σ) and
//! `Gradient` ([`super::gradient`]), `LBP2D` ([`super::local_binary_pattern`]) and `LBP3D`
//! ([`super::local_binary_pattern_3d`], two level images and a kurtosis image).

use super::Roi;
use super::laplacian_of_gaussian as log;
use super::local_binary_pattern::Lbp2dSettings;
use super::local_binary_pattern_3d::Lbp3dSettings;
use super::wavelet::{self, WaveletSettings};
use fedrad_imaging::SampleType;

/// A point transform of the intensities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PointTransform {
    Original,
    Square,
    SquareRoot,
    Logarithm,
    Exponential,
}

/// An image type a parameter file enables; one type can derive several images.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageType {
    Point(PointTransform),
    Wavelet(WaveletSettings),
    /// σ values in mm, each with its text as PyRadiomics prints it (it names the image).
    LoG(Vec<(f64, String)>),
    /// Gradient magnitude; `true` divides the differences by the spacing.
    Gradient {
        use_spacing: bool,
    },
    Lbp2d(Lbp2dSettings),
    Lbp3d(Lbp3dSettings),
}

impl ImageType {
    pub const ORIGINAL: ImageType = ImageType::Point(PointTransform::Original);

    /// How this filter can turn finite intensities into a non-finite value, for the error
    /// that reports one.
    pub fn non_finite_cause(&self) -> &'static str {
        match self {
            ImageType::Lbp3d(_) => "LBP3D's kurtosis is undefined where all sampled neighbours are equal",
            // Single-precision intensities filtered in double precision stay finite in
            // every other filter; a non-finite value there is a defect to report.
            _ => "not expected from this filter on finite intensities: please report it with the case",
        }
    }

    /// The key in a PyRadiomics parameter file.
    pub fn key(&self) -> &'static str {
        match self {
            ImageType::Point(p) => p.key(),
            ImageType::Wavelet(_) => "Wavelet",
            ImageType::LoG(_) => "LoG",
            ImageType::Gradient { .. } => "Gradient",
            ImageType::Lbp2d(_) => "LBP2D",
            ImageType::Lbp3d(_) => "LBP3D",
        }
    }

    /// Sort rank: point transforms, then wavelet, then LoG.
    pub fn rank(&self) -> usize {
        match self {
            ImageType::Point(p) => *p as usize,
            ImageType::Wavelet(_) => 10,
            ImageType::LoG(_) => 11,
            ImageType::Gradient { .. } => 12,
            ImageType::Lbp2d(_) => 13,
            ImageType::Lbp3d(_) => 14,
        }
    }

    /// Whether this type can filter an image of these dims and spacing. PyRadiomics skips a
    /// LoG σ that does not fit and so gives that case fewer features; FedRad refuses the
    /// case instead, so every case of a study has the same features.
    pub fn check(&self, dims: [usize; 3], spacing: [f64; 3]) -> Result<(), String> {
        match self {
            ImageType::LoG(sigmas) => match sigmas.iter().find(|(s, _)| !log::sigma_fits(*s, dims, spacing)) {
                Some((s, _)) => {
                    Err(format!("LoG σ = {s} mm needs every axis to have at least 4 and ⌈σ/spacing⌉ + 1 voxels; the image has {dims:?} voxels of {spacing:?} mm"))
                }
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// The images this type derives, named by their feature-name prefix, over the crop box
    /// `lo..=hi` of the whole (normalised) image `roi`; `cropped` holds the box's original
    /// intensities, `m` the whole image's max |x| and `sample` the type PyRadiomics holds the
    /// image in at this point (float64 once normalised).
    pub fn derive(&self, roi: &Roi, cropped: &[f64], lo: [usize; 3], hi: [usize; 3], m: f64, sample: SampleType) -> Vec<(String, Vec<f64>)> {
        match self {
            ImageType::Point(p) => vec![(p.prefix().to_string(), p.apply(cropped, m))],
            ImageType::Wavelet(w) => wavelet::decompose(&roi.intensities, roi.dims, lo, hi, w).unwrap_or_default(),
            ImageType::LoG(sigmas) => {
                sigmas.iter().map(|(sigma, text)| (log::prefix(text), log::log_filter(&roi.intensities, roi.dims, roi.spacing, *sigma, lo, hi))).collect()
            }
            ImageType::Gradient { use_spacing } => {
                vec![("gradient".to_string(), super::gradient::gradient_magnitude(&roi.intensities, roi.dims, roi.spacing, *use_spacing, lo, hi))]
            }
            ImageType::Lbp2d(s) => vec![("lbp-2D".to_string(), super::local_binary_pattern::lbp_2d(&roi.intensities, roi.dims, lo, hi, s))],
            ImageType::Lbp3d(s) => super::local_binary_pattern_3d::lbp_3d(&roi.intensities, &roi.mask, roi.dims, lo, hi, s, sample),
        }
    }
}

impl PointTransform {
    pub const ALL: [PointTransform; 5] =
        [PointTransform::Original, PointTransform::Square, PointTransform::SquareRoot, PointTransform::Logarithm, PointTransform::Exponential];

    /// The key in a PyRadiomics parameter file.
    pub fn key(self) -> &'static str {
        match self {
            PointTransform::Original => "Original",
            PointTransform::Square => "Square",
            PointTransform::SquareRoot => "SquareRoot",
            PointTransform::Logarithm => "Logarithm",
            PointTransform::Exponential => "Exponential",
        }
    }

    /// The prefix of feature names, as PyRadiomics names them (`square_firstorder_Mean`).
    pub fn prefix(self) -> &'static str {
        match self {
            PointTransform::Original => "original",
            PointTransform::Square => "square",
            PointTransform::SquareRoot => "squareroot",
            PointTransform::Logarithm => "logarithm",
            PointTransform::Exponential => "exponential",
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
            PointTransform::Original => values.to_vec(),
            PointTransform::Square => {
                let c = 1.0 / m.sqrt();
                values.iter().map(|x| (c * x).powi(2)).collect()
            }
            PointTransform::SquareRoot => values
                .iter()
                .map(|&x| {
                    if x > 0.0 {
                        (x * m).sqrt()
                    } else if x < 0.0 {
                        -(-x * m).sqrt()
                    } else {
                        0.0
                    }
                })
                .collect(),
            PointTransform::Logarithm => {
                let scale = m / (m + 1.0).ln();
                values
                    .iter()
                    .map(|&x| {
                        scale
                            * if x > 0.0 {
                                (x + 1.0).ln()
                            } else if x < 0.0 {
                                -(-(x - 1.0)).ln()
                            } else {
                                0.0
                            }
                    })
                    .collect()
            }
            PointTransform::Exponential => {
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
        assert_eq!(PointTransform::Square.apply(&x, m), vec![1.0, 1.0 / 16.0, 0.0, 1.0 / 16.0, 81.0 / 16.0, 16.0]);
        assert_eq!(PointTransform::SquareRoot.apply(&x, m), vec![-8.0, -4.0, 0.0, 4.0, 12.0, 16.0]);
        let l = PointTransform::Logarithm.apply(&x, m);
        assert!((l[5] - 16.0).abs() < 1e-12 && l[0] < 0.0 && l[2] == 0.0);
        let e = PointTransform::Exponential.apply(&x, m);
        // Applied to a part with the whole image's m: the same values.
        assert_eq!(PointTransform::Logarithm.apply(&x[3..], m), l[3..].to_vec());
        assert!((e[5] - 16.0).abs() < 1e-9 && (e[2] - 1.0).abs() < 1e-15);
    }
}
