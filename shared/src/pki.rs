//! The study's public-key infrastructure: one CA per study, one certificate for the
//! coordinator, one per site.
//!
//! Layout written by [`StudyPki::init`] (keys are written with mode 0600):
//!
//! ```text
//! DIR/ca.pem  DIR/ca.key  DIR/ca.json        study CA (keep ca.key offline after set-up)
//! DIR/coordinator/{ca.pem,cert.pem,key.pem}  coordinator identity, SANs = hostnames given
//! DIR/sites/<site>/{ca.pem,cert.pem,key.pem} one bundle per hospital, hand it over securely
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::identity::validate_site_id;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("{0} already exists; refusing to overwrite a study's keys")]
    Exists(PathBuf),
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

/// Validity of issued certificates: long enough for a study, short enough to expire.
const VALIDITY_DAYS: i64 = 3 * 365;

#[derive(serde::Serialize, serde::Deserialize)]
struct CaInfo {
    common_name: String,
}

pub struct StudyPki {
    dir: PathBuf,
}

impl StudyPki {
    /// Creates a new study CA, the coordinator's certificate (valid for `coordinator_hosts`,
    /// names or IP addresses) and one bundle per site. Refuses to overwrite an existing CA.
    pub fn init(dir: &Path, study_name: &str, coordinator_hosts: &[String], sites: &[String]) -> Result<Self, PkiError> {
        for s in sites {
            validate_site_id(s)?;
        }
        if dir.join("ca.key").exists() {
            return Err(PkiError::Exists(dir.join("ca.key")));
        }
        create_dir(dir)?;
        let ca_key = KeyPair::generate()?;
        let info = CaInfo { common_name: format!("FedRad study CA ({study_name})") };
        let ca_params = ca_params(&info.common_name);
        let ca_cert = ca_params.self_signed(&ca_key)?;
        write_file(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), false)?;
        write_file(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes(), true)?;
        write_file(&dir.join("ca.json"), serde_json::to_string_pretty(&info).unwrap().as_bytes(), false)?;
        let pki = StudyPki { dir: dir.to_path_buf() };
        pki.issue_coordinator(coordinator_hosts)?;
        for s in sites {
            pki.issue_site(s)?;
        }
        Ok(pki)
    }

    pub fn open(dir: &Path) -> Self {
        StudyPki { dir: dir.to_path_buf() }
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let info: CaInfo =
            serde_json::from_slice(&read_file(&self.dir.join("ca.json"))?).map_err(|e| PkiError::Invalid { path: self.dir.join("ca.json"), detail: e.to_string() })?;
        let key_path = self.dir.join("ca.key");
        let key_pem = String::from_utf8(read_file(&key_path)?).map_err(|e| PkiError::Invalid { path: key_path.clone(), detail: e.to_string() })?;
        let key = KeyPair::from_pem(&key_pem)?;
        Ok(Issuer::new(ca_params(&info.common_name), key))
    }

    fn issue(&self, bundle: &Path, common_name: &str, sans: Vec<String>, eku: ExtendedKeyUsagePurpose) -> Result<(), PkiError> {
        let issuer = self.issuer()?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = dn(common_name);
        params.extended_key_usages = vec![eku];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params);
        let cert = params.signed_by(&key, &issuer)?;
        create_dir(bundle)?;
        fs::copy(self.dir.join("ca.pem"), bundle.join("ca.pem")).map_err(|source| PkiError::Io { path: bundle.join("ca.pem"), source })?;
        write_file(&bundle.join("cert.pem"), cert.pem().as_bytes(), false)?;
        write_file(&bundle.join("key.pem"), key.serialize_pem().as_bytes(), true)?;
        Ok(())
    }

    pub fn issue_coordinator(&self, hosts: &[String]) -> Result<PathBuf, PkiError> {
        let bundle = self.dir.join("coordinator");
        self.issue(&bundle, "FedRad coordinator", hosts.to_vec(), ExtendedKeyUsagePurpose::ServerAuth)?;
        Ok(bundle)
    }

    /// Issues a bundle for one more site (e.g. a hospital joining later).
    pub fn issue_site(&self, site_id: &str) -> Result<PathBuf, PkiError> {
        validate_site_id(site_id)?;
        let bundle = self.site_bundle(site_id);
        if bundle.join("key.pem").exists() {
            return Err(PkiError::Exists(bundle.join("key.pem")));
        }
        self.issue(&bundle, site_id, vec![site_id.to_string()], ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok(bundle)
    }

    pub fn site_bundle(&self, site_id: &str) -> PathBuf {
        self.dir.join("sites").join(site_id)
    }

    pub fn coordinator_bundle(&self) -> PathBuf {
        self.dir.join("coordinator")
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(common_name);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut p);
    p
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "FedRad study");
    dn
}

fn set_validity(p: &mut CertificateParams) {
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    p.not_before = (now - day).into();
    p.not_after = (now + day * VALIDITY_DAYS as u32).into();
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.to_path_buf(), source })
}

fn read_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: path.to_path_buf(), source };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)
}
