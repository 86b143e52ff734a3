//! Leave-one-hospital-out validation (issue 21) over four uneven hospitals, with the sites at
//! their default policy and secure aggregation on:
//! - each analysis is the study on the other hospitals: for a hospital whose absence leaves the
//!   others' split quotas as they are, the analysis's selection and models equal a separate
//!   study of the other three hospitals, number for number (federated equals pooled, with the
//!   pooled algorithm's own tests in `shared`);
//! - the held-out hospital scores every model of its analysis, over all its patients;
//! - the held-out site scores nothing else: no task without every fitting site's attestation,
//!   none whose attestations were signed for another task (a coordinator's own "model"), and no
//!   other task kind; a fitting site refuses attestations.

use std::collections::BTreeMap;

use coordinator::study::{Quiet, StudyRunner};
use fedrad_shared::algorithms::classifiers::{ClassifierKind, ModelFile, Scorer};
use fedrad_shared::algorithms::split;
use fedrad_shared::digest::sha256_hex;
use fedrad_shared::proto::{self, Task, task, task_reply};
use fedrad_tests::*;
use prost::Message;

fn small_study(study_id: &str, out: &std::path::Path, sites: Vec<String>) -> coordinator::config::StudyConfig {
    let mut study = study_config(study_id, out, sites, 21);
    study.selection.sequences = vec!["t2".into()];
    study.selection.lasso.folds = 4;
    study.deep.enabled = false;
    study.secure_aggregation.enabled = Some(true);
    study
}

fn refusal(reply: proto::TaskReply) -> String {
    match reply.outcome {
        Some(task_reply::Outcome::Refusal(r)) => r.detail,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_hospital_left_out_is_the_study_of_the_others_and_scores_only_attested_models() {
    let dir = TempDir::new("leave-one-out");
    let mut spec = fedrad_synth::default_cohort(21, 290).with_hospital_sizes(&[90, 75, 65, 60]).unwrap();
    spec.coarsen = 3.0;
    let cohort = fedrad_synth::generate(&spec, &dir.path().join("cohort"), &|| {}).expect("cohort generation");
    let Federation { server, agents, sites } = start_federation(dir.path(), &cohort, |_, cfg| cfg.policy.leave_one_hospital_out = true).await;
    let mut study = small_study("loho", &dir.path().join("study"), sites.clone());
    study.validation.leave_one_hospital_out = true;
    approve_study(&agents, &mut study);
    let plan = study.plan().unwrap();
    let results = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.expect("study runs");
    let loho = results.leave_one_hospital_out.as_ref().expect("leave-one-hospital-out results");
    assert_eq!(loho.hospitals.iter().map(|h| h.site.clone()).collect::<Vec<_>>(), sites);

    // Every analysis validated every fitted classifier on all of its hospital's patients.
    let mut held_out_scored = 0;
    for h in &loho.hospitals {
        assert!(h.note.is_none(), "without {}: {:?}", h.site, h.note);
        let patients = results.split.per_site[&h.site].training() + results.split.per_site[&h.site].validation();
        for m in h.models.iter().filter(|m| !m.classifiers.is_empty()) {
            for c in &m.classifiers {
                let held = c.held_out.as_ref().unwrap_or_else(|| panic!("without {}: {} {:?} has no held-out result", h.site, m.model, c.classifier));
                assert_eq!(held.n, patients, "without {}: {} {:?}", h.site, m.model, c.classifier);
                held_out_scored += 1;
            }
        }
    }
    assert!(held_out_scored >= 4 * 6, "{held_out_scored} held-out results");
    assert!(!loho.pooled.is_empty());
    for p in &loho.pooled {
        assert_eq!(p.n, results.split.total.training() + results.split.total.validation());
        assert!(p.pooled_auc > 0.5 && p.pooled_auc <= 1.0, "{p:?}");
    }
    let report = std::fs::read_to_string(dir.path().join("study/report.md")).unwrap();
    assert!(report.contains("## Leave-one-hospital-out validation"), "report");

    // The analysis equals the study of the other hospitals, for a hospital whose absence
    // leaves the others' split quotas (and so their patients' cohorts) as they are.
    let strata: BTreeMap<String, (u64, u64)> = results.cohort.sites.iter().map(|c| (c.site_id.clone(), (c.negatives, c.positives))).collect();
    let quotas = split::plan_quotas(&strata, plan.split.training_fraction);
    let left_out = sites
        .iter()
        .find(|h| {
            let others: BTreeMap<_, _> = strata.iter().filter(|(s, _)| s != h).map(|(s, c)| (s.clone(), *c)).collect();
            split::plan_quotas(&others, plan.split.training_fraction).iter().all(|(s, q)| quotas[s] == *q)
        })
        .expect("a hospital whose absence keeps the others' split quotas");
    let others: Vec<String> = sites.iter().filter(|s| *s != left_out).cloned().collect();
    let mut alone = small_study("loho-others", &dir.path().join("others"), others.clone());
    approve_study(&agents, &mut alone);
    let without = StudyRunner::new(server.hub.clone(), alone, &Quiet).run().await.expect("the study of the other hospitals runs");
    let analysis = loho.hospitals.iter().find(|h| &h.site == left_out).unwrap();
    let selected: BTreeMap<String, Vec<String>> = without
        .selection
        .as_ref()
        .unwrap()
        .sequences
        .iter()
        .map(|s| (format!("{} {}", s.sequence, s.group), s.selected.iter().map(|f| f.name.clone()).collect()))
        .collect();
    assert_eq!(analysis.selected, selected, "without {left_out}");
    assert_eq!(analysis.models.len(), without.models.len());
    let mut compared = 0;
    for (a, b) in analysis.models.iter().zip(&without.models) {
        assert_eq!((&a.sequence, &a.model, &a.features, &a.note), (&b.sequence, &b.model, &b.features, &b.note));
        assert_eq!(a.classifiers.len(), b.classifiers.len(), "Model {}", a.model);
        for (x, y) in a.classifiers.iter().zip(&b.classifiers) {
            assert_eq!(x.classifier, y.classifier);
            // The same fit on the same rows: the same training and validation histograms.
            assert_eq!(x.training, y.training, "Model {} {:?}", a.model, x.classifier);
            assert_eq!(x.validation, y.validation, "Model {} {:?}", a.model, x.classifier);
            compared += 1;
        }
    }
    assert!(compared >= 6, "{compared} classifiers compared");

    // The held-out site, attacked as a malicious coordinator would: it scores a fitted model
    // only with every fitting site's attestation for that very task.
    let analysis_id = fedrad_shared::plan::held_out_study_id("loho", left_out);
    let analysis_plan = plan.held_out_analysis(left_out).unwrap();
    let engine = |site: &str| agents.iter().find(|a| a.engine.config.site_id == site).unwrap().engine.clone();
    let held_out = engine(left_out);
    let file: ModelFile = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("study/leave-one-hospital-out").join(left_out).join(&analysis.models[0].classifiers[0].model_file)).unwrap(),
    )
    .unwrap();
    assert_eq!(file.study_id, analysis_id);
    let design = proto::ModelDesign {
        features: Some(proto::FeatureColumns { sequence: file.sequence.clone(), catalogue_sha256: file.catalogue_sha256.clone(), columns: file.feature_columns.clone() }),
        variables: Vec::new(),
        clinical_columns: Vec::new(),
    };
    let score = |scorer: &Scorer, attestations: Vec<proto::ScoreAttestation>| {
        task::Kind::Score(proto::ScoreTask {
            design: Some(design.clone()),
            standardiser: Some(file.standardiser.to_proto()),
            scorers: vec![scorer.to_proto()],
            grid: fedrad_shared::algorithms::metrics::DEFAULT_GRID,
            folds: 0,
            attestations,
            per_site: false,
            fit_ends: Vec::new(),
            peers: None,
        })
    };
    // The analysis secure-sums its score rounds: every task carries the fitting sites' keys
    // (the held-out site's too, so that its digest is the one the fitting sites signed).
    let mut fitting = others.clone();
    fitting.sort();
    let directory = server.hub.secure_sum_directory(&fitting).unwrap();
    let task_of = |id: &str, kind: task::Kind| Task {
        task_id: id.into(),
        study_id: analysis_id.clone(),
        kind: Some(kind),
        study_sites: others.clone(),
        plan_sha256: analysis_plan.sha256(),
        secure_sum: Some(directory.clone()),
    };
    // The fitting sites answer a score task of the fitted model (scored before, so again).
    let fitted = task_of("attack-fitted", score(&file.scorer, Vec::new()));
    let attest = |t: &Task| -> Vec<proto::ScoreAttestation> {
        others
            .iter()
            .map(|s| {
                let e = engine(s);
                let reply = e.handle(t);
                let Some(task_reply::Outcome::Aggregate(a)) = &reply.outcome else { panic!("{s} refused the fitted model: {:?}", reply.outcome) };
                proto::ScoreAttestation {
                    site_id: s.clone(),
                    subject_public_key_info: server.hub.secure_sum_directory(std::slice::from_ref(s)).unwrap().sites[0].subject_public_key_info.clone(),
                    answer_sha256: sha256_hex(&a.encode_to_vec()),
                    signature: reply.signature.clone(),
                }
            })
            .collect()
    };
    let attestations = attest(&fitted);
    // Without attestations, or with only some: refused.
    let detail = refusal(held_out.handle(&task_of("attack-bare", score(&file.scorer, Vec::new()))));
    assert!(detail.contains("attestations of every site that fitted it"), "{detail}");
    let detail = refusal(held_out.handle(&task_of("attack-fitted", score(&file.scorer, attestations[1..].to_vec()))));
    assert!(detail.contains("attestations of every site that fitted it"), "{detail}");
    // A coordinator's own one-column "model", with the attestations of the fitted one: the
    // signatures are over another task, so they do not verify.
    let mut columns = vec![0.0; file.feature_columns.len()];
    columns[0] = 40.0;
    let probe = Scorer::Logistic { intercept: 0.0, coefficients: columns };
    let detail = refusal(held_out.handle(&task_of("attack-fitted", score(&probe, attestations.clone()))));
    assert!(detail.contains("attestation"), "{detail}");
    // The fitting sites themselves refuse to score the probe, so it cannot be attested.
    let probe_task = task_of("attack-probe", score(&probe, Vec::new()));
    for s in &others {
        let detail = refusal(engine(s).handle(&probe_task));
        assert!(detail.contains("did not fit"), "{s}: {detail}");
    }
    // The same attestations under another task id do not verify either.
    let detail = refusal(held_out.handle(&task_of("attack-renamed", score(&file.scorer, attestations.clone()))));
    assert!(detail.contains("attestation"), "{detail}");
    // A fitting site is sent no attestations.
    let detail = refusal(engine(&others[0]).handle(&task_of("attack-to-fitting", score(&file.scorer, attestations.clone()))));
    assert!(detail.contains("only to the held-out site"), "{detail}");
    // Nothing but scores from the held-out site.
    let moments = task::Kind::DesignMoments(proto::DesignMomentsTask { design: Some(design.clone()), centre: Vec::new() });
    let detail = refusal(held_out.handle(&task_of("attack-moments", moments)));
    assert!(detail.contains("only scores"), "{detail}");
    // The fitted model, with every fitting site's attestation of this very task: scored.
    let reply = held_out.handle(&task_of("attack-fitted", score(&file.scorer, attestations)));
    assert!(matches!(reply.outcome, Some(task_reply::Outcome::Aggregate(_))), "{:?}", reply.outcome);

    // A study whose plan has no leave-one-hospital-out analyses has none at the sites.
    let detail = refusal(engine(&others[0]).handle(&Task {
        task_id: "attack-no-analyses".into(),
        study_id: fedrad_shared::plan::held_out_study_id("loho-others", left_out),
        kind: Some(task::Kind::Score(proto::ScoreTask::default())),
        study_sites: others.clone(),
        plan_sha256: String::new(),
        secure_sum: None,
    }));
    assert!(detail.contains("not approved"), "{detail}");
    assert!(results.models.iter().any(|m| m.classifiers.iter().any(|c| c.classifier == ClassifierKind::RandomForest)));
}
