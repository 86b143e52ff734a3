//! `site-agent predict`: scores new patients at the site with a model the study saved, from
//! their images (extracted with the study's settings) and clinical values. Nothing leaves.
//!
//! Input: a CSV with `patient_id`, `<sequence>_image` and `<sequence>_mask` for the model's
//! sequence, or for both of a model on both sequences (paths relative to the CSV's folder;
//! an optional `<sequence>_roi` names a DICOM mask's region) and, for a model with clinical terms, the
//! clinical variables' columns. No outcome is needed. Output: one row per patient with the
//! predicted probability and the call at the study's threshold, or the reason it could not
//! be scored.
//!
//! Deep features (Models II and III) come from the study's encoder (its weights file, checked
//! against the hash the model names; one per sequence for a model on both sequences) or from
//! the study-supplied ONNX network the site holds
//! (its file, run only if it hashes to the study's SHA-256), on the same 2.5D crop the site
//! used in the study.

use std::path::Path;

use anyhow::{Context, bail};
use rayon::prelude::*;

use fedrad_shared::algorithms::classifiers::ModelFile;
use fedrad_shared::algorithms::combat;
use fedrad_shared::algorithms::encoder::{self, Architecture};
use fedrad_shared::algorithms::extraction::{catalogue_sha256, deep_feature_names, parse_table, sequence_column};
use fedrad_shared::algorithms::fedavg::weights_sha256;
use fedrad_shared::algorithms::logistic;
use fedrad_shared::clinical::PatientRecord;
use std::collections::BTreeMap;

use crate::onnx::{InputRecipe, Intensity, Network};
use fedrad_radiomics::extract::extract_files;
use fedrad_radiomics::settings::Settings;

/// How many patients were scored and how many could not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictSummary {
    pub scored: usize,
    pub failed: usize,
}

pub fn load_model(path: &Path) -> anyhow::Result<ModelFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading model file {}", path.display()))?;
    let m: ModelFile = serde_json::from_str(&text).with_context(|| format!("{} is not a FedRad model file", path.display()))?;
    if m.scorer.width() != m.standardiser.center.len() || m.feature_columns.len() + m.clinical_columns.len() != m.scorer.width() {
        bail!("{}: the model's design, standardiser and scorer do not fit together", path.display());
    }
    Ok(m)
}

/// This site's ComBat adjustment of a table, as `combat_apply` recorded it
/// (`<work_dir>/studies/<study>/harmonisation/<sequence>[.deep].json`).
#[derive(Debug, serde::Deserialize)]
pub struct SiteHarmonisation {
    pub sequence: String,
    pub deep: bool,
    pub estimates: combat::CombatEstimates,
    pub adjustment: combat::BatchAdjustment,
    /// Where it was read from (for messages).
    #[serde(skip)]
    pub path: std::path::PathBuf,
}

/// Reads a site's harmonisation record.
pub fn load_harmonisation(path: &Path) -> anyhow::Result<SiteHarmonisation> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the harmonisation record {}", path.display()))?;
    let mut h: SiteHarmonisation = serde_json::from_str(&text).with_context(|| format!("{} is not a FedRad harmonisation record", path.display()))?;
    h.path = path.to_path_buf();
    let e = &h.estimates;
    let width = e.alpha.len();
    if e.harmonised.len() != h.adjustment.gamma_star.len()
        || e.harmonised.len() != h.adjustment.delta_star.len()
        || e.var_pooled.len() != width
        || e.beta.len() != width * e.covariate_mean.len()
        || e.harmonised.iter().any(|&j| j as usize >= width)
    {
        bail!("{}: the harmonisation record is inconsistent", path.display());
    }
    Ok(h)
}

/// The study's encoder weights (`deep/<sequence>/weights.json` of its output folder).
#[derive(Debug, serde::Deserialize)]
pub struct EncoderWeights {
    pub weights: Vec<f64>,
}

pub fn load_encoder(path: &Path) -> anyhow::Result<EncoderWeights> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the encoder weights {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a FedRad encoder weights file", path.display()))
}

/// What a model needs beside its file: this site's ComBat records, the study's encoder, or
/// the folder that holds the study's ONNX network (the site's `networks_dir`).
#[derive(Debug, Default)]
pub struct PredictInputs {
    pub harmonisation: Vec<SiteHarmonisation>,
    /// The study's encoder weights, one file per sequence whose deep features the model uses
    /// (a model on both sequences uses two); each is matched to its sequence by hash.
    pub encoders: Vec<EncoderWeights>,
    pub networks_dir: Option<std::path::PathBuf>,
}

/// Where a model's deep features come from at this site.
enum DeepSource<'a> {
    Encoder(Architecture, &'a [f64]),
    Network(Network, InputRecipe),
}

/// The checked pieces of one sequence's part of a model's feature row.
struct SequenceRecipe<'a> {
    sequence: &'static str,
    radiomic_combat: Option<&'a SiteHarmonisation>,
    deep: Option<(DeepSource<'a>, Option<&'a SiteHarmonisation>)>,
}

/// The checked pieces of one model's feature row: one part per sequence of its table (two for
/// a model on both sequences, whose columns carry their sequence's name).
struct Recipe<'a> {
    parts: Vec<SequenceRecipe<'a>>,
    joint: bool,
}

fn recipe<'a>(model: &'a ModelFile, inputs: &'a PredictInputs) -> anyhow::Result<Recipe<'a>> {
    let Some(table) = parse_table(&model.sequence) else { bail!("model {} names the feature table {:?}, which this FedRad does not know", model.model, model.sequence) };
    // Every record given must be one of this model's study, for a part the model uses, once.
    let mut given: BTreeMap<String, &SiteHarmonisation> = BTreeMap::new();
    for h in &inputs.harmonisation {
        let stem = combat::table_stem(&h.sequence, h.deep);
        if given.insert(stem.clone(), h).is_some() {
            bail!("two harmonisation records for the {stem} features were given; pass each once");
        }
        if model.combat.is_none() {
            bail!("this model was fitted on features as extracted; its study did not harmonise them, so --harmonisation {} does not apply", h.path.display());
        }
        let Some(expected) = model.combat_estimates.get(&stem) else {
            bail!("this model does not use the {stem} features (it uses {}), so --harmonisation {} does not apply", model.sequence, h.path.display());
        };
        let digest = combat::estimates_sha256(&h.estimates);
        if &digest != expected {
            bail!(
                "{}: these ComBat estimates (SHA-256 {digest}) are not the ones study {} sent for the {stem} features ({expected}): a record of another study or harmonisation",
                h.path.display(),
                model.study_id
            );
        }
    }
    let record = |sequence: &str, deep: bool| -> anyhow::Result<Option<&SiteHarmonisation>> {
        let stem = combat::table_stem(sequence, deep);
        match (&model.combat, given.get(&stem)) {
            (Some(_), None) => bail!(
                "this model was fitted on ComBat-harmonised {sequence} {} features: pass --harmonisation <work_dir>/studies/{}/harmonisation/{stem}.json, this site's own adjustment",
                if deep { "deep" } else { "radiomic" },
                model.study_id,
            ),
            (Some(_), Some(_)) if !model.combat_estimates.contains_key(&stem) => {
                bail!("the model file names no ComBat estimates for the {stem} features (a model file of an older FedRad); it cannot be checked")
            }
            (_, r) => Ok(r.copied()),
        }
    };
    let mut parts = Vec::new();
    for &sequence in table.sequences {
        let radiomic_combat = record(sequence, false)?;
        let deep = if table.deep { Some((deep_source(model, sequence, inputs)?, record(sequence, true)?)) } else { None };
        parts.push(SequenceRecipe { sequence, radiomic_combat, deep });
    }
    Ok(Recipe { parts, joint: table.is_joint() })
}

/// Where `sequence`'s deep features come from for this model: the study's ONNX network from
/// the site's folder, or the study's encoder weights among those given, each checked by hash.
fn deep_source<'a>(model: &'a ModelFile, sequence: &str, inputs: &'a PredictInputs) -> anyhow::Result<DeepSource<'a>> {
    let Some(recipe) = model.deep_recipe(sequence) else {
        bail!("model {} of {} has {sequence} deep features but no recipe for them (a model file of an older FedRad)", model.model, model.sequence)
    };
    if let Some(net) = &recipe.network {
        let Some(dir) = &inputs.networks_dir else {
            bail!(
                "this model's deep features come from the study's ONNX network {:?}: pass --networks <the folder that holds it> (this site's networks_dir; the file must hash to {})",
                net.file,
                net.sha256
            )
        };
        let intensity = Intensity::parse(&net.intensity).ok_or_else(|| anyhow::anyhow!("the model's network intensity {:?} is not one FedRad knows", net.intensity))?;
        let input = InputRecipe { size: net.input_size, channels: net.channels, field_mm: net.field_mm, intensity };
        input.validate().map_err(|e| anyhow::anyhow!("the model's network input: {e}"))?;
        let network = Network::load(dir, &net.file, &net.sha256, &input)?;
        return Ok(DeepSource::Network(network, input));
    }
    let Some(arch) = recipe.architecture else {
        bail!("model {} of {} has {sequence} deep features from neither an encoder nor a network (a damaged model file)", model.model, model.sequence)
    };
    if inputs.encoders.is_empty() {
        bail!("this model uses the study's {sequence} encoder: pass --encoder <the study's output folder>/{} (SHA-256 {})", recipe.weights_file, recipe.weights_sha256)
    }
    let digests: Vec<String> = inputs.encoders.iter().map(|e| weights_sha256(&e.weights)).collect();
    match inputs.encoders.iter().zip(&digests).find(|(e, d)| **d == recipe.weights_sha256 && e.weights.len() == arch.parameter_count()) {
        Some((e, _)) => Ok(DeepSource::Encoder(arch, e.weights.as_slice())),
        None => bail!(
            "the encoder weights given hash to {}; the model's {sequence} deep features were computed with {}: not the study's encoder (pass --encoder <the study's output folder>/{})",
            digests.join(", "),
            recipe.weights_sha256,
            recipe.weights_file
        ),
    }
}

/// Scores every row of `manifest`, writing `out`. A model fitted on ComBat-harmonised features
/// needs this site's harmonisation records: new patients are harmonised as the study's
/// validation patients were (the training mean of the covariate term, this site's γ*, δ*). A
/// model with deep features needs the study's encoder weights, checked against the hash its
/// model file names, and computes them from the same 2.5D crop the site embedded.
pub fn predict(model: &ModelFile, manifest: &Path, out: &Path, inputs: &PredictInputs) -> anyhow::Result<PredictSummary> {
    let recipe = recipe(model, inputs)?;
    let settings = if model.extraction_parameters.trim().is_empty() {
        Settings::study_default()
    } else {
        Settings::from_pyradiomics_yaml(&model.extraction_parameters).map_err(|e| anyhow::anyhow!("the model's extraction parameters: {e}"))?
    };
    let base = manifest.parent().unwrap_or(Path::new("."));
    let mut reader = csv::Reader::from_path(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let mut required = vec!["patient_id".to_string()];
    for part in &recipe.parts {
        required.extend([format!("{}_image", part.sequence), format!("{}_mask", part.sequence)]);
    }
    if !model.clinical_columns.is_empty() {
        required.extend(model.clinical_variables.iter().map(|v| v.name.clone()));
    }
    let missing: Vec<&String> = required.iter().filter(|c| col(c).is_none()).collect();
    if !missing.is_empty() {
        bail!("{} lacks the column(s) {:?} that this model needs", manifest.display(), missing);
    }
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().with_context(|| format!("reading {}", manifest.display()))?;
    let results: Vec<(String, Result<f64, String>)> = rows
        .par_iter()
        .map(|row| {
            let get = |c: &str| col(c).and_then(|i| row.get(i)).unwrap_or("").trim().to_string();
            let id = get("patient_id");
            (id.clone(), score_one(model, &settings, &recipe, base, &get, &id))
        })
        .collect();
    let mut text = String::from("patient_id,probability,positive,error\n");
    let mut summary = PredictSummary { scored: 0, failed: 0 };
    for (id, r) in results {
        match r {
            Ok(p) => {
                summary.scored += 1;
                text.push_str(&format!("{id},{p:.6},{},\n", (p >= model.threshold) as u8));
            }
            Err(e) => {
                summary.failed += 1;
                tracing::warn!(patient = %id, error = %e, "could not score");
                text.push_str(&format!("{id},,,\"{}\"\n", e.replace('"', "'")));
            }
        }
    }
    crate::engine::write_atomic(out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    Ok(summary)
}

/// One patient's probability: each sequence's radiomic features (then, for a model with deep
/// features, each sequence's deep features) in the order of the study's table, harmonised
/// with the site's own records, then the model's columns, clinical terms and scorer.
fn score_one(model: &ModelFile, settings: &Settings, recipe: &Recipe, base: &Path, get: &dyn Fn(&str) -> String, id: &str) -> Result<f64, String> {
    let harmonise = |h: Option<&SiteHarmonisation>, v: Vec<f64>| -> Result<Vec<f64>, String> {
        match h {
            None => Ok(v),
            Some(h) if h.estimates.alpha.len() == v.len() => Ok(combat::harmonise_row(&h.estimates, &h.adjustment, &v, None)),
            Some(_) => Err("the harmonisation record is for another feature table".into()),
        }
    };
    let column = |sequence: &str, name: String| if recipe.joint { sequence_column(sequence, &name) } else { name };
    let (mut names, mut values) = (Vec::new(), Vec::new());
    let (mut deep_names, mut deep_values) = (Vec::new(), Vec::new());
    for part in &recipe.parts {
        let seq = part.sequence;
        // A DICOM mask names its region in the optional `<sequence>_roi` column.
        let roi = get(&format!("{seq}_roi"));
        let roi = Some(roi.as_str()).filter(|r| !r.is_empty());
        let image = base.join(get(&format!("{seq}_image")));
        let mask = base.join(get(&format!("{seq}_mask")));
        let features = extract_files(&image, &mask, roi, settings).map_err(|e| format!("{seq}: {}: {e}", e.reason()))?;
        names.extend(features.iter().map(|f| column(seq, f.column())));
        values.extend(harmonise(part.radiomic_combat, features.iter().map(|f| f.value).collect())?);
        if let Some((source, deep_combat)) = &part.deep {
            let pair = crate::manifest::ImagePair { image, mask, roi: roi.map(str::to_string) };
            let deep = match source {
                DeepSource::Encoder(arch, weights) => {
                    let crop = crate::deep::crop_files(&pair, arch).map_err(|e| format!("{seq} deep features: {}", e.reason()))?;
                    encoder::embed(arch, weights, &crop)
                }
                DeepSource::Network(network, input) => {
                    let crop = crate::deep::crop_files(&pair, &input.crop_architecture()).map_err(|e| format!("{seq} deep features: {}", e.reason()))?;
                    let out = network.run(&input.input(&crop)).map_err(|e| format!("{seq} deep features: {e}"))?;
                    if out.iter().any(|v| !v.is_finite()) {
                        return Err(format!("{seq} deep features: the network gave non-finite outputs"));
                    }
                    out
                }
            };
            deep_names.extend(deep_feature_names(deep.len()).into_iter().map(|n| column(seq, n)));
            deep_values.extend(harmonise(*deep_combat, deep)?);
        }
    }
    names.extend(deep_names);
    values.extend(deep_values);
    if catalogue_sha256(&names) != model.catalogue_sha256 {
        return Err("the extracted features differ from the study's (another FedRad version or settings?)".into());
    }
    let mut row: Vec<f64> = model
        .feature_columns
        .iter()
        .map(|&c| {
            values
                .get(c as usize)
                .copied()
                .ok_or_else(|| format!("the model file names feature column {c}, past the table's {} columns (a damaged model file)", values.len()))
        })
        .collect::<Result<_, _>>()?;
    if !model.clinical_columns.is_empty() {
        let mut record = PatientRecord { patient_id: id.into(), outcome: false, clinical: Default::default() };
        for v in &model.clinical_variables {
            let value = v.parse(&get(&v.name))?;
            record.clinical.insert(v.name.clone(), value);
        }
        let design = logistic::design_row(&record, &model.clinical_variables).ok_or("a clinical value is missing")?;
        row.extend(model.clinical_columns.iter().map(|&k| design[k as usize]));
    }
    let z = model.standardiser.apply(std::slice::from_ref(&row)).map_err(|e| e.to_string())?;
    Ok(model.scorer.probability(&z[0]))
}
