//! Site identity: a site is who its certificate says it is.
//!
//! Every site certificate is issued by the study CA with the site id as its only DNS
//! subject-alternative name. The coordinator accepts a `SiteHello` naming site `x` only
//! if the TLS client certificate presented on that connection is valid for the name `x`,
//! so a hospital cannot answer for another.

use rustls_pki_types::{CertificateDer, ServerName};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IdentityError {
    #[error("site id `{0}` is not valid: use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'")]
    InvalidSiteId(String),
    #[error("site id `{0}` is reserved: it names the secure sum over all sites")]
    ReservedSiteId(String),
    #[error("the connection presented no client certificate")]
    NoCertificate,
    #[error("the client certificate could not be parsed: {0}")]
    BadCertificate(String),
    #[error("the client certificate is not issued for site `{0}`")]
    NameMismatch(String),
}

/// Site ids double as certificate DNS names and directory names, so they are kept to a
/// conservative alphabet; and one names the sum over all sites ([`crate::secure_sum::SUM_OF_SITES`]).
pub fn validate_site_id(id: &str) -> Result<(), IdentityError> {
    if id == crate::secure_sum::SUM_OF_SITES {
        return Err(IdentityError::ReservedSiteId(id.to_string()));
    }
    let ok =
        !id.is_empty() && id.len() <= 63 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !id.starts_with('-') && !id.ends_with('-');
    if ok { Ok(()) } else { Err(IdentityError::InvalidSiteId(id.to_string())) }
}

/// Checks that the leaf certificate of a verified mTLS connection names `site_id`.
/// Chain verification against the study CA has already been done by rustls.
pub fn verify_site_certificate(leaf_der: &[u8], site_id: &str) -> Result<(), IdentityError> {
    validate_site_id(site_id)?;
    let der = CertificateDer::from(leaf_der);
    let cert = webpki::EndEntityCert::try_from(&der).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let name = ServerName::try_from(site_id).map_err(|_| IdentityError::InvalidSiteId(site_id.into()))?;
    cert.verify_is_valid_for_subject_name(&name).map_err(|_| IdentityError::NameMismatch(site_id.to_string()))
}

/// The SHA-256 of a certificate's public key (its DER SubjectPublicKeyInfo), in hex: how
/// revocation lists name a site's key. The key and not the certificate's bytes, because a
/// certificate can be re-encoded without changing what it certifies (an ECDSA signature
/// (r, s) verifies as (r, n − s) too), which would slip past a list of certificate hashes.
pub fn public_key_fingerprint(cert_der: &[u8]) -> Result<String, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    Ok(crate::digest::sha256_hex(cert.tbs_certificate.subject_pki.raw))
}

/// The (key fingerprint, site id) pairs of `pki/issued.txt` (one line per certificate
/// `coordinator certs sign` issued: fingerprint, site, then a note). A missing file or a line
/// whose first word is not a fingerprint is an error naming it.
pub fn read_issued_list(path: &std::path::Path) -> Result<std::collections::BTreeSet<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some(fp), Some(site)) if fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()) => {
                out.insert((fp.to_ascii_lowercase(), site.to_string()));
            }
            _ => return Err(format!("{} line {}: expected a SHA-256 key fingerprint and a site id", path.display(), n + 1)),
        }
    }
    Ok(out)
}

/// The key fingerprints a revocation list holds (`pki/revoked.txt`, made by `coordinator
/// certs init` and extended by `certs revoke`: one key per line, its
/// [`public_key_fingerprint`] first, then whose it was; `#` starts a comment). A missing file
/// or a line whose first word is not a fingerprint is an error naming it: a list deleted or
/// misread is a revocation lost.
pub fn read_revocation_list(path: &std::path::Path) -> Result<std::collections::BTreeSet<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the revocation list {}: {e}", path.display()))?;
    let mut out = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(fp) = line.split_whitespace().next() else { continue };
        if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{} line {}: {fp:?} is not a SHA-256 certificate fingerprint", path.display(), n + 1));
        }
        out.insert(fp.to_ascii_lowercase());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_ids_are_restricted_to_dns_labels() {
        assert!(validate_site_id("hospital-a").is_ok());
        assert!(validate_site_id("h7").is_ok());
        for bad in ["", "-a", "a-", "Hospital", "a b", "a/b", "a.b", &"x".repeat(64), "sum-of-sites"] {
            assert!(validate_site_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
