//! What this site accepts of a task, whatever the coordinator sends: the checks of every task
//! against the study plan its operator approved ([`crate::approval`]).
//!
//! Threat model: the coordinator, or whoever holds its key, is malicious and sends any
//! well-formed tasks in any number and order. Each task kind below names the attack its free
//! parameters would enable and the check that stops it; the per-algorithm halves of the checks
//! live beside the algorithms in `fedrad_shared::algorithms` (their "what a site accepts"
//! sections). The checks here need no patient data; those that compare with the site's own
//! data (split quotas, standardisers, clinical coefficients) run where the engine has it.
//!
//! | task kind | attack if free | site check |
//! |---|---|---|
//! | every kind | differencing across made-up studies | approved study and plan only (`site-agent approve`); the task's site list is the plan's |
//! | `split`, `folds` | quotas or fold draws differing by one patient | the plan's seed and fraction, K from 2 to the plan's; one split and one fold draw per study |
//! | `table1`, `rank_histogram`, `value_histogram`, `score` | grids zoomed onto single values, or swept across one | the plan's variables, levels and grids; standardisers no finer than the site's SD / `max_scale_ratio` and pinned at first use per feature column (by its own name and the table's patients, under any table's name) or model design ([`crate::ledger`]); a design's columns in ascending order (a permuted design would start its pins afresh) |
//! | `feature_moments`, `design_moments` | round 2's centres | none needed: sums of squares about any centres tell no more than n, Σx and Σx² of the same population (`fedrad_shared::algorithms::standardise`); one finite centre per column |
//! | `correlation` | a zoomed standardiser pushing values out of the secure sum's range (a refusal is a yes-or-no answer) | as every standardiser: no finer than the site's SD / `max_scale_ratio`, pinned per column at first use |
//! | every task with a standardiser | scales swept across the bound to read the site's SD from refusals | a pinned standardiser compared with its pin before the bound; at most `engine::SITE_RELATIVE_REFUSALS` refusals of new ones per study |
//! | `extract_features`, `onnx_embed`, `embed` | other settings or networks | the plan's parameter file, network and architecture |
//! | `lasso_round`, `cv_loss`, `classifier_round`, `logistic_round`, `score`, `paired_scores` | steep models whose gradients or scores step at one patient; two LASSO Hessian blocks of one population, as wide as it has patients, whose simultaneous diagonalisation gives every row | coefficients within the plan's bound per SD; standardiser no finer than the site's SD / `max_scale_ratio`; the plan's family, mixing, path length (or a shorter path), random features (seed, γ, at most the plan's count); at most one point per fit (K + 1) per round; every LASSO point's Hessian block and model within `max_parameter_ratio` × its population here (`lasso::site_accepts_point_size`); LASSO, CV and classifier points only as the study's solver asks them next from the sum of every site's signed answers to the run's previous round, classifier fits from zero with the plan's C ([`crate::replay`]) |
//! | `tree_round` | deep trees, other bootstrap seeds; a child's exact totals minus its parent's runs wholly on its side (the part of a run its split cuts off) | the plan's tree kinds, seed, depth, bins, tree and round counts; every round as the site's replica asks it (`trees::TreeReplica`); bins released in runs of 0 or ≥ `min_count`, nested along the path; a pair withheld when a sibling along the path is small or its split cuts an ancestor's run into a part of 1 to `min_count` − 1 (`fedrad_shared::algorithms::trees`) |
//! | `encoder_round` | batch size 1, chosen rates: gradients of one patient | the plan's local training settings; batches of at least `min_count`; the plan's initial weights in round 1; rounds in order |
//! | model tasks | classifiers the study does not fit | only the plan's classifiers (logistic regression also for the site-alone baselines) |
//! | `score`, `paired_scores` | a "model" that is one column, scored at fine resolution; a forest whose leaves are boxes around known people | only models whose fitting rounds the site answered, or within a per-study budget of unverifiable ones ([`crate::ledger`]); in a study the site recomputes, a fitted model only as its replica of the fit ended, from every site's signed answers to the fit's last round: a tree ensemble to the last leaf value (`trees::TreeReplica::expect_grown`), a Newton fit at its final point (`classifiers::FitReplica::expect_fitted`); comparisons only of models already scored |
//! | `paired_scores` round 2 | forged "merged" histograms as a membership test; copies of a model, each with its own made-up threshold | the merged histograms must contain the site's own patients, cell by cell, and equally many patients per class for every model; no model twice; one set of merged histograms per list of models ([`crate::ledger`]); each patient placed by its released cell (small cells merged), so placements say no more than the first round's histograms |
//! | `score`, `table1`, `value_histogram`, `rank_histogram` | a fine grid whose cells hold one patient each: that patient's value, with cohort and outcome | small cells merged into groups of at least `min_count` released as their count, mean and SD (`fedrad_shared::algorithms::small_cells`) |
//! | `combat_sums` | none free (the plan's covariates over the site's training patients); tables whose populations differ by a patient | the plan harmonises; each outcome class ≥ `min_count` when the outcome is protected; 1 + covariate columns within `max_parameter_ratio`; the estimation rows differ from every other table's population by 0 or ≥ `min_count` patients per class (engine) |
//! | `combat_apply` | estimates that squeeze (tiny σ) or steer (steep β) every later task's values, push validation patients out (x̄), or a second set to difference the first | σ ≥ the site's residual SD / `max_scale_ratio`; x̄ a plausible mean of the covariate; one set per table and extracted table (pinned in `harmonisation/` before the table is written). Not stopped: a steep β with σ raised to match (see `fedrad_shared::algorithms::combat`) |
//! | `encoder_round`, `embed` | weights of the coordinator's choosing | round 1 from the plan's initial weights, rounds in order, each global step at most 10× this site's own; embedding only after the plan's last round, one step from it |

use fedrad_shared::algorithms::classifiers::{ClassifierKind, RandomFeatures, Scorer, site_accepts_scorer};
use fedrad_shared::algorithms::glm::{self, GlmFamily, Standardiser};
use fedrad_shared::algorithms::{SiteRefusal, folds, metrics, table1, trees, univariate};
use fedrad_shared::clinical::{VariableKind, VariableSpec};
use fedrad_shared::plan::{DeepSource, StudyPlan, UnivariateChoice};
use fedrad_shared::proto::{self, task};

fn invalid<T>(m: impl Into<String>) -> Result<T, SiteRefusal> {
    Err(SiteRefusal::InvalidParameters(m.into()))
}

/// The checks of one task against the approved plan that need no patient data.
pub fn accept(kind: &task::Kind, plan: &StudyPlan, min_count: u64) -> Result<(), SiteRefusal> {
    let limits = &plan.limits;
    match kind {
        task::Kind::CohortSummary(_) => Ok(()),
        task::Kind::Split(s) => {
            if s.seed != plan.seed {
                return invalid(format!("split seed {} is not the study plan's ({})", s.seed, plan.seed));
            }
            Ok(())
        }
        task::Kind::Table1(t) => {
            let asked = t.variables.iter().map(variable_spec).collect::<Result<Vec<_>, _>>()?;
            table1::site_accepts(&asked, &plan.table1_variables().map_err(SiteRefusal::InvalidParameters)?)
        }
        task::Kind::ExtractFeatures(t) => {
            if t.parameters_yaml != plan.feature_parameters {
                return invalid("the feature parameter file is not the study plan's");
            }
            Ok(())
        }
        task::Kind::Folds(f) => {
            selection_planned(plan)?;
            folds::site_accepts(f.seed, f.folds, plan.seed, plan.selection.lasso.folds)
        }
        task::Kind::FeatureMoments(t) => feature_table(plan, t.features.as_ref()),
        task::Kind::Correlation(t) => {
            feature_table(plan, t.features.as_ref())?;
            if !plan.selection.redundancy.enabled {
                return invalid("the study plan has no redundancy filter");
            }
            Ok(())
        }
        task::Kind::RankHistogram(t) => {
            feature_table(plan, t.features.as_ref())?;
            let u = &plan.selection.univariate;
            univariate::site_accepts(t.resolution, t.limit, u.test == UnivariateChoice::MannWhitney, u.resolution, u.limit)
        }
        task::Kind::LassoRound(t) => {
            feature_table(plan, t.features.as_ref())?;
            lasso_family(plan, t.family, t.mixing)?;
            let k = plan.selection.lasso.folds;
            if t.points.len() > k as usize + 1 {
                return invalid(format!("{} points in one LASSO round; the plan has one fit per fold and the full fit ({})", t.points.len(), k + 1));
            }
            let mut folds: Vec<u32> = t.points.iter().map(|p| p.fold).collect();
            folds.sort_unstable();
            folds.dedup();
            if folds.len() != t.points.len() {
                return invalid("two points of one LASSO round on the same population (one fit per fold)");
            }
            t.points.iter().try_for_each(|p| glm_point(p, limits.max_coefficient))
        }
        task::Kind::CvLoss(t) => {
            feature_table(plan, t.features.as_ref())?;
            lasso_family(plan, t.family, plan.selection.lasso.mixing)?;
            // K folds of the path (2 ≤ K ≤ the plan's; the site's recorded K is checked where
            // the folds are, in `lasso::site_cv_loss`).
            // A path may end before the plan's length where the sites' parameter limit stops it
            // (`LassoPath::stopped`), never after.
            let (k, l) = (plan.selection.lasso.folds as usize, plan.selection.lasso.path_length);
            let m = t.path_length as usize;
            if !(1..=l).contains(&m) || !t.points.len().is_multiple_of(m) || !(2..=k).contains(&(t.points.len() / m)) {
                return invalid(format!("cross-validation of {} points with a path of {}; the plan has at most {k} folds × {l}", t.points.len(), t.path_length));
            }
            t.points.iter().try_for_each(|p| glm_point(p, limits.max_coefficient))
        }
        task::Kind::LogisticRound(t) => {
            if !plan.clinical_model.enabled {
                return invalid("the study plan has no clinical model");
            }
            clinical_variables(plan, &t.variables)?;
            if t.models.len() > plan.clinical_variables().map_or(0, |v| v.len()) + 1 {
                return invalid(format!("{} clinical models in one round; the plan's univariate screen has one per variable", t.models.len()));
            }
            Ok(())
        }
        task::Kind::DesignMoments(t) => design(plan, t.design.as_ref()),
        task::Kind::ClassifierRound(t) => {
            design(plan, t.design.as_ref())?;
            let width = design_width(t.design.as_ref());
            use proto::ClassifierObjective as O;
            let classifier = match (O::try_from(t.objective), &t.random_features) {
                (Ok(O::Logistic), None) => ClassifierKind::LogisticRegression,
                (Ok(O::SquaredHinge | O::Platt), None) => ClassifierKind::LinearSvm,
                (Ok(O::SquaredHinge | O::Platt), Some(_)) => ClassifierKind::RbfSvm,
                _ => return invalid("unknown classifier objective"),
            };
            classifier_planned(plan, classifier)?;
            if let Some(rf) = &t.random_features {
                random_features(plan, rf, width)?;
            }
            if t.exclude_fold > 0 && !plan.models.search.enabled {
                return invalid("the study plan has no hyperparameter search (rounds without a fold)");
            }
            glm::accept_coefficients("the classifier's parameters", &t.parameters, limits.max_coefficient)?;
            glm::accept_coefficients("the SVM of the Platt round", &t.svm, limits.max_coefficient)
        }
        task::Kind::Score(t) => {
            design(plan, t.design.as_ref())?;
            metrics::site_accepts_grid(t.grid)?;
            if t.folds > 0 && !plan.models.search.enabled {
                return invalid("the study plan has no hyperparameter search (out-of-fold scores)");
            }
            let width = design_width(t.design.as_ref());
            t.scorers.iter().try_for_each(|s| scorer(plan, s, width))?;
            // At most one end per fitted scorer (naive Bayes has no rounds), from at most the
            // plan's sites.
            let mut seen = std::collections::BTreeSet::new();
            for e in &t.fit_ends {
                let fitted = t.scorers.get(e.scorer as usize).is_some_and(|s| s.kind != proto::ScorerKind::NaiveBayes as i32);
                if !fitted || !seen.insert(e.scorer) {
                    return invalid("the fits' ends name each fitted scorer of the task once (naive Bayes has none)");
                }
                if e.previous.len() > plan.site_set().len() {
                    return invalid("a fit's last round answered by more sites than the plan's");
                }
            }
            Ok(())
        }
        task::Kind::ValueHistogram(t) => {
            design(plan, t.design.as_ref())?;
            let c = &plan.models.classifiers;
            if !c.contains(&ClassifierKind::RandomForest) && !c.contains(&ClassifierKind::GradientBoosting) {
                return invalid("the study plan fits no trees");
            }
            trees::site_accepts_value_grid(trees::ValueGrid { cells_per_sd: t.cells_per_sd, limit_sd: t.limit_sd })
        }
        task::Kind::TreeRound(t) => {
            design(plan, t.design.as_ref())?;
            let width = design_width(t.design.as_ref());
            let edges: Vec<Vec<f64>> = t.edges.iter().map(|e| e.edges.clone()).collect();
            let growing = trees::read_trees(&t.growing, &mut 0, width)?;
            let ensemble = if t.ensemble.is_empty() { Vec::new() } else { trees::read_trees(&t.ensemble, &mut 0, width)? };
            let (f, b) = (&plan.models.forest, &plan.models.boosting);
            let (classifier, limits) = match proto::TreeObjective::try_from(t.objective) {
                Ok(proto::TreeObjective::ForestCounts) => {
                    (ClassifierKind::RandomForest, trees::TreeLimits { seed: Some(f.seed), trees: f.trees as usize, max_depth: f.max_depth, bins: f.bins, ensemble: 0 })
                }
                Ok(proto::TreeObjective::BoostingGradients) => {
                    (ClassifierKind::GradientBoosting, trees::TreeLimits { seed: None, trees: 1, max_depth: b.max_depth, bins: b.bins, ensemble: b.rounds as usize })
                }
                _ => return invalid("unknown tree objective"),
            };
            classifier_planned(plan, classifier)?;
            let seed = (classifier == ClassifierKind::RandomForest).then_some(t.seed);
            trees::site_accepts_tree_round(&edges, &growing, &ensemble, seed, &limits)?;
            if classifier == ClassifierKind::GradientBoosting {
                let leaves: Vec<f64> = ensemble.iter().flat_map(|t| t.nodes.iter().map(|n| n.value)).collect();
                glm::accept_coefficients("the boosting margin", &[&[t.base_margin][..], &leaves].concat(), plan.limits.max_coefficient)?;
            }
            Ok(())
        }
        task::Kind::PairedScores(t) => {
            metrics::site_accepts_grid(t.grid)?;
            for m in &t.models {
                design(plan, m.design.as_ref())?;
                let s = m.scorer.as_ref().ok_or(SiteRefusal::InvalidParameters("a compared model without its scorer".into()))?;
                scorer(plan, s, design_width(m.design.as_ref()))?;
            }
            Ok(())
        }
        task::Kind::EncoderRound(t) => {
            let d = encoder_planned(plan)?;
            if !plan.selection.sequences.contains(&t.sequence) {
                return invalid(format!("sequence {:?} is not among the study plan's", t.sequence));
            }
            architecture(plan, t.architecture.as_ref())?;
            let planned = d.local_training(plan.seed);
            let asked = (t.local_epochs, t.batch_size, t.learning_rate, t.momentum, t.proximal_mu, t.mask_fraction, t.seed);
            let want = (planned.epochs, planned.batch_size, planned.learning_rate, planned.momentum, planned.proximal_mu, planned.mask_fraction, planned.seed);
            if asked != want {
                return invalid(format!("local training {asked:?} (epochs, batch, rate, momentum, μ, mask, seed); the study plan's is {want:?}"));
            }
            if t.batch_size != 0 && u64::from(t.batch_size) < min_count {
                return invalid(format!(
                    "mini-batches of {} patients; this site trains on batches of at least its min_count ({min_count}) or its whole cohort",
                    t.batch_size
                ));
            }
            if t.round == 0 || t.round > d.rounds {
                return invalid(format!("encoder round {}; the study plan has rounds 1 to {}", t.round, d.rounds));
            }
            Ok(())
        }
        task::Kind::Embed(t) => {
            encoder_planned(plan)?;
            if !plan.selection.sequences.contains(&t.sequence) {
                return invalid(format!("sequence {:?} is not among the study plan's", t.sequence));
            }
            architecture(plan, t.architecture.as_ref())
        }
        task::Kind::OnnxEmbed(t) => {
            let n = match (&plan.deep.source, &plan.deep.onnx) {
                (DeepSource::Onnx, Some(n)) if plan.deep.enabled => n,
                _ => return invalid("the study plan uses no ONNX network"),
            };
            let asked = (t.file_name.as_str(), t.sha256.as_str(), t.input_size as usize, t.channels as usize, t.field_mm, t.intensity.as_str());
            let want = (n.file.as_str(), n.sha256.as_str(), n.input_size, n.channels, n.field_mm, n.intensity.as_str());
            if asked != want {
                return invalid("the network or its input recipe is not the study plan's");
            }
            if !plan.selection.sequences.contains(&t.sequence) {
                return invalid(format!("sequence {:?} is not among the study plan's", t.sequence));
            }
            Ok(())
        }
        task::Kind::CombatSums(t) => combat_table(plan, t.table.as_ref()),
        task::Kind::CombatApply(t) => combat_table(plan, t.table.as_ref()),
    }
}

/// A ComBat task: only in a plan that harmonises, on one of its tables (a sequence's
/// radiomic features, or its deep features when the plan has them).
fn combat_table(plan: &StudyPlan, t: Option<&proto::CombatTable>) -> Result<(), SiteRefusal> {
    selection_planned(plan)?;
    if plan.combat.is_none() {
        return invalid("the study plan does not harmonise with ComBat");
    }
    let Some(t) = t else { return invalid("the task names no feature table") };
    if !plan.selection.sequences.contains(&t.sequence) || (t.deep && !plan.deep.enabled) {
        return invalid(format!("{} {} features are not among the study plan's tables", t.sequence, if t.deep { "deep" } else { "radiomic" }));
    }
    Ok(())
}

fn selection_planned(plan: &StudyPlan) -> Result<(), SiteRefusal> {
    if !plan.selection.enabled {
        return invalid("the study plan has no feature selection or models");
    }
    Ok(())
}

fn feature_table(plan: &StudyPlan, f: Option<&proto::FeatureColumns>) -> Result<(), SiteRefusal> {
    selection_planned(plan)?;
    let f = f.ok_or(SiteRefusal::InvalidParameters("the task names no features".into()))?;
    if !plan.allows_table(&f.sequence) {
        return invalid(format!("feature table {:?} is not among the study plan's", f.sequence));
    }
    // A column named twice would get two centres, scales or points in one task (many probes
    // of one column for the price of one task).
    let mut seen = std::collections::BTreeSet::new();
    if let Some(c) = f.columns.iter().find(|&&c| !seen.insert(c)) {
        return invalid(format!("column {c} is named twice"));
    }
    Ok(())
}

fn lasso_family(plan: &StudyPlan, family: i32, mixing: f64) -> Result<(), SiteRefusal> {
    let l = &plan.selection.lasso;
    if GlmFamily::from_proto(family)? != l.family || mixing != l.mixing {
        return invalid(format!("a LASSO of another family or mixing than the study plan's ({:?}, α = {})", l.family, l.mixing));
    }
    Ok(())
}

fn glm_point(p: &proto::GlmPoint, max: f64) -> Result<(), SiteRefusal> {
    glm::accept_coefficients("the LASSO point", &[&[p.intercept][..], &p.coefficients].concat(), max)
}

/// A clinical variable of a task as the site's schema types describe it.
pub(crate) fn variable_spec(v: &proto::ClinicalVariable) -> Result<VariableSpec, SiteRefusal> {
    let kind = match &v.kind {
        Some(proto::clinical_variable::Kind::Categorical(c)) => VariableKind::Categorical { levels: c.levels.clone() },
        Some(proto::clinical_variable::Kind::Continuous(c)) => VariableKind::Continuous { resolution: c.resolution, unit: String::new() },
        None => return invalid(format!("variable `{}` has no kind", v.name)),
    };
    Ok(VariableSpec { name: v.name.clone(), label: String::new(), kind })
}

/// Clinical variables of a task: exactly the plan's clinical model variables.
fn clinical_variables(plan: &StudyPlan, raw: &[proto::ClinicalVariable]) -> Result<(), SiteRefusal> {
    let asked = raw.iter().map(variable_spec).collect::<Result<Vec<_>, _>>()?;
    let planned = plan.clinical_variables().map_err(SiteRefusal::InvalidParameters)?;
    let same = asked.len() == planned.len()
        && asked.iter().zip(&planned).all(|(a, b)| {
            a.name == b.name
                && match (&a.kind, &b.kind) {
                    (VariableKind::Categorical { levels: x }, VariableKind::Categorical { levels: y }) => x == y,
                    (VariableKind::Continuous { resolution: x, .. }, VariableKind::Continuous { resolution: y, .. }) => x == y,
                    _ => false,
                }
        });
    if !same {
        return invalid("the clinical variables are not the study plan's clinical model variables");
    }
    Ok(())
}

fn design(plan: &StudyPlan, d: Option<&proto::ModelDesign>) -> Result<(), SiteRefusal> {
    selection_planned(plan)?;
    let d = d.ok_or(SiteRefusal::InvalidParameters("the task has no model design".into()))?;
    // Columns in ascending order, each once: one design per set of columns, so that the
    // ledger's pins (standardiser, bin edges, random features), keyed by the design, hold for
    // the set and not for one ordering of it (a permuted design would otherwise start afresh:
    // another standardiser to sweep a grid with, another random map of the same patients).
    if let Some(f) = &d.features {
        feature_table(plan, Some(f))?;
        if !f.columns.windows(2).all(|w| w[0] < w[1]) {
            return invalid("a model design lists its feature columns in ascending order, each once");
        }
    }
    // Variables come with the columns they define, and only then: one design, one encoding
    // (the site's ledgers key pins and fits by the design).
    if d.variables.is_empty() != d.clinical_columns.is_empty() {
        return invalid("a model design lists clinical variables without clinical columns, or columns without their variables");
    }
    if !d.variables.is_empty() {
        clinical_variables(plan, &d.variables)?;
        if !d.clinical_columns.windows(2).all(|w| w[0] < w[1]) {
            return invalid("a model design lists its clinical columns in ascending order, each once");
        }
    }
    Ok(())
}

pub(crate) fn design_width(d: Option<&proto::ModelDesign>) -> usize {
    d.map_or(0, |d| d.features.as_ref().map_or(0, |f| f.columns.len()) + d.clinical_columns.len())
}

fn classifier_planned(plan: &StudyPlan, c: ClassifierKind) -> Result<(), SiteRefusal> {
    // Logistic regression is also the site-alone baselines' model.
    if c != ClassifierKind::LogisticRegression && !plan.models.classifiers.contains(&c) {
        return invalid(format!("the study plan does not fit {}", c.label()));
    }
    Ok(())
}

fn random_features(plan: &StudyPlan, rf: &proto::RandomFeatures, width: usize) -> Result<(), SiteRefusal> {
    let r = &plan.models.rbf_svm;
    let gamma = if r.gamma > 0.0 { r.gamma } else { 1.0 / width.max(1) as f64 };
    // Fewer features than the plan's are accepted: the study lowers their number until every
    // site's parameter limit admits the model (coordinator `model_size`), and each count still
    // meets this site's `max_parameter_ratio` where the round is computed.
    let asked = RandomFeatures::from_proto(rf)?;
    if !(1..=r.features).contains(&asked.count) || asked != (RandomFeatures { count: asked.count, seed: r.seed, gamma }) {
        return invalid(format!("the RBF SVM's random features are not the study plan's (the plan's seed and γ, 1 to {} features)", r.features));
    }
    Ok(())
}

fn scorer(plan: &StudyPlan, spec: &proto::ScorerSpec, width: usize) -> Result<(), SiteRefusal> {
    let s = Scorer::from_proto(spec, width)?;
    classifier_planned(plan, s.kind())?;
    if spec.random_features.is_some() && s.kind() != ClassifierKind::RbfSvm {
        // They would name an RBF SVM's fit (its run key) for a model that ignores them.
        return invalid("random features belong to an RBF SVM scorer only");
    }
    if let Some(rf) = &spec.random_features {
        random_features(plan, rf, width)?;
    }
    let (f, b) = (&plan.models.forest, &plan.models.boosting);
    let (count, depth) = match s.kind() {
        ClassifierKind::RandomForest => (f.trees as usize, f.max_depth),
        ClassifierKind::GradientBoosting => (b.rounds as usize, b.max_depth),
        _ => (0, 0),
    };
    if s.trees().len() > count || s.trees().iter().any(|t| t.depth() > depth) {
        return invalid("a tree ensemble larger or deeper than the study plan's");
    }
    site_accepts_scorer(&s, plan.limits.max_coefficient)
}

fn encoder_planned(plan: &StudyPlan) -> Result<&fedrad_shared::plan::DeepSettings, SiteRefusal> {
    let d = &plan.deep;
    if !d.enabled || d.source != DeepSource::Encoder {
        return invalid("the study plan trains no deep-feature encoder");
    }
    Ok(d)
}

fn architecture(plan: &StudyPlan, a: Option<&proto::EncoderArchitecture>) -> Result<(), SiteRefusal> {
    let want = plan.deep.architecture();
    let a = a.ok_or(SiteRefusal::InvalidParameters("the task has no encoder architecture".into()))?;
    let asked = (a.crop_pixels as usize, a.field_mm, a.channels.iter().map(|&c| c as usize).collect::<Vec<_>>(), a.embedding_dim as usize);
    if asked != (want.crop, want.field_mm, want.channels.to_vec(), want.embedding) {
        return invalid("the encoder's architecture is not the study plan's");
    }
    Ok(())
}

/// The site's own check of a task's standardiser against the spread of the rows it applies to.
pub fn standardiser(plan: &StudyPlan, std: Option<&proto::Standardiser>, rows: &[Vec<f64>], width: usize) -> Result<(), SiteRefusal> {
    let std = Standardiser::from_proto(std, width)?;
    glm::accept_standardiser(&std, &glm::column_sd(rows, width), plan.limits.max_scale_ratio)
}

/// Clinical logistic models are fitted on the raw design: each coefficient is bounded by the
/// plan's `max_coefficient` per SD of its column at this site, and the intercept by the same
/// bound at the site's column means.
pub fn clinical_models(plan: &StudyPlan, rows: &[Vec<f64>], models: &[proto::ClinicalModel]) -> Result<(), SiteRefusal> {
    let width = rows.first().map_or(0, |r| r.len());
    let sd = glm::column_sd(rows, width);
    let mean: Vec<f64> = (0..width).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len().max(1) as f64).collect();
    for m in models {
        if m.coefficients.len() != m.columns.len() + 1 || m.columns.iter().any(|&c| c as usize >= width) {
            continue; // malformed: refused by the algorithm with its own reason
        }
        let mut standardised = vec![m.coefficients[0] + m.columns.iter().zip(&m.coefficients[1..]).map(|(&c, b)| b * mean[c as usize]).sum::<f64>()];
        standardised.extend(m.columns.iter().zip(&m.coefficients[1..]).map(|(&c, b)| b * sd[c as usize]));
        // The refusal states no value: the coefficients here are the coordinator's times this
        // site's own SDs and means, so the value would state those.
        glm::accept_coefficients("the clinical model", &standardised, plan.limits.max_coefficient).map_err(|_| {
            SiteRefusal::InvalidParameters(format!(
                "the clinical model: a coefficient is beyond the study's bound of ±{} per SD of its column at this site (a steep model probes single patients)",
                plan.limits.max_coefficient
            ))
        })?;
    }
    Ok(())
}
