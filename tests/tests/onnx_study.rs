//! Deep features from a study-supplied ONNX network over mutual TLS: every site holds the
//! approved file, checks its SHA-256 and stores the network's outputs; Model II uses them. A
//! site whose copy was tampered with refuses, and the study goes on without deep features for
//! that sequence, naming the site and the reason. `site-agent predict` scores a hospital's
//! patients with the saved Model II by running the site's own copy of the network.

use coordinator::config::{DeepSettings, DeepSource, OnnxNetwork};
use coordinator::study::{Quiet, StudyRunner};
use fedrad_shared::algorithms::classifiers::ClassifierKind;
use fedrad_shared::pki::StudyPki;
use fedrad_shared::tls::TlsFiles;
use fedrad_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn onnx_network_deep_features_reach_model_ii_and_a_tampered_copy_is_refused() {
    let dir = TempDir::new("onnx-study");
    let cohort = small_cohort(&dir.path().join("cohort"), 100, 21);
    let sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
    let pki = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "test", &["localhost".into()], &sites).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let network = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../site-agent/tests/fixtures/onnx/tiny_cnn_1ch.onnx")).unwrap();
    let sha256 = site_agent::audit::sha256_hex(&network);
    let mut agents = Vec::new();
    let mut networks = Vec::new();
    for (site, manifest) in &cohort.manifests {
        let mut cfg = site_config(site, server.addr.port(), manifest, &dir.path().join("work").join(site), TlsFiles::bundle(&pki.site_bundle(site)));
        cfg.policy.min_count = 1;
        cfg.policy.max_parameter_ratio = 1.0;
        // The test compares predict at one hospital with the study's AUC there.
        cfg.policy.per_site_results = true;
        std::fs::create_dir_all(cfg.networks_dir()).unwrap();
        std::fs::write(cfg.networks_dir().join("tiny.onnx"), &network).unwrap();
        networks.push(cfg.networks_dir().join("tiny.onnx"));
        agents.push(start_agent(cfg).await);
    }
    let study = |id: &str| {
        let mut s = study_config(id, &dir.path().join(id), sites.clone(), 21);
        s.selection.sequences = vec!["t2".into()];
        s.selection.lasso.folds = 3;
        // Keep the univariate filter from removing every feature of this small cohort.
        s.selection.univariate.alpha = 1.0;
        s.models.classifiers = vec![ClassifierKind::LogisticRegression, ClassifierKind::NaiveBayes];
        s.validation.per_site_results = true;
        s.deep = DeepSettings {
            source: DeepSource::Onnx,
            onnx: Some(OnnxNetwork { file: "tiny.onnx".into(), sha256: sha256.clone(), input_size: 16, channels: 1, field_mm: 48.0, intensity: "zscore".into() }),
            ..Default::default()
        };
        s
    };

    let mut ok = study("onnx-ok");
    approve_study(&agents, &mut ok);
    ok.validate().unwrap();
    let results = StudyRunner::new(server.hub.clone(), ok, &Quiet).run().await.expect("study runs");
    assert!(results.deep_notes.is_empty(), "{:?}", results.deep_notes);
    let d = &results.deep[0];
    assert_eq!((d.dimension, d.embedded), (5, 100));
    assert_eq!(d.weights_sha256, sha256);
    let combined = results.selection.as_ref().unwrap().sequences.iter().find(|s| s.group == "combined").expect("a radiomic + deep selection");
    assert_eq!(combined.features, fedrad_radiomics::catalogue::feature_catalogue(&fedrad_radiomics::settings::Settings::study_default()).unwrap().len() + 5);
    let ii = results.models.iter().find(|m| m.model == "II").unwrap();
    let report = std::fs::read_to_string(dir.path().join("onnx-ok/report.md")).unwrap();
    assert!(report.contains("Study-supplied ONNX network `tiny.onnx`"), "the report names the network");

    // `site-agent predict` with the saved Model II: the site runs the same network (its own
    // copy, checked by hash) on a patient's crop beside the radiomic features; on hospital A's
    // validation patients the AUC is the study's for hospital A.
    let lr = ii.classifiers.iter().find(|c| c.classifier == ClassifierKind::LogisticRegression).unwrap_or_else(|| panic!("Model II not fitted: {:?}", ii.note));
    let model = site_agent::predict::load_model(&dir.path().join("onnx-ok").join(&lr.model_file)).unwrap();
    assert!(model.sequence.ends_with(fedrad_shared::algorithms::extraction::WITH_DEEP), "{}", model.sequence);
    let (site, manifest) = &cohort.manifests[0];
    let scores = dir.path().join("scores.csv");
    let without = site_agent::predict::predict(&model, manifest, &scores, &Default::default()).unwrap_err().to_string();
    assert!(without.contains("--networks") && without.contains("tiny.onnx"), "{without}");
    let inputs = site_agent::predict::PredictInputs { networks_dir: Some(networks[0].parent().unwrap().to_path_buf()), ..Default::default() };
    let summary = site_agent::predict::predict(&model, manifest, &scores, &inputs).unwrap();
    let rows = std::fs::read_to_string(manifest).unwrap();
    assert_eq!((summary.scored, summary.failed), (rows.lines().count() - 1, 0), "every patient of {site} scored");
    let split = std::fs::read_to_string(dir.path().join("work").join(site).join("studies/onnx-ok/split.csv")).unwrap();
    let header: Vec<&str> = rows.lines().next().unwrap().split(',').collect();
    let rec = header.iter().position(|h| *h == "recurrence").unwrap();
    let outcome = |id: &str| rows.lines().find(|l| l.starts_with(&format!("{id},"))).unwrap().split(',').nth(rec).unwrap() == "1";
    let (mut p, mut y) = (Vec::new(), Vec::new());
    for line in std::fs::read_to_string(&scores).unwrap().lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        if split.contains(&format!("{},validation", cells[0])) {
            p.push(cells[1].parse::<f64>().unwrap());
            y.push(outcome(cells[0]));
        }
    }
    let (auc, _) = fedrad_shared::algorithms::metrics::pooled_auc(&p, &y);
    let study_auc = lr.per_site_auc[site].1;
    assert!(p.len() >= 5 && (auc - study_auc).abs() < 1e-3, "predict AUC {auc} over {} validation patients vs the study's {study_auc} at {site}", p.len());

    // One hospital's copy is altered: it refuses, and the study goes on without deep features.
    let mut bytes = network.clone();
    let k = bytes.len() - 20;
    bytes[k] ^= 0x40;
    std::fs::write(&networks[3], &bytes).unwrap();
    let tampered_dir = site_agent::predict::PredictInputs { networks_dir: Some(networks[3].parent().unwrap().to_path_buf()), ..Default::default() };
    let refused = site_agent::predict::predict(&model, manifest, &scores, &tampered_dir).unwrap_err().to_string();
    assert!(refused.contains("SHA-256"), "predict ran a tampered network: {refused}");
    let mut tampered = study("onnx-tampered");
    approve_study(&agents, &mut tampered);
    let results = StudyRunner::new(server.hub.clone(), tampered, &Quiet).run().await.expect("study runs");
    let note = results.deep_notes.get("t2").expect("no deep features for t2");
    assert!(note.contains(&sites[3]) && note.contains("SHA-256"), "{note}");
    assert!(results.deep.is_empty());
    let ii = results.models.iter().find(|m| m.model == "II").unwrap();
    assert!(ii.classifiers.is_empty() && ii.note.as_deref().is_some_and(|n| n.contains("deep")), "{:?}", ii.note);
    drop(agents);
    server.stop().await;
}
