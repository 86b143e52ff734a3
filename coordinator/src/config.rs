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
//!
//! The study file itself is [`fedrad_shared::plan`]'s (both sides read it: the coordinator runs
//! it, each site's operator approves it); its types are re-exported here.

use std::path::Path;

use fedrad_shared::tls::TlsFiles;

pub use fedrad_shared::plan::*;

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
    /// The revocation list (`pki/revoked.txt`, from `coordinator certs revoke`): a site whose
    /// certificate is on it is refused at every session start. Read at start and at each
    /// session, so a revocation needs no restart.
    #[serde(default)]
    pub revoked: Option<std::path::PathBuf>,
    /// The keys this coordinator issued certificates for (`pki/issued.txt`, appended by
    /// `coordinator certs sign`): a site is admitted only if its certificate's key is listed
    /// there for its site id, so a certificate from a copied or misused CA key is refused.
    /// Read at each session start, so a newly signed site needs no restart.
    #[serde(default)]
    pub issued: Option<std::path::PathBuf>,
}

fn default_max_message() -> usize {
    fedrad_shared::DEFAULT_MAX_MESSAGE_BYTES
}

impl CoordinatorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut c: CoordinatorConfig = toml::from_str(&read_file(path)?).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.tls = c.tls.map(|t| t.resolve(base));
        c.revoked = c.revoked.map(|r| base.join(r));
        c.issued = c.issued.map(|r| base.join(r));
        if c.tls.is_none() && !c.insecure_plaintext {
            return Err(ConfigError::Invalid { path: path.into(), detail: "[tls] is required (or insecure_plaintext = true for development)".into() });
        }
        Ok(c)
    }
}
