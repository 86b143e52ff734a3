//! Federated algorithms, one module each. Every module has the same three parts:
//!
//! * **site half** — `site_*` functions: what a site computes from its own patients. They
//!   return an [`Aggregate`](crate::proto::Aggregate) or a [`SiteRefusal`], and enforce the
//!   site's `min_count` on every population the aggregate summarises;
//! * **coordinator half** — `combine*` functions: how the answers of all sites are merged;
//! * **pooled reference** — `pooled*` functions: the same computation on all rows in one
//!   process. Tests check that combine(site halves) equals the pooled reference;
//! * **what a site accepts** — `site_accepts*` / `accept_*` functions: the checks a site runs
//!   on a task's parameters against the study plan its operator approved (grids, seeds,
//!   populations, model bounds, rounds), each with the attack it stops and why it suffices.
//!   The site agent's `acceptance` module applies them to every task kind.

pub mod classifiers;
pub mod cohort_summary;
pub mod combat;
pub mod correlation;
pub mod encoder;
pub mod extraction;
pub mod fedavg;
pub mod folds;
pub mod glm;
pub mod lasso;
pub mod logistic;
pub mod metrics;
pub mod paired_auc;
pub mod small_cells;
pub mod split;
pub mod standardise;
pub mod table1;
#[doc(hidden)]
pub mod testdata;
pub mod trees;
pub mod univariate;

use crate::aggregate::AggregateError;
use crate::proto::{Refusal, RefusalReason};

/// A site's typed "no". Its detail is about populations and parameters, never about a patient.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SiteRefusal {
    #[error("{what} has {n} patients, fewer than this site's minimum of {min}")]
    BelowMinCount { what: String, n: u64, min: u64 },
    #[error("precondition not met: {0}")]
    Precondition(String),
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
}

impl SiteRefusal {
    pub fn to_proto(&self) -> Refusal {
        let reason = match self {
            SiteRefusal::BelowMinCount { .. } => RefusalReason::BelowMinCount,
            SiteRefusal::Precondition(_) => RefusalReason::Precondition,
            SiteRefusal::InvalidParameters(_) => RefusalReason::InvalidParameters,
        };
        Refusal { reason: reason as i32, detail: self.to_string() }
    }
}

/// Refuses an aggregate over a population smaller than the policy allows.
/// The symmetric p × p matrix (row-major) whose upper triangle, row by row, is `upper`: how
/// sites send symmetric blocks (co-moments, Hessians) at half the size.
pub fn symmetric_from_upper(upper: &[f64], p: usize) -> Vec<f64> {
    let mut full = vec![0.0; p * p];
    let mut k = 0;
    for r in 0..p {
        for c in r..p {
            full[r * p + c] = upper[k];
            full[c * p + r] = upper[k];
            k += 1;
        }
    }
    full
}

/// The most parameters a site answers a model-shaped round with over `patients` patients:
/// `max_ratio` per patient (DataSHIELD's `nfilter.glm`), and always fewer than the patients,
/// whatever the ratio — second-order answers over as many parameters as patients give each
/// patient's row back (`lasso::site_accepts_point_size`). The coordinator plans with the same
/// number. An infinite ratio (the algorithms' arithmetic tests; a site's policy is at most 1)
/// sets no limit.
pub fn max_parameters(max_ratio: f64, patients: u64) -> usize {
    if max_ratio == f64::INFINITY {
        return usize::MAX;
    }
    let by_ratio = (max_ratio * patients as f64).floor().max(0.0) as usize;
    by_ratio.min(patients.saturating_sub(1) as usize)
}

pub fn require_min_count(what: &str, n: u64, min: u64) -> Result<(), SiteRefusal> {
    if n < min { Err(SiteRefusal::BelowMinCount { what: what.to_string(), n, min }) } else { Ok(()) }
}

/// Whether answering over `new` would let sums and differences of answers isolate 1 to
/// `min` − 1 patients of a class.
///
/// `others` are the populations other answers of the study describe (or may describe);
/// `checked` are populations answered earlier that passed this same check (whatever they
/// isolate was judged then). Pairwise checks (|A ∖ B| per class is 0 or ≥ `min`) are not
/// enough: with answers over R, R∩C and R∩D, the answer over R∩C∩D gives by
/// inclusion–exclusion the cell R∖C∖D even when every pairwise difference is large. So, per
/// outcome class (answers may carry the outcome), all the populations cut `patients`
/// (id, outcome) into cells of patients with the same memberships, and a set of cells with 1
/// to `min` − 1 patients is isolated when some linear combination of the populations'
/// indicators is non-zero only on those cells (a union's indicator, or a signed combination
/// such as one patient's cell minus another's, which gives the difference of their values and
/// of their squares: both values). Refused: a small set isolated by `checked`, `others` and
/// `new` together in more independent combinations than by `checked` alone. Small unions that `others` isolate without `new` are refused too:
/// the populations are compared, not the statistics over them, and `new`'s statistics may be
/// what completes such a difference (the clinical model's Hessian over all training patients
/// with clinical data against ComBat's covariate cross-products over those with features,
/// say). Unions are searched among cells smaller than `min`; past [`MAX_UNIONS_CHECKED`] of
/// them the answer is refused rather than judged.
pub fn isolates_few<S>(
    patients: &[(&str, bool)],
    checked: &[std::collections::BTreeSet<S>],
    others: &[std::collections::BTreeSet<S>],
    new: &std::collections::BTreeSet<S>,
    min: u64,
) -> bool
where
    S: Ord + std::borrow::Borrow<str>,
{
    let all: Vec<&std::collections::BTreeSet<S>> = checked.iter().chain(others).chain(std::iter::once(new)).collect();
    for class in [false, true] {
        let mut cells: std::collections::BTreeMap<Vec<bool>, u64> = std::collections::BTreeMap::new();
        for &(id, _) in patients.iter().filter(|p| p.1 == class) {
            let key: Vec<bool> = all.iter().map(|s| s.contains(id)).collect();
            *cells.entry(key).or_default() += 1;
        }
        let cells: Vec<(Vec<bool>, u64)> = cells.into_iter().collect();
        // Each population as a vector over the cells.
        let vector = |k: usize| -> Vec<f64> { cells.iter().map(|(m, _)| if m[k] { 1.0 } else { 0.0 }).collect() };
        let before = Span::of((0..checked.len()).map(vector));
        let after = Span::of((0..all.len()).map(vector));
        let small: Vec<usize> = (0..cells.len()).filter(|&c| cells[c].1 < min).collect();
        let mut checked_unions = 0usize;
        let mut union = vec![0.0; cells.len()];
        if isolated_union(&cells, &small, 0, 0, min, &mut union, &before, &after, &mut checked_unions) {
            return true;
        }
    }
    false
}

/// How many sets of small cells [`isolates_few`] judges before it refuses instead.
pub const MAX_UNIONS_CHECKED: usize = 200_000;

#[allow(clippy::too_many_arguments)]
fn isolated_union(
    cells: &[(Vec<bool>, u64)],
    small: &[usize],
    from: usize,
    total: u64,
    min: u64,
    union: &mut Vec<f64>,
    before: &Span,
    after: &Span,
    checked: &mut usize,
) -> bool {
    for i in from..small.len() {
        let c = small[i];
        let t = total + cells[c].1;
        if t >= min {
            continue;
        }
        *checked += 1;
        if *checked > MAX_UNIONS_CHECKED {
            return true;
        }
        union[c] = 1.0;
        let found = after.dimension_within(union) > before.dimension_within(union) || isolated_union(cells, small, i + 1, t, min, union, before, after, checked);
        union[c] = 0.0;
        if found {
            return true;
        }
    }
    false
}

/// The linear span of small 0/1 vectors (a reduced echelon basis; exact enough for the
/// integer vectors of [`isolates_few`], whose sizes are the number of cells).
struct Span {
    basis: Vec<(usize, Vec<f64>)>,
}

impl Span {
    fn of(vectors: impl Iterator<Item = Vec<f64>>) -> Span {
        let mut span = Span { basis: Vec::new() };
        for v in vectors {
            let r = span.reduce(v);
            if let Some(pivot) = r.iter().position(|x| x.abs() > 1e-9) {
                let scale = r[pivot];
                let r: Vec<f64> = r.iter().map(|x| x / scale).collect();
                for (_, b) in &mut span.basis {
                    let f = b[pivot];
                    if f != 0.0 {
                        b.iter_mut().zip(&r).for_each(|(x, y)| *x -= f * y);
                    }
                }
                span.basis.push((pivot, r));
            }
        }
        span
    }

    fn reduce(&self, mut v: Vec<f64>) -> Vec<f64> {
        for (pivot, b) in &self.basis {
            let f = v[*pivot];
            if f != 0.0 {
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= f * y);
            }
        }
        v
    }

    /// The dimension of the span's vectors that vanish outside the cells marked in `within`
    /// (non-zero entries): the number of independent combinations of answers that describe
    /// only those cells' patients — a difference such as age₁ − age₂ included, not only sums.
    fn dimension_within(&self, within: &[f64]) -> usize {
        let mut rows: Vec<Vec<f64>> = self.basis.iter().map(|(_, b)| b.iter().zip(within).filter(|(_, w)| **w == 0.0).map(|(x, _)| *x).collect()).collect();
        // Rank of the basis restricted to the other cells, by elimination with partial pivoting.
        let cols = rows.first().map_or(0, Vec::len);
        let mut rank = 0;
        for c in 0..cols {
            let Some(p) = (rank..rows.len()).filter(|&r| rows[r][c].abs() > 1e-9).max_by(|&a, &b| rows[a][c].abs().total_cmp(&rows[b][c].abs())) else { continue };
            rows.swap(rank, p);
            let pivot = rows[rank].clone();
            for r in rows.iter_mut().skip(rank + 1) {
                let f = r[c] / pivot[c];
                if f != 0.0 {
                    r.iter_mut().zip(&pivot).for_each(|(x, y)| *x -= f * y);
                }
            }
            rank += 1;
        }
        self.basis.len() - rank
    }
}

/// Why the coordinator could not combine the sites' answers.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CombineError {
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    #[error("no site answered")]
    NoSites,
    #[error("site {site}: {detail}")]
    Inconsistent { site: String, detail: String },
}

/// Runs a future whose awaits complete at once (an in-process "federation" of function
/// calls), so the async drivers the coordinator uses over the network also serve the pooled
/// references and tests. Panics if the future would wait.
pub fn block_on_ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("block_on_ready: the future waited on something"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// 20 patients of each class; `missing_c` and `missing_d` lack the covariate and the deep
    /// features (the same ids in both classes, offset by 100 for the second).
    fn populations(missing_c: &[u32], missing_d: &[u32]) -> (Vec<(String, bool)>, BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
        let patients: Vec<(String, bool)> = (0..20).flat_map(|i| [(format!("p{i}"), false), (format!("p{}", i + 100), true)]).collect();
        let all: BTreeSet<String> = patients.iter().map(|p| p.0.clone()).collect();
        let without = |missing: &[u32]| all.iter().filter(|id| !missing.iter().any(|m| **id == format!("p{m}") || **id == format!("p{}", m + 100))).cloned().collect();
        (patients.clone(), all.clone(), without(missing_c), without(missing_d))
    }

    fn isolates(patients: &[(String, bool)], others: &[BTreeSet<String>], new: &BTreeSet<String>) -> bool {
        isolates_after(patients, &[], others, new)
    }

    fn isolates_after(patients: &[(String, bool)], checked: &[BTreeSet<String>], others: &[BTreeSet<String>], new: &BTreeSet<String>) -> bool {
        let p: Vec<(&str, bool)> = patients.iter().map(|(id, y)| (id.as_str(), *y)).collect();
        isolates_few(&p, checked, others, new, 5)
    }

    fn inter(a: &BTreeSet<String>, b: &BTreeSet<String>) -> BTreeSet<String> {
        a.intersection(b).cloned().collect()
    }

    #[test]
    fn inclusion_exclusion_is_caught_where_pairwise_differences_are_all_large() {
        // C misses patients 0–5, D misses 5–10: R∩C∖D and R∩D∖C hold 5 per class, R∖C∖D one.
        let (patients, r, c, d) = populations(&[0, 1, 2, 3, 4, 5], &[5, 6, 7, 8, 9, 10]);
        let (rc, rd, rcd) = (inter(&r, &c), inter(&r, &d), inter(&inter(&r, &c), &d));
        let answered = vec![r.clone(), rc.clone(), rd.clone()];
        for other in &answered {
            for class in [false, true] {
                let k = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.difference(b).filter(|id| patients.iter().any(|p| &p.0 == *id && p.1 == class)).count();
                let (ab, ba) = (k(&rcd, other), k(other, &rcd));
                assert!((ab == 0 || ab >= 5) && (ba == 0 || ba >= 5), "pairwise checks pass: {ab} {ba}");
            }
        }
        assert!(isolates(&patients, &answered, &rcd), "R∩C∩D isolates R∖C∖D");
        // The same populations with R∖C∖D holding five patients per class: nothing isolated.
        let (patients, r, c, d) = populations(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &[5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        let answered = vec![r.clone(), inter(&r, &c), inter(&r, &d)];
        assert!(!isolates(&patients, &answered, &inter(&inter(&r, &c), &d)));
    }

    /// Two tables that each miss a different patient (and five more patients miss both): no
    /// union of fewer than five is isolated, but answers over one minus the other give patient
    /// 1's values minus patient 2's, and with squares both values.
    #[test]
    fn a_signed_difference_of_two_patients_is_caught() {
        let (patients, all, without_p1, without_p2) = populations(&[1, 10, 11, 12, 13, 14], &[2, 10, 11, 12, 13, 14]);
        assert!(isolates(&patients, std::slice::from_ref(&all), &without_p1) || isolates(&patients, &[all.clone(), without_p1.clone()], &without_p2));
        // Without `all` (the patients missing both are never described): still the pair.
        assert!(isolates(&patients, std::slice::from_ref(&without_p1), &without_p2));
        // And with five patients in each table's own gap, nothing is isolated.
        let (patients, _, a, b) = populations(&[1, 2, 3, 4, 5], &[6, 7, 8, 9, 10]);
        assert!(!isolates(&patients, std::slice::from_ref(&a), &b));
    }

    #[test]
    fn one_patient_short_and_honest_populations() {
        let (patients, r, c, _) = populations(&[3], &[]);
        // R∩C differs from R by one patient per class: refused.
        assert!(isolates(&patients, std::slice::from_ref(&r), &inter(&r, &c)));
        // The same population again, or one that differs by five per class, is answered.
        assert!(!isolates(&patients, std::slice::from_ref(&r), &r));
        let (patients, r, c, _) = populations(&[0, 1, 2, 3, 4], &[]);
        assert!(!isolates(&patients, std::slice::from_ref(&r), &inter(&r, &c)));
        // Two covariates missing for one patient each.
        let (patients, r, c, d) = populations(&[3], &[7]);
        let a: BTreeSet<String> = inter(&r, &c);
        let ab: BTreeSet<String> = inter(&a, &d);
        // Answered: R∩C (leaves 3 out), new: R∩C∩D — differs by patient 7 alone: refused.
        assert!(isolates(&patients, std::slice::from_ref(&a), &ab));
        // A small cell that populations answered under this check isolate was judged then; one
        // that other populations isolate is refused (the new answer's statistics may complete it).
        assert!(!isolates_after(&patients, &[r.clone(), a.clone()], &[], &r));
        assert!(isolates(&patients, &[r.clone(), a.clone()], &r));
        // Two recorded answers differ by five patients per class: a third equal to either passes.
        let (patients, r, c, _) = populations(&[0, 1, 2, 3, 4], &[]);
        let rc = inter(&r, &c);
        assert!(!isolates_after(&patients, &[r.clone(), rc.clone()], std::slice::from_ref(&r), &rc));
    }
}
