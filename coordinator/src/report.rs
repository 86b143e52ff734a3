//! The study report in Markdown (the HTML report comes with the models).

use fedrad_shared::algorithms::table1;

use crate::study::StudyResults;

pub fn markdown(r: &StudyResults) -> String {
    let mut s = format!("# FedRad study `{}`\n\nSeed {}, sites: {}. FedRad {}.\n\n", r.study_id, r.seed, r.sites.join(", "), r.software_version);
    if !r.models.is_empty() {
        if let Some((m, c)) = best(r) {
            let (model, cl) = (&r.models[m], &r.models[m].classifiers[c]);
            s.push_str(&format!(
                "**Best model:** {} Model {} with {}: validation AUC {:.3} (95% CI {:.3}–{:.3}), {} training and {} validation patients from {} hospitals.\n\n",
                sequence_label(&model.sequence),
                model.model,
                cl.classifier.label(),
                cl.validation.auc,
                cl.validation.auc_ci.0,
                cl.validation.auc_ci.1,
                cl.training.n,
                cl.validation.n,
                r.sites.len()
            ));
        }
        s.push_str(&main_table_markdown(r));
        let baselines: Vec<_> = r.models.iter().filter(|m| !m.site_alone.is_empty()).collect();
        if !baselines.is_empty() {
            s.push_str("### Site-alone baselines\n\nModel I's logistic regression trained on one hospital's patients alone (the same objective, C = 1), validated on every hospital's validation patients; the last column is the federated model for comparison.\n\n| Sequence | Trained at | Training patients | Validation AUC (95% CI) | Federated validation AUC |\n|---|---|---|---|---|\n");
            for m in baselines {
                let fed =
                    m.classifiers.iter().find(|c| c.classifier == fedrad_shared::algorithms::classifiers::ClassifierKind::LogisticRegression).map(|c| c.validation.auc);
                for b in &m.site_alone {
                    let v = match (&b.validation, &b.note) {
                        (Some(v), _) => format!("{:.3} ({:.3}–{:.3})", v.auc, v.auc_ci.0, v.auc_ci.1),
                        (None, Some(n)) => format!("not available: {n}"),
                        (None, None) => "–".into(),
                    };
                    s.push_str(&format!(
                        "| {} | {} | {} | {v} | {} |\n",
                        sequence_label(&m.sequence),
                        b.site,
                        b.training_patients,
                        fed.map_or("–".into(), |a| format!("{a:.3}"))
                    ));
                }
            }
            s.push('\n');
        }
        s.push_str(&comparison_markdown(r));
        s.push_str(&leave_one_out_markdown(r));
        s.push_str("### Validation curves\n\nPer sequence and model: ROC curves, calibration (mean predicted vs observed recurrence per tenth of predicted risk) and decision curves (net benefit; grey: treat all), on the validation cohort.\n\n");
        for m in r.models.iter().filter(|m| !m.classifiers.is_empty()) {
            let dir = format!("models/{}/{}", m.sequence, m.model);
            s.push_str(&format!(
                "{} Model {}:\n\n![ROC]({dir}/roc.svg) ![calibration]({dir}/calibration.svg) ![decision curve]({dir}/decision.svg)\n\n",
                sequence_label(&m.sequence),
                m.model
            ));
        }
    }
    s.push_str("## Cohort\n\nExcluded manifest rows per reason come with Table 1: summed over the sites, and per hospital only where the plan and every site's policy publish per-site results.\n\n| Site | Loaded | Recurrence | Excluded rows |\n|---|---|---|---|\n");
    let excluded = |scope: Option<&table1::Table1Scope>| match scope {
        None => "not published".to_string(),
        Some(scope) if scope.excluded.is_empty() => "0".into(),
        Some(scope) => scope.excluded.iter().map(|(k, v)| format!("{v} {}", k.as_str())).collect::<Vec<_>>().join(", "),
    };
    for c in &r.cohort.sites {
        s.push_str(&format!(
            "| {} | {} | {} ({:.1}%) | {} |\n",
            c.site_id,
            c.loaded,
            c.positives,
            100.0 * c.positives as f64 / c.loaded.max(1) as f64,
            excluded(r.table1.scopes.iter().find(|t| t.scope == c.site_id))
        ));
    }
    s.push_str(&format!("| **All** | {} | {} | {} |\n\n", r.cohort.loaded, r.cohort.positives, excluded(Some(r.table1.all_sites()))));
    s.push_str("## Training / validation split\n\nStratified by site and outcome; each site ranks its patients by SHA-256(seed, patient id) and records the assignment locally.\n\n");
    s.push_str("| Site | Training (recurrence) | Validation (recurrence) |\n|---|---|---|\n");
    for (site, c) in &r.split.per_site {
        s.push_str(&format!("| {site} | {} ({}) | {} ({}) |\n", c.training(), c.training_positive, c.validation(), c.validation_positive));
    }
    let t = &r.split.total;
    s.push_str(&format!("| **All** | {} ({}) | {} ({}) |\n\n", t.training(), t.training_positive, t.validation(), t.validation_positive));
    s.push_str("## Table 1: clinical characteristics\n\n");
    s.push_str(&format!(
        "Computed from sums over the sites only{}. Categorical: counts per level, Pearson χ² (Fisher's exact test for a 2×2 table with an expected count below 5). Continuous: mean ± SD with Welch's t-test from summed n, Σx and Σx²; median [IQR] and the Mann-Whitney U test (asymptotic, tie-corrected) from count histograms on a shared grid — the variable's resolution (1 year for age, 1 copy/mL for EBV DNA) up to 10 000 steps, then cells 0.18 % wide — with cells of fewer than a site's `min_count` patients merged. {}\n\n",
        if r.protocol.iter().any(|p| p.step == "table1" && p.secure_summed_rounds > 0) { ", secure-summed" } else { "" },
        if r.table1.per_site() { "Per hospital too, as the plan and every site's policy publish per-site results." } else { "Per hospital: not published (the plan asks for no per-site results)." }
    ));
    s.push_str(&table1::to_markdown(&r.table1));
    s.push_str("## Radiomic features\n\nExtracted at each site from its own images; the features stay at the site. Per sequence: cases with features, failed cases by reason, features per case.\n\n| Site | Sequence | Succeeded | Failed | Features |\n|---|---|---|---|---|\n");
    for (site, seqs) in &r.extraction.per_site {
        for (seq, o) in seqs {
            let failed: Vec<String> = o.failed.iter().map(|(k, v)| failure_text(k, *v)).collect();
            s.push_str(&format!("| {site} | {seq} | {} | {} | {} |\n", o.succeeded, if failed.is_empty() { "0".into() } else { failed.join(", ") }, o.features));
        }
    }
    s.push('\n');
    s.push_str(&deep_markdown(r));
    if let Some(h) = &r.harmonisation {
        s.push_str(&harmonisation_markdown(h));
    }
    if let Some(sel) = &r.selection {
        s.push_str("## Feature selection\n\nPer sequence over the training cohort, from site aggregates only: global standardisation (constant or non-finite features dropped), univariate filter, redundancy filter (|Pearson r| above the threshold, the feature more associated with the outcome kept), then LASSO with cross-validation (folds assigned at each site, stratified by outcome). Federated equals pooled: the tests `cargo test partition` run the same algorithms on 1, 4 and 7 sites.\n\n");
        s.push_str(&model_size_markdown(&sel.model_size));
        s.push_str("| Sequence | Features of | Training | Features | Dropped (constant / non-finite) | Univariate passed | Redundant dropped | LASSO candidates | λ_min | λ_1se | λ used | CV deviance | Selected |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for q in &sel.sequences {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                q.sequence,
                group_label(&q.group),
                q.training_patients,
                q.features,
                q.dropped_constant.len(),
                q.dropped_non_finite.len(),
                q.univariate_passed,
                q.redundant.len(),
                q.lasso_candidates,
                q.lambda_min.map_or("–".into(), |v| format!("{v:.4}")),
                q.lambda_1se.map_or("–".into(), |v| format!("{v:.4}")),
                q.lambda_used.map_or("–".into(), |v| format!("{v:.4}")),
                q.cv_deviance_at_selected.map_or("–".into(), |v| format!("{v:.3}")),
                q.selected.len()
            ));
        }
        for q in &sel.sequences {
            s.push_str(&format!("\n### {} ({})\n\n", q.sequence, group_label(&q.group)));
            if let Some(n) = &q.note {
                s.push_str(&format!("Note: {n}\n\n"));
            }
            if let Some(n) = &q.size_note {
                s.push_str(&format!("Model size: {n}.\n\n"));
            }
            if let Some(n) = &q.path_stop {
                s.push_str(&format!("LASSO path: {n}.\n\n"));
            }
            if let Some(w) = &q.with_clinical {
                let names: Vec<String> = w.selected.iter().map(|f| format!("`{}`", f.name)).collect();
                s.push_str(&format!("{}: {}.\n\n", w.note, if names.is_empty() { "none".into() } else { names.join(", ") }));
            }
            if !q.selected.is_empty() {
                s.push_str("| Feature | Coefficient (standardised) | Coefficient (per raw unit) |\n|---|---|---|\n");
                for f in &q.selected {
                    s.push_str(&format!("| `{}` | {:.4} | {:.4e} |\n", f.name, f.coefficient, f.coefficient_original));
                }
                s.push_str(&format!("\n![coefficient path](lasso/{0}/{1}_path.svg) ![cross-validation](lasso/{0}/{1}_cv.svg)\n", q.sequence, q.group));
            }
        }
        s.push('\n');
    }
    if let Some(c) = &r.clinical_model {
        s.push_str(&format!("## Clinical model\n\nLogistic regression fitted by Newton–Raphson on summed gradients and Hessians ({} training patients with complete data). Univariate screening by likelihood-ratio test; variables with p < {} enter the multivariable model.\n\n| Variable | Univariate p | Entered |\n|---|---|---|\n", c.n, c.entry_p));
        for u in &c.univariate {
            let p = u.lr_p_value.map_or("–".into(), |p| format!("{p:.4}"));
            let entered = match (&u.note, u.entered) {
                (Some(n), _) => format!("no ({n})"),
                (None, e) => (if e { "yes" } else { "no" }).into(),
            };
            s.push_str(&format!("| {} | {p} | {entered} |\n", u.variable));
        }
        if c.multivariable.is_empty() {
            s.push_str("\nNo variable entered the multivariable model.\n\n");
        } else {
            s.push_str("\n| Term | OR | 95% CI | p |\n|---|---|---|---|\n");
            for t in &c.multivariable {
                s.push_str(&format!("| {} | {:.3} | {:.3}–{:.3} | {:.4} |\n", t.term, t.odds_ratio, t.ci_low, t.ci_high, t.p_value));
            }
            s.push('\n');
        }
    }
    s.push_str(&per_site_auc_markdown(r));
    s.push_str(&secure_aggregation_markdown(r));
    s.push_str("## Protocol cost\n\nRounds are round trips to every site at once. The last column estimates the step's wall time over a network with a 50 ms round trip (measured time plus 50 ms per round).\n\n| Step | Rounds | Secure-summed rounds | Tasks | Bytes to sites | Bytes from sites | Seconds | At 50 ms RTT (s) |\n|---|---|---|---|---|---|---|---|\n");
    for p in &r.protocol {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.1} |\n",
            p.step,
            p.rounds,
            p.secure_summed_rounds,
            p.tasks,
            p.bytes_to_sites,
            p.bytes_from_sites,
            p.seconds,
            p.seconds + 0.05 * p.rounds as f64
        ));
    }
    s
}

/// Which aggregates the coordinator saw per site and which only as sums over all sites.
fn harmonisation_markdown(h: &crate::harmonisation::Harmonisation) -> String {
    let prior = match h.settings.prior {
        fedrad_shared::algorithms::combat::Prior::Parametric => "parametric empirical Bayes",
        fedrad_shared::algorithms::combat::Prior::NonParametric => "non-parametric empirical Bayes",
        fedrad_shared::algorithms::combat::Prior::None => "no empirical Bayes",
    };
    let mut s = format!(
        "## Harmonisation (ComBat)\n\nSite effects removed from every feature before selection by ComBat ({prior}{}), protecting {}: d-ComBat, equal to neuroCombat on the pooled training rows. The coordinator computed the pooled regression from sums over sites (no site's own means); each site then estimated and removed its own location and scale, which never left it, and harmonised its validation patients with the training mean of the covariate term (as `neuroCombatFromTraining`, so no validation outcome is used). A feature with a non-finite or constant training column passes through unchanged. Site effect: one-way ANOVA over the sites on the training patients, p < {}.\n\n| Sequence | Features of | Training patients | Features | Harmonised | Site effect before | Site effect after |\n|---|---|---|---|---|---|---|\n",
        if h.settings.mean_only { ", location only" } else { "" },
        h.settings.covariates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
        crate::harmonisation::SITE_EFFECT_ALPHA,
    );
    let share = |e: &fedrad_shared::algorithms::combat::SiteEffectShare| {
        if e.tested == 0 { "–".to_string() } else { format!("{} of {} ({:.0}%)", e.significant, e.tested, 100.0 * e.significant as f64 / e.tested as f64) }
    };
    for t in &h.tables {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            sequence_label(&t.sequence),
            if t.deep { "deep" } else { "radiomic" },
            t.estimation_patients,
            t.features,
            t.harmonised,
            share(&t.site_effect_before),
            share(&t.site_effect_after)
        ));
    }
    s.push('\n');
    s
}

/// `count` failures of `reason`, or of reasons the sites do not publish.
fn failure_text(reason: &str, count: u64) -> String {
    if reason == fedrad_shared::algorithms::extraction::REASON_NOT_PUBLISHED {
        format!("{count} (reasons published only with per-site results)")
    } else {
        format!("{count} {reason}")
    }
}

fn secure_aggregation_markdown(r: &StudyResults) -> String {
    let secure: u64 = r.protocol.iter().map(|p| p.secure_summed_rounds).sum();
    let per_site_auc = r.models.iter().any(|m| m.classifiers.iter().any(|c| !c.per_site_auc.is_empty()));
    if secure == 0 {
        return "## Secure aggregation\n\nOff: the coordinator saw every site's aggregates (the results are the same with it on).\n\n".into();
    }
    let mut published = Vec::new();
    if per_site_auc {
        published.push("each model's score histograms per site (its AUC at each hospital, below), which the plan and every site's policy opted in to publish");
    }
    if r.table1.per_site() {
        published.push("Table 1 per hospital with its excluded rows per reason, which the plan and every site's policy opted in to publish");
    }
    if r.models.iter().any(|m| m.site_alone.iter().any(|b| b.validation.is_some())) {
        published.push("the site-alone baselines, which the plan opted in to publish");
    }
    format!(
        "## Secure aggregation\n\nOn: in {secure} rounds (feature and design moments, the correlation for the redundancy filter, ComBat's sums when the study harmonises, the clinical model's logistic rounds, LASSO and cross-validation losses, logistic and SVM fitting rounds, tree histograms and the trees' value histograms, Mann–Whitney rank histograms, the models' score histograms for validation, cross-validation and both DeLong rounds, the encoder's FedAvg rounds, Table 1 with the excluded rows per reason) each site masked its answer with pairwise masks agreed with every other site, so the coordinator learnt only the sum over all {} sites. Read per site, as published below, because the study plans with them: cohort counts (loaded, recurrences), split and fold counts, extraction counts, embedding counts{}.\n\n",
        r.sites.len(),
        if published.is_empty() { String::new() } else { format!("; and by choice {}", published.join("; ")) }
    )
}

/// Each model's validation AUC per hospital, when the study published per-site results: the
/// best classifier of each model (by pooled validation AUC).
fn per_site_auc_markdown(r: &StudyResults) -> String {
    let rows: Vec<(String, &crate::models::ClassifierResult)> = r
        .models
        .iter()
        .filter_map(|m| {
            let best = m.classifiers.iter().filter(|c| !c.per_site_auc.is_empty()).fold(None::<&crate::models::ClassifierResult>, |b, c| match b {
                Some(b) if b.validation.auc >= c.validation.auc => Some(b),
                _ => Some(c),
            })?;
            Some((format!("{} Model {}, {}", sequence_label(&m.sequence), m.model, best.classifier.label()), best))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "## Validation AUC per hospital\n\nPublished by choice: the plan asks for per-site results and every site's policy allows them (with secure aggregation, the score histograms are otherwise summed over the sites and no hospital's AUC is computed). Each model's best classifier; training AUC in brackets.\n\n| Model | {} |\n|---|{}\n",
        r.sites.join(" | "),
        "---|".repeat(r.sites.len())
    );
    for (label, c) in rows {
        let cells: Vec<String> = r.sites.iter().map(|site| c.per_site_auc.get(site).map_or("–".into(), |(t, v)| format!("{v:.3} ({t:.3})"))).collect();
        s.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    s.push('\n');
    s
}

/// The best model: highest validation AUC (ties: first in table order).
pub fn best(r: &StudyResults) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize, f64)> = None;
    for (m, model) in r.models.iter().enumerate() {
        for (c, cl) in model.classifiers.iter().enumerate() {
            if best.is_none_or(|b| cl.validation.auc > b.2) {
                best = Some((m, c, cl.validation.auc));
            }
        }
    }
    best.map(|b| (b.0, b.1))
}

/// Leave-one-hospital-out validation ([`crate::held_out`]), when the study ran it.
fn leave_one_out_markdown(r: &StudyResults) -> String {
    let Some(l) = &r.leave_one_hospital_out else { return String::new() };
    let mut s = String::from(
        "## Leave-one-hospital-out validation\n\nFor each hospital, feature selection and every model again on the other hospitals' training patients (the same split and folds), validated on every patient of the left-out hospital (both cohorts) at the threshold chosen on the others' training patients. The left-out hospital scored only models that every fitting hospital had scored and signed for. Pooled: every patient scored by the model fitted without its hospital (AUC of the pooled scores; accuracy, sensitivity and specificity at each model's own threshold). The deep encoder is the study's: it saw every hospital's images, without outcomes. Per-site results: a study's sums minus those of the analysis without a hospital are that hospital's own aggregates, which every hospital allowed (policy.leave_one_hospital_out).\n\n",
    );
    let sites: Vec<&str> = l.hospitals.iter().map(|h| h.site.as_str()).collect();
    if !l.pooled.is_empty() {
        s.push_str(&format!(
            "| Sequence | Model | Classifier | {} | Mean AUC | Pooled AUC (95% CI) | ACC | SEN | SPE |\n|---|---|---|{}---|---|---|---|---|\n",
            sites.join(" | "),
            "---|".repeat(sites.len())
        ));
        for p in &l.pooled {
            let per: Vec<String> = sites.iter().map(|h| p.per_hospital_auc.get(*h).map_or("–".into(), |a| format!("{a:.3}"))).collect();
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.3} | {:.3} ({:.3}–{:.3}) | {:.3} | {:.3} | {:.3} |\n",
                sequence_label(&p.sequence),
                p.model,
                p.classifier.label(),
                per.join(" | "),
                p.mean_auc,
                p.pooled_auc,
                p.pooled_auc_ci.0,
                p.pooled_auc_ci.1,
                p.accuracy,
                p.sensitivity,
                p.specificity
            ));
        }
        s.push('\n');
    }
    for h in &l.hospitals {
        if let Some(n) = &h.note {
            s.push_str(&format!("Without {}: not completed: {n}\n\n", h.site));
        }
        for m in &h.models {
            for nf in &m.not_fitted {
                s.push_str(&format!("Without {}: {} Model {} {} not fitted: {}\n\n", h.site, sequence_label(&m.sequence), m.model, nf.classifier.label(), nf.reason));
            }
        }
    }
    s
}

pub(crate) fn sequence_label(seq: &str) -> &str {
    match seq {
        "t1c" => "T1WI+C",
        "t2" => "T2WI",
        fedrad_shared::algorithms::extraction::BOTH_SEQUENCES => "T1WI+C & T2WI",
        other => other,
    }
}

/// DeLong's paired tests between models on the same validation patients.
fn comparison_markdown(r: &StudyResults) -> String {
    let Some(c) = &r.comparison else {
        return match &r.comparison_note {
            Some(n) => format!("### Comparing models (DeLong)\n\nNot available: {n}\n\n"),
            None => String::new(),
        };
    };
    let mut s = format!(
        "### Comparing models (DeLong)\n\nPaired DeLong tests on the {} validation patients ({} with recurrence) that every model can score: each site placed its own patients' scores against the merged score distributions and returned only sums of placements and their products. Two-sided p, not adjusted for multiple comparisons.\n\n",
        c.validation_negatives + c.validation_positives,
        c.validation_positives
    );
    let table = |title: &str, rows: &[crate::comparison::PairedComparison]| {
        let mut t = format!("**{title}**\n\n| A | B | AUC A | AUC B | Δ AUC (95% CI) | p |\n|---|---|---|---|---|---|\n");
        for row in rows {
            t.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:+.3} ({:+.3} to {:+.3}) | {} |\n",
                row.a,
                row.b,
                row.auc_a,
                row.auc_b,
                row.test.difference,
                row.test.ci.0,
                row.test.ci.1,
                if row.test.p_value < 0.001 { "< 0.001".to_string() } else { format!("{:.3}", row.test.p_value) }
            ));
        }
        t.push('\n');
        t
    };
    if !c.deep_added.is_empty() {
        s.push_str(&table("Do the deep features add? Model II vs Model I", &c.deep_added));
    }
    if !c.clinical_added.is_empty() {
        s.push_str(&table("Does the clinical model add? Model III vs Model II (Model I where a sequence has no deep features)", &c.clinical_added));
    }
    s.push_str(&table("The best model against each other model", &c.best_versus_others));
    s
}

/// The study's main table (like the published one): per sequence × model × classifier, AUC
/// (95% CI), accuracy, sensitivity and specificity in training and validation.
pub fn main_table_markdown(r: &StudyResults) -> String {
    let mut s = String::from(
        "## Models\n\nModel I = radiomic features selected by LASSO; Model II = radiomic and deep features selected together by LASSO; Model III = Model II's features + the clinical model's variables (Model I's where a sequence has no deep features). Fitted from site aggregates; each site scored its own patients and returned histograms of the predicted log-odds (cells 0.0001 wide), from which AUC (DeLong 95% CI) and, at the Youden threshold chosen on training, accuracy, sensitivity and specificity follow. **Bold**: best validation AUC.\n\n",
    );
    s.push_str("| Sequence | Model | Classifier | Training AUC (95% CI) | ACC | SEN | SPE | Validation AUC (95% CI) | ACC | SEN | SPE |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    let best = best(r);
    for (m, model) in r.models.iter().enumerate() {
        if model.classifiers.is_empty() {
            s.push_str(&format!(
                "| {} | {} | – | not available: {} | | | | | | | |\n",
                sequence_label(&model.sequence),
                model.model,
                model.note.as_deref().unwrap_or("")
            ));
            continue;
        }
        for (c, cl) in model.classifiers.iter().enumerate() {
            let b = if best == Some((m, c)) { "**" } else { "" };
            let (t, v) = (&cl.training, &cl.validation);
            s.push_str(&format!(
                "| {} | {} | {} | {:.3} ({:.3}–{:.3}) | {:.3} | {:.3} | {:.3} | {b}{:.3} ({:.3}–{:.3}){b} | {:.3} | {:.3} | {:.3} |\n",
                sequence_label(&model.sequence),
                model.model,
                cl.classifier.label(),
                t.auc,
                t.auc_ci.0,
                t.auc_ci.1,
                t.accuracy,
                t.sensitivity,
                t.specificity,
                v.auc,
                v.auc_ci.0,
                v.auc_ci.1,
                v.accuracy,
                v.sensitivity,
                v.specificity
            ));
        }
        for n in &model.not_fitted {
            s.push_str(&format!("| {} | {} | {} | not fitted: {} | | | | | | | |\n", sequence_label(&model.sequence), model.model, n.classifier.label(), n.reason));
        }
    }
    s.push('\n');
    let notes: Vec<String> = r
        .models
        .iter()
        .flat_map(|m| {
            m.classifiers
                .iter()
                .filter_map(move |c| c.note.as_ref().map(|n| format!("- {} Model {}, {}: {n}\n", sequence_label(&m.sequence), m.model, c.classifier.label())))
        })
        .collect();
    if !notes.is_empty() {
        s.push_str("How the classifiers were built (random Fourier features of the RBF SVM; trees grown level by level from per-node histograms over shared quantile bins, a node kept as a leaf when a site holds between 1 and its `min_count` − 1 of the node's patients; C chosen by cross-validation when searched):\n\n");
        s.push_str(&notes.concat());
        s.push('\n');
    }
    s
}

/// Writes `report.md`, the validation figures, `models.csv` and the self-contained
/// `report.html` into the study's output folder.
pub fn write_all(r: &StudyResults, settings_json: &str, out: &std::path::Path) -> std::io::Result<()> {
    use crate::svg::{Chart, Series, palette, render};
    for m in r.models.iter().filter(|m| !m.classifiers.is_empty()) {
        let dir = out.join("models").join(&m.sequence).join(&m.model);
        std::fs::create_dir_all(&dir)?;
        let title = |what: &str| format!("{what}, {} Model {} (validation)", sequence_label(&m.sequence), m.model);
        let series = |f: &dyn Fn(&crate::models::ClassifierResult) -> Vec<(f64, f64)>| -> Vec<Series> {
            m.classifiers
                .iter()
                .enumerate()
                .map(|(k, c)| Series { points: f(c), color: palette(k), label: Some(format!("{} ({:.3})", c.classifier.label(), c.validation.auc)), error: None })
                .collect()
        };
        let roc = Chart {
            title: &title("ROC"),
            x_label: "1 − specificity",
            y_label: "sensitivity",
            series: series(&|c| c.validation.roc.clone()),
            markers: vec![],
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.0)),
            diagonal: true,
        };
        std::fs::write(dir.join("roc.svg"), render(&roc))?;
        let mut cal = series(&|c| c.validation.calibration.iter().map(|b| (b.0, b.1)).collect());
        for s in &mut cal {
            s.label = s.label.as_ref().map(|l| l.split(" (").next().unwrap_or(l).to_string());
        }
        let calibration = Chart {
            title: &title("Calibration"),
            x_label: "mean predicted risk",
            y_label: "observed recurrence",
            series: cal,
            markers: vec![],
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.0)),
            diagonal: true,
        };
        std::fs::write(dir.join("calibration.svg"), render(&calibration))?;
        let mut dc = series(&|c| c.validation.decision_curve.iter().filter(|d| d.0 <= 0.8).map(|d| (d.0, d.1)).collect());
        for s in &mut dc {
            s.label = s.label.as_ref().map(|l| l.split(" (").next().unwrap_or(l).to_string());
        }
        if let Some(first) = m.classifiers.first() {
            dc.push(Series {
                points: first.validation.decision_curve.iter().filter(|d| d.0 <= 0.8).map(|d| (d.0, d.2)).collect(),
                color: "#999999".into(),
                label: Some("treat all".into()),
                error: None,
            });
        }
        let top = m.classifiers.first().map_or(0.5, |c| c.validation.positives as f64 / c.validation.n.max(1) as f64);
        let decision = Chart {
            title: &title("Decision curve"),
            x_label: "threshold probability",
            y_label: "net benefit",
            series: dc,
            markers: vec![],
            x_range: Some((0.0, 0.8)),
            y_range: Some((-0.05, top + 0.02)),
            diagonal: false,
        };
        std::fs::write(dir.join("decision.svg"), render(&decision))?;
    }
    for d in r.deep.iter().filter(|d| !d.rounds.is_empty()) {
        let dir = out.join("deep").join(&d.sequence);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("loss.svg"), deep_loss_chart(d))?;
    }
    let mut md = markdown(r);
    md.push_str(&format!("\n## Settings\n\nThe study file as the coordinator read it (FedRad {}):\n\n```\n{settings_json}\n```\n", r.software_version));
    std::fs::write(out.join("report.md"), &md)?;
    std::fs::write(out.join("report.html"), crate::html::render(&md, &format!("FedRad study {}", r.study_id), out))?;
    let mut csv = String::from("sequence,model,classifier,cohort,n,positives,auc,auc_ci_low,auc_ci_high,threshold,accuracy,sensitivity,specificity,brier\n");
    for m in &r.models {
        for c in &m.classifiers {
            for (cohort, x) in [("training", &c.training), ("validation", &c.validation)] {
                csv.push_str(&format!(
                    "{},{},{},{cohort},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}\n",
                    m.sequence,
                    m.model,
                    serde_json::to_value(c.classifier).unwrap().as_str().unwrap(),
                    x.n,
                    x.positives,
                    x.auc,
                    x.auc_ci.0,
                    x.auc_ci.1,
                    x.threshold,
                    x.accuracy,
                    x.sensitivity,
                    x.specificity,
                    x.brier
                ));
            }
        }
    }
    std::fs::write(out.join("models.csv"), csv)
}

/// The folds and model size every site accepts, and the site that set each
/// (`crate::model_size`).
fn model_size_markdown(m: &crate::model_size::ModelSize) -> String {
    let mut s = String::from(
        "### Model size every site accepts\n\nEach site refuses a cross-validation fold of fewer than its `min_count` patients and a logistic or SVM model with more parameters than its `max_parameter_ratio` × the patients it is fitted on. From the policies the sites published and their training counts the study took ",
    );
    match &m.folds_limited_by {
        Some(site) => s.push_str(&format!("{} folds (the plan allows {}; site {site}'s folds would fall below its `min_count` at more)", m.folds, m.folds_planned)),
        None => s.push_str(&format!("the plan's {} folds", m.folds)),
    }
    s.push_str(&format!(
        ", and at most {} parameters, intercept included (site {}; {} with clinical terms, whose patients need complete clinical data: site {}). Where the λ that cross-validation chose keeps more features than that, the selection below moves to the first larger λ on the path whose model fits, and says so; the RBF SVM keeps at most {} random features. The same limit holds for every LASSO point (its Hessian block and its model) over the patients of the fits without one fold: at most {} parameters (site {}), so the LASSO keeps each fit's column set within {} columns and its λ path ends where a solution needs more.\n\n| Site | Training | Possibly without features | Possibly without a clinical value | `min_count` | Most folds | `max_parameter_ratio` | Fitted on | Most parameters (with clinical terms) | LASSO fits on | Most LASSO parameters |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        m.max_parameters,
        m.parameters_limited_by,
        m.max_parameters_with_clinical,
        m.clinical_limited_by,
        m.max_parameters.saturating_sub(1),
        m.max_lasso_parameters,
        m.lasso_limited_by,
        m.lasso_block_columns()
    ));
    for l in &m.per_site {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} |\n",
            l.site,
            l.training,
            l.missing,
            l.clinical_missing,
            l.min_count,
            l.max_folds,
            l.max_parameter_ratio,
            l.fit_patients,
            l.max_parameters,
            l.max_parameters_with_clinical,
            l.lasso_fit_patients,
            l.max_lasso_parameters
        ));
    }
    s.push('\n');
    s
}

fn group_label(group: &str) -> &str {
    match group {
        "radiomic" => "radiomic",
        "combined" => "radiomic + deep",
        other => other,
    }
}

/// The deep-features section: the encoder, its federated training (loss per round, overall
/// and per site) and the embedding counts.
fn deep_markdown(r: &StudyResults) -> String {
    if r.deep.is_empty() && r.deep_notes.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "## Deep features\n\nA convolutional encoder over a 2.5D tumour crop (the slice with the largest tumour area and its two neighbours), trained without outcome labels as a masked autoencoder on the training cohort only, by federated averaging: each round every site trained the global weights on its own patients and returned its weights and patient count; the coordinator averaged them by count. Every site then embedded all its patients (training and validation) with the final weights and stored the embedding beside its radiomic features; only counts left. The weights are an aggregate over each site's training patients, but networks can memorise: treat them as sensitive.\n\n",
    );
    for (seq, note) in &r.deep_notes {
        s.push_str(&format!("- {}: no deep features: {note}\n", sequence_label(seq)));
    }
    if !r.deep_notes.is_empty() {
        s.push('\n');
    }
    for d in &r.deep {
        let failures = if d.failed.is_empty() {
            String::new()
        } else {
            format!(" ({} without a crop: {})", d.failed.values().sum::<u64>(), d.failed.iter().map(|(k, v)| failure_text(k, *v)).collect::<Vec<_>>().join(", "))
        };
        let (Some(a), Some(t), Some(parameters)) = (&d.architecture, &d.training, d.parameters) else {
            if let Some(n) = &d.network {
                s.push_str(&format!(
                    "### {} network\n\nStudy-supplied ONNX network `{}` (SHA-256 `{}`, checked by every site before running it): input {} channel(s) of {}×{} pixels over {} mm, intensities `{}`; {} deep features per patient. Embedded {} patients{failures}.\n\n",
                    sequence_label(&d.sequence),
                    n.file,
                    d.weights_sha256,
                    n.channels,
                    n.input_size,
                    n.input_size,
                    n.field_mm,
                    n.intensity,
                    d.dimension,
                    d.embedded,
                ));
            }
            continue;
        };
        let first = d.rounds.first().map_or(f64::NAN, |x| x.loss_at_start);
        let last = d.rounds.last().map_or(f64::NAN, |x| x.loss_at_start);
        s.push_str(&format!(
            "### {} encoder\n\n{}×{} pixels over {} mm, channels {:?}, {} deep features, {} parameters. {} rounds × {} local epoch(s), batch {}, learning rate {}, momentum {}, FedProx μ {}, {}% of patches masked. Weights SHA-256 `{}`. Embedded {} patients{failures}. Reconstruction loss of the global weights: {:.4} before round 1, {:.4} before round {}.\n\n",
            sequence_label(&d.sequence),
            a.crop,
            a.crop,
            a.field_mm,
            a.channels,
            a.embedding,
            parameters,
            d.rounds.len(),
            t.epochs,
            if t.batch_size == 0 { "full".to_string() } else { t.batch_size.to_string() },
            t.learning_rate,
            t.momentum,
            t.proximal_mu,
            t.mask_fraction * 100.0,
            d.weights_sha256,
            d.embedded,
            first,
            last,
            d.rounds.len(),
        ));
        s.push_str(&format!("![encoder loss](deep/{}/loss.svg)\n\n", d.sequence));
        // Only the sums over sites: each site's weights and losses reach the coordinator
        // multiplied by its count and added up (secure-summed when the plan says so).
        s.push_str("| Round | Patients | Loss at start | Mean training loss |\n|---|---|---|---|\n");
        for x in &d.rounds {
            s.push_str(&format!("| {} | {} | {:.4} | {:.4} |\n", x.round, x.patients, x.loss_at_start, x.mean_training_loss));
        }
        s.push('\n');
    }
    s
}

/// The encoder's loss per round, over all sites.
fn deep_loss_chart(d: &crate::deep::DeepResult) -> String {
    use crate::svg::{Chart, Series, render};
    let series = vec![Series {
        points: d.rounds.iter().map(|x| (x.round as f64, x.loss_at_start)).collect(),
        color: "#000000".into(),
        label: Some("all sites".into()),
        error: None,
    }];
    let title = format!("Encoder training, {}", sequence_label(&d.sequence));
    render(&Chart {
        title: &title,
        x_label: "round",
        y_label: "reconstruction loss (global weights)",
        series,
        markers: vec![],
        x_range: None,
        y_range: None,
        diagonal: false,
    })
}
