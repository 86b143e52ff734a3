//! The coordinator journals a receipt for every reply (the hash of the site's audit entry and
//! the reply's digest); against those receipts a site finds a truncated or rewritten audit log
//! (issue 17, property 8).

use std::time::Duration;

use coordinator::study::{Quiet, StudyRunner};
use fedrad_shared::pki::StudyPki;
use fedrad_shared::proto::{self, Task, task, task_reply};
use fedrad_shared::tls::TlsFiles;
use fedrad_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_name_the_sites_audit_entries_and_find_a_truncated_log() {
    fedrad_shared::tls::install_crypto_provider();
    let dir = TempDir::new("receipts");
    let cohort = small_cohort(&dir.path().join("cohort"), 100, 3);
    let (site, manifest) = cohort.manifests[0].clone();
    let pki = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "receipts", &["localhost".into()], std::slice::from_ref(&site)).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let work = dir.path().join("work");
    let agent = start_agent(site_config(&site, server.addr.port(), &manifest, &work, TlsFiles::bundle(&pki.site_bundle(&site)))).await;
    let hub = server.hub.clone();
    hub.wait_for_sites(std::slice::from_ref(&site), Duration::from_secs(30), &|_| {}).await.unwrap();

    // The study runner journals receipts in <output_dir>/receipts/: a study nobody approved
    // stops at its first task, and the refusal's receipt names the site's audit entry.
    let out = dir.path().join("unapproved");
    let study = study_config("unapproved", &out, vec![site.clone()], 1);
    StudyRunner::new(hub.clone(), study, &Quiet).run().await.unwrap_err();
    let log_path = work.join("audit.jsonl");
    let receipts = coordinator::receipts::read(&out.join("receipts").join(format!("{site}.jsonl"))).unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!((receipts[0].study_id.as_str(), receipts[0].outcome.as_str()), ("unapproved", "refusal"));
    let log = site_agent::audit::verify(&log_path).unwrap();
    assert_eq!(receipts[0].audit_head, log.last().unwrap().hash);
    assert_eq!(receipts[0].reply_digest, log.last().unwrap().reply_digest);

    // An approved study's answers, through the hub with receipts on.
    let mut study = study_config("approved", &dir.path().join("approved"), vec![site.clone()], 1);
    approve_study(std::slice::from_ref(&agent), &mut study);
    let plan = study.plan().unwrap();
    let receipts_dir = dir.path().join("approved/receipts");
    hub.journal_receipts("approved", receipts_dir.clone());
    let task = |id: &str| Task {
        task_id: id.into(),
        study_id: plan.study_id.clone(),
        study_sites: plan.sites.clone(),
        plan_sha256: plan.sha256(),
        kind: Some(task::Kind::CohortSummary(proto::CohortSummaryTask {})),
        secure_sum: None,
    };
    for id in ["c1", "c2", "c1", "c3"] {
        let reply = hub.run_task(&site, task(id), Duration::from_secs(60)).await.unwrap();
        assert!(matches!(reply.outcome, Some(task_reply::Outcome::Aggregate(_))), "{reply:?}");
        assert_eq!(reply.audit_head.len(), 64);
    }
    let receipts_file = receipts_dir.join(format!("{site}.jsonl"));
    let receipts = site_agent::audit::read_receipts(&receipts_file).unwrap();
    assert_eq!(receipts.iter().map(|r| r.task_id.as_str()).collect::<Vec<_>>(), ["c1", "c2", "c1", "c3"]);
    let log = site_agent::audit::verify(&log_path).unwrap();
    assert!(site_agent::audit::check_receipts(&log, &receipts).is_empty(), "every receipt is an entry of the intact log");

    // The log's last two entries deleted: the chain still verifies, the receipts do not.
    let text = std::fs::read_to_string(&log_path).unwrap();
    let keep = text.lines().count() - 2;
    std::fs::write(&log_path, text.lines().take(keep).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let truncated = site_agent::audit::verify(&log_path).unwrap();
    let problems = site_agent::audit::check_receipts(&truncated, &receipts);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("task c1") && problems[1].contains("task c3") && problems.iter().all(|p| p.contains("not in the log")), "{problems:?}");
    drop(agent);
    server.stop().await;
}
