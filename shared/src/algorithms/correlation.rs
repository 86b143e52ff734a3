//! The Pearson correlation matrix of the training cohort, and the redundancy filter built on it.
//!
//! **Method.** Each site standardises its training rows with the study's standardiser (the
//! pooled means and SDs of the standardisation step), zᵢ = (xᵢ − μᵢ)/σᵢ, and sends their sums
//! sᵢ = Σ zᵢ and the cross-products Sᵢⱼ = Σ zᵢzⱼ (the upper triangle, as S is symmetric). The
//! coordinator needs only their totals over the sites (in a study that secure-sums it gets
//! nothing else): with n patients, Cᵢⱼ = Sᵢⱼ − sᵢsⱼ/n are the centred cross-products and
//! rᵢⱼ = Cᵢⱼ / √(CᵢᵢCⱼⱼ). Because the centre is the pooled mean, sᵢ is near 0 and nothing large
//! cancels; a standardised value is at most √n in size, so |Sᵢⱼ| ≤ n stays well within the
//! fixed-point range of a secure sum.
//!
//! Redundancy filter: features are visited from the most to the least associated with the
//! outcome (smallest univariate p-value, then largest |statistic|, both compared at 8
//! significant decimals, then column order); a
//! feature is dropped if its |r| with one already kept exceeds the threshold. The result is
//! deterministic and never drops both members of a pair.
//!
//! **What a site accepts.** The population is its training cohort (at least `min_count`
//! patients) and the columns a table of the plan; the standardiser is the only free input.
//! Cross-products about any centre and scale reveal no more than n, Σx and Σxxᵀ of that
//! population, but a zoomed scale would push values out of the fixed-point range (a refusal
//! is itself a yes-or-no answer about the data), so the site checks it as it checks every
//! standardiser: no finer than its own SD / `max_scale_ratio`, and the one each column was
//! first used with (site agent's `acceptance::standardiser` and ledger).
//!
//! **Pooled reference:** [`pooled`], two-pass centred cross-products of all rows.

use super::glm::Standardiser;
use super::univariate::FeatureTest;
use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::Aggregate;

/// Merged co-moments of p features.
#[derive(Debug, Clone, PartialEq)]
pub struct CoMoments {
    pub n: f64,
    pub mean: Vec<f64>,
    /// Row-major p × p centred cross-products.
    pub c: Vec<f64>,
}

impl CoMoments {
    fn from_rows(rows: &[Vec<f64>], p: usize) -> Self {
        let n = rows.len() as f64;
        let mean: Vec<f64> = (0..p).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n).collect();
        let mut c = vec![0.0; p * p];
        let mut d = vec![0.0; p];
        for r in rows {
            for j in 0..p {
                d[j] = r[j] - mean[j];
            }
            for a in 0..p {
                for b in a..p {
                    c[a * p + b] += d[a] * d[b];
                }
            }
        }
        for a in 0..p {
            for b in 0..a {
                c[a * p + b] = c[b * p + a];
            }
        }
        CoMoments { n, mean, c }
    }

    /// Pearson r, row-major.
    pub fn correlation(&self) -> Vec<f64> {
        let p = self.mean.len();
        (0..p * p)
            .map(|k| {
                let (a, b) = (k / p, k % p);
                if a == b { 1.0 } else { self.c[k] / (self.c[a * p + a] * self.c[b * p + b]).sqrt() }
            })
            .collect()
    }
}

// ---- site half ---------------------------------------------------------------------------

/// The site's sums and cross-products of its training rows standardised by `std`.
pub fn site_comoments(rows: &[Vec<f64>], std: &Standardiser, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    require_min_count("the training cohort", rows.len() as u64, min_count)?;
    let p = std.center.len();
    if rows.iter().any(|r| r.len() != p || r.iter().any(|v| !v.is_finite())) {
        return Err(SiteRefusal::Precondition("a training patient lacks a finite value of a requested feature".into()));
    }
    let mut sum = vec![0.0; p];
    let mut cross = vec![0.0; p * (p + 1) / 2];
    let mut z = vec![0.0; p];
    for r in rows {
        for j in 0..p {
            z[j] = (r[j] - std.center[j]) / std.scale[j];
            sum[j] += z[j];
        }
        // Symmetric: the upper triangle, row by row, diagonal included.
        let mut k = 0;
        for a in 0..p {
            for b in a..p {
                cross[k] += z[a] * z[b];
                k += 1;
            }
        }
    }
    Ok(AggregateBuilder::new(rows.len() as u64).vector("sum", sum).vector("cross_products", cross).build())
}

// ---- coordinator half --------------------------------------------------------------------

/// The co-moments of the standardised features from every site's answer (or their one sum).
pub fn combine(answers: &[SiteAggregate], p: usize) -> Result<CoMoments, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let (mut n, mut sum, mut cross) = (0.0, vec![0.0; p], vec![0.0; p * p]);
    for a in answers {
        n += a.patient_count() as f64;
        for (total, v) in sum.iter_mut().zip(a.vector("sum", p)?) {
            *total += v;
        }
        for (total, v) in cross.iter_mut().zip(super::symmetric_from_upper(a.vector("cross_products", p * (p + 1) / 2)?, p)) {
            *total += v;
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let c = (0..p * p).map(|k| cross[k] - n * mean[k / p] * mean[k % p]).collect();
    Ok(CoMoments { n, mean, c })
}

/// A feature dropped as redundant, with the kept feature it duplicates.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Redundant {
    pub column: usize,
    pub kept_column: usize,
    pub r: f64,
}

/// `tests[i]` is feature i of the correlation matrix `r` (p × p). Returns the kept features'
/// positions (ascending) and the dropped ones.
pub fn redundancy_filter(r: &[f64], tests: &[FeatureTest], threshold: f64) -> (Vec<usize>, Vec<Redundant>) {
    let p = tests.len();
    // Association as a quantised key, so features whose tests agree to rounding (radiomics has
    // mathematically identical features, e.g. GLCM cluster tendency and sum variance) tie and
    // the column order decides, whatever the summation order of the sites was.
    let key = |t: &FeatureTest| {
        let q = |v: f64| if v.is_finite() { (v * 1e8).round() as i64 } else { i64::MAX };
        (q(t.p_value.max(1e-300).log10()), -q(t.statistic.abs().ln_1p()), t.column)
    };
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by_key(|&i| key(&tests[i]));
    let mut kept: Vec<usize> = Vec::new();
    let mut dropped = Vec::new();
    for i in order {
        match kept.iter().find(|&&k| r[i * p + k].abs() > threshold) {
            Some(&k) => dropped.push(Redundant { column: tests[i].column, kept_column: tests[k].column, r: r[i * p + k] }),
            None => kept.push(i),
        }
    }
    kept.sort_unstable();
    (kept, dropped)
}

// ---- pooled reference --------------------------------------------------------------------

pub fn pooled(rows: &[Vec<f64>], p: usize) -> CoMoments {
    CoMoments::from_rows(rows, p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::lasso::tests::cohort;

    #[test]
    fn partition_correlation_and_redundancy_filter_match_pooled() {
        let (x, _, _) = cohort(9);
        let reference = pooled(&x, 40).correlation();
        let tests: Vec<FeatureTest> =
            (0..40).map(|j| FeatureTest { column: j, statistic: 1.0, p_value: if j % 8 == 0 { 0.001 } else { 0.01 + j as f64 * 1e-4 }, effect: 0.0 }).collect();
        let reference_filter = redundancy_filter(&reference, &tests, 0.5);
        // The study's standardiser (the pooled moments); any other only moves the centre.
        let all = pooled(&x, 40);
        let std = Standardiser { center: all.mean.clone(), scale: (0..40).map(|j| (all.c[j * 40 + j] / all.n).sqrt()).collect() };
        for sizes in [vec![229], vec![73, 62, 53, 41], vec![5, 60, 11, 40, 7, 90, 16]] {
            let mut answers = Vec::new();
            let mut start = 0;
            for (k, s) in sizes.iter().enumerate() {
                answers.push(SiteAggregate::new(format!("s{k}"), site_comoments(&x[start..start + s], &std, 1).unwrap()));
                start += s;
            }
            // As the coordinator sums them: in fixed point (masked or not) from two sites on.
            let summed = if answers.len() > 1 { vec![crate::secure_sum::combine(&answers).unwrap()] } else { answers.clone() };
            let mut r = Vec::new();
            for answers in [answers, summed] {
                r = combine(&answers, 40).unwrap().correlation();
                for (a, b) in r.iter().zip(&reference) {
                    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
                }
            }
            let (kept, dropped) = redundancy_filter(&r, &tests, 0.5);
            assert_eq!(kept, reference_filter.0);
            assert_eq!(dropped.len(), reference_filter.1.len());
            for (a, b) in dropped.iter().zip(&reference_filter.1) {
                assert_eq!((a.column, a.kept_column), (b.column, b.kept_column));
                assert!((a.r - b.r).abs() < 1e-12);
            }
        }
        // Features j and j + 8 share a latent factor; the most associated one is never dropped.
        let (kept, dropped) = reference_filter;
        assert!(kept.contains(&0));
        assert!(dropped.iter().all(|d| d.r.abs() > 0.5 && kept.contains(&d.kept_column)));
        assert!(!dropped.is_empty());
    }
}
