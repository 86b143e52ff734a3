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
    #[error("this process's TLS provider allows TLS 1.2 (another was installed before FedRad's); refusing to build a TLS configuration")]
    Tls12Possible,
    #[error("private key {path} is readable by other users (mode {mode:o}); make it readable by this user only: chmod 600 {path}")]
    KeyReadableByOthers { path: PathBuf, mode: u32 },
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(TlsError::NotPem { what, path: path.to_path_buf() });
    }
    Ok(bytes)
}

/// A private key, only if no one but its owner can read it: a key others can read is a key
/// others may have copied, so this end refuses to start rather than use it.
pub fn read_private_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let read_err = |source| TlsError::Read { what: "private key", path: path.to_path_buf(), source };
    // One handle for the check and the read, so the file checked is the file used.
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(read_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TlsError::KeyReadableByOthers { path: path.to_path_buf(), mode });
        }
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(read_err)?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(TlsError::NotPem { what: "private key", path: path.to_path_buf() });
    }
    Ok(bytes)
}

/// Server side: present our certificate and require a client certificate from the CA.
pub fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, TlsError> {
    require_tls13_only()?;
    let ca = read_pem("CA certificate", &files.ca)?;
    let cert = read_pem("certificate", &files.cert)?;
    let key = read_private_key(&files.key)?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)).client_ca_root(Certificate::from_pem(ca)).client_auth_optional(false))
}

/// Client side: trust only the study CA and present our certificate. `server_name` is the
/// name the coordinator's certificate must be valid for.
pub fn client_config(files: &TlsFiles, server_name: &str) -> Result<ClientTlsConfig, TlsError> {
    require_tls13_only()?;
    let ca = read_pem("CA certificate", &files.ca)?;
    let cert = read_pem("certificate", &files.cert)?;
    let key = read_private_key(&files.key)?;
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).identity(Identity::from_pem(cert, key)).domain_name(server_name))
}

/// rustls picks a process-wide crypto provider on both ends; install ring's once so the
/// choice never depends on which crates happen to be linked — with its TLS 1.3 cipher suites
/// only, so that neither end can negotiate TLS 1.2 (nothing here needs it, and tonic's TLS
/// builders offer no other way to switch it off). Call it before any TLS configuration is
/// built; both binaries do first thing.
pub fn install_crypto_provider() {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| s.version().version == rustls::ProtocolVersion::TLSv1_3);
    let _ = provider.install_default();
    if !tls13_only() {
        tracing::error!("a TLS provider allowing TLS 1.2 was installed before FedRad's; TLS 1.2 stays possible in this process");
    }
}

/// Installs FedRad's provider if none is, and refuses if the one installed allows TLS 1.2:
/// every TLS configuration here is built through this, so neither end can offer TLS 1.2.
fn require_tls13_only() -> Result<(), TlsError> {
    install_crypto_provider();
    if tls13_only() { Ok(()) } else { Err(TlsError::Tls12Possible) }
}

/// Whether the process's TLS provider offers TLS 1.3 cipher suites only.
pub fn tls13_only() -> bool {
    rustls::crypto::CryptoProvider::get_default().is_some_and(|p| p.cipher_suites.iter().all(|s| s.version().version == rustls::ProtocolVersion::TLSv1_3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused_on_both_ends() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("fedrad-tls-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = crate::pki::StudyPki::init(&dir, "t", &["localhost".into()]).unwrap();
        let files = TlsFiles::bundle(&pki.coordinator_bundle());
        server_config(&files).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = server_config(&files).unwrap_err().to_string();
            assert!(e.contains("readable by other users") && e.contains(&format!("{mode:o}")), "{e}");
            assert!(matches!(client_config(&files, "localhost"), Err(TlsError::KeyReadableByOthers { .. })));
        }
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o400)).unwrap();
        client_config(&files, "localhost").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
