//! Global standardisation of features over the training cohort, and the per-class moments
//! Welch's test and naive Bayes read.
//!
//! **Method.** Two rounds of sums, so that the coordinator needs only their totals over the
//! sites (in a study that secure-sums, it learns nothing else; `crate::secure_sum`):
//! 1. *Sums* ([`MomentsRequest::Sums`]). Per outcome class and feature, over the site's
//!    training patients: the number of finite values n, their raw sum Σx, and the number of
//!    non-finite values.
//! 2. *Squares* ([`MomentsRequest::Squares`]). About the pooled means μ from round 1, per class
//!    and feature: Σ(x − μ)².
//!
//! The coordinator ([`MomentsRun`]) then has each class's mean x̄ = Σx/n and centred sum of
//! squares M2 = Σ(x − μ)² − n(x̄ − μ)². Centring at the pooled mean keeps this stable where raw
//! sums of squares would cancel (a feature of 10⁶ ± 10⁻² keeps its spread), and the sites'
//! sums are carried in wide fixed-point words that add exactly (`secure_sum::encode_wide`),
//! so the result does not depend on the order in which their answers are added. A feature is dropped if
//! any training value anywhere is non-finite, or if it is constant over the pooled training
//! cohort (SD ≤ 1e-12 · max(1, |mean|)).
//!
//! The SD is the population SD (denominator n), as glmnet and scikit-learn's StandardScaler
//! use, so a LASSO on the standardised features has the same λ scale as theirs.
//!
//! **What a site accepts.** Round 1 has no free parameter: the population is the site's
//! training cohort and its outcome classes, each of at least `min_count` patients. Round 2's
//! centres are the coordinator's to choose, and that is safe: for any centre c,
//! Σ(x − c)² = Σx² − 2cΣx + nc², so sums about any number of centres tell no more than n, Σx
//! and Σx² of the same population — what one honest pair of rounds gives. The site asks only
//! for one finite centre per column. Which columns and tables may be asked is checked where
//! the site holds them (the plan's tables and designs, and the population ledger).
//!
//! **Pooled reference:** [`pooled`], two-pass moments over all rows in one process.

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

/// What the coordinator asks the sites next.
#[derive(Debug, Clone, PartialEq)]
pub enum MomentsRequest {
    /// Round 1: per class and feature, counts and Σx.
    Sums,
    /// Round 2: per class and feature, Σ(x − centre)², one centre per feature.
    Squares { centre: Vec<f64> },
}

// ---- site half ---------------------------------------------------------------------------

/// `rows` are the site's training patients, one feature vector each, with their outcomes;
/// `centre` is `None` for round 1 and round 2's centres otherwise. Every outcome class must
/// reach `min_count` (its sums leave the site).
pub fn site_moments(rows: &[Vec<f64>], outcome: &[bool], n_features: usize, centre: Option<&[f64]>, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    require_min_count("the training cohort", rows.len() as u64, min_count)?;
    if let Some(r) = rows.iter().find(|r| r.len() != n_features) {
        return Err(SiteRefusal::InvalidParameters(format!("a feature row has {} values, the task expects {n_features}", r.len())));
    }
    if let Some(c) = centre {
        site_accepts_centre(c, n_features)?;
    }
    let mut b = AggregateBuilder::new(rows.len() as u64);
    for (class, label) in CLASSES.iter().enumerate() {
        let members: Vec<&Vec<f64>> = rows.iter().zip(outcome).filter(|(_, y)| **y == (class == 1)).map(|(r, _)| r).collect();
        require_min_count(&format!("training patients with a {label} outcome"), members.len() as u64, min_count)?;
        let finite = |j: usize| members.iter().map(move |r| r[j]).filter(|v| v.is_finite());
        b = match centre {
            None => b
                .vector(format!("{label}.count"), (0..n_features).map(|j| finite(j).count() as f64).collect())
                .vector(format!("{label}.nonfinite"), (0..n_features).map(|j| (members.len() - finite(j).count()) as f64).collect())
                .vector(format!("raw.{label}.sum"), (0..n_features).map(|j| finite(j).sum()).collect()),
            Some(c) => b.vector(format!("raw.{label}.squares"), (0..n_features).map(|j| finite(j).map(|v| (v - c[j]) * (v - c[j])).sum()).collect()),
        };
    }
    Ok(b.build())
}

/// Round 2's centres: one finite number per column (any such centre reveals no more than
/// another; see the module doc).
pub fn site_accepts_centre(centre: &[f64], n_features: usize) -> Result<(), SiteRefusal> {
    if centre.len() != n_features {
        return Err(SiteRefusal::InvalidParameters(format!("{} centres for {n_features} columns", centre.len())));
    }
    if let Some(j) = centre.iter().position(|c| !c.is_finite()) {
        return Err(SiteRefusal::InvalidParameters(format!("the centre of column {j} is not a finite number")));
    }
    Ok(())
}

// ---- coordinator half --------------------------------------------------------------------

/// Round 1's totals.
#[derive(Debug, Clone, PartialEq)]
struct ClassSums {
    n: u64,
    count: [Vec<u64>; 2],
    sum: [Vec<f64>; 2],
    nonfinite: Vec<u64>,
}

impl ClassSums {
    /// The pooled mean of each column's finite values (0 where there is none).
    fn centre(&self) -> Vec<f64> {
        (0..self.nonfinite.len())
            .map(|j| {
                let n = self.count[0][j] + self.count[1][j];
                if n > 0 { (self.sum[0][j] + self.sum[1][j]) / n as f64 } else { 0.0 }
            })
            .collect()
    }
}

/// The coordinator's side of the two rounds: [`Self::request`] what to ask, [`Self::absorb`]
/// the answers (every site's, or their one secure sum), until [`Self::moments`] is there.
#[derive(Debug, Clone)]
pub struct MomentsRun {
    n_features: usize,
    sums: Option<ClassSums>,
    moments: Option<FeatureMoments>,
}

impl MomentsRun {
    pub fn new(n_features: usize) -> Self {
        MomentsRun { n_features, sums: None, moments: None }
    }

    /// The next round to ask; `None` once the moments are known.
    pub fn request(&self) -> Option<MomentsRequest> {
        match (&self.sums, &self.moments) {
            (_, Some(_)) => None,
            (None, None) => Some(MomentsRequest::Sums),
            (Some(sums), None) => Some(MomentsRequest::Squares { centre: sums.centre() }),
        }
    }

    pub fn absorb(&mut self, answers: &[SiteAggregate]) -> Result<(), CombineError> {
        if answers.is_empty() {
            return Err(CombineError::NoSites);
        }
        let p = self.n_features;
        match self.request() {
            None => Ok(()),
            Some(MomentsRequest::Sums) => {
                let mut sums = ClassSums { n: 0, count: [vec![0; p], vec![0; p]], sum: [vec![0.0; p], vec![0.0; p]], nonfinite: vec![0; p] };
                for a in answers {
                    let mut members = 0;
                    for (class, label) in CLASSES.iter().enumerate() {
                        let count = a.counts(&format!("{label}.count"), p)?;
                        let nf = a.counts(&format!("{label}.nonfinite"), p)?;
                        let sum = a.vector(&format!("raw.{label}.sum"), p)?;
                        let class_n = count.first().copied().unwrap_or(0) + nf.first().copied().unwrap_or(0);
                        for j in 0..p {
                            if count[j] + nf[j] != class_n {
                                return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: format!("feature {j}: counts do not add up") });
                            }
                            sums.count[class][j] += count[j];
                            sums.sum[class][j] += sum[j];
                            sums.nonfinite[j] += nf[j];
                        }
                        members += class_n;
                    }
                    if p > 0 && members != a.patient_count() {
                        return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: "class counts do not add up".into() });
                    }
                    sums.n += a.patient_count();
                }
                self.sums = Some(sums);
                Ok(())
            }
            Some(MomentsRequest::Squares { centre }) => {
                let sums = self.sums.as_ref().expect("round 2 follows round 1");
                let mut squares = [vec![0.0; p], vec![0.0; p]];
                let mut n = 0;
                for a in answers {
                    for (class, label) in CLASSES.iter().enumerate() {
                        for (total, v) in squares[class].iter_mut().zip(a.vector(&format!("raw.{label}.squares"), p)?) {
                            *total += v;
                        }
                    }
                    n += a.patient_count();
                }
                if n != sums.n {
                    return Err(CombineError::Inconsistent {
                        site: answers[0].site_id.clone(),
                        detail: format!("round 2 covers {n} patients, round 1 covered {}", sums.n),
                    });
                }
                let by_class = [0, 1].map(|c| {
                    (0..p)
                        .map(|j| {
                            let count = sums.count[c][j] as f64;
                            if count == 0.0 {
                                return Moments::default();
                            }
                            let mean = sums.sum[c][j] / count;
                            let offset = mean - centre[j];
                            Moments { n: count, mean, m2: squares[c][j] - count * offset * offset }
                        })
                        .collect::<Vec<_>>()
                });
                // Σ(x − μ)² = M2 + n(x̄ − μ)² ≥ n(x̄ − μ)²: a clearly negative M2 means the two
                // rounds do not describe the same values (a site's data changed between them,
                // or a site answered wrongly). Rounding leaves at most a few ulps of Σ(x − μ)².
                let mut by_class = by_class;
                for (c, class) in by_class.iter_mut().enumerate() {
                    for (j, m) in class.iter_mut().enumerate() {
                        if m.m2 < -1e-9 * squares[c][j] {
                            return Err(CombineError::Inconsistent {
                                site: answers[0].site_id.clone(),
                                detail: format!("feature {j}: the sums of squares of round 2 fall short of round 1's means"),
                            });
                        }
                        m.m2 = m.m2.max(0.0);
                    }
                }
                self.moments = Some(FeatureMoments { n: sums.n, by_class, nonfinite: sums.nonfinite.clone() });
                Ok(())
            }
        }
    }

    /// The merged moments, once both rounds are absorbed.
    pub fn moments(&self) -> Option<&FeatureMoments> {
        self.moments.as_ref()
    }
}

/// Both rounds over in-process sites `(rows, outcome)`, each answer as the site computes it
/// (tests and examples; `sum` stands for the coordinator's sum of the answers, e.g. the fixed
/// point of `crate::secure_sum::combine`).
pub fn federated(sites: &[(&[Vec<f64>], &[bool])], n_features: usize, sum: impl Fn(Vec<SiteAggregate>) -> Vec<SiteAggregate>) -> FeatureMoments {
    let mut run = MomentsRun::new(n_features);
    while let Some(request) = run.request() {
        let centre = match &request {
            MomentsRequest::Sums => None,
            MomentsRequest::Squares { centre } => Some(centre.as_slice()),
        };
        let answers = sites
            .iter()
            .enumerate()
            .map(|(k, (rows, outcome))| SiteAggregate::new(format!("site-{k}"), site_moments(rows, outcome, n_features, centre, 1).expect("a site's moments")))
            .collect();
        run.absorb(&sum(answers)).expect("answers of one shape");
    }
    run.moments().expect("both rounds absorbed").clone()
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

    /// The two rounds over `sizes` consecutive sites, summed as the coordinator sums them
    /// (fixed point, or plain floats).
    fn over_sites(rows: &[Vec<f64>], sizes: &[usize], fixed_point: bool) -> FeatureMoments {
        let outcome: Vec<bool> = (0..rows.len()).map(|i| i % 3 == 0).collect();
        let mut sites = Vec::new();
        let mut start = 0;
        for size in sizes {
            sites.push((&rows[start..start + size], &outcome[start..start + size]));
            start += size;
        }
        assert_eq!(start, rows.len());
        federated(&sites, 40, |answers| if fixed_point && answers.len() > 1 { vec![crate::secure_sum::combine(&answers).unwrap()] } else { answers })
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
        let pooled_moments = pooled(&rows, &outcome, 40);
        for sizes in [vec![229], vec![73, 62, 53, 41], vec![5, 60, 11, 40, 7, 90, 16]] {
            for fixed_point in [false, true] {
                let moments = over_sites(&rows, &sizes, fixed_point);
                assert_same(&moments.standardisation(), &reference);
                // The per-class moments Welch's test reads, too.
                for (c, class) in moments.by_class.iter().enumerate() {
                    for &j in &reference.kept {
                        let (a, b) = (class[j], pooled_moments.by_class[c][j]);
                        assert_eq!(a.n, b.n);
                        assert!((a.mean - b.mean).abs() <= 1e-12 * b.mean.abs().max(1.0), "class {c} mean {j}: {} vs {}", a.mean, b.mean);
                        assert!((a.m2 - b.m2).abs() <= 1e-9 * b.m2 + 1e-14 * b.mean * b.mean * b.n, "class {c} m2 {j}: {} vs {}", a.m2, b.m2);
                    }
                }
            }
        }
    }

    #[test]
    fn a_round_two_that_does_not_match_round_one_is_an_error() {
        let rows = training_rows();
        let outcome: Vec<bool> = (0..rows.len()).map(|i| i % 3 == 0).collect();
        let mut run = MomentsRun::new(40);
        run.absorb(&[SiteAggregate::new("s", site_moments(&rows, &outcome, 40, None, 1).unwrap())]).unwrap();
        let Some(MomentsRequest::Squares { centre }) = run.request() else { panic!("round 2 is next") };
        // Every value moved onto the centre between the rounds: no spread left, while round 1's
        // class means differ from the centre.
        let moved: Vec<Vec<f64>> = rows.iter().map(|_| centre.clone()).collect();
        let answer = site_moments(&moved, &outcome, 40, Some(&centre), 1).unwrap();
        assert!(matches!(run.absorb(&[SiteAggregate::new("s", answer)]), Err(CombineError::Inconsistent { .. })));
        // The honest round 2 is absorbed.
        run.absorb(&[SiteAggregate::new("s", site_moments(&rows, &outcome, 40, Some(&centre), 1).unwrap())]).unwrap();
        assert!(run.moments().is_some());
    }

    #[test]
    fn round_two_needs_one_finite_centre_per_column() {
        let rows = training_rows();
        let outcome: Vec<bool> = (0..rows.len()).map(|i| i % 3 == 0).collect();
        let centre = vec![0.0; 40];
        assert!(site_moments(&rows, &outcome, 40, Some(&centre), 5).is_ok());
        assert!(matches!(site_moments(&rows, &outcome, 40, Some(&centre[..39]), 5), Err(SiteRefusal::InvalidParameters(_))));
        let mut nan = centre.clone();
        nan[7] = f64::NAN;
        assert!(matches!(site_moments(&rows, &outcome, 40, Some(&nan), 5), Err(SiteRefusal::InvalidParameters(d)) if d.contains("column 7")));
    }

    #[test]
    fn a_site_with_too_few_training_patients_refuses() {
        let rows = training_rows();
        let outcome = vec![true, false, false, false, true, false, false, false, false, false];
        assert!(matches!(site_moments(&rows[..4], &outcome[..4], 40, None, 5), Err(SiteRefusal::BelowMinCount { n: 4, min: 5, .. })));
        // Enough patients, but only two with a positive outcome: their moments would leave.
        assert!(matches!(site_moments(&rows[..10], &outcome, 40, None, 5), Err(SiteRefusal::BelowMinCount { n: 2, min: 5, .. })));
    }
}
