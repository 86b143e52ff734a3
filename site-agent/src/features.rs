//! Feature extraction over the site's whole cohort: every loaded patient, both sequences,
//! in parallel over the cores, cached so an unchanged study never recomputes.
//!
//! Cache: `work_dir/features/cache/<key>.csv`, key = SHA-256 of the settings and of the bytes
//! of the image and mask files. Per study, `studies/<study>/features/<sequence>.csv` holds one
//! row per patient that succeeded (patient id, then one column per feature) and
//! `<sequence>.failures.csv` the patients that failed with the reason. Both stay at the site.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use fedrad_shared::algorithms::extraction::SequenceSummary;

use crate::audit::sha256_hex;
use crate::manifest::{ImagePair, LoadedCohort, SEQUENCES};
use fedrad_radiomics::extract::{ExtractionError, extract_files};
use fedrad_radiomics::settings::Settings;

/// One patient's features for one sequence: column names and values, in a fixed order.
pub type FeatureRow = (Vec<String>, Vec<f64>);

/// SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, in name order):
/// a DICOM series is a folder.
fn content_digest(p: &Path) -> Result<String, ExtractionError> {
    let err = |e: std::io::Error| ExtractionError::Read(format!("{}: {e}", p.display()));
    if !p.is_dir() {
        return Ok(sha256_hex(&std::fs::read(p).map_err(err)?));
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let path = e?.path();
            if path.is_dir() { walk(&path, out)? } else { out.push(path) }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(p, &mut files).map_err(err)?;
    files.sort();
    let mut text = String::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(err)?;
        text.push_str(&format!("{}:{}\n", f.strip_prefix(p).unwrap_or(&f).display(), sha256_hex(&bytes)));
    }
    Ok(sha256_hex(text.as_bytes()))
}

fn cached_extract(cache_dir: &Path, settings: &Settings, pair: &ImagePair) -> Result<FeatureRow, ExtractionError> {
    let key = sha256_hex(
        format!("{}|{}|{}|{}", settings.digest_text(), content_digest(&pair.image)?, content_digest(&pair.mask)?, pair.roi.as_deref().unwrap_or("")).as_bytes(),
    );
    let path = cache_dir.join(format!("{key}.csv"));
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut names = Vec::new();
        let mut values = Vec::new();
        let mut ok = true;
        for line in text.lines() {
            match line.rsplit_once(',').map(|(n, v)| (n, v.parse::<f64>())) {
                Some((n, Ok(v))) => {
                    names.push(n.to_string());
                    values.push(v);
                }
                _ => ok = false,
            }
        }
        if ok && !names.is_empty() {
            return Ok((names, values));
        }
    }
    let features = extract_files(&pair.image, &pair.mask, pair.roi.as_deref(), settings)?;
    let names: Vec<String> = features.iter().map(|f| f.column()).collect();
    let values: Vec<f64> = features.iter().map(|f| f.value).collect();
    let text: String = names.iter().zip(&values).map(|(n, v)| format!("{n},{v}\n")).collect();
    if let Err(e) = crate::engine::write_atomic(&path, text.as_bytes()) {
        tracing::warn!(error = %e, "could not write the feature cache");
    }
    Ok((names, values))
}

/// Extracts every patient's features for both sequences and writes the study's tables.
/// `progress` is called once per finished case.
pub fn extract_cohort(
    cohort: &LoadedCohort,
    settings: &Settings,
    work_dir: &Path,
    study_dir: &Path,
    progress: &(dyn Fn() + Sync),
) -> std::io::Result<BTreeMap<String, SequenceSummary>> {
    let cache = work_dir.join("features").join("cache");
    std::fs::create_dir_all(&cache)?;
    let out_dir = study_dir.join("features");
    std::fs::create_dir_all(&out_dir)?;
    let mut outcomes = BTreeMap::new();
    for seq in SEQUENCES {
        let cases: Vec<(String, &ImagePair)> = cohort.records.iter().zip(&cohort.images).map(|(r, img)| (r.patient_id.clone(), img.sequence(seq))).collect();
        // Each case is computed on one thread, so results do not depend on the thread count.
        let results: Vec<(String, Result<FeatureRow, ExtractionError>)> = cases
            .par_iter()
            .map(|(id, pair)| {
                let r = cached_extract(&cache, settings, pair);
                progress();
                (id.clone(), r)
            })
            .collect();
        let mut outcome = SequenceSummary::default();
        let mut header: Option<Vec<String>> = None;
        let mut table = String::new();
        let mut failures = String::from("patient_id,reason,detail\n");
        for (id, r) in results {
            match r {
                Ok((names, values)) => {
                    // Column names depend on the settings only, so every case has the same.
                    if header.is_none() {
                        table.push_str("patient_id");
                        for n in &names {
                            table.push(',');
                            table.push_str(n);
                        }
                        table.push('\n');
                        header = Some(names);
                    }
                    table.push_str(&id);
                    for v in values {
                        table.push_str(&format!(",{v}"));
                    }
                    table.push('\n');
                    outcome.succeeded += 1;
                }
                Err(e) => {
                    tracing::warn!(patient = %id, sequence = seq, reason = e.reason(), error = %e, "feature extraction failed");
                    failures.push_str(&format!("{id},{},\"{}\"\n", e.reason(), e.to_string().replace('"', "'")));
                    *outcome.failed.entry(e.reason().to_string()).or_default() += 1;
                }
            }
        }
        outcome.features = header.map_or(0, |h| h.len() as u64);
        crate::engine::write_atomic(&out_dir.join(format!("{seq}.csv")), table.as_bytes())?;
        crate::engine::write_atomic(&out_dir.join(format!("{seq}.failures.csv")), failures.as_bytes())?;
        outcomes.insert(seq.to_string(), outcome);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    /// The engine's failure reasons are the study summary's tensor entries, in its order.
    #[test]
    fn the_engine_reasons_are_the_summary_reasons() {
        assert_eq!(fedrad_radiomics::extract::ExtractionError::REASONS, fedrad_shared::algorithms::extraction::FAILURE_REASONS);
    }
}
