//! A coordinator and four site agents over mutual TLS on loopback: the study's numbers must
//! equal the same numbers computed directly from the generated files.

use coordinator::study::{Quiet, StudyError, StudyRunner};
use fedrad_shared::algorithms::classifiers::ClassifierKind;
use fedrad_shared::algorithms::{split, table1};
use fedrad_shared::clinical::npc_dictionary;
use fedrad_shared::pki::StudyPki;
use fedrad_shared::tls::TlsFiles;
use fedrad_tests::*;

/// Compares two JSON trees; numbers must agree to `tol` relative.
fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value, tol: f64, path: &str) {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= tol * x.abs().max(y.abs()).max(1.0), "{path}: {x} vs {y}");
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths differ");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_json_close(p, q, tol, &format!("{path}[{i}]"));
            }
        }
        (Object(x), Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{path}: keys differ");
            for (k, v) in x {
                assert_json_close(v, &y[k], tol, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_sites_over_mtls_give_the_pooled_split_table1_selection_and_models() {
    let dir = TempDir::new("federation");
    let seed = 11;
    let cohort = small_cohort(&dir.path().join("cohort"), 120, seed);
    let sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
    let pki = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "test", &["localhost".into()], &sites).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let mut agents = Vec::new();
    for (site, manifest) in &cohort.manifests {
        let work = dir.path().join("work").join(site);
        let mut cfg = site_config(site, server.addr.port(), manifest, &work, TlsFiles::bundle(&pki.site_bundle(site)));
        // An arithmetic test on a small cohort: the smallest site validates ~6 patients, so
        // per-class score histograms need the floor of the policy (refusals are tested below).
        cfg.policy.min_count = 1;
        cfg.policy.max_parameter_ratio = 1.0;
        agents.push(start_agent(cfg).await);
    }
    let out = dir.path().join("study");
    let mut study = study_config("federation-test", &out, sites.clone(), seed);
    // 84 training patients over four sites (the smallest has ~15): 5 folds of 3 at least.
    study.selection.lasso.folds = 5;
    study.clinical_model.variables = Some(vec!["age".into(), "sex".into(), "overall_stage".into()]);
    // C of logistic regression and the SVMs chosen by cross-validated AUC (checked below).
    study.models.search = coordinator::config::SearchSettings { enabled: true, c: vec![0.1, 10.0] };
    // Both sequences together too: the `t1c+t2` tables go through the same pooled checks.
    study.selection.both_sequences = true;
    let deep_settings = study.deep.clone();
    approve_study(&agents, &mut study);
    let results = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.expect("study runs");
    check_deep_features(&dir, &cohort, &results, &deep_settings, seed);

    // Pooled reference straight from the files.
    let patients = pooled_records(&cohort);
    assert_eq!(results.cohort.loaded, patients.len() as u64);
    assert_eq!(results.cohort.positives, patients.iter().filter(|p| p.1.outcome).count() as u64);
    let (roles, pooled_split) = split::pooled(&patients, seed, 0.7);
    assert_eq!(results.split, pooled_split);
    assert_eq!(results.split.total.training(), (0.7 * 120.0f64).floor() as u64);

    // Each site recorded, locally, the same assignment as the pooled reference.
    for (site, _) in &cohort.manifests {
        let recorded = std::fs::read_to_string(dir.path().join("work").join(site).join("studies/federation-test/split.csv")).unwrap();
        for line in recorded.lines().skip(1) {
            let (id, role) = line.split_once(',').unwrap();
            let i = patients.iter().position(|p| p.1.patient_id == id).unwrap();
            assert_eq!(role, roles[i].as_str(), "{id}");
        }
    }

    let with_roles: Vec<_> = patients.clone().into_iter().zip(roles.clone()).map(|((s, r), role)| (s, r, role)).collect();
    // The plan publishes no per-site results: Table 1 over all sites only, summed under the
    // masks (the synthetic manifests exclude no row).
    let pooled_table = table1::pooled(&with_roles, &npc_dictionary(), &Default::default(), false);
    assert!(!results.table1.per_site());
    assert_json_close(&serde_json::to_value(&results.table1).unwrap(), &serde_json::to_value(&pooled_table).unwrap(), 1e-9, "table1");

    for f in ["results.json", "cohort_summary.json", "split.json", "table1.json", "table1.md", "report.md", "extraction.json"] {
        assert!(out.join(f).is_file(), "{f} not written");
    }
    let steps: Vec<&str> = results.protocol.iter().map(|p| p.step.as_str()).collect();
    // The clinical model comes before the folds: its terms count towards Model III's size.
    assert_eq!(steps[..10], ["cohort_summary", "split", "table1", "extract_features", "deep.t1c", "embed.t1c", "deep.t2", "embed.t2", "clinical_model", "folds"]);
    assert!(
        steps.contains(&"lasso.t2.radiomic") && steps.contains(&"clinical_model") && steps.contains(&"models.t2.III") && steps.last() == Some(&"compare_models"),
        "{steps:?}"
    );
    for f in [
        "selection.json",
        "clinical_model.json",
        "model_comparison.json",
        "lasso/t2/radiomic.json",
        "lasso/t2/radiomic_path.svg",
        "lasso/t1c/radiomic_cv.svg",
        "lasso/t2/combined.json",
        "deep/t2/training.json",
        "deep/t1c/loss.svg",
        "deep/t1c/checkpoint.json",
        "lasso/t1c+t2/radiomic.json",
        "lasso/t1c+t2/combined.json",
    ] {
        assert!(out.join(f).is_file(), "{f} not written");
    }
    // The table of both sequences: its selection and all three models, on features of both.
    let selection = results.selection.as_ref().unwrap();
    for group in ["radiomic", "combined"] {
        let width = |seq: &str| selection.sequences.iter().find(|s| s.sequence == seq && s.group == group).expect("a selection per table").features;
        assert_eq!(width("t1c+t2"), width("t1c") + width("t2"), "{group}: both sequences' columns");
    }
    for model in ["I", "II", "III"] {
        let m = results.models.iter().find(|m| m.sequence == "t1c+t2" && m.model == model).expect("Models I–III on both sequences");
        assert!(m.features.iter().all(|f| f.starts_with("t1c:") || f.starts_with("t2:")), "{:?}", m.features);
        assert!(!m.features.is_empty() && !m.classifiers.is_empty(), "both sequences, Model {model}: {:?} {:?}", m.features, m.note);
    }
    check_selection_against_pooled(&dir, &cohort, &results, &patients, &roles);
    check_models_against_pooled(&dir, &cohort, &results, &patients, &roles);
    check_comparison_against_pooled(&dir, &cohort, &results, &patients, &roles);
    check_predict_on_both_sequences(&dir, &cohort, &results);

    // Every case was extracted; the features stayed at the sites, and a site's stored row
    // equals an extraction run directly on that patient's files.
    for seq in ["t1c", "t2"] {
        let t = &results.extraction.total[seq];
        assert_eq!(t.succeeded, 120, "{seq}: {t:?}");
        assert_eq!(t.features, fedrad_radiomics::catalogue::feature_catalogue(&fedrad_radiomics::settings::Settings::study_default()).unwrap().len() as u64);
    }
    let (site, manifest) = &cohort.manifests[1];
    let table = std::fs::read_to_string(dir.path().join("work").join(site).join("studies/federation-test/features/t2.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split(',').collect();
    let folder = manifest.parent().unwrap();
    let direct = fedrad_radiomics::extract::extract_files(
        &folder.join(format!("images/{}_t2.nii.gz", row[0])),
        &folder.join(format!("images/{}_t2_mask.nii.gz", row[0])),
        None,
        &fedrad_radiomics::settings::Settings::study_default(),
    )
    .unwrap();
    assert_eq!(header.len(), direct.len() + 1);
    for (k, f) in direct.iter().enumerate() {
        assert_eq!(header[k + 1], f.column());
        let stored: f64 = row[k + 1].parse().unwrap();
        assert!(stored == f.value || (stored.is_nan() && f.value.is_nan()), "{}: {stored} vs {}", f.column(), f.value);
    }
    // Every round goes to all four sites, except the site-alone baselines' fits (one site each).
    assert!(
        results.protocol.iter().all(|p| p.completed && p.bytes_from_sites > 0 && (p.tasks == 4 * p.rounds || p.step.starts_with("site_alone"))),
        "{:?}",
        results.protocol
    );
    drop(agents);
    server.stop().await;
}

/// A site's table as a task names it (`t2`, or `t2+deep`: radiomic then deep columns of the
/// patients with both; `t1c+t2` and `t1c+t2+deep`: both sequences' radiomic columns, then
/// both sequences' deep ones, of the patients with every part), in the CSV form extraction
/// writes, joined here from the site's files independently of the site's own loader.
fn table_text(study_dir: &std::path::Path, name: &str) -> String {
    let (base, deep) = match name.strip_suffix("+deep") {
        Some(s) => (s, true),
        None => (name, false),
    };
    let sequences: Vec<&str> = base.split('+').collect();
    let joint = sequences.len() > 1;
    let mut files: Vec<(&str, String)> = sequences.iter().map(|seq| (*seq, format!("features/{seq}.csv"))).collect();
    if deep {
        files.extend(sequences.iter().map(|seq| (*seq, format!("features/{seq}.deep.csv"))));
    }
    let mut header = vec!["patient_id".to_string()];
    let mut rows: Option<Vec<(String, String)>> = None;
    for (seq, file) in files {
        let text = std::fs::read_to_string(study_dir.join(file)).unwrap();
        let (head, body) = text.split_once('\n').unwrap();
        header.extend(head.split(',').skip(1).map(|n| if joint { format!("{seq}:{n}") } else { n.to_string() }));
        let part: std::collections::BTreeMap<&str, &str> = body.lines().filter_map(|l| l.split_once(',')).collect();
        rows = Some(match rows {
            None => part.iter().map(|(id, rest)| (id.to_string(), rest.to_string())).collect(),
            Some(rows) => rows.into_iter().filter_map(|(id, rest)| part.get(id.as_str()).map(|more| (id.clone(), format!("{rest},{more}")))).collect(),
        });
    }
    let mut out = header.join(",") + "\n";
    for (id, rest) in rows.unwrap() {
        out.push_str(&format!("{id},{rest}\n"));
    }
    out
}

/// The deep steps recomputed in one process: FedAvg over the four sites' training crops with
/// the study's settings gives the coordinator's final weights bit for bit, and every site's
/// stored embedding equals the encoder applied to that patient's crop.
fn check_deep_features(
    dir: &TempDir,
    cohort: &fedrad_synth::GeneratedCohort,
    results: &coordinator::study::StudyResults,
    settings: &coordinator::config::DeepSettings,
    seed: u64,
) {
    use fedrad_shared::algorithms::{encoder, fedavg};
    assert_eq!(results.deep.len(), 2, "deep features for both sequences: {:?}", results.deep_notes);
    let arch = settings.architecture();
    let training = settings.local_training(seed);
    for d in &results.deep {
        let seq = d.sequence.as_str();
        let mut sites: Vec<(String, Vec<fedavg::Sample>, Vec<(String, Vec<f64>)>)> = Vec::new();
        for (site, manifest) in &cohort.manifests {
            let folder = manifest.parent().unwrap();
            let study_dir = dir.path().join("work").join(site).join("studies/federation-test");
            let split = std::fs::read_to_string(study_dir.join("split.csv")).unwrap();
            let mut train = Vec::new();
            let mut all = Vec::new();
            for line in split.lines().skip(1) {
                let (id, role) = line.split_once(',').unwrap();
                let crop = site_agent::deep::crop_files(
                    &site_agent::manifest::ImagePair {
                        image: folder.join(format!("images/{id}_{seq}.nii.gz")),
                        mask: folder.join(format!("images/{id}_{seq}_mask.nii.gz")),
                        roi: None,
                    },
                    &arch,
                )
                .unwrap();
                if role == "training" {
                    train.push(fedavg::Sample { patient_id: id.into(), crop: crop.clone() });
                }
                all.push((id.to_string(), crop));
            }
            sites.push((site.clone(), train, all));
        }
        sites.sort_by(|a, b| a.0.cmp(&b.0));
        let train: Vec<Vec<fedavg::Sample>> = sites.iter().map(|s| s.1.clone()).collect();
        let (weights, history) = fedavg::simulate(&arch, &arch.initial_weights(training.seed), &train, &training, settings.rounds);
        let stored: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("study/deep/{seq}/weights.json"))).unwrap()).unwrap();
        let stored: Vec<f64> = stored["weights"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(weights, stored, "{seq}: federated weights differ from the in-process FedAvg");
        for (a, b) in history.iter().zip(&d.rounds) {
            assert_eq!(a.loss_at_start, b.loss_at_start, "{seq}: loss in round {}", a.round);
        }
        assert!(d.rounds.last().unwrap().loss_at_start < d.rounds[0].loss_at_start, "{seq}: the loss did not fall");
        assert_eq!(d.embedded, 120);
        for (site, _, all) in &sites {
            let table = std::fs::read_to_string(dir.path().join("work").join(site).join(format!("studies/federation-test/features/{seq}.deep.csv"))).unwrap();
            assert_eq!(table.lines().next().unwrap().split(',').count(), 1 + arch.embedding);
            for line in table.lines().skip(1).take(3) {
                let mut cells = line.split(',');
                let id = cells.next().unwrap();
                let values: Vec<f64> = cells.map(|c| c.parse().unwrap()).collect();
                let crop = &all.iter().find(|p| p.0 == id).unwrap().1;
                assert_eq!(values, encoder::embed(&arch, &stored, crop), "{site} {id}");
            }
        }
    }
}

/// The selection steps recomputed in one process from every site's stored feature table,
/// split and folds: standardisation, Welch filter, redundancy filter, the LASSO path with its
/// CV curve (glmnet-style row-wise solver), the selected features and the clinical model.
fn check_selection_against_pooled(
    dir: &TempDir,
    cohort: &fedrad_synth::GeneratedCohort,
    results: &coordinator::study::StudyResults,
    patients: &[(String, fedrad_shared::clinical::PatientRecord)],
    roles: &[fedrad_shared::clinical::CohortRole],
) {
    use fedrad_shared::algorithms::{correlation, lasso, logistic, standardise, univariate};
    use fedrad_shared::clinical::CohortRole;
    let selection = results.selection.as_ref().expect("selection ran");
    for seq_result in &selection.sequences {
        let seq = seq_result.sequence.as_str();
        let (mut x, mut y, mut fold) = (Vec::new(), Vec::new(), Vec::new());
        let mut names = Vec::new();
        for (site, _) in &cohort.manifests {
            let study_dir = dir.path().join("work").join(site).join("studies/federation-test");
            let table = table_text(&study_dir, &if seq_result.group == "combined" { format!("{seq}+deep") } else { seq.to_string() });
            let folds = std::fs::read_to_string(study_dir.join("folds.csv")).unwrap();
            names = table.lines().next().unwrap().split(',').skip(1).map(str::to_string).collect();
            for line in table.lines().skip(1) {
                let mut cells = line.split(',');
                let id = cells.next().unwrap();
                let i = patients.iter().position(|p| p.1.patient_id == id).unwrap();
                if roles[i] != CohortRole::Training {
                    continue;
                }
                x.push(cells.map(|c| c.parse::<f64>().unwrap()).collect::<Vec<f64>>());
                y.push(patients[i].1.outcome);
                let f = folds.lines().find_map(|l| l.strip_prefix(&format!("{id},"))).unwrap();
                fold.push(f.parse::<u32>().unwrap());
            }
        }
        assert_eq!(x.len() as u64, seq_result.training_patients);
        let p = names.len();
        let moments = standardise::pooled(&x, &y, p);
        let std = moments.standardisation();
        assert_eq!(std.dropped.len(), seq_result.dropped_constant.len() + seq_result.dropped_non_finite.len());
        let passed: Vec<_> = univariate::welch(&moments, &std.kept).into_iter().filter(|t| t.p_value < 0.05).collect();
        assert_eq!(passed.len(), seq_result.univariate_passed, "{seq}: univariate");
        let cols: Vec<usize> = passed.iter().map(|t| t.column).collect();
        let rows: Vec<Vec<f64>> = x.iter().map(|r| cols.iter().map(|&j| r[j]).collect()).collect();
        let r = correlation::pooled(&rows, cols.len()).correlation();
        let (kept, dropped) = correlation::redundancy_filter(&r, &passed, 0.9);
        assert_eq!(dropped.len(), seq_result.redundant.len(), "{seq}: redundancy");
        let candidates: Vec<usize> = kept.iter().map(|&k| cols[k]).collect();
        // The stored LASSO file: the same candidates, then the path against the pooled solver.
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("study/lasso/{seq}/{}.json", seq_result.group))).unwrap()).unwrap();
        let file_features: Vec<&str> = file["features"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(file_features, candidates.iter().map(|&j| names[j].as_str()).collect::<Vec<_>>());
        let path: lasso::LassoPath = serde_json::from_value(file["path"].clone()).unwrap();
        let standardiser = fedrad_shared::algorithms::glm::Standardiser {
            center: candidates.iter().map(|&j| std.mean[j]).collect(),
            scale: candidates.iter().map(|&j| std.sd[j]).collect(),
        };
        let z = standardiser.apply(&x.iter().map(|r| candidates.iter().map(|&j| r[j]).collect()).collect::<Vec<_>>()).unwrap();
        let yf: Vec<f64> = y.iter().map(|&b| b as u8 as f64).collect();
        let family = fedrad_shared::algorithms::glm::GlmFamily::Binomial;
        let pooled = lasso::pooled_path(&z, &yf, &path.lambdas, family, 1.0, 1e-13);
        for (l, (b0, beta)) in pooled.iter().enumerate() {
            assert!((b0 - path.intercepts[l]).abs() < 1e-6, "{seq}: intercept at λ {l}");
            for (j, b) in beta.iter().enumerate() {
                assert!((b - path.coefficients[l][j]).abs() < 1e-6, "{seq}: β{j} at λ {l}: {b} vs {}", path.coefficients[l][j]);
            }
        }
        let (cvm, _) = lasso::pooled_cv(&z, &yf, &fold, 5, &path.lambdas, family, 1.0, 1e-13);
        for l in 0..cvm.len() {
            assert!((cvm[l] - path.cv_mean[l]).abs() < 1e-6, "{seq}: CV deviance at λ {l}");
        }
        // λ_min, or the first larger λ whose model has at most P − 1 features, P the most
        // parameters every site fits (ratio 1 here, so one fewer than its training patients
        // outside its largest fold, as C is searched).
        let most = results.split.per_site.values().map(|c| c.training() - c.training().div_ceil(5)).min().unwrap() as usize - 1;
        assert_eq!(selection.model_size.max_parameters, most, "P");
        let at = (0..=path.lambda_min_index).rev().find(|&l| path.coefficients[l].iter().filter(|b| **b != 0.0).count() < most).unwrap();
        assert_eq!(seq_result.lambda_used, Some(path.lambdas[at]), "{seq}: λ used");
        let selected: Vec<&str> = seq_result.selected.iter().map(|f| f.name.as_str()).collect();
        let expected: Vec<&str> = candidates.iter().enumerate().filter(|(i, _)| path.coefficients[at][*i] != 0.0).map(|(_, &j)| names[j].as_str()).collect();
        assert_eq!(selected, expected);
    }
    // Clinical model: the pooled Newton fit of the entered variables.
    let clinical = results.clinical_model.as_ref().expect("clinical model ran");
    let schema = npc_dictionary();
    let vars: Vec<_> = schema.iter().filter(|v| ["age", "sex", "overall_stage"].contains(&v.name.as_str())).cloned().collect();
    let training: Vec<_> = patients.iter().zip(roles).filter(|(_, r)| **r == CohortRole::Training).map(|(p, _)| &p.1).collect();
    let x: Vec<Vec<f64>> = training.iter().map(|r| logistic::design_row(r, &vars).unwrap()).collect();
    let y: Vec<bool> = training.iter().map(|r| r.outcome).collect();
    let entered: Vec<usize> = logistic::design_columns(&vars).iter().enumerate().filter(|(_, c)| clinical.selected.contains(&c.variable)).map(|(k, _)| k).collect();
    if !entered.is_empty() {
        let beta = logistic::pooled_fit(&x, &y, &entered);
        for (a, or) in clinical.multivariable.iter().enumerate() {
            assert!((or.odds_ratio.ln() - beta[a + 1]).abs() < 1e-8, "clinical term {}", or.term);
        }
    }
}

/// Every fitted model rescored in one process from the sites' stored tables: the pooled AUC
/// of the scores' grid cells equals the federated one (score histograms; 1e-9), and the logistic regression equals the
/// pooled ridge fit.
fn check_models_against_pooled(
    dir: &TempDir,
    cohort: &fedrad_synth::GeneratedCohort,
    results: &coordinator::study::StudyResults,
    patients: &[(String, fedrad_shared::clinical::PatientRecord)],
    roles: &[fedrad_shared::clinical::CohortRole],
) {
    use fedrad_shared::algorithms::{classifiers, logistic, metrics};
    use fedrad_shared::clinical::CohortRole;
    let fitted: Vec<_> = results.models.iter().filter(|m| !m.classifiers.is_empty()).collect();
    assert!(!fitted.is_empty(), "no model was fitted");
    for seq in ["t1c", "t2"] {
        let ii = results.models.iter().find(|m| m.model == "II" && m.sequence == seq).unwrap();
        assert!(!ii.classifiers.is_empty() || ii.note.as_deref().is_some_and(|n| n.contains("selected no")), "{seq} Model II: {:?}", ii.note);
    }
    for model in fitted {
        for cl in &model.classifiers {
            let file: fedrad_shared::algorithms::classifiers::ModelFile =
                serde_json::from_str(&std::fs::read_to_string(dir.path().join("study").join(&cl.model_file)).unwrap()).unwrap();
            // Design rows of every patient with the sequence's features and complete clinical data.
            let mut rows: Vec<(CohortRole, bool, Vec<f64>, String)> = Vec::new();
            for (site, _) in &cohort.manifests {
                let table = table_text(&dir.path().join("work").join(site).join("studies/federation-test"), &file.sequence);
                for line in table.lines().skip(1) {
                    let cells: Vec<&str> = line.split(',').collect();
                    let i = patients.iter().position(|p| p.1.patient_id == cells[0]).unwrap();
                    let mut row: Vec<f64> = file.feature_columns.iter().map(|&c| cells[c as usize + 1].parse().unwrap()).collect();
                    if !file.clinical_columns.is_empty() {
                        let Some(c) = logistic::design_row(&patients[i].1, &file.clinical_variables) else { continue };
                        row.extend(file.clinical_columns.iter().map(|&k| c[k as usize]));
                    }
                    rows.push((roles[i], patients[i].1.outcome, row, cells[0].to_string()));
                }
            }
            for (cohort_role, metrics) in [(CohortRole::Training, &cl.training), (CohortRole::Validation, &cl.validation)] {
                let (scores, y): (Vec<f64>, Vec<bool>) = rows
                    .iter()
                    .filter(|r| r.0 == cohort_role)
                    .map(|r| (file.scorer.log_odds(&file.standardiser.apply(std::slice::from_ref(&r.2)).unwrap()[0]), r.1))
                    .unzip();
                // The federated AUC is the pooled AUC of the scores' grid cells (about 0.001
                // log-odds): equal to it, and within its tied pairs of the AUC of the exact scores.
                let cells: Vec<f64> = scores.iter().map(|s| f64::from(metrics::score_cell(*s, metrics::DEFAULT_GRID))).collect();
                let (on_cells, _) = metrics::pooled_auc(&cells, &y);
                assert!(
                    (on_cells - metrics.auc).abs() < 1e-9,
                    "{} {} {:?} {cohort_role:?}: pooled AUC on the score grid {on_cells} vs {}",
                    model.sequence,
                    model.model,
                    cl.classifier,
                    metrics.auc
                );
                // Against the exact scores it differs only by the cross-class pairs that share a
                // cell (each counts as half instead of 0 or 1).
                let (auc, _) = metrics::pooled_auc(&scores, &y);
                let (n1, n0) = (y.iter().filter(|v| **v).count() as f64, y.iter().filter(|v| !**v).count() as f64);
                let tied = (0..cells.len()).flat_map(|i| (0..cells.len()).map(move |j| (i, j))).filter(|&(i, j)| y[i] && !y[j] && cells[i] == cells[j]).count() as f64;
                assert!(
                    (auc - metrics.auc).abs() <= 0.5 * tied / (n1 * n0) + 1e-12,
                    "{} {} {:?} {cohort_role:?}: pooled AUC {auc} vs {} with {tied} tied pairs",
                    model.sequence,
                    model.model,
                    cl.classifier,
                    metrics.auc
                );
            }
            if cl.classifier == classifiers::ClassifierKind::LogisticRegression {
                let training: Vec<&(CohortRole, bool, Vec<f64>, String)> = rows.iter().filter(|r| r.0 == CohortRole::Training).collect();
                let z: Vec<Vec<f64>> = training.iter().map(|r| file.standardiser.apply(std::slice::from_ref(&r.2)).unwrap().remove(0)).collect();
                let y: Vec<bool> = training.iter().map(|r| r.1).collect();
                let c = cl.c.expect("logistic regression reports its C");
                let beta = pooled_ridge_logistic(&z, &y, c);
                let classifiers::Scorer::Logistic { intercept, coefficients } = &file.scorer else { panic!("logistic scorer expected") };
                assert!((intercept - beta[0]).abs() < 1e-8);
                for (a, b) in coefficients.iter().zip(&beta[1..]) {
                    assert!((a - b).abs() < 1e-8, "{a} vs {b}");
                }
                // The search: out-of-fold AUC per C over the folds the sites recorded.
                assert_eq!(cl.cross_validation.len(), 2, "two values searched");
                let fold_of = |id: &str| -> u32 {
                    cohort
                        .manifests
                        .iter()
                        .find_map(|(site, _)| {
                            let text = std::fs::read_to_string(dir.path().join("work").join(site).join("studies/federation-test/folds.csv")).unwrap();
                            text.lines().skip(1).find_map(|l| l.split_once(',').filter(|(i, _)| *i == id).map(|(_, f)| f.parse().unwrap()))
                        })
                        .expect("every training patient has a fold")
                };
                let fold: Vec<u32> = training.iter().map(|r| fold_of(&r.3)).collect();
                for point in &cl.cross_validation {
                    let mut scores = vec![0.0; z.len()];
                    for k in 1..=5 {
                        let keep: Vec<usize> = (0..z.len()).filter(|&i| fold[i] != k).collect();
                        let b = pooled_ridge_logistic(&keep.iter().map(|&i| z[i].clone()).collect::<Vec<_>>(), &keep.iter().map(|&i| y[i]).collect::<Vec<_>>(), point.c);
                        for i in (0..z.len()).filter(|&i| fold[i] == k) {
                            let eta = b[0] + b[1..].iter().zip(&z[i]).map(|(a, x)| a * x).sum::<f64>();
                            scores[i] = f64::from(metrics::score_cell(eta, metrics::DEFAULT_GRID));
                        }
                    }
                    let (auc, _) = metrics::pooled_auc(&scores, &y);
                    assert!((auc - point.auc).abs() < 1e-9, "C = {}: pooled out-of-fold AUC {auc} vs {}", point.c, point.auc);
                }
                let best = cl.cross_validation.iter().map(|p| p.auc).fold(f64::NEG_INFINITY, f64::max);
                assert!(cl.cross_validation.iter().any(|p| p.c == c && p.auc == best), "chosen C {c} has the best CV AUC");
            }
        }
    }
}

/// `site-agent predict` with Model II on both sequences (radiomic and deep features of T1WI+C
/// and T2WI): from a hospital's images, with the study's two encoders matched by hash, every
/// patient's probability is the model applied to that patient's row of the table the study
/// fitted and validated on (the site's stored `t1c+t2+deep` row).
fn check_predict_on_both_sequences(dir: &TempDir, cohort: &fedrad_synth::GeneratedCohort, results: &coordinator::study::StudyResults) {
    use fedrad_shared::algorithms::classifiers::ClassifierKind;
    use site_agent::predict::{PredictInputs, load_encoder, load_model, predict};
    let ii = results.models.iter().find(|m| m.sequence == "t1c+t2" && m.model == "II").unwrap();
    let lr = ii.classifiers.iter().find(|c| c.classifier == ClassifierKind::LogisticRegression).expect("Model II's logistic regression on both sequences");
    let model = load_model(&dir.path().join("study").join(&lr.model_file)).unwrap();
    assert_eq!(model.sequence, "t1c+t2+deep");
    assert_eq!(model.deep_per_sequence.keys().map(String::as_str).collect::<Vec<_>>(), ["t1c", "t2"], "a recipe per sequence");
    let encoder = |seq: &str| load_encoder(&dir.path().join(format!("study/deep/{seq}/weights.json"))).unwrap();
    let (site, manifest) = &cohort.manifests[0];
    let scores = dir.path().join("both-sequences-scores.csv");
    let none = predict(&model, manifest, &scores, &PredictInputs::default()).unwrap_err().to_string();
    assert!(none.contains("--encoder") && none.contains("t1c"), "{none}");
    let one = PredictInputs { encoders: vec![encoder("t1c")], ..Default::default() };
    let refused = predict(&model, manifest, &scores, &one).unwrap_err().to_string();
    assert!(refused.contains("t2 deep features") && refused.contains("not the study's encoder"), "{refused}");
    let both = PredictInputs { encoders: vec![encoder("t2"), encoder("t1c")], ..Default::default() };
    let summary = predict(&model, manifest, &scores, &both).unwrap();
    let patients = std::fs::read_to_string(manifest).unwrap().lines().count() - 1;
    assert_eq!((summary.scored, summary.failed), (patients, 0), "every patient of {site} scored");
    let table = table_text(&dir.path().join("work").join(site).join("studies/federation-test"), "t1c+t2+deep");
    let header: Vec<&str> = table.lines().next().unwrap().split(',').skip(1).collect();
    assert_eq!(fedrad_shared::algorithms::extraction::catalogue_sha256(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>()), model.catalogue_sha256);
    let stored: std::collections::BTreeMap<&str, Vec<f64>> =
        table.lines().skip(1).map(|l| l.split_once(',').unwrap()).map(|(id, rest)| (id, rest.split(',').map(|c| c.parse().unwrap()).collect())).collect();
    let mut compared = 0;
    for line in std::fs::read_to_string(&scores).unwrap().lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let Some(row) = stored.get(cells[0]) else { continue };
        let x: Vec<f64> = model.feature_columns.iter().map(|&c| row[c as usize]).collect();
        let expected = model.scorer.probability(&model.standardiser.apply(&[x]).unwrap()[0]);
        let predicted: f64 = cells[1].parse().unwrap();
        assert!((predicted - expected).abs() < 1e-6, "{}: predicted {predicted}, the study's row gives {expected}", cells[0]);
        compared += 1;
    }
    assert_eq!(compared, stored.len(), "every stored row compared");
}

/// Ridge logistic regression (C) on pooled rows with the project's Newton solver.
fn pooled_ridge_logistic(z: &[Vec<f64>], y: &[bool], c: f64) -> Vec<f64> {
    use fedrad_shared::algorithms::{classifiers, logistic};
    let width = z[0].len();
    let (beta, _, converged) = fedrad_shared::algorithms::block_on_ready(classifiers::minimise(vec![0.0; width + 1], async |b: &[f64]| {
        let m = logistic::ModelPoint { columns: (0..width).collect(), coefficients: b.to_vec() };
        let t = logistic::site_round(z, y, std::slice::from_ref(&m), 1, f64::INFINITY).unwrap();
        let t = logistic::combine(&[fedrad_shared::aggregate::SiteAggregate::new("pooled", t)], &[m]).unwrap().remove(0);
        Ok(classifiers::ridge_logistic_objective((t.1, t.2, t.3), b, c))
    }))
    .unwrap();
    assert!(converged);
    beta
}

/// The DeLong comparison equals DeLong's covariance computed from every validation patient's
/// score cells under every saved model (the sites place patients by their cells, so ties
/// within a cell count as ties), and is close to that of the exact scores.
fn check_comparison_against_pooled(
    dir: &TempDir,
    cohort: &fedrad_synth::GeneratedCohort,
    results: &coordinator::study::StudyResults,
    patients: &[(String, fedrad_shared::clinical::PatientRecord)],
    roles: &[fedrad_shared::clinical::CohortRole],
) {
    use fedrad_shared::algorithms::{classifiers, logistic, metrics, paired_auc};
    use fedrad_shared::clinical::CohortRole;
    let comparison = results.comparison.as_ref().unwrap_or_else(|| panic!("models were not compared: {:?}", results.comparison_note));
    let mut per_model: Vec<std::collections::BTreeMap<String, (bool, f64)>> = Vec::new();
    for model in &results.models {
        for cl in &model.classifiers {
            let file: classifiers::ModelFile = serde_json::from_str(&std::fs::read_to_string(dir.path().join("study").join(&cl.model_file)).unwrap()).unwrap();
            let mut scores = std::collections::BTreeMap::new();
            for (site, _) in &cohort.manifests {
                let table = table_text(&dir.path().join("work").join(site).join("studies/federation-test"), &file.sequence);
                for line in table.lines().skip(1) {
                    let cells: Vec<&str> = line.split(',').collect();
                    let i = patients.iter().position(|p| p.1.patient_id == cells[0]).unwrap();
                    if roles[i] != CohortRole::Validation {
                        continue;
                    }
                    let mut row: Vec<f64> = file.feature_columns.iter().map(|&c| cells[c as usize + 1].parse().unwrap()).collect();
                    if !file.clinical_columns.is_empty() {
                        let Some(c) = logistic::design_row(&patients[i].1, &file.clinical_variables) else { continue };
                        row.extend(file.clinical_columns.iter().map(|&k| c[k as usize]));
                    }
                    let z = file.standardiser.apply(std::slice::from_ref(&row)).unwrap().remove(0);
                    scores.insert(cells[0].to_string(), (patients[i].1.outcome, file.scorer.log_odds(&z)));
                }
            }
            per_model.push(scores);
        }
    }
    assert_eq!(per_model.len(), comparison.models.len());
    let ids: Vec<&String> = per_model[0].keys().filter(|id| per_model.iter().all(|m| m.contains_key(*id))).collect();
    let rows: Vec<Vec<f64>> = ids.iter().map(|id| per_model.iter().map(|m| m[*id].1).collect()).collect();
    let y: Vec<bool> = ids.iter().map(|id| per_model[0][*id].0).collect();
    let on_cells: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|&s| f64::from(metrics::score_cell(s, metrics::DEFAULT_GRID))).collect()).collect();
    let pooled = paired_auc::pooled_paired_auc(&on_cells, &y);
    let exact = paired_auc::pooled_paired_auc(&rows, &y);
    assert_eq!((comparison.validation_negatives, comparison.validation_positives), (pooled.negatives, pooled.positives));
    for ((a, b), e) in comparison.auc.iter().zip(&pooled.auc).zip(&exact.auc) {
        assert!((a - b).abs() < 1e-12, "AUC {a} vs pooled {b} on the grid");
        assert!((a - e).abs() < 0.01, "AUC {a} vs {e} of the exact scores");
    }
    for row in comparison.best_versus_others.iter().chain(&comparison.clinical_added).chain(&comparison.deep_added) {
        let a = comparison.models.iter().position(|m| m == &row.a).unwrap();
        let b = comparison.models.iter().position(|m| m == &row.b).unwrap();
        let reference = pooled.compare(a, b);
        assert!((row.test.difference - reference.difference).abs() < 1e-9, "{row:?} vs {reference:?}");
        assert!((row.test.se - reference.se).abs() < 1e-9, "{row:?} vs {reference:?}");
    }
    assert!(!comparison.clinical_added.is_empty(), "Model III is compared with its base model");
}

/// Secure aggregation changes what the coordinator sees, not what the study finds: the same
/// study with it on and off writes the same `results.json`, byte for byte (both paths sum in
/// the same fixed point); with it on, the LASSO, CV-loss, classifier and tree rounds
/// came back masked, and each site's audit log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secure_aggregation_on_and_off_give_the_same_results_json_byte_for_byte() {
    let dir = TempDir::new("secure-equal");
    let seed = 5;
    let cohort = small_cohort(&dir.path().join("cohort"), 100, seed);
    let Federation { server, agents, sites } = start_federation(dir.path(), &cohort, |_, cfg| {
        cfg.policy.min_count = 1;
        cfg.policy.max_parameter_ratio = 1.0;
        // The site-alone baselines are per-site results each hospital publishes by choice.
        cfg.policy.site_alone_baselines = true;
        // With secure aggregation off the plan pins no site keys, so the sites cannot check
        // each other's answers to recompute the LASSO and classifier rounds: they answer them
        // unrecomputed only by this policy (on, the same rounds are recomputed).
        cfg.policy.unverified_rounds = true;
    })
    .await;
    let mut outputs = Vec::new();
    for secure in [true, false] {
        let id = if secure { "secure-on" } else { "secure-off" };
        let out = dir.path().join(id);
        let mut study = study_config(id, &out, sites.clone(), seed);
        study.selection.sequences = vec!["t2".into()];
        study.selection.lasso.folds = 3;
        study.deep.enabled = false;
        study.clinical_model.variables = Some(vec!["age".into(), "sex".into(), "overall_stage".into()]);
        // Mann–Whitney's rank histograms are secure-summed too.
        study.selection.univariate.test = fedrad_shared::plan::UnivariateChoice::MannWhitney;
        study.secure_aggregation.enabled = Some(secure);
        study.secure_aggregation.site_alone_baselines = true;
        approve_study(&agents, &mut study);
        let results = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.expect("study runs");
        let masked: u64 = results.protocol.iter().map(|p| p.secure_summed_rounds).sum();
        let fitted: usize = results.models.iter().map(|m| m.classifiers.len()).sum();
        let text = std::fs::read_to_string(out.join("results.json")).unwrap();
        outputs.push((masked, fitted, text.replace(&format!("\"{id}\""), "\"ID\"")));
    }
    let (on, off) = (&outputs[0], &outputs[1]);
    assert!(on.0 > 100, "secure-summed rounds with it on: {}", on.0);
    assert_eq!(off.0, 0, "secure-summed rounds with it off");
    assert!(on.1 >= 10, "classifiers fitted: {}", on.1);
    assert!(on.2 == off.2, "results.json differs between secure aggregation on and off");
    for site in &sites {
        let log = site_agent::audit::verify(&dir.path().join("work").join(site).join("audit.jsonl")).unwrap();
        let masked = |study: &str| log.iter().filter(|e| e.study_id == study && e.secure_sum).count();
        assert!(masked("secure-on") > 100 && masked("secure-off") == 0, "{site}: masked replies {} / {}", masked("secure-on"), masked("secure-off"));
        let summed = [
            "feature_moments",
            "design_moments",
            "correlation",
            "logistic_round",
            "lasso_round",
            "cv_loss",
            "classifier_round",
            "tree_round",
            "value_histogram",
            "rank_histogram",
            "paired_scores",
            "score",
            "table1",
        ];
        for kind in summed {
            assert!(log.iter().any(|e| e.secure_sum && e.kind == kind), "{site}: no masked {kind} reply");
        }
        // And nothing else is (the encoder and ComBat, also secure-summed, are not in this study).
        if let Some(e) =
            log.iter().find(|e| e.secure_sum && !summed.contains(&e.kind.as_str()) && !["encoder_round", "combat_sums", "combat_apply"].contains(&e.kind.as_str()))
        {
            panic!("{site}: a masked {} reply", e.kind);
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_requiring_more_sites_stops_the_study_before_any_task() {
    let dir = TempDir::new("min-sites");
    let cohort = small_cohort(&dir.path().join("cohort"), 60, 4);
    let sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
    let pki = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "test", &["localhost".into()], &sites).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let mut agents = Vec::new();
    for (k, (site, manifest)) in cohort.manifests.iter().enumerate() {
        let mut cfg = site_config(site, server.addr.port(), manifest, &dir.path().join("work").join(site), TlsFiles::bundle(&pki.site_bundle(site)));
        cfg.policy.min_sites = if k == 2 { 5 } else { 1 };
        agents.push(start_agent(cfg).await);
    }
    let mut study = study_config("min-sites", &dir.path().join("study"), sites.clone(), 1);
    approve_study(&agents, &mut study);
    let err = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StudyError::Refused { .. }) && text.contains(&sites[2]) && text.contains("at least 5 sites"), "{text}");
    assert_eq!(server.hub.traffic().values().map(|t| t.tasks).sum::<u64>(), 0, "no task was sent");
    drop(agents);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_site_makes_the_study_wait_then_fail_naming_it() {
    let dir = TempDir::new("missing-site");
    let cohort = small_cohort(&dir.path().join("cohort"), 80, 3);
    let mut sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
    let pki = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "test", &["localhost".into()], &sites).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let mut agents = Vec::new();
    for (site, manifest) in &cohort.manifests[..3] {
        let cfg = site_config(site, server.addr.port(), manifest, &dir.path().join("work").join(site), TlsFiles::bundle(&pki.site_bundle(site)));
        agents.push(start_agent(cfg).await);
    }
    sites.sort();
    let mut study = study_config("missing", &dir.path().join("study"), sites, 1);
    study.timeouts.site_wait_secs = 3;
    let started = std::time::Instant::now();
    let err = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.unwrap_err();
    assert!(started.elapsed() >= std::time::Duration::from_secs(3), "did not wait for the timeout");
    match &err {
        StudyError::SitesMissing { sites, .. } => assert_eq!(sites, &vec!["hospital-d".to_string()]),
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("hospital-d"));
    server.stop().await;
}

/// Stops one site's agent when a given step starts: the site leaves the study for good.
struct LeavesAt {
    step: &'static str,
    agent: std::sync::Mutex<Option<RunningAgent>>,
}

impl coordinator::study::Progress for LeavesAt {
    fn step_started(&self, step: &str, _sites: usize) {
        if step == self.step {
            drop(self.agent.lock().unwrap().take());
        }
    }
}

/// Issue 20: a site that leaves for good mid-study (its agent stops) is waited for as long as a
/// task may take, then the study stops naming it; nothing is written as results, and the other
/// sites' secure sums of that round are never combined without it (there is no unmasking path).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_that_leaves_for_good_stops_the_study_naming_it() {
    let dir = TempDir::new("site-leaves");
    let cohort = small_cohort(&dir.path().join("cohort"), 160, 11);
    let Federation { server, mut agents, sites } = start_federation(dir.path(), &cohort, |_, _| {}).await;
    let mut study = study_config("leaves", &dir.path().join("study"), sites.clone(), 1);
    study.timeouts.task_secs = 4;
    study.deep.enabled = false;
    approve_study(&agents, &mut study);
    assert!(study.plan().unwrap().secure_aggregation.is_some(), "four sites: secure aggregation is on");
    let leaving = agents.pop().unwrap();
    let site = leaving.engine.config.site_id.clone();
    let progress = LeavesAt { step: "standardise.t1c", agent: std::sync::Mutex::new(Some(leaving)) };
    let started = std::time::Instant::now();
    let err = StudyRunner::new(server.hub.clone(), study, &progress).run().await.unwrap_err();
    assert!(progress.agent.lock().unwrap().is_none(), "the site left: {err}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "did not wait for the task timeout");
    match &err {
        StudyError::Timeout { step, .. } => assert!(step.starts_with("standardise"), "{step}"),
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains(&site), "{err}");
    assert!(!dir.path().join("study/results.json").exists(), "no results without the site");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_below_its_minimum_refuses_and_the_study_says_which_and_why() {
    let dir = TempDir::new("refusal");
    let cohort = small_cohort(&dir.path().join("cohort"), 80, 5);
    let Federation { server, agents: _agents, sites } = start_federation(dir.path(), &cohort, |site, cfg| {
        if site == "hospital-c" {
            cfg.policy.min_count = 1000;
        }
    })
    .await;
    let mut study = study_config("refusal", &dir.path().join("study"), sites, 1);
    approve_study(&_agents, &mut study);
    let err = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StudyError::Refused { .. }), "{msg}");
    assert!(msg.contains("hospital-c") && msg.contains("fewer than this site's minimum of 1000"), "{msg}");
    // The refusal is in the site's audit log, and the log's chain verifies.
    let log = site_agent::audit::verify(&dir.path().join("work/hospital-c/audit.jsonl")).unwrap();
    assert!(log.iter().any(|e| e.outcome == "refused" && e.kind == "cohort_summary"));
    server.stop().await;
}

/// Ten folds at a hospital of 28 training patients would be refused (folds of two patients at
/// `min_count` 3): the study lowers K to what every site's `min_count` allows, before any fold
/// task, and sizes the models to the smallest site's parameter limit; a classifier no λ can
/// make small enough is reported as not fitted, naming the site, instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_site_lowers_the_folds_and_the_model_size_and_the_study_says_why() {
    let dir = TempDir::new("fold-refusal");
    let mut spec = fedrad_synth::default_cohort(5, 205).with_hospital_sizes(&[70, 50, 45, 40]).unwrap();
    spec.coarsen = 3.0;
    let cohort = fedrad_synth::generate(&spec, &dir.path().join("cohort"), &|| {}).expect("cohort generation");
    let Federation { server, agents: _agents, sites } = start_federation(dir.path(), &cohort, |_, cfg| cfg.policy.min_count = 3).await;
    let mut study = study_config("fold-refusal", &dir.path().join("study"), sites, 1);
    study.deep.enabled = false;
    study.clinical_model.variables = Some(vec!["age".into(), "sex".into(), "overall_stage".into()]);
    // C searched over the lowered folds: fits leave out one of the sites' recorded folds.
    study.models.search = coordinator::config::SearchSettings { enabled: true, c: vec![0.1, 10.0] };
    approve_study(&_agents, &mut study);
    let results = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.expect("the study runs");
    let selection = results.selection.as_ref().unwrap();
    let size = &selection.model_size;
    let (smallest, counts) = results.split.per_site.iter().min_by_key(|(_, c)| c.training()).unwrap();
    // (Every patient of this cohort has features: nothing is taken off the smallest fold.)
    assert!(size.per_site.iter().all(|l| l.missing == 0), "{size:?}");
    assert_eq!(size.folds, (counts.training() / 3) as u32, "{size:?}");
    assert!(size.folds < 10 && size.folds_limited_by.as_deref() == Some(smallest.as_str()), "{size:?}");
    assert_eq!(selection.folds.folds, size.folds);
    let fit_on = counts.training() - counts.training().div_ceil(size.folds as u64);
    assert_eq!(size.max_parameters, (0.33_f64 * fit_on as f64).floor() as usize);
    for m in results.models.iter().filter(|m| m.note.is_none()) {
        for c in &m.classifiers {
            if matches!(c.classifier, ClassifierKind::LogisticRegression | ClassifierKind::LinearSvm | ClassifierKind::RbfSvm) {
                assert_eq!(c.cross_validation.len(), 2, "{} {} {:?}: C searched over the {} folds", m.sequence, m.model, c.classifier, size.folds);
            }
            if matches!(c.classifier, ClassifierKind::LogisticRegression | ClassifierKind::LinearSvm) {
                assert!(m.features.len() + m.clinical_terms.len() < size.max_parameters, "{} {}: {:?}", m.sequence, m.model, m.features);
            }
        }
        // What no λ can make small enough is said, with the site that limits it; no site refused.
        for n in &m.not_fitted {
            assert!(n.reason.starts_with("not fitted at any λ") && n.reason.contains(&format!("site {smallest} fits at most")), "{n:?}");
        }
    }
    assert!(
        results.models.iter().any(|m| m.classifiers.iter().any(|c| c.classifier == ClassifierKind::LogisticRegression)),
        "{:?}",
        results.models.iter().map(|m| (&m.note, &m.not_fitted)).collect::<Vec<_>>()
    );
    let report = std::fs::read_to_string(dir.path().join("study/report.md")).unwrap();
    assert!(report.contains(&format!("{} folds (the plan allows 10; site {smallest}", size.folds)), "report");
    server.stop().await;
}

/// A site answers only a study its operator approved, and only under the approved plan: a
/// study nobody approved, and a study whose file changed after approval, both stop at the
/// first task with the site's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unapproved_study_or_a_changed_plan_is_refused_by_every_site() {
    let dir = TempDir::new("approval");
    let cohort = small_cohort(&dir.path().join("cohort"), 60, 6);
    let Federation { server, agents, sites } = start_federation(dir.path(), &cohort, |_, _| {}).await;
    let mut study = study_config("approval", &dir.path().join("study"), sites.clone(), 1);
    let err = StudyRunner::new(server.hub.clone(), study.clone(), &Quiet).run().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(&err, StudyError::Refused { step, .. } if step == "cohort_summary") && msg.contains("is not approved at this site"), "{msg}");
    approve_study(&agents, &mut study);
    let mut changed = study.clone();
    changed.split.training_fraction = 0.69;
    let err = StudyRunner::new(server.hub.clone(), changed, &Quiet).run().await.unwrap_err();
    assert!(err.to_string().contains("is not the one approved at this site"), "{err}");
    for site in &sites {
        let log = site_agent::audit::verify(&dir.path().join("work").join(site).join("audit.jsonl")).unwrap();
        assert!(log.iter().all(|e| e.outcome == "refused"), "{site} answered an unapproved study");
    }
    server.stop().await;
}

/// Hospitals so small (25 patients, `min_count` 3) that already at the LASSO path's first λ a
/// fold fit needs more columns than the smallest site's parameter limit admits: the path is
/// empty, the selection says why and selects nothing, and the study ends without a refused
/// task (it used to send a cross-validation round over no λ, which every site refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lasso_path_that_stops_before_its_first_lambda_selects_nothing_and_says_why() {
    let dir = TempDir::new("tiny-path");
    let seed = 8;
    let cohort = small_cohort(&dir.path().join("cohort"), 100, seed);
    let Federation { server, agents, sites } = start_federation(dir.path(), &cohort, |_, cfg| {
        cfg.policy.min_count = 3;
    })
    .await;
    let mut study = study_config("tiny-path", &dir.path().join("study"), sites.clone(), seed);
    study.selection.sequences = vec!["t2".into()];
    study.selection.lasso.folds = 3;
    study.deep.enabled = false;
    study.clinical_model.enabled = false;
    approve_study(&agents, &mut study);
    let results = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.expect("study runs");
    let model_i = results.models.iter().find(|m| m.model == "I").expect("Model I");
    assert!(model_i.classifiers.is_empty() && model_i.note.as_deref().is_some_and(|n| n.contains("selected no")), "{:?}", model_i.note);
    let selection = std::fs::read_to_string(dir.path().join("study/selection.json")).unwrap();
    assert!(selection.contains("stopped before its first λ"), "{selection}");
    for site in &sites {
        let log = site_agent::audit::verify(&dir.path().join("work").join(site).join("audit.jsonl")).unwrap();
        assert!(log.iter().all(|e| e.outcome != "refused"), "{site} refused a task");
    }
    server.stop().await;
}
