//! The site's config file (`site.toml`), written by hospital IT.
//!
//! ```toml
//! site_id = "hospital-a"                     # must match the site certificate
//! coordinator = "https://coordinator.example.org:50051"
//! manifest = "/data/npc/manifest.csv"
//! work_dir = "/var/lib/fedrad"               # split records, reply cache, audit log
//! # networks_dir = "networks"                # approved ONNX networks (default: <work_dir>/networks)
//!
//! [tls]                                      # from `coordinator certs init`
//! ca = "certs/ca.pem"
//! cert = "certs/cert.pem"
//! key = "certs/key.pem"
//!
//! [policy]
//! min_count = 5                              # refuse any aggregate over fewer patients
//! max_parameter_ratio = 0.33                 # most model parameters per training patient
//! min_sites = 3                              # answer only studies of at least 3 sites
//! # answers = ["cohort_summary", "split", ...] # task kinds answered (default: all)
//! max_concurrent_tasks = 2                   # tasks computed at once; more wait their turn
//! max_study_disk_bytes = 2147483648          # per study: cached replies + kept task bytes (2 GiB)
//!
//! [[clinical.extra]]                         # optional extra manifest columns
//! name = "smoking"
//! kind = "categorical"
//! levels = ["never", "former", "current"]
//!
//! [export]                                   # the hospital's own names and codes (optional)
//! missing = ["", "NA", "unknown"]
//! [export.columns]                           # the study's column = the export's column
//! patient_id = "MRN"
//! [export.codes.sex]                         # the export's code = the study's level
//! M = "male"
//! F = "female"
//! ```
//!
//! See [`crate::export_mapping`] for every `[export]` setting.
//!
//! Relative paths are relative to the config file's folder.

use std::path::{Path, PathBuf};

use fedrad_shared::clinical::{VariableSpec, npc_dictionary};
use fedrad_shared::tls::TlsFiles;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub site_id: String,
    /// `https://host:port` of the coordinator (`http://` only with `insecure_plaintext`).
    pub coordinator: String,
    /// Name the coordinator's certificate must be valid for; defaults to the URL's host.
    #[serde(default)]
    pub coordinator_name: Option<String>,
    pub manifest: PathBuf,
    pub work_dir: PathBuf,
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Development only: no TLS at all. Logged loudly at every start.
    #[serde(default)]
    pub insecure_plaintext: bool,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub clinical: ClinicalConfig,
    /// How the hospital's export names and codes the study's columns.
    #[serde(default)]
    pub export: crate::export_mapping::ExportMapping,
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Where hospital IT puts study-supplied ONNX networks it has approved (default:
    /// `<work_dir>/networks`). A network runs only if its SHA-256 is the study's.
    #[serde(default)]
    pub networks_dir: Option<PathBuf>,
}

fn default_max_message() -> usize {
    fedrad_shared::DEFAULT_MAX_MESSAGE_BYTES
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Most parameters of a fitted model per training patient of this site (DataSHIELD's
    /// `nfilter.glm`, 0.33 by default): gradients and Hessians of a model with nearly as many
    /// parameters as patients say too much about each of them. It bounds every model-shaped
    /// round over the patients it covers: logistic, SVM and clinical rounds, ComBat's regression,
    /// and each LASSO and cross-validation point's Hessian block and model; whatever the ratio,
    /// a round has fewer parameters than patients.
    #[serde(default = "default_ratio")]
    pub max_parameter_ratio: f64,
    /// Task kinds this site answers (names as in the audit log, e.g. "tree_round"); absent =
    /// every kind this agent version knows. Anything else is refused and audited.
    #[serde(default)]
    pub answers: Option<Vec<String>>,
    /// Fewest sites a study must declare for this site to answer it (default 1: no rule).
    /// With one or two sites, a study's "aggregates" are close to one hospital's data.
    #[serde(default = "default_min_sites")]
    pub min_sites: u32,
    /// Most tasks computed at once (default 2); further tasks wait for one to finish. Each
    /// task can use every core (extraction, encoder training), so more rarely helps.
    #[serde(default = "default_max_concurrent_tasks")]
    pub max_concurrent_tasks: u32,
    /// Most bytes of this site's disk one study may take (default 2 GiB): its cached replies
    /// (`studies/<study>/replies/`) and its tasks' bytes kept for the audit. Past it, the
    /// study's tasks are refused with the reason instead of filling the disk.
    #[serde(default = "default_max_study_disk_bytes")]
    pub max_study_disk_bytes: u64,
    /// In a study that secure-sums, answer the rounds of this site's own site-alone baseline
    /// (a logistic regression fitted on this site's patients alone, whose rounds come to this
    /// site only and so cannot be masked), if the plan asks for them. Off by default: such a
    /// baseline is a per-site result this hospital publishes by choice.
    #[serde(default)]
    pub site_alone_baselines: bool,
    /// Publish this site's own results — its score histograms (each model's AUC at this
    /// hospital), its Table 1 with its excluded manifest rows per reason, and its extraction
    /// and embedding failures per reason — when the approved
    /// plan asks for per-site results (`[validation] per_site_results`). Off by default: this
    /// site then approves no plan that asks for them (all sites publish or none), and in a plan
    /// that does not, its score histograms and Table 1 leave as part of a sum over all the
    /// study's sites — masked when the plan secure-sums; without secure aggregation the
    /// coordinator adds up plain answers and sees each.
    #[serde(default)]
    pub per_site_results: bool,
    /// Answer LASSO and classifier rounds of a study of several sites whose plan pins no site
    /// keys. Such a site cannot check the other sites' signed answers, so it cannot recompute
    /// the rounds' points (`crate::replay`) and answers whatever points the coordinator
    /// chooses within the bounds. Off by default: give the study `[secure_aggregation]
    /// site_keys` (`coordinator certs pins`).
    #[serde(default)]
    pub unverified_rounds: bool,
    /// Take part in studies with leave-one-hospital-out analyses (and approve such plans). Off
    /// by default: the sum of a study's secure sums over every site minus the same sum in the
    /// analysis without this site is this site's own aggregate, so such a study publishes this
    /// hospital's aggregates (moments, fold sums, histograms) as if it were alone, which this
    /// hospital allows by choice.
    #[serde(default)]
    pub leave_one_hospital_out: bool,
}

fn default_max_concurrent_tasks() -> u32 {
    2
}

fn default_max_study_disk_bytes() -> u64 {
    2 << 30
}

fn default_min_sites() -> u32 {
    1
}

fn default_min_count() -> u64 {
    5
}

fn default_ratio() -> f64 {
    0.33
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_count: default_min_count(),
            max_parameter_ratio: default_ratio(),
            answers: None,
            min_sites: default_min_sites(),
            max_concurrent_tasks: default_max_concurrent_tasks(),
            max_study_disk_bytes: default_max_study_disk_bytes(),
            site_alone_baselines: false,
            per_site_results: false,
            unverified_rounds: false,
            leave_one_hospital_out: false,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicalConfig {
    #[serde(default)]
    pub extra: Vec<VariableSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("config {path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

impl SiteConfig {
    /// The fingerprint of this site's certificate key (`[tls] cert`), as study plans pin it;
    /// None without `[tls]`.
    pub fn key_fingerprint(&self) -> Result<Option<String>, String> {
        let Some(tls) = &self.tls else { return Ok(None) };
        use rustls_pki_types::pem::PemObject;
        let cert = rustls_pki_types::CertificateDer::from_pem_file(&tls.cert).map_err(|e| format!("{}: {e}", tls.cert.display()))?;
        fedrad_shared::identity::public_key_fingerprint(&cert).map(Some).map_err(|e| format!("{}: {e}", tls.cert.display()))
    }

    pub fn load(path: &Path) -> Result<SiteConfig, ConfigError> {
        let cfg = Self::load_unchecked(path)?;
        cfg.validate().map_err(|detail| ConfigError::Invalid { path: path.into(), detail })?;
        Ok(cfg)
    }

    /// The config parsed, paths resolved, not yet validated: `site-agent approve` validates it
    /// against the table the study being approved would give ([`SiteConfig::validate_against`]),
    /// so that the export mapping of a variable the study brings can be written beforehand.
    pub fn load_unchecked(path: &Path) -> Result<SiteConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg: SiteConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.manifest = base.join(&cfg.manifest);
        cfg.work_dir = base.join(&cfg.work_dir);
        cfg.tls = cfg.tls.map(|t| t.resolve(base));
        cfg.networks_dir = cfg.networks_dir.map(|d| base.join(d));
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.validate_against(&self.table_schema()?)
    }

    /// Every check of [`SiteConfig::validate`], with the export mapping checked against `schema`.
    pub fn validate_against(&self, schema: &[VariableSpec]) -> Result<(), String> {
        fedrad_shared::identity::validate_site_id(&self.site_id).map_err(|e| e.to_string())?;
        if !(self.policy.max_parameter_ratio > 0.0 && self.policy.max_parameter_ratio <= 1.0) {
            return Err("policy.max_parameter_ratio must be in (0, 1]".into());
        }
        if self.policy.min_sites == 0 || self.policy.min_sites > 1000 {
            return Err("policy.min_sites must be from 1 to 1000".into());
        }
        if self.policy.min_count == 0 {
            return Err("policy.min_count must be at least 1".into());
        }
        if self.policy.max_concurrent_tasks == 0 || self.policy.max_concurrent_tasks > 64 {
            return Err("policy.max_concurrent_tasks must be from 1 to 64".into());
        }
        if self.policy.max_study_disk_bytes < 1 << 20 {
            return Err(format!("policy.max_study_disk_bytes must be at least 1 MiB (1048576), not {}", self.policy.max_study_disk_bytes));
        }
        for kind in self.policy.answers.iter().flatten() {
            if !crate::engine::TASK_KINDS.contains(&kind.as_str()) {
                return Err(format!("policy.answers: unknown task kind `{kind}` (known: {})", crate::engine::TASK_KINDS.join(", ")));
            }
        }
        match (self.coordinator.starts_with("https://"), self.coordinator.starts_with("http://"), self.insecure_plaintext) {
            (true, _, false) if self.tls.is_some() => {}
            (true, _, false) => return Err("[tls] with ca, cert and key is required for an https:// coordinator".into()),
            (_, true, true) => {}
            (_, true, false) => return Err("an http:// coordinator needs insecure_plaintext = true (development only)".into()),
            (true, _, true) => return Err("insecure_plaintext = true needs an http:// coordinator URL".into()),
            _ => return Err(format!("coordinator {:?} must start with https://", self.coordinator)),
        }
        let builtin: Vec<String> = npc_dictionary().into_iter().map(|v| v.name).collect();
        for v in &self.clinical.extra {
            if builtin.contains(&v.name) || crate::manifest::RESERVED_COLUMNS.contains(&v.name.as_str()) {
                return Err(format!("clinical.extra column `{}` clashes with a built-in column", v.name));
            }
        }
        let study: Vec<&str> =
            crate::manifest::RESERVED_COLUMNS.iter().copied().chain(schema.iter().map(|v| v.name.as_str())).chain(crate::manifest::OPTIONAL_COLUMNS).collect();
        self.export.validate(&study, schema).map_err(|e| format!("[export]: {e}"))?;
        Ok(())
    }

    pub fn networks_dir(&self) -> PathBuf {
        self.networks_dir.clone().unwrap_or_else(|| self.work_dir.join("networks"))
    }

    /// The site's own description of its clinical table: the NPC study's variables, then the
    /// extras its config declares.
    pub fn schema(&self) -> Vec<VariableSpec> {
        let mut s = npc_dictionary();
        s.extend(self.clinical.extra.iter().cloned());
        s
    }

    /// The clinical table as the agent types it when it starts: [`SiteConfig::schema`], then
    /// each variable an approved study uses that the site's own schema lacks, typed by that
    /// study's data dictionary (its plan). So a study that brings a variable of its own
    /// (`smoking`) needs no code and no `[[clinical.extra]]` at the site: the operator approves
    /// it, maps the export column if its name differs, and restarts the agent. Two approved
    /// studies that type one variable differently are an error naming both; an approval record
    /// that cannot be read is skipped here (its tasks are refused with the reason).
    /// Whether a study may bring variable `name` to this site: not a fixed manifest column,
    /// and read from no export column the site keeps out of studies (its `[export] ignore`)
    /// or that holds a fixed column (the patient id, an image path): a study's "variable"
    /// `patient_id` with guessed ids as levels would otherwise tell, by the rows it excludes,
    /// who is in the cohort.
    pub fn admissible_study_variable(&self, name: &str) -> Result<(), String> {
        let fixed: Vec<&str> = crate::manifest::RESERVED_COLUMNS.iter().chain(crate::manifest::OPTIONAL_COLUMNS.iter()).copied().collect();
        if fixed.contains(&name) || name.ends_with("_image") || name.ends_with("_mask") || name.ends_with("_roi") {
            return Err(format!("`{name}` is a fixed manifest column, not a clinical variable"));
        }
        let column = self.export.column(name);
        if self.export.ignore.iter().any(|i| i == column) {
            return Err(format!("`{name}` would read the export column `{column}`, which this site's [export] ignore keeps out of every study"));
        }
        if let Some(f) = fixed.iter().find(|f| self.export.column(f) == column) {
            return Err(format!("`{name}` would read the export column `{column}`, which holds this site's `{f}`"));
        }
        Ok(())
    }

    pub fn table_schema(&self) -> Result<Vec<VariableSpec>, String> {
        let mut schema = self.schema();
        let mut typed_by: Vec<(String, String)> = Vec::new();
        for approval in crate::approval::readable(&self.work_dir) {
            let Ok(used) = approval.plan.used_variables() else { continue };
            for v in used {
                if !schema.iter().any(|s| s.name == v.name) {
                    self.admissible_study_variable(&v.name).map_err(|e| format!("approved study {}: {e}", approval.study_id))?;
                    typed_by.push((v.name.clone(), approval.study_id.clone()));
                    schema.push(v);
                } else if let Some(why) = fedrad_shared::clinical::dictionary_mismatch(&schema, &v) {
                    let by = typed_by.iter().find(|(n, _)| n == &v.name).map_or("this site's config".to_string(), |(_, s)| format!("approved study {s}"));
                    return Err(format!("approved study {} and {by} type a clinical variable differently: {why}", approval.study_id));
                }
            }
        }
        Ok(schema)
    }

    pub fn server_name(&self) -> String {
        if let Some(n) = &self.coordinator_name {
            return n.clone();
        }
        let rest = self.coordinator.split("://").nth(1).unwrap_or("");
        let hostport = rest.split('/').next().unwrap_or("");
        if let Some(stripped) = hostport.strip_prefix('[') {
            return stripped.split(']').next().unwrap_or("").to_string();
        }
        hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(policy: &str) -> Result<SiteConfig, ConfigError> {
        let dir = std::env::temp_dir().join(format!("fedrad-config-{}-{}", std::process::id(), policy.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("site.toml");
        let text = format!(
            "site_id = \"hospital-a\"\ncoordinator = \"https://c.example.org:50051\"\nmanifest = \"m.csv\"\nwork_dir = \"w\"\n\
             [tls]\nca = \"ca.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[policy]\n{policy}"
        );
        std::fs::write(&path, text).unwrap();
        let cfg = SiteConfig::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        cfg
    }

    #[test]
    fn resource_bounds_have_defaults_and_are_validated() {
        let cfg = load("").unwrap();
        assert_eq!((cfg.policy.max_concurrent_tasks, cfg.policy.max_study_disk_bytes), (2, 2 * 1024 * 1024 * 1024));
        let cfg = load("max_concurrent_tasks = 4\nmax_study_disk_bytes = 10485760\n").unwrap();
        assert_eq!((cfg.policy.max_concurrent_tasks, cfg.policy.max_study_disk_bytes), (4, 10 << 20));
        for (bad, needle) in [
            ("max_concurrent_tasks = 0\n", "max_concurrent_tasks"),
            ("max_concurrent_tasks = 65\n", "max_concurrent_tasks"),
            ("max_study_disk_bytes = 2048\n", "max_study_disk_bytes"),
        ] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
