//! The `Gradient` image type: the gradient magnitude, as PyRadiomics computes it with ITK's
//! `GradientMagnitudeImageFilter`.
//!
//! ```text
//! |∇x|(v) = √( Σ_d g_d² ),   g_d = (0.5/s_d) · x(v − e_d) − (0.5/s_d) · x(v + e_d)
//! ```
//!
//! central differences along each axis d, divided by the spacing s_d when
//! `gradientUseSpacing` is true (PyRadiomics' default) and by 1 otherwise; beyond the
//! image's edge the edge voxel is repeated (ITK's zero-flux Neumann condition). The sign of
//! g_d follows ITK's derivative operator and does not change the magnitude.

/// The gradient magnitude over the box `lo..=hi` of `image` (dims, x-fastest).
pub fn gradient_magnitude(image: &[f64], dims: [usize; 3], spacing: [f64; 3], use_spacing: bool, lo: [usize; 3], hi: [usize; 3]) -> Vec<f64> {
    let scale = [0, 1, 2].map(|d| if use_spacing { 1.0 / spacing[d] } else { 1.0 });
    // ITK scales the operator's coefficients (0.5, 0, −0.5) by 1/spacing.
    let (c_before, c_after) = (scale.map(|s| 0.5 * s), scale.map(|s| -0.5 * s));
    let at = |x: usize, y: usize, z: usize| image[x + dims[0] * (y + dims[1] * z)];
    let mut out = Vec::with_capacity((hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1) * (hi[2] - lo[2] + 1));
    for z in lo[2]..=hi[2] {
        for y in lo[1]..=hi[1] {
            for x in lo[0]..=hi[0] {
                let p = [x, y, z];
                let mut a = 0.0;
                for d in 0..3 {
                    let (mut before, mut after) = (p, p);
                    before[d] = p[d].saturating_sub(1);
                    after[d] = (p[d] + 1).min(dims[d] - 1);
                    let g = c_before[d] * at(before[0], before[1], before[2]) + 0.0 * at(x, y, z) + c_after[d] * at(after[0], after[1], after[2]);
                    a += g * g;
                }
                out.push(a.sqrt());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_of_a_ramp_is_its_slope() {
        // x·2 + y·3 in mm on a grid of spacing (0.5, 1, 2): |∇| = √13 inside; at the x edges
        // the repeated voxel halves the x difference.
        let dims = [6, 5, 4];
        let spacing = [0.5, 1.0, 2.0];
        let img: Vec<f64> = (0..120).map(|i| 2.0 * (i % 6) as f64 * 0.5 + 3.0 * ((i / 6) % 5) as f64).collect();
        let g = gradient_magnitude(&img, dims, spacing, true, [0, 0, 0], [5, 4, 3]);
        assert!((g[2 + 6 * (2 + 5)] - 13f64.sqrt()).abs() < 1e-12);
        assert!((g[6 * (2 + 5)] - (1.0f64 + 9.0).sqrt()).abs() < 1e-12);
        let unscaled = gradient_magnitude(&img, dims, spacing, false, [2, 2, 1], [2, 2, 1]);
        assert!((unscaled[0] - (1.0f64 + 9.0).sqrt()).abs() < 1e-12);
    }
}
