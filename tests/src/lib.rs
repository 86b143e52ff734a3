//! Helpers for multi-site tests: a temporary folder, a small synthetic cohort, a study PKI,
//! a coordinator and site agents in this process talking real mutual-TLS gRPC on loopback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coordinator::config::{CoordinatorConfig, FeatureSettings, SplitSettings, StudyConfig, Table1Settings, Timeouts};
use fedrad_shared::clinical::{PatientRecord, VariableSpec, npc_dictionary};
use fedrad_shared::pki::StudyPki;
use fedrad_shared::tls::TlsFiles;
use site_agent::config::{Policy, SiteConfig};
use tokio::sync::oneshot;

/// A folder under the system temp dir, removed on drop unless FEDRAD_KEEP_TEST_DIRS is set.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("fedrad-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("FEDRAD_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A small, coarse cohort (few voxels) so tests stay fast; same generator as the demo.
pub fn small_cohort(dir: &Path, patients: usize, seed: u64) -> fedrad_synth::GeneratedCohort {
    let mut spec = fedrad_synth::default_cohort(seed, patients);
    spec.coarsen = 3.0;
    fedrad_synth::generate(&spec, dir, &|| {}).expect("cohort generation")
}

pub fn coordinator_config(pki: &StudyPki) -> CoordinatorConfig {
    CoordinatorConfig {
        listen: "127.0.0.1:0".into(),
        tls: Some(TlsFiles::bundle(&pki.coordinator_bundle())),
        insecure_plaintext: false,
        max_message_bytes: fedrad_shared::DEFAULT_MAX_MESSAGE_BYTES,
        revoked: None,
        issued: None,
    }
}

pub fn site_config(site: &str, port: u16, manifest: &Path, work: &Path, tls: TlsFiles) -> SiteConfig {
    SiteConfig {
        site_id: site.into(),
        coordinator: format!("https://localhost:{port}"),
        coordinator_name: None,
        manifest: manifest.into(),
        work_dir: work.into(),
        tls: Some(tls),
        insecure_plaintext: false,
        policy: Policy::default(),
        clinical: Default::default(),
        export: Default::default(),
        max_message_bytes: fedrad_shared::DEFAULT_MAX_MESSAGE_BYTES,
        networks_dir: None,
    }
}

pub fn study_config(study_id: &str, out: &Path, sites: Vec<String>, seed: u64) -> StudyConfig {
    StudyConfig {
        study_id: study_id.into(),
        output_dir: out.into(),
        seed,
        sites,
        timeouts: Timeouts { site_wait_secs: 60, task_secs: 60 },
        variables: Vec::new(),
        split: SplitSettings::default(),
        table1: Table1Settings::default(),
        features: FeatureSettings::default(),
        selection: Default::default(),
        clinical_model: Default::default(),
        models: Default::default(),
        // A small, quick encoder: the tests check the federation, not the features' quality.
        deep: coordinator::config::DeepSettings { rounds: 3, embedding: 48, ..Default::default() },
        limits: Default::default(),
        secure_aggregation: Default::default(),
        combat: Default::default(),
        validation: Default::default(),
    }
}

/// Every listed site's operator approves the study's plan (what `site-agent approve --study`
/// does at each hospital); sites the plan does not list are left alone. A study that
/// secure-sums and pins no keys first gets the agents' (what `coordinator certs pins` prints).
pub fn approve_study(agents: &[RunningAgent], study: &mut StudyConfig) {
    if study.secure_aggregation.on(study.sites.len()) && study.secure_aggregation.site_keys.is_empty() {
        study.secure_aggregation.site_keys = agents
            .iter()
            .filter(|a| study.sites.contains(&a.engine.config.site_id))
            .filter_map(|a| Some((a.engine.config.site_id.clone(), a.engine.key_fingerprint()?)))
            .collect();
    }
    let plan = study.plan().expect("the study's plan");
    for a in agents {
        let cfg = &a.engine.config;
        if plan.sites.contains(&cfg.site_id) {
            site_agent::approval::approve(&cfg.work_dir, &cfg.site_id, &cfg.schema(), &plan, cfg.key_fingerprint().unwrap().as_deref()).expect("approval");
        }
    }
}

/// A site agent running in this process until dropped.
pub struct RunningAgent {
    stop: Option<oneshot::Sender<()>>,
    pub engine: Arc<site_agent::engine::SiteEngine>,
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start_agent(cfg: SiteConfig) -> RunningAgent {
    let engine = tokio::task::spawn_blocking(move || site_agent::load_engine(cfg)).await.unwrap().expect("agent loads");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(site_agent::client::run(engine.clone(), async {
        let _ = rx.await;
    }));
    RunningAgent { stop: Some(tx), engine }
}

/// Every patient of every manifest, read straight from the files with the shared schema —
/// independent of the site agent's loader — for pooled references.
pub fn pooled_records(cohort: &fedrad_synth::GeneratedCohort) -> Vec<(String, PatientRecord)> {
    let schema: Vec<VariableSpec> = npc_dictionary();
    let mut out = Vec::new();
    for (site, manifest) in &cohort.manifests {
        let mut r = csv::Reader::from_path(manifest).unwrap();
        let headers = r.headers().unwrap().clone();
        for row in r.records() {
            let row = row.unwrap();
            let get = |c: &str| row.get(headers.iter().position(|h| h == c).unwrap()).unwrap().to_string();
            let clinical: BTreeMap<String, _> = schema.iter().map(|v| (v.name.clone(), v.parse(&get(&v.name)).unwrap())).collect();
            out.push((site.clone(), PatientRecord { patient_id: get("patient_id"), outcome: get("recurrence") == "1", clinical }));
        }
    }
    out
}

/// A coordinator on loopback and one in-process agent per hospital of `cohort`, over mutual
/// TLS with a fresh study PKI in `dir`; `adjust` edits each site's config before it starts.
pub struct Federation {
    pub server: coordinator::RunningServer,
    pub agents: Vec<RunningAgent>,
    pub sites: Vec<String>,
}

pub async fn start_federation(dir: &Path, cohort: &fedrad_synth::GeneratedCohort, adjust: impl Fn(&str, &mut SiteConfig)) -> Federation {
    let sites: Vec<String> = cohort.manifests.iter().map(|m| m.0.clone()).collect();
    let pki = StudyPki::init_with_enrolled_sites(&dir.join("pki"), "test", &["localhost".into()], &sites).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let mut agents = Vec::new();
    for (site, manifest) in &cohort.manifests {
        let mut cfg = site_config(site, server.addr.port(), manifest, &dir.join("work").join(site), TlsFiles::bundle(&pki.site_bundle(site)));
        adjust(site, &mut cfg);
        agents.push(start_agent(cfg).await);
    }
    Federation { server, agents, sites }
}
