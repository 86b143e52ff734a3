//! In a process where a TLS provider allowing TLS 1.2 was installed before FedRad's, neither
//! end builds a TLS configuration (its own test binary: the provider is process-wide).

use fedrad_shared::pki::StudyPki;
use fedrad_shared::tls::{TlsError, TlsFiles, client_config, server_config, tls13_only};

#[test]
fn a_provider_allowing_tls_1_2_installed_first_is_refused_on_both_ends() {
    rustls::crypto::ring::default_provider().install_default().expect("first provider of this process");
    assert!(!tls13_only());
    let dir = std::env::temp_dir().join(format!("fedrad-tls-provider-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = StudyPki::init(&dir, "t", &["localhost".into()]).unwrap();
    let files = TlsFiles::bundle(&pki.coordinator_bundle());
    assert!(matches!(server_config(&files), Err(TlsError::Tls12Possible)));
    assert!(matches!(client_config(&files, "localhost"), Err(TlsError::Tls12Possible)));
    let _ = std::fs::remove_dir_all(&dir);
}
