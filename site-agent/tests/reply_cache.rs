//! A task resent after a reconnect keeps its id: the site answers it from its cache without
//! recomputing, byte for byte; an id reused for a different task is refused.

use fedrad_shared::proto::{self, task, task_reply};
use prost::Message;

mod common;

#[test]
fn repeated_task_ids_are_answered_from_the_cache_and_reuse_is_refused() {
    let dir = common::fresh_dir("reply-cache");
    let cohort = common::one_hospital(&dir.join("cohort"), 4, 100);
    let cfg = common::local_config(&cohort.manifests[0].1, &dir);
    let plan = common::approve(&cfg, "s1", |s| s.seed = 7);
    let engine = site_agent::load_engine(cfg).unwrap();
    let positives = engine.cohort.records.iter().filter(|r| r.outcome).count() as u64;
    let negatives = engine.cohort.records.len() as u64 - positives;
    let (qn, qp) = (negatives * 7 / 10, positives * 7 / 10);
    let split = |seed| common::task(&plan, "split-r1", Some(task::Kind::Split(proto::SplitTask { seed, training_quota_negative: qn, training_quota_positive: qp })));
    let first = engine.handle(&split(7));
    assert!(matches!(first.outcome, Some(task_reply::Outcome::Aggregate(_))), "{first:?}");
    let again = engine.handle(&split(7));
    // The same reply, byte for byte, but each carries the hash of its own audit entry.
    assert_eq!(headless(&first), headless(&again));
    assert_ne!(first.audit_head, again.audit_head);
    let reused = engine.handle(&split(8));
    match reused.outcome {
        Some(task_reply::Outcome::Refusal(r)) => assert!(r.detail.contains("already used for a different task"), "{}", r.detail),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A new id that tries to change the split is refused too: its seed is not the plan's.
    let mut other = split(8);
    other.task_id = "split-r2".into();
    match engine.handle(&other).outcome {
        Some(task_reply::Outcome::Refusal(r)) => assert!(r.detail.contains("study plan"), "{}", r.detail),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let log = site_agent::audit::verify(&dir.join("work/audit.jsonl")).unwrap();
    let outcomes: Vec<&str> = log.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["sent", "sent_from_cache", "refused", "refused"]);
    assert_eq!((log[0].hash.as_str(), log[1].hash.as_str()), (first.audit_head.as_str(), again.audit_head.as_str()));
    // Editing any entry breaks the chain.
    let text = std::fs::read_to_string(dir.join("work/audit.jsonl")).unwrap();
    std::fs::write(dir.join("work/audit.jsonl"), text.replacen("\"refused\"", "\"sent\"", 1)).unwrap();
    assert!(site_agent::audit::verify(&dir.join("work/audit.jsonl")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The chaos test found this: a coordinator restarted during feature extraction resends the
/// extraction task while the site is still computing the first copy. Both copies wrote the
/// same files through the same temporary name and one failed ("No such file or directory").
/// Now the second waits for the first and is answered from the cache.
#[test]
fn a_task_resent_while_it_is_computed_waits_and_is_answered_from_the_cache() {
    let dir = common::fresh_dir("reply-in-flight");
    let cohort = common::one_hospital(&dir.join("cohort"), 6, 101);
    let cfg = common::local_config(&cohort.manifests[0].1, &dir);
    let plan = common::approve(&cfg, "s1", |_| {});
    let engine = std::sync::Arc::new(site_agent::load_engine(cfg).unwrap());
    let extract = common::task(&plan, "extract-r1", Some(task::Kind::ExtractFeatures(proto::ExtractFeaturesTask { parameters_yaml: String::new() })));
    let replies: Vec<proto::TaskReply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| engine.handle(&extract))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &replies {
        assert!(matches!(r.outcome, Some(task_reply::Outcome::Aggregate(_))), "{r:?}");
        assert_eq!(headless(r), headless(&replies[0]));
    }
    let log = site_agent::audit::verify(&dir.join("work/audit.jsonl")).unwrap();
    let outcomes: Vec<&str> = log.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["sent", "sent_from_cache", "sent_from_cache"]);
    let leftovers: Vec<_> = walk(&dir.join("work")).into_iter().filter(|p| p.to_string_lossy().contains(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reply's bytes without its audit head (which names its own audit entry).
fn headless(r: &proto::TaskReply) -> Vec<u8> {
    proto::TaskReply { audit_head: String::new(), ..r.clone() }.encode_to_vec()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The approval gate comes before the cache: once the operator withdraws a study, even a resend
/// of an answered task is refused, and approving again answers it from the cache.
#[test]
fn a_withdrawn_study_gets_no_resends_from_the_cache() {
    let dir = common::fresh_dir("reply-withdrawn");
    let cohort = common::one_hospital(&dir.join("cohort"), 4, 100);
    let cfg = common::local_config(&cohort.manifests[0].1, &dir);
    let plan = common::approve(&cfg, "s1", |_| {});
    let engine = site_agent::load_engine(cfg.clone()).unwrap();
    let summary = common::task(&plan, "summary-r1", Some(task::Kind::CohortSummary(proto::CohortSummaryTask {})));
    assert!(matches!(engine.handle(&summary).outcome, Some(task_reply::Outcome::Aggregate(_))));
    site_agent::approval::withdraw(&cfg.work_dir, "s1").unwrap();
    match engine.handle(&summary).outcome {
        Some(task_reply::Outcome::Refusal(r)) => assert!(r.detail.contains("not approved"), "{}", r.detail),
        other => panic!("expected a refusal, got {other:?}"),
    }
    site_agent::approval::approve(&cfg.work_dir, "hospital-a", &cfg.schema(), &plan, None).unwrap();
    assert!(matches!(engine.handle(&summary).outcome, Some(task_reply::Outcome::Aggregate(_))));
    let log = site_agent::audit::verify(&dir.join("work/audit.jsonl")).unwrap();
    assert_eq!(log.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>(), ["sent", "refused", "sent_from_cache"]);
    let _ = std::fs::remove_dir_all(&dir);
}
