//! Set-up shared by the site-agent tests: one hospital's synthetic cohort in a fresh
//! temporary folder, and a site config that points at it (never connected anywhere).

use std::path::{Path, PathBuf};

/// A fresh, empty folder for one test.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fedrad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One coarse hospital (the first of the default four) out of a cohort of `patients`.
pub fn one_hospital(dir: &Path, seed: u64, patients: usize) -> fedrad_synth::GeneratedCohort {
    let mut spec = fedrad_synth::default_cohort(seed, patients);
    spec.coarsen = 3.0;
    spec.hospitals.truncate(1);
    fedrad_synth::generate(&spec, dir, &|| {}).unwrap()
}

/// A config for `hospital-a` reading `manifest`, with its work folder in `dir`.
pub fn local_config(manifest: &Path, dir: &Path) -> site_agent::config::SiteConfig {
    site_agent::config::SiteConfig {
        site_id: "hospital-a".into(),
        coordinator: "https://localhost:1".into(),
        coordinator_name: None,
        manifest: manifest.to_path_buf(),
        work_dir: dir.join("work"),
        tls: Some(fedrad_shared::tls::TlsFiles::bundle(dir)),
        insecure_plaintext: false,
        policy: Default::default(),
        clinical: Default::default(),
        max_message_bytes: 1 << 20,
        networks_dir: None,
    }
}
