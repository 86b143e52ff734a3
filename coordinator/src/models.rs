//! The models step: per sequence, Model I (selected radiomic features) and Model III (Model I
//! plus the clinical model's variables), each fitted with every classifier from site
//! aggregates and validated from the sites' score histograms. Model II needs deep features,
//! which FedRad does not extract yet; the results say so instead of inventing it.
//!
//! Outputs: `models/<sequence>/<model>/<classifier>.json` (everything needed to score a new
//! patient: design, standardiser, scorer, threshold) and the `models` part of
//! `results.json`, from which the report's main table and curves are drawn.

use std::collections::BTreeMap;

use fedrad_shared::algorithms::classifiers::{self, ClassifierKind, ModelFile, NewtonMinimiser, NewtonObjective, RandomFeatures, Scorer};
use fedrad_shared::algorithms::extraction::catalogue_sha256;
use fedrad_shared::algorithms::glm::Standardiser;
use fedrad_shared::algorithms::logistic::{self, ClinicalModel, DesignColumn};
use fedrad_shared::algorithms::metrics::{self, CohortMetrics};
use fedrad_shared::algorithms::standardise;
use fedrad_shared::algorithms::trees::{self, Tree};
use fedrad_shared::clinical::CohortRole;
use fedrad_shared::proto::{self, task};
use fedrad_shared::stats::Moments;

use crate::model_size::ModelSize;
use crate::selection::{FeatureGroup, SelectionResults};
use crate::study::{StudyError, StudyRunner, algorithm_error, variable_to_proto, write_json};

/// Performance of one classifier on one model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassifierResult {
    pub classifier: ClassifierKind,
    pub training: CohortMetrics,
    pub validation: CohortMetrics,
    /// Per site: (training AUC, validation AUC) from the site's own histograms, only when the
    /// plan publishes per-site results (`[validation] per_site_results`, which every site's
    /// policy must allow); otherwise empty and left out of `results.json`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_site_auc: BTreeMap<String, (f64, f64)>,
    pub model_file: String,
    /// How the classifier was built (e.g. the trees' size and withheld nodes).
    pub note: Option<String>,
    /// The penalty C of logistic regression and the SVMs (set, or chosen by the search).
    pub c: Option<f64>,
    /// The search's cross-validated AUC per C (empty without a search).
    pub cross_validation: Vec<classifiers::CvPoint>,
    /// In a leave-one-hospital-out analysis: every patient of the held-out hospital (both
    /// cohorts of the split), at the training threshold of the other hospitals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out: Option<CohortMetrics>,
    /// The held-out hospital's merged histogram, for the pooled analysis.
    #[serde(skip)]
    pub(crate) held_out_histogram: Option<metrics::ScoreHistogram>,
}

/// A classifier the model could not have, and why (e.g. a site's parameter policy).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotFitted {
    pub classifier: ClassifierKind,
    pub reason: String,
}

/// What one model's fit produced.
pub(crate) struct Fitted {
    results: Vec<ClassifierResult>,
    not_fitted: Vec<NotFitted>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelResult {
    pub sequence: String,
    /// "I", "II" or "III".
    pub model: String,
    pub features: Vec<String>,
    pub clinical_terms: Vec<String>,
    pub classifiers: Vec<ClassifierResult>,
    /// Classifiers that were asked for but could not be fitted.
    pub not_fitted: Vec<NotFitted>,
    /// Model I only: logistic regression trained on each site's patients alone, validated on
    /// the whole (federated) validation cohort — what federation adds.
    pub site_alone: Vec<SiteAlone>,
    /// Why the model has no results, when it has none.
    pub note: Option<String>,
}

/// A baseline trained at one site only.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SiteAlone {
    pub site: String,
    pub training_patients: u64,
    /// Validation over every site's validation patients, or why there is none.
    pub validation: Option<CohortMetrics>,
    pub note: Option<String>,
}

/// The sequences whose features a feature set's tables hold (both for `t1c+t2`).
fn sequences_of(set: &str) -> &'static [&'static str] {
    fedrad_shared::algorithms::extraction::parse_table(set).map_or(&[], |t| t.sequences)
}

/// The design columns (indices into [`logistic::design_columns`]) of the clinical model's
/// variables: the clinical terms Model III adds.
pub(crate) fn clinical_design_columns(variables: &[fedrad_shared::clinical::VariableSpec], clinical: &ClinicalModel) -> Vec<u32> {
    logistic::design_columns(variables).iter().enumerate().filter(|(_, col)| clinical.selected.contains(&col.variable)).map(|(k, _)| k as u32).collect()
}

impl StudyRunner<'_> {
    pub(crate) async fn run_models(
        &mut self,
        catalogue: &[String],
        deep: &BTreeMap<String, Vec<String>>,
        deep_results: &[crate::deep::DeepResult],
        selection: &SelectionResults,
        clinical: Option<&ClinicalModel>,
        harmonisation: Option<&crate::harmonisation::Harmonisation>,
        extraction_parameters: &str,
    ) -> Result<Vec<ModelResult>, StudyError> {
        let variables = self.study.clinical_variables().expect("validated at load");
        let columns: Vec<DesignColumn> = logistic::design_columns(&variables);
        let clinical_cols: Vec<u32> = clinical.map_or_else(Vec::new, |c| clinical_design_columns(&variables, c));
        let mut out = Vec::new();
        for seq in selection.sequences.iter().filter(|s| s.group == FeatureGroup::Radiomic.name()) {
            let combined = selection.sequences.iter().find(|s| s.sequence == seq.sequence && s.group == FeatureGroup::Combined.name());
            for (model, with_clinical) in [("I", false), ("II", false), ("III", true)] {
                // Model I: handcrafted features; Model II: handcrafted and deep features
                // selected together; Model III: Model II's features and the clinical model's
                // variables (Model I's when the study has no deep features).
                let (source, group) = match (model, combined) {
                    ("I", _) | (_, None) => (seq, FeatureGroup::Radiomic),
                    (_, Some(c)) => (c, FeatureGroup::Combined),
                };
                let table = if model == "II" && combined.is_none() { String::new() } else { group.table(&seq.sequence) };
                let cat = crate::selection::table_catalogue(&seq.sequence, group, catalogue, deep).expect("the selection ran on this table");
                let cat = cat.as_slice();
                let digest = catalogue_sha256(cat);
                // Model III: the selection's features that fit beside the clinical terms at
                // every site (crate::model_size), when Model II's are too many.
                let sized = source.with_clinical.as_ref().filter(|_| with_clinical);
                let selected = sized.map_or(&source.selected, |w| &w.selected);
                let features: Vec<u32> = selected.iter().map(|f| cat.iter().position(|c| c == &f.name).expect("selected from the catalogue") as u32).collect();
                let names: Vec<String> = selected.iter().map(|f| f.name.clone()).collect();
                let clinical_terms: Vec<String> = if with_clinical { clinical_cols.iter().map(|&k| columns[k as usize].label()).collect() } else { Vec::new() };
                let mut result = ModelResult {
                    sequence: seq.sequence.clone(),
                    model: model.into(),
                    features: names.clone(),
                    clinical_terms: clinical_terms.clone(),
                    classifiers: Vec::new(),
                    not_fitted: Vec::new(),
                    site_alone: Vec::new(),
                    note: None,
                };
                if model == "II" && combined.is_none() {
                    result.features.clear();
                    result.note = Some("needs deep (CNN) features; the study has none for this sequence ([deep] enabled = false, or the encoder step failed)".into());
                    out.push(result);
                    continue;
                }
                if with_clinical && clinical_cols.is_empty() {
                    result.features.clear();
                    result.note = Some(match clinical {
                        Some(_) => "the clinical model selected no variable: Model III would repeat the model without clinical terms".into(),
                        None => "the study has no clinical model ([clinical_model] enabled = false)".into(),
                    });
                    out.push(result);
                    continue;
                }
                if model == "III" && combined.is_none() {
                    result.note = Some("without deep features: Model I's radiomic features and the clinical variables".into());
                }
                if features.is_empty() {
                    result.note = Some(format!("LASSO selected no {} feature for this sequence", if table.contains('+') { "radiomic or deep" } else { "radiomic" }));
                    out.push(result);
                    continue;
                }
                let design = proto::ModelDesign {
                    features: Some(proto::FeatureColumns { sequence: table.clone(), catalogue_sha256: digest.clone(), columns: features.clone() }),
                    variables: if with_clinical { variables.iter().map(variable_to_proto).collect() } else { Vec::new() },
                    clinical_columns: if with_clinical { clinical_cols.clone() } else { Vec::new() },
                };
                let step = format!("models.{}.{model}", seq.sequence);
                let mut file = ModelFile {
                    study_id: self.study.study_id.clone(),
                    sequence: table.clone(),
                    model: model.into(),
                    classifier: ClassifierKind::LogisticRegression,
                    features: names.clone(),
                    feature_columns: features.clone(),
                    catalogue_sha256: digest.clone(),
                    extraction_parameters: extraction_parameters.into(),
                    clinical_variables: if with_clinical { variables.clone() } else { Vec::new() },
                    clinical_columns: design.clinical_columns.clone(),
                    standardiser: Standardiser { center: Vec::new(), scale: Vec::new() },
                    scorer: Scorer::Logistic { intercept: 0.0, coefficients: Vec::new() },
                    threshold: 0.5,
                    combat: self.study.combat.enabled.then(|| self.study.combat.clone()),
                    combat_estimates: harmonisation
                        .map(|h| {
                            let with_deep = table.ends_with(fedrad_shared::algorithms::extraction::WITH_DEEP);
                            h.tables
                                .iter()
                                .filter(|t| sequences_of(&seq.sequence).contains(&t.sequence.as_str()) && (!t.deep || with_deep))
                                .map(|t| (fedrad_shared::algorithms::combat::table_stem(&t.sequence, t.deep), t.estimates_sha256.clone()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    deep: None,
                    deep_per_sequence: BTreeMap::new(),
                };
                // How the study computed the deep features, for `site-agent predict`.
                if table.ends_with(fedrad_shared::algorithms::extraction::WITH_DEEP) {
                    let recipe = |d: &crate::deep::DeepResult| fedrad_shared::algorithms::classifiers::DeepRecipe {
                        architecture: d.architecture,
                        weights_sha256: d.weights_sha256.clone(),
                        weights_file: format!("deep/{}/weights.json", d.sequence),
                        network: d.network.clone(),
                    };
                    let used: Vec<&crate::deep::DeepResult> = deep_results.iter().filter(|d| sequences_of(&seq.sequence).contains(&d.sequence.as_str())).collect();
                    if sequences_of(&seq.sequence).len() > 1 {
                        file.deep_per_sequence = used.into_iter().map(|d| (d.sequence.clone(), recipe(d))).collect();
                    } else {
                        file.deep = used.first().map(|d| recipe(d));
                    }
                }
                // A site may refuse one model (e.g. too many parameters for its patients); the
                // study goes on and the report says which model and why.
                match self.step(&step.clone(), async |s: &mut Self| s.fit_and_validate(&step, &design, &mut file, &selection.model_size).await).await {
                    Ok(fitted) => {
                        result.classifiers = fitted.results;
                        result.not_fitted = fitted.not_fitted;
                        if self.held_out.is_some() {
                            // A leave-one-hospital-out analysis validates on its held-out site.
                        } else if model == "I" && self.secure && !self.study.secure_aggregation.site_alone_baselines {
                            result.site_alone = vec![SiteAlone {
                                site: "all".into(),
                                training_patients: 0,
                                validation: None,
                                note: Some("not run: a site-alone baseline is a per-site result, which a secure-summed study publishes only if its plan opts in (secure_aggregation.site_alone_baselines)".into()),
                            }];
                        } else if model == "I" {
                            let step = format!("site_alone.{}", seq.sequence);
                            let std = file.standardiser.clone();
                            match self.step(&step.clone(), async |s: &mut Self| s.site_alone(&step, &design, &std).await).await {
                                Ok(v) => result.site_alone = v,
                                Err(e @ (StudyError::Refused { .. } | StudyError::Algorithm { .. })) => {
                                    result.site_alone = vec![SiteAlone { site: "all".into(), training_patients: 0, validation: None, note: Some(e.to_string()) }];
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    Err(e @ (StudyError::Refused { .. } | StudyError::Algorithm { .. })) => {
                        tracing::warn!(model = %step, error = %e, "model not fitted");
                        result.note = Some(e.to_string());
                    }
                    Err(e) => return Err(e),
                }
                out.push(result);
            }
        }
        write_json(&self.study.output_dir.join("models.json"), &out)?;
        Ok(out)
    }

    /// Logistic regression (C = 1) fitted at each site alone — the rounds go to that site
    /// only, so it is the site's local fit — and scored on every site's validation patients.
    async fn site_alone(&mut self, step: &str, design: &proto::ModelDesign, std: &Standardiser) -> Result<(Vec<SiteAlone>, u64), StudyError> {
        let width = std.center.len();
        let q = width + 1;
        let mut round = 0u64;
        let mut out = Vec::new();
        let sites = self.study.sites.clone();
        for site in &sites {
            // Newton on this site's answers alone; each round forwards the site's signed answer
            // to the one before, so that it replays the fit (`FitReplica`).
            let mut n = 0.0;
            let objective = NewtonObjective::RidgeLogistic { c: classifiers::SITE_ALONE_C };
            let mut newton = NewtonMinimiser::new(objective.start(q));
            let mut previous = Vec::new();
            let mut failed = None;
            while let Some(beta) = newton.request() {
                let beta = beta.to_vec();
                round += 1;
                let kind = task::Kind::ClassifierRound(proto::ClassifierRoundTask {
                    design: Some(design.clone()),
                    standardiser: Some(std.to_proto()),
                    objective: proto::ClassifierObjective::Logistic as i32,
                    parameters: beta.clone(),
                    svm: Vec::new(),
                    random_features: None,
                    exclude_fold: 0,
                    penalty: classifiers::SITE_ALONE_C,
                    site_alone: true,
                    previous: std::mem::take(&mut previous),
                });
                let answers = match self.round_signed(step, round, BTreeMap::from([(site.clone(), kind)])).await {
                    Ok((answers, signed)) => {
                        previous = signed;
                        answers
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                };
                n = answers.iter().map(|a| a.patient_count() as f64).sum();
                match objective.totals(&answers, &beta) {
                    Ok(t) => newton.absorb(t),
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            let fit = match failed {
                Some(e) => Err(e),
                None => newton.finish(),
            };
            let beta = match fit {
                Ok((beta, _, _)) => beta,
                Err(e) => {
                    out.push(SiteAlone { site: site.clone(), training_patients: 0, validation: None, note: Some(e) });
                    continue;
                }
            };
            let scorer = Scorer::Logistic { intercept: beta[0], coefficients: beta[1..].to_vec() };
            round += 1;
            let grid = metrics::DEFAULT_GRID;
            let kind = task::Kind::Score(proto::ScoreTask {
                design: Some(design.clone()),
                standardiser: Some(std.to_proto()),
                scorers: vec![scorer.to_proto()],
                grid,
                folds: 0,
                attestations: Vec::new(),
                per_site: false,
                fit_ends: Vec::new(),
                peers: None,
            });
            let answers = self.round(step, round, self.all_sites(kind)).await?;
            let nested: Vec<_> = answers.iter().map(|a| a.nested("s0.")).collect();
            let (total, _) = metrics::combine(&nested, grid).map_err(|source| StudyError::Combine { step: step.into(), source })?;
            let threshold = total[&CohortRole::Training].youden_cell();
            out.push(SiteAlone { site: site.clone(), training_patients: n as u64, validation: Some(total[&CohortRole::Validation].metrics(threshold)), note: None });
        }
        Ok((out, round))
    }

    /// Fits every classifier of one model and validates it. `size` holds the most parameters
    /// every site accepts: a classifier above it is reported as not fitted, with the site that
    /// limits it, instead of being refused round after round.
    async fn fit_and_validate(&mut self, step: &str, design: &proto::ModelDesign, file: &mut ModelFile, size: &ModelSize) -> Result<(Fitted, u64), StudyError> {
        let settings = self.study.models.clone();
        let wanted = |k: ClassifierKind| settings.classifiers.contains(&k);
        let mut round = 0u64;
        // 1. Moments of the design over training (two rounds of sums): standardiser and naive Bayes.
        let width = design.features.as_ref().map_or(0, |f| f.columns.len()) + design.clinical_columns.len();
        let (moments, last) =
            self.moments(step, round, width, |centre| task::Kind::DesignMoments(proto::DesignMomentsTask { design: Some(design.clone()), centre })).await?;
        round = last;
        let st = moments.standardisation();
        if !st.dropped.is_empty() {
            return Err(algorithm_error(step)(format!("{} design column(s) are constant or non-finite over the training cohort", st.dropped.len())));
        }
        let std = Standardiser { center: st.mean.clone(), scale: st.sd.clone() };
        let z_moments = standardise::FeatureMoments {
            n: moments.n,
            by_class: [0, 1].map(|c| {
                moments.by_class[c]
                    .iter()
                    .enumerate()
                    .map(|(j, m)| Moments { n: m.n, mean: (m.mean - std.center[j]) / std.scale[j], m2: m.m2 / (std.scale[j] * std.scale[j]) })
                    .collect()
            }),
            nonfinite: moments.nonfinite.clone(),
        };
        let class_counts = [0, 1].map(|c| moments.by_class[c].first().map_or(0.0, |m| m.n));

        let q = width + 1;
        // One Newton fit of `objective` over the training patients outside `exclude_fold` (0:
        // all of them), from `start`; `previous` carries the sites' signed answers to the fit's
        // last round into its next (and from an SVM's last round into its Platt fit's first).
        #[allow(clippy::too_many_arguments)]
        let newton_fit = async |s: &mut Self,
                                round: &mut u64,
                                objective: NewtonObjective,
                                q: usize,
                                penalty: f64,
                                svm: &[f64],
                                rff: Option<RandomFeatures>,
                                exclude_fold: u32,
                                previous: &mut Vec<proto::SignedAnswer>|
               -> Result<Vec<f64>, String> {
            let proto_objective = match objective {
                NewtonObjective::RidgeLogistic { .. } => proto::ClassifierObjective::Logistic,
                NewtonObjective::SquaredHinge { .. } => proto::ClassifierObjective::SquaredHinge,
                NewtonObjective::Platt => proto::ClassifierObjective::Platt,
            };
            let mut newton = NewtonMinimiser::new(objective.start(q));
            while let Some(x) = newton.request() {
                let x = x.to_vec();
                *round += 1;
                let kind = task::Kind::ClassifierRound(proto::ClassifierRoundTask {
                    design: Some(design.clone()),
                    standardiser: Some(std.to_proto()),
                    objective: proto_objective as i32,
                    parameters: x.clone(),
                    svm: svm.to_vec(),
                    random_features: rff.map(RandomFeatures::to_proto),
                    exclude_fold,
                    penalty,
                    site_alone: false,
                    previous: std::mem::take(previous),
                });
                let (answers, signed) = s.round_signed(step, *round, s.all_sites(kind)).await.map_err(|e| e.to_string())?;
                *previous = signed;
                newton.absorb(objective.totals(&answers, &x).map_err(|e| e.to_string())?);
            }
            newton.finish().map(|r| r.0)
        };
        // The plan's random features, or fewer so that every site accepts the model.
        let clinical = !design.clinical_columns.is_empty();
        let rff = {
            let r = &settings.rbf_svm;
            size.random_features(r.features, clinical).map(|count| RandomFeatures {
                count,
                seed: r.seed,
                gamma: if r.gamma > 0.0 { r.gamma } else { 1.0 / width as f64 },
            })
        };
        // One Newton-fitted classifier (logistic, linear or RBF SVM with Platt scaling) with
        // penalty C, on the training patients outside `exclude_fold` (0: all of them).
        // With the sites' signed answers to the fit's last round: the score task forwards them,
        // and each site scores only the model its replica of the fit reached.
        let fit_newton = async |s: &mut Self, round: &mut u64, kind: ClassifierKind, c: f64, exclude_fold: u32| -> Result<(Scorer, Vec<proto::SignedAnswer>), String> {
            let mut previous = Vec::new();
            if kind == ClassifierKind::LogisticRegression {
                let b = newton_fit(s, round, NewtonObjective::RidgeLogistic { c }, q, c, &[], None, exclude_fold, &mut previous).await?;
                return Ok((Scorer::Logistic { intercept: b[0], coefficients: b[1..].to_vec() }, previous));
            }
            let features = if kind == ClassifierKind::RbfSvm { Some(rff.ok_or("no random feature fits every site's parameter limit")?) } else { None };
            let q = features.map_or(q, |r| r.count as usize + 1);
            let w = newton_fit(s, round, NewtonObjective::SquaredHinge { c }, q, c, &[], features, exclude_fold, &mut previous).await?;
            let ab = newton_fit(s, round, NewtonObjective::Platt, 2, c, &w, features, exclude_fold, &mut previous).await?;
            let (intercept, coefficients, platt_a, platt_b) = (w[0], w[1..].to_vec(), ab[0], ab[1]);
            let scorer = match features {
                Some(features) => Scorer::RbfSvm { width, features, intercept, coefficients, platt_a, platt_b },
                None => Scorer::LinearSvm { intercept, coefficients, platt_a, platt_b },
            };
            Ok((scorer, previous))
        };

        let mut scorers: Vec<(ClassifierKind, Scorer, Option<String>)> = Vec::new();
        // How each fit ended (its leaf size or penalty, and the sites' signed answers to its last
        // round): the score task forwards them, and each site scores only what its replica of
        // the fit reached.
        let mut ends: BTreeMap<ClassifierKind, proto::FitEnd> = BTreeMap::new();
        let mut not_fitted: Vec<NotFitted> = Vec::new();
        let mut record = |kind: ClassifierKind, r: Result<(Scorer, Option<String>), String>| match r {
            Ok((scorer, note)) => scorers.push((kind, scorer, note)),
            Err(reason) => {
                tracing::warn!(step, classifier = kind.label(), %reason, "classifier not fitted");
                not_fitted.push(NotFitted { classifier: kind, reason });
            }
        };

        // 2–4. Logistic regression (ridge), linear SVM, RBF SVM on random Fourier features:
        // C as set, or chosen by cross-validated AUC over the folds the sites recorded.
        // The folds the sites recorded: the plan's K or fewer (crate::model_size).
        let folds = size.folds;
        let mut penalties: BTreeMap<ClassifierKind, (f64, Vec<classifiers::CvPoint>)> = BTreeMap::new();
        for (kind, c) in
            [(ClassifierKind::LogisticRegression, settings.logistic.c), (ClassifierKind::LinearSvm, settings.linear_svm.c), (ClassifierKind::RbfSvm, settings.rbf_svm.c)]
        {
            if !wanted(kind) {
                continue;
            }
            // Parameters: the design's columns and the intercept, or the random features and
            // the intercept (at least one feature).
            let parameters = if kind == ClassifierKind::RbfSvm { rff.map_or(2, |r| r.count as usize + 1) } else { q };
            if let Some(reason) = size.refusal(parameters, clinical) {
                record(kind, Err(format!("not fitted at any λ: {reason}")));
                continue;
            }
            let mut notes = Vec::new();
            if let (ClassifierKind::RbfSvm, Some(rff)) = (kind, rff) {
                let fewer = if rff.count < settings.rbf_svm.features {
                    format!(" (the plan's {}, fewer so that every site accepts the model)", settings.rbf_svm.features)
                } else {
                    String::new()
                };
                notes.push(format!("{} random Fourier features{fewer}, γ = {:.3}", rff.count, rff.gamma));
            }
            let c = if settings.search.enabled {
                let mut ctx = (&mut *self, round);
                let search = classifiers::cv_search(
                    &mut ctx,
                    &settings.search.c,
                    folds,
                    async |ctx: &mut (&mut Self, u64), c: f64, k: u32| fit_newton(ctx.0, &mut ctx.1, kind, c, k).await.map(|(scorer, _)| scorer),
                    async |ctx: &mut (&mut Self, u64), fold_scorers: &[Scorer]| {
                        ctx.1 += 1;
                        let grid = metrics::DEFAULT_GRID;
                        let task = task::Kind::Score(proto::ScoreTask {
                            design: Some(design.clone()),
                            standardiser: Some(std.to_proto()),
                            scorers: fold_scorers.iter().map(Scorer::to_proto).collect(),
                            grid,
                            folds,
                            attestations: Vec::new(),
                            per_site: false,
                            fit_ends: Vec::new(),
                            peers: None,
                        });
                        let answers = ctx.0.round(step, ctx.1, ctx.0.all_sites(task)).await.map_err(|e| e.to_string())?;
                        (0..fold_scorers.len() / folds as usize)
                            .map(|g| {
                                let nested: Vec<_> = answers.iter().map(|a| a.nested(&format!("g{g}."))).collect();
                                metrics::combine_class_histograms(&nested, grid).map(|h| h.auc().0).map_err(|e| e.to_string())
                            })
                            .collect()
                    },
                )
                .await;
                round = ctx.1;
                match search {
                    Ok((chosen, points)) => {
                        let tried: Vec<String> = points.iter().map(|p| format!("{} → {:.3}", p.c, p.auc)).collect();
                        notes.push(format!("C = {chosen} chosen by {folds}-fold cross-validated AUC ({})", tried.join(", ")));
                        penalties.insert(kind, (chosen, points));
                        chosen
                    }
                    Err(e) => {
                        record(kind, Err(format!("hyperparameter search: {e}")));
                        continue;
                    }
                }
            } else {
                penalties.insert(kind, (c, Vec::new()));
                c
            };
            let fit = fit_newton(self, &mut round, kind, c, 0).await.map(|(scorer, last)| {
                ends.insert(kind, proto::FitEnd { scorer: 0, min_leaf: 0, previous: last, penalty: c });
                scorer
            });
            record(kind, fit.map(|s| (s, (!notes.is_empty()).then(|| notes.join("; ")))));
        }
        // 5. Trees: shared bin edges from one round of value counts, then level-wise growth.
        let forest = wanted(ClassifierKind::RandomForest);
        let boosting = wanted(ClassifierKind::GradientBoosting);
        if forest || boosting {
            let grid = trees::ValueGrid::DEFAULT;
            round += 1;
            let kind = task::Kind::ValueHistogram(proto::ValueHistogramTask {
                design: Some(design.clone()),
                standardiser: Some(std.to_proto()),
                cells_per_sd: grid.cells_per_sd,
                limit_sd: grid.limit_sd,
            });
            // Each ensemble's first round forwards the sites' signed value counts, each later
            // round their answers to the one before, so that every site grows the same trees
            // and answers only the study's own splits (trees::TreeReplica).
            let (counts, counts_signed) = match self.round_signed(step, round, self.all_sites(kind)).await {
                Ok((counts, signed)) => (Ok(counts), signed),
                Err(e) => (Err(e), Vec::new()),
            };
            let floor = self.largest_min_count();
            #[allow(clippy::too_many_arguments)]
            let tree_round = async |s: &mut Self,
                                    round: &mut u64,
                                    previous: &mut Vec<proto::SignedAnswer>,
                                    edges: &[Vec<f64>],
                                    objective: proto::TreeObjective,
                                    seed: u64,
                                    base: f64,
                                    min_leaf: u64,
                                    ensemble: &[Tree],
                                    growing: &[Tree],
                                    nodes: &[trees::NodeRequest]| {
                *round += 1;
                let kind = task::Kind::TreeRound(proto::TreeRoundTask {
                    design: Some(design.clone()),
                    standardiser: Some(std.to_proto()),
                    objective: objective as i32,
                    edges: edges.iter().map(|e| proto::BinEdges { edges: e.clone() }).collect(),
                    growing: trees::write_trees(growing),
                    nodes: nodes.iter().map(|r| proto::NodeRequest { tree: r.tree, node: r.node, columns: r.columns.clone() }).collect(),
                    seed,
                    base_margin: base,
                    ensemble: trees::write_trees(ensemble),
                    min_leaf,
                    previous: std::mem::take(previous),
                });
                let (answers, signed) = s.round_signed(step, *round, s.all_sites(kind)).await.map_err(|e| e.to_string())?;
                *previous = signed;
                trees::combine_tree_round(&answers, edges, nodes).map_err(|e| e.to_string())
            };
            let describe = |g: &trees::Growth, what: String| {
                let withheld = if g.withheld_nodes > 0 {
                    format!("; {} node(s) kept as leaves because a site held too few of their patients", g.withheld_nodes)
                } else {
                    String::new()
                };
                format!("{what}, {} leaves, {} rounds{withheld}", g.leaves, g.rounds)
            };
            match counts {
                Err(e) => {
                    for kind in [ClassifierKind::RandomForest, ClassifierKind::GradientBoosting].into_iter().filter(|k| wanted(*k)) {
                        record(kind, Err(e.to_string()));
                    }
                }
                Ok(counts) => {
                    if forest {
                        let mut fs = settings.forest.clone();
                        fs.min_leaf = fs.min_leaf.max(floor);
                        let edges = trees::combine_bin_edges(&counts, width, grid, fs.bins).map_err(|source| StudyError::Combine { step: step.into(), source })?;
                        let mut previous = counts_signed.clone();
                        let fit = trees::grow_forest(&fs, &edges, async |g: &[Tree], r: &[trees::NodeRequest]| {
                            tree_round(self, &mut round, &mut previous, &edges, proto::TreeObjective::ForestCounts, fs.seed, 0.0, fs.min_leaf, &[], g, r).await
                        })
                        .await;
                        let what = format!("{} trees, depth ≤ {}, leaves ≥ {} patients", fs.trees, fs.max_depth, fs.min_leaf);
                        ends.insert(ClassifierKind::RandomForest, proto::FitEnd { scorer: 0, min_leaf: fs.min_leaf, previous, penalty: 0.0 });
                        record(ClassifierKind::RandomForest, fit.map(|(t, g)| (Scorer::Forest { width, trees: t }, Some(describe(&g, what)))));
                    }
                    if boosting {
                        let mut bs = settings.boosting.clone();
                        bs.min_leaf = bs.min_leaf.max(floor);
                        let edges = trees::combine_bin_edges(&counts, width, grid, bs.bins).map_err(|source| StudyError::Combine { step: step.into(), source })?;
                        let base = (class_counts[1] / class_counts[0]).ln();
                        let mut previous = counts_signed.clone();
                        let fit = trees::grow_boosting(&bs, &edges, async |e: &[Tree], g: &[Tree], r: &[trees::NodeRequest]| {
                            tree_round(self, &mut round, &mut previous, &edges, proto::TreeObjective::BoostingGradients, 0, base, bs.min_leaf, e, g, r).await
                        })
                        .await;
                        let what = format!("{} trees of depth ≤ {}, η = {}", bs.rounds, bs.max_depth, bs.learning_rate);
                        ends.insert(ClassifierKind::GradientBoosting, proto::FitEnd { scorer: 0, min_leaf: bs.min_leaf, previous, penalty: 0.0 });
                        record(ClassifierKind::GradientBoosting, fit.map(|(t, g)| (Scorer::Boosted { width, base_margin: base, trees: t }, Some(describe(&g, what)))));
                    }
                }
            }
        }
        if wanted(ClassifierKind::NaiveBayes) {
            record(ClassifierKind::NaiveBayes, Ok((classifiers::naive_bayes(&z_moments), None)));
        }
        if scorers.is_empty() {
            let reasons: Vec<String> = not_fitted.iter().map(|n| format!("{}: {}", n.classifier.label(), n.reason)).collect();
            return Err(algorithm_error(step)(format!("no classifier could be fitted ({})", reasons.join("; "))));
        }

        // 6. Every site scores its own patients; histograms come back, summed over the sites
        // unless the plan publishes per-site results (each site's own, for its AUC).
        round += 1;
        let per_site_results = self.held_out.is_none() && self.study.validation.per_site_results;
        let grid = metrics::DEFAULT_GRID;
        let fit_ends: Vec<proto::FitEnd> =
            scorers.iter().enumerate().filter_map(|(k, (kind, _, _))| ends.remove(kind).map(|end| proto::FitEnd { scorer: k as u32, ..end })).collect();
        // Read per site, the task is not secure-summed: it carries the sites' keys to check the
        // fits' last answers against.
        let peers = if per_site_results && !fit_ends.is_empty() { self.peer_keys()? } else { None };
        let kind = task::Kind::Score(proto::ScoreTask {
            design: Some(design.clone()),
            standardiser: Some(std.to_proto()),
            scorers: scorers.iter().map(|s| s.1.to_proto()).collect(),
            grid,
            folds: 0,
            attestations: Vec::new(),
            per_site: per_site_results,
            fit_ends,
            peers,
        });
        let (answers, held_out) = match self.held_out.clone() {
            None => (self.round(step, round, self.all_sites(kind)).await?, None),
            Some(site) => {
                // The fitting sites' signed answers attest the models to the held-out site.
                let (answers, signed) = self.round_signed(step, round, self.all_sites(kind.clone())).await?;
                let held_out = self.score_held_out(step, round, &site, kind, &signed).await?;
                (answers, Some(held_out))
            }
        };
        let mut results = Vec::new();
        for (k, (kind, scorer, note)) in scorers.into_iter().enumerate() {
            let nested: Vec<_> = answers.iter().map(|a| a.nested(&format!("s{k}."))).collect();
            let (total, per_site) = metrics::combine(&nested, grid).map_err(|source| StudyError::Combine { step: step.into(), source })?;
            let threshold = total[&CohortRole::Training].youden_cell();
            let training = total[&CohortRole::Training].metrics(threshold);
            let validation = total[&CohortRole::Validation].metrics(threshold);
            let per_site_auc = if per_site_results {
                per_site.iter().map(|(site, h)| (site.clone(), (h[&CohortRole::Training].auc().0, h[&CohortRole::Validation].auc().0))).collect()
            } else {
                BTreeMap::new()
            };
            file.classifier = kind;
            file.standardiser = std.clone();
            file.scorer = scorer;
            file.threshold = training.threshold;
            let base = file.sequence.strip_suffix(fedrad_shared::algorithms::extraction::WITH_DEEP).unwrap_or(&file.sequence);
            let rel = format!("models/{base}/{}/{}.json", file.model, serde_json::to_value(kind).unwrap().as_str().unwrap());
            write_json(&self.study.output_dir.join(&rel), file)?;
            let (c, cross_validation) = penalties.get(&kind).cloned().map_or((None, Vec::new()), |(c, p)| (Some(c), p));
            let held_out_histogram = match &held_out {
                Some(answer) => {
                    Some(crate::held_out::all_patients(&answer.nested(&format!("s{k}.")), grid).map_err(|source| StudyError::Combine { step: step.into(), source })?)
                }
                None => None,
            };
            let held_out = held_out_histogram.as_ref().map(|h| h.metrics(threshold));
            results.push(ClassifierResult {
                classifier: kind,
                training,
                validation,
                per_site_auc,
                model_file: rel,
                note,
                c,
                cross_validation,
                held_out,
                held_out_histogram,
            });
        }
        Ok((Fitted { results, not_fitted }, round))
    }
}
