//! Chaos: a short study run with the real binaries — `coordinator serve` and four
//! `site-agent run` processes over mutual TLS on loopback — during which the coordinator and
//! the agents are killed (SIGKILL) at pseudo-random moments and restarted (the coordinator
//! with `--resume`). The final `results.json` must be byte-identical to an undisturbed run's.
//! Bounded: four disturbances, each run at most five minutes.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fedrad_shared::pki::StudyPki;

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("fedrad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Child processes killed however the test ends.
struct Processes {
    coordinator: Option<Child>,
    agents: Vec<Child>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in self.coordinator.iter_mut().chain(self.agents.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Setup {
    base: PathBuf,
    pki: StudyPki,
    manifests: Vec<(String, PathBuf)>,
}

impl Setup {
    fn agent(&self, label: &str, site: &str) -> Child {
        let config = self.base.join(label).join("sites").join(site).join("site.toml");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(config.with_file_name("agent.log")).unwrap();
        Command::new(common::site_agent_binary()).args(["run", "--config"]).arg(&config).env("RUST_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().unwrap()
    }

    fn coordinator(&self, label: &str, resume: bool) -> Child {
        let dir = self.base.join(label);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("coordinator.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coordinator"));
        cmd.args(["serve", "--config"]).arg(dir.join("coordinator.toml")).arg("--study").arg(dir.join("study.toml"));
        if resume {
            cmd.arg("--resume");
        }
        cmd.env("RUST_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().unwrap()
    }

    /// Runs the study once; `disturb` kills and restarts processes on the way.
    fn run(&self, label: &str, disturb: bool) -> Vec<u8> {
        let dir = self.base.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let bundle = self.pki.coordinator_bundle();
        std::fs::write(
            dir.join("coordinator.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                bundle.join("ca.pem").display(),
                bundle.join("cert.pem").display(),
                bundle.join("key.pem").display()
            ),
        )
        .unwrap();
        let sites: Vec<String> = self.manifests.iter().map(|m| format!("\"{}\"", m.0)).collect();
        std::fs::write(
            dir.join("study.toml"),
            format!(
                "study_id = \"chaos\"\noutput_dir = \"study\"\nseed = 7\nsites = [{}]\n[timeouts]\nsite_wait_secs = 120\ntask_secs = 120\n\
                 [selection]\nselect_at = \"lambda_1se\"\n[selection.lasso]\nfolds = 3\n\
                 [models]\nclassifiers = [\"logistic_regression\", \"random_forest\", \"naive_bayes\"]\nforest = {{ trees = 20 }}\n\
                 [deep]\nrounds = 4\nembedding = 32\n\
                 [secure_aggregation]\nsite_keys = {{ {} }}\n",
                sites.join(", "),
                // What `coordinator certs pins` prints: secure aggregation is on (four sites).
                self.pki.current_pins().unwrap().iter().map(|(s, f)| format!("{s} = \"{f}\"")).collect::<Vec<_>>().join(", ")
            ),
        )
        .unwrap();
        for (site, manifest) in &self.manifests {
            let s = dir.join("sites").join(site);
            coordinator::demo::write_site_config(
                &s.join("site.toml"),
                site,
                &format!("https://localhost:{port}"),
                manifest,
                &s.join("work"),
                &self.pki.site_bundle(site),
            )
            .unwrap();
            // Each hospital's operator approves the study file as the coordinator runs it.
            let approved = Command::new(common::site_agent_binary())
                .args(["approve", "--config"])
                .arg(s.join("site.toml"))
                .arg("--study")
                .arg(dir.join("study.toml"))
                .output()
                .unwrap();
            assert!(approved.status.success(), "approve: {}", String::from_utf8_lossy(&approved.stderr));
            assert!(String::from_utf8_lossy(&approved.stdout).contains("approved for"));
        }
        let mut procs = Processes { coordinator: None, agents: self.manifests.iter().map(|(site, _)| self.agent(label, site)).collect() };
        procs.coordinator = Some(self.coordinator(label, false));
        let started = Instant::now();
        if disturb {
            // xorshift from a fixed seed: the same moments on every run of the test.
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut next = move |n: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % n
            };
            for k in 0..4 {
                std::thread::sleep(Duration::from_millis(1500 + next(3000)));
                if procs.coordinator.as_mut().unwrap().try_wait().unwrap().is_some() {
                    break; // already finished
                }
                if k % 2 == 0 {
                    let c = procs.coordinator.as_mut().unwrap();
                    c.kill().unwrap();
                    c.wait().unwrap();
                    procs.coordinator = Some(self.coordinator(label, true));
                } else {
                    let i = next(self.manifests.len() as u64) as usize;
                    procs.agents[i].kill().unwrap();
                    procs.agents[i].wait().unwrap();
                    procs.agents[i] = self.agent(label, &self.manifests[i].0);
                }
            }
        }
        let status = loop {
            if let Some(s) = procs.coordinator.as_mut().unwrap().try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "the {label} study did not finish in 5 minutes; see {}", dir.display());
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(status.success(), "the {label} study failed; see {}", dir.join("coordinator.log").display());
        std::fs::read(dir.join("study/results.json")).unwrap()
    }
}

#[test]
fn chaos_killed_coordinator_and_agents_resume_to_byte_identical_results() {
    let base = tmp("chaos");
    let mut spec = fedrad_synth::default_cohort(7, 120);
    spec.coarsen = 3.0;
    let cohort = fedrad_synth::generate(&spec, &base.join("cohort"), &|| {}).unwrap();
    let sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
    let pki = StudyPki::init_with_enrolled_sites(&base.join("pki"), "chaos", &["localhost".into()], &sites).unwrap();
    let setup = Setup { base: base.clone(), pki, manifests: cohort.manifests.clone() };
    let calm = setup.run("calm", false);
    let disturbed = setup.run("disturbed", true);
    let log = std::fs::read_to_string(base.join("disturbed/coordinator.log")).unwrap();
    assert!(calm == disturbed, "results.json differs after the disturbances; compare {}", base.display());
    assert!(log.matches("coordinator listening").count() >= 2, "the coordinator was restarted");
    // The last coordinator resumed from the journal rather than asking everything again.
    let protocol: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(base.join("disturbed/study/protocol.json")).unwrap()).unwrap();
    let replayed: u64 = protocol.as_array().unwrap().iter().map(|p| p["replayed_rounds"].as_u64().unwrap()).sum();
    assert!(replayed > 0, "nothing was replayed: {protocol}");
    let _ = std::fs::remove_dir_all(&base);
}
