//! The coordinator's two files: `coordinator.toml` (where it listens, its certificates)
//! and `study.toml` (what to run). Relative paths are relative to the file's folder.
//!
//! ```toml
//! # coordinator.toml
//! listen = "0.0.0.0:50051"
//! [tls]
//! ca = "pki/coordinator/ca.pem"
//! cert = "pki/coordinator/cert.pem"
//! key = "pki/coordinator/key.pem"
//! ```
//!
//! ```toml
//! # study.toml
//! study_id = "npc-recurrence"
//! output_dir = "results"
//! seed = 20260101
//! sites = ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]
//! [timeouts]
//! site_wait_secs = 600   # how long to wait for every site to connect
//! task_secs = 900        # how long one site may take for one task (incl. reconnects)
//! [split]
//! training_fraction = 0.7
//! [table1]
//! variables = ["age", "sex", "t_stage", "n_stage", "overall_stage", "ebv_dna", "histology"]
//! [features]
//! parameters = "radiomics.yaml"   # PyRadiomics parameter file; default: FedRad's MRI settings
//! ```

use std::path::{Path, PathBuf};

use fedrad_shared::clinical::{VariableSpec, builtin_schema};
use fedrad_shared::tls::TlsFiles;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    pub listen: String,
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Development only: plain TCP, sites identified by what they claim. Logged loudly.
    #[serde(default)]
    pub insecure_plaintext: bool,
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
}

fn default_max_message() -> usize {
    fedrad_shared::DEFAULT_MAX_MESSAGE_BYTES
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    pub study_id: String,
    pub output_dir: PathBuf,
    pub seed: u64,
    pub sites: Vec<String>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub split: SplitSettings,
    #[serde(default)]
    pub table1: Table1Settings,
    #[serde(default)]
    pub features: FeatureSettings,
}

/// Radiomic feature extraction at the sites.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSettings {
    /// A PyRadiomics parameter file (YAML), sent to every site; default: FedRad's MRI settings
    /// (z-score ×100, 32 fixed bins, all IBSI families, 3D texture).
    #[serde(default)]
    pub parameters: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "default_site_wait")]
    pub site_wait_secs: u64,
    #[serde(default = "default_task")]
    pub task_secs: u64,
}

fn default_site_wait() -> u64 {
    600
}
fn default_task() -> u64 {
    900
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { site_wait_secs: default_site_wait(), task_secs: default_task() }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSettings {
    #[serde(default = "default_fraction")]
    pub training_fraction: f64,
}

fn default_fraction() -> f64 {
    0.7
}

impl Default for SplitSettings {
    fn default() -> Self {
        SplitSettings { training_fraction: default_fraction() }
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Table1Settings {
    /// Built-in variables to tabulate (default: all of them).
    #[serde(default)]
    pub variables: Option<Vec<String>>,
    /// Extra variables the sites declare in their `[clinical.extra]`.
    #[serde(default)]
    pub extra: Vec<VariableSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })
}

impl CoordinatorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut c: CoordinatorConfig = toml::from_str(&read(path)?).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.tls = c.tls.map(|t| t.resolve(base));
        if c.tls.is_none() && !c.insecure_plaintext {
            return Err(ConfigError::Invalid { path: path.into(), detail: "[tls] is required (or insecure_plaintext = true for development)".into() });
        }
        Ok(c)
    }
}

impl StudyConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut s: StudyConfig = toml::from_str(&read(path)?).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        s.output_dir = base.join(&s.output_dir);
        s.features.parameters = s.features.parameters.map(|p| base.join(p));
        s.validate().map_err(|detail| ConfigError::Invalid { path: path.into(), detail })?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        let ok_id = !self.study_id.is_empty()
            && self.study_id.len() <= 64
            && !self.study_id.starts_with('.')
            && self.study_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok_id {
            return Err(format!("study_id {:?}: use 1-64 characters A-Z a-z 0-9 . _ -", self.study_id));
        }
        if self.sites.is_empty() {
            return Err("sites: list at least one site".into());
        }
        for s in &self.sites {
            fedrad_shared::identity::validate_site_id(s).map_err(|e| e.to_string())?;
        }
        let f = self.split.training_fraction;
        if !(f > 0.0 && f < 1.0) {
            return Err(format!("split.training_fraction = {f}: must be between 0 and 1"));
        }
        self.table1_variables()?;
        Ok(())
    }

    /// The Table 1 variables in order: chosen built-ins, then extras.
    pub fn table1_variables(&self) -> Result<Vec<VariableSpec>, String> {
        let builtin = builtin_schema();
        let mut out = match &self.table1.variables {
            None => builtin.clone(),
            Some(names) => names
                .iter()
                .map(|n| builtin.iter().find(|v| &v.name == n).cloned().ok_or_else(|| format!("table1.variables: unknown variable `{n}` (declare it under [[table1.extra]])")))
                .collect::<Result<_, _>>()?,
        };
        out.extend(self.table1.extra.iter().cloned());
        Ok(out)
    }
}
