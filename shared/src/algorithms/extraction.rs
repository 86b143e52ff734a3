//! Feature-extraction summary: per site and sequence, how many cases gave features, how many
//! failed — and why (counts per reason) where the plan and the site publish per-site results,
//! since a hospital's failures per reason, like its excluded manifest rows per reason, are a
//! result about that hospital alone — and how many features each case has. The features
//! themselves stay at the site. The counts of cases with features are planning inputs (model
//! sizes, `coordinator::model_size`), read per site.

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

/// What failures count under when their site does not publish their reasons.
pub const REASON_NOT_PUBLISHED: &str = "reason_not_published";

/// A site's failure counts under `prefix`: per reason (`failed_by_reason`, in the order of
/// `reasons`) where it publishes per-site results (`by_reason`), else only their total
/// (`failed`).
pub fn with_failures(b: AggregateBuilder, prefix: &str, reasons: &[&str], failed: &BTreeMap<String, u64>, by_reason: bool) -> AggregateBuilder {
    if by_reason {
        b.vector(format!("{prefix}failed_by_reason"), reasons.iter().map(|r| *failed.get(*r).unwrap_or(&0) as f64).collect())
    } else {
        b.scalar(format!("{prefix}failed"), failed.values().sum::<u64>() as f64)
    }
}

/// Reads [`with_failures`]' counts in either form: per reason (reasons without failures left
/// out), or the total under [`REASON_NOT_PUBLISHED`].
pub fn failures(a: &SiteAggregate, prefix: &str, reasons: &[&str]) -> Result<BTreeMap<String, u64>, CombineError> {
    let by_reason = format!("{prefix}failed_by_reason");
    let counts: Vec<(String, u64)> = if a.values(&by_reason).is_ok() {
        reasons.iter().map(|r| r.to_string()).zip(a.counts(&by_reason, reasons.len())?).collect()
    } else {
        vec![(REASON_NOT_PUBLISHED.to_string(), a.count(&format!("{prefix}failed"))?)]
    };
    Ok(counts.into_iter().filter(|(_, c)| *c > 0).collect())
}

// ---- site half ---------------------------------------------------------------------------

/// `by_reason`: the plan and this site publish per-site results.
pub fn site_extraction_aggregate(loaded: u64, outcomes: &BTreeMap<String, SequenceSummary>, min_count: u64, by_reason: bool) -> Result<Aggregate, SiteRefusal> {
    require_min_count("the loaded cohort", loaded, min_count)?;
    let mut b = AggregateBuilder::new(loaded);
    for seq in SEQUENCES {
        let o = outcomes.get(seq).cloned().unwrap_or_default();
        b = with_failures(b.scalar(format!("{seq}/succeeded"), o.succeeded as f64), &format!("{seq}/"), &FAILURE_REASONS, &o.failed, by_reason)
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
            let failed = failures(a, &format!("{seq}/"), &FAILURE_REASONS)?;
            let features = a.count(&format!("{seq}/features"))?;
            if succeeded + failed.values().sum::<u64>() != a.patient_count() {
                return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: format!("{seq}: cases do not add up to the cohort") });
            }
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

    /// Failures per reason only where the site publishes per-site results; otherwise their
    /// total, which still adds up with the cases extracted and sums over the sites.
    #[test]
    fn failure_reasons_leave_only_with_per_site_results() {
        let outcome = |failed: &[(&str, u64)]| {
            let failed: BTreeMap<String, u64> = failed.iter().map(|(r, c)| (r.to_string(), *c)).collect();
            let o = SequenceSummary { succeeded: 20 - failed.values().sum::<u64>(), failed, features: 7 };
            SEQUENCES.iter().map(|s| (s.to_string(), o.clone())).collect::<BTreeMap<_, _>>()
        };
        let a = outcome(&[("empty_mask", 2), ("roi_too_small", 1)]);
        let b = outcome(&[("empty_mask", 1)]);
        let answer = |site: &str, o: &BTreeMap<String, SequenceSummary>, by_reason| SiteAggregate::new(site, site_extraction_aggregate(20, o, 5, by_reason).unwrap());
        let published = combine(&[answer("a", &a, true), answer("b", &b, true)]).unwrap();
        assert_eq!(published.per_site["a"]["t2"].failed, a["t2"].failed);
        assert_eq!(published.total["t2"].failed, BTreeMap::from([("empty_mask".to_string(), 3), ("roi_too_small".to_string(), 1)]));
        let unpublished = [answer("a", &a, false), answer("b", &b, false)];
        assert!(unpublished.iter().all(|x| x.aggregate.tensors.iter().all(|t| !t.name.contains("by_reason"))), "no reason leaves");
        let summary = combine(&unpublished).unwrap();
        assert_eq!(summary.per_site["a"]["t2"].failed, BTreeMap::from([(REASON_NOT_PUBLISHED.to_string(), 3)]));
        assert_eq!(summary.total["t1c"].failed, BTreeMap::from([(REASON_NOT_PUBLISHED.to_string(), 4)]));
        assert_eq!(summary.total["t1c"].succeeded, published.total["t1c"].succeeded);
    }

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
