//! What recomputation costs a site per LASSO round, against computing its answer: a LASSO run
//! with cross-validation (229 patients × 40 columns over four sites, the default settings, a
//! column limit of 10) in one process, with every site's answer masked and signed as under
//! secure aggregation, and hospital-a checking each round as its agent does
//! (`replay::Runs::accept`: its own answer against the one it sent, the three others'
//! signatures, the fixed-point sum, the solver's replay and the synced run log).
//!
//! `cargo run --release -p site-agent --example recompute_overhead`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fedrad_shared::aggregate::SiteAggregate;
use fedrad_shared::algorithms::glm::{GlmFamily, TrainingView};
use fedrad_shared::algorithms::lasso::{self, LassoPathSolver, LassoReplica, LassoRequest, LassoSettings};
use fedrad_shared::algorithms::testdata::{cohort, site_ranges, standardiser};
use fedrad_shared::proto;
use fedrad_shared::secure_sum::{self, MaskingIdentity, RoundBinding};
use rustls_pki_types::pem::PemObject;
use site_agent::replay::{Round, RunTask, key_of, lasso_runs};

fn main() {
    let dir = std::env::temp_dir().join(format!("fedrad-recompute-overhead-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sites: Vec<String> = ["hospital-a", "hospital-b", "hospital-c", "hospital-d"].map(String::from).to_vec();
    let pki = fedrad_shared::pki::StudyPki::init_with_enrolled_sites(&dir.join("pki"), "bench", &["localhost".into()], &sites).expect("a test PKI");
    let identities: Vec<MaskingIdentity> = sites
        .iter()
        .map(|s| {
            let bundle = pki.site_bundle(s);
            let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(bundle.join("key.pem")).expect("key");
            let cert = rustls_pki_types::CertificateDer::from_pem_file(bundle.join("cert.pem")).expect("certificate");
            MaskingIdentity::new(s, key.secret_pkcs8_der(), &cert, None).expect("a masking identity")
        })
        .collect();
    let pins: BTreeMap<String, String> = identities.iter().map(|i| (i.site_id().to_string(), i.fingerprint())).collect();
    let directory = proto::SecureSum { sites: identities.iter().map(|i| i.entry()).collect() };
    let verified: Vec<_> = identities.iter().map(|i| secure_sum::verify_peers(i, &sites, &pins, &directory).expect("verified peers")).collect();

    let (x, y, fold) = cohort(7);
    let std = standardiser(&x);
    let p = std.center.len();
    let ranges = site_ranges(&[73, 62, 53, 41]);
    let settings = LassoSettings::default();
    let mut solver = LassoPathSolver::new(settings.clone(), p).with_max_block_columns(10);
    let runs = lasso_runs();
    let key = key_of(&[b"bench"]);
    let study_dir = dir.join("study");
    let mut sent: BTreeMap<String, proto::Aggregate> = BTreeMap::new();
    let mut previous: Vec<proto::SignedAnswer> = Vec::new();
    let (mut compute, mut mask_sign, mut check) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut rounds = 0u32;
    while let Some(request) = solver.request() {
        rounds += 1;
        let task_id = format!("lasso-r{rounds}");
        let digest = fedrad_shared::digest::sha256_hex(task_id.as_bytes());
        let (points, cv) = match &request {
            LassoRequest::Round(points) => (points.clone(), None),
            LassoRequest::CvLoss(points) => (points.clone(), Some(solver.path_end())),
        };
        // hospital-a's check of the task (what its agent adds to answering it).
        let asked: Vec<proto::GlmPoint> = points.iter().map(|q| q.to_proto()).collect();
        let expect = |r: &LassoReplica| match cv {
            None => r.expect_round(&asked),
            Some(l) => r.expect_cv(&asked, l as u32),
        };
        let fresh = || LassoReplica::new(settings.clone(), p, 10);
        let round = Round {
            site_id: "hospital-a",
            study_id: "bench",
            plan_sha256: "plan",
            task_id: &task_id,
            task_digest: &digest,
            plan_sites: &sites,
            verified: Some(&verified[0]),
            study_dir: &study_dir,
        };
        let started = Instant::now();
        let task = RunTask { slot: "t2".into(), key: key.clone(), participants: sites.clone(), fresh: &fresh, expect: &expect, previous: &previous, opening: None };
        if runs
            .accept(&round, task, false, &site_agent::replay::NoDiskBound, |id| sent.get(id).map(|a| (fedrad_shared::digest::sha256_hex(id.as_bytes()), a.clone())))
            .is_err()
        {
            panic!("round {rounds}: the honest round was refused");
        }
        check += started.elapsed();
        // Every site's answer: computed (timed for hospital-a), masked and signed.
        let binding = RoundBinding { study_id: "bench", plan_sha256: "plan", task_id: &task_id, task_sha256: &digest };
        let mut answers = Vec::new();
        previous = Vec::new();
        for (k, r) in ranges.iter().enumerate() {
            let view = TrainingView { x: &x[r.clone()], y: &y[r.clone()], fold: &fold[r.clone()] };
            let started = Instant::now();
            let clear = match cv {
                None => lasso::site_round(view, &std, GlmFamily::Binomial, &points, 0, f64::INFINITY),
                Some(l) => lasso::site_cv_loss(view, &std, GlmFamily::Binomial, l, &points, 0, f64::INFINITY),
            }
            .expect("an answer");
            if k == 0 {
                compute += started.elapsed();
            }
            let started = Instant::now();
            let masked = secure_sum::mask(&identities[k], &verified[k], binding, clear).expect("masked");
            let signature = identities[k].sign_answer(binding, &masked).expect("signed");
            if k == 0 {
                mask_sign += started.elapsed();
                sent.insert(task_id.clone(), masked.clone());
            }
            answers.push(SiteAggregate::new(sites[k].clone(), masked.clone()));
            previous.push(proto::SignedAnswer { site_id: sites[k].clone(), aggregate: Some(masked), signature });
        }
        let sum = lasso::sum_of_answers(&answers).expect("a sum");
        match request {
            LassoRequest::Round(points) => solver.absorb_round(&lasso::combine_round(std::slice::from_ref(&sum), &points, p).expect("totals")).expect("absorbed"),
            LassoRequest::CvLoss(_) => {
                let (s, q, n) = lasso::combine_cv(std::slice::from_ref(&sum), solver.path_end()).expect("CV totals");
                solver.absorb_cv(s, q, n).expect("absorbed");
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(rounds);
    println!(
        "{rounds} LASSO rounds at hospital-a (73 of 229 patients, 40 columns): computing its answer {:.3} ms per round, masking and signing it {:.3} ms, checking the task (signatures, sum, replay, synced log) {:.3} ms",
        ms(compute),
        ms(mask_sign),
        ms(check)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
