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

/// The table of both sequences side by side (option `selection.both_sequences`): a model on
/// T1WI+C and T2WI features selected jointly. Its columns are each sequence's radiomic
/// features, then (in `t1c+t2+deep`) each sequence's deep features, every name prefixed with
/// its sequence ([`sequence_column`]); its rows are the patients with every part.
pub const BOTH_SEQUENCES: &str = "t1c+t2";

/// A feature table as a task names it: which sequences' features it holds, and whether their
/// deep features follow the radiomic ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableName {
    pub sequences: &'static [&'static str],
    pub deep: bool,
}

impl TableName {
    /// Whether the table holds more than one sequence (its column names carry the sequence).
    pub fn is_joint(&self) -> bool {
        self.sequences.len() > 1
    }
}

/// Parses `t2`, `t2+deep`, `t1c+t2` or `t1c+t2+deep`; `None` for anything else.
pub fn parse_table(name: &str) -> Option<TableName> {
    let (base, deep) = match name.strip_suffix(WITH_DEEP) {
        Some(b) => (b, true),
        None => (name, false),
    };
    if base == BOTH_SEQUENCES {
        return Some(TableName { sequences: &SEQUENCES, deep });
    }
    SEQUENCES.iter().position(|s| *s == base).map(|k| TableName { sequences: &SEQUENCES[k..=k], deep })
}

/// A one-sequence table's name split into the sequence and whether deep features are
/// appended; `None` for an unknown sequence or the table of both sequences.
pub fn table_name(name: &str) -> Option<(&'static str, bool)> {
    parse_table(name).filter(|t| !t.is_joint()).map(|t| (t.sequences[0], t.deep))
}

/// A column of the table of both sequences: `t2:original_firstorder_Mean` (both sequences
/// have a column of that name, so the sequence is part of it).
pub fn sequence_column(sequence: &str, name: &str) -> String {
    format!("{sequence}:{name}")
}

/// A column's name independent of the table that holds it: `t2:original_firstorder_Mean`
/// for that column of `t2`, `t2+deep` or `t1c+t2` alike; `None` for an unknown table.
pub fn canonical_column(table: &str, name: &str) -> Option<String> {
    let t = parse_table(table)?;
    Some(if t.is_joint() { name.to_string() } else { sequence_column(t.sequences[0], name) })
}

/// The column names of the table of both sequences from each sequence's radiomic names and,
/// for `t1c+t2+deep`, each sequence's deep names (in [`SEQUENCES`] order both).
pub fn both_sequences_columns(radiomic: &[&[String]; 2], deep: Option<&[&[String]; 2]>) -> Vec<String> {
    let mut out = Vec::new();
    for parts in std::iter::once(radiomic).chain(deep) {
        for (sequence, names) in SEQUENCES.iter().zip(parts) {
            out.extend(names.iter().map(|n| sequence_column(sequence, n)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_say_which_sequences_and_parts_a_table_holds() {
        assert_eq!(parse_table("t2"), Some(TableName { sequences: &["t2"], deep: false }));
        assert_eq!(parse_table("t1c+deep"), Some(TableName { sequences: &["t1c"], deep: true }));
        assert_eq!(parse_table("t1c+t2"), Some(TableName { sequences: &["t1c", "t2"], deep: false }));
        assert_eq!(parse_table("t1c+t2+deep"), Some(TableName { sequences: &["t1c", "t2"], deep: true }));
        for bad in ["t2+t1c", "t2+deep+deep", "t1c+t2+x", "", "+deep", "flair"] {
            assert_eq!(parse_table(bad), None, "{bad}");
        }
        assert_eq!(table_name("t1c+t2"), None, "the one-sequence form refuses the table of both");
        assert_eq!(table_name("t2+deep"), Some(("t2", true)));
        assert_eq!(canonical_column("t2+deep", "deep_0001").as_deref(), Some("t2:deep_0001"));
        assert_eq!(canonical_column("t1c+t2", "t2:x").as_deref(), Some("t2:x"));
        assert_eq!(canonical_column("t2", "x"), canonical_column("t1c+t2", "t2:x"));
    }

    #[test]
    fn the_table_of_both_sequences_names_each_column_with_its_sequence() {
        let r = vec!["original_firstorder_Mean".to_string()];
        let d = vec!["deep_0000".to_string(), "deep_0001".to_string()];
        assert_eq!(both_sequences_columns(&[&r, &r], None), ["t1c:original_firstorder_Mean", "t2:original_firstorder_Mean"]);
        assert_eq!(
            both_sequences_columns(&[&r, &r], Some(&[&d, &d])),
            ["t1c:original_firstorder_Mean", "t2:original_firstorder_Mean", "t1c:deep_0000", "t1c:deep_0001", "t2:deep_0000", "t2:deep_0001"]
        );
    }
}
