//! Global standardisation of features over the training cohort.
//!
//! Each site sends, per outcome class and feature, the number of finite values, their mean and centred sum of
//! squares, and the number of non-finite values, over its training patients; the coordinator
//! merges them with Chan's update (exact and stable, unlike raw sums of squares of large
//! values). A feature is dropped if any training value anywhere is non-finite, or if it is
//! constant over the pooled training cohort (SD ≤ 1e-12 · max(1, |mean|)).
//!
//! The SD is the population SD (denominator n), as glmnet and scikit-learn's StandardScaler
//! use, so a LASSO on the standardised features has the same λ scale as theirs.

use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::Aggregate;
use crate::stats::Moments;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    NonFinite,
    Constant,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardisation {
    /// Training patients.
    pub n: u64,
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    /// Indices of the features kept, ascending.
    pub kept: Vec<usize>,
    pub dropped: Vec<(usize, DropReason)>,
}

/// Per outcome class, per feature: the merged moments and non-finite counts. Standardisation
/// merges the two classes; the univariate Welch test compares them.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMoments {
    pub n: u64,
    /// [negatives, positives], one entry per feature.
    pub by_class: [Vec<Moments>; 2],
    pub nonfinite: Vec<u64>,
}

impl FeatureMoments {
    pub fn standardisation(&self) -> Standardisation {
        let all: Vec<Moments> = self.by_class[0].iter().zip(&self.by_class[1]).map(|(a, b)| a.merge(*b)).collect();
        finish(self.n, &all, &self.nonfinite)
    }
}

const CLASSES: [&str; 2] = ["negative", "positive"];

// ---- site half ---------------------------------------------------------------------------

/// `rows` are the site's training patients, one feature vector each, with their outcomes.
/// Every outcome class must reach `min_count` (its moments leave the site).
pub fn site_moments(rows: &[Vec<f64>], outcome: &[bool], n_features: usize, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    require_min_count("the training cohort", rows.len() as u64, min_count)?;
    if let Some(r) = rows.iter().find(|r| r.len() != n_features) {
        return Err(SiteRefusal::InvalidParameters(format!("a feature row has {} values, the task expects {n_features}", r.len())));
    }
    let mut b = AggregateBuilder::new(rows.len() as u64);
    for (class, label) in CLASSES.iter().enumerate() {
        let members: Vec<&Vec<f64>> = rows.iter().zip(outcome).filter(|(_, y)| **y == (class == 1)).map(|(r, _)| r).collect();
        require_min_count(&format!("training patients with a {label} outcome"), members.len() as u64, min_count)?;
        let (mut count, mut mean, mut m2, mut nonfinite) = (vec![0.0; n_features], vec![0.0; n_features], vec![0.0; n_features], vec![0.0; n_features]);
        for j in 0..n_features {
            let xs: Vec<f64> = members.iter().map(|r| r[j]).filter(|v| v.is_finite()).collect();
            nonfinite[j] = (members.len() - xs.len()) as f64;
            let m = Moments::from_values(&xs);
            (count[j], mean[j], m2[j]) = (m.n, m.mean, m.m2);
        }
        b = b
            .vector(format!("{label}.count"), count)
            .vector(format!("{label}.mean"), mean)
            .vector(format!("{label}.m2"), m2)
            .vector(format!("{label}.nonfinite"), nonfinite);
    }
    Ok(b.build())
}

// ---- coordinator half --------------------------------------------------------------------

pub fn combine(answers: &[SiteAggregate], n_features: usize) -> Result<FeatureMoments, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut by_class = [vec![Moments::default(); n_features], vec![Moments::default(); n_features]];
    let mut nonfinite = vec![0u64; n_features];
    let mut n = 0;
    for a in answers {
        let mut members = 0;
        for (class, label) in CLASSES.iter().enumerate() {
            let count = a.counts(&format!("{label}.count"), n_features)?;
            let mean = a.vector(&format!("{label}.mean"), n_features)?;
            let m2 = a.vector(&format!("{label}.m2"), n_features)?;
            let nf = a.counts(&format!("{label}.nonfinite"), n_features)?;
            let class_n = count.first().copied().unwrap_or(0) + nf.first().copied().unwrap_or(0);
            for j in 0..n_features {
                if count[j] + nf[j] != class_n {
                    return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: format!("feature {j}: counts do not add up") });
                }
                by_class[class][j] = by_class[class][j].merge(Moments { n: count[j] as f64, mean: mean[j], m2: m2[j] });
                nonfinite[j] += nf[j];
            }
            members += class_n;
        }
        if n_features > 0 && members != a.patient_count() {
            return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: "class counts do not add up".into() });
        }
        n += a.patient_count();
    }
    Ok(FeatureMoments { n, by_class, nonfinite })
}

fn finish(n: u64, moments: &[Moments], nonfinite: &[u64]) -> Standardisation {
    let mut s = Standardisation { n, mean: Vec::new(), sd: Vec::new(), kept: Vec::new(), dropped: Vec::new() };
    for (j, m) in moments.iter().enumerate() {
        let sd = if m.n > 0.0 { (m.m2 / m.n).sqrt() } else { f64::NAN };
        s.mean.push(m.mean);
        s.sd.push(sd);
        if nonfinite[j] > 0 {
            s.dropped.push((j, DropReason::NonFinite));
        } else if !(sd > 1e-12 * m.mean.abs().max(1.0)) {
            s.dropped.push((j, DropReason::Constant));
        } else {
            s.kept.push(j);
        }
    }
    s
}

// ---- pooled reference --------------------------------------------------------------------

/// The same from all training rows in one process (two-pass moments).
pub fn pooled(rows: &[Vec<f64>], outcome: &[bool], n_features: usize) -> FeatureMoments {
    let mut by_class = [Vec::new(), Vec::new()];
    let mut nonfinite = vec![0u64; n_features];
    for (class, slot) in by_class.iter_mut().enumerate() {
        for j in 0..n_features {
            let all: Vec<f64> = rows.iter().zip(outcome).filter(|(_, y)| **y == (class == 1)).map(|(r, _)| r[j]).collect();
            let xs: Vec<f64> = all.iter().copied().filter(|v| v.is_finite()).collect();
            nonfinite[j] += (all.len() - xs.len()) as u64;
            slot.push(Moments::from_values(&xs));
        }
    }
    FeatureMoments { n: rows.len() as u64, by_class, nonfinite }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 229 patients × 40 features with wide scales, a constant and a non-finite feature.
    fn training_rows() -> Vec<Vec<f64>> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..229)
            .map(|i| {
                (0..40)
                    .map(|j| match j {
                        0 => 7.0,
                        1 if i == 100 => f64::NAN,
                        _ => 10f64.powi(j % 9 - 2) * (next() + 0.1 * j as f64) + 1e6 * (j % 3 == 0) as u8 as f64,
                    })
                    .collect()
            })
            .collect()
    }

    fn federated(rows: &[Vec<f64>], sizes: &[usize]) -> Standardisation {
        let mut answers = Vec::new();
        let mut start = 0;
        for (k, size) in sizes.iter().enumerate() {
            let outcome: Vec<bool> = (start..start + size).map(|i| i % 3 == 0).collect();
            let agg = site_moments(&rows[start..start + size], &outcome, 40, 1).unwrap();
            answers.push(SiteAggregate::new(format!("site-{k}"), agg));
            start += size;
        }
        assert_eq!(start, rows.len());
        combine(&answers, 40).unwrap().standardisation()
    }

    fn assert_same(a: &Standardisation, b: &Standardisation) {
        assert_eq!((a.n, &a.kept, &a.dropped), (b.n, &b.kept, &b.dropped));
        for &j in &a.kept {
            assert!((a.mean[j] - b.mean[j]).abs() <= 1e-12 * b.mean[j].abs().max(1.0), "mean {j}: {} vs {}", a.mean[j], b.mean[j]);
            // 1e-9 relative, or what f64 data at this level can resolve (a spread of 1e-2 on
            // values near 1e6 is itself only known to ~1e-10).
            let tol = 1e-9 * b.sd[j] + 1e-14 * b.mean[j].abs();
            assert!((a.sd[j] - b.sd[j]).abs() <= tol, "sd {j}: {} vs {}", a.sd[j], b.sd[j]);
        }
    }

    #[test]
    fn partition_standardisation_1_4_and_7_uneven_sites_equal_pooled() {
        let rows = training_rows();
        let outcome: Vec<bool> = (0..rows.len()).map(|i| i % 3 == 0).collect();
        let reference = pooled(&rows, &outcome, 40).standardisation();
        assert_eq!(reference.dropped, vec![(0, DropReason::Constant), (1, DropReason::NonFinite)]);
        for sizes in [vec![229], vec![73, 62, 53, 41], vec![5, 60, 11, 40, 7, 90, 16]] {
            assert_same(&federated(&rows, &sizes), &reference);
        }
    }

    #[test]
    fn a_site_with_too_few_training_patients_refuses() {
        let rows = training_rows();
        let outcome = vec![true, false, false, false, true, false, false, false, false, false];
        assert!(matches!(site_moments(&rows[..4], &outcome[..4], 40, 5), Err(SiteRefusal::BelowMinCount { n: 4, min: 5, .. })));
        // Enough patients, but only two with a positive outcome: their moments would leave.
        assert!(matches!(site_moments(&rows[..10], &outcome, 40, 5), Err(SiteRefusal::BelowMinCount { n: 2, min: 5, .. })));
    }
}
