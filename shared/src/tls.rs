//! Mutual-TLS configuration for both ends, from the PEM bundles written by [`crate::pki`].

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Where a party's CA certificate, own certificate and private key live.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The standard bundle layout (`ca.pem`, `cert.pem`, `key.pem` in one folder).
    pub fn bundle(dir: &Path) -> Self {
        TlsFiles { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") }
    }

    /// Relative paths in a config file are relative to that file's folder.
    pub fn resolve(&self, base: &Path) -> Self {
        TlsFiles { ca: base.join(&self.ca), cert: base.join(&self.cert), key: base.join(&self.key) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {path} is not a PEM file")]
    NotPem { what: &'static str, path: PathBuf },
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(TlsError::NotPem { what, path: path.to_path_buf() });
    }
    Ok(bytes)
}

/// Server side: present our certificate and require a client certificate from the CA.
pub fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, TlsError> {
    let ca = read_pem("CA certificate", &files.ca)?;
    let cert = read_pem("certificate", &files.cert)?;
    let key = read_pem("private key", &files.key)?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)).client_ca_root(Certificate::from_pem(ca)).client_auth_optional(false))
}

/// Client side: trust only the study CA and present our certificate. `server_name` is the
/// name the coordinator's certificate must be valid for.
pub fn client_config(files: &TlsFiles, server_name: &str) -> Result<ClientTlsConfig, TlsError> {
    let ca = read_pem("CA certificate", &files.ca)?;
    let cert = read_pem("certificate", &files.cert)?;
    let key = read_pem("private key", &files.key)?;
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).identity(Identity::from_pem(cert, key)).domain_name(server_name))
}

/// rustls picks a process-wide crypto provider on the server side; install ring's once so
/// the choice never depends on which crates happen to be linked.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
