//! Feature-extraction summary: per site and sequence, how many cases gave features, how many
//! failed and why (counts per reason), and how many features each case has. The features
//! themselves stay at the site.

use std::collections::BTreeMap;

use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::Aggregate;

/// Why a case could not be extracted, in the order of the `failed_by_reason` tensor.
pub const FAILURE_REASONS: [&str; 10] = [
    "unreadable_volume",
    "geometry_mismatch",
    "non_integral_mask",
    "empty_mask",
    "missing_label",
    "non_finite_voxels",
    "roi_too_small",
    "roi_too_flat",
    "discretisation",
    "image_too_small_for_filter",
];

/// The MR sequences of the study, in tensor-name form.
pub const SEQUENCES: [&str; 2] = ["t1c", "t2"];

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SequenceSummary {
    pub succeeded: u64,
    pub failed: BTreeMap<String, u64>,
    pub features: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExtractionSummary {
    /// site → sequence → summary
    pub per_site: BTreeMap<String, BTreeMap<String, SequenceSummary>>,
    pub total: BTreeMap<String, SequenceSummary>,
}

// ---- site half ---------------------------------------------------------------------------

pub fn site_extraction_aggregate(loaded: u64, outcomes: &BTreeMap<String, SequenceSummary>, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    require_min_count("the loaded cohort", loaded, min_count)?;
    let mut b = AggregateBuilder::new(loaded);
    for seq in SEQUENCES {
        let o = outcomes.get(seq).cloned().unwrap_or_default();
        b = b
            .scalar(format!("{seq}/succeeded"), o.succeeded as f64)
            .vector(format!("{seq}/failed_by_reason"), FAILURE_REASONS.iter().map(|r| *o.failed.get(*r).unwrap_or(&0) as f64).collect())
            .scalar(format!("{seq}/features"), o.features as f64);
    }
    Ok(b.build())
}

// ---- coordinator half --------------------------------------------------------------------

pub fn combine(answers: &[SiteAggregate]) -> Result<ExtractionSummary, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut per_site = BTreeMap::new();
    let mut total: BTreeMap<String, SequenceSummary> = BTreeMap::new();
    for a in answers {
        let mut seqs = BTreeMap::new();
        for seq in SEQUENCES {
            let succeeded = a.count(&format!("{seq}/succeeded"))?;
            let failed_v = a.counts(&format!("{seq}/failed_by_reason"), FAILURE_REASONS.len())?;
            let features = a.count(&format!("{seq}/features"))?;
            if succeeded + failed_v.iter().sum::<u64>() != a.patient_count() {
                return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: format!("{seq}: cases do not add up to the cohort") });
            }
            let failed: BTreeMap<String, u64> = FAILURE_REASONS.iter().zip(failed_v).filter(|(_, c)| *c > 0).map(|(r, c)| (r.to_string(), c)).collect();
            let t = total.entry(seq.to_string()).or_default();
            if succeeded > 0 {
                if t.features != 0 && t.features != features {
                    return Err(CombineError::Inconsistent {
                        site: a.site_id.clone(),
                        detail: format!("{seq}: {features} features where other sites have {}", t.features),
                    });
                }
                t.features = features;
            }
            t.succeeded += succeeded;
            for (r, c) in &failed {
                *t.failed.entry(r.clone()).or_default() += c;
            }
            seqs.insert(seq.to_string(), SequenceSummary { succeeded, failed, features });
        }
        per_site.insert(a.site_id.clone(), seqs);
    }
    Ok(ExtractionSummary { per_site, total })
}

/// The name of a feature table: SHA-256 (hex) of its column names joined by '\n'. Tasks carry
/// it so a site never answers about other features than the coordinator means.
pub fn catalogue_sha256(names: &[String]) -> String {
    crate::digest::sha256_hex(names.join("\n").as_bytes())
}

/// Deep-feature column names, `deep_0000` …, as the sites' embedding tables use them.
pub fn deep_feature_names(dim: usize) -> Vec<String> {
    (0..dim).map(|k| format!("deep_{k:04}")).collect()
}

/// Suffix of a table name with the deep features appended (`t2+deep`).
pub const WITH_DEEP: &str = "+deep";

/// A task's table name split into the sequence and whether deep features are appended;
/// `None` for an unknown sequence.
pub fn table_name(name: &str) -> Option<(&'static str, bool)> {
    let (base, deep) = match name.strip_suffix(WITH_DEEP) {
        Some(b) => (b, true),
        None => (name, false),
    };
    SEQUENCES.iter().find(|s| **s == base).map(|s| (*s, deep))
}
