//! ComBat across four site agents over mutual TLS: every site's harmonised table equals
//! neuroCombat's computation (FedRad's pooled reference, itself checked against neuroCombat's
//! output in `fedrad-shared`) on the pooled rows of all sites' files, and the study then
//! selects and fits on the harmonised features.

use std::collections::BTreeMap;

use coordinator::study::{Quiet, StudyRunner};
use fedrad_shared::algorithms::combat::{self, CombatSettings, Prior};
use fedrad_shared::clinical::npc_dictionary;
use fedrad_tests::*;

type Rows = BTreeMap<String, Vec<f64>>;

fn read_csv(path: &std::path::Path) -> (Vec<String>, Rows) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let names = lines.next().unwrap().split(',').skip(1).map(str::to_string).collect();
    let rows = lines
        .map(|l| {
            let mut cells = l.split(',');
            let id = cells.next().unwrap().to_string();
            (id, cells.map(|c| c.parse::<f64>().unwrap()).collect())
        })
        .collect();
    (names, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn combat_at_the_sites_equals_combat_on_the_pooled_rows_and_the_study_runs_on_its_values() {
    let dir = TempDir::new("combat");
    let seed = 17;
    let cohort = small_cohort(&dir.path().join("cohort"), 120, seed);
    // An arithmetic test on a small cohort (as the main federation test): the smallest site
    // validates a handful of patients.
    let Federation { server, agents, sites } = start_federation(dir.path(), &cohort, |_, cfg| {
        cfg.policy.min_count = 1;
        cfg.policy.max_parameter_ratio = 1.0;
    })
    .await;
    let out = dir.path().join("study");
    let mut study = study_config("combat-test", &out, sites.clone(), seed);
    study.selection.lasso.folds = 5;
    study.clinical_model.enabled = false;
    study.models.classifiers = vec![fedrad_shared::algorithms::classifiers::ClassifierKind::LogisticRegression];
    // Age and sex protected: a categorical covariate too.
    let settings = CombatSettings { enabled: true, prior: Prior::Parametric, mean_only: false, covariates: vec!["outcome".into(), "age".into(), "sex".into()] };
    study.combat = settings.clone();
    approve_study(&agents, &mut study);
    let results = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.expect("the study runs");

    let steps: Vec<&str> = results.protocol.iter().map(|p| p.step.as_str()).collect();
    let first_combat = steps.iter().position(|s| *s == "combat_t1c").expect("a ComBat step");
    assert!(first_combat < steps.iter().position(|s| *s == "folds").unwrap(), "ComBat comes before selection: {steps:?}");
    let h = results.harmonisation.as_ref().expect("harmonisation in the results");
    let tables: Vec<(&str, bool)> = h.tables.iter().map(|t| (t.sequence.as_str(), t.deep)).collect();
    assert_eq!(tables, [("t1c", false), ("t1c", true), ("t2", false), ("t2", true)]);

    // The pooled reference from the files: every site's extracted rows, its recorded split,
    // and the manifests' clinical values.
    let records: BTreeMap<String, (usize, fedrad_shared::clinical::PatientRecord)> =
        pooled_records(&cohort).into_iter().map(|(site, r)| (r.patient_id.clone(), (sites.iter().position(|s| *s == site).unwrap(), r))).collect();
    let covariates = settings.resolve(&npc_dictionary()).unwrap();
    let study_dir = |site: &str| dir.path().join("work").join(site).join("studies/combat-test");
    let mut training = BTreeMap::new();
    for site in &sites {
        for line in std::fs::read_to_string(study_dir(site).join("split.csv")).unwrap().lines().skip(1) {
            let (id, role) = line.split_once(',').unwrap();
            training.insert(id.to_string(), role == "training");
        }
    }
    for t in &h.tables {
        let part = if t.deep { ".deep" } else { "" };
        let (mut y, mut site, mut x, mut estimation, mut harmonised) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in &sites {
            let (_, raw) = read_csv(&study_dir(s).join(format!("features/{}{part}.csv", t.sequence)));
            let (_, adjusted) = read_csv(&study_dir(s).join(format!("features/{}{part}.harmonised.csv", t.sequence)));
            assert_eq!(raw.len(), adjusted.len());
            for (id, row) in raw {
                let (k, record) = &records[&id];
                let covariate_row = combat::covariate_row(record, &covariates);
                estimation.push(training[&id] && covariate_row.is_some());
                x.push(covariate_row.unwrap_or_else(|| vec![0.0; combat::covariate_columns(&covariates)]));
                y.push(row);
                site.push(*k);
                harmonised.push(adjusted[&id].clone());
            }
        }
        let (reference, est, _) = combat::pooled(&y, &site, &x, &estimation, &settings);
        assert_eq!(est.harmonised.len(), t.harmonised, "{} {part}", t.sequence);
        assert_eq!(estimation.iter().filter(|e| **e).count() as u64, t.estimation_patients);
        for (i, (a, b)) in harmonised.iter().zip(&reference).enumerate() {
            for (j, (va, vb)) in a.iter().zip(b).enumerate() {
                assert!(
                    va == vb || (va.is_nan() && vb.is_nan()) || (va - vb).abs() <= 1e-9 * vb.abs().max(1.0),
                    "{}{part} row {i} feature {j}: site {va} vs pooled {vb}",
                    t.sequence
                );
            }
        }
        assert!(t.site_effect_after.significant <= t.site_effect_before.significant, "{t:?}");
    }
    // The radiomic tables have site effects (scanners differ by hospital) that ComBat removes.
    let t2 = &h.tables[2];
    assert!(t2.site_effect_before.significant > 0 && t2.site_effect_after.significant * 4 < t2.site_effect_before.significant.max(1), "{t2:?}");
    // Each site kept, for its data-protection officer, what it received and what it did.
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(study_dir(&sites[0]).join("harmonisation/t2.json")).unwrap()).unwrap();
    assert_eq!(record["adjustment"]["gamma_star"].as_array().unwrap().len(), t2.harmonised);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Harmonisation (ComBat)"), "report");
    assert!(!results.models.is_empty() && results.models.iter().any(|m| !m.classifiers.is_empty()), "models fitted on the harmonised features");
    drop(agents);
    server.stop().await;
}
