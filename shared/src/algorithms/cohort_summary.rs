//! Cohort summary: how many patients each site loaded and how many of them had a recurrence.
//! The first step of every study, and a planning input read per site: the split's quotas and
//! the model sizes every site accepts (`coordinator::model_size`) need each site's counts.
//! The manifest rows a site excluded, per reason, are not here: they travel with Table 1,
//! summed over the sites unless the plan and every site publish per-site results
//! ([`super::table1`]).

use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::clinical::PatientRecord;
use crate::proto::Aggregate;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiteCohortSummary {
    pub site_id: String,
    pub loaded: u64,
    pub negatives: u64,
    pub positives: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CohortSummary {
    pub sites: Vec<SiteCohortSummary>,
    pub loaded: u64,
    pub negatives: u64,
    pub positives: u64,
}

// ---- site half ---------------------------------------------------------------------------

pub fn site_cohort_summary(records: &[PatientRecord], min_count: u64) -> Result<Aggregate, SiteRefusal> {
    let n = records.len() as u64;
    require_min_count("the loaded cohort", n, min_count)?;
    let positives = records.iter().filter(|r| r.outcome).count() as u64;
    Ok(AggregateBuilder::new(n).scalar("loaded", n as f64).vector("outcome_counts", vec![(n - positives) as f64, positives as f64]).build())
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
        sites.push(SiteCohortSummary { site_id: a.site_id.clone(), loaded, negatives: oc[0], positives: oc[1] });
    }
    Ok(CohortSummary {
        loaded: sites.iter().map(|s| s.loaded).sum(),
        negatives: sites.iter().map(|s| s.negatives).sum(),
        positives: sites.iter().map(|s| s.positives).sum(),
        sites,
    })
}
