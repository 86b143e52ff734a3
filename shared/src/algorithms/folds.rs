//! Cross-validation folds, assigned by each site to its own training patients.
//!
//! Per outcome class the site ranks its training patients by SHA-256(domain ‖ seed ‖ patient
//! id) and deals them to folds 1..=K in turn, the positives continuing where the negatives
//! stopped, so each site's folds are balanced in size and outcome. The assignment is recorded
//! at the site and fixed for the study; only the number of patients per fold and class leaves
//! (and a site refuses folds smaller than its `min_count`).
//!
//! Folds are thus stratified by site and outcome, as a pooled analysis of multi-centre data
//! stratifies them; the pooled reference uses the same rule. Every later computation depends
//! only on each patient's (fold, data), so, given the assignment, federated equals pooled
//! for any spread of patients over sites (see the partition tests of `lasso`).

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};

use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::Aggregate;

fn fold_key(seed: u64, patient_id: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(24 + patient_id.len());
    msg.extend_from_slice(b"fedrad-folds-v1\0");
    msg.extend_from_slice(&seed.to_le_bytes());
    msg.extend_from_slice(patient_id.as_bytes());
    digest(&SHA256, &msg).as_ref().to_vec()
}

// ---- site half ---------------------------------------------------------------------------

/// Folds 1..=k for the site's training patients, given as (patient id, outcome).
pub fn site_assign(training: &[(String, bool)], seed: u64, k: u32) -> Vec<u32> {
    let mut fold = vec![0u32; training.len()];
    let mut dealt = 0u64;
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..training.len()).filter(|&i| training[i].1 == class).collect();
        idx.sort_by_cached_key(|&i| (fold_key(seed, &training[i].0), training[i].0.clone()));
        for i in idx {
            fold[i] = (dealt % k as u64) as u32 + 1;
            dealt += 1;
        }
    }
    fold
}

/// Patients per fold and class ("fold_counts", k × 2: negatives, positives).
pub fn site_fold_counts(fold: &[u32], outcome: &[bool], k: u32, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    let mut counts = vec![[0u64; 2]; k as usize];
    for (f, y) in fold.iter().zip(outcome) {
        if *f == 0 || *f > k {
            return Err(SiteRefusal::Precondition("a training patient has no fold".into()));
        }
        counts[*f as usize - 1][*y as usize] += 1;
    }
    for (j, c) in counts.iter().enumerate() {
        require_min_count(&format!("cross-validation fold {}", j + 1), c[0] + c[1], min_count)?;
    }
    Ok(AggregateBuilder::new(fold.len() as u64).matrix("fold_counts", k as usize, 2, counts.iter().flat_map(|c| [c[0] as f64, c[1] as f64]).collect()).build())
}

// ---- coordinator half --------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FoldSummary {
    pub folds: u32,
    /// Per site, per fold: [negatives, positives].
    pub per_site: BTreeMap<String, Vec<[u64; 2]>>,
    pub total: Vec<[u64; 2]>,
}

pub fn combine(answers: &[SiteAggregate], k: u32) -> Result<FoldSummary, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut total = vec![[0u64; 2]; k as usize];
    let mut per_site = BTreeMap::new();
    for a in answers {
        let c = a.counts("fold_counts", 2 * k as usize)?;
        let rows: Vec<[u64; 2]> = c.chunks(2).map(|p| [p[0], p[1]]).collect();
        if rows.iter().map(|r| r[0] + r[1]).sum::<u64>() != a.patient_count() {
            return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: "fold counts do not add up".into() });
        }
        for (t, r) in total.iter_mut().zip(&rows) {
            t[0] += r[0];
            t[1] += r[1];
        }
        per_site.insert(a.site_id.clone(), rows);
    }
    Ok(FoldSummary { folds: k, per_site, total })
}

// ---- what a site accepts ------------------------------------------------------------------

/// Folds are dealt only with the plan's seed and at most the plan's number of folds: the
/// fold populations are then fixed by the approved plan, and the site records them once per
/// study, so no task can redraw them to difference one patient out of a fold. Fewer folds
/// than the plan's are accepted because the study lowers K until every site's folds reach its
/// `min_count` (coordinator `model_size`); fewer folds only make each fold larger.
pub fn site_accepts(seed: u64, folds: u32, plan_seed: u64, plan_folds: u32) -> Result<(), SiteRefusal> {
    if seed != plan_seed || !(2..=plan_folds).contains(&folds) {
        return Err(SiteRefusal::InvalidParameters(format!("folds with seed {seed} and K = {folds}; the study plan has seed {plan_seed} and K from 2 to {plan_folds}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_balanced_stratified_and_order_free() {
        let training: Vec<(String, bool)> = (0..57).map(|i| (format!("P{i:03}"), i % 3 == 0)).collect();
        let folds = site_assign(&training, 11, 10);
        let mut sizes = [0; 10];
        for f in &folds {
            sizes[*f as usize - 1] += 1;
        }
        assert!(sizes.iter().all(|&s| s == 5 || s == 6), "{sizes:?}");
        let mut reversed = training.clone();
        reversed.reverse();
        let mut again = site_assign(&reversed, 11, 10);
        again.reverse();
        assert_eq!(folds, again);
        assert_ne!(folds, site_assign(&training, 12, 10));
        let outcome: Vec<bool> = training.iter().map(|t| t.1).collect();
        assert!(site_fold_counts(&folds, &outcome, 10, 5).is_ok());
        assert!(matches!(site_fold_counts(&folds, &outcome, 10, 6), Err(SiteRefusal::BelowMinCount { .. })));
    }

    #[test]
    fn a_site_accepts_the_plans_seed_and_at_most_its_folds() {
        assert!(site_accepts(7, 10, 7, 10).is_ok());
        assert!(site_accepts(7, 2, 7, 10).is_ok());
        for (seed, k) in [(8, 10), (7, 11), (7, 1), (7, 0)] {
            assert!(matches!(site_accepts(seed, k, 7, 10), Err(SiteRefusal::InvalidParameters(_))), "seed {seed}, K {k}");
        }
    }
}
