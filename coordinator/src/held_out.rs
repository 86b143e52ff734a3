//! Leave-one-hospital-out validation (the study file's `[validation] leave_one_hospital_out`):
//! for each hospital, the selection and every model again on the other hospitals' training
//! patients, validated on all of that hospital's patients — what a model is worth at a
//! hospital it never saw, beside the random split.
//!
//! Each analysis is a study of its own to the sites ([`StudyPlan::held_out_analysis`]): its id
//! is the study's with `.without-<site>`, its plan the study's over the other sites, and every
//! site derives it from the plan its operator approved. It shares the study's populations
//! (split, folds, feature tables, deep features), which the sites read from the study, and
//! pins its own standardisers, fitted models and tree edges. Its fits are the same
//! request/absorb rounds as the study's ([`crate::models`], [`crate::selection`]) over fewer
//! sites, so federated still equals pooled: an analysis's model is the pooled algorithm on
//! the other hospitals' training rows.
//!
//! What the held-out site accepts: only score tasks of the analysis's final models, each
//! carrying every fitting site's signature over its own answer to the same task
//! (`proto::ScoreAttestation`), verified against the keys the plan pins; the fitting sites
//! scored those models only because they are in their own ledgers of fitted models (or
//! within their plan-derived budget for the kinds they cannot verify). So a coordinator
//! cannot have the held-out site score a "model" of its own choosing without every other
//! site scoring it first; and the held-out site scores at most one model per classifier of
//! each model of the plan (site-agent's `ledger`).
//!
//! The held-out hospital's patients are scored in the study's two cohorts and merged here:
//! its AUC is over all of them, at the threshold the other hospitals' training patients chose
//! (Youden). Pooled over hospitals, each patient is scored by the model fitted without its
//! hospital: the AUC of the summed histograms, and accuracy, sensitivity and specificity from
//! the summed counts at each analysis's own threshold.
//!
//! Not in the analyses: ComBat (the plan refuses the combination, as ComBat's estimates use
//! every site's outcomes) and the deep encoder, which is the study's — trained on every
//! hospital's images without their outcomes — so Model II and III of an analysis use deep
//! features whose encoder saw the held-out hospital's images (unlabelled).

use std::collections::BTreeMap;

use fedrad_shared::aggregate::SiteAggregate;
use fedrad_shared::algorithms::metrics::{self, ScoreHistogram};
use fedrad_shared::algorithms::{CombineError, split};
use fedrad_shared::clinical::CohortRole;
use fedrad_shared::plan::StudyPlan;
use fedrad_shared::proto::{self, task};
use prost::Message;

use crate::models::ModelResult;
use crate::selection::{Missing, SelectionResults};
use crate::study::{StudyError, StudyRunner, reply_aggregate};

/// One hospital left out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldOutHospital {
    pub site: String,
    /// The analysis's study id at the sites.
    pub analysis_id: String,
    /// Per sequence and feature group ("t2 radiomic", "t2 combined"), the features selected.
    pub selected: BTreeMap<String, Vec<String>>,
    /// The analysis's models, each classifier with its `held_out` metrics.
    pub models: Vec<ModelResult>,
    /// Why the analysis has no results, when it has none.
    pub note: Option<String>,
}

/// One classifier of one model over every held-out hospital.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PooledHeldOut {
    pub sequence: String,
    pub model: String,
    pub classifier: fedrad_shared::algorithms::classifiers::ClassifierKind,
    /// Per held-out hospital: its AUC.
    pub per_hospital_auc: BTreeMap<String, f64>,
    /// The mean of the per-hospital AUCs.
    pub mean_auc: f64,
    pub n: u64,
    pub positives: u64,
    /// The AUC of every held-out patient, each scored by the model fitted without its hospital.
    pub pooled_auc: f64,
    pub pooled_auc_ci: (f64, f64),
    /// At each analysis's own threshold, from the summed counts.
    pub accuracy: f64,
    pub sensitivity: f64,
    pub specificity: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaveOneHospitalOut {
    pub hospitals: Vec<HeldOutHospital>,
    /// Classifiers with held-out results at every hospital.
    pub pooled: Vec<PooledHeldOut>,
}

/// A held-out site's answer for one scorer, its two cohorts merged: every patient of the
/// hospital is new to the analysis's models.
pub(crate) fn all_patients(answer: &SiteAggregate, grid: u32) -> Result<ScoreHistogram, CombineError> {
    let (total, _) = metrics::combine(std::slice::from_ref(answer), grid)?;
    let mut merged = total.get(&CohortRole::Training).cloned().unwrap_or_default();
    if let Some(v) = total.get(&CohortRole::Validation) {
        merged.add(v);
    }
    Ok(merged)
}

/// The pooled results of the classifiers that every hospital's analysis validated.
pub(crate) fn pool(hospitals: &[HeldOutHospital]) -> Vec<PooledHeldOut> {
    let mut by_key: BTreeMap<(String, String, fedrad_shared::algorithms::classifiers::ClassifierKind), Vec<(&str, &crate::models::ClassifierResult)>> = BTreeMap::new();
    for h in hospitals {
        for m in &h.models {
            for c in &m.classifiers {
                if c.held_out.is_some() && c.held_out_histogram.is_some() {
                    by_key.entry((m.sequence.clone(), m.model.clone(), c.classifier)).or_default().push((&h.site, c));
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((sequence, model, _), results) in by_key {
        if results.len() != hospitals.len() {
            continue;
        }
        let mut pooled = ScoreHistogram::default();
        let (mut n, mut positives, mut tp, mut tn) = (0u64, 0u64, 0.0, 0.0);
        let mut per_hospital_auc = BTreeMap::new();
        for (site, c) in &results {
            let m = c.held_out.as_ref().expect("filtered");
            pooled.add(c.held_out_histogram.as_ref().expect("filtered"));
            per_hospital_auc.insert(site.to_string(), m.auc);
            n += m.n;
            positives += m.positives;
            tp += m.sensitivity * m.positives as f64;
            tn += m.specificity * (m.n - m.positives) as f64;
        }
        let (auc, se) = pooled.auc();
        let mean_auc = per_hospital_auc.values().sum::<f64>() / per_hospital_auc.len() as f64;
        out.push(PooledHeldOut {
            sequence,
            model,
            classifier: results[0].1.classifier,
            per_hospital_auc,
            mean_auc,
            n,
            positives,
            pooled_auc: auc,
            pooled_auc_ci: ((auc - 1.96 * se).max(0.0), (auc + 1.96 * se).min(1.0)),
            accuracy: (tp + tn) / n.max(1) as f64,
            sensitivity: tp / positives.max(1) as f64,
            specificity: tn / (n - positives).max(1) as f64,
        });
    }
    out
}

/// What the study's run hands to its analyses.
pub(crate) struct StudyParts<'p> {
    pub plan: &'p StudyPlan,
    pub catalogue: &'p [String],
    pub deep_catalogues: &'p BTreeMap<String, Vec<String>>,
    pub deep: &'p [crate::deep::DeepResult],
    pub split: &'p split::SplitSummary,
    pub missing: &'p Missing,
    pub selection: &'p SelectionResults,
    pub extraction_parameters: &'p str,
}

impl<'a> StudyRunner<'a> {
    /// Every hospital's analysis in turn (sorted by site id). An analysis that fails (e.g. a
    /// site refuses) is reported with its reason and the others go on.
    pub(crate) async fn run_leave_one_hospital_out(&mut self, parts: &StudyParts<'_>) -> Result<LeaveOneHospitalOut, StudyError> {
        let mut sites = self.study.sites.clone();
        sites.sort();
        sites.dedup();
        let mut hospitals = Vec::new();
        for site in &sites {
            let plan = parts.plan.held_out_analysis(site).expect("the plan has leave-one-hospital-out analyses");
            let mut study = self.study.clone();
            study.study_id = plan.study_id.clone();
            study.sites.retain(|s| s != site);
            study.output_dir = self.study.output_dir.join("leave-one-hospital-out").join(site);
            study.validation.leave_one_hospital_out = false;
            // The study's folds: the sites recorded them once, and the analysis reads them.
            study.selection.lasso.folds = parts.selection.model_size.folds;
            let journal_dir = study.output_dir.join("journal");
            let journal = crate::journal::Journal::open(journal_dir.clone(), self.resume)
                .map_err(|source| StudyError::Output { path: journal_dir.display().to_string(), source })?;
            let mut analysis = StudyRunner::new(self.hub.clone(), study, self.progress);
            analysis.plan_sha256 = plan.sha256();
            analysis.secure = self.secure;
            analysis.resume = self.resume;
            analysis.journal = Some(journal);
            analysis.policies = self.policies.iter().filter(|(s, _)| *s != site).map(|(s, p)| (s.clone(), *p)).collect();
            analysis.held_out = Some(site.clone());
            tracing::info!(held_out = %site, analysis = %plan.study_id, "leave-one-hospital-out analysis");
            let result = analysis.run_held_out_analysis(parts).await;
            self.absorb_protocol(&analysis);
            let mut hospital = HeldOutHospital { site: site.clone(), analysis_id: plan.study_id.clone(), selected: BTreeMap::new(), models: Vec::new(), note: None };
            match result {
                Ok((selection, models)) => {
                    hospital.selected =
                        selection.sequences.iter().map(|s| (format!("{} {}", s.sequence, s.group), s.selected.iter().map(|f| f.name.clone()).collect())).collect();
                    hospital.models = models;
                }
                Err(e @ (StudyError::Refused { .. } | StudyError::Algorithm { .. } | StudyError::Combine { .. } | StudyError::SiteFailed { .. })) => {
                    tracing::warn!(held_out = %site, error = %e, "leave-one-hospital-out analysis not completed");
                    hospital.note = Some(e.to_string());
                }
                Err(e) => return Err(e),
            }
            hospitals.push(hospital);
        }
        let pooled = pool(&hospitals);
        Ok(LeaveOneHospitalOut { hospitals, pooled })
    }

    async fn run_held_out_analysis(&mut self, parts: &StudyParts<'_>) -> Result<(SelectionResults, Vec<ModelResult>), StudyError> {
        let clinical_model = if self.study.clinical_model.enabled { Some(self.run_clinical_model(parts.split, parts.missing).await?) } else { None };
        let selection = self.run_selection(parts.catalogue, parts.deep_catalogues, parts.split, parts.missing, clinical_model.as_ref()).await?;
        let models = self.run_models(parts.catalogue, parts.deep_catalogues, parts.deep, &selection, clinical_model.as_ref(), None, parts.extraction_parameters).await?;
        Ok((selection, models))
    }

    /// The held-out site's answer to the score task the fitting sites answered as round
    /// `round` of `step` (`kind`, with `signed`, their signed answers): the same task, under
    /// the same id, with their attestations.
    pub(crate) async fn score_held_out(
        &mut self,
        step: &str,
        round: u64,
        site: &str,
        kind: task::Kind,
        signed: &[proto::SignedAnswer],
    ) -> Result<SiteAggregate, StudyError> {
        let (round_id, digest) = self.round_id(step, round, &self.all_sites(kind.clone()));
        // The certificate keys the sites presented with their masking keys, as the fitting
        // round was sent with them (a site that reconnected since with another key would make
        // the digests differ); the held-out site checks each against the plan's pin.
        let keys = self.last_directory.clone();
        let attestations = signed
            .iter()
            .map(|a| proto::ScoreAttestation {
                site_id: a.site_id.clone(),
                subject_public_key_info: keys
                    .as_ref()
                    .and_then(|k| k.sites.iter().find(|s| s.site_id == a.site_id))
                    .map(|s| s.subject_public_key_info.clone())
                    .unwrap_or_default(),
                answer_sha256: fedrad_shared::digest::sha256_hex(&a.aggregate.as_ref().map(|g| g.encode_to_vec()).unwrap_or_default()),
                signature: a.signature.clone(),
            })
            .collect();
        let mut kind = kind;
        if let task::Kind::Score(t) = &mut kind {
            t.attestations = attestations;
        }
        // The fitting sites signed their answers to the task as they got it, with the study's
        // secure-sum directory: the held-out site's task carries the same one, so that its
        // digest without the attestations is theirs (the held-out site answers alone, plain).
        let task = self.round_task(&round_id, &digest, kind, keys);
        let timeout = std::time::Duration::from_secs(self.study.timeouts.task_secs);
        let reply = self.hub.run_task(site, task, timeout).await.map_err(|source| StudyError::Timeout { step: step.into(), source })?;
        Ok(SiteAggregate::new(site, reply_aggregate(step, site, reply.outcome)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedrad_shared::algorithms::classifiers::ClassifierKind;

    fn histogram(negative: &[(u32, u64)], positive: &[(u32, u64)]) -> ScoreHistogram {
        ScoreHistogram {
            grid: 100,
            negative: negative.iter().copied().collect(),
            positive: positive.iter().copied().collect(),
            calibration: vec![[0.0; 3]; 10],
            ..Default::default()
        }
    }

    fn classifier(h: ScoreHistogram, threshold_cell: u32) -> crate::models::ClassifierResult {
        let m = h.metrics(threshold_cell);
        crate::models::ClassifierResult {
            classifier: ClassifierKind::RandomForest,
            training: m.clone(),
            validation: m.clone(),
            per_site_auc: BTreeMap::new(),
            model_file: String::new(),
            note: None,
            c: None,
            cross_validation: Vec::new(),
            held_out: Some(m),
            held_out_histogram: Some(h),
        }
    }

    fn hospital(site: &str, c: Option<crate::models::ClassifierResult>) -> HeldOutHospital {
        HeldOutHospital {
            site: site.into(),
            analysis_id: format!("s.without-{site}"),
            selected: BTreeMap::new(),
            models: vec![ModelResult {
                sequence: "t2".into(),
                model: "I".into(),
                features: Vec::new(),
                clinical_terms: Vec::new(),
                classifiers: c.into_iter().collect(),
                not_fitted: Vec::new(),
                site_alone: Vec::new(),
                note: None,
            }],
            note: None,
        }
    }

    /// Pooled over hospitals: the AUC of the summed histograms (each patient scored by its
    /// own analysis's model) — not the mean of the per-hospital AUCs, which it differs from
    /// here — and sensitivity and specificity from the counts at each analysis's threshold.
    #[test]
    fn pooled_held_out_results_sum_the_hospitals_patients() {
        // Hospital a: perfectly separated at cell 50; hospital b: separated at cell 20, and
        // its positives all lie below a's negatives, so pooling mixes them.
        let a = histogram(&[(40, 3), (45, 2)], &[(60, 4)]);
        let b = histogram(&[(10, 2)], &[(30, 3), (35, 1)]);
        let hospitals = vec![hospital("a", Some(classifier(a.clone(), 50))), hospital("b", Some(classifier(b.clone(), 20)))];
        let pooled = pool(&hospitals);
        assert_eq!(pooled.len(), 1);
        let p = &pooled[0];
        assert_eq!((p.n, p.positives), (15, 8));
        assert_eq!(p.per_hospital_auc["a"], 1.0);
        assert_eq!(p.per_hospital_auc["b"], 1.0);
        assert_eq!(p.mean_auc, 1.0);
        // Pooled: 4 positives (cell 60) beat all 7 negatives; 4 (cells 30, 35) beat 2 of 7.
        let expected = (4.0 * 7.0 + 4.0 * 2.0) / (8.0 * 7.0);
        assert!((p.pooled_auc - expected).abs() < 1e-12, "{} vs {expected}", p.pooled_auc);
        // Each at its own threshold, every patient is classified right.
        assert_eq!((p.sensitivity, p.specificity, p.accuracy), (1.0, 1.0, 1.0));
        // A classifier some analysis lacks is not pooled.
        let partial = vec![hospital("a", Some(classifier(a, 50))), hospital("b", None)];
        assert!(pool(&partial).is_empty());
    }

    /// Federated equals pooled for the pooling of the analyses, over 1, 4 and 7 uneven
    /// hospitals: the same 180 patients' held-out score cells, spread over the hospitals (each
    /// hospital's patients scored by its own analysis, at its own threshold), give the AUC and
    /// DeLong SE of all their cells together (`metrics::pooled_auc`, ties counted half), the
    /// patients and positives, and the sensitivity, specificity and accuracy counted patient by
    /// patient at each one's hospital's threshold.
    #[test]
    fn pooled_held_out_results_equal_the_pooled_patients_over_1_4_and_7_hospitals() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let patients: Vec<(u32, bool)> = (0..180)
            .map(|_| {
                let positive = next() % 3 == 0;
                ((next() % 40) as u32 + if positive { 15 } else { 0 }, positive)
            })
            .collect();
        let cells: Vec<f64> = patients.iter().map(|p| f64::from(p.0)).collect();
        let outcome: Vec<bool> = patients.iter().map(|p| p.1).collect();
        let (auc, se) = metrics::pooled_auc(&cells, &outcome);
        let positives = outcome.iter().filter(|y| **y).count();
        for sizes in [vec![180], vec![70, 50, 35, 25], vec![40, 35, 30, 25, 20, 17, 13]] {
            let (mut start, mut hospitals, mut tp, mut tn) = (0, Vec::new(), 0, 0);
            for (k, n) in sizes.iter().enumerate() {
                let part = &patients[start..start + n];
                start += n;
                let threshold = 18 + 3 * k as u32;
                tp += part.iter().filter(|p| p.1 && p.0 >= threshold).count();
                tn += part.iter().filter(|p| !p.1 && p.0 < threshold).count();
                let class = |y: bool| {
                    let mut counts = BTreeMap::new();
                    for p in part.iter().filter(|p| p.1 == y) {
                        *counts.entry(p.0).or_insert(0u64) += 1;
                    }
                    counts.into_iter().collect::<Vec<_>>()
                };
                hospitals.push(hospital(&format!("h{k}"), Some(classifier(histogram(&class(false), &class(true)), threshold))));
            }
            let pooled = pool(&hospitals);
            let p = &pooled[0];
            let what = format!("{} hospitals", sizes.len());
            assert_eq!((p.n, p.positives), (180, positives as u64), "{what}");
            assert_eq!(p.per_hospital_auc.len(), sizes.len(), "{what}");
            assert!((p.pooled_auc - auc).abs() < 1e-12, "{what}: pooled AUC {} vs {auc}", p.pooled_auc);
            let ci = ((auc - 1.96 * se).max(0.0), (auc + 1.96 * se).min(1.0));
            assert!((p.pooled_auc_ci.0 - ci.0).abs() < 1e-9 && (p.pooled_auc_ci.1 - ci.1).abs() < 1e-9, "{what}: CI {:?} vs {ci:?}", p.pooled_auc_ci);
            assert!((p.sensitivity - tp as f64 / positives as f64).abs() < 1e-12, "{what}: sensitivity");
            assert!((p.specificity - tn as f64 / (180 - positives) as f64).abs() < 1e-12, "{what}: specificity");
            assert!((p.accuracy - (tp + tn) as f64 / 180.0).abs() < 1e-12, "{what}: accuracy");
        }
    }

    /// The held-out site's two cohorts are merged: every patient counts once.
    #[test]
    fn a_held_out_answer_merges_both_cohorts() {
        let mut agg = proto::Aggregate::default();
        let mut put = |name: &str, values: Vec<f64>| agg.tensors.push(proto::Tensor { name: name.into(), shape: vec![values.len() as u64], values });
        let dense = |cells: &[(usize, f64)]| {
            let mut h = vec![0.0; 100];
            for &(c, n) in cells {
                h[c] = n;
            }
            h
        };
        put("packed.training.negative", dense(&[(10, 5.0)]));
        put("packed.training.positive", dense(&[]));
        put("packed.validation.negative", dense(&[(10, 1.0), (20, 2.0)]));
        put("packed.validation.positive", dense(&[(90, 6.0)]));
        let h = all_patients(&SiteAggregate::new("a", agg), 100).unwrap();
        assert_eq!(h.negative, BTreeMap::from([(10, 6), (20, 2)]));
        assert_eq!(h.positive, BTreeMap::from([(90, 6)]));
        assert_eq!(h.n, 14.0);
    }
}
