//! Secure aggregation: for the task kinds whose replies the coordinator only adds up, it
//! learns the sum over the study's sites and never one site's aggregate.
//!
//! **Method** (pairwise masking, Bonawitz et al., CCS 2017, without its dropout recovery):
//! 1. *Keys.* Each site holds an X25519 key pair derived by HKDF from its certificate key, so
//!    it is the same after a restart and changes with the certificate key, and signs the
//!    public half with that certificate key (ECDSA P-256). The signed key travels in its hello.
//! 2. *Who takes part.* A task the study secure-sums carries every study site's signed key as
//!    the coordinator holds it ([`proto::SecureSum`]). A site masks only if those sites are
//!    exactly its approved plan's, and every key's certificate public key has the fingerprint
//!    the plan pins for that site and its signature verifies ([`verify_peers`]). The
//!    coordinator cannot slip in a key of its own: the fingerprints are part of the plan whose
//!    hash every site approved.
//! 3. *Masks.* For every other site j, site i takes the X25519 secret it shares with j and
//!    derives from it by HKDF-SHA256, bound to the study, the plan's hash, the task id and the
//!    site set, a 256-bit seed; the ChaCha20 stream from that seed is the pair's mask, which i
//!    adds if its id sorts before j's and subtracts otherwise ([`mask`]).
//! 4. *Encoding.* The site writes its aggregate in fixed point — value·2^F rounded to the
//!    nearest integer, as a two's-complement word modulo 2⁶⁴ — its patient count first, then
//!    every tensor's values in order, and adds the masks. The coordinator adds the words of
//!    all sites modulo 2⁶⁴ ([`combine`]): the masks cancel, and what is left is the exact sum
//!    of the encoded values.
//!
//! 5. *Signed answers.* Every answer a site sends carries its signature by the certificate
//!    key over the study, plan, task id, task digest and the (masked) aggregate
//!    ([`answer_message`]). The coordinator forwards a LASSO round's answers with the run's
//!    next task; each site checks them against the pinned keys ([`VerifiedSites::verify_answer`])
//!    and sums them itself, so the coordinator can neither forge nor leave out a site's answer
//!    to steer the run (`lasso::LassoReplica`).
//!
//! **Same results with or without it.** The coordinator sums these task kinds' replies in the
//! same fixed point when the study does not mask them ([`combine`] encodes plain replies the
//! way a site does), so a study's results are the same bit for bit with secure aggregation on
//! or off, and no longer depend on the order in which the sites' floating-point sums would be
//! added.
//!
//! **Precision and range** ([`Encoding`]). Hessian blocks, the bulk of the bytes, use F = 32:
//! each value is rounded by at most 2⁻³³ ≈ 1.2·10⁻¹⁰ and a sum must stay within ±2³¹; a
//! Hessian only sets a Newton step's direction, and the point the solvers converge to is
//! where the gradient vanishes. Everything else — counts, losses, gradients, histograms —
//! uses F = 40: rounded by at most 2⁻⁴¹ ≈ 4.5·10⁻¹³, sums within ±2²³ ≈ 8.4·10⁶, fine enough
//! for the solvers' backtracking tests, which compare objectives to 10⁻¹³ of their size (at
//! F = 32 their rounding noise made the LASSO halve its steps without end). With K sites each
//! value a site sends must lie within ±(bound)/K; a site refuses a reply with a value beyond
//! it rather than let the sum wrap. The kinds summed here ([`secure_summable`]) hold counts,
//! losses, gradients, Hessian blocks and tree histograms on the study's standardised scale,
//! which grow with the patient count N (Σ zᵢ² = N over the training cohort; binomial weights
//! are ≤ ¼): of the order of N, a gradient entry at most N·max|z| ≤ N^1.5, a loss N·|η| at a
//! linear predictor η — within range up to about 10 000 training patients. The feature and
//! design moments are sums on each feature's raw scale, which no single word holds at the
//! precision a standardisation needs: they go in [`WIDE_WORDS`] words per value, exact from
//! 2⁻⁶⁰ up and within ±2¹²⁷ (see [`encode_wide`]).
//!
//! **What it does not hide.** The sum itself, with its patient count; whatever the task kinds
//! that are not summed here reveal per site (they are listed in the README and the report);
//! and a coordinator colluding with all the other sites can subtract their answers. Without
//! even one other site's secret the residual of a site's words is a ChaCha20 stream (tests
//! below). A site that leaves for good is never unmasked — there are no recovery shares — so
//! the round waits for it as for any answer, and the study stops if it does not return
//! within the task timeout.

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use ring::signature::{self, KeyPair};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::aggregate::SiteAggregate;
use crate::algorithms::CombineError;
use crate::proto::{self, Aggregate, Tensor, task};

/// The fixed point of a tensor: its value·2^`fraction_bits`, rounded, in a 64-bit word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub fraction_bits: u32,
}

impl Encoding {
    /// Counts, losses, gradients and histograms: 2⁴⁰ per unit (rounded by at most
    /// 4.5·10⁻¹³), sums within ±2²³ ≈ 8.4·10⁶. The backtracking tests of the Newton solvers
    /// compare objectives to 10⁻¹³ of their size, so these need the finer grid.
    pub const FINE: Encoding = Encoding { fraction_bits: 40 };
    /// Hessian blocks (the bulk of the bytes): 2³² per unit (rounded by at most 1.2·10⁻¹⁰),
    /// sums within ±2³¹ ≈ 2.1·10⁹. A Hessian only sets the Newton direction; the point the
    /// solvers converge to is where the (finely encoded) gradient vanishes.
    pub const COARSE: Encoding = Encoding { fraction_bits: 32 };

    /// The encoding of the tensor named `name` (the same on every site and the coordinator).
    pub fn of(name: &str) -> Encoding {
        if name.starts_with("hessian") { Encoding::COARSE } else { Encoding::FINE }
    }

    fn unit(self) -> f64 {
        (1u64 << self.fraction_bits) as f64
    }

    /// The largest magnitude a sum can take.
    pub fn sum_bound(self) -> f64 {
        (1u64 << (63 - self.fraction_bits)) as f64
    }

    /// `value` as a word modulo 2⁶⁴; `None` if not finite or |value| ≥ `bound`.
    pub fn encode(self, value: f64, bound: f64) -> Option<u64> {
        (value.is_finite() && value.abs() < bound).then(|| (value * self.unit()).round() as i64 as u64)
    }

    /// The value a (summed) word stands for.
    pub fn decode(self, word: u64) -> f64 {
        word as i64 as f64 / self.unit()
    }
}

/// Raw-scale sums — the feature and design moments' Σx and Σ(x − c)², ComBat's sums and the
/// clinical model's rounds, on whatever scale a radiomic feature or a clinical variable has
/// (energies reach 10¹¹ and their squares 10²²; some texture features vary by 10⁻⁶) — go into
/// [`WIDE_WORDS`] words per value: the value·2¹¹² rounded to an integer (exact for every double
/// from 2⁻⁶⁰ up, rounded by at most 2⁻¹¹³ below), as one two's-complement integer modulo
/// 2³²⁰, least significant word first. Masks and sums are added as such integers, with the
/// carry from word to word: a word-by-word sum would tell the coordinator each word's total
/// over the sites before carrying, hence how many times the sites' values cross each word
/// boundary, which chosen moments' centres could turn into one site's moments. A sum must stay
/// within ±2¹²⁷ ≈ 1.7·10³⁸. Tensors whose names start with `raw.` use it.
pub const WIDE_WORDS: usize = 5;
const WIDE_FRACTION_BITS: i32 = 112;

/// The largest magnitude a wide sum can take (2¹²⁷).
pub const WIDE_SUM_BOUND: f64 = 1.701_411_834_604_692_3e38;

/// Whether the tensor named `name` holds raw-scale sums ([`WIDE_WORDS`] words per value).
pub fn is_wide(name: &str) -> bool {
    name.starts_with("raw.")
}

fn words_per_value(name: &str) -> usize {
    if is_wide(name) { WIDE_WORDS } else { 1 }
}

/// The name part that marks a tensor of counts packed [`PACKED_LANES`] to a word (after any
/// nesting prefix, e.g. `s0.packed.validation.positive`).
pub const PACKED_PREFIX: &str = "packed.";
/// Counts per 64-bit word in a packed tensor, each in a lane of [`LANE_BITS`] bits.
pub const PACKED_LANES: usize = 4;
const LANE_BITS: u32 = 16;

/// Whether the tensor named `name` holds small counts packed [`PACKED_LANES`] to a word: the
/// dense score histograms, which are mostly empty cells and would otherwise cost a word each.
/// Adding packed words modulo 2⁶⁴ adds every lane at once, exactly, as long as no lane's sum
/// over the sites reaches 2¹⁶ (no carry into the next lane). With K sites a site's histogram
/// must therefore hold fewer than 2¹⁶/K patients in all (16 383 with four sites), and is
/// refused otherwise: a bound on the population's size, which the study knows, not on how
/// the patients fall into cells, which a refusal would otherwise tell. A masked packed word is
/// as uniform as any other.
pub fn is_packed(name: &str) -> bool {
    name.starts_with(PACKED_PREFIX) || name.contains(&format!(".{PACKED_PREFIX}"))
}

/// `value`·2¹¹², rounded, as a two's-complement integer modulo 2³²⁰ in [`WIDE_WORDS`] words
/// (least significant first); `None` if not finite or |value| ≥ `bound` (at most
/// [`WIDE_SUM_BOUND`]).
pub fn encode_wide(value: f64, bound: f64) -> Option<[u64; WIDE_WORDS]> {
    if !value.is_finite() || value.abs() >= bound.min(WIDE_SUM_BOUND) {
        return None;
    }
    let bits = value.abs().to_bits();
    let (exponent, fraction) = (((bits >> 52) & 0x7ff) as i32, bits & ((1u64 << 52) - 1));
    // |value| = mantissa · 2^power exactly.
    let (mantissa, power) = if exponent == 0 { (fraction, -1074) } else { (fraction | (1u64 << 52), exponent - 1075) };
    let shift = power + WIDE_FRACTION_BITS;
    let (integer, first_word) = if shift >= 0 {
        (u128::from(mantissa) << (shift % 64), (shift / 64) as usize)
    } else {
        // Round half up below the grid (mantissa < 2⁵³, so the sum cannot overflow).
        let down = (-shift) as u32;
        (if down >= 64 { 0 } else { u128::from((mantissa + (1u64 << (down - 1))) >> down) }, 0)
    };
    // |value| < 2¹²⁷ puts the integer below 2²³⁹: at most words `first_word` and the next, of 5.
    let mut words = [0u64; WIDE_WORDS];
    words[first_word] = integer as u64;
    if first_word + 1 < WIDE_WORDS {
        words[first_word + 1] = (integer >> 64) as u64;
    }
    Some(if value < 0.0 { wide_negated(&words) } else { words })
}

/// `a` + `b` modulo 2³²⁰ (and `a` − `b` when `subtract`).
fn wide_add(a: &mut [u64], b: &[u64], subtract: bool) {
    let mut carry = false;
    for (x, &y) in a.iter_mut().zip(b) {
        if subtract {
            let (d, borrow1) = x.overflowing_sub(y);
            let (d, borrow2) = d.overflowing_sub(u64::from(carry));
            (*x, carry) = (d, borrow1 || borrow2);
        } else {
            let (d, carry1) = x.overflowing_add(y);
            let (d, carry2) = d.overflowing_add(u64::from(carry));
            (*x, carry) = (d, carry1 || carry2);
        }
    }
}

fn wide_negated(words: &[u64; WIDE_WORDS]) -> [u64; WIDE_WORDS] {
    let mut zero = [0u64; WIDE_WORDS];
    wide_add(&mut zero, words, true);
    zero
}

/// The value a (summed) wide integer stands for, correctly rounded.
pub fn decode_wide(words: &[u64]) -> f64 {
    let mut w = [0u64; WIDE_WORDS];
    w.copy_from_slice(&words[..WIDE_WORDS]);
    let negative = w[WIDE_WORDS - 1] >> 63 == 1;
    if negative {
        w = wide_negated(&w);
    }
    // The magnitude's top two words in a u128 (at least 65 significant bits once the top one
    // is non-zero) and a sticky bit for anything below them, far below the rounding position.
    let Some(top) = w.iter().rposition(|&x| x != 0) else { return 0.0 };
    let lowest = top.saturating_sub(1);
    let mut integer = if top == 0 { u128::from(w[0]) } else { (u128::from(w[top]) << 64) | u128::from(w[lowest]) };
    if w[..lowest].iter().any(|&x| x != 0) {
        integer |= 1;
    }
    let magnitude = integer as f64 * 2f64.powi(64 * lowest as i32 - WIDE_FRACTION_BITS);
    if negative { -magnitude } else { magnitude }
}

/// How many words each value of an aggregate takes, in order: its patient count, then each
/// tensor's values ([`WIDE_WORDS`] for a raw-scale tensor's, 1 otherwise).
fn value_widths(aggregate: &Aggregate) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(1).chain(
        aggregate
            .tensors
            .iter()
            .flat_map(|t| if is_packed(&t.name) { std::iter::repeat_n(1, word_len(t)) } else { std::iter::repeat_n(words_per_value(&t.name), shape_len(t)) }),
    )
}

/// Adds (or subtracts) `other`'s words to `words`, value by value: one word modulo 2⁶⁴, a wide
/// value as one integer modulo 2³²⁰.
fn add_values(words: &mut [u64], other: &mut dyn Iterator<Item = u64>, widths: impl Iterator<Item = usize>, subtract: bool) {
    let mut at = 0;
    for width in widths {
        let b: Vec<u64> = other.take(width).collect();
        if width == 1 {
            words[at] = if subtract { words[at].wrapping_sub(b[0]) } else { words[at].wrapping_add(b[0]) };
        } else {
            wide_add(&mut words[at..at + width], &b, subtract);
        }
        at += width;
    }
}

/// The site id the coordinator gives a summed answer.
pub const SUM_OF_SITES: &str = "sum-of-sites";

const KEY_LABEL: &[u8] = b"fedrad.v1 secure-sum key";

/// The task kinds whose replies the coordinator only adds up, element by element, over all
/// the study's sites, in tensors of a fixed shape on the study's standardised scale or counts:
/// these go through secure aggregation when the study turns it on (and through the same
/// fixed-point sum when it does not). LASSO rounds and their CV losses, classifier fitting
/// rounds, tree-node histograms, the trees' value histograms, Mann–Whitney rank histograms,
/// the DeLong placement sums (the second `paired_scores` round) and the encoder's FedAvg
/// rounds (count-weighted weights and losses), both rounds of the feature and design moments
/// (counts and raw-scale sums in wide words, [`is_wide`]), the correlation's
/// cross-products of standardised values and ComBat's sums before and after harmonising
/// (raw scale, wide words), and the clinical model's logistic rounds (a raw design of age
/// in years and level indicators, wide words), and the score histograms — dense, packed
/// ([`is_packed`]) — of the models' validation, their cross-validation and both `paired_scores`
/// rounds, and Table 1 (counts per level, raw-scale sums in wide words and dense packed
/// histograms of the continuous variables, exclusions per reason) — unless a score or Table 1
/// task asks for each site's own answer (`per_site`, which the plan must allow and the site's
/// policy publish). The others are read per site (cohort counts, splits, folds, extraction and
/// embedding counts: the planning inputs) and stay plain; the report names them.
pub fn secure_summable(kind: &task::Kind) -> bool {
    match kind {
        task::Kind::LassoRound(_)
        | task::Kind::CvLoss(_)
        | task::Kind::ClassifierRound(_)
        | task::Kind::TreeRound(_)
        | task::Kind::RankHistogram(_)
        | task::Kind::ValueHistogram(_)
        | task::Kind::EncoderRound(_)
        | task::Kind::FeatureMoments(_)
        | task::Kind::DesignMoments(_)
        | task::Kind::Correlation(_)
        | task::Kind::CombatSums(_)
        | task::Kind::CombatApply(_)
        | task::Kind::LogisticRound(_) => true,
        // Per-site histograms only where the plan publishes them; the held-out site of a
        // leave-one-hospital-out analysis answers alone.
        task::Kind::Score(t) => !t.per_site && t.attestations.is_empty(),
        task::Kind::PairedScores(_) => true,
        task::Kind::Table1(t) => !t.per_site,
        _ => false,
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecureSumError {
    #[error("the secure sum names sites [{}], the approved plan's are [{}]", .got.join(", "), .expected.join(", "))]
    SiteSet { expected: Vec<String>, got: Vec<String> },
    #[error("a secure sum needs at least two sites; this plan has {0}")]
    TooFewSites(usize),
    #[error("the approved plan pins no key for site {0}")]
    Unpinned(String),
    #[error("the key given for site {site} has fingerprint {got}, the approved plan pins {pinned}: the coordinator may have substituted it")]
    PinMismatch { site: String, pinned: String, got: String },
    #[error("site {0}'s masking key has no valid signature by its certificate key")]
    BadSignature(String),
    #[error("site {0}'s answer does not carry its signature for this round (by the certificate key the plan pins)")]
    BadAnswerSignature(String),
    #[error("site {site}'s masking key is unusable: {detail}")]
    BadKey { site: String, detail: String },
    #[error("the secure sum carries another masking key for this site than its own")]
    OwnKeyReplaced,
    /// The message leaves the value out: a site sends it as its refusal, and the value is
    /// exactly what masking hides (`value` is for the site's own log).
    #[error("tensor `{tensor}` holds a value outside ±{bound}, which a secure sum over these sites cannot hold")]
    OutOfRange { tensor: String, value: f64, bound: f64 },
    /// A packed histogram's population is too large for its lanes: a bound on a published
    /// population size, so its refusal tells nothing about the site's data and need not latch.
    #[error("the histogram {tensor} counts {patients} patients, and a packed histogram of a study of this many sites holds fewer than {bound}")]
    PopulationTooLarge { tensor: String, patients: f64, bound: u64 },
    #[error("the site's certificate key: {0}")]
    CertificateKey(String),
}

/// SHA-256 (hex) of a DER SubjectPublicKeyInfo: the fingerprint plans pin and revocation
/// lists name ([`crate::identity::public_key_fingerprint`] takes it from a certificate).
pub fn key_fingerprint(spki_der: &[u8]) -> String {
    crate::digest::sha256_hex(spki_der)
}

fn signed_message(site_id: &str, public_key: &[u8]) -> Vec<u8> {
    let mut m = KEY_LABEL.to_vec();
    m.push(0);
    m.extend_from_slice(site_id.as_bytes());
    m.push(0);
    m.extend_from_slice(public_key);
    m
}

struct Len32;
impl ring::hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn hkdf32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(info, Len32)
        .expect("32 bytes is a valid HKDF length")
        .fill(&mut out)
        .expect("fills 32 bytes");
    out
}

/// The EC point of a P-256 SubjectPublicKeyInfo.
fn spki_point(spki_der: &[u8]) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer;
    let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing bytes after the SubjectPublicKeyInfo".into());
    }
    Ok(spki.subject_public_key.data.to_vec())
}

/// The DER SubjectPublicKeyInfo of a certificate (DER).
pub fn certificate_spki(cert_der: &[u8]) -> Result<Vec<u8>, SecureSumError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| SecureSumError::CertificateKey(format!("the certificate cannot be read: {e}")))?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// Checks that `key` is signed by the certificate key whose SubjectPublicKeyInfo is `spki_der`.
pub fn verify_signed_key(site_id: &str, spki_der: &[u8], key: &proto::MaskingKey) -> Result<(), SecureSumError> {
    let point = spki_point(spki_der).map_err(|detail| SecureSumError::BadKey { site: site_id.into(), detail })?;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &point)
        .verify(&signed_message(site_id, &key.public_key), &key.signature)
        .map_err(|_| SecureSumError::BadSignature(site_id.into()))
}

/// A site's secret for secure sums, and its signed public key.
pub struct MaskingIdentity {
    site_id: String,
    secret: StaticSecret,
    key: proto::MaskingKey,
    spki: Vec<u8>,
    /// The certificate key, which also signs the site's answers ([`Self::sign_answer`]).
    signer: signature::EcdsaKeyPair,
}

impl std::fmt::Debug for MaskingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskingIdentity").field("site_id", &self.site_id).field("fingerprint", &key_fingerprint(&self.spki)).finish_non_exhaustive()
    }
}

impl MaskingIdentity {
    /// From the site's certificate key (PKCS#8 DER, ECDSA P-256) and certificate (DER). A
    /// `previous` signature over the same key is kept (ECDSA signatures are randomised, and
    /// a signed key that changed at every start would change the tasks that carry it);
    /// otherwise the key is signed anew.
    pub fn new(site_id: &str, pkcs8: &[u8], cert_der: &[u8], previous: Option<Vec<u8>>) -> Result<Self, SecureSumError> {
        let err = |e: String| SecureSumError::CertificateKey(e);
        let spki = certificate_spki(cert_der)?;
        let rng = ring::rand::SystemRandom::new();
        let pair = signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
            .map_err(|e| err(format!("not an ECDSA P-256 PKCS#8 key ({e}); secure aggregation needs the key `site-agent enroll` makes")))?;
        if pair.public_key().as_ref() != spki_point(&spki).map_err(err)?.as_slice() {
            return Err(err("the key does not belong to the certificate".into()));
        }
        let secret = StaticSecret::from(hkdf32(b"fedrad.v1 masking key", pkcs8, &[site_id.as_bytes()]));
        let public_key = PublicKey::from(&secret).as_bytes().to_vec();
        let mut key = proto::MaskingKey { public_key, signature: previous.unwrap_or_default() };
        if verify_signed_key(site_id, &spki, &key).is_err() {
            key.signature = pair.sign(&rng, &signed_message(site_id, &key.public_key)).map_err(|_| err("signing failed".into()))?.as_ref().to_vec();
        }
        Ok(MaskingIdentity { site_id: site_id.into(), secret, key, spki, signer: pair })
    }

    /// This site's signature over its answer to one round ([`answer_message`]): the other
    /// sites check it when the coordinator forwards the answer to them.
    pub fn sign_answer(&self, round: RoundBinding, aggregate: &Aggregate) -> Result<Vec<u8>, SecureSumError> {
        let rng = ring::rand::SystemRandom::new();
        let sig =
            self.signer.sign(&rng, &answer_message(&self.site_id, round, aggregate)).map_err(|_| SecureSumError::CertificateKey("signing the answer failed".into()))?;
        Ok(sig.as_ref().to_vec())
    }

    pub fn site_id(&self) -> &str {
        &self.site_id
    }

    /// The signed public key, as the hello carries it.
    pub fn signed_key(&self) -> &proto::MaskingKey {
        &self.key
    }

    /// The fingerprint of the certificate key, as a plan pins it.
    pub fn fingerprint(&self) -> String {
        key_fingerprint(&self.spki)
    }

    /// This site's entry in a [`proto::SecureSum`].
    pub fn entry(&self) -> proto::SiteMaskingKey {
        proto::SiteMaskingKey { site_id: self.site_id.clone(), subject_public_key_info: self.spki.clone(), key: Some(self.key.clone()) }
    }
}

/// The study sites' verified masking keys, sorted by site id, with the certificate keys
/// (DER SubjectPublicKeyInfo) the plan pins.
#[derive(Debug, Clone)]
pub struct VerifiedSites(Vec<(String, PublicKey)>, BTreeMap<String, Vec<u8>>);

impl VerifiedSites {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn ids(&self) -> Vec<String> {
        self.0.iter().map(|(s, _)| s.clone()).collect()
    }

    /// Checks `signature` as `site`'s over its answer to `round` ([`answer_message`]), with
    /// the certificate key the plan pins for it.
    pub fn verify_answer(&self, site: &str, round: RoundBinding, aggregate: &Aggregate, signature: &[u8]) -> Result<(), SecureSumError> {
        let spki = self.1.get(site).ok_or_else(|| SecureSumError::Unpinned(site.into()))?;
        verify_answer_signature(site, spki, &answer_message(site, round, aggregate), signature)
    }
}

/// Checks `signature` over an answer's `message` by the certificate key `spki_der`.
fn verify_answer_signature(site: &str, spki_der: &[u8], message: &[u8], signature: &[u8]) -> Result<(), SecureSumError> {
    let point = spki_point(spki_der).map_err(|detail| SecureSumError::BadKey { site: site.into(), detail })?;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &point).verify(message, signature).map_err(|_| SecureSumError::BadAnswerSignature(site.into()))
}

/// What a site signs of an answer: a label, its id, the round (study, plan, task id and the
/// SHA-256 of the task as received, so an answer cannot be passed off as another task's or as
/// the answer to a task other sites did not get) and the SHA-256 of the encoded aggregate as
/// sent (masked, under secure aggregation).
pub fn answer_message(site_id: &str, round: RoundBinding, aggregate: &Aggregate) -> Vec<u8> {
    use prost::Message;
    answer_digest_message(site_id, round, &crate::digest::sha256_hex(&aggregate.encode_to_vec()))
}

/// [`answer_message`] from the aggregate's SHA-256 (hex).
fn answer_digest_message(site_id: &str, round: RoundBinding, aggregate_sha256: &str) -> Vec<u8> {
    let mut m = b"fedrad.v1 answer".to_vec();
    for part in [site_id, round.study_id, round.plan_sha256, round.task_id, round.task_sha256] {
        m.push(0);
        m.extend_from_slice(part.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(aggregate_sha256.as_bytes());
    m
}

/// Checks that `site` answered `round` (some aggregate whose SHA-256 is `aggregate_sha256`):
/// its signature, by the certificate key `spki_der` whose fingerprint the plan pins
/// (`pinned_fingerprint`). A site that was not sent the aggregate — the held-out site of a
/// leave-one-hospital-out analysis, which learns that every fitting site scored a model
/// without seeing their histograms — checks the answer this way.
pub fn verify_attestation(
    site: &str,
    pinned_fingerprint: &str,
    spki_der: &[u8],
    round: RoundBinding,
    aggregate_sha256: &str,
    signature: &[u8],
) -> Result<(), SecureSumError> {
    let got = key_fingerprint(spki_der);
    if got != pinned_fingerprint {
        return Err(SecureSumError::PinMismatch { site: site.into(), pinned: pinned_fingerprint.into(), got });
    }
    verify_answer_signature(site, spki_der, &answer_digest_message(site, round, aggregate_sha256), signature)
}

/// What a site accepts before it masks: the sites are exactly its plan's (`plan_sites`, sorted
/// and without repeats, at least two), each key is the pinned site's, signed by it, and its
/// own entry is its own key.
pub fn verify_peers(own: &MaskingIdentity, plan_sites: &[String], pins: &BTreeMap<String, String>, secure: &proto::SecureSum) -> Result<VerifiedSites, SecureSumError> {
    let got: Vec<String> = secure.sites.iter().map(|s| s.site_id.clone()).collect();
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    if sorted != plan_sites || got.len() != sorted.len() {
        return Err(SecureSumError::SiteSet { expected: plan_sites.to_vec(), got });
    }
    if plan_sites.len() < 2 {
        return Err(SecureSumError::TooFewSites(plan_sites.len()));
    }
    let mut out = Vec::with_capacity(secure.sites.len());
    let mut spkis = BTreeMap::new();
    for s in &secure.sites {
        let pinned = pins.get(&s.site_id).ok_or_else(|| SecureSumError::Unpinned(s.site_id.clone()))?;
        let fingerprint = key_fingerprint(&s.subject_public_key_info);
        if fingerprint != *pinned {
            return Err(SecureSumError::PinMismatch { site: s.site_id.clone(), pinned: pinned.clone(), got: fingerprint });
        }
        let key = s.key.as_ref().ok_or_else(|| SecureSumError::BadKey { site: s.site_id.clone(), detail: "no masking key".into() })?;
        verify_signed_key(&s.site_id, &s.subject_public_key_info, key)?;
        let bytes: [u8; 32] = key.public_key.as_slice().try_into().map_err(|_| SecureSumError::BadKey { site: s.site_id.clone(), detail: "not 32 bytes".into() })?;
        if s.site_id == own.site_id && bytes != *own.key.public_key.as_slice() {
            return Err(SecureSumError::OwnKeyReplaced);
        }
        out.push((s.site_id.clone(), PublicKey::from(bytes)));
        spkis.insert(s.site_id.clone(), s.subject_public_key_info.clone());
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(VerifiedSites(out, spkis))
}

/// What a round's masks are bound to: a mask never serves two tasks, studies or plans.
///
/// The task's own bytes are part of it (`task_sha256`, the SHA-256 of the task as the site
/// received it): in an honest round every site gets the same task, so the masks cancel; a
/// coordinator that sends sites different content under one task id — to isolate one site in
/// the difference of two sums — gets masks that do not cancel, and a sum that is noise.
#[derive(Debug, Clone, Copy)]
pub struct RoundBinding<'a> {
    pub study_id: &'a str,
    pub plan_sha256: &'a str,
    pub task_id: &'a str,
    pub task_sha256: &'a str,
}

impl RoundBinding<'_> {
    fn info(&self, sites: &VerifiedSites) -> Vec<u8> {
        let mut info = Vec::new();
        for part in [self.study_id, self.plan_sha256, self.task_id, self.task_sha256].into_iter().chain(sites.0.iter().map(|(s, _)| s.as_str())) {
            info.extend_from_slice(part.as_bytes());
            info.push(0);
        }
        info
    }
}

/// The mask stream `own` shares with `peer` for one round (the same stream at both ends).
fn pair_stream(own: &StaticSecret, peer_id: &str, peer: &PublicKey, info: &[u8]) -> Result<ChaCha20Rng, SecureSumError> {
    let shared = own.diffie_hellman(peer);
    if !shared.was_contributory() {
        return Err(SecureSumError::BadKey { site: peer_id.into(), detail: "a low-order point".into() });
    }
    Ok(ChaCha20Rng::from_seed(hkdf32(b"fedrad.v1 pairwise mask", shared.as_bytes(), &[info])))
}

/// The words of an aggregate in fixed point: its patient count, then each tensor's values,
/// each within ±(its encoding's sum bound)/`sites`.
fn encode_aggregate(aggregate: &Aggregate, sites: usize) -> Result<Vec<u64>, SecureSumError> {
    let n = 1 + aggregate.tensors.iter().map(word_len).sum::<usize>();
    let mut words = Vec::with_capacity(n);
    let count = aggregate.patient_count as f64;
    let fine = Encoding::FINE;
    let bound = fine.sum_bound() / sites as f64;
    words.push(fine.encode(count, bound).ok_or(SecureSumError::OutOfRange { tensor: "patient_count".into(), value: count, bound })?);
    for t in &aggregate.tensors {
        if is_packed(&t.name) {
            // The bound on the histogram's total, not on a cell: no cell can pass it then, and
            // whether it holds depends on the population's size alone (a published count), not
            // on how this site's patients fall into cells.
            let bound = (1u64 << LANE_BITS) / sites as u64;
            let total: f64 = t.values.iter().sum();
            if total >= bound as f64 {
                return Err(SecureSumError::PopulationTooLarge { tensor: t.name.clone(), patients: total, bound });
            }
            for chunk in t.values.chunks(PACKED_LANES) {
                let mut word = 0u64;
                for (lane, &v) in chunk.iter().enumerate() {
                    if !(v >= 0.0 && v.fract() == 0.0 && v < bound as f64) {
                        return Err(SecureSumError::OutOfRange { tensor: t.name.clone(), value: v, bound: bound as f64 });
                    }
                    word |= (v as u64) << (LANE_BITS * lane as u32);
                }
                words.push(word);
            }
            continue;
        }
        if is_wide(&t.name) {
            let bound = WIDE_SUM_BOUND / sites as f64;
            for &v in &t.values {
                words.extend(encode_wide(v, bound).ok_or_else(|| SecureSumError::OutOfRange { tensor: t.name.clone(), value: v, bound })?);
            }
            continue;
        }
        let e = Encoding::of(&t.name);
        let bound = e.sum_bound() / sites as f64;
        for &v in &t.values {
            words.push(e.encode(v, bound).ok_or_else(|| SecureSumError::OutOfRange { tensor: t.name.clone(), value: v, bound })?);
        }
    }
    Ok(words)
}

/// Site half: `aggregate` encoded and masked for the round; its tensors keep their names and
/// shapes, their values move into [`Aggregate::masked`].
pub fn mask(own: &MaskingIdentity, sites: &VerifiedSites, round: RoundBinding, aggregate: Aggregate) -> Result<Aggregate, SecureSumError> {
    let mut words = encode_aggregate(&aggregate, sites.len().max(1))?;
    let info = round.info(sites);
    for (peer_id, peer) in &sites.0 {
        if *peer_id == own.site_id {
            continue;
        }
        let mut stream = pair_stream(&own.secret, peer_id, peer, &info)?;
        let add = own.site_id < *peer_id;
        add_values(&mut words, &mut std::iter::from_fn(|| Some(stream.next_u64())), value_widths(&aggregate), !add);
    }
    let tensors = aggregate.tensors.into_iter().map(|t| Tensor { name: t.name, shape: t.shape, values: Vec::new() }).collect();
    Ok(Aggregate { patient_count: 0, tensors, masked: words })
}

fn shape_len(t: &Tensor) -> usize {
    t.shape.iter().map(|&d| d as usize).product()
}

fn word_len(t: &Tensor) -> usize {
    if is_packed(&t.name) { shape_len(t).div_ceil(PACKED_LANES) } else { shape_len(t) * words_per_value(&t.name) }
}

/// Coordinator half: the sum of every site's answer to one round, as one answer from
/// [`SUM_OF_SITES`]. Masked answers are added as words (the masks cancel only if every site
/// of the round is there); plain ones are first encoded as a site would, so both give the same
/// bits. All answers must have the same tensors in the same order.
pub fn combine(answers: &[SiteAggregate]) -> Result<SiteAggregate, CombineError> {
    let first = answers.first().ok_or(CombineError::NoSites)?;
    let layout: Vec<(&str, &[u64])> = first.aggregate.tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice())).collect();
    let n = 1 + first.aggregate.tensors.iter().map(word_len).sum::<usize>();
    let masked = !first.aggregate.masked.is_empty();
    let mut sum = vec![0u64; n];
    for a in answers {
        let bad = |detail: String| CombineError::Inconsistent { site: a.site_id.clone(), detail };
        let this: Vec<(&str, &[u64])> = a.aggregate.tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice())).collect();
        if this != layout {
            return Err(bad(format!("its tensors differ from site {}'s, so the answers cannot be summed", first.site_id)));
        }
        let words = if masked {
            if a.aggregate.masked.len() != n {
                return Err(bad(format!("{} masked words, expected {n} (or a plain answer in a secure sum)", a.aggregate.masked.len())));
            }
            a.aggregate.masked.clone()
        } else {
            if !a.aggregate.masked.is_empty() {
                return Err(bad("a masked answer among plain ones".into()));
            }
            if let Some(t) = a.aggregate.tensors.iter().find(|t| t.values.len() != shape_len(t)) {
                return Err(bad(format!("tensor `{}` has {} values for shape {:?}", t.name, t.values.len(), t.shape)));
            }
            encode_aggregate(&a.aggregate, answers.len()).map_err(|e| bad(e.to_string()))?
        };
        add_values(&mut sum, &mut words.into_iter(), value_widths(&first.aggregate), false);
    }
    let count = Encoding::FINE.decode(sum[0]);
    if !(count >= 0.0 && count.fract() == 0.0) {
        return Err(CombineError::Inconsistent { site: SUM_OF_SITES.into(), detail: format!("the summed patient count is {count}: a site's masks did not cancel") });
    }
    let mut words = sum[1..].iter();
    let tensors = first
        .aggregate
        .tensors
        .iter()
        .map(|t| {
            let values = if is_packed(&t.name) {
                let lane_mask = (1u64 << LANE_BITS) - 1;
                let packed: Vec<u64> = words.by_ref().take(word_len(t)).copied().collect();
                packed.iter().flat_map(|&w| (0..PACKED_LANES).map(move |lane| ((w >> (LANE_BITS * lane as u32)) & lane_mask) as f64)).take(shape_len(t)).collect()
            } else if is_wide(&t.name) {
                let wide: Vec<u64> = words.by_ref().take(word_len(t)).copied().collect();
                wide.chunks(WIDE_WORDS).map(decode_wide).collect()
            } else {
                let e = Encoding::of(&t.name);
                words.by_ref().take(shape_len(t)).map(|&w| e.decode(w)).collect()
            };
            Tensor { name: t.name.clone(), shape: t.shape.clone(), values }
        })
        .collect();
    Ok(SiteAggregate::new(SUM_OF_SITES, Aggregate { patient_count: count as u64, tensors, masked: Vec::new() }))
}

/// The fingerprints to pin for `sites`, from their certificates (PEM files), for tests and
/// `coordinator certs pins`.
pub fn pins_from_certificates(certs: &[(String, Vec<u8>)]) -> Result<BTreeMap<String, String>, crate::identity::IdentityError> {
    certs.iter().map(|(site, der)| Ok((site.clone(), crate::identity::public_key_fingerprint(der)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AggregateBuilder;

    /// A site's certificate key and certificate (self-signed: only the key matters here).
    fn site_identity(site: &str) -> MaskingIdentity {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![site.to_string()]).unwrap().self_signed(&key).unwrap();
        MaskingIdentity::new(site, &key.serialize_der(), cert.der(), None).unwrap()
    }

    fn federation(k: usize) -> (Vec<MaskingIdentity>, Vec<String>, BTreeMap<String, String>, proto::SecureSum) {
        let ids: Vec<MaskingIdentity> = (0..k).map(|i| site_identity(&format!("site-{i}"))).collect();
        let names: Vec<String> = ids.iter().map(|i| i.site_id.clone()).collect();
        let pins = ids.iter().map(|i| (i.site_id.clone(), i.fingerprint())).collect();
        let secure = proto::SecureSum { sites: ids.iter().map(|i| i.entry()).collect() };
        (ids, names, pins, secure)
    }

    const ROUND: RoundBinding = RoundBinding { study_id: "s", plan_sha256: "p", task_id: "lasso-r1", task_sha256: "t1" };

    /// An uneven aggregate for site `i`: counts, signed reals over a wide range, a matrix.
    fn aggregate(i: usize) -> Aggregate {
        let x = (i + 1) as f64;
        AggregateBuilder::new(10 + 7 * i as u64)
            .vector("n", vec![10.0 + x, 3.0 * x])
            .scalar("loss", 12.345_678_9 * x)
            .matrix("hessian", 2, 2, vec![1e-7 * x, -2.5e4 * x, 0.333 / x, 1e5 + x])
            .vector("raw.sum", vec![1.234e11 * x, -3.3e-7 * x, 4.0e22 + x])
            .vector("s0.packed.validation.negative", vec![0.0, 1.0 + x, 0.0, 2.0 * x, 9.0, 0.0])
            .build()
    }

    fn masked_answers(k: usize, round: RoundBinding) -> (Vec<SiteAggregate>, Vec<Aggregate>) {
        let (ids, names, pins, secure) = federation(k);
        let plain: Vec<Aggregate> = (0..k).map(aggregate).collect();
        let answers = ids
            .iter()
            .zip(&plain)
            .map(|(id, a)| {
                let sites = verify_peers(id, &names, &pins, &secure).unwrap();
                SiteAggregate::new(id.site_id.clone(), mask(id, &sites, round, a.clone()).unwrap())
            })
            .collect();
        (answers, plain)
    }

    #[test]
    fn masked_answers_sum_to_the_plain_fixed_point_sum_bit_for_bit_over_1_4_and_7_sites() {
        for k in [1, 4, 7] {
            let (ids, names, pins, secure) = federation(k);
            let plain: Vec<SiteAggregate> = (0..k).map(|i| SiteAggregate::new(format!("site-{i}"), aggregate(i))).collect();
            let plain_sum = combine(&plain).unwrap();
            if k == 1 {
                // One site cannot be secure-summed (there is no one to share a mask with).
                assert_eq!(verify_peers(&ids[0], &names, &pins, &secure).unwrap_err(), SecureSumError::TooFewSites(1));
            } else {
                let (masked, _) = masked_answers(k, ROUND);
                let secure_sum = combine(&masked).unwrap();
                assert_eq!(secure_sum, plain_sum, "{k} sites");
            }
            // And the fixed-point sum is the float sum to the encoding's rounding (half a unit
            // per value: 2^-33 for the coarse Hessian, 2^-41 for the rest).
            let n: u64 = (0..k).map(|i| 10 + 7 * i as u64).sum();
            assert_eq!(plain_sum.patient_count(), n);
            let h = plain_sum.vector("hessian", 4).unwrap();
            for (e, want) in
                [(0, (1..=k).map(|x| 1e-7 * x as f64).sum::<f64>()), (1, (1..=k).map(|x| -2.5e4 * x as f64).sum()), (3, (1..=k).map(|x| 1e5 + x as f64).sum())]
            {
                assert!((h[e] - want).abs() <= k as f64 * 2f64.powi(-33), "{k} sites, element {e}: {} vs {want}", h[e]);
            }
        }
    }

    /// Packed counts (four to a word) sum lane by lane, bit for bit, with no carry from one
    /// cell into the next, and come back as the counts they were; a count that could make a
    /// lane overflow is refused.
    #[test]
    fn packed_counts_sum_lane_by_lane() {
        for k in [1, 4, 7] {
            let plain: Vec<SiteAggregate> = (0..k).map(|i| SiteAggregate::new(format!("site-{i}"), aggregate(i))).collect();
            let sum = combine(&plain).unwrap();
            let want: Vec<f64> = (0..6).map(|c| (0..k).map(|i| plain[i].aggregate.tensors[4].values[c]).sum()).collect();
            assert_eq!(sum.values("s0.packed.validation.negative").unwrap(), want.as_slice(), "{k} sites");
            if k > 1 {
                let (masked, _) = masked_answers(k, ROUND);
                assert_eq!(combine(&masked).unwrap(), sum, "{k} sites, masked");
                assert_eq!(masked[0].aggregate.masked.len(), 1 + 2 + 1 + 4 + 3 * WIDE_WORDS + 2, "six counts in two words");
            }
        }
        // A lane full to the brim over 4 sites (16 383 each, 65 532 in all) does not carry.
        let full = |site: &str, lane: usize| {
            let mut v = vec![0.0; 5];
            v[lane] = 16_383.0;
            SiteAggregate::new(site, AggregateBuilder::new(1).vector("packed.x", v).build())
        };
        let sum = combine(&[full("a", 1), full("b", 1), full("c", 1), full("d", 1)]).unwrap();
        assert_eq!(sum.values("packed.x").unwrap(), &[0.0, 65_532.0, 0.0, 0.0, 0.0]);
        let (ids, names, pins, secure) = federation(4);
        let sites = verify_peers(&ids[0], &names, &pins, &secure).unwrap();
        for bad in [16_384.0, -1.0, 0.5, f64::NAN] {
            let a = AggregateBuilder::new(1).vector("packed.x", vec![1.0, bad]).build();
            let refused = mask(&ids[0], &sites, ROUND, a);
            assert!(matches!(refused, Err(SecureSumError::OutOfRange { .. } | SecureSumError::PopulationTooLarge { .. })), "{bad}: {refused:?}");
        }
        // The bound is on the histogram's total: 16 384 patients spread over cells are refused
        // as one cell of them is, whatever the cells — as a population too large, a published
        // size, which latches nothing at the site (`OutOfRange` does).
        let spread = AggregateBuilder::new(1).vector("packed.x", vec![8_192.0, 8_192.0]).build();
        assert!(matches!(mask(&ids[0], &sites, ROUND, spread), Err(SecureSumError::PopulationTooLarge { patients, bound: 16_384, .. }) if patients == 16_384.0));
    }

    #[test]
    fn wide_words_hold_raw_scale_values_exactly_and_sum_them_without_cancelling() {
        // Single values, from the smallest the grid holds exactly to beyond any radiomic
        // feature's square, come back bit for bit.
        for v in [0.0, 1.0, -1.0, 5.3, -5.3, 1e-6, -2.5e-13, 2f64.powi(-60), 1.0 + f64::EPSILON, 1.234e11, -3.7e22, 1e30, 1.7e38] {
            let words = encode_wide(v, WIDE_SUM_BOUND).unwrap();
            assert_eq!(decode_wide(&words), v, "{v:e}");
        }
        // Below 2^-60 the grid rounds by at most 2^-113.
        for v in [1e-20, -3e-30, f64::MIN_POSITIVE] {
            assert!((decode_wide(&encode_wide(v, WIDE_SUM_BOUND).unwrap()) - v).abs() <= 2f64.powi(-113), "{v:e}");
        }
        // A sum is exact where floating point cancels: 1e22 + 1 − 1e22 is 1, not 0.
        let sum = |values: &[f64]| decode_wide(&wide_total(values));
        assert_eq!(sum(&[1e22, 1.0, -1e22]), 1.0);
        let small = sum(&[-1e-6, -2e-6, 0.5e-6]);
        assert!((small + 2.5e-6).abs() <= f64::EPSILON * 2.5e-6, "{small:e}");
        let many: Vec<f64> = (0..7).map(|i| 1.234_567_89e11 * (i as f64 + 0.5) - 3.0e10).collect();
        let exact: f64 = many.iter().sum();
        assert!((sum(&many) - exact).abs() <= 4.0 * f64::EPSILON * exact.abs(), "{} vs {exact}", sum(&many));
        // Out of range or not finite: refused, per site within the bound over the sites.
        assert!(encode_wide(WIDE_SUM_BOUND, WIDE_SUM_BOUND).is_none());
        assert!(encode_wide(f64::NAN, WIDE_SUM_BOUND).is_none());
        assert!(encode_wide(1e30, 1e30 / 2.0).is_none());
        // Through the masks: the raw tensor of `aggregate` sums exactly over 4 sites.
        let (masked, plain) = masked_answers(4, ROUND);
        let want: Vec<f64> = (0..3).map(|e| plain.iter().map(|a| a.tensors[3].values[e]).sum::<f64>()).collect();
        let got = combine(&masked).unwrap().vector("raw.sum", 3).unwrap().to_vec();
        for e in 0..3 {
            assert!((got[e] - want[e]).abs() <= 4.0 * f64::EPSILON * want[e].abs(), "element {e}: {} vs {}", got[e], want[e]);
        }
    }

    /// The words the coordinator holds for the sum of `values` (one per site), unmasked.
    fn wide_total(values: &[f64]) -> [u64; WIDE_WORDS] {
        let mut total = [0u64; WIDE_WORDS];
        for &v in values {
            let words = encode_wide(v, WIDE_SUM_BOUND / values.len() as f64).unwrap();
            add_values(&mut total, &mut words.into_iter(), std::iter::once(WIDE_WORDS), false);
        }
        total
    }

    #[test]
    fn a_wide_sum_is_the_same_words_however_the_sites_split_it() {
        // Two sites' values with the same total, split across a word boundary differently
        // (2⁻⁴⁸ is word 1's lowest bit): the summed words are the total's, so the coordinator
        // cannot tell the splits apart. Words summed one by one would differ (word 1: 1 or 0),
        // telling it how often the sites' values crossed the boundary.
        let (w, tiny) = (2f64.powi(-48), 2f64.powi(-100));
        assert_eq!(wide_total(&[w, 0.0]), wide_total(&[w - tiny, tiny]));
        assert_eq!(wide_total(&[w, 0.0]), encode_wide(w, WIDE_SUM_BOUND).unwrap());
        // And with a sign change across all five words.
        assert_eq!(wide_total(&[-tiny, 2.0 * tiny]), encode_wide(tiny, WIDE_SUM_BOUND).unwrap());
        assert_eq!(wide_total(&[2f64.powi(100), -2f64.powi(100) - 2f64.powi(60)]), encode_wide(-2f64.powi(60), WIDE_SUM_BOUND).unwrap());
        // Through the masks too: four sites' masked raw sums add to the plain total's words.
        let (masked, plain) = masked_answers(4, ROUND);
        let values: Vec<f64> = plain.iter().map(|a| a.tensors[3].values[0]).collect();
        let total = decode_wide(&wide_total(&values));
        assert_eq!(combine(&masked).unwrap().vector("raw.sum", 3).unwrap()[0], total);
    }

    #[test]
    fn the_fixed_point_sum_does_not_depend_on_the_order_of_the_answers() {
        let a: Vec<SiteAggregate> = (0..5).map(|i| SiteAggregate::new(format!("s{i}"), aggregate(i))).collect();
        let mut b = a.clone();
        b.reverse();
        assert_eq!(combine(&a).unwrap(), combine(&b).unwrap());
    }

    /// Bits of masked words over many rounds with the same data: each bit position is set
    /// about half the time, and the bytes pass a chi-square test for uniformity.
    #[test]
    fn a_sites_masked_words_are_indistinguishable_from_uniform() {
        let (ids, names, pins, secure) = federation(4);
        let sites = verify_peers(&ids[0], &names, &pins, &secure).unwrap();
        let mut byte_counts = [0u64; 256];
        let mut bit_counts = [0u64; 64];
        let mut words = 0u64;
        for r in 0..400 {
            let task_id = format!("round-{r}");
            let m = mask(&ids[0], &sites, RoundBinding { task_id: &task_id, ..ROUND }, aggregate(0)).unwrap();
            for w in m.masked {
                words += 1;
                for (b, c) in bit_counts.iter_mut().enumerate() {
                    *c += (w >> b) & 1;
                }
                for byte in w.to_le_bytes() {
                    byte_counts[byte as usize] += 1;
                }
            }
        }
        // 25 words × 400 rounds: each bit is set half the time ± 5 sd (sd = 50).
        for (b, &c) in bit_counts.iter().enumerate() {
            assert!((c as f64 - words as f64 / 2.0).abs() < 5.0 * (words as f64 / 4.0).sqrt(), "bit {b} set {c} of {words} times");
        }
        let expected = words as f64 * 8.0 / 256.0;
        let chi2: f64 = byte_counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        // 255 degrees of freedom: the 99.99th percentile is about 347.
        assert!(chi2 < 347.0, "chi-square {chi2} over byte values");
        // The same data in the clear is far from uniform (the test can fail).
        let plain = encode_aggregate(&aggregate(0), 4).unwrap();
        assert!(plain.iter().any(|w| w >> 40 == 0), "small values have zero high bytes in the clear");
    }

    /// Unmasking one site's words needs the secrets it shares with every other site: with one
    /// missing, what is left is still a ChaCha20 stream, not the aggregate.
    #[test]
    fn recovering_one_sites_aggregate_needs_every_other_sites_seed() {
        let (ids, names, pins, secure) = federation(4);
        let sites = verify_peers(&ids[0], &names, &pins, &secure).unwrap();
        let masked = mask(&ids[0], &sites, ROUND, aggregate(0)).unwrap().masked;
        let truth = encode_aggregate(&aggregate(0), 4).unwrap();
        let info = ROUND.info(&sites);
        // Site 0's mask with site j, as site j computes it from its own secret.
        let streams: Vec<Vec<u64>> = (1..4)
            .map(|j| {
                let mut s = pair_stream(&ids[j].secret, "site-0", &PublicKey::from(<[u8; 32]>::try_from(ids[0].key.public_key.as_slice()).unwrap()), &info).unwrap();
                (0..truth.len()).map(|_| s.next_u64()).collect()
            })
            .collect();
        // Site 0's id sorts first, so it added every pair's mask (value by value, wide values
        // with their carries); unmasking subtracts the known ones.
        let plain = aggregate(0);
        let unmask = |known: &[usize]| -> Vec<u64> {
            let mut words = masked.clone();
            for &j in known {
                add_values(&mut words, &mut streams[j].iter().copied(), value_widths(&plain), true);
            }
            words
        };
        assert_eq!(unmask(&[0, 1, 2]), truth, "all three peers' seeds recover it");
        for known in [[0, 1], [0, 2], [1, 2]] {
            let partial = unmask(&known);
            assert!(partial.iter().zip(&truth).all(|(a, b)| a != b), "two of three seeds ({known:?}) leave every word masked");
        }
    }

    #[test]
    fn a_substituted_or_unsigned_key_is_refused() {
        let (ids, names, pins, secure) = federation(4);
        // The coordinator replaces site-2's key by one of its own, with a certificate it made.
        let intruder = site_identity("site-2");
        let mut swapped = secure.clone();
        swapped.sites[2] = intruder.entry();
        assert!(matches!(verify_peers(&ids[0], &names, &pins, &swapped), Err(SecureSumError::PinMismatch { site, .. }) if site == "site-2"));
        // It keeps site-2's certificate key but puts in its own X25519 key.
        let mut forged = secure.clone();
        forged.sites[2].key.as_mut().unwrap().public_key = intruder.key.public_key.clone();
        assert_eq!(verify_peers(&ids[0], &names, &pins, &forged).unwrap_err(), SecureSumError::BadSignature("site-2".into()));
        // It replaces the site's own key.
        let mut own = secure.clone();
        own.sites[0] = proto::SiteMaskingKey { site_id: "site-0".into(), ..ids[0].entry() };
        own.sites[0].key = Some(proto::MaskingKey { public_key: ids[1].key.public_key.clone(), signature: Vec::new() });
        assert!(verify_peers(&ids[0], &names, &pins, &own).is_err());
        // It leaves a site out, adds one, or repeats one.
        let mut fewer = secure.clone();
        fewer.sites.pop();
        assert!(matches!(verify_peers(&ids[0], &names, &pins, &fewer), Err(SecureSumError::SiteSet { .. })));
        let mut repeated = secure.clone();
        repeated.sites[3] = repeated.sites[2].clone();
        assert!(matches!(verify_peers(&ids[0], &names, &pins, &repeated), Err(SecureSumError::SiteSet { .. })));
        // A plan without a pin for a site.
        let mut unpinned = pins.clone();
        unpinned.remove("site-3");
        assert_eq!(verify_peers(&ids[0], &names, &unpinned, &secure).unwrap_err(), SecureSumError::Unpinned("site-3".into()));
        // The honest directory passes.
        assert_eq!(verify_peers(&ids[0], &names, &pins, &secure).unwrap().ids(), names);
    }

    #[test]
    fn a_value_beyond_the_range_is_refused_and_the_sum_of_a_missing_site_does_not_decode() {
        let (ids, names, pins, secure) = federation(4);
        let sites = verify_peers(&ids[0], &names, &pins, &secure).unwrap();
        let big = AggregateBuilder::new(20).scalar("loss", Encoding::FINE.sum_bound() / 4.0).build();
        assert!(matches!(mask(&ids[0], &sites, ROUND, big), Err(SecureSumError::OutOfRange { tensor, .. }) if tensor == "loss"));
        let nan = AggregateBuilder::new(20).scalar("loss", f64::NAN).build();
        assert!(mask(&ids[0], &sites, ROUND, nan).is_err());
        // Three of four sites: the masks do not cancel, and the coordinator says so.
        let (mut masked, _) = masked_answers(4, ROUND);
        masked.pop();
        // (a random word is a whole patient count with probability 2^-32)
        assert!(matches!(combine(&masked), Err(CombineError::Inconsistent { site, .. }) if site == SUM_OF_SITES), "a partial sum is noise");
        // Masks of another round do not cancel with this one's.
        let (a, _) = masked_answers(2, ROUND);
        let (b, _) = masked_answers(2, RoundBinding { task_id: "lasso-r2", ..ROUND });
        assert_ne!(a[0].aggregate.masked, b[0].aggregate.masked);
    }

    /// A coordinator that sends one site other content than the rest under the same task id
    /// (so that the difference of two sums would be that site's alone) gets noise: the masks
    /// are bound to the task's bytes.
    #[test]
    fn different_tasks_to_different_sites_under_one_id_sum_to_noise() {
        let (ids, names, pins, secure) = federation(4);
        let answers: Vec<SiteAggregate> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let sites = verify_peers(id, &names, &pins, &secure).unwrap();
                let round = RoundBinding { task_sha256: if i == 0 { "content X" } else { "content W" }, ..ROUND };
                SiteAggregate::new(id.site_id.clone(), mask(id, &sites, round, aggregate(i)).unwrap())
            })
            .collect();
        assert!(matches!(combine(&answers), Err(CombineError::Inconsistent { site, .. }) if site == SUM_OF_SITES));
    }

    #[test]
    fn an_attestation_verifies_only_for_its_round_answer_and_pinned_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["site-a".to_string()]).unwrap().self_signed(&key).unwrap();
        let id = MaskingIdentity::new("site-a", &key.serialize_der(), cert.der(), None).unwrap();
        let round = RoundBinding { study_id: "s.without-b", plan_sha256: "p", task_id: "t", task_sha256: "d" };
        let answer = Aggregate { patient_count: 7, ..Default::default() };
        let signature = id.sign_answer(round, &answer).unwrap();
        let digest = crate::digest::sha256_hex(&prost::Message::encode_to_vec(&answer));
        let pin = id.fingerprint();
        verify_attestation("site-a", &pin, &id.spki, round, &digest, &signature).unwrap();
        // Another task, another answer, another site's name or an unpinned key: refused.
        let other_task = RoundBinding { task_id: "t2", ..round };
        assert!(matches!(verify_attestation("site-a", &pin, &id.spki, other_task, &digest, &signature), Err(SecureSumError::BadAnswerSignature(_))));
        let other_answer = crate::digest::sha256_hex(b"another");
        assert!(matches!(verify_attestation("site-a", &pin, &id.spki, round, &other_answer, &signature), Err(SecureSumError::BadAnswerSignature(_))));
        assert!(matches!(verify_attestation("site-c", &pin, &id.spki, round, &digest, &signature), Err(SecureSumError::BadAnswerSignature(_))));
        let stranger = rcgen::KeyPair::generate().unwrap();
        let stranger_cert = rcgen::CertificateParams::new(vec!["site-a".to_string()]).unwrap().self_signed(&stranger).unwrap();
        let stranger_spki = certificate_spki(stranger_cert.der()).unwrap();
        assert!(matches!(verify_attestation("site-a", &pin, &stranger_spki, round, &digest, &signature), Err(SecureSumError::PinMismatch { .. })));
    }

    #[test]
    fn a_restarted_site_keeps_its_key_and_signature() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["site-a".to_string()]).unwrap().self_signed(&key).unwrap();
        let first = MaskingIdentity::new("site-a", &key.serialize_der(), cert.der(), None).unwrap();
        let again = MaskingIdentity::new("site-a", &key.serialize_der(), cert.der(), Some(first.key.signature.clone())).unwrap();
        assert_eq!(first.key, again.key);
        // A signature that does not verify is replaced.
        let fresh = MaskingIdentity::new("site-a", &key.serialize_der(), cert.der(), Some(vec![1, 2, 3])).unwrap();
        assert_eq!(fresh.key.public_key, first.key.public_key);
        verify_signed_key("site-a", &fresh.spki, &fresh.key).unwrap();
        // Another site's certificate with this key: refused.
        let other = rcgen::KeyPair::generate().unwrap();
        let other_cert = rcgen::CertificateParams::new(vec!["site-a".to_string()]).unwrap().self_signed(&other).unwrap();
        assert!(MaskingIdentity::new("site-a", &key.serialize_der(), other_cert.der(), None).is_err());
    }
}
