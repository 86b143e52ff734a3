//! The binaries as users run them: `coordinator certs init` and `certs sign` with `site-agent
//! enroll`, and the README's demo, with four
//! separate `site-agent` processes talking mutual-TLS gRPC to the coordinator.

mod common;

use std::process::Command;

fn tmp(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("fedrad-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

#[test]
fn certs_init_makes_no_site_key_and_a_site_enrols_with_its_own_then_certs_sign_issues_its_certificate() {
    let out = tmp("certs");
    let coordinator = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_coordinator")).args(args).output().unwrap();
    let pki = out.join("pki");
    let pki_arg = pki.to_str().unwrap();
    let first = coordinator(&["certs", "init", "--out", pki_arg]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    for f in ["ca.pem", "ca.key", "coordinator/cert.pem", "coordinator/key.pem"] {
        assert!(pki.join(f).is_file(), "{f} missing");
    }
    assert!(!pki.join("sites").exists(), "certs init wrote site files");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.join("ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "CA key readable by others: {mode:o}");
    }
    let second = coordinator(&["certs", "init", "--out", pki_arg]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("refusing to overwrite"));

    // The hospital enrols with the site-agent binary; only its request travels.
    let agent = common::site_agent_binary();
    let site_tls = out.join("hospital-a-tls");
    let enrolled = Command::new(&agent).args(["enroll", "--site-id", "hospital-a", "--out"]).arg(&site_tls).output().unwrap();
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    let request = site_tls.join("request.pem");
    let wrong_site = coordinator(&["certs", "sign", "--pki", pki_arg, "--site", "hospital-b", "--request", request.to_str().unwrap()]);
    assert!(!wrong_site.status.success() && String::from_utf8_lossy(&wrong_site.stderr).contains("not for site"), "{}", String::from_utf8_lossy(&wrong_site.stderr));
    let signed = coordinator(&["certs", "sign", "--pki", pki_arg, "--site", "hospital-a", "--request", request.to_str().unwrap(), "--days", "20"]);
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    assert!(pki.join("sites/hospital-a/cert.pem").is_file() && !pki.join("sites/hospital-a/key.pem").exists());
    let bad = coordinator(&["certs", "sign", "--pki", pki_arg, "--site", "Bad Site", "--request", request.to_str().unwrap()]);
    assert!(!bad.status.success());
    // The pins for the study file: the signed key's fingerprint, which the site computes too;
    // after revocation the site has no current key to pin.
    let cert = std::fs::read(pki.join("sites/hospital-a/cert.pem")).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&cert).map(|c: rustls_pki_types::CertificateDer| c.to_vec()).unwrap();
    let fingerprint = fedrad_shared::identity::public_key_fingerprint(&der).unwrap();
    let pins = coordinator(&["certs", "pins", "--pki", pki_arg]);
    let printed = String::from_utf8_lossy(&pins.stdout);
    assert!(pins.status.success() && printed.contains("[secure_aggregation]") && printed.contains(&format!("hospital-a = \"{fingerprint}\"")), "{printed}");
    // Renewal: a request for the same key, signed again: the pin does not change.
    let renewal = Command::new(&agent).args(["enroll", "--renew", "--site-id", "hospital-a", "--out"]).arg(&site_tls).output().unwrap();
    assert!(renewal.status.success(), "{}", String::from_utf8_lossy(&renewal.stderr));
    assert!(coordinator(&["certs", "sign", "--pki", pki_arg, "--site", "hospital-a", "--request", request.to_str().unwrap()]).status.success());
    assert_eq!(String::from_utf8_lossy(&coordinator(&["certs", "pins", "--pki", pki_arg]).stdout), printed);
    assert!(coordinator(&["certs", "revoke", "--pki", pki_arg, "--site", "hospital-a"]).status.success());
    let after = coordinator(&["certs", "pins", "--pki", pki_arg]);
    assert!(!after.status.success() && String::from_utf8_lossy(&after.stderr).contains("no site certificate"), "{}", String::from_utf8_lossy(&after.stderr));
    let _ = std::fs::remove_dir_all(&out);
}

/// The AUC of one site's validation patients as the site releases it: probabilities back to
/// log-odds, small cells merged per class (`metrics::released_score_cells`).
fn released_auc(probabilities: &[f64], outcome: &[bool], min_count: u64) -> f64 {
    use fedrad_shared::algorithms::metrics::{DEFAULT_GRID, ScoreHistogram, Scored, released_score_cells};
    use fedrad_shared::clinical::CohortRole;
    let scored: Vec<Scored> =
        probabilities.iter().zip(outcome).map(|(&p, &o)| Scored { role: CohortRole::Validation, outcome: o, log_odds: (p / (1.0 - p)).ln() }).collect();
    let mut h = ScoreHistogram { grid: DEFAULT_GRID, ..Default::default() };
    for (c, &o) in released_score_cells(&scored, DEFAULT_GRID, min_count).into_iter().zip(outcome) {
        *(if o { &mut h.positive } else { &mut h.negative }).entry(c).or_default() += 1;
    }
    h.auc().0
}

fn report_has_combat(out: &std::path::Path) -> bool {
    std::fs::read_to_string(out.join("study/report.md")).unwrap().contains("## Harmonisation (ComBat)")
}

#[test]
fn the_demo_runs_the_study_with_separate_site_agent_processes() {
    let out = tmp("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["demo", "--patients", "240", "--coarsen", "3", "--folds", "5", "--lambda-1se", "--deep-rounds", "5", "--combat", "--per-site-results", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("cohort: 240 patients loaded"), "{stdout}");
    assert!(stdout.contains("split:  training 168"), "{stdout}");
    let per_case = fedrad_radiomics::catalogue::feature_catalogue(&fedrad_radiomics::settings::Settings::study_default()).unwrap().len();
    assert!(stdout.contains(&format!("features t2: {per_case} features per case, 240 cases extracted, 0 failed")), "{stdout}");
    assert!(stdout.contains("selection t2 (radiomic): ") && stdout.contains("clinical model: "), "{stdout}");
    assert!(stdout.contains("| Sequence | Model | Classifier |"), "the main table is printed: {stdout}");
    for f in ["report.html", "report.md", "models.csv", "models.json"] {
        assert!(out.join("study").join(f).is_file(), "{f} not written");
    }
    let html = std::fs::read_to_string(out.join("study/report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("[missing figure"), "figures are inlined");

    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("study/results.json")).unwrap()).unwrap();
    assert_eq!(results["split"]["total"]["training_negative"].as_u64().unwrap() + results["split"]["total"]["training_positive"].as_u64().unwrap(), 168);
    // The encoder was trained across the four site processes and its loss fell every round.
    let deep = results["deep"].as_array().unwrap();
    assert_eq!(deep.len(), 2, "deep features for both sequences: {}", results["deep_notes"]);
    for d in deep {
        let losses: Vec<f64> = d["rounds"].as_array().unwrap().iter().map(|r| r["loss_at_start"].as_f64().unwrap()).collect();
        assert_eq!(losses.len(), 5);
        assert!(losses.windows(2).all(|w| w[1] < w[0]), "{}: the loss must fall round over round: {losses:?}", d["sequence"]);
        assert_eq!(d["embedded"].as_u64().unwrap(), 240);
    }
    // Each agent ran as its own process and audited every task it answered or refused.
    let mut audited = 0;
    for site in ["hospital-a", "hospital-b", "hospital-c", "hospital-d"] {
        audited += std::fs::read_to_string(out.join("sites").join(site).join("work/audit.jsonl")).unwrap().lines().count() as u64;
    }
    let protocol: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("study/protocol.json")).unwrap()).unwrap();
    let tasks: u64 = protocol.as_array().unwrap().iter().map(|p| p["tasks"].as_u64().unwrap()).sum();
    assert_eq!(audited, tasks, "one audit entry per task sent");
    // A hospital scores patients locally with a saved model: on its own validation patients
    // the AUC, with small cells merged as the site merged them (`small_cells`, its min_count of
    // 3), equals the one the study computed from that site's histograms.
    let site_agent = common::site_agent_binary();
    let models = results["models"].as_array().unwrap();
    // Sites refuse models they cannot answer for (too few patients per parameter or per class);
    // those are reported with the reason, the others fitted.
    assert!(models.iter().all(|m| !m["classifiers"].as_array().unwrap().is_empty() || m["note"].is_string()));
    let m = models.iter().find(|m| !m["classifiers"].as_array().unwrap().is_empty()).expect("at least one model fitted");
    let lr = m["classifiers"].as_array().unwrap().iter().find(|c| c["classifier"] == "logistic_regression").unwrap();
    let model = out.join("study").join(lr["model_file"].as_str().unwrap());
    assert!(model.with_file_name("roc.svg").is_file());
    let scores = out.join("scores.csv");
    let study_id = results["study_id"].as_str().unwrap();
    // The study harmonised with ComBat (each site process adjusting its own rows): scoring
    // needs the site's own adjustment, and refuses without it.
    assert!(report_has_combat(&out), "the report has the harmonisation section");
    let record = |table: &str| out.join(format!("sites/hospital-a/work/studies/{study_id}/harmonisation/{table}.json"));
    let predict = |model: &std::path::Path, extra: &[std::path::PathBuf]| {
        let mut c = Command::new(&site_agent);
        c.args(["predict", "--model"]).arg(model).arg("--manifest").arg(out.join("cohort/hospital-a/manifest.csv")).arg("--out").arg(&scores);
        c.args(extra);
        c.output().unwrap()
    };
    let seq = lr["model_file"].as_str().unwrap().split('/').nth(1).unwrap().to_string();
    let without = predict(&model, &[]);
    assert!(!without.status.success() && String::from_utf8_lossy(&without.stderr).contains("--harmonisation"), "{}", String::from_utf8_lossy(&without.stderr));
    // Records the model does not name are refused: twice the same, another part's, and one
    // whose estimates are not the study's (as a record of another study would be).
    let refused = |extra: &[std::path::PathBuf], says: &str| {
        let r = predict(&model, extra);
        let stderr = String::from_utf8_lossy(&r.stderr).to_string();
        assert!(!r.status.success() && stderr.contains(says), "{extra:?}: {stderr}");
    };
    refused(&["--harmonisation".into(), record(&seq), "--harmonisation".into(), record(&seq)], "pass each once");
    refused(&["--harmonisation".into(), record(&seq), "--harmonisation".into(), record(&format!("{seq}.deep"))], "does not use");
    let mut forged: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(record(&seq)).unwrap()).unwrap();
    let alpha0 = forged["estimates"]["alpha"][0].as_f64().unwrap();
    forged["estimates"]["alpha"][0] = serde_json::json!(alpha0 + 1.0);
    let forged_path = out.join("forged-harmonisation.json");
    std::fs::write(&forged_path, serde_json::to_string(&forged).unwrap()).unwrap();
    refused(&["--harmonisation".into(), forged_path], "not the ones");
    let run = predict(&model, &["--harmonisation".into(), record(&seq)]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let split = std::fs::read_to_string(out.join(format!("sites/hospital-a/work/studies/{study_id}/split.csv"))).unwrap();
    let manifest = std::fs::read_to_string(out.join("cohort/hospital-a/manifest.csv")).unwrap();
    let header: Vec<&str> = manifest.lines().next().unwrap().split(',').collect();
    let rec = header.iter().position(|h| *h == "recurrence").unwrap();
    let outcome = |id: &str| manifest.lines().find(|l| l.starts_with(&format!("{id},"))).unwrap().split(',').nth(rec).unwrap() == "1";
    let (mut s, mut y) = (Vec::new(), Vec::new());
    for line in std::fs::read_to_string(&scores).unwrap().lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        assert!(!cells[1].is_empty(), "patient {} not scored: {line}", cells[0]);
        if split.contains(&format!("{},validation", cells[0])) {
            s.push(cells[1].parse::<f64>().unwrap());
            y.push(outcome(cells[0]));
        }
    }
    let (exact, _) = fedrad_shared::algorithms::metrics::pooled_auc(&s, &y);
    let auc = released_auc(&s, &y, 3);
    let site_auc = lr["per_site_auc"]["hospital-a"][1].as_f64().unwrap();
    assert!((auc - site_auc).abs() < 1e-3, "predict AUC {auc} (exact {exact}) vs the study's {site_auc} at hospital-a");
    // Published by opt-in (`--per-site-results`: the plan and every demo site), and labelled so.
    let report = std::fs::read_to_string(out.join("study/report.md")).unwrap();
    assert!(
        report.contains("## Validation AUC per hospital") && report.contains("each model's score histograms per site"),
        "per-site results not labelled in the report"
    );
    assert!(
        report.contains("### Site hospital-a (published by its policy and the plan)") && report.contains("Table 1 per hospital"),
        "Table 1 per hospital not in the report"
    );
    assert!((exact - site_auc).abs() < 0.05, "small-cell merging moved hospital-a's AUC from {exact} to {site_auc}");

    // Model II (radiomic and deep features): the site computes a new patient's deep features
    // with the study's encoder, checked by hash, and harmonises both parts with its own
    // adjustment; on its validation patients the AUC is the study's.
    let m2 = models.iter().find(|m| m["model"] == "II" && !m["classifiers"].as_array().unwrap().is_empty()).expect("a Model II fitted");
    let lr2 = m2["classifiers"].as_array().unwrap().iter().find(|c| c["classifier"] == "logistic_regression").unwrap();
    let model2 = out.join("study").join(lr2["model_file"].as_str().unwrap());
    let seq2 = m2["sequence"].as_str().unwrap();
    let encoder = out.join(format!("study/deep/{seq2}/weights.json"));
    let combat_records = ["--harmonisation".into(), record(seq2), "--harmonisation".into(), record(&format!("{seq2}.deep"))];
    let no_encoder = predict(&model2, &combat_records);
    assert!(!no_encoder.status.success() && String::from_utf8_lossy(&no_encoder.stderr).contains("--encoder"), "{}", String::from_utf8_lossy(&no_encoder.stderr));
    let other_encoder = out.join(format!("study/deep/{}/weights.json", if seq2 == "t1c" { "t2" } else { "t1c" }));
    let wrong = predict(&model2, &[combat_records.to_vec(), vec!["--encoder".into(), other_encoder]].concat());
    assert!(!wrong.status.success() && String::from_utf8_lossy(&wrong.stderr).contains("not the study's encoder"), "{}", String::from_utf8_lossy(&wrong.stderr));
    let run = predict(&model2, &[combat_records.to_vec(), vec!["--encoder".into(), encoder]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (mut s, mut y) = (Vec::new(), Vec::new());
    for line in std::fs::read_to_string(&scores).unwrap().lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        if split.contains(&format!("{},validation", cells[0])) && !cells[1].is_empty() {
            s.push(cells[1].parse::<f64>().unwrap());
            y.push(outcome(cells[0]));
        }
    }
    let auc = released_auc(&s, &y, 3);
    let site_auc = lr2["per_site_auc"]["hospital-a"][1].as_f64().unwrap();
    assert!((auc - site_auc).abs() < 1e-3, "Model II predict AUC {auc} vs the study's {site_auc} at hospital-a");
    let _ = std::fs::remove_dir_all(&out);
}
