//! Issue 17, properties 8 and 9 at one site: an audit a data-protection officer can read (the
//! task's bytes kept, every reply carrying the hash of its entry, no reply without an entry,
//! receipts that find a truncated or rewritten log, a report) and bounded disk use per study.

use std::path::{Path, PathBuf};

use fedrad_shared::proto::{self, RefusalReason, Task, TaskReply, task, task_reply};
use prost::Message;
use site_agent::audit::{self, AuditEntry};

mod common;

fn summary(plan: &fedrad_shared::plan::StudyPlan, id: &str) -> Task {
    common::task(plan, id, Some(task::Kind::CohortSummary(proto::CohortSummaryTask {})))
}

fn headless(r: &TaskReply) -> Vec<u8> {
    TaskReply { audit_head: String::new(), ..r.clone() }.encode_to_vec()
}

/// A receipt line as the coordinator journals it (`coordinator::receipts`), extra fields included.
fn receipt_line(site: &str, study: &str, r: &TaskReply) -> String {
    serde_json::json!({
        "unix_millis": 1, "study_id": study, "site": site, "task_id": r.task_id, "outcome": "aggregate",
        "audit_head": r.audit_head, "reply_digest": audit::sha256_hex(&headless(r)), "bytes": r.encoded_len(),
    })
    .to_string()
}

fn site_toml(dir: &Path, cfg: &site_agent::config::SiteConfig) -> PathBuf {
    let p = dir.join("site.toml");
    let text = format!(
        "site_id = \"{}\"\ncoordinator = \"https://localhost:1\"\nmanifest = {:?}\nwork_dir = {:?}\n[tls]\nca = \"ca.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
        cfg.site_id, cfg.manifest, cfg.work_dir
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn site_agent_cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_site-agent")).args(args).env("RUST_LOG", "error").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn every_reply_carries_the_hash_of_its_entry_and_the_task_is_kept() {
    let dir = common::fresh_dir("audit-entries");
    let cohort = common::one_hospital(&dir.join("cohort"), 4, 60);
    let cfg = common::local_config(&cohort.manifests[0].1, &dir);
    let plan = common::approve(&cfg, "s1", |_| {});
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    let mut unapproved = summary(&plan, "u1");
    unapproved.study_id = "never-approved".into();
    let mut bad_id = summary(&plan, "b1");
    bad_id.study_id = "../etc".into();
    let tasks = [summary(&plan, "c1"), summary(&plan, "c1"), unapproved, bad_id];
    let replies: Vec<TaskReply> = tasks.iter().map(|t| engine.handle(t)).collect();
    assert!(matches!(replies[0].outcome, Some(task_reply::Outcome::Aggregate(_))), "{:?}", replies[0]);
    assert!(matches!(replies[2].outcome, Some(task_reply::Outcome::Refusal(_))));
    let log_path = cfg.work_dir.join("audit.jsonl");
    let log = audit::verify(&log_path).unwrap();
    assert_eq!(log.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>(), ["sent", "sent_from_cache", "refused", "refused"]);
    for ((t, r), e) in tasks.iter().zip(&replies).zip(&log) {
        assert_eq!(r.audit_head, e.hash, "the reply names its own entry");
        assert_eq!(e.reply_digest, audit::sha256_hex(&headless(r)), "the digest is of the reply without its head");
        assert_eq!(e.bytes_sent, r.encoded_len() as u64, "bytes as sent, head included");
        assert_eq!(e.task_digest, audit::sha256_hex(&t.encode_to_vec()));
    }
    // The tasks of the approved study are kept, and decode to exactly what was asked.
    assert_eq!(log.iter().map(|e| e.task_kept).collect::<Vec<_>>(), [true, true, false, false]);
    let kept = std::fs::read(audit::task_file(&log_path, &log[0].task_digest)).unwrap();
    assert_eq!(Task::decode(kept.as_slice()).unwrap(), tasks[0]);
    let files = audit::verify_task_files(&log_path, &log).unwrap();
    assert_eq!((files.checked, files.missing.len(), files.not_kept), (1, 0, 2));
    // The first entry chains to a random genesis recorded in it.
    assert_eq!(log[0].genesis.len(), 64);
    assert_eq!(log[0].prev_hash, log[0].genesis);

    // `audit verify` checks the kept tasks: a missing one is a warning, a changed one fails.
    let toml = site_toml(&dir, &cfg);
    let config = toml.to_str().unwrap();
    let (ok, out, err) = site_agent_cli(&["audit", "verify", "--config", config]);
    assert!(ok && out.contains("4 entries, chain intact") && out.contains("1 files hash to their names; 0 missing"), "{out}{err}");
    std::fs::write(audit::task_file(&log_path, &log[0].task_digest), b"another task").unwrap();
    let (ok, out, err) = site_agent_cli(&["audit", "verify", "--config", config]);
    assert!(!ok && err.contains("hash"), "{out}{err}");
    std::fs::remove_file(audit::task_file(&log_path, &log[0].task_digest)).unwrap();
    let (ok, out, err) = site_agent_cli(&["audit", "verify", "--config", config]);
    assert!(ok && out.contains("1 missing (warning: "), "{out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reply_whose_audit_entry_cannot_be_written_is_not_sent_nor_cached() {
    let dir = common::fresh_dir("audit-fail-closed");
    let cohort = common::one_hospital(&dir.join("cohort"), 5, 60);
    let cfg = common::local_config(&cohort.manifests[0].1, &dir);
    let plan = common::approve(&cfg, "s1", |_| {});
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    let work = cfg.work_dir.clone();
    let replies = work.join("studies/s1/replies");
    let files = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    assert!(matches!(engine.handle(&summary(&plan, "c0")).outcome, Some(task_reply::Outcome::Aggregate(_))));
    assert_eq!(files(&replies), 1);

    // A directory where the log should be (root ignores file modes, not this).
    std::fs::rename(work.join("audit.jsonl"), work.join("audit.saved")).unwrap();
    std::fs::create_dir(work.join("audit.jsonl")).unwrap();
    let r = engine.handle(&summary(&plan, "c1"));
    match &r.outcome {
        Some(task_reply::Outcome::Failure(f)) => assert!(f.detail.starts_with("the audit log could not be written"), "{}", f.detail),
        other => panic!("the aggregate went out without its audit entry: {other:?}"),
    }
    assert!(r.audit_head.is_empty());
    assert_eq!(files(&replies), 1, "the unaudited reply is not cached");
    // A resend of an answered task is not sent from the cache without an entry either.
    assert!(matches!(engine.handle(&summary(&plan, "c0")).outcome, Some(task_reply::Outcome::Failure(_))));
    std::fs::remove_dir(work.join("audit.jsonl")).unwrap();
    std::fs::rename(work.join("audit.saved"), work.join("audit.jsonl")).unwrap();

    // The task's bytes cannot be kept (a file where the folder should be): not sent either,
    // and that failure is itself in the log.
    std::fs::remove_dir_all(work.join("audit/tasks")).unwrap();
    std::fs::write(work.join("audit/tasks"), b"in the way").unwrap();
    let r = engine.handle(&summary(&plan, "c2"));
    match &r.outcome {
        Some(task_reply::Outcome::Failure(f)) => assert!(f.detail.contains("the audit log could not be written: cannot keep the task's bytes"), "{}", f.detail),
        other => panic!("the aggregate went out without its task kept: {other:?}"),
    }
    assert_eq!(files(&replies), 1);
    let log = audit::verify(&work.join("audit.jsonl")).unwrap();
    let last = log.last().unwrap();
    assert_eq!((last.task_id.as_str(), last.outcome.as_str(), last.hash.as_str()), ("c2", "failed", r.audit_head.as_str()));

    // Once the log can be written again, the task is answered (and only now cached).
    std::fs::remove_file(work.join("audit/tasks")).unwrap();
    assert!(matches!(engine.handle(&summary(&plan, "c1")).outcome, Some(task_reply::Outcome::Aggregate(_))));
    assert_eq!(files(&replies), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn receipts_find_a_truncated_or_rewritten_log_and_the_report_lists_what_left() {
    let dir = common::fresh_dir("audit-receipts");
    let cohort = common::one_hospital(&dir.join("cohort"), 6, 80);
    let cfg = common::local_config(&cohort.manifests[0].1, &dir);
    let plan = common::approve(&cfg, "s1", |s| s.seed = 7);
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    let positives = engine.cohort.records.iter().filter(|r| r.outcome).count() as u64;
    let negatives = engine.cohort.records.len() as u64 - positives;
    let split = |seed, id: &str| {
        common::task(
            &plan,
            id,
            Some(task::Kind::Split(proto::SplitTask { seed, training_quota_negative: negatives * 7 / 10, training_quota_positive: positives * 7 / 10 })),
        )
    };
    let replies = [
        engine.handle(&summary(&plan, "c1")),
        engine.handle(&split(7, "split-r1")),
        engine.handle(&split(8, "split-r2")), // refused: not the plan's seed
        engine.handle(&summary(&plan, "c2")),
        engine.handle(&summary(&plan, "c3")),
    ];
    assert!(matches!(replies[2].outcome, Some(task_reply::Outcome::Refusal(_))));
    let receipts = dir.join("hospital-a.jsonl");
    std::fs::write(&receipts, replies.iter().map(|r| receipt_line("hospital-a", "s1", r) + "\n").collect::<String>()).unwrap();
    let log_path = cfg.work_dir.join("audit.jsonl");
    let full = audit::verify(&log_path).unwrap();
    assert!(audit::check_receipts(&full, &audit::read_receipts(&receipts).unwrap()).is_empty());
    let toml = site_toml(&dir, &cfg);
    let config = toml.to_str().unwrap();
    let receipts_arg = receipts.to_str().unwrap();
    let (ok, out, err) = site_agent_cli(&["audit", "verify", "--config", config, "--receipts", receipts_arg]);
    assert!(ok && out.contains("5 receipts, 0 not matched"), "{out}{err}");

    // The report, for the DPO: aggregates by kind with their populations, refusals, totals,
    // and where the tasks are.
    let (ok, report, err) = site_agent_cli(&["audit", "report", "--config", config, "--study", "s1"]);
    assert!(ok, "{err}");
    let n = engine.cohort.records.len();
    for needle in [
        "Audit report: study s1 at site hospital-a".to_string(),
        "cohort_summary (3 released".into(),
        "split (1 released".into(),
        format!("task c1  over {n} patients"),
        "Refusals (1):".into(),
        "split  task split-r2".into(),
        "reason: ".into(),
        "groups of at least 5 patients".into(),
        audit::tasks_dir(&log_path).display().to_string(),
        "4 aggregates released".into(),
        "1 refused, 0 failed".into(),
    ] {
        assert!(report.contains(&needle), "missing {needle:?} in:\n{report}");
    }

    // Someone deletes the log's last two entries: the chain alone still verifies …
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&log_path, lines[..3].iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    assert_eq!(audit::verify(&log_path).unwrap().len(), 3);
    let (ok, out, err) = site_agent_cli(&["audit", "verify", "--config", config]);
    assert!(ok && out.contains("3 entries, chain intact"), "{out}{err}");
    // … but the coordinator's receipts name the entries that are gone.
    let problems = audit::check_receipts(&audit::verify(&log_path).unwrap(), &audit::read_receipts(&receipts).unwrap());
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("task c2") && problems[1].contains("task c3") && problems[0].contains("not in the log"), "{problems:?}");
    let (ok, out, err) = site_agent_cli(&["audit", "verify", "--config", config, "--receipts", receipts_arg]);
    assert!(!ok, "{out}");
    assert!(err.contains("task c2") && err.contains("task c3") && err.contains(&replies[3].audit_head) && err.contains("truncated or rewritten"), "{err}");

    // A log rewritten from scratch (one patient count changed, the chain rebuilt) verifies,
    // and matches none of the receipts.
    std::fs::remove_file(&log_path).unwrap();
    let rewritten = audit::AuditLog::open(&log_path).unwrap();
    for mut e in full.clone() {
        if e.task_id == "c1" {
            e.patient_count += 1;
        }
        rewritten.append(AuditEntry { seq: 0, genesis: String::new(), prev_hash: String::new(), hash: String::new(), ..e }).unwrap();
    }
    assert_eq!(audit::verify(&log_path).unwrap().len(), 5);
    assert_eq!(audit::check_receipts(&audit::verify(&log_path).unwrap(), &audit::read_receipts(&receipts).unwrap()).len(), 5);
    // And an entry hash pointed at another task, or another reply, is named too.
    let mut wrong = audit::read_receipts(&receipts).unwrap();
    wrong[0].task_id = "c9".into();
    wrong[1].reply_digest = "00".repeat(32);
    let problems = audit::check_receipts(&full, &wrong);
    assert!(problems.len() == 2 && problems[0].contains("is for task c1") && problems[1].contains("records reply"), "{problems:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every reply a study's tasks leave in the cache, and every task's bytes kept for the audit,
/// count against `policy.max_study_disk_bytes`; past it the study's tasks are refused with the
/// reason, other studies go on, and a restarted agent counts what is already on disk.
#[test]
fn a_study_past_its_disk_bound_is_refused_with_the_reason() {
    let dir = common::fresh_dir("audit-disk-bound");
    let cohort = common::one_hospital(&dir.join("cohort"), 7, 60);
    let mut cfg = common::local_config(&cohort.manifests[0].1, &dir);
    const BOUND: u64 = 6000;
    cfg.policy.max_study_disk_bytes = BOUND;
    cfg.policy.max_concurrent_tasks = 3;
    let plan = common::approve(&cfg, "s1", |_| {});
    let other = common::approve(&cfg, "s2", |_| {});
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    assert_eq!(engine.task_slots().available_permits(), 3, "the client's bound on tasks at once is the policy's");
    let on_disk = |study: &str| -> u64 {
        let replies: u64 = std::fs::read_dir(cfg.work_dir.join("studies").join(study).join("replies")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        let log_path = cfg.work_dir.join("audit.jsonl");
        let mut digests: Vec<String> = audit::verify(&log_path).unwrap().into_iter().filter(|e| e.study_id == study && e.task_kept).map(|e| e.task_digest).collect();
        digests.sort();
        digests.dedup();
        replies + digests.iter().map(|d| std::fs::metadata(audit::task_file(&log_path, d)).unwrap().len()).sum::<u64>()
    };
    let mut answered = 0;
    let refusal = loop {
        assert!(answered < 200, "the bound never applied");
        match engine.handle(&summary(&plan, &format!("c{answered}"))).outcome {
            Some(task_reply::Outcome::Aggregate(_)) => answered += 1,
            Some(task_reply::Outcome::Refusal(r)) => break r,
            other => panic!("{other:?}"),
        }
    };
    assert!(answered >= 2, "a few replies fit in {BOUND} bytes");
    assert_eq!(refusal.reason, RefusalReason::Precondition as i32);
    assert!(refusal.detail.contains("this study has used") && refusal.detail.contains(&format!("its policy allows {BOUND}")), "{}", refusal.detail);
    let used = on_disk("s1");
    assert!(used <= BOUND, "{used} bytes on disk for a bound of {BOUND}");
    // An answered task resent is still answered from its cache; another study is unaffected.
    assert!(matches!(engine.handle(&summary(&plan, "c0")).outcome, Some(task_reply::Outcome::Aggregate(_))));
    assert!(matches!(engine.handle(&summary(&other, "c0")).outcome, Some(task_reply::Outcome::Aggregate(_))));
    drop(engine);
    // A restarted agent counts the study's files before answering: the refusal reports what
    // is on disk (the refused task's own bytes included, if they still fitted).
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    let refused = |id: &str| match engine.handle(&summary(&plan, id)).outcome {
        Some(task_reply::Outcome::Refusal(r)) => r.detail,
        other => panic!("{other:?}"),
    };
    let detail = refused("after-restart");
    let used = on_disk("s1");
    assert!(detail.contains(&format!("this study has used {used} bytes")) && used <= BOUND, "{used}: {detail}");
    // Tasks past the bound keep nothing more.
    for i in 0..3 {
        refused(&format!("more-{i}"));
    }
    assert_eq!(on_disk("s1"), used);
    let _ = std::fs::remove_dir_all(&dir);
}
