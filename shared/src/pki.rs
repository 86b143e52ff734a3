//! The study's public-key infrastructure: one CA per study, one certificate for the
//! coordinator, one per site — and each site's private key made at the site.
//!
//! A hospital's key never leaves it: `site-agent enroll` ([`enroll_site`]) writes the site's
//! `key.pem` (mode 0600) and a certificate request; the coordinator's operator signs the
//! request (`coordinator certs sign`, [`StudyPki::sign_site_request`]) and hands back the
//! certificate and the study CA. The coordinator's `pki/` folder therefore holds no site key;
//! its `ca.key` can still sign a certificate for any name, which is why it belongs offline
//! once the sites are enrolled (the coordinator does not yet accept only the keys it issued).
//! Site certificates are short-lived ([`SITE_VALIDITY_DAYS`] by default);
//! renewing is enrolling again with a new key.
//!
//! Layout written by [`StudyPki::init`] and [`StudyPki::sign_site_request`]:
//!
//! ```text
//! DIR/ca.pem  DIR/ca.key  DIR/ca.json        study CA (keep ca.key offline after set-up)
//! DIR/coordinator/{ca.pem,cert.pem,key.pem}  coordinator identity, SANs = hostnames given
//! DIR/sites/<site>/{ca.pem,cert.pem}         what goes back to each hospital (no key)
//! ```
//!
//! At the site, the enrolment folder ends up holding `key.pem`, `request.pem`, and the
//! returned `cert.pem` and `ca.pem`: the bundle [`crate::tls::TlsFiles::bundle`] reads.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

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
    #[error("certificate request refused: {0}")]
    Request(String),
}

/// Validity of the CA and the coordinator's certificate: long enough for a study.
const VALIDITY_DAYS: u32 = 3 * 365;

/// Default validity of a site's certificate: a quarter and a half, so that a site that
/// leaves a study, or a key that leaks, does not stay trusted for years; a site renews by
/// enrolling again.
pub const SITE_VALIDITY_DAYS: u32 = 180;

#[derive(serde::Serialize, serde::Deserialize)]
struct CaInfo {
    common_name: String,
}

pub struct StudyPki {
    dir: PathBuf,
}

impl StudyPki {
    /// Creates a new study CA and the coordinator's certificate (valid for
    /// `coordinator_hosts`, names or IP addresses). Refuses to overwrite an existing CA. Sites
    /// enrol with their own keys ([`enroll_site`], [`StudyPki::sign_site_request`]).
    pub fn init(dir: &Path, study_name: &str, coordinator_hosts: &[String]) -> Result<Self, PkiError> {
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
        pki.ensure_revocation_list()?;
        Ok(pki)
    }

    /// Creates the (empty) revocation list if it is missing, e.g. in a PKI folder made before
    /// lists existed. Once it exists, a coordinator that names it refuses to run without it.
    pub fn ensure_revocation_list(&self) -> Result<(), PkiError> {
        let list = self.revocation_list();
        if !list.exists() {
            write_file(&list, b"# revoked site keys (coordinator certs revoke): key fingerprint, site, reason\n", false)?;
        }
        Ok(())
    }

    /// A study CA, the coordinator's certificate, and every site enrolled as a hospital would
    /// enrol: its key made by [`enroll_site`] in its bundle folder, its request signed. For
    /// simulations of all sites on one machine (the demo, the tests), where the "hospitals"
    /// share the coordinator's disk anyway.
    pub fn init_with_enrolled_sites(dir: &Path, study_name: &str, coordinator_hosts: &[String], sites: &[String]) -> Result<Self, PkiError> {
        for s in sites {
            validate_site_id(s)?;
        }
        let pki = Self::init(dir, study_name, coordinator_hosts)?;
        for s in sites {
            let request = enroll_site(&pki.site_bundle(s), s)?;
            let pem = String::from_utf8(read_file(&request)?).map_err(|e| PkiError::Invalid { path: request.clone(), detail: e.to_string() })?;
            pki.sign_site_request(s, &pem, SITE_VALIDITY_DAYS)?;
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

    fn issue_coordinator(&self, hosts: &[String]) -> Result<PathBuf, PkiError> {
        let bundle = self.dir.join("coordinator");
        let issuer = self.issuer()?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name = dn("FedRad coordinator");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, VALIDITY_DAYS);
        let cert = params.signed_by(&key, &issuer)?;
        create_dir(&bundle)?;
        fs::copy(self.dir.join("ca.pem"), bundle.join("ca.pem")).map_err(|source| PkiError::Io { path: bundle.join("ca.pem"), source })?;
        write_file(&bundle.join("cert.pem"), cert.pem().as_bytes(), false)?;
        write_file(&bundle.join("key.pem"), key.serialize_pem().as_bytes(), true)?;
        Ok(bundle)
    }

    /// Issues site `site_id`'s certificate for the public key in its request (PEM), valid for
    /// `days`, into `sites/<site_id>/` with the study CA. The request's signature must verify
    /// (the site holds the key) and its common name must be `site_id` (a request from another
    /// site's folder is a mistake worth stopping). Only the public key is taken from the
    /// request: names, usages and validity are the study's. Signing again (a renewal) replaces
    /// the certificate.
    pub fn sign_site_request(&self, site_id: &str, request_pem: &str, days: u32) -> Result<PathBuf, PkiError> {
        validate_site_id(site_id)?;
        if !(1..=VALIDITY_DAYS).contains(&days) {
            return Err(PkiError::Request(format!("a site certificate's validity must be 1 to {VALIDITY_DAYS} days, not {days}")));
        }
        let mut request = CertificateSigningRequestParams::from_pem(request_pem)
            .map_err(|e| PkiError::Request(format!("not a valid certificate request with a good signature: {e}")))?;
        let named: Vec<String> = request
            .params
            .distinguished_name
            .iter()
            .filter(|(t, _)| **t == DnType::CommonName)
            .map(|(_, v)| match v {
                DnValue::Utf8String(s) => s.clone(),
                DnValue::PrintableString(s) => s.as_str().to_string(),
                DnValue::Ia5String(s) => s.as_str().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        if named != [site_id] {
            return Err(PkiError::Request(format!("the request is for {named:?}, not for site {site_id:?}")));
        }
        let mut params = CertificateParams::new(vec![site_id.to_string()])?;
        params.distinguished_name = dn(site_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, days);
        request.params = params;
        let cert = request.signed_by(&self.issuer()?)?;
        // Every certificate issued is recorded by its key, so that revoking a site revokes all
        // of them; a revoked key is never signed again (the site enrols with a new one).
        let fingerprint = crate::identity::public_key_fingerprint(cert.der()).map_err(|e| PkiError::Request(e.to_string()))?;
        let list = self.revocation_list();
        if list.exists() && crate::identity::read_revocation_list(&list).map_err(|detail| PkiError::Invalid { path: list.clone(), detail })?.contains(&fingerprint) {
            return Err(PkiError::Request(format!("the key in this request was revoked; {site_id} must enrol again with a new key")));
        }
        let bundle = self.site_bundle(site_id);
        create_dir(&bundle)?;
        fs::copy(self.dir.join("ca.pem"), bundle.join("ca.pem")).map_err(|source| PkiError::Io { path: bundle.join("ca.pem"), source })?;
        write_file(&bundle.join("cert.pem"), cert.pem().as_bytes(), false)?;
        append_line(&self.dir.join("issued.txt"), &format!("{fingerprint} {site_id} valid for {days} days"))?;
        Ok(bundle)
    }

    /// The revocation list the coordinator reads (`revoked` in its config).
    pub fn revocation_list(&self) -> PathBuf {
        self.dir.join("revoked.txt")
    }

    /// Revokes every certificate issued to `site_id` so far (from `issued.txt`), appending
    /// their fingerprints to [`StudyPki::revocation_list`]; returns those newly revoked. The
    /// coordinator refuses them from its next session on. A site re-admitted later enrols
    /// again: its new certificate is not on the list.
    pub fn revoke_site(&self, site_id: &str, reason: &str) -> Result<Vec<String>, PkiError> {
        validate_site_id(site_id)?;
        let issued_path = self.dir.join("issued.txt");
        let issued = fs::read_to_string(&issued_path).unwrap_or_default();
        self.ensure_revocation_list()?;
        let list = self.revocation_list();
        let already = crate::identity::read_revocation_list(&list).map_err(|detail| PkiError::Invalid { path: list.clone(), detail })?;
        let mine: Vec<String> = issued
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next()) {
                    (Some(fp), Some(s)) if s == site_id => Some(fp.to_string()),
                    _ => None,
                }
            })
            .collect();
        if mine.is_empty() {
            return Err(PkiError::Request(format!("no certificate was issued to {site_id} from {}", self.dir.display())));
        }
        let reason = reason.replace(['\n', '#'], " ");
        let mut newly = Vec::new();
        for fp in mine {
            if !already.contains(&fp) && !newly.contains(&fp) {
                append_line(&list, &format!("{fp} {site_id} {reason}"))?;
                newly.push(fp);
            }
        }
        Ok(newly)
    }

    /// Each site's key fingerprint to pin in a study's `[secure_aggregation] site_keys`: the
    /// key of the latest certificate issued to it (from `issued.txt`) that is not revoked.
    /// Sites with none are left out.
    pub fn current_pins(&self) -> Result<std::collections::BTreeMap<String, String>, PkiError> {
        let issued_path = self.dir.join("issued.txt");
        let issued = fs::read_to_string(&issued_path).map_err(|source| PkiError::Io { path: issued_path.clone(), source })?;
        let list = self.revocation_list();
        let revoked = if list.exists() {
            crate::identity::read_revocation_list(&list).map_err(|detail| PkiError::Invalid { path: list.clone(), detail })?
        } else {
            Default::default()
        };
        let mut pins = std::collections::BTreeMap::new();
        for line in issued.lines() {
            let mut w = line.split_whitespace();
            if let (Some(fp), Some(site)) = (w.next(), w.next())
                && !revoked.contains(fp)
            {
                pins.insert(site.to_string(), fp.to_string());
            }
        }
        Ok(pins)
    }

    pub fn site_bundle(&self, site_id: &str) -> PathBuf {
        self.dir.join("sites").join(site_id)
    }

    pub fn coordinator_bundle(&self) -> PathBuf {
        self.dir.join("coordinator")
    }
}

/// Makes site `site_id`'s private key in `dir` (`key.pem`, mode 0600, never to leave the
/// site) and its certificate request (`request.pem`, for the coordinator to sign); returns the
/// request's path. Refuses to overwrite an existing key: renewing is enrolling into a fresh
/// folder, then moving the new key and certificate in together.
pub fn enroll_site(dir: &Path, site_id: &str) -> Result<PathBuf, PkiError> {
    validate_site_id(site_id)?;
    if dir.join("key.pem").exists() {
        return Err(PkiError::Exists(dir.join("key.pem")));
    }
    create_dir(dir)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![site_id.to_string()])?;
    params.distinguished_name = dn(site_id);
    let request = params.serialize_request(&key)?;
    write_new_secret(&dir.join("key.pem"), key.serialize_pem().as_bytes())?;
    let path = dir.join("request.pem");
    write_file(&path, request.pem()?.as_bytes(), false)?;
    Ok(path)
}

/// A certificate request for the key the site already holds in `dir` (`key.pem`), to renew its
/// certificate before it expires: the key, and so its fingerprint, stay the same, so the
/// secure-aggregation pins of the studies it approved (`[secure_aggregation] site_keys`) stay
/// valid and no plan has to be approved again. A key readable by others is refused, as at
/// start. Enrol anew (a new key) instead if the key may have been exposed.
pub fn renewal_request(dir: &Path, site_id: &str) -> Result<PathBuf, PkiError> {
    validate_site_id(site_id)?;
    let key_path = dir.join("key.pem");
    let pem = crate::tls::read_private_key(&key_path).map_err(|e| PkiError::Request(e.to_string()))?;
    let key = KeyPair::from_pem(&String::from_utf8_lossy(&pem))?;
    let mut params = CertificateParams::new(vec![site_id.to_string()])?;
    params.distinguished_name = dn(site_id);
    let request = params.serialize_request(&key)?;
    let path = dir.join("request.pem");
    write_file(&path, request.pem()?.as_bytes(), false)?;
    Ok(path)
}

/// When the certificate in `pem` stops being valid, as seconds since the Unix epoch.
pub fn certificate_not_after(pem: &str) -> Result<i64, PkiError> {
    let unreadable = |e: String| PkiError::Request(format!("not a readable certificate: {e}"));
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| unreadable(e.to_string()))?;
    let cert = block.parse_x509().map_err(|e| unreadable(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(common_name);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut p, VALIDITY_DAYS);
    p
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "FedRad study");
    dn
}

fn set_validity(p: &mut CertificateParams, days: u32) {
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    p.not_before = (now - day).into();
    p.not_after = (now + day * days).into();
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.to_path_buf(), source })
}

fn read_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })
}

/// Writes a new private key file (mode 0600), failing if anything, a symlink included, is
/// already at `path`.
fn write_new_secret(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists { PkiError::Exists(path.to_path_buf()) } else { PkiError::Io { path: path.to_path_buf(), source } }
    })?;
    f.write_all(bytes).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })
}

fn append_line(path: &Path, line: &str) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: path.to_path_buf(), source };
    let mut f = fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    writeln!(f, "{line}").map_err(io)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fedrad-pki-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_site_enrols_with_its_own_key_and_the_coordinator_signs_only_its_public_half() {
        let dir = temp("enrol");
        let pki = StudyPki::init(&dir.join("pki"), "t", &["localhost".into()]).unwrap();
        assert!(!dir.join("pki/sites").exists(), "init makes no site keys");
        let site = dir.join("hospital-a");
        let request = enroll_site(&site, "hospital-a").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(site.join("key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(matches!(enroll_site(&site, "hospital-a"), Err(PkiError::Exists(_))), "an existing key is never overwritten");
        let pem = fs::read_to_string(&request).unwrap();
        let bundle = pki.sign_site_request("hospital-a", &pem, 30).unwrap();
        assert!(!bundle.join("key.pem").exists(), "the coordinator's side holds no site key");
        // The certificate carries the site's public key.
        let key = KeyPair::from_pem(&fs::read_to_string(site.join("key.pem")).unwrap()).unwrap();
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(&fs::read(bundle.join("cert.pem")).unwrap()).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        assert!(cert.as_ref().windows(spki.len()).any(|w| w == spki.as_slice()));
        // Validity as asked (± the day of back-dating).
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let left = certificate_not_after(&fs::read_to_string(bundle.join("cert.pem")).unwrap()).unwrap() - now;
        assert!((left - 30 * 86_400).abs() < 120, "{left}");
        // Revoked by its key: the same key is never signed again, a new one is.
        assert_eq!(pki.revoke_site("hospital-a", "test").unwrap().len(), 1);
        let listed = crate::identity::read_revocation_list(&pki.revocation_list()).unwrap();
        assert!(listed.contains(&crate::identity::public_key_fingerprint(cert.as_ref()).unwrap()));
        assert!(pki.sign_site_request("hospital-a", &pem, 30).unwrap_err().to_string().contains("revoked"));
        let fresh = enroll_site(&dir.join("hospital-a-new"), "hospital-a").unwrap();
        pki.sign_site_request("hospital-a", &fs::read_to_string(fresh).unwrap(), 30).unwrap();
        // Renewal: a new request for the key the site holds, a new certificate for the same
        // key, so the pins of approved studies stay as they were.
        let fresh_dir = dir.join("hospital-a-new");
        let before = pki.current_pins().unwrap()["hospital-a"].clone();
        let renewal = renewal_request(&fresh_dir, "hospital-a").unwrap();
        let renewed = pki.sign_site_request("hospital-a", &fs::read_to_string(renewal).unwrap(), 30).unwrap();
        let renewed_cert = rustls_pki_types::CertificateDer::from_pem_slice(&fs::read(renewed.join("cert.pem")).unwrap()).unwrap();
        assert_eq!(crate::identity::public_key_fingerprint(renewed_cert.as_ref()).unwrap(), before);
        assert_eq!(pki.current_pins().unwrap()["hospital-a"], before);
        assert!(renewal_request(&dir.join("nobody"), "hospital-a").is_err(), "no key, no renewal");
        // A deleted list is an error, not an empty list.
        fs::remove_file(pki.revocation_list()).unwrap();
        assert!(crate::identity::read_revocation_list(&pki.revocation_list()).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn requests_for_another_site_tampered_requests_and_odd_lifetimes_are_refused() {
        let dir = temp("refuse");
        let pki = StudyPki::init(&dir.join("pki"), "t", &["localhost".into()]).unwrap();
        let pem = fs::read_to_string(enroll_site(&dir.join("b"), "hospital-b").unwrap()).unwrap();
        let e = pki.sign_site_request("hospital-a", &pem, 30).unwrap_err().to_string();
        assert!(e.contains("hospital-b") && e.contains("hospital-a"), "{e}");
        for days in [0, 10_000] {
            assert!(pki.sign_site_request("hospital-b", &pem, days).unwrap_err().to_string().contains("validity"));
        }
        // Flip one bit inside the request's body: the signature no longer verifies.
        let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap();
        let mut bytes = der.as_ref().to_vec();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x01;
        let body: String = {
            use std::fmt::Write;
            let b64 = base64_encode(&bytes);
            let mut out = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
            for chunk in b64.as_bytes().chunks(64) {
                writeln!(out, "{}", std::str::from_utf8(chunk).unwrap()).unwrap();
            }
            out + "-----END CERTIFICATE REQUEST-----\n"
        };
        let e = pki.sign_site_request("hospital-b", &body, 30).unwrap_err().to_string();
        assert!(e.contains("certificate request refused"), "{e}");
        assert!(pki.sign_site_request("hospital-b", "not a request", 30).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    fn base64_encode(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in bytes.chunks(3) {
            let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
