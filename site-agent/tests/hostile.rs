//! A hostile or buggy coordinator: every malformed, out-of-range or over-small request is
//! refused with a typed reason, nothing panics, and the site keeps serving valid tasks.
//! (`cargo test hostile` runs this.)

use fedrad_shared::proto::{self, RefusalReason, task, task_reply};

mod common;

fn refusal(engine: &site_agent::engine::SiteEngine, id: &str, kind: Option<task::Kind>) -> (RefusalReason, String) {
    let reply = engine.handle(&proto::Task { task_id: id.into(), study_id: "hostile".into(), kind });
    match reply.outcome {
        Some(task_reply::Outcome::Refusal(r)) => (RefusalReason::try_from(r.reason).unwrap(), r.detail),
        other => panic!("{id}: expected a refusal, got {other:?}"),
    }
}

fn answered(engine: &site_agent::engine::SiteEngine, id: &str, kind: task::Kind) -> proto::Aggregate {
    let reply = engine.handle(&proto::Task { task_id: id.into(), study_id: "hostile".into(), kind: Some(kind) });
    match reply.outcome {
        Some(task_reply::Outcome::Aggregate(a)) => a,
        other => panic!("{id}: expected an aggregate, got {other:?}"),
    }
}

#[test]
fn hostile_requests_are_refused_and_the_site_keeps_serving() {
    let dir = common::fresh_dir("hostile");
    let cohort = common::one_hospital(&dir.join("cohort"), 9, 100);
    let cfg = common::local_config(&cohort.manifests[0].1, &dir);
    let engine = site_agent::load_engine(cfg).unwrap();
    use RefusalReason::*;

    // Before any split or features: preconditions.
    let columns = |digest: &str, cols: Vec<u32>| proto::FeatureColumns { sequence: "t2".into(), catalogue_sha256: digest.into(), columns: cols };
    let moments = |digest: &str, cols: Vec<u32>| Some(task::Kind::FeatureMoments(proto::FeatureMomentsTask { features: Some(columns(digest, cols)) }));
    assert_eq!(refusal(&engine, "m0", moments("x", vec![0])).0, Precondition);
    assert_eq!(refusal(&engine, "unknown", None).0, InvalidParameters);

    let n = engine.cohort.records.len() as u64;
    let pos = engine.cohort.records.iter().filter(|r| r.outcome).count() as u64;
    answered(&engine, "split", task::Kind::Split(proto::SplitTask { seed: 1, training_quota_negative: (n - pos) * 7 / 10, training_quota_positive: pos * 7 / 10 }));
    answered(&engine, "extract", task::Kind::ExtractFeatures(proto::ExtractFeaturesTask { parameters_yaml: String::new() }));
    let table = site_agent::selection::load_table(&dir.join("work/studies/hostile"), "t2").unwrap();
    let digest = table.digest.clone();
    let p = table.names.len() as u32;

    // Features: wrong catalogue, columns outside the table, unknown sequence.
    assert_eq!(refusal(&engine, "m1", moments("0123", vec![0])).0, Precondition);
    assert_eq!(refusal(&engine, "m2", moments(&digest, vec![p + 5])).0, InvalidParameters);
    let mut flair = columns(&digest, vec![0]);
    flair.sequence = "../../etc".into();
    assert_eq!(refusal(&engine, "m3", Some(task::Kind::FeatureMoments(proto::FeatureMomentsTask { features: Some(flair) }))).0, InvalidParameters);

    // Tiny subsets: 50 folds of ~1 patient, a grid of 3 cells.
    let (reason, detail) = refusal(&engine, "folds50", Some(task::Kind::Folds(proto::FoldsTask { seed: 1, folds: 50 })));
    assert_eq!(reason, BelowMinCount, "{detail}");
    assert_eq!(refusal(&engine, "folds0", Some(task::Kind::Folds(proto::FoldsTask { seed: 1, folds: 0 }))).0, InvalidParameters);
    answered(&engine, "folds", task::Kind::Folds(proto::FoldsTask { seed: 1, folds: 3 }));
    // Folds are fixed for the study once recorded.
    assert_eq!(refusal(&engine, "folds-again", Some(task::Kind::Folds(proto::FoldsTask { seed: 2, folds: 3 }))).0, Precondition);

    // LASSO points: a fold that does not exist, unsorted positions, NaN, no standardiser, too many points.
    let std = proto::Standardiser { center: vec![0.0; 3], scale: vec![1.0; 3] };
    let lasso = |points: Vec<proto::GlmPoint>, std: Option<proto::Standardiser>| {
        Some(task::Kind::LassoRound(proto::LassoRoundTask {
            features: Some(columns(&digest, vec![0, 1, 2])),
            standardiser: std,
            family: proto::GlmFamily::Binomial as i32,
            mixing: 1.0,
            points,
        }))
    };
    let point = |fold: u32, nonzero: Vec<u32>, coefficients: Vec<f64>| proto::GlmPoint { fold, intercept: 0.0, nonzero, coefficients, hessian: vec![] };
    assert_eq!(refusal(&engine, "l1", lasso(vec![point(9, vec![], vec![])], Some(std.clone()))).0, InvalidParameters);
    assert_eq!(refusal(&engine, "l2", lasso(vec![point(0, vec![2, 1], vec![1.0, 1.0])], Some(std.clone()))).0, InvalidParameters);
    assert_eq!(refusal(&engine, "l3", lasso(vec![point(0, vec![1], vec![f64::NAN])], Some(std.clone()))).0, InvalidParameters);
    assert_eq!(refusal(&engine, "l4", lasso(vec![point(0, vec![], vec![])], None)).0, InvalidParameters);
    let bad_scale = proto::Standardiser { center: vec![0.0; 3], scale: vec![0.0; 3] };
    assert_eq!(refusal(&engine, "l5", lasso(vec![point(0, vec![], vec![])], Some(bad_scale))).0, InvalidParameters);
    assert_eq!(refusal(&engine, "l6", lasso(vec![point(0, vec![], vec![]); 100_001], Some(std.clone()))).0, InvalidParameters);

    // Models: more parameters than the policy allows per patient, a made-up clinical variable.
    let wide = proto::ModelDesign { features: Some(columns(&digest, (0..40).collect())), variables: vec![], clinical_columns: vec![] };
    let (reason, detail) = refusal(
        &engine,
        "wide",
        Some(task::Kind::ClassifierRound(proto::ClassifierRoundTask {
            design: Some(wide),
            standardiser: Some(proto::Standardiser { center: vec![0.0; 40], scale: vec![1.0; 40] }),
            objective: proto::ClassifierObjective::SquaredHinge as i32,
            parameters: vec![0.0; 41],
            svm: vec![],
        })),
    );
    assert_eq!(reason, InvalidParameters, "{detail}");
    assert!(detail.contains("parameters"), "{detail}");
    let fake = proto::ClinicalVariable { name: "salary".into(), kind: Some(proto::clinical_variable::Kind::Continuous(proto::ContinuousGrid { resolution: 1.0 })) };
    let logistic = Some(task::Kind::LogisticRound(proto::LogisticRoundTask { variables: vec![fake], models: vec![proto::ClinicalModel { columns: vec![0], coefficients: vec![0.0, 0.0] }] }));
    assert_eq!(refusal(&engine, "salary", logistic).0, InvalidParameters);

    // The site still answers a valid request, and every refusal is in the audit log.
    let a = answered(&engine, "m-ok", moments(&digest, vec![0, 1, 2]).unwrap());
    assert_eq!(a.patient_count, (n - pos) * 7 / 10 + pos * 7 / 10, "the training cohort");
    let log = site_agent::audit::verify(&dir.join("work/audit.jsonl")).unwrap();
    assert!(log.iter().filter(|e| e.outcome == "refused").count() >= 15);
    let _ = std::fs::remove_dir_all(&dir);
}
