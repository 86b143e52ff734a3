//! A study that fits small hospitals (issue 21): four hospitals of 95, 85, 80 and 68 patients,
//! every site at the default disclosure policy (`min_count` 5, `max_parameter_ratio` 0.33), the
//! default study. The coordinator plans the folds and the model size from the sites' published
//! policies and training counts, so every classifier of every model is fitted, and each model
//! stays within the limit each site's own check enforces.

use coordinator::study::Quiet;
use coordinator::study::StudyRunner;
use fedrad_shared::algorithms::classifiers::ClassifierKind;
use fedrad_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hospitals_of_95_85_80_68_at_the_default_policy_fit_every_classifier_of_every_model() {
    let dir = TempDir::new("small-hospitals");
    let mut spec = fedrad_synth::default_cohort(21, 328).with_hospital_sizes(&[95, 85, 80, 68]).unwrap();
    spec.coarsen = 3.0;
    let cohort = fedrad_synth::generate(&spec, &dir.path().join("cohort"), &|| {}).expect("cohort generation");
    let Federation { server, agents, sites } = start_federation(dir.path(), &cohort, |_, cfg| {
        assert_eq!((cfg.policy.min_count, cfg.policy.max_parameter_ratio), (5, 0.33), "the default policy");
    })
    .await;
    let mut study = study_config("small-hospitals", &dir.path().join("study"), sites.clone(), 21);
    approve_study(&agents, &mut study);
    let planned_folds = study.selection.lasso.folds;
    let planned_features = study.models.rbf_svm.features;
    let results = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.expect("study runs");

    // The folds and parameters are the smallest hospital's, exactly at its own limits.
    let selection = results.selection.as_ref().unwrap();
    let size = &selection.model_size;
    let smallest = results.split.per_site.iter().min_by_key(|(_, c)| c.training()).map(|(s, c)| (s.clone(), c.training())).unwrap();
    assert_eq!(size.parameters_limited_by, smallest.0);
    // Patients the site may hold without a feature row: failed extractions and embeddings.
    let loaded = results.cohort.sites.iter().find(|c| c.site_id == smallest.0).unwrap().loaded;
    let missing = ["t1c", "t2"]
        .iter()
        .map(|seq| {
            let extracted = results.extraction.per_site[&smallest.0][*seq].succeeded;
            let embedded = results.deep.iter().find(|d| d.sequence == *seq).map_or(loaded, |d| d.embedded_per_site[&smallest.0]);
            (loaded - extracted) + (loaded - embedded)
        })
        .max()
        .unwrap();
    assert_eq!(size.by_site()[smallest.0.as_str()].missing, missing);
    assert_eq!(size.max_parameters, (0.33_f64 * (smallest.1 - missing) as f64).floor() as usize);
    assert_eq!(size.folds, (2..=planned_folds).rev().find(|k| (smallest.1 / *k as u64).saturating_sub(missing) >= 5).unwrap());
    assert!(size.folds < planned_folds, "a hospital of {} training patients cannot answer {planned_folds} folds of 5: {size:?}", smallest.1);
    assert_eq!(selection.folds.folds, size.folds);
    assert!(selection.folds.per_site.values().flatten().all(|f| f[0] + f[1] >= 5));

    let mut moved = 0;
    for m in &results.models {
        assert!(m.note.is_none(), "{} Model {}: {:?}", m.sequence, m.model, m.note);
        assert!(m.not_fitted.is_empty(), "{} Model {}: {:?}", m.sequence, m.model, m.not_fitted);
        let fitted: Vec<ClassifierKind> = m.classifiers.iter().map(|c| c.classifier).collect();
        assert_eq!(fitted, ClassifierKind::ALL.to_vec(), "{} Model {}", m.sequence, m.model);
        // Logistic regression and the linear SVM: features, clinical terms and the intercept
        // within every site's limit; the RBF SVM's random features too.
        // (`clinical_terms` names one design column each.)
        let clinical = m.clinical_terms.len();
        assert!(m.features.len() + clinical < size.max_parameters, "{} Model {}: {} + {clinical}", m.sequence, m.model, m.features.len());
        let rbf = m.classifiers.iter().find(|c| c.classifier == ClassifierKind::RbfSvm).unwrap();
        let features = (size.max_parameters - 1).min(planned_features as usize);
        assert!(rbf.note.as_deref().unwrap_or("").starts_with(&format!("{features} random Fourier features")), "{:?}", rbf.note);
        for c in &m.classifiers {
            assert!(c.validation.auc.is_finite() && c.training.auc.is_finite(), "{} Model {} {:?}", m.sequence, m.model, c.classifier);
        }
    }
    for q in &selection.sequences {
        moved += usize::from(q.size_note.is_some()) + usize::from(q.with_clinical.is_some());
        // The λ used is the chosen one or a larger one on the path.
        let chosen = q.lambda_min.unwrap();
        assert!(q.lambda_used.unwrap() >= chosen, "{}: {:?}", q.sequence, q.lambda_used);
        assert_eq!(q.size_note.is_some(), q.lambda_used.unwrap() > chosen, "{}: {:?}", q.sequence, q.size_note);
    }
    // On this cohort λ_min keeps more features than the smallest hospital accepts somewhere:
    // the rule did something (without it, those models' linear classifiers are refused).
    assert!(moved > 0, "{:?}", selection.sequences.iter().map(|q| (&q.sequence, &q.group, q.selected.len())).collect::<Vec<_>>());
    let report = std::fs::read_to_string(dir.path().join("study/report.md")).unwrap();
    assert!(report.contains("### Model size every site accepts") && report.contains(&format!("at most {} parameters", size.max_parameters)), "report");
    drop(agents);
    server.stop().await;
}
