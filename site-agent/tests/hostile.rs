//! A hostile or buggy coordinator: every malformed, out-of-range or over-small request is
//! refused with a typed reason, nothing panics, and the site keeps serving valid tasks.
//! (`cargo test hostile` runs this.) The study is approved with settings that let the
//! malformed requests reach the checks below the plan's (`tests/attacks.rs` tries what the
//! plan itself stops).

use fedrad_shared::plan::StudyPlan;
use fedrad_shared::proto::{self, RefusalReason, task, task_reply};

mod common;

/// The plan of the hostile tests: two folds (a small cohort), a small encoder, 400 random
/// features (to meet the parameter ratio), hyperparameter search on, seeds 1.
fn hostile_plan(cfg: &site_agent::config::SiteConfig) -> StudyPlan {
    common::approve(cfg, "hostile", |s| {
        s.selection.lasso.folds = 2;
        s.models.search.enabled = true;
        s.models.rbf_svm = fedrad_shared::plan::RbfSvmSettings { features: 400, gamma: 0.3, c: 1.0, seed: 1 };
        s.models.forest.seed = 1;
        s.deep = fedrad_shared::plan::DeepSettings { rounds: 1, crop: 16, field_mm: 48.0, channels: [2, 3], embedding: 8, batch_size: 5, ..Default::default() };
    })
}

fn refusal(engine: &site_agent::engine::SiteEngine, plan: &StudyPlan, id: &str, kind: Option<task::Kind>) -> (RefusalReason, String) {
    let reply = engine.handle(&common::task(plan, id, kind));
    match reply.outcome {
        Some(task_reply::Outcome::Refusal(r)) => (RefusalReason::try_from(r.reason).unwrap(), r.detail),
        other => panic!("{id}: expected a refusal, got {other:?}"),
    }
}

fn answered(engine: &site_agent::engine::SiteEngine, plan: &StudyPlan, id: &str, kind: task::Kind) -> proto::Aggregate {
    let reply = engine.handle(&common::task(plan, id, Some(kind)));
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
    let plan = hostile_plan(&cfg);
    let engine = site_agent::load_engine(cfg).unwrap();
    use RefusalReason::*;

    // Before any split or features: preconditions.
    let columns = |digest: &str, cols: Vec<u32>| proto::FeatureColumns { sequence: "t2".into(), catalogue_sha256: digest.into(), columns: cols };
    let moments =
        |digest: &str, cols: Vec<u32>| Some(task::Kind::FeatureMoments(proto::FeatureMomentsTask { features: Some(columns(digest, cols)), centre: Vec::new() }));
    assert_eq!(refusal(&engine, &plan, "m0", moments("x", vec![0])).0, Precondition);
    assert_eq!(refusal(&engine, &plan, "unknown", None).0, InvalidParameters);

    let n = engine.cohort.records.len() as u64;
    let pos = engine.cohort.records.iter().filter(|r| r.outcome).count() as u64;
    answered(
        &engine,
        &plan,
        "split",
        task::Kind::Split(proto::SplitTask { seed: 1, training_quota_negative: (n - pos) * 7 / 10, training_quota_positive: pos * 7 / 10 }),
    );
    answered(&engine, &plan, "extract", task::Kind::ExtractFeatures(proto::ExtractFeaturesTask { parameters_yaml: String::new() }));
    let table = site_agent::selection::load_table(&dir.join("work/studies/hostile"), "t2", false).unwrap();
    let digest = table.digest.clone();
    let p = table.names.len() as u32;

    // Features: wrong catalogue, columns outside the table, unknown sequence.
    assert_eq!(refusal(&engine, &plan, "m1", moments("0123", vec![0])).0, Precondition);
    assert_eq!(refusal(&engine, &plan, "m2", moments(&digest, vec![p + 5])).0, InvalidParameters);
    let mut flair = columns(&digest, vec![0]);
    flair.sequence = "../../etc".into();
    assert_eq!(
        refusal(&engine, &plan, "m3", Some(task::Kind::FeatureMoments(proto::FeatureMomentsTask { features: Some(flair), centre: Vec::new() }))).0,
        InvalidParameters
    );

    // Folds other than the plan's: 50 folds of ~1 patient, none, another seed.
    let (reason, detail) = refusal(&engine, &plan, "folds50", Some(task::Kind::Folds(proto::FoldsTask { seed: 1, folds: 50 })));
    assert_eq!(reason, InvalidParameters, "{detail}");
    assert!(detail.contains("study plan"), "{detail}");
    assert_eq!(refusal(&engine, &plan, "folds0", Some(task::Kind::Folds(proto::FoldsTask { seed: 1, folds: 0 }))).0, InvalidParameters);
    answered(&engine, &plan, "folds", task::Kind::Folds(proto::FoldsTask { seed: 1, folds: 2 }));
    assert_eq!(refusal(&engine, &plan, "folds-again", Some(task::Kind::Folds(proto::FoldsTask { seed: 2, folds: 2 }))).0, InvalidParameters);

    // LASSO points: a fold that does not exist, unsorted positions, NaN, no standardiser, too many points.
    let std = common::standardiser_of(&table, &[0, 1, 2]);
    let lasso = |points: Vec<proto::GlmPoint>, std: Option<proto::Standardiser>| {
        Some(task::Kind::LassoRound(proto::LassoRoundTask {
            features: Some(columns(&digest, vec![0, 1, 2])),
            standardiser: std,
            family: proto::GlmFamily::Binomial as i32,
            mixing: 1.0,
            points,
            ..Default::default()
        }))
    };
    let point = |fold: u32, nonzero: Vec<u32>, coefficients: Vec<f64>| proto::GlmPoint {
        fold,
        intercept: 0.0,
        nonzero,
        coefficients,
        gradient_all_columns: true,
        ..Default::default()
    };
    assert_eq!(refusal(&engine, &plan, "l1", lasso(vec![point(9, vec![], vec![])], Some(std.clone()))).0, InvalidParameters);
    assert_eq!(refusal(&engine, &plan, "l2", lasso(vec![point(0, vec![2, 1], vec![1.0, 1.0])], Some(std.clone()))).0, InvalidParameters);
    assert_eq!(refusal(&engine, &plan, "l3", lasso(vec![point(0, vec![1], vec![f64::NAN])], Some(std.clone()))).0, InvalidParameters);
    assert_eq!(refusal(&engine, &plan, "l4", lasso(vec![point(0, vec![], vec![])], None)).0, InvalidParameters);
    let bad_scale = proto::Standardiser { center: vec![0.0; 3], scale: vec![0.0; 3] };
    assert_eq!(refusal(&engine, &plan, "l5", lasso(vec![point(0, vec![], vec![])], Some(bad_scale))).0, InvalidParameters);
    assert_eq!(refusal(&engine, &plan, "l6", lasso(vec![point(0, vec![], vec![]); 100_001], Some(std.clone()))).0, InvalidParameters);

    // Models: more parameters than the policy allows per patient, a made-up clinical variable.
    let wide = proto::ModelDesign { features: Some(columns(&digest, (0..40).collect())), variables: vec![], clinical_columns: vec![] };
    let (reason, detail) = refusal(
        &engine,
        &plan,
        "wide",
        Some(task::Kind::ClassifierRound(proto::ClassifierRoundTask {
            design: Some(wide),
            standardiser: Some(common::standardiser_of(&table, &(0..40).collect::<Vec<_>>())),
            objective: proto::ClassifierObjective::SquaredHinge as i32,
            parameters: vec![0.0; 41],
            svm: vec![],
            random_features: None,
            exclude_fold: 0,
            ..Default::default()
        })),
    );
    assert_eq!(reason, InvalidParameters, "{detail}");
    assert!(detail.contains("parameters"), "{detail}");
    // An RBF SVM with as many random features as patients: each feature is a parameter.
    let narrow = proto::ModelDesign { features: Some(columns(&digest, vec![0, 1, 2])), variables: vec![], clinical_columns: vec![] };
    let (reason, detail) = refusal(
        &engine,
        &plan,
        "rff",
        Some(task::Kind::ClassifierRound(proto::ClassifierRoundTask {
            design: Some(narrow.clone()),
            standardiser: Some(std.clone()),
            objective: proto::ClassifierObjective::SquaredHinge as i32,
            parameters: vec![0.0; 401],
            svm: vec![],
            random_features: Some(proto::RandomFeatures { count: 400, seed: 1, gamma: 0.3 }),
            exclude_fold: 0,
            ..Default::default()
        })),
    );
    assert_eq!(reason, InvalidParameters, "{detail}");
    assert!(detail.contains("parameters"), "{detail}");

    // Cross-validation: a fold the site never recorded.
    let (reason, detail) = refusal(
        &engine,
        &plan,
        "cv-fold",
        Some(task::Kind::ClassifierRound(proto::ClassifierRoundTask {
            design: Some(narrow.clone()),
            standardiser: Some(std.clone()),
            objective: proto::ClassifierObjective::Logistic as i32,
            parameters: vec![0.0; 4],
            svm: vec![],
            random_features: None,
            exclude_fold: 99,
            ..Default::default()
        })),
    );
    assert_eq!(reason, Precondition, "{detail}");

    // Trees: a request for a node that is not a leaf, a column outside the design, a tree whose
    // child points back at its parent, unsorted edges, and a round bigger than the site answers.
    let tree = |growing: Vec<f64>, nodes: Vec<proto::NodeRequest>, edges: Vec<f64>| {
        Some(task::Kind::TreeRound(proto::TreeRoundTask {
            design: Some(narrow.clone()),
            standardiser: Some(std.clone()),
            objective: proto::TreeObjective::ForestCounts as i32,
            edges: vec![proto::BinEdges { edges }; 3],
            growing,
            nodes,
            seed: 1,
            base_margin: 0.0,
            ensemble: vec![],
            ..Default::default()
        }))
    };
    let root_only = vec![1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.5];
    let split = vec![1.0, 3.0, 0.0, 0.0, 1.0, 2.0, 0.5, -1.0, 0.0, 0.0, 0.0, 0.4, -1.0, 0.0, 0.0, 0.0, 0.6];
    let request = |node: u32, columns: Vec<u32>| vec![proto::NodeRequest { tree: 0, node, columns }];
    assert_eq!(refusal(&engine, &plan, "t1", tree(split.clone(), request(0, vec![0]), vec![0.0])).0, InvalidParameters);
    assert_eq!(refusal(&engine, &plan, "t2", tree(root_only.clone(), request(0, vec![3]), vec![0.0])).0, InvalidParameters);
    let cycle = vec![1.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.5, -1.0, 0.0, 0.0, 0.0, 0.4];
    assert_eq!(refusal(&engine, &plan, "t3", tree(cycle, request(1, vec![0]), vec![0.0])).0, InvalidParameters);
    assert_eq!(refusal(&engine, &plan, "t4", tree(root_only.clone(), request(0, vec![0]), vec![1.0, 0.0])).0, InvalidParameters);
    let many: Vec<proto::NodeRequest> = (0..3000).map(|t| proto::NodeRequest { tree: t, node: 0, columns: vec![0, 1, 2] }).collect();
    let forest: Vec<f64> = std::iter::once(3000.0).chain((0..3000).flat_map(|_| root_only[1..].to_vec())).collect();
    let edges: Vec<f64> = (0..1000).map(|k| k as f64 * 0.01).collect();
    assert_eq!(refusal(&engine, &plan, "t5", tree(forest, many, edges)).0, InvalidParameters);
    // A root request the study's grower asks is answered (and not one it does not ask).
    let (_, first) = common::first_tree_round(&engine, &plan, &narrow, &std, |kind| answered(&engine, &plan, "t-counts", kind));
    let bins: usize = first.nodes[0].columns.iter().map(|&c| first.edges[c as usize].edges.len() + 1).sum();
    let a = answered(&engine, &plan, "t-ok", task::Kind::TreeRound(first));
    assert_eq!(a.tensors.iter().find(|t| t.name == "histogram").unwrap().values.len(), 3 * bins);
    let fake = proto::ClinicalVariable { name: "salary".into(), kind: Some(proto::clinical_variable::Kind::Continuous(proto::ContinuousGrid { resolution: 1.0 })) };
    let logistic = Some(task::Kind::LogisticRound(proto::LogisticRoundTask {
        variables: vec![fake],
        models: vec![proto::ClinicalModel { columns: vec![0], coefficients: vec![0.0, 0.0] }],
    }));
    assert_eq!(refusal(&engine, &plan, "salary", logistic).0, InvalidParameters);

    // Deep features: weights that do not fit the architecture, non-finite weights, a crop
    // size the encoder does not support, weights that do not match their SHA-256, an
    // absurd learning rate, a validation-free site too small for training.
    use fedrad_shared::algorithms::encoder::Architecture;
    let arch = Architecture { crop: 16, field_mm: 48.0, channels: [2, 3], embedding: 8 };
    let arch_proto = |a: &Architecture| proto::EncoderArchitecture {
        crop_pixels: a.crop as u32,
        field_mm: a.field_mm,
        channels: a.channels.iter().map(|&c| c as u32).collect(),
        embedding_dim: a.embedding as u32,
    };
    let w = arch.initial_weights(1);
    let round = |a: proto::EncoderArchitecture, weights: Vec<f64>, lr: f64| {
        Some(task::Kind::EncoderRound(proto::EncoderRoundTask {
            sequence: "t2".into(),
            architecture: Some(a),
            weights,
            round: 1,
            local_epochs: 1,
            batch_size: 5,
            learning_rate: lr,
            momentum: 0.9,
            proximal_mu: 0.0,
            mask_fraction: 0.25,
            seed: 1,
            ..Default::default()
        }))
    };
    assert_eq!(refusal(&engine, &plan, "e1", round(arch_proto(&arch), w[1..].to_vec(), 0.1)).0, InvalidParameters);
    let mut nan = w.clone();
    nan[3] = f64::NAN;
    assert_eq!(refusal(&engine, &plan, "e2", round(arch_proto(&arch), nan, 0.1)).0, InvalidParameters);
    let odd = Architecture { crop: 30, ..arch };
    assert_eq!(refusal(&engine, &plan, "e3", round(arch_proto(&odd), vec![0.0; odd.parameter_count()], 0.1)).0, InvalidParameters);
    assert_eq!(refusal(&engine, &plan, "e4", round(arch_proto(&arch), w.clone(), 1e6)).0, InvalidParameters);
    let trained = answered(&engine, &plan, "e-ok", round(arch_proto(&arch), w.clone(), 0.1).unwrap());
    assert_eq!(trained.tensors.iter().find(|t| t.name == "weights_times_patients").unwrap().values.len(), w.len());
    // The study's final weights: the average of the sites' answers to the last round (here
    // one site and one round), which the embedding task carries.
    let site_id = engine.config.site_id.clone();
    let sum = fedrad_shared::aggregate::SiteAggregate::new(site_id.clone(), trained.clone());
    let w = fedrad_shared::algorithms::fedavg::combine(&[sum], w.len(), 1).unwrap().0;
    let weights_digest = fedrad_shared::algorithms::fedavg::weights_sha256(&w);
    let last = vec![proto::SignedAnswer { site_id, aggregate: Some(trained), signature: Vec::new() }];
    let embed = |weights: Vec<f64>, sha: String| {
        Some(task::Kind::Embed(proto::EmbedTask {
            sequence: "t2".into(),
            architecture: Some(arch_proto(&arch)),
            weights,
            weights_sha256: sha,
            previous: last.clone(),
            peers: None,
        }))
    };
    let mut tampered = w.clone();
    tampered[0] += 1e-9;
    let (reason, detail) = refusal(&engine, &plan, "e5", embed(tampered, weights_digest.clone()));
    assert_eq!(reason, InvalidParameters);
    assert!(detail.contains("SHA-256"), "{detail}");
    assert!(!dir.join("work/studies/hostile/features/t2.deep.csv").exists(), "tampered weights write nothing");
    let a = answered(&engine, &plan, "e-embed", embed(w.clone(), weights_digest).unwrap());
    assert_eq!(a.tensors.iter().find(|t| t.name == "embedded").unwrap().values, vec![n as f64]);
    let joined = site_agent::selection::load_table(&dir.join("work/studies/hostile"), "t2+deep", false).unwrap();
    assert_eq!(joined.names.len(), p as usize + 8);
    assert_eq!(joined.rows.len() as u64, n);

    // The site still answers a valid request, and every refusal is in the audit log.
    let a = answered(&engine, &plan, "m-ok", moments(&digest, vec![0, 1, 2]).unwrap());
    assert_eq!(a.patient_count, (n - pos) * 7 / 10 + pos * 7 / 10, "the training cohort");
    let log = site_agent::audit::verify(&dir.join("work/audit.jsonl")).unwrap();
    assert!(log.iter().filter(|e| e.outcome == "refused").count() >= 26);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_task_kinds_outside_the_sites_allow_list_are_refused() {
    let dir = common::fresh_dir("hostile-allow");
    let cohort = common::one_hospital(&dir.join("cohort"), 3, 40);
    let mut cfg = common::local_config(&cohort.manifests[0].1, &dir);
    cfg.policy.answers = Some(vec!["cohort_summary".into()]);
    cfg.validate().unwrap();
    let plan = common::approve(&cfg, "hostile", |_| {});
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    answered(&engine, &plan, "summary", task::Kind::CohortSummary(proto::CohortSummaryTask {}));
    let (reason, detail) =
        refusal(&engine, &plan, "split", Some(task::Kind::Split(proto::SplitTask { seed: 1, training_quota_negative: 10, training_quota_positive: 5 })));
    assert_eq!(reason, RefusalReason::Precondition);
    assert!(detail.contains("does not answer split"), "{detail}");
    assert!(!dir.join("work/studies/hostile/split.csv").exists(), "a refused split records nothing");
    // A misspelt kind in the policy is a configuration error naming it.
    cfg.policy.answers = Some(vec!["tree_rounds".into()]);
    assert!(cfg.validate().unwrap_err().contains("tree_rounds"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_a_study_with_too_few_sites_is_refused_by_a_min_sites_policy() {
    let dir = common::fresh_dir("hostile-min-sites");
    let cohort = common::one_hospital(&dir.join("cohort"), 3, 40);
    let mut cfg = common::local_config(&cohort.manifests[0].1, &dir);
    cfg.policy.min_sites = 3;
    cfg.validate().unwrap();
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    let summary = Some(task::Kind::CohortSummary(proto::CohortSummaryTask {}));
    let sites = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Two sites, or the same site named twice: refused even though approved.
    for (id, list) in [("two", &["hospital-a", "hospital-b"][..]), ("dup", &["hospital-a", "hospital-b", "hospital-b"])] {
        let plan = common::approve(&cfg, id, |s| s.sites = sites(list));
        match engine.handle(&common::task(&plan, id, summary.clone())).outcome {
            Some(task_reply::Outcome::Refusal(r)) => {
                assert_eq!(RefusalReason::try_from(r.reason).unwrap(), RefusalReason::Precondition);
                assert!(r.detail.contains("at least 3 sites"), "{}", r.detail);
            }
            other => panic!("{id}: expected a refusal, got {other:?}"),
        }
    }
    // A plan without this site cannot be approved here.
    let other = fedrad_shared::plan::StudyConfig {
        sites: sites(&["x-1", "x-2", "x-3"]),
        ..toml::from_str("study_id = \"absent\"\noutput_dir = \"o\"\nseed = 1\nsites = [\"x\"]").unwrap()
    };
    assert!(site_agent::approval::approve(&cfg.work_dir, "hospital-a", &cfg.schema(), &other.plan().unwrap(), None).is_err());
    let plan = common::approve(&cfg, "three", |s| s.sites = sites(&["hospital-a", "hospital-b", "hospital-c"]));
    assert!(matches!(engine.handle(&common::task(&plan, "three", summary.clone())).outcome, Some(task_reply::Outcome::Aggregate(_))));
    // A task that declares other sites than its approved plan: refused.
    let mut t = common::task(&plan, "three-b", summary);
    t.study_sites = sites(&["hospital-a", "hospital-b", "hospital-c", "hospital-d"]);
    match engine.handle(&t).outcome {
        Some(task_reply::Outcome::Refusal(r)) => assert!(r.detail.contains("declares the sites"), "{}", r.detail),
        other => panic!("expected a refusal, got {other:?}"),
    }
    cfg.policy.min_sites = 0;
    assert!(cfg.validate().unwrap_err().contains("min_sites"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bounded mutation fuzz of protocol decoding at the site: valid tasks are encoded, damaged
/// (flipped bytes, truncation, inserted garbage) and, when they still decode, handled. Every
/// one ends in an answer, a refusal or a failure — never a panic — and the site then still
/// answers a valid task.
#[test]
fn hostile_mutated_task_bytes_never_crash_the_site() {
    use prost::Message;
    let dir = common::fresh_dir("hostile-mutated");
    let cohort = common::one_hospital(&dir.join("cohort"), 9, 200);
    let cfg = common::local_config(&cohort.manifests[0].1, &dir);
    let plan = hostile_plan(&cfg);
    let engine = site_agent::load_engine(cfg).unwrap();
    let n = engine.cohort.records.len() as u64;
    let pos = engine.cohort.records.iter().filter(|r| r.outcome).count() as u64;
    let split = task::Kind::Split(proto::SplitTask { seed: 1, training_quota_negative: (n - pos) * 7 / 10, training_quota_positive: pos * 7 / 10 });
    answered(&engine, &plan, "split", split.clone());
    answered(&engine, &plan, "extract", task::Kind::ExtractFeatures(proto::ExtractFeaturesTask { parameters_yaml: String::new() }));
    answered(&engine, &plan, "folds", task::Kind::Folds(proto::FoldsTask { seed: 1, folds: 2 }));
    let table = site_agent::selection::load_table(&dir.join("work/studies/hostile"), "t2", false).unwrap();
    let features = proto::FeatureColumns { sequence: "t2".into(), catalogue_sha256: table.digest.clone(), columns: vec![0, 1, 2] };
    let design = proto::ModelDesign { features: Some(features.clone()), variables: vec![], clinical_columns: vec![] };
    let std = common::standardiser_of(&table, &[0, 1, 2]);
    // The study's logistic fit of the design, to its end (a one-site study: the site's answers
    // are the sums, each round forwarding its answer to the one before).
    let first_round = proto::ClassifierRoundTask {
        design: Some(design.clone()),
        standardiser: Some(std.clone()),
        objective: proto::ClassifierObjective::Logistic as i32,
        penalty: plan.models.logistic.c,
        ..Default::default()
    };
    let (fitted, end) = {
        use fedrad_shared::algorithms::classifiers::{NewtonMinimiser, NewtonObjective};
        let objective = NewtonObjective::RidgeLogistic { c: plan.models.logistic.c };
        let mut newton = NewtonMinimiser::new(objective.start(4));
        let mut previous = Vec::new();
        let mut round = 0;
        while let Some(x) = newton.request() {
            let x = x.to_vec();
            let kind = task::Kind::ClassifierRound(proto::ClassifierRoundTask { parameters: x.clone(), previous, ..first_round.clone() });
            let answer = answered(&engine, &plan, &format!("fit-{round}"), kind);
            round += 1;
            let site = engine.config.site_id.clone();
            newton.absorb(objective.totals(&[fedrad_shared::aggregate::SiteAggregate::new(site.clone(), answer.clone())], &x).unwrap());
            previous = vec![proto::SignedAnswer { site_id: site, aggregate: Some(answer), signature: Vec::new() }];
        }
        (newton.finish().unwrap().0, proto::FitEnd { scorer: 0, min_leaf: 0, previous, penalty: plan.models.logistic.c })
    };
    let seeds = [
        task::Kind::FeatureMoments(proto::FeatureMomentsTask { features: Some(features.clone()), centre: Vec::new() }),
        // The study's first tree round (answered after the design's value counts).
        task::Kind::TreeRound(common::first_tree_round(&engine, &plan, &design, &std, |kind| answered(&engine, &plan, "counts", kind)).1),
        // The fit's final model, with the fit's end: a site scores only what its fits reached.
        task::Kind::Score(proto::ScoreTask {
            design: Some(design.clone()),
            standardiser: Some(std.clone()),
            scorers: vec![proto::ScorerSpec { kind: proto::ScorerKind::Logistic as i32, parameters: fitted, random_features: None }],
            grid: fedrad_shared::algorithms::metrics::DEFAULT_GRID,
            folds: 0,
            attestations: Vec::new(),
            per_site: false,
            fit_ends: vec![end],
            peers: None,
        }),
        // A fit's first round (recomputed: the only point a fit starts from; it starts the fit
        // again, so it comes after the score of the fit's end).
        task::Kind::ClassifierRound(proto::ClassifierRoundTask { parameters: vec![0.0; 4], previous: Vec::new(), ..first_round }),
    ];
    for (k, seed) in seeds.iter().enumerate() {
        answered(&engine, &plan, &format!("seed-{k}"), seed.clone());
    }
    let mut state = 0x5851_f42d_4c95_7f2du64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut decoded, mut answered_ok) = (0, 0);
    for i in 0..3000 {
        let seed = &seeds[i % seeds.len()];
        let mut bytes = common::task(&plan, &format!("fuzz-{i}"), Some(seed.clone())).encode_to_vec();
        match next(4) {
            // One flipped bit: usually still a valid message, with a changed value.
            3 => {
                let k = next(bytes.len());
                bytes[k] ^= 1 << next(8);
            }
            0 => {
                for _ in 0..1 + next(6) {
                    let k = next(bytes.len());
                    bytes[k] = next(256) as u8;
                }
            }
            1 => bytes.truncate(next(bytes.len())),
            _ => {
                let at = next(bytes.len());
                let junk: Vec<u8> = (0..1 + next(24)).map(|_| next(256) as u8).collect();
                bytes.splice(at..at, junk);
            }
        }
        let Ok(task) = proto::Task::decode(bytes.as_slice()) else { continue };
        decoded += 1;
        let reply = engine.handle(&task);
        assert_eq!(reply.task_id, task.task_id);
        assert!(reply.outcome.is_some());
        answered_ok += usize::from(matches!(reply.outcome, Some(task_reply::Outcome::Aggregate(_))));
    }
    assert!(decoded > 300, "only {decoded} damaged tasks decoded");
    assert!(answered_ok > 0 && answered_ok < decoded, "{answered_ok} of {decoded} answered");
    answered(&engine, &plan, "after", task::Kind::CohortSummary(proto::CohortSummaryTask {}));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A study with leave-one-hospital-out analyses publishes each site's aggregates (the study's
/// sums minus the analysis's without that site), so a site takes part only if its policy says
/// so; in an analysis it refuses what belongs to the study, and left out it only scores, and
/// only with pinned keys to check the attestations against.
#[test]
fn hostile_leave_one_hospital_out_needs_the_sites_consent_and_its_analysis_rules() {
    let dir = common::fresh_dir("hostile-loho");
    let cohort = common::one_hospital(&dir.join("cohort"), 3, 40);
    let four: Vec<String> = ["hospital-a", "hospital-b", "hospital-c", "hospital-d"].iter().map(|s| s.to_string()).collect();
    let pki = fedrad_shared::pki::StudyPki::init_with_enrolled_sites(&dir.join("pki"), "loho", &["localhost".into()], &four).unwrap();
    let pins = pki.current_pins().unwrap();
    let mut cfg = common::local_config(&cohort.manifests[0].1, &dir);
    cfg.tls = Some(fedrad_shared::tls::TlsFiles::bundle(&pki.site_bundle("hospital-a")));
    let plan = common::approve(&cfg, "loho", |s| {
        s.sites = four.clone();
        s.validation.leave_one_hospital_out = true;
        s.secure_aggregation.site_keys = pins.clone();
    });
    let summary = Some(task::Kind::CohortSummary(proto::CohortSummaryTask {}));
    let refused = |engine: &site_agent::engine::SiteEngine, t: &proto::Task| match engine.handle(t).outcome {
        Some(task_reply::Outcome::Refusal(r)) => r.detail,
        other => panic!("{}: expected a refusal, got {other:?}", t.task_id),
    };
    // The default policy: the study itself is refused, and so are its analyses.
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    assert!(refused(&engine, &common::task(&plan, "study", summary.clone())).contains("policy.leave_one_hospital_out"));
    let without_b = plan.held_out_analysis("hospital-b").unwrap();
    assert!(refused(&engine, &common::task(&without_b, "analysis", summary.clone())).contains("policy.leave_one_hospital_out"));
    drop(engine);
    // Consenting: the study is answered; an analysis refuses the study's own kinds.
    cfg.policy.leave_one_hospital_out = true;
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    assert!(matches!(engine.handle(&common::task(&plan, "study-2", summary.clone())).outcome, Some(task_reply::Outcome::Aggregate(_))));
    assert!(refused(&engine, &common::task(&without_b, "analysis-2", summary.clone())).contains("belong to the study"));
    let split = Some(task::Kind::Split(proto::SplitTask { seed: 1, training_quota_negative: 1, training_quota_positive: 1 }));
    assert!(refused(&engine, &common::task(&without_b, "analysis-split", split)).contains("belong to the study"));
    // Left out: nothing but scores, and those only with every fitting site's attestation.
    let without_a = plan.held_out_analysis("hospital-a").unwrap();
    assert!(refused(&engine, &common::task(&without_a, "held-out-summary", summary)).contains("only scores"));
    let score = Some(task::Kind::Score(proto::ScoreTask {
        design: Some(proto::ModelDesign {
            features: Some(proto::FeatureColumns { sequence: "t2".into(), catalogue_sha256: "0".repeat(64), columns: vec![0] }),
            variables: Vec::new(),
            clinical_columns: Vec::new(),
        }),
        standardiser: Some(proto::Standardiser { center: vec![0.0], scale: vec![1.0] }),
        scorers: vec![proto::ScorerSpec { kind: proto::ScorerKind::Logistic as i32, parameters: vec![0.0, 1.0], random_features: None }],
        grid: fedrad_shared::algorithms::metrics::DEFAULT_GRID,
        folds: 0,
        attestations: Vec::new(),
        per_site: false,
        fit_ends: Vec::new(),
        peers: None,
    }));
    let detail = refused(&engine, &common::task(&without_a, "held-out-score", score));
    assert!(detail.contains("attestations of every site that fitted it"), "{detail}");
    // An analysis of a study without such analyses, or of a site the study does not have, is
    // not approved.
    let plain = common::approve(&cfg, "plain", |s| {
        s.sites = four.clone();
        s.secure_aggregation.site_keys = pins.clone();
    });
    let mut t = common::task(&plain, "plain-analysis", Some(task::Kind::CohortSummary(proto::CohortSummaryTask {})));
    t.study_id = fedrad_shared::plan::held_out_study_id("plain", "hospital-b");
    assert!(refused(&engine, &t).contains("not approved"));
    t.study_id = fedrad_shared::plan::held_out_study_id("loho", "hospital-x");
    assert!(refused(&engine, &t).contains("not approved"));
    // Nor can an operator approve a plan under an analysis's name.
    let mut posing = plain.clone();
    posing.study_id = fedrad_shared::plan::held_out_study_id("loho", "hospital-b");
    let err = site_agent::approval::approve(&cfg.work_dir, &cfg.site_id, &cfg.schema(), &posing, cfg.key_fingerprint().unwrap().as_deref()).unwrap_err();
    assert!(err.to_string().contains("names leave-one-hospital-out analyses"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
