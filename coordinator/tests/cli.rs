//! The binaries as users run them: `coordinator certs init` and the README's demo, with four
//! separate `site-agent` processes talking mutual-TLS gRPC to the coordinator.

use std::process::Command;

fn tmp(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("fedrad-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

#[test]
fn certs_init_writes_bundles_with_private_keys_closed_and_never_overwrites() {
    let out = tmp("certs");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .args(["certs", "init", "--sites", "hospital-a,hospital-b", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    for f in ["ca.pem", "ca.key", "coordinator/cert.pem", "coordinator/key.pem", "sites/hospital-a/cert.pem", "sites/hospital-b/key.pem", "sites/hospital-b/ca.pem"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("sites/hospital-a/key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "site key readable by others: {mode:o}");
    }
    let second = run();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("refusing to overwrite"));
    let bad = Command::new(env!("CARGO_BIN_EXE_coordinator")).args(["certs", "init", "--sites", "Bad Site", "--out"]).arg(tmp("bad")).output().unwrap();
    assert!(!bad.status.success());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_demo_runs_the_study_with_separate_site_agent_processes() {
    let out = tmp("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["demo", "--patients", "120", "--coarsen", "3", "--folds", "3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("cohort: 120 patients loaded"), "{stdout}");
    assert!(stdout.contains("split:  training 84"), "{stdout}");
    assert!(stdout.contains("features t2: 174 features per case, 120 cases extracted, 0 failed"), "{stdout}");
    assert!(stdout.contains("selection t2: ") && stdout.contains("clinical model: "), "{stdout}");
    assert!(stdout.contains("| T2WI | I | Logistic regression |"), "the main table is printed: {stdout}");
    for f in ["report.html", "report.md", "models.csv", "models.json", "models/t2/I/logistic_regression.json", "models/t2/I/roc.svg"] {
        assert!(out.join("study").join(f).is_file(), "{f} not written");
    }
    let html = std::fs::read_to_string(out.join("study/report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("[missing figure"), "figures are inlined");
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("study/results.json")).unwrap()).unwrap();
    assert_eq!(results["split"]["total"]["training_negative"].as_u64().unwrap() + results["split"]["total"]["training_positive"].as_u64().unwrap(), 84);
    // Each agent ran as its own process and audited what it sent.
    for site in ["hospital-a", "hospital-b", "hospital-c", "hospital-d"] {
        let log = std::fs::read_to_string(out.join("sites").join(site).join("work/audit.jsonl")).unwrap();
        let rounds: u64 = results["protocol"].as_array().unwrap().iter().map(|p| p["rounds"].as_u64().unwrap()).sum();
        assert_eq!(log.lines().count() as u64, rounds, "{site}: one audit entry per task");
    }
    let _ = std::fs::remove_dir_all(&out);
}
