//! The feature-selection and clinical-model steps of a study: what the coordinator asks the
//! sites in which order, using the shared algorithms' coordinator halves, and the files each
//! step writes (`selection.json`, `lasso/<sequence>/radiomic.{json,_path.svg,_cv.svg}`,
//! `clinical_model.json`).

use std::collections::BTreeMap;

use fedrad_shared::algorithms::classifiers::ClassifierKind;
use fedrad_shared::algorithms::extraction::catalogue_sha256;
use fedrad_shared::algorithms::glm::Standardiser;
use fedrad_shared::algorithms::lasso::{self, LassoPath, LassoPathSolver, LassoRequest};
use fedrad_shared::algorithms::univariate::{self, FeatureTest};
use fedrad_shared::algorithms::{correlation, folds, logistic, split, standardise};
use fedrad_shared::proto::{self, task};

use crate::config::{SelectAt, UnivariateChoice};
use crate::model_size::{self, ModelSize, SiteCapacity};
use crate::study::{StudyError, StudyRunner, algorithm_error, variable_to_proto, write_json, write_text};
use crate::svg;

#[derive(Debug, Clone, serde::Serialize)]
pub struct SelectedFeature {
    pub name: String,
    /// Coefficient on the standardised feature.
    pub coefficient: f64,
    /// Coefficient per unit of the raw feature.
    pub coefficient_original: f64,
    pub mean: f64,
    pub sd: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RedundantFeature {
    pub feature: String,
    pub kept: String,
    pub r: f64,
}

/// Per site, the most training patients that may lack a row the study's designs need.
#[derive(Debug, Clone, Default)]
pub struct Missing {
    /// Without a feature row in some table the selection uses (failed extraction or embedding).
    pub features: BTreeMap<String, u64>,
    /// Without a value of some clinical model variable.
    pub clinical: BTreeMap<String, u64>,
}

/// Selection for one sequence and feature group.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SequenceSelection {
    pub sequence: String,
    pub group: String,
    pub training_patients: u64,
    pub features: usize,
    pub dropped_constant: Vec<String>,
    pub dropped_non_finite: Vec<String>,
    pub univariate_test: UnivariateChoice,
    pub univariate_alpha: f64,
    pub univariate_passed: usize,
    pub redundant: Vec<RedundantFeature>,
    pub lasso_candidates: usize,
    pub lambda_min: Option<f64>,
    pub lambda_1se: Option<f64>,
    pub select_at: SelectAt,
    /// The λ whose features are `selected`: the one `select_at` names, or a larger one when
    /// that model has more parameters than a site accepts ([`crate::model_size`]).
    pub lambda_used: Option<f64>,
    /// What the model-size rule did to λ, when it moved it.
    pub size_note: Option<String>,
    /// Where the λ path ended before its planned length because a solution needed more
    /// columns than every site's parameter limit admits in a LASSO point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_stop: Option<String>,
    /// Model III's features when Model III uses this selection and its clinical terms make
    /// `selected` too many for a site: the path's model at the first λ that fits beside them.
    pub with_clinical: Option<ClinicalSizedSelection>,
    pub cv_deviance_at_selected: Option<f64>,
    pub intercept: Option<f64>,
    pub intercept_original: Option<f64>,
    pub selected: Vec<SelectedFeature>,
    pub note: Option<String>,
}

/// The features a selection keeps beside the clinical model's terms (Model III).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClinicalSizedSelection {
    pub clinical_columns: usize,
    pub lambda: f64,
    pub selected: Vec<SelectedFeature>,
    pub note: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SelectionResults {
    /// The folds and model size every site accepts, from their policies and training counts.
    pub model_size: ModelSize,
    pub folds: folds::FoldSummary,
    pub sequences: Vec<SequenceSelection>,
}

/// The LASSO output file (`lasso/<sequence>/<group>.json`).
#[derive(serde::Serialize)]
struct LassoFile<'a> {
    sequence: &'a str,
    group: &'a str,
    features: Vec<&'a str>,
    standardiser: &'a Standardiser,
    path: &'a LassoPath,
    /// Per λ: intercept then coefficients per unit of the raw features.
    coefficients_original: Vec<Vec<f64>>,
    select_at: SelectAt,
}

/// Which features a selection runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureGroup {
    /// The handcrafted (radiomic) features: Model I.
    Radiomic,
    /// Handcrafted and deep features together: Model II.
    Combined,
}

impl FeatureGroup {
    pub fn name(self) -> &'static str {
        match self {
            FeatureGroup::Radiomic => "radiomic",
            FeatureGroup::Combined => "combined",
        }
    }

    /// The sites' table the group's tasks name.
    pub fn table(self, seq: &str) -> String {
        match self {
            FeatureGroup::Radiomic => seq.to_string(),
            FeatureGroup::Combined => format!("{seq}{}", fedrad_shared::algorithms::extraction::WITH_DEEP),
        }
    }

    fn step_suffix(self) -> &'static str {
        match self {
            FeatureGroup::Radiomic => "",
            FeatureGroup::Combined => ".combined",
        }
    }
}

/// The column names of a feature set's table for one group: `set` is a sequence or the table
/// of both ([`BOTH_SEQUENCES`](fedrad_shared::algorithms::extraction::BOTH_SEQUENCES));
/// `radiomic` is every sequence's handcrafted catalogue, `deep` per sequence with deep features
/// its `<seq>+deep` columns. `None` when the set has no deep features (for both sequences:
/// unless both have them).
pub(crate) fn table_catalogue(set: &str, group: FeatureGroup, radiomic: &[String], deep: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    use fedrad_shared::algorithms::extraction::{SEQUENCES, both_sequences_columns, parse_table};
    let joint = parse_table(set).is_some_and(|t| t.is_joint());
    match (group, joint) {
        (FeatureGroup::Radiomic, false) => Some(radiomic.to_vec()),
        (FeatureGroup::Combined, false) => deep.get(set).cloned(),
        (FeatureGroup::Radiomic, true) => Some(both_sequences_columns(&[radiomic, radiomic], None)),
        (FeatureGroup::Combined, true) => {
            let part = |seq: &str| deep.get(seq).map(|names| &names[radiomic.len().min(names.len())..]);
            let (a, b) = (part(SEQUENCES[0])?, part(SEQUENCES[1])?);
            Some(both_sequences_columns(&[radiomic, radiomic], Some(&[a, b])))
        }
    }
}

fn columns(sequence: &str, digest: &str, cols: &[usize]) -> proto::FeatureColumns {
    proto::FeatureColumns { sequence: sequence.into(), catalogue_sha256: digest.into(), columns: cols.iter().map(|&c| c as u32).collect() }
}

impl StudyRunner<'_> {
    /// The folds and model size every site accepts ([`crate::model_size`]), from the
    /// policies the sites published, their training counts in the split and how many of their
    /// patients may lack a feature row (`missing`, per site).
    pub(crate) fn model_size(&self, split: &split::SplitSummary, missing: &Missing) -> Result<ModelSize, StudyError> {
        let sites: Vec<SiteCapacity> = self
            .study
            .sites
            .iter()
            .map(|site| {
                let policy = self.policies.get(site);
                SiteCapacity {
                    site: site.clone(),
                    training: split.per_site.get(site).map_or(0, |c| c.training()),
                    missing: missing.features.get(site).copied().unwrap_or(0),
                    clinical_missing: missing.clinical.get(site).copied().unwrap_or(0),
                    min_count: policy.map_or(1, |p| p.min_count),
                    max_parameter_ratio: policy.map_or(1.0, |p| p.max_parameter_ratio),
                }
            })
            .collect();
        let search = self.study.models.search.enabled;
        model_size::plan(&sites, self.study.selection.lasso.folds, search).map_err(|e| match e {
            model_size::ModelSizeError::TooFewForFolds { ref site, .. } => StudyError::Refused { step: "folds".into(), site: site.clone(), detail: e.to_string() },
            e => algorithm_error("folds")(e.to_string()),
        })
    }

    /// Folds, then per sequence: standardisation + univariate, redundancy, LASSO.
    /// `deep` holds, per sequence with deep features, the catalogue of its `<seq>+deep` table
    /// (handcrafted then deep columns): those sequences get a second, "combined" selection.
    /// `clinical` is the clinical model, whose terms Model III adds to a selection.
    pub(crate) async fn run_selection(
        &mut self,
        catalogue: &[String],
        deep: &BTreeMap<String, Vec<String>>,
        split: &split::SplitSummary,
        missing: &Missing,
        clinical: Option<&logistic::ClinicalModel>,
    ) -> Result<SelectionResults, StudyError> {
        let size = self.model_size(split, missing)?;
        if let Some(site) = &size.folds_limited_by {
            tracing::info!(planned = size.folds_planned, folds = size.folds, %site, "fewer folds so that every site's folds reach its min_count");
        }
        let k = size.folds;
        let seed = self.study.seed;
        let fold_summary = self
            .step("folds", async |s: &mut Self| {
                let answers = s.round("folds", 1, s.all_sites(task::Kind::Folds(proto::FoldsTask { seed, folds: k }))).await?;
                let f = folds::combine(&answers, k).map_err(|source| StudyError::Combine { step: "folds".into(), source })?;
                Ok((f, 1))
            })
            .await?;
        let clinical_columns = clinical.map_or(0, |c| crate::models::clinical_design_columns(&self.study.clinical_variables().expect("validated at load"), c).len());
        let mut sequences = Vec::new();
        // Each sequence, then (option `both_sequences`) the table of both.
        for set in self.study.selection.feature_sets() {
            // Model III adds the clinical terms to the combined selection, or to the radiomic
            // one when the set has no deep features.
            let radiomic = table_catalogue(&set, FeatureGroup::Radiomic, catalogue, deep).expect("every set has radiomic features");
            let combined = table_catalogue(&set, FeatureGroup::Combined, catalogue, deep);
            let c = if combined.is_none() { clinical_columns } else { 0 };
            sequences.push(self.select_sequence(&set, FeatureGroup::Radiomic, &radiomic, &catalogue_sha256(&radiomic), &size, c).await?);
            if let Some(combined) = combined {
                sequences.push(self.select_sequence(&set, FeatureGroup::Combined, &combined, &catalogue_sha256(&combined), &size, clinical_columns).await?);
            }
        }
        let results = SelectionResults { model_size: size, folds: fold_summary, sequences };
        write_json(&self.study.output_dir.join("selection.json"), &results)?;
        Ok(results)
    }

    /// One selection; `clinical_columns` is the number of clinical design columns Model III
    /// adds to it (0 when Model III does not use it).
    async fn select_sequence(
        &mut self,
        seq: &str,
        group: FeatureGroup,
        catalogue: &[String],
        digest: &str,
        size: &ModelSize,
        clinical_columns: usize,
    ) -> Result<SequenceSelection, StudyError> {
        let settings = self.study.selection.clone();
        let table = group.table(seq);
        let table = table.as_str();
        // Step names: `standardise.t2` for the handcrafted features, `standardise.t2.combined`
        // with the deep ones.
        let suffix = group.step_suffix();
        let all: Vec<usize> = (0..catalogue.len()).collect();
        let p_all = all.len();

        // 1. Standardisation (and Welch's moments) over the training cohort.
        let step = format!("standardise.{seq}{suffix}");
        let moments = self
            .step(&step.clone(), async |s: &mut Self| {
                s.moments(&step, 0, p_all, |centre| task::Kind::FeatureMoments(proto::FeatureMomentsTask { features: Some(columns(table, digest, &all)), centre })).await
            })
            .await?;
        let standardisation = moments.standardisation();
        let kept = standardisation.kept.clone();
        let name = |j: usize| catalogue[j].clone();
        let mut out = SequenceSelection {
            sequence: seq.into(),
            group: group.name().into(),
            training_patients: standardisation.n,
            features: p_all,
            dropped_constant: standardisation.dropped.iter().filter(|d| d.1 == standardise::DropReason::Constant).map(|d| name(d.0)).collect(),
            dropped_non_finite: standardisation.dropped.iter().filter(|d| d.1 == standardise::DropReason::NonFinite).map(|d| name(d.0)).collect(),
            univariate_test: settings.univariate.test,
            univariate_alpha: settings.univariate.alpha,
            univariate_passed: 0,
            redundant: Vec::new(),
            lasso_candidates: 0,
            lambda_min: None,
            lambda_1se: None,
            select_at: settings.select_at,
            lambda_used: None,
            size_note: None,
            path_stop: None,
            with_clinical: None,
            cv_deviance_at_selected: None,
            intercept: None,
            intercept_original: None,
            selected: Vec::new(),
            note: None,
        };
        let standardiser_of = |cols: &[usize]| Standardiser {
            center: cols.iter().map(|&j| standardisation.mean[j]).collect(),
            scale: cols.iter().map(|&j| standardisation.sd[j]).collect(),
        };

        // 2. Univariate filter.
        let tests: Vec<FeatureTest> = match settings.univariate.test {
            UnivariateChoice::Welch | UnivariateChoice::None => univariate::welch(&moments, &kept),
            UnivariateChoice::MannWhitney => {
                let step = format!("univariate.{seq}{suffix}");
                let (res, lim) = (settings.univariate.resolution, settings.univariate.limit);
                let std = standardiser_of(&kept);
                self.step(&step.clone(), async |s: &mut Self| {
                    let kind = task::Kind::RankHistogram(proto::RankHistogramTask {
                        features: Some(columns(table, digest, &kept)),
                        standardiser: Some(std.to_proto()),
                        resolution: res,
                        limit: lim,
                    });
                    let answers = s.round(&step, 1, s.all_sites(kind)).await?;
                    let t = univariate::combine_mann_whitney(&answers, &kept, res, lim).map_err(|source| StudyError::Combine { step: step.clone(), source })?;
                    Ok((t, 1))
                })
                .await?
            }
        };
        let passed: Vec<FeatureTest> =
            if settings.univariate.test == UnivariateChoice::None { tests } else { tests.into_iter().filter(|t| t.p_value < settings.univariate.alpha).collect() };
        out.univariate_passed = passed.len();
        write_json(&self.study.output_dir.join("lasso").join(seq).join(format!("univariate{}.json", suffix.replace('.', "_"))), &named_tests(&passed, catalogue))?;

        // 3. Redundancy filter on the federated correlation matrix.
        let mut candidates: Vec<usize> = passed.iter().map(|t| t.column).collect();
        if settings.redundancy.enabled && candidates.len() > 1 {
            let step = format!("redundancy.{seq}{suffix}");
            let cols = candidates.clone();
            let threshold = settings.redundancy.threshold;
            let std = standardiser_of(&cols);
            let (kept_pos, dropped) = self
                .step(&step.clone(), async |s: &mut Self| {
                    let kind = task::Kind::Correlation(proto::CorrelationTask { features: Some(columns(table, digest, &cols)), standardiser: Some(std.to_proto()) });
                    let answers = s.round(&step, 1, s.all_sites(kind)).await?;
                    let c = correlation::combine(&answers, cols.len()).map_err(|source| StudyError::Combine { step: step.clone(), source })?;
                    Ok((correlation::redundancy_filter(&c.correlation(), &passed, threshold), 1))
                })
                .await?;
            out.redundant = dropped.iter().map(|d| RedundantFeature { feature: name(d.column), kept: name(d.kept_column), r: d.r }).collect();
            candidates = kept_pos.iter().map(|&i| cols[i]).collect();
        }
        out.lasso_candidates = candidates.len();
        if candidates.is_empty() {
            out.note = Some("no feature passed the filters; nothing to select".into());
            return Ok(out);
        }

        // 4. LASSO with cross-validation.
        let step = format!("lasso.{seq}.{}", group.name());
        let std = standardiser_of(&candidates);
        // The folds every site accepts; the plan's `folds` is their most.
        let lasso_settings = lasso::LassoSettings { folds: size.folds, ..settings.lasso.clone() };
        let family = lasso_settings.family.to_proto() as i32;
        let cols = columns(table, digest, &candidates);
        let path = self
            .step(&step.clone(), async |s: &mut Self| {
                // Every site refuses a point wider than its parameter limit: keep each fit's set
                // within the smallest, and end the path where a solution needs more.
                let block_columns = size.lasso_block_columns();
                let mut solver = LassoPathSolver::new(lasso_settings.clone(), candidates.len()).with_max_block_columns(block_columns);
                // Absent on the wire: no limit.
                let max_block_columns = u32::try_from(block_columns).ok();
                // Every site's signed answer to the last round: each site sums them and replays
                // the solver, and answers only the points it asks for next (`LassoReplica`).
                let mut previous = Vec::new();
                let mut round = 0;
                while let Some(request) = solver.request() {
                    round += 1;
                    match request {
                        LassoRequest::Round(points) => {
                            let kind = task::Kind::LassoRound(proto::LassoRoundTask {
                                features: Some(cols.clone()),
                                standardiser: Some(std.to_proto()),
                                family,
                                mixing: lasso_settings.mixing,
                                points: points.iter().map(|p| p.to_proto()).collect(),
                                max_block_columns,
                                previous: std::mem::take(&mut previous),
                            });
                            let (answers, signed) = s.round_signed(&step, round, s.all_sites(kind)).await?;
                            previous = signed;
                            let totals =
                                lasso::combine_round(&answers, &points, candidates.len()).map_err(|source| StudyError::Combine { step: step.clone(), source })?;
                            solver.absorb_round(&totals).map_err(|e| algorithm_error(&step)(e.to_string()))?;
                        }
                        LassoRequest::CvLoss(points) => {
                            let l = solver.path_end();
                            let kind = task::Kind::CvLoss(proto::CvLossTask {
                                features: Some(cols.clone()),
                                standardiser: Some(std.to_proto()),
                                family,
                                path_length: l as u32,
                                points: points.iter().map(|p| p.to_proto()).collect(),
                                max_block_columns,
                                previous: std::mem::take(&mut previous),
                            });
                            let answers = s.round(&step, round, s.all_sites(kind)).await?;
                            let (sum, sq, n) = lasso::combine_cv(&answers, l).map_err(|source| StudyError::Combine { step: step.clone(), source })?;
                            solver.absorb_cv(sum, sq, n).map_err(|e| algorithm_error(&step)(e.to_string()))?;
                        }
                    }
                }
                let path = solver.finish().ok_or_else(|| algorithm_error(&step)("the LASSO finished without a result".into()))?;
                Ok((path, round))
            })
            .await?;
        if path.lambdas.is_empty() {
            // The path stopped before its first λ: already there a fit needs more columns than
            // the smallest site admits.
            let needed = path.stopped.as_ref().map_or(0, |s| s.columns_needed);
            out.note = Some(format!(
                "the LASSO path stopped before its first λ: a fit there needs {needed} feature columns, the sites' parameter limit admits {} beside the intercept (set by {}); nothing to select",
                size.lasso_block_columns(),
                size.lasso_limited_by
            ));
            return Ok(out);
        }

        let chosen = match settings.select_at {
            SelectAt::LambdaMin => path.lambda_min_index,
            SelectAt::Lambda1se => path.lambda_1se_index,
        };
        let original = |l: usize| -> Vec<f64> {
            let beta = &path.coefficients[l];
            let b0 = path.intercepts[l] - beta.iter().zip(&std.center).zip(&std.scale).map(|((b, m), s)| b * m / s).sum::<f64>();
            std::iter::once(b0).chain(beta.iter().zip(&std.scale).map(|(b, s)| b / s)).collect()
        };
        let selected_at = |l: usize| -> Vec<SelectedFeature> {
            let orig = original(l);
            candidates
                .iter()
                .enumerate()
                .filter(|(i, _)| path.coefficients[l][*i] != 0.0)
                .map(|(i, &j)| SelectedFeature {
                    name: name(j),
                    coefficient: path.coefficients[l][i],
                    coefficient_original: orig[i + 1],
                    mean: std.center[i],
                    sd: std.scale[i],
                })
                .collect()
        };
        // The model-size rule: logistic regression and the linear SVM must stay within every
        // site's parameter limit (the trees and naive Bayes share their features).
        let active: Vec<usize> = path.coefficients.iter().map(|c| c.iter().filter(|b| **b != 0.0).count()).collect();
        let linear = self.study.models.classifiers.iter().any(|k| matches!(k, ClassifierKind::LogisticRegression | ClassifierKind::LinearSvm));
        let chosen_name = match settings.select_at {
            SelectAt::LambdaMin => "λ_min",
            SelectAt::Lambda1se => "λ_1se",
        };
        let limited = |max: usize| (linear && active[chosen] > max).then(|| model_size::lambda_within(&active, chosen, max));
        let why = |max: usize, clinical: usize| {
            let (most, l) = size.limit(clinical > 0);
            let beside = if clinical > 0 { format!(" beside {clinical} clinical design column(s) and") } else { " and".into() };
            format!(
                "{chosen_name} keeps {} features; site {} fits at most {most} parameters ({} per patient × {} patients), so at most {max} features{beside} the intercept",
                active[chosen],
                l.site,
                l.max_parameter_ratio,
                ModelSize::fit_patients(l, clinical > 0)
            )
        };
        let at = match size.max_features(0).and_then(limited) {
            Some(l) => {
                out.size_note = Some(format!("{}: λ = {:.4} with {} features", why(size.max_features(0).unwrap_or(0), 0), path.lambdas[l], active[l]));
                l
            }
            None => chosen,
        };
        if clinical_columns > 0
            && let Some(max) = size.max_features(clinical_columns)
            && let Some(l) = limited(max).filter(|l| *l != at)
        {
            out.with_clinical = Some(ClinicalSizedSelection {
                clinical_columns,
                lambda: path.lambdas[l],
                selected: selected_at(l),
                note: format!("Model III: {}: λ = {:.4} with {} features", why(max, clinical_columns), path.lambdas[l], active[l]),
            });
        }
        if let Some(stop) = &path.stopped {
            let l = size.per_site.iter().find(|l| l.site == size.lasso_limited_by);
            let fit = if stop.fold == 0 { "the full fit".to_string() } else { format!("the fit without fold {}", stop.fold) };
            out.path_stop = Some(format!(
                "the λ path ended after {} of its {} values: at the next λ {fit} needed {} columns, and site {} admits at most {} beside the intercept in a LASSO point ({} per patient × {} patients outside its largest fold)",
                path.lambdas.len(),
                settings.lasso.path_length,
                stop.columns_needed,
                size.lasso_limited_by,
                stop.max_block_columns,
                l.map_or(0.0, |l| l.max_parameter_ratio),
                l.map_or(0, |l| l.lasso_fit_patients),
            ));
            tracing::info!(step = %step, stop = ?stop, "LASSO path ended at the sites' parameter limit");
        }
        out.lambda_min = Some(path.lambdas[path.lambda_min_index]);
        out.lambda_1se = Some(path.lambdas[path.lambda_1se_index]);
        out.lambda_used = Some(path.lambdas[at]);
        out.cv_deviance_at_selected = Some(path.cv_mean[at]);
        out.intercept = Some(path.intercepts[at]);
        out.intercept_original = Some(original(at)[0]);
        out.selected = selected_at(at);
        if !path.converged.iter().all(|c| *c) || path.fold_fits_not_converged > 0 {
            out.note = Some(format!(
                "the solver stopped at its round limit for {} λ values of the full fit and {} (fold, λ) pairs; those coefficients are the last iterate",
                path.converged.iter().filter(|c| !**c).count(),
                path.fold_fits_not_converged
            ));
        }

        let dir = self.study.output_dir.join("lasso").join(seq);
        let names: Vec<&str> = candidates.iter().map(|&j| catalogue[j].as_str()).collect();
        let file = LassoFile {
            sequence: seq,
            group: group.name(),
            features: names.clone(),
            standardiser: &std,
            path: &path,
            coefficients_original: (0..path.lambdas.len()).map(original).collect(),
            select_at: settings.select_at,
        };
        write_json(&dir.join(format!("{}.json", group.name())), &file)?;
        write_text(&dir.join(format!("{}_path.svg", group.name())), &path_chart(seq, &path, &names, at))?;
        write_text(&dir.join(format!("{}_cv.svg", group.name())), &cv_chart(seq, &path, at))?;
        Ok(out)
    }

    /// Univariate screening and the multivariable clinical model.
    /// The clinical model stays within the parameters every site fits on its training
    /// patients with complete clinical data ([`model_size::max_parameters`]; `missing` bounds
    /// the incomplete ones per site from Table 1).
    pub(crate) async fn run_clinical_model(&mut self, split: &split::SplitSummary, missing: &Missing) -> Result<logistic::ClinicalModel, StudyError> {
        let variables = self.study.clinical_variables().expect("validated at load");
        let entry_p = self.study.clinical_model.entry_p;
        let most = self
            .study
            .sites
            .iter()
            .map(|site| {
                let ratio = self.policies.get(site).map_or(1.0, |p| p.max_parameter_ratio);
                let training = split.per_site.get(site).map_or(0, |c| c.training());
                model_size::max_parameters(ratio, training.saturating_sub(missing.clinical.get(site).copied().unwrap_or(0)))
            })
            .min()
            .unwrap_or(usize::MAX);
        let proto_vars: Vec<proto::ClinicalVariable> = variables.iter().map(variable_to_proto).collect();
        let model = self
            .step("clinical_model", async |s: &mut Self| {
                let mut round = 0;
                let model = logistic::clinical_model(&variables, entry_p, most, async |points: &[logistic::ModelPoint]| {
                    round += 1;
                    let kind = task::Kind::LogisticRound(proto::LogisticRoundTask {
                        variables: proto_vars.clone(),
                        models: points
                            .iter()
                            .map(|m| proto::ClinicalModel { columns: m.columns.iter().map(|&c| c as u32).collect(), coefficients: m.coefficients.clone() })
                            .collect(),
                    });
                    let answers = s.round("clinical_model", round, s.all_sites(kind)).await.map_err(|e| e.to_string())?;
                    logistic::combine_clinical(&answers, points).map_err(|e| e.to_string())
                })
                .await
                .map_err(|detail| StudyError::Algorithm { step: "clinical_model".into(), detail })?;
                let rounds = model.rounds;
                Ok((model, rounds))
            })
            .await?;
        write_json(&self.study.output_dir.join("clinical_model.json"), &model)?;
        Ok(model)
    }
}

#[derive(serde::Serialize)]
struct NamedTest<'a> {
    feature: &'a str,
    statistic: f64,
    p_value: f64,
    effect: f64,
}

fn named_tests<'a>(tests: &[FeatureTest], catalogue: &'a [String]) -> Vec<NamedTest<'a>> {
    tests.iter().map(|t| NamedTest { feature: &catalogue[t.column], statistic: t.statistic, p_value: t.p_value, effect: t.effect }).collect()
}

/// The markers of a path chart: λ_min, λ_1se and, where the model-size rule moved it, the λ
/// used.
fn lambda_markers(x: &[f64], path: &LassoPath, used: usize) -> Vec<(f64, String)> {
    let mut m = vec![(x[path.lambda_min_index], "λ_min".into()), (x[path.lambda_1se_index], "λ_1se".into())];
    if used != path.lambda_min_index && used != path.lambda_1se_index {
        m.push((x[used], "λ used".into()));
    }
    m
}

fn path_chart(seq: &str, path: &LassoPath, names: &[&str], used: usize) -> String {
    let x: Vec<f64> = path.lambdas.iter().map(|l| l.log10()).collect();
    let mut series = Vec::new();
    let mut shown = BTreeMap::new();
    for j in 0..names.len() {
        if path.coefficients.iter().any(|c| c[j] != 0.0) {
            let k = shown.len();
            shown.insert(j, k);
            series.push(svg::Series { points: x.iter().zip(&path.coefficients).map(|(x, c)| (*x, c[j])).collect(), color: svg::palette(k), label: None, error: None });
        }
    }
    svg::render(&svg::Chart {
        title: &format!("LASSO coefficient path, {seq} radiomic features ({} ever non-zero)", shown.len()),
        x_label: "log10(λ)",
        y_label: "coefficient (standardised)",
        series,
        markers: lambda_markers(&x, path, used),
        x_range: None,
        y_range: None,
        diagonal: false,
    })
}

fn cv_chart(seq: &str, path: &LassoPath, used: usize) -> String {
    let x: Vec<f64> = path.lambdas.iter().map(|l| l.log10()).collect();
    let label = match path.family {
        fedrad_shared::algorithms::glm::GlmFamily::Binomial => "binomial deviance (held out)",
        fedrad_shared::algorithms::glm::GlmFamily::Gaussian => "mean squared error (held out)",
    };
    svg::render(&svg::Chart {
        title: &format!("{}-fold cross-validation, {seq} radiomic features", path.folds),
        x_label: "log10(λ)",
        y_label: label,
        series: vec![svg::Series {
            points: x.iter().copied().zip(path.cv_mean.iter().copied()).collect(),
            color: svg::palette(1),
            label: None,
            error: Some(path.cv_se.clone()),
        }],
        markers: lambda_markers(&x, path, used),
        x_range: None,
        y_range: None,
        diagonal: false,
    })
}
