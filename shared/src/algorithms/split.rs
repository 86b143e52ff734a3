//! Training/validation split, stratified by site and outcome.
//!
//! The coordinator turns the sites' outcome counts into per-site, per-class training quotas
//! (largest-remainder rounding, so the training cohort has exactly ⌊f·N⌋ patients: 328
//! patients at f = 0.7 give 229/99 as in the published study). Each site then ranks its
//! patients of each class by SHA-256(domain ‖ seed ‖ patient id) and puts the first `quota`
//! in training. The ranking depends only on the seed and the id, so the split is
//! reproducible, independent of manifest order and of thread count, and auditable by the
//! site, which records it locally; only the four counts leave.

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};

use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::clinical::{CohortRole, PatientRecord};
use crate::proto::Aggregate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassQuota {
    pub negative: u64,
    pub positive: u64,
}

/// Counts of one site (or all) after the split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitCounts {
    pub training_negative: u64,
    pub training_positive: u64,
    pub validation_negative: u64,
    pub validation_positive: u64,
}

impl SplitCounts {
    pub fn training(&self) -> u64 {
        self.training_negative + self.training_positive
    }
    pub fn validation(&self) -> u64 {
        self.validation_negative + self.validation_positive
    }
    fn add(&mut self, o: &SplitCounts) {
        self.training_negative += o.training_negative;
        self.training_positive += o.training_positive;
        self.validation_negative += o.validation_negative;
        self.validation_positive += o.validation_positive;
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitSummary {
    pub per_site: BTreeMap<String, SplitCounts>,
    pub total: SplitCounts,
}

// ---- coordinator half, round 1: quotas from outcome counts -------------------------------

/// `strata[site] = (negatives, positives)`. Returns per-site quotas summing to ⌊f·N⌋.
pub fn plan_quotas(strata: &BTreeMap<String, (u64, u64)>, fraction: f64) -> BTreeMap<String, ClassQuota> {
    assert!((0.0..1.0).contains(&fraction) && fraction > 0.0, "split fraction must be in (0, 1)");
    let n: u64 = strata.values().map(|(a, b)| a + b).sum();
    let target = (fraction * n as f64 + 1e-9).floor() as u64;
    // (site, class, floor, fractional part)
    let mut cells: Vec<(String, usize, u64, f64)> = Vec::new();
    for (site, (neg, pos)) in strata {
        for (class, count) in [(0, *neg), (1, *pos)] {
            let ideal = fraction * count as f64;
            let fl = (ideal + 1e-9).floor();
            cells.push((site.clone(), class, fl as u64, (ideal - fl).max(0.0)));
        }
    }
    let assigned: u64 = cells.iter().map(|c| c.2).sum();
    let mut order: Vec<usize> = (0..cells.len()).collect();
    // Largest fractional part first; ties by site id then class, for determinism.
    order.sort_by(|&a, &b| cells[b].3.total_cmp(&cells[a].3).then_with(|| cells[a].0.cmp(&cells[b].0)).then(cells[a].1.cmp(&cells[b].1)));
    for &i in order.iter().take(target.saturating_sub(assigned) as usize) {
        cells[i].2 += 1;
    }
    let mut out = BTreeMap::new();
    for (site, class, q, _) in cells {
        let e = out.entry(site).or_insert(ClassQuota { negative: 0, positive: 0 });
        if class == 0 { e.negative = q } else { e.positive = q }
    }
    out
}

// ---- site half ---------------------------------------------------------------------------

/// The ranking key of one patient under one seed.
pub fn rank_key(seed: u64, patient_id: &str) -> [u8; 32] {
    let mut msg = Vec::with_capacity(24 + patient_id.len());
    msg.extend_from_slice(b"fedrad-split-v1\0");
    msg.extend_from_slice(&seed.to_le_bytes());
    msg.extend_from_slice(patient_id.as_bytes());
    digest(&SHA256, &msg).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Assigns each record a role. Fails if a quota exceeds the site's patients of that class.
pub fn site_assign(records: &[PatientRecord], seed: u64, quota: ClassQuota) -> Result<Vec<CohortRole>, SiteRefusal> {
    let mut roles = vec![CohortRole::Validation; records.len()];
    for (class, q) in [(false, quota.negative), (true, quota.positive)] {
        let mut idx: Vec<usize> = (0..records.len()).filter(|&i| records[i].outcome == class).collect();
        if q > idx.len() as u64 {
            return Err(SiteRefusal::InvalidParameters(format!("training quota {q} exceeds the site's {} patients of that outcome class", idx.len())));
        }
        idx.sort_by_cached_key(|&i| (rank_key(seed, &records[i].patient_id), records[i].patient_id.clone()));
        for &i in idx.iter().take(q as usize) {
            roles[i] = CohortRole::Training;
        }
    }
    Ok(roles)
}

pub fn counts(records: &[PatientRecord], roles: &[CohortRole]) -> SplitCounts {
    let mut c = SplitCounts::default();
    for (r, role) in records.iter().zip(roles) {
        match (role, r.outcome) {
            (CohortRole::Training, false) => c.training_negative += 1,
            (CohortRole::Training, true) => c.training_positive += 1,
            (CohortRole::Validation, false) => c.validation_negative += 1,
            (CohortRole::Validation, true) => c.validation_positive += 1,
        }
    }
    c
}

/// The split's counts as an aggregate; each cohort must reach `min_count`.
pub fn site_split_aggregate(records: &[PatientRecord], roles: &[CohortRole], min_count: u64) -> Result<Aggregate, SiteRefusal> {
    let c = counts(records, roles);
    require_min_count("the training cohort", c.training(), min_count)?;
    require_min_count("the validation cohort", c.validation(), min_count)?;
    Ok(AggregateBuilder::new(records.len() as u64)
        .vector("split_counts", vec![c.training_negative as f64, c.training_positive as f64, c.validation_negative as f64, c.validation_positive as f64])
        .build())
}

// ---- coordinator half, round 2 -----------------------------------------------------------

pub fn combine(answers: &[SiteAggregate]) -> Result<SplitSummary, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut per_site = BTreeMap::new();
    let mut total = SplitCounts::default();
    for a in answers {
        let v = a.counts("split_counts", 4)?;
        let c = SplitCounts { training_negative: v[0], training_positive: v[1], validation_negative: v[2], validation_positive: v[3] };
        if c.training() + c.validation() != a.patient_count() {
            return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: "split counts do not add up".into() });
        }
        total.add(&c);
        per_site.insert(a.site_id.clone(), c);
    }
    Ok(SplitSummary { per_site, total })
}

// ---- pooled reference --------------------------------------------------------------------

/// The whole split in one process from all rows: `patients` are (site, record).
pub fn pooled(patients: &[(String, PatientRecord)], seed: u64, fraction: f64) -> (Vec<CohortRole>, SplitSummary) {
    let mut strata: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (site, r) in patients {
        let e = strata.entry(site.clone()).or_default();
        if r.outcome { e.1 += 1 } else { e.0 += 1 }
    }
    let quotas = plan_quotas(&strata, fraction);
    let mut roles = vec![CohortRole::Validation; patients.len()];
    let mut per_site = BTreeMap::new();
    let mut total = SplitCounts::default();
    for (site, quota) in &quotas {
        let idx: Vec<usize> = (0..patients.len()).filter(|&i| &patients[i].0 == site).collect();
        let recs: Vec<PatientRecord> = idx.iter().map(|&i| patients[i].1.clone()).collect();
        let site_roles = site_assign(&recs, seed, *quota).expect("quotas from the same counts fit");
        for (k, &i) in idx.iter().enumerate() {
            roles[i] = site_roles[k];
        }
        let c = counts(&recs, &site_roles);
        total.add(&c);
        per_site.insert(site.clone(), c);
    }
    (roles, SplitSummary { per_site, total })
}

// ---- what a site accepts ------------------------------------------------------------------

/// A split task is answered only with the plan's seed and, per outcome class, the quota the
/// plan's fraction gives this site's own count: ⌊f·n⌋ or one more (the largest-remainder
/// rounding across sites in [`plan_quotas`]). Why this suffices: the training cohort is then
/// a function of the approved plan and the site's own counts, so a coordinator cannot move
/// one patient in or out of training by asking with other quotas (and the site records one
/// split per study, so it cannot ask twice).
pub fn site_accepts(seed: u64, quota: ClassQuota, plan_seed: u64, fraction: f64, negatives: u64, positives: u64) -> Result<(), SiteRefusal> {
    if seed != plan_seed {
        return Err(SiteRefusal::InvalidParameters(format!("split seed {seed} is not the study plan's ({plan_seed})")));
    }
    for (what, q, n) in [("negative", quota.negative, negatives), ("positive", quota.positive, positives)] {
        let base = (fraction * n as f64 + 1e-9).floor() as u64;
        if q != base && q != base + 1 {
            return Err(SiteRefusal::InvalidParameters(format!(
                "training quota {q} for the {what} class is not what the plan's fraction {fraction} gives this site's {n} patients ({base} or {})",
                base + 1
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_accepts_only_the_plans_seed_and_the_quota_its_own_counts_give() {
        let q = |negative, positive| ClassQuota { negative, positive };
        // 0.7 of 37 negatives = 25.9, of 19 positives = 13.3.
        assert!(site_accepts(1, q(25, 13), 1, 0.7, 37, 19).is_ok());
        assert!(site_accepts(1, q(26, 14), 1, 0.7, 37, 19).is_ok(), "largest-remainder rounding adds one");
        assert!(site_accepts(1, q(27, 13), 1, 0.7, 37, 19).is_err(), "one patient more than the plan gives");
        assert!(site_accepts(1, q(24, 13), 1, 0.7, 37, 19).is_err(), "one patient fewer");
        assert!(site_accepts(2, q(25, 13), 1, 0.7, 37, 19).is_err(), "another seed");
        // The coordinator's own quotas always pass every site's check.
        let strata: BTreeMap<String, (u64, u64)> = [("a", (37, 19)), ("b", (20, 9)), ("c", (51, 30))].iter().map(|(s, c)| (s.to_string(), *c)).collect();
        for (site, quota) in plan_quotas(&strata, 0.7) {
            let (n, p) = strata[&site];
            assert!(site_accepts(5, quota, 5, 0.7, n, p).is_ok(), "{site}");
        }
    }

    fn record(id: &str, outcome: bool) -> PatientRecord {
        PatientRecord { patient_id: id.into(), outcome, clinical: Default::default() }
    }

    #[test]
    fn quotas_give_exactly_floor_of_fraction() {
        let strata: BTreeMap<String, (u64, u64)> =
            [("a", (70, 30)), ("b", (60, 25)), ("c", (55, 23)), ("d", (47, 18))].iter().map(|(s, c)| (s.to_string(), *c)).collect();
        let q = plan_quotas(&strata, 0.7);
        let total: u64 = q.values().map(|c| c.negative + c.positive).sum();
        assert_eq!(total, 229); // 328 patients
        for (s, (neg, pos)) in &strata {
            let c = q[s];
            assert!(c.negative <= *neg && c.positive <= *pos);
            assert!((c.negative as f64 - 0.7 * *neg as f64).abs() < 1.0);
            assert!((c.positive as f64 - 0.7 * *pos as f64).abs() < 1.0);
        }
    }

    #[test]
    fn assignment_ignores_manifest_order_and_depends_on_seed() {
        let recs: Vec<PatientRecord> = (0..40).map(|i| record(&format!("P{i:03}"), i % 3 == 0)).collect();
        let quota = ClassQuota { negative: 18, positive: 9 };
        let roles = site_assign(&recs, 7, quota).unwrap();
        let mut reversed = recs.clone();
        reversed.reverse();
        let mut roles_rev = site_assign(&reversed, 7, quota).unwrap();
        roles_rev.reverse();
        assert_eq!(roles, roles_rev);
        let c = counts(&recs, &roles);
        assert_eq!((c.training_negative, c.training_positive), (18, 9));
        assert_ne!(roles, site_assign(&recs, 8, quota).unwrap());
    }

    #[test]
    fn refuses_cohorts_below_min_count_and_oversized_quotas() {
        let recs: Vec<PatientRecord> = (0..12).map(|i| record(&format!("P{i}"), i % 2 == 0)).collect();
        let roles = site_assign(&recs, 1, ClassQuota { negative: 5, positive: 5 }).unwrap();
        assert!(matches!(site_split_aggregate(&recs, &roles, 5), Err(SiteRefusal::BelowMinCount { .. })));
        assert!(site_split_aggregate(&recs, &roles, 2).is_ok());
        assert!(site_assign(&recs, 1, ClassQuota { negative: 7, positive: 0 }).is_err());
    }
}
