//! One federated round: the coordinator sends a small task (the cohort summary) to four site
//! agents over mutual-TLS gRPC on loopback, waits for all four aggregates and combines them.
//! Each round has a fresh task id, so every site really computes, caches, audits (with an
//! fsync) and answers. Prints the median and spread over many rounds.
//!
//!     cargo bench -p fedrad-tests --bench federated_round [-- ROUNDS]

use std::time::{Duration, Instant};

use fedrad_shared::aggregate::SiteAggregate;
use fedrad_shared::algorithms::cohort_summary;
use fedrad_shared::pki::StudyPki;
use fedrad_shared::proto::{self, task, task_reply};
use fedrad_shared::tls::TlsFiles;
use fedrad_tests::*;

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let dir = TempDir::new("bench-round");
        let cohort = small_cohort(&dir.path().join("cohort"), 80, 1);
        let sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
        let pki = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "bench", &["localhost".into()], &sites).unwrap();
        let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
        let mut agents = Vec::new();
        for (site, manifest) in &cohort.manifests {
            let cfg = site_config(site, server.addr.port(), manifest, &dir.path().join("work").join(site), TlsFiles::bundle(&pki.site_bundle(site)));
            agents.push(start_agent(cfg).await);
        }
        server.hub.wait_for_sites(&sites, Duration::from_secs(30), &|_| {}).await.unwrap();
        let mut study = fedrad_tests::study_config("bench", &dir.path().join("out"), sites.clone(), 1);
        fedrad_tests::approve_study(&agents, &mut study);
        let plan = study.plan().unwrap();

        let mut times = Vec::with_capacity(rounds);
        for r in 0..rounds + 20 {
            let start = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for site in &sites {
                let hub = server.hub.clone();
                let site = site.clone();
                let t = proto::Task {
                    study_sites: plan.sites.clone(),
                    task_id: format!("bench-{r}"),
                    study_id: "bench".into(),
                    plan_sha256: plan.sha256(),
                    kind: Some(task::Kind::CohortSummary(proto::CohortSummaryTask {})),
                    secure_sum: None,
                };
                set.spawn(async move { (site.clone(), hub.run_task(&site, t, Duration::from_secs(30)).await) });
            }
            let mut answers = Vec::new();
            while let Some(j) = set.join_next().await {
                let (site, reply) = j.unwrap();
                let Some(task_reply::Outcome::Aggregate(a)) = reply.unwrap().outcome else { panic!("no aggregate") };
                answers.push(SiteAggregate::new(site, a));
            }
            let summary = cohort_summary::combine(&answers).unwrap();
            assert_eq!(summary.loaded, 80);
            if r >= 20 {
                times.push(start.elapsed().as_secs_f64() * 1e3); // the first 20 warm up
            }
        }
        times.sort_by(f64::total_cmp);
        let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
        println!("federated round, 4 sites, mutual TLS on loopback, {rounds} rounds:");
        println!("  median {:.3} ms   p10 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   max {:.3} ms", q(0.5), q(0.1), q(0.9), q(0.99), q(1.0));
        drop(agents);
        server.stop().await;
    });
}
