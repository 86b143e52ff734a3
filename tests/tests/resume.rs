//! A coordinator restarted with `--resume` continues from its round journal: rounds it has
//! answers for are not asked again, and `results.json` comes out byte for byte the same as
//! an undisturbed run's.

use coordinator::study::{Quiet, StudyRunner};
use fedrad_shared::algorithms::classifiers::ClassifierKind;
use fedrad_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_study_replays_its_journal_and_writes_the_same_results() {
    let dir = TempDir::new("resume");
    let seed = 5;
    let cohort = small_cohort(&dir.path().join("cohort"), 120, seed);
    let Federation { server, agents, sites } = start_federation(dir.path(), &cohort, |_, cfg| {
        cfg.policy.min_count = 1;
        cfg.policy.max_parameter_ratio = 1.0;
    })
    .await;
    let out = dir.path().join("study");
    let mut study = study_config("resume-test", &out, sites, seed);
    study.selection.lasso.folds = 5;
    study.models.classifiers = vec![ClassifierKind::LogisticRegression, ClassifierKind::RandomForest];
    approve_study(&agents, &mut study);
    let run = async |resume: bool| StudyRunner::new(server.hub.clone(), study.clone(), &Quiet).resume(resume).run().await.expect("study runs");
    let read = || std::fs::read(out.join("results.json")).unwrap();

    let first = run(false).await;
    let reference = read();
    assert!(first.protocol.iter().all(|p| p.replayed_rounds == 0 && p.tasks > 0), "a fresh run asks the sites");

    // Restarted after it had finished: every round is replayed, nothing is sent.
    let again = run(true).await;
    assert_eq!(read(), reference, "results.json is byte-identical");
    // A refused round is not journaled (a site's policy may have changed since): the one
    // round where a site refused a classifier is asked again, nothing else.
    let refused: Vec<String> = first.models.iter().filter(|m| !m.not_fitted.is_empty()).map(|m| format!("models.{}.{}", m.sequence, m.model)).collect();
    for p in &again.protocol {
        if refused.contains(&p.step) {
            assert_eq!(p.replayed_rounds + 1, p.rounds, "{}: only the refused round is asked again", p.step);
        } else {
            assert_eq!((p.tasks, p.bytes_to_sites, p.replayed_rounds), (0, 0, p.rounds), "{} was asked again", p.step);
        }
    }

    // Restarted after a crash in the models step: its rounds and everything later were never
    // journaled. Earlier steps replay; the rest is asked again; the results are the same.
    let journal = out.join("journal");
    let mut removed = 0;
    for entry in std::fs::read_dir(&journal).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("models.t2.III") || name.starts_with("compare_models") {
            std::fs::remove_file(journal.join(&name)).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 5);
    let resumed = run(true).await;
    assert_eq!(read(), reference, "results.json is byte-identical after the resumed crash");
    let step = |name: &str| resumed.protocol.iter().find(|p| p.step == name).unwrap();
    assert_eq!(step("lasso.t2.radiomic").tasks, 0, "finished steps are not asked again");
    assert!(step("models.t2.III").tasks > 0 && step("compare_models").tasks > 0, "the lost rounds are asked again");

    // A study file that changed is another plan, which the sites approve anew and answer in
    // full (they keep their ledgers per plan): nothing is replayed, the split stays as fixed.
    let mut changed = study.clone();
    changed.models.logistic.c = 0.5;
    approve_study(&agents, &mut changed);
    let other = StudyRunner::new(server.hub.clone(), changed, &Quiet).resume(true).run().await.expect("study runs");
    let step = |name: &str| other.protocol.iter().find(|p| p.step == name).unwrap();
    assert!(step("split").tasks > 0 && step("split").replayed_rounds == 0);
    assert_eq!(other.split.total.training(), resumed.split.total.training());
    assert!(step("models.t1c.I").tasks > 0, "rounds whose tasks changed are asked again");
    let lr = other.models.iter().find(|m| m.sequence == "t1c" && m.model == "I").unwrap();
    assert!(lr.note.is_none(), "the sites answer the changed rounds: {:?}", lr.note);
    assert_eq!(lr.classifiers.iter().find(|c| c.classifier == ClassifierKind::LogisticRegression).unwrap().c, Some(0.5));
    assert_ne!(read(), reference);
    drop(agents);
    server.stop().await;
}
