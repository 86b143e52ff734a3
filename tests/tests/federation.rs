//! A coordinator and four site agents over mutual TLS on loopback: the study's numbers must
//! equal the same numbers computed directly from the generated files.

use coordinator::study::{Quiet, StudyError, StudyRunner};
use fedrad_shared::algorithms::{split, table1};
use fedrad_shared::clinical::builtin_schema;
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
async fn four_sites_over_mtls_give_the_pooled_split_and_table1() {
    let dir = TempDir::new("federation");
    let seed = 11;
    let cohort = small_cohort(&dir.path().join("cohort"), 120, seed);
    let sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
    let pki = StudyPki::init(&dir.path().join("pki"), "test", &["localhost".into()], &sites).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let mut agents = Vec::new();
    for (site, manifest) in &cohort.manifests {
        let work = dir.path().join("work").join(site);
        let cfg = site_config(site, server.addr.port(), manifest, &work, TlsFiles::bundle(&pki.site_bundle(site)));
        agents.push(start_agent(cfg).await);
    }
    let out = dir.path().join("study");
    let study = study_config("federation-test", &out, sites.clone(), seed);
    let results = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.expect("study runs");

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

    let with_roles: Vec<_> = patients.into_iter().zip(roles).map(|((s, r), role)| (s, r, role)).collect();
    let pooled_table = table1::pooled(&with_roles, &builtin_schema());
    assert_json_close(&serde_json::to_value(&results.table1).unwrap(), &serde_json::to_value(&pooled_table).unwrap(), 1e-9, "table1");

    for f in ["results.json", "cohort_summary.json", "split.json", "table1.json", "table1.md", "report.md", "extraction.json"] {
        assert!(out.join(f).is_file(), "{f} not written");
    }
    let steps: Vec<&str> = results.protocol.iter().map(|p| p.step.as_str()).collect();
    assert_eq!(steps, ["cohort_summary", "split", "table1", "extract_features"]);

    // Every case was extracted; the features stayed at the sites, and a site's stored row
    // equals an extraction run directly on that patient's files.
    for seq in ["t1c", "t2"] {
        let t = &results.extraction.total[seq];
        assert_eq!(t.succeeded, 120, "{seq}: {t:?}");
        assert_eq!(t.features, 174);
    }
    let (site, manifest) = &cohort.manifests[1];
    let table = std::fs::read_to_string(dir.path().join("work").join(site).join("studies/federation-test/features/t2.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split(',').collect();
    let folder = manifest.parent().unwrap();
    let direct = site_agent::radiomics::extract::extract_files(
        &folder.join(format!("images/{}_t2.nii.gz", row[0])),
        &folder.join(format!("images/{}_t2_mask.nii.gz", row[0])),
        &site_agent::radiomics::settings::Settings::study_default(),
    )
    .unwrap();
    assert_eq!(header.len(), direct.len() + 1);
    for (k, f) in direct.iter().enumerate() {
        assert_eq!(header[k + 1], f.column());
        let stored: f64 = row[k + 1].parse().unwrap();
        assert!(stored == f.value || (stored.is_nan() && f.value.is_nan()), "{}: {stored} vs {}", f.column(), f.value);
    }
    assert!(results.protocol.iter().all(|p| p.bytes_from_sites > 0 && p.tasks == 4));
    drop(agents);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_site_makes_the_study_wait_then_fail_naming_it() {
    let dir = TempDir::new("missing-site");
    let cohort = small_cohort(&dir.path().join("cohort"), 80, 3);
    let mut sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
    let pki = StudyPki::init(&dir.path().join("pki"), "test", &["localhost".into()], &sites).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_below_its_minimum_refuses_and_the_study_says_which_and_why() {
    let dir = TempDir::new("refusal");
    let cohort = small_cohort(&dir.path().join("cohort"), 80, 5);
    let sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
    let pki = StudyPki::init(&dir.path().join("pki"), "test", &["localhost".into()], &sites).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let mut agents = Vec::new();
    for (site, manifest) in &cohort.manifests {
        let mut cfg = site_config(site, server.addr.port(), manifest, &dir.path().join("work").join(site), TlsFiles::bundle(&pki.site_bundle(site)));
        if site == "hospital-c" {
            cfg.policy.min_count = 1000;
        }
        agents.push(start_agent(cfg).await);
    }
    let study = study_config("refusal", &dir.path().join("study"), sites, 1);
    let err = StudyRunner::new(server.hub.clone(), study, &Quiet).run().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StudyError::Refused { .. }), "{msg}");
    assert!(msg.contains("hospital-c") && msg.contains("fewer than this site's minimum of 1000"), "{msg}");
    // The refusal is in the site's audit log, and the log's chain verifies.
    let log = site_agent::audit::verify(&dir.path().join("work/hospital-c/audit.jsonl")).unwrap();
    assert!(log.iter().any(|e| e.outcome == "refused" && e.kind == "cohort_summary"));
    server.stop().await;
}
