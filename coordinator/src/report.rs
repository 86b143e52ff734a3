//! The study report in Markdown (the HTML report comes with the models).

use fedrad_shared::algorithms::table1;

use crate::study::StudyResults;

pub fn markdown(r: &StudyResults) -> String {
    let mut s = format!("# FedRad study `{}`\n\nSeed {}, sites: {}. FedRad {}.\n\n", r.study_id, r.seed, r.sites.join(", "), r.software_version);
    s.push_str("## Cohort\n\n| Site | Loaded | Recurrence | Excluded rows |\n|---|---|---|---|\n");
    for c in &r.cohort.sites {
        let ex: Vec<String> = c.excluded.iter().map(|(k, v)| format!("{v} {}", k.as_str())).collect();
        s.push_str(&format!("| {} | {} | {} ({:.1}%) | {} |\n", c.site_id, c.loaded, c.positives, 100.0 * c.positives as f64 / c.loaded.max(1) as f64, if ex.is_empty() { "0".into() } else { ex.join(", ") }));
    }
    s.push_str(&format!("| **All** | {} | {} | {} |\n\n", r.cohort.loaded, r.cohort.positives, r.cohort.excluded));
    s.push_str("## Training / validation split\n\nStratified by site and outcome; each site ranks its patients by SHA-256(seed, patient id) and records the assignment locally.\n\n");
    s.push_str("| Site | Training (recurrence) | Validation (recurrence) |\n|---|---|---|\n");
    for (site, c) in &r.split.per_site {
        s.push_str(&format!("| {site} | {} ({}) | {} ({}) |\n", c.training(), c.training_positive, c.validation(), c.validation_positive));
    }
    let t = &r.split.total;
    s.push_str(&format!("| **All** | {} ({}) | {} ({}) |\n\n", t.training(), t.training_positive, t.validation(), t.validation_positive));
    s.push_str("## Table 1: clinical characteristics\n\n");
    s.push_str("Computed from site aggregates only. Categorical: counts per level, Pearson χ² (Fisher's exact test for a 2×2 table with an expected count below 5). Continuous: mean ± SD with Welch's t-test from merged count/mean/centred sums of squares; median [IQR] and the Mann-Whitney U test (asymptotic, tie-corrected) from count histograms on a shared grid (1 year for age, 1 copy/mL for EBV DNA), which makes them exact for values on that grid without any row leaving a site.\n\n");
    s.push_str(&table1::to_markdown(&r.table1));
    s.push_str("## Radiomic features\n\nExtracted at each site from its own images; the features stay at the site. Per sequence: cases with features, failed cases by reason, features per case.\n\n| Site | Sequence | Succeeded | Failed | Features |\n|---|---|---|---|---|\n");
    for (site, seqs) in &r.extraction.per_site {
        for (seq, o) in seqs {
            let failed: Vec<String> = o.failed.iter().map(|(k, v)| format!("{v} {k}")).collect();
            s.push_str(&format!("| {site} | {seq} | {} | {} | {} |\n", o.succeeded, if failed.is_empty() { "0".into() } else { failed.join(", ") }, o.features));
        }
    }
    s.push('\n');
    if let Some(sel) = &r.selection {
        s.push_str("## Feature selection\n\nPer sequence over the training cohort, from site aggregates only: global standardisation (constant or non-finite features dropped), univariate filter, redundancy filter (|Pearson r| above the threshold, the feature more associated with the outcome kept), then LASSO with cross-validation (folds assigned at each site, stratified by outcome). Federated equals pooled: the tests `cargo test partition` run the same algorithms on 1, 4 and 7 sites.\n\n");
        s.push_str("| Sequence | Training | Features | Dropped (constant / non-finite) | Univariate passed | Redundant dropped | LASSO candidates | λ_min | λ_1se | CV deviance | Selected |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        for q in &sel.sequences {
            s.push_str(&format!(
                "| {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |\n",
                q.sequence,
                q.training_patients,
                q.features,
                q.dropped_constant.len(),
                q.dropped_non_finite.len(),
                q.univariate_passed,
                q.redundant.len(),
                q.lasso_candidates,
                q.lambda_min.map_or("–".into(), |v| format!("{v:.4}")),
                q.lambda_1se.map_or("–".into(), |v| format!("{v:.4}")),
                q.cv_deviance_at_selected.map_or("–".into(), |v| format!("{v:.3}")),
                q.selected.len()
            ));
        }
        for q in &sel.sequences {
            s.push_str(&format!("\n### {} ({} features)\n\n", q.sequence, q.group));
            if let Some(n) = &q.note {
                s.push_str(&format!("Note: {n}\n\n"));
            }
            if !q.selected.is_empty() {
                s.push_str("| Feature | Coefficient (standardised) | Coefficient (per raw unit) |\n|---|---|---|\n");
                for f in &q.selected {
                    s.push_str(&format!("| `{}` | {:.4} | {:.4e} |\n", f.name, f.coefficient, f.coefficient_original));
                }
                s.push_str(&format!("\n![coefficient path](lasso/{0}/radiomic_path.svg) ![cross-validation](lasso/{0}/radiomic_cv.svg)\n", q.sequence));
            }
        }
        s.push('\n');
    }
    if let Some(c) = &r.clinical_model {
        s.push_str(&format!("## Clinical model\n\nLogistic regression fitted by Newton–Raphson on summed gradients and Hessians ({} training patients with complete data). Univariate screening by likelihood-ratio test; variables with p < {} enter the multivariable model.\n\n| Variable | Univariate p | Entered |\n|---|---|---|\n", c.n, c.entry_p));
        for u in &c.univariate {
            s.push_str(&format!("| {} | {:.4} | {} |\n", u.variable, u.lr_p_value, if u.entered { "yes" } else { "no" }));
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
    if !r.models.is_empty() {
        s.push_str(&main_table_markdown(r));
    }
    s.push_str("## Protocol cost\n\nRounds are round trips to every site at once. The last column estimates the step's wall time over a network with a 50 ms round trip (measured time plus 50 ms per round).\n\n| Step | Rounds | Tasks | Bytes to sites | Bytes from sites | Seconds | At 50 ms RTT (s) |\n|---|---|---|---|---|---|---|\n");
    for p in &r.protocol {
        s.push_str(&format!("| {} | {} | {} | {} | {} | {:.2} | {:.1} |\n", p.step, p.rounds, p.tasks, p.bytes_to_sites, p.bytes_from_sites, p.seconds, p.seconds + 0.05 * p.rounds as f64));
    }
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

fn sequence_label(seq: &str) -> &str {
    match seq {
        "t1c" => "T1WI+C",
        "t2" => "T2WI",
        other => other,
    }
}

/// The study's main table (like the published one): per sequence × model × classifier, AUC
/// (95% CI), accuracy, sensitivity and specificity in training and validation.
pub fn main_table_markdown(r: &StudyResults) -> String {
    let mut s = String::from("## Models\n\nModel I = selected radiomic features; Model II = Model I + deep features; Model III = Model II (here Model I) + the clinical model's variables. Fitted from site aggregates; each site scored its own patients and returned histograms of the predicted log-odds (cells 0.001 wide), from which AUC (DeLong 95% CI) and, at the Youden threshold chosen on training, accuracy, sensitivity and specificity follow. **Bold**: best validation AUC.\n\n");
    s.push_str("| Sequence | Model | Classifier | Training AUC (95% CI) | ACC | SEN | SPE | Validation AUC (95% CI) | ACC | SEN | SPE |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    let best = best(r);
    for (m, model) in r.models.iter().enumerate() {
        if model.classifiers.is_empty() {
            s.push_str(&format!("| {} | {} | – | not available: {} | | | | | | | |\n", sequence_label(&model.sequence), model.model, model.note.as_deref().unwrap_or("")));
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
    }
    s.push('\n');
    s
}
