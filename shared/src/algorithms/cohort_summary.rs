//! Cohort summary: how many patients each site loaded, how many manifest rows it excluded
//! and why (counts per reason), and how many recurrences. The first step of every study.

use std::collections::BTreeMap;

use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::clinical::{ExclusionReason, PatientRecord};
use crate::proto::Aggregate;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiteCohortSummary {
    pub site_id: String,
    pub loaded: u64,
    pub negatives: u64,
    pub positives: u64,
    /// Excluded manifest rows per reason (reasons with zero rows omitted).
    pub excluded: BTreeMap<ExclusionReason, u64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CohortSummary {
    pub sites: Vec<SiteCohortSummary>,
    pub loaded: u64,
    pub negatives: u64,
    pub positives: u64,
    pub excluded: u64,
}

// ---- site half ---------------------------------------------------------------------------

pub fn site_cohort_summary(records: &[PatientRecord], excluded: &BTreeMap<ExclusionReason, u64>, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    let n = records.len() as u64;
    require_min_count("the loaded cohort", n, min_count)?;
    let positives = records.iter().filter(|r| r.outcome).count() as u64;
    let by_reason = ExclusionReason::ALL.iter().map(|r| *excluded.get(r).unwrap_or(&0) as f64).collect();
    Ok(AggregateBuilder::new(n)
        .scalar("loaded", n as f64)
        .vector("outcome_counts", vec![(n - positives) as f64, positives as f64])
        .vector("excluded_by_reason", by_reason)
        .build())
}

// ---- coordinator half --------------------------------------------------------------------

pub fn combine(answers: &[SiteAggregate]) -> Result<CohortSummary, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut sites = Vec::new();
    for a in answers {
        let loaded = a.count("loaded")?;
        let oc = a.counts("outcome_counts", 2)?;
        if oc[0] + oc[1] != loaded || a.patient_count() != loaded {
            return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: "outcome counts do not add up".into() });
        }
        let ex = a.counts("excluded_by_reason", ExclusionReason::ALL.len())?;
        let excluded = ExclusionReason::ALL.iter().zip(ex).filter(|(_, c)| *c > 0).map(|(r, c)| (*r, c)).collect();
        sites.push(SiteCohortSummary { site_id: a.site_id.clone(), loaded, negatives: oc[0], positives: oc[1], excluded });
    }
    Ok(CohortSummary {
        loaded: sites.iter().map(|s| s.loaded).sum(),
        negatives: sites.iter().map(|s| s.negatives).sum(),
        positives: sites.iter().map(|s| s.positives).sum(),
        excluded: sites.iter().flat_map(|s| s.excluded.values()).sum(),
        sites,
    })
}
