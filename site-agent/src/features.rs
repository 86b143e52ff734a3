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
use crate::radiomics::extract::{ExtractionError, extract_files};
use crate::radiomics::settings::Settings;

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

/// The feature columns the settings produce, in table order. Column names depend only on the
/// settings, so they are read off a small built-in phantom (a lumpy ellipsoid) — the same code
/// path as a patient, which keeps the coordinator's catalogue and the sites' tables in step.
pub fn feature_catalogue(settings: &Settings) -> Result<Vec<String>, ExtractionError> {
    use fedrad_imaging::{Geometry, Volume};
    let dims = [24usize, 24, 16];
    let geometry = Geometry::axis_aligned(dims, [1.0, 1.0, 1.5]);
    let mut image = Vec::with_capacity(dims.iter().product());
    let mut mask = Vec::with_capacity(dims.iter().product());
    let mut state = 0x5eed_u64;
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = (state >> 40) as f32 / (1u64 << 24) as f32;
                let (x, y, z) = (i as f32 - 11.5, j as f32 - 11.5, (k as f32 - 7.5) * 1.5);
                let r = (x * x / 64.0 + y * y / 49.0 + z * z / 81.0).sqrt();
                let inside = r < 1.0 + 0.15 * (x * 0.7).sin() * (y * 0.5).cos();
                image.push(200.0 + 60.0 * (x * 0.4).sin() + 40.0 * noise + if inside { 150.0 } else { 0.0 });
                mask.push(inside as u8 as f32);
            }
        }
    }
    let features = crate::radiomics::extract::extract(&Volume::new(geometry.clone(), image), &Volume::new(geometry, mask), settings)?;
    Ok(features.iter().map(|f| f.column()).collect())
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
