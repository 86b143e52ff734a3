//! Answering tasks: the site half of every federated algorithm, behind the site's policy,
//! its reply cache and its audit log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fedrad_shared::algorithms::{SiteRefusal, cohort_summary, combat, split, table1};
use fedrad_shared::clinical::{CohortRole, VariableKind, VariableSpec};
use fedrad_shared::proto::{self, Task, TaskReply, task, task_reply};
use prost::Message;
use rayon::prelude::*;

use crate::acceptance;
use crate::audit::{AuditEntry, AuditLog, sha256_hex};
use crate::config::SiteConfig;
use crate::deep::CropError;
use crate::manifest::LoadedCohort;
use crate::onnx::{InputRecipe, Intensity, Network, NetworkError};
use crate::selection::{self, FeatureTable, TrainingData};
use fedrad_shared::algorithms::encoder::{self, Architecture};
use fedrad_shared::algorithms::fedavg::{self, LocalTraining, Sample};
use fedrad_shared::algorithms::lasso::LassoReplica;
use fedrad_shared::secure_sum::{self, MaskingIdentity, RoundBinding, VerifiedSites};

pub struct SiteEngine {
    pub config: SiteConfig,
    pub cohort: LoadedCohort,
    schema: Vec<VariableSpec>,
    audit: Mutex<AuditLog>,
    /// Serialises writes to a study's local records.
    study_lock: Mutex<()>,
    /// Studies whose secure sums this site refused for a value out of range (also recorded
    /// beside each study as [`RANGE_LATCH`]; kept here too, so that a latch the disk could not
    /// record still holds until the agent restarts).
    range_latched: Mutex<std::collections::BTreeSet<String>>,
    /// Per study, the standardisers refused for the bound relative to this site's SD so far
    /// ([`SITE_RELATIVE_REFUSALS`]; also counted on disk as [`BOUND_REFUSALS`]).
    bound_refusals: Mutex<BTreeMap<String, u32>>,
    /// Feature tables read for selection tasks, by (study, sequence); cleared by extraction.
    tables: Mutex<BTreeMap<(String, String), Arc<FeatureTable>>>,
    /// The encoder's crops of every loaded patient, by (sequence, crop recipe).
    crops: Mutex<BTreeMap<(String, String), Arc<Vec<Result<Vec<f64>, CropError>>>>>,
    /// One lock per task being computed: a task resent while its first copy is still being
    /// computed (the coordinator restarted, or the connection dropped) waits for that copy
    /// and is answered from the reply cache, instead of computing the same thing twice side
    /// by side over the same files.
    in_flight: Mutex<BTreeMap<(String, String), Arc<Mutex<()>>>>,
    /// Bytes each study holds on this site's disk — its reply cache (`studies/<study>/replies/`)
    /// and its tasks' bytes kept for the audit — counted once per study from the files, then
    /// kept up to date; bounded by `policy.max_study_disk_bytes`.
    study_disk: Mutex<BTreeMap<String, u64>>,
    /// One permit per task computed at once (`policy.max_concurrent_tasks`); the client takes
    /// one before it starts a task, so tasks beyond the bound wait.
    task_slots: Arc<tokio::sync::Semaphore>,
    /// The site's secure-sum key, derived from its certificate key; why there is none (no
    /// `[tls]`, or a key secure aggregation cannot use) otherwise.
    masking: Result<MaskingIdentity, String>,
    /// Approval records read so far (read again when their file changes).
    approvals: crate::approval::ApprovalCache,
    /// The LASSO runs and classifier fits this site takes part in, recomputed from the sites'
    /// signed answers ([`crate::replay`]).
    lasso_runs: crate::replay::Runs<fedrad_shared::algorithms::lasso::LassoReplica>,
    classifier_fits: crate::replay::Runs<fedrad_shared::algorithms::classifiers::FitReplica>,
    tree_runs: crate::replay::Runs<fedrad_shared::algorithms::trees::TreeReplica>,
    encoder_runs: crate::replay::Runs<fedrad_shared::algorithms::fedavg::EncoderReplica>,
    comparisons: crate::replay::Runs<fedrad_shared::algorithms::paired_auc::ComparisonReplica>,
}

/// One feature table of a ComBat task: all its rows by patient, and its estimation rows (the
/// training patients with every protected covariate) in cohort order.
struct CombatPart {
    sequence: String,
    deep: bool,
    names: Vec<String>,
    rows: BTreeMap<String, Vec<f64>>,
    /// SHA-256 of the extracted table's bytes that `rows` were parsed from.
    extracted_sha256: String,
    settings: combat::CombatSettings,
    y: Vec<Vec<f64>>,
    x: Vec<Vec<f64>>,
    outcome: Vec<bool>,
    /// Covariate rows by patient.
    estimation: BTreeMap<String, Vec<f64>>,
}

impl CombatPart {
    fn sums(&self, y: &[Vec<f64>], min_count: u64, max_ratio: f64) -> Result<proto::Aggregate, Failure> {
        let with_outcome = self.settings.covariates.iter().any(|c| c == combat::OUTCOME);
        let q = self.x.first().map_or(0, |r| r.len());
        Ok(combat::site_sums(y, &self.x, self.names.len(), q, with_outcome.then_some(self.outcome.as_slice()), min_count, max_ratio)?)
    }
}

/// The inputs that name a LASSO run (with the plan's settings and the site's folds).
struct LassoRun<'a> {
    features: Option<&'a proto::FeatureColumns>,
    standardiser: Option<&'a proto::Standardiser>,
    family: i32,
    max_block_columns: Option<u32>,
}

/// Beside a study's records: present once the site refused a secure sum of the study for a
/// value out of range; it then answers no more secure sums of that study.
const RANGE_LATCH: &str = "secure-sum-range-refused";
/// Beside each study: the SHA-256 of the patients its first Table 1 answer covered
/// ([`SiteEngine::pin_table1_population`]).
const TABLE1_POPULATION: &str = "table1-population.sha256";

/// The one refusal of every secure sum from the first value out of range on: the same words
/// whichever tensor or value it was, and whether a later task's values were in range or not.
fn range_latch_refusal() -> SiteRefusal {
    SiteRefusal::Precondition(
        "secure sum: this site refused a secure sum of this study for a value out of the fixed-point range, and answers no more secure sums of it (in range or not is a yes-or-no fact about its data, told once)".into(),
    )
}

/// Beside a study's records: present once the site refused a DeLong second round of the study
/// (merged histograms that do not hold its own patients, or any other reason); it then answers
/// no more second rounds of that study.
const MERGE_LATCH: &str = "delong-round-refused";

/// Once a second round was refused, every later one gets this refusal: with the first round
/// secure-summed, whether made-up "merged" histograms hold this site's patients cell by cell
/// would otherwise read its own histogram, one refusal at a time (a red-team review).
fn merge_latch_refusal() -> SiteRefusal {
    SiteRefusal::Precondition(
        "this site refused a DeLong second round of this study and answers no more of them (whether merged histograms hold its own patients is a fact about its scores, told once)".into(),
    )
}

/// Beside a study's records: how many tasks of the study this site refused because a new
/// standardiser was finer than its own SD / `max_scale_ratio` ([`SITE_RELATIVE_REFUSALS`]).
const BOUND_REFUSALS: &str = "standardiser-bound-refusals";

/// Refused or not, a standardiser's bound relative to the site's own SD is a yes-or-no
/// answer about that SD: unlimited, some fifty of them bisect one column's SD here. A
/// standardiser already pinned (of a design, or of every column named) is compared with its
/// pin before the bound, so that another one is refused the same way above or below it; a new
/// one is checked against the bound, and a study gets this many such refusals: from then on
/// every new standardiser of the study is refused, within the bound or not. An honest study
/// meets none.
pub const SITE_RELATIVE_REFUSALS: u32 = 8;

/// The secure-sum key from the site's certificate key (`[tls] key`, PKCS#8 P-256) and
/// certificate. Its signature is kept in `<work_dir>/masking-key.sig`, so the signed key (and
/// the tasks that carry it) stay the same across restarts.
fn masking_identity(config: &SiteConfig) -> Result<MaskingIdentity, String> {
    let tls = config.tls.as_ref().ok_or("the site runs without [tls] (plaintext test mode)")?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    use rustls_pki_types::pem::PemObject;
    let key_pem = fedrad_shared::tls::read_private_key(&tls.key).map_err(|e| e.to_string())?;
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(&key_pem).map_err(|e| format!("{}: not a PKCS#8 PEM key ({e})", tls.key.display()))?;
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(&read(&tls.cert)?).map_err(|e| format!("{}: not a PEM certificate ({e})", tls.cert.display()))?;
    let sig_path = config.work_dir.join("masking-key.sig");
    let previous = std::fs::read(&sig_path).ok();
    let identity = MaskingIdentity::new(&config.site_id, key.secret_pkcs8_der(), &cert, previous.clone()).map_err(|e| e.to_string())?;
    if previous.as_deref() != Some(identity.signed_key().signature.as_slice())
        && let Err(e) = write_atomic(&sig_path, &identity.signed_key().signature)
    {
        tracing::warn!(error = %e, path = %sig_path.display(), "could not keep the secure-sum key's signature; it will be signed anew at the next start");
    }
    Ok(identity)
}

/// What `audit_head` (field 5: a one-byte tag, a one-byte length and 64 hex digits) adds to an
/// encoded reply.
const AUDIT_HEAD_FIELD_BYTES: u64 = 66;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("work directory {path}: {source}")]
    WorkDir { path: PathBuf, source: std::io::Error },
    #[error("clinical table: {0}")]
    Schema(String),
}

/// What a leave-one-hospital-out analysis asks of a site: the fitting sites answer the
/// selection's and the models' rounds (and confirm the study's folds), over the study's own
/// populations; the held-out site only scores the analysis's final models. Whatever defines a
/// population or a feature (cohort summary, split, Table 1, extraction, the encoder,
/// embedding, ComBat) belongs to the study and is refused in its analyses, and so are model
/// comparisons, which the analyses do not make.
fn analysis_gate(task: &Task, held_out_here: bool) -> Result<(), Failure> {
    let refuse = |m: String| Err(Failure::Refused(SiteRefusal::InvalidParameters(m)));
    match &task.kind {
        Some(task::Kind::Score(t)) if held_out_here && t.folds == 0 => Ok(()),
        _ if held_out_here => {
            refuse(format!("the held-out site of a leave-one-hospital-out analysis only scores the analysis's final models, not {} tasks", kind_name(task)))
        }
        Some(task::Kind::ClassifierRound(c)) if c.site_alone => refuse("a leave-one-hospital-out analysis has no site-alone baselines".into()),
        Some(
            task::Kind::Folds(_)
            | task::Kind::FeatureMoments(_)
            | task::Kind::RankHistogram(_)
            | task::Kind::Correlation(_)
            | task::Kind::LassoRound(_)
            | task::Kind::CvLoss(_)
            | task::Kind::LogisticRound(_)
            | task::Kind::DesignMoments(_)
            | task::Kind::ClassifierRound(_)
            | task::Kind::Score(_)
            | task::Kind::ValueHistogram(_)
            | task::Kind::TreeRound(_),
        ) => Ok(()),
        _ => refuse(format!("{} tasks belong to the study, not to its leave-one-hospital-out analyses", kind_name(task))),
    }
}

/// One study's disk use on this site, as run logs book it ([`crate::replay::DiskUse`]).
struct StudyDisk<'a> {
    engine: &'a SiteEngine,
    study_id: &'a str,
}

impl crate::replay::DiskUse for StudyDisk<'_> {
    fn charge(&self, bytes: u64) -> Result<(), SiteRefusal> {
        self.engine.charge_disk(self.study_id, bytes)
    }

    fn release(&self, bytes: u64) {
        self.engine.release_disk(self.study_id, bytes)
    }
}

/// The study whose bounds a task's study shares: a leave-one-hospital-out analysis
/// (`<study>.without-<site>`) counts towards its study's disk bound, standardiser refusals and
/// range latch, so the analyses do not multiply them. (A study approved under such a name on
/// its own shares them with the study it names, which only makes its bounds tighter.)
fn study_key(study_id: &str) -> &str {
    fedrad_shared::plan::parse_held_out_study_id(study_id).map_or(study_id, |(study, _)| study)
}

/// Study ids name folders in the work directory, so they are restricted.
pub(crate) fn valid_study_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && !id.starts_with('.') && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Every task kind this agent version answers, by the name the audit log and
/// `policy.answers` use.
pub const TASK_KINDS: [&str; 20] = [
    "cohort_summary",
    "split",
    "table1",
    "extract_features",
    "folds",
    "feature_moments",
    "rank_histogram",
    "correlation",
    "lasso_round",
    "cv_loss",
    "logistic_round",
    "design_moments",
    "classifier_round",
    "score",
    "value_histogram",
    "tree_round",
    "paired_scores",
    "encoder_round",
    "embed",
    "onnx_embed",
];

/// The embedding weights' SHA-256, if it is the one the task names.
fn check_weights_digest(t: &proto::EmbedTask) -> Result<String, Failure> {
    let digest = fedavg::weights_sha256(&t.weights);
    if digest != t.weights_sha256 {
        return Err(Failure::Refused(SiteRefusal::InvalidParameters(format!(
            "the encoder weights do not match their SHA-256 (task says {}, weights give {})",
            t.weights_sha256.get(..12).unwrap_or(&t.weights_sha256),
            &digest[..12]
        ))));
    }
    Ok(digest)
}

/// A tree ensemble's run slot (its design, standardiser and objective) and key (with the
/// inputs that fix its rounds): the same for its tree rounds and for the score task that
/// checks its end.
fn tree_run_ids(design: &str, objective: i32, min_leaf: u64, base_margin: f64, seed: u64) -> (String, String) {
    let slot = crate::replay::key_of(&[design.as_bytes(), &objective.to_le_bytes()]);
    let key = crate::replay::key_of(&[slot.as_bytes(), &min_leaf.to_le_bytes(), &base_margin.to_le_bytes(), &seed.to_le_bytes()]);
    (slot, key)
}

/// A classifier fit's run key (its slot too): the same for its rounds and for the score task
/// that checks its end. `q` is the fit's size (the SVM's for its Platt rounds).
#[allow(clippy::too_many_arguments)]
fn fit_run_key(
    design: Option<&proto::ModelDesign>,
    std: Option<&proto::Standardiser>,
    logistic: bool,
    random_features: Option<&proto::RandomFeatures>,
    exclude_fold: u32,
    penalty: f64,
    site_alone: bool,
    q: usize,
) -> String {
    let family: &[u8] = if logistic { b"logistic" } else { b"svm" };
    crate::replay::key_of(&[
        &design.map(|d| d.encode_to_vec()).unwrap_or_default(),
        &std.map(|s| s.encode_to_vec()).unwrap_or_default(),
        family,
        &random_features.map(|r| r.encode_to_vec()).unwrap_or_default(),
        &exclude_fold.to_le_bytes(),
        &penalty.to_le_bytes(),
        &[u8::from(site_alone)],
        &(q as u64).to_le_bytes(),
    ])
}

/// A design and its standardiser, as one key (value counts and tree rounds name both).
fn tree_design_key(design: Option<&proto::ModelDesign>, std: Option<&proto::Standardiser>) -> String {
    crate::replay::key_of(&[&design.map(|d| d.encode_to_vec()).unwrap_or_default(), &std.map(|s| s.encode_to_vec()).unwrap_or_default()])
}

fn kind_name(t: &Task) -> &'static str {
    match &t.kind {
        Some(task::Kind::CohortSummary(_)) => "cohort_summary",
        Some(task::Kind::Split(_)) => "split",
        Some(task::Kind::Table1(_)) => "table1",
        Some(task::Kind::ExtractFeatures(_)) => "extract_features",
        Some(task::Kind::Folds(_)) => "folds",
        Some(task::Kind::FeatureMoments(_)) => "feature_moments",
        Some(task::Kind::RankHistogram(_)) => "rank_histogram",
        Some(task::Kind::Correlation(_)) => "correlation",
        Some(task::Kind::LassoRound(_)) => "lasso_round",
        Some(task::Kind::CvLoss(_)) => "cv_loss",
        Some(task::Kind::LogisticRound(_)) => "logistic_round",
        Some(task::Kind::DesignMoments(_)) => "design_moments",
        Some(task::Kind::ClassifierRound(_)) => "classifier_round",
        Some(task::Kind::Score(_)) => "score",
        Some(task::Kind::ValueHistogram(_)) => "value_histogram",
        Some(task::Kind::TreeRound(_)) => "tree_round",
        Some(task::Kind::PairedScores(_)) => "paired_scores",
        Some(task::Kind::EncoderRound(_)) => "encoder_round",
        Some(task::Kind::Embed(_)) => "embed",
        Some(task::Kind::OnnxEmbed(_)) => "onnx_embed",
        Some(task::Kind::CombatSums(_)) => "combat_sums",
        Some(task::Kind::CombatApply(_)) => "combat_apply",
        None => "unknown",
    }
}

impl SiteEngine {
    pub fn new(config: SiteConfig, cohort: LoadedCohort) -> Result<Self, EngineError> {
        std::fs::create_dir_all(&config.work_dir).map_err(|source| EngineError::WorkDir { path: config.work_dir.clone(), source })?;
        let audit = AuditLog::open(&config.work_dir.join("audit.jsonl"))?;
        let schema = config.table_schema().map_err(EngineError::Schema)?;
        let task_slots = Arc::new(tokio::sync::Semaphore::new(config.policy.max_concurrent_tasks.max(1) as usize));
        let masking = masking_identity(&config);
        if let Err(why) = &masking {
            tracing::warn!(reason = %why, "no secure-sum key: studies that secure-sum will be refused");
        }
        Ok(SiteEngine {
            config,
            cohort,
            schema,
            audit: Mutex::new(audit),
            study_lock: Mutex::new(()),
            range_latched: Mutex::new(std::collections::BTreeSet::new()),
            bound_refusals: Mutex::new(BTreeMap::new()),
            tables: Mutex::new(BTreeMap::new()),
            crops: Mutex::new(BTreeMap::new()),
            in_flight: Mutex::new(BTreeMap::new()),
            study_disk: Mutex::new(BTreeMap::new()),
            task_slots,
            masking,
            approvals: crate::approval::ApprovalCache::default(),
            lasso_runs: crate::replay::lasso_runs(),
            classifier_fits: crate::replay::classifier_fits(),
            tree_runs: crate::replay::tree_runs(),
            encoder_runs: crate::replay::encoder_runs(),
            comparisons: crate::replay::comparisons(),
        })
    }

    /// The signed secure-sum key the hello carries (none without a usable certificate key).
    pub fn masking_key(&self) -> Option<proto::MaskingKey> {
        self.masking.as_ref().ok().map(|m| m.signed_key().clone())
    }

    /// The fingerprint of this site's certificate key, as a plan pins it.
    pub fn key_fingerprint(&self) -> Option<String> {
        self.masking.as_ref().ok().map(|m| m.fingerprint())
    }

    /// What the approved plan says about secure aggregation, for this task: the verified
    /// sites to mask for, none for a plain reply, or a refusal. A plan that secure-sums a kind
    /// gets no plain reply to it (except site-alone baseline rounds, if the plan opts in), and
    /// a task that asks for a secure sum the plan does not make is refused too.
    fn secure_sum_rule(&self, task: &Task, plan: &fedrad_shared::plan::StudyPlan, held_out_here: bool) -> Result<Option<VerifiedSites>, SiteRefusal> {
        let Some(kind) = &task.kind else { return Ok(None) };
        if plan.per_site_results && !self.config.policy.per_site_results && matches!(kind, task::Kind::Score(_) | task::Kind::PairedScores(_) | task::Kind::Table1(_)) {
            // All or nothing: were this site to answer the plan's sums while the others publish
            // their own answers, the sum minus theirs would be its own.
            return Err(SiteRefusal::Precondition(
                "this site publishes no per-site results (policy.per_site_results), and this plan publishes every site's score histograms and Table 1: it takes no part in them".into(),
            ));
        }
        let own_answer = match kind {
            task::Kind::Score(t) if t.per_site => Some("score histograms"),
            task::Kind::Table1(t) if t.per_site => Some("Table 1"),
            _ => None,
        };
        if let Some(what) = own_answer {
            // Per-site answers are the site's own results in the clear.
            if !plan.per_site_results {
                return Err(SiteRefusal::InvalidParameters(format!("this task asks for this site's own {what}, and the approved plan publishes no per-site results")));
            }
            if !self.config.policy.per_site_results {
                return Err(SiteRefusal::Precondition(format!("this site publishes no per-site results (policy.per_site_results); the plan asks for its own {what}")));
            }
        }
        if held_out_here && matches!(kind, task::Kind::Score(_)) {
            // The held-out site of a leave-one-hospital-out analysis scores alone, in the clear,
            // as its policy agreed to; what it may score is checked against the fitting sites'
            // attestations (`verify_attestations`). Its task carries the directory the fitting
            // sites masked for, only so that its digest is the one they signed.
            return Ok(None);
        }
        let summable = secure_sum::secure_summable(kind);
        match (&plan.secure_aggregation, &task.secure_sum, summable) {
            (Some(settings), Some(secure), true) => {
                if self.range_latched(&task.study_id) {
                    return Err(range_latch_refusal());
                }
                let own = self
                    .masking
                    .as_ref()
                    .map_err(|why| SiteRefusal::Precondition(format!("this study secure-sums its aggregates and this site has no secure-sum key: {why}")))?;
                secure_sum::verify_peers(own, &plan.site_set(), &settings.site_keys, secure)
                    .map(Some)
                    .map_err(|e| SiteRefusal::InvalidParameters(format!("secure sum: {e}")))
            }
            (Some(settings), None, true) => {
                if settings.site_alone_baselines
                    && matches!(kind, task::Kind::ClassifierRound(c) if c.site_alone && c.objective == proto::ClassifierObjective::Logistic as i32)
                {
                    if self.config.policy.site_alone_baselines {
                        return Ok(None);
                    }
                    return Err(SiteRefusal::Precondition(
                        "this site publishes no site-alone baseline in a study that secure-sums (policy.site_alone_baselines); this task asks for a plain logistic round"
                            .into(),
                    ));
                }
                Err(SiteRefusal::InvalidParameters(format!("the approved plan secure-sums {} replies; this task asks for a plain one", kind_name(task))))
            }
            (_, Some(_), _) => {
                Err(SiteRefusal::InvalidParameters(format!("this task asks for a secure sum of {} replies, which the approved plan does not make", kind_name(task))))
            }
            (_, None, _) => Ok(None),
        }
    }

    /// A new standardiser against the bound relative to this site's SD
    /// ([`acceptance::standardiser`]), within the study's budget of such refusals
    /// ([`SITE_RELATIVE_REFUSALS`]); counts a refusal. The caller holds the study lock.
    fn bound_within_budget(&self, study_id: &str, check: impl FnOnce() -> Result<(), SiteRefusal>) -> Result<(), SiteRefusal> {
        // Counted for the study and its leave-one-hospital-out analyses together.
        let study_id = study_key(study_id);
        let path = self.study_dir(study_id).join(BOUND_REFUSALS);
        let on_disk: u32 = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        let mut counts = self.bound_refusals.lock().unwrap_or_else(|p| p.into_inner());
        let used = counts.get(study_id).copied().unwrap_or(0).max(on_disk);
        if used >= SITE_RELATIVE_REFUSALS {
            return Err(SiteRefusal::Precondition(format!(
                "this site refused {used} standardisers of this study as finer than its own SD allows, its most ({SITE_RELATIVE_REFUSALS}): each such refusal is a yes-or-no answer about its data, so it accepts no new standardiser in this study"
            )));
        }
        check().inspect_err(|_| {
            counts.insert(study_id.to_string(), used + 1);
            if let Err(e) = write_atomic(&path, (used + 1).to_string().as_bytes()) {
                tracing::error!(error = %e, "could not record a standardiser's refusal on disk; the count holds until the agent restarts");
            }
        })
    }

    /// One latch for a study and its leave-one-hospital-out analyses.
    fn range_latched(&self, study_id: &str) -> bool {
        let study_id = study_key(study_id);
        self.range_latched.lock().unwrap_or_else(|p| p.into_inner()).contains(study_id) || self.study_dir(study_id).join(RANGE_LATCH).exists()
    }

    /// The permits of the tasks computed at once: take one before calling [`Self::handle`].
    pub fn task_slots(&self) -> Arc<tokio::sync::Semaphore> {
        self.task_slots.clone()
    }

    fn study_dir(&self, study_id: &str) -> PathBuf {
        self.config.work_dir.join("studies").join(study_id)
    }

    /// Feature tables are fixed once a ComBat task of the study was answered: a re-extraction
    /// or a new embedding would change the rows under ComBat's recorded populations and pinned
    /// estimates (and a re-extraction that drops one patient would difference them).
    fn features_fixed_by_combat(&self, study_id: &str, what: &str) -> Result<(), Failure> {
        if self.study_dir(study_id).join("harmonisation").join("populations.json").exists() {
            return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                "this study has started ComBat harmonisation, so its feature tables are fixed: {what} again is refused"
            ))));
        }
        Ok(())
    }

    fn cache_path(&self, study_id: &str, task_id: &str) -> PathBuf {
        self.study_dir(study_id).join("replies").join(format!("{}.pb", &sha256_hex(task_id.as_bytes())[..32]))
    }

    /// Answers one task. Never panics on a hostile task; every answer is audited before it is
    /// returned, and carries the hash of its audit entry (`audit_head`).
    pub fn handle(&self, task: &Task) -> TaskReply {
        let task_bytes = task.encode_to_vec();
        let task_digest = sha256_hex(&task_bytes);
        let reply_with = |outcome| TaskReply { task_id: task.task_id.clone(), outcome: Some(outcome), ..Default::default() };
        if task.task_id.is_empty() || task.task_id.len() > 200 || !valid_study_id(&task.study_id) {
            let r = reply_with(task_reply::Outcome::Refusal(
                SiteRefusal::InvalidParameters("task id or study id is empty, too long or has characters outside A-Z a-z 0-9 . _ -".into()).to_proto(),
            ));
            return self.audit(task, &task_digest, false, r, "refused").unwrap_or_else(|failure| *failure);
        }
        let key = (task.study_id.clone(), task.task_id.clone());
        let task_lock = self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()).or_default().clone();
        let reply = {
            let _computing = task_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.answer(task, &task_bytes, &task_digest)
        };
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        // The map and this call hold the only references: nobody else waits for this task.
        if Arc::strong_count(&task_lock) == 2 {
            in_flight.remove(&key);
        }
        reply
    }

    /// [`Self::handle`] for a well-formed task, with no other copy of it being computed.
    ///
    /// Order: the task's bytes are kept for the audit (tasks of approved studies), then the
    /// reply is computed or read from the cache, its audit entry is appended, and only then is
    /// the reply cached and returned. If the audit cannot be written the reply is not sent (a
    /// `TaskFailure` says why) and not cached. A study whose replies and kept tasks would take
    /// more than `policy.max_study_disk_bytes` of this site's disk is refused instead.
    fn answer(&self, task: &Task, task_bytes: &[u8], task_digest: &str) -> TaskReply {
        let reply_with = |outcome| TaskReply { task_id: task.task_id.clone(), outcome: Some(outcome), ..Default::default() };
        let refuse = |r: SiteRefusal| reply_with(task_reply::Outcome::Refusal(r.to_proto()));
        let task_kept = match self.keep_task(task, task_bytes, task_digest) {
            Ok(kept) => kept,
            Err(Failure::Refused(r)) => return self.audit(task, task_digest, false, refuse(r), "refused").unwrap_or_else(|f| *f),
            Err(Failure::Failed(detail)) => {
                let r = reply_with(task_reply::Outcome::Failure(proto::TaskFailure { detail: format!("the audit log could not be written: {detail}") }));
                return self.audit(task, task_digest, false, r, "failed").unwrap_or_else(|f| *f);
            }
        };
        let record = |reply, outcome| self.audit(task, task_digest, task_kept, reply, outcome).unwrap_or_else(|failure| *failure);
        let approval = match self.gate(task) {
            Ok(a) => a,
            Err(Failure::Refused(r)) => return record(refuse(r), "refused"),
            Err(Failure::Failed(detail)) => return record(reply_with(task_reply::Outcome::Failure(proto::TaskFailure { detail })), "failed"),
        };
        let held_out_here = approval.held_out() == Some(self.config.site_id.as_str());
        let secure = match self.secure_sum_rule(task, &approval.plan, held_out_here) {
            Ok(s) => s,
            Err(r) => return record(refuse(r), "refused"),
        };
        // A resent task is answered from the cache, byte for byte, without recomputing.
        let cache = self.cache_path(&task.study_id, &task.task_id);
        if let Ok(bytes) = std::fs::read(&cache) {
            // Cache file: the task's digest (64 hex), a newline, the encoded reply (without its
            // audit head: a resent reply carries the head of its own "sent_from_cache" entry).
            if bytes.len() > 65 && bytes[64] == b'\n' {
                if bytes[..64] == *task_digest.as_bytes() {
                    if let Ok(r) = TaskReply::decode(&bytes[65..]) {
                        return record(r, "sent_from_cache");
                    }
                } else {
                    let r = refuse(SiteRefusal::InvalidParameters(format!("task id {} was already used for a different task", task.task_id)));
                    return record(r, "refused");
                }
            }
        }
        let started = std::time::Instant::now();
        let mut clear_count = None;
        let computed = self.compute(task, &approval, task_digest, secure.as_ref()).and_then(|agg| match (&secure, &self.masking) {
            (Some(sites), Ok(own)) => {
                clear_count = Some(agg.patient_count);
                let round = RoundBinding { study_id: &task.study_id, plan_sha256: &task.plan_sha256, task_id: &task.task_id, task_sha256: task_digest };
                let masked = secure_sum::mask(own, sites, round, agg);
                // Whether a value is in range is itself a fact about this site's data: answer
                // that once per study, then no more secure sums of it. Checked again here, under
                // the study lock, because tasks computed side by side all passed the check
                // before any of them was refused: after the first refusal, every secure answer
                // of the study is this same refusal, in range or not.
                let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
                if self.range_latched(&task.study_id) {
                    return Err(Failure::Refused(range_latch_refusal()));
                }
                masked.map_err(|e| {
                    if let secure_sum::SecureSumError::OutOfRange { tensor, value, .. } = &e {
                        tracing::warn!(task = %task.task_id, %tensor, value, "secure sum refused: a value out of range; no more secure sums of this study");
                        let latched = study_key(&task.study_id);
                        self.range_latched.lock().unwrap_or_else(|p| p.into_inner()).insert(latched.to_string());
                        if let Err(io) = write_atomic(&self.study_dir(latched).join(RANGE_LATCH), task.task_id.as_bytes()) {
                            tracing::error!(error = %io, "could not record the range refusal on disk; it holds until the agent restarts");
                        }
                        // The refusal names no tensor and no value.
                        return Failure::Refused(range_latch_refusal());
                    }
                    Failure::Refused(SiteRefusal::InvalidParameters(format!("secure sum: {e}")))
                })
            }
            _ => Ok(agg),
        });
        tracing::debug!(task = %task.task_id, millis = started.elapsed().as_secs_f64() * 1e3, "computed");
        let mut signature = Vec::new();
        if let (Ok(agg), Ok(own)) = (&computed, &self.masking) {
            let round = RoundBinding { study_id: &task.study_id, plan_sha256: &task.plan_sha256, task_id: &task.task_id, task_sha256: task_digest };
            match own.sign_answer(round, agg) {
                Ok(s) => signature = s,
                Err(e) => tracing::warn!(error = %e, task = %task.task_id, "could not sign the answer; the other sites cannot check it"),
            }
        }
        let outcome = match computed {
            Ok(agg) => task_reply::Outcome::Aggregate(agg),
            Err(Failure::Refused(r)) => task_reply::Outcome::Refusal(r.to_proto()),
            Err(Failure::Failed(detail)) => task_reply::Outcome::Failure(proto::TaskFailure { detail }),
        };
        let mut reply = reply_with(outcome);
        reply.signature = signature;
        let mut cached = None;
        if matches!(reply.outcome, Some(task_reply::Outcome::Aggregate(_))) {
            let mut bytes = format!("{task_digest}\n").into_bytes();
            bytes.extend_from_slice(&reply.encode_to_vec());
            match self.charge_disk(&task.study_id, bytes.len() as u64) {
                Ok(()) => cached = Some(bytes),
                Err(r) => reply = refuse(r),
            }
        }
        let label = match &reply.outcome {
            Some(task_reply::Outcome::Aggregate(_)) => "sent",
            Some(task_reply::Outcome::Refusal(_)) => "refused",
            _ => "failed",
        };
        match self.audit_counted(task, task_digest, task_kept, reply, label, clear_count) {
            Ok(sent) => {
                if let Some(bytes) = cached
                    && let Err(e) = write_atomic(&cache, &bytes)
                {
                    self.release_disk(&task.study_id, bytes.len() as u64);
                    tracing::warn!(error = %e, "could not cache the reply; a resend will recompute it");
                }
                sent
            }
            Err(failure) => {
                if let Some(bytes) = cached {
                    self.release_disk(&task.study_id, bytes.len() as u64);
                }
                *failure
            }
        }
    }

    /// Keeps the task's bytes beside the audit log (`audit/tasks/<task_digest>.pb`, written
    /// once) if its study is approved here, charged to the study's disk use; returns whether
    /// they are kept. Tasks of study ids not approved here are refused unread and not kept, so
    /// invented study ids cannot fill the disk. Refused past the study's disk bound.
    fn keep_task(&self, task: &Task, bytes: &[u8], task_digest: &str) -> Result<bool, Failure> {
        if self.approvals.load(&self.config.work_dir, &task.study_id).is_err() {
            return Ok(false);
        }
        let path = crate::audit::task_file(&self.audit_path(), task_digest);
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
            return Ok(true);
        }
        self.charge_disk(&task.study_id, bytes.len() as u64)?;
        let kept = self.audit.lock().unwrap_or_else(|p| p.into_inner()).keep_task(task_digest, bytes);
        if let Err(e) = kept {
            self.release_disk(&task.study_id, bytes.len() as u64);
            return Err(Failure::Failed(format!("cannot keep the task's bytes: {e}")));
        }
        Ok(true)
    }

    fn audit_path(&self) -> PathBuf {
        self.config.work_dir.join("audit.jsonl")
    }

    /// Adds `bytes` to the study's disk use, or refuses if that would pass the policy's bound.
    fn charge_disk(&self, study_id: &str, bytes: u64) -> Result<(), SiteRefusal> {
        // A study's leave-one-hospital-out analyses share its bound.
        let study_id = study_key(study_id);
        let max = self.config.policy.max_study_disk_bytes;
        let mut totals = self.study_disk.lock().unwrap_or_else(|p| p.into_inner());
        let used = match totals.get(study_id) {
            Some(u) => *u,
            None => *totals.entry(study_id.to_string()).or_insert(self.scan_study_disk(study_id)),
        };
        if used.saturating_add(bytes) > max {
            return Err(SiteRefusal::Precondition(format!(
                "this study has used {used} bytes of this site's disk, its policy allows {max} (policy.max_study_disk_bytes); {bytes} more would pass it"
            )));
        }
        totals.insert(study_id.to_string(), used + bytes);
        Ok(())
    }

    fn release_disk(&self, study_id: &str, bytes: u64) {
        let study_id = study_key(study_id);
        if let Some(u) = self.study_disk.lock().unwrap_or_else(|p| p.into_inner()).get_mut(study_id) {
            *u = u.saturating_sub(bytes);
        }
    }

    /// What a study holds on disk: its cached replies and the kept bytes of its tasks (found
    /// through the audit log's entries for it). Read once per study and process.
    fn scan_study_disk(&self, study_id: &str) -> u64 {
        // The study's folder and those of its leave-one-hospital-out analyses.
        let studies = self.config.work_dir.join("studies");
        let mut dirs = vec![self.study_dir(study_id)];
        dirs.extend(
            std::fs::read_dir(&studies)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| n != study_id && study_key(n) == study_id))
                .map(|e| e.path()),
        );
        let folder = |dir: &Path, name: &str| -> u64 {
            std::fs::read_dir(dir.join(name)).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
        };
        let replies: u64 = dirs.iter().map(|d| folder(d, "replies") + crate::replay::FOLDERS.iter().map(|f| folder(d, f)).sum::<u64>()).sum();
        let log = self.audit_path();
        let entries = crate::audit::verify(&log).unwrap_or_default();
        let digests: std::collections::BTreeSet<&str> =
            entries.iter().filter(|e| study_key(&e.study_id) == study_id && e.task_kept).map(|e| e.task_digest.as_str()).collect();
        let tasks: u64 = digests.iter().filter_map(|d| std::fs::metadata(crate::audit::task_file(&log, d)).ok()).map(|m| m.len()).sum();
        replies + tasks
    }

    /// Appends the audit entry of `reply` and returns the reply with `audit_head` set to the
    /// entry's hash. If the entry cannot be written the reply must not be sent: `Err` holds a
    /// `TaskFailure` naming the problem instead (itself audited if the log takes it).
    fn audit(&self, task: &Task, task_digest: &str, task_kept: bool, reply: TaskReply, outcome: &str) -> Result<TaskReply, Box<TaskReply>> {
        self.audit_counted(task, task_digest, task_kept, reply, outcome, None)
    }

    /// [`Self::audit`], recording `clear_count` as the reply's patient count: a masked reply
    /// carries its count only inside its masked words.
    fn audit_counted(
        &self,
        task: &Task,
        task_digest: &str,
        task_kept: bool,
        mut reply: TaskReply,
        outcome: &str,
        clear_count: Option<u64>,
    ) -> Result<TaskReply, Box<TaskReply>> {
        reply.audit_head.clear();
        match self.append_entry(task, task_digest, task_kept, &reply, outcome, clear_count) {
            Ok(head) => {
                reply.audit_head = head;
                Ok(reply)
            }
            Err(e) => {
                tracing::error!(error = %e, task = %task.task_id, "could not append to the audit log; the reply is not sent");
                let mut failure = TaskReply {
                    task_id: task.task_id.clone(),
                    outcome: Some(task_reply::Outcome::Failure(proto::TaskFailure { detail: format!("the audit log could not be written: {e}") })),
                    ..Default::default()
                };
                if let Ok(head) = self.append_entry(task, task_digest, task_kept, &failure, "failed", None) {
                    failure.audit_head = head;
                }
                Err(Box::new(failure))
            }
        }
    }

    /// Appends the entry of `reply` (whose `audit_head` is empty) and returns its hash. The
    /// entry's `reply_digest` is the SHA-256 of the reply encoded without its `audit_head` (the
    /// head is the entry's own hash, so it cannot be part of it); `bytes_sent` counts the head.
    fn append_entry(
        &self,
        task: &Task,
        task_digest: &str,
        task_kept: bool,
        reply: &TaskReply,
        outcome: &str,
        clear_count: Option<u64>,
    ) -> Result<String, crate::audit::AuditError> {
        let secure_sum = matches!(&reply.outcome, Some(task_reply::Outcome::Aggregate(a)) if !a.masked.is_empty());
        let (patient_count, detail) = match &reply.outcome {
            Some(task_reply::Outcome::Aggregate(a)) => (clear_count.unwrap_or(a.patient_count), String::new()),
            Some(task_reply::Outcome::Refusal(r)) => (0, r.detail.clone()),
            Some(task_reply::Outcome::Failure(f)) => (0, f.detail.clone()),
            None => (0, String::new()),
        };
        let bytes = reply.encode_to_vec();
        let bytes_sent = bytes.len() as u64 + AUDIT_HEAD_FIELD_BYTES;
        match outcome {
            "refused" => tracing::warn!(task = %task.task_id, kind = kind_name(task), %detail, "refused"),
            "failed" => tracing::error!(task = %task.task_id, kind = kind_name(task), %detail, "task failed"),
            _ => tracing::info!(task = %task.task_id, kind = kind_name(task), patients = patient_count, bytes = bytes_sent, outcome, "answered"),
        }
        let entry = AuditEntry {
            unix_millis: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            // What a coordinator chose is kept bounded: a hostile id or an echoed parameter must
            // not grow the log by megabytes per task (the task's bytes, when kept, are in full).
            study_id: bounded(&task.study_id, 200),
            task_id: bounded(&task.task_id, 200),
            kind: kind_name(task).into(),
            task_digest: task_digest.into(),
            task_kept,
            outcome: outcome.into(),
            patient_count,
            bytes_sent,
            reply_digest: sha256_hex(&bytes),
            detail: bounded(&detail, 2000),
            secure_sum,
            ..Default::default()
        };
        Ok(self.audit.lock().unwrap_or_else(|p| p.into_inner()).append(entry)?.hash)
    }

    /// The approval of the task's study, refused unless the operator approved exactly the
    /// task's plan and the task declares the plan's sites.
    fn approved_plan(&self, task: &Task) -> Result<Arc<crate::approval::Approval>, Failure> {
        use crate::approval::ApprovalError;
        let approval = self.approvals.load(&self.config.work_dir, &task.study_id).map_err(|e| match e {
            ApprovalError::NotApproved(id) => Failure::Refused(SiteRefusal::Precondition(format!(
                "study {id} is not approved at this site; its operator approves a study plan with `site-agent approve --study study.toml`"
            ))),
            ApprovalError::Io { .. } => Failure::Failed(e.to_string()),
            other => Failure::Refused(SiteRefusal::Precondition(other.to_string())),
        })?;
        if task.plan_sha256 != approval.plan_sha256 {
            return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                "the task's study plan ({}) is not the one approved at this site for study {} ({}); a changed plan needs a new approval",
                task.plan_sha256.get(..12).unwrap_or(&task.plan_sha256),
                task.study_id,
                &approval.plan_sha256[..12]
            ))));
        }
        let mut declared = task.study_sites.clone();
        declared.sort();
        declared.dedup();
        if declared != approval.plan.site_set() {
            return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                "the task declares the sites ({}), the approved plan ({})",
                declared.join(", "),
                approval.plan.site_set().join(", ")
            ))));
        }
        Ok(approval)
    }

    /// Whether this site answers the task at all: its policy's task kinds, an approved study
    /// under exactly the task's plan, and the plan's sites. Checked before the reply cache, so a
    /// withdrawn approval or a narrowed policy also stops resends of earlier answers.
    fn gate(&self, task: &Task) -> Result<Arc<crate::approval::Approval>, Failure> {
        let min_sites = self.config.policy.min_sites as usize;
        if let Some(allowed) = &self.config.policy.answers {
            let kind = kind_name(task);
            if kind != "unknown" && !allowed.iter().any(|a| a == kind) {
                return Err(Failure::Refused(SiteRefusal::Precondition(format!("this site's policy does not answer {kind} tasks"))));
            }
        }
        if task.kind.is_none() {
            return Err(Failure::Refused(SiteRefusal::InvalidParameters("task kind not understood by this agent version".into())));
        }
        let approval = self.approved_plan(task)?;
        if (approval.plan.leave_one_hospital_out || approval.held_out().is_some()) && !self.config.policy.leave_one_hospital_out {
            return Err(Failure::Refused(SiteRefusal::Precondition(
                "this site takes part in no study with leave-one-hospital-out analyses (policy.leave_one_hospital_out): the study's sums minus an analysis's would be one site's own aggregates".into(),
            )));
        }
        let held_out_here = approval.held_out() == Some(self.config.site_id.as_str());
        if !held_out_here && matches!(&task.kind, Some(task::Kind::Score(t)) if !t.attestations.is_empty()) {
            return Err(Failure::Refused(SiteRefusal::InvalidParameters(
                "a score task carries attestations only to the held-out site of a leave-one-hospital-out analysis".into(),
            )));
        }
        if approval.held_out().is_some() {
            analysis_gate(task, held_out_here)?;
        }
        let mut sites = approval.plan.site_set();
        if held_out_here {
            // The held-out site takes part in its study, not in the analysis's fits.
            sites.push(self.config.site_id.clone());
        }
        if sites.len() < min_sites || !sites.contains(&self.config.site_id) {
            return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                "this site takes part only in studies of at least {min_sites} sites including itself; the study has {} ({})",
                sites.len(),
                sites.join(", ")
            ))));
        }
        Ok(approval)
    }

    /// The held-out site's check of a score task in a leave-one-hospital-out analysis: it
    /// fitted none of the analysis's models, so it scores only models that every fitting site
    /// scored under this very task (their signatures over their answers, by the certificate
    /// keys the plan pins, [`secure_sum::verify_attestation`]), and no more distinct models than
    /// the plan fits per analysis (counted after, `ModelLedger::accept_held_out_scorers`). A coordinator that asks it to score a "model" of its own
    /// choosing (one feature column on a fine grid) needs every other site to have scored that
    /// model first, which each does only for a model in its own ledger of fitted models or
    /// within its plan-derived budget ([`crate::ledger`]): the held-out site is exposed exactly
    /// as much as the sites that fitted. Without pinned keys (a plan that does not secure-sum)
    /// it has nothing to check the signatures against and refuses, whatever its policy.
    fn verify_attestations(&self, task: &Task, plan: &fedrad_shared::plan::StudyPlan, t: &proto::ScoreTask) -> Result<(), Failure> {
        let invalid = |m: String| Failure::Refused(SiteRefusal::InvalidParameters(m));
        if t.folds != 0 {
            return Err(invalid("the held-out site scores final models, not out-of-fold ones".into()));
        }
        let settings = plan.secure_aggregation.as_ref().filter(|s| !s.site_keys.is_empty()).ok_or_else(|| {
            Failure::Refused(SiteRefusal::Precondition(
                "the held-out site checks the fitting sites' signatures against the keys the plan pins, and this plan pins none".into(),
            ))
        })?;
        let mut unattested = task.clone();
        if let Some(task::Kind::Score(s)) = &mut unattested.kind {
            s.attestations.clear();
        }
        let digest = sha256_hex(&unattested.encode_to_vec());
        let round = RoundBinding { study_id: &task.study_id, plan_sha256: &task.plan_sha256, task_id: &task.task_id, task_sha256: &digest };
        let mut attested: Vec<&str> = t.attestations.iter().map(|a| a.site_id.as_str()).collect();
        attested.sort();
        let fitting = plan.site_set();
        if attested.len() != fitting.len() || attested.iter().zip(&fitting).any(|(a, b)| a != b) {
            return Err(invalid(format!(
                "a held-out site scores a model only with the attestations of every site that fitted it ({}); this task has {}",
                fitting.join(", "),
                if attested.is_empty() { "none".to_string() } else { attested.join(", ") }
            )));
        }
        for a in &t.attestations {
            let pin = settings.site_keys.get(&a.site_id).ok_or_else(|| invalid(format!("the plan pins no key for site {}", a.site_id)))?;
            secure_sum::verify_attestation(&a.site_id, pin, &a.subject_public_key_info, round, &a.answer_sha256, &a.signature)
                .map_err(|e| invalid(format!("attestation: {e}")))?;
        }
        Ok(())
    }

    fn compute(&self, task: &Task, approval: &crate::approval::Approval, task_digest: &str, secure: Option<&VerifiedSites>) -> Result<proto::Aggregate, Failure> {
        let min = self.config.policy.min_count;
        let plan = &approval.plan;
        let Some(kind) = &task.kind else {
            return Err(Failure::Refused(SiteRefusal::InvalidParameters("task kind not understood by this agent version".into())));
        };
        crate::acceptance::accept(kind, plan, min)?;
        let records = &self.cohort.records;
        // The populations (split, folds, feature tables) are the study's, also in its
        // leave-one-hospital-out analyses; what a task pins is the task's study's (or analysis's).
        let data_id = approval.data_study();
        match &task.kind {
            Some(task::Kind::CohortSummary(_)) => Ok(cohort_summary::site_cohort_summary(records, min)?),
            Some(task::Kind::Split(s)) => {
                let quota = split::ClassQuota { negative: s.training_quota_negative, positive: s.training_quota_positive };
                let positives = records.iter().filter(|r| r.outcome).count() as u64;
                split::site_accepts(s.seed, quota, plan.seed, plan.split.training_fraction, records.len() as u64 - positives, positives)?;
                let roles = split::site_assign(records, s.seed, quota)?;
                let agg = split::site_split_aggregate(records, &roles, min)?;
                self.record_split(data_id, s, &roles)?;
                Ok(agg)
            }
            Some(task::Kind::Table1(t)) => {
                let variables = t.variables.iter().map(variable_from_proto).collect::<Result<Vec<_>, _>>()?;
                let roles = self.load_split(data_id)?;
                self.pin_table1_population(data_id)?;
                Ok(table1::site_table1(records, &roles, &variables, &self.schema, &self.cohort.excluded_counts(), min)?)
            }
            Some(task::Kind::ExtractFeatures(t)) => {
                self.tables.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| k.0 != task.study_id);
                self.extract_features(&task.study_id, t, self.publishes_per_site_results(plan))
            }
            Some(task::Kind::Folds(f)) => {
                let roles = self.load_split(data_id)?;
                let (assignment, agg) = selection::assign_folds(records, &roles, f, min)?;
                self.record_folds(data_id, f, &assignment)?;
                Ok(agg)
            }
            Some(task::Kind::FeatureMoments(t)) => selection::feature_moments(&self.training(plan, data_id, t.features.as_ref())?, &t.centre, min),
            Some(task::Kind::RankHistogram(t)) => {
                let data = self.training(plan, data_id, t.features.as_ref())?;
                self.accept_feature_standardiser(plan, &task.study_id, data_id, t.features.as_ref(), t.standardiser.as_ref(), &data.x)?;
                selection::rank_histogram(&data, t, min)
            }
            Some(task::Kind::Correlation(t)) => {
                let data = self.training(plan, data_id, t.features.as_ref())?;
                self.accept_feature_standardiser(plan, &task.study_id, data_id, t.features.as_ref(), t.standardiser.as_ref(), &data.x)?;
                selection::correlation(&data, t, min)
            }
            Some(task::Kind::LassoRound(t)) => {
                let data = self.training(plan, data_id, t.features.as_ref())?;
                self.accept_feature_standardiser(plan, &task.study_id, data_id, t.features.as_ref(), t.standardiser.as_ref(), &data.x)?;
                let folds = self.fold_count(data_id);
                let agg = selection::lasso_round(&data, t, folds, min, self.config.policy.max_parameter_ratio)?;
                let run = LassoRun { features: t.features.as_ref(), standardiser: t.standardiser.as_ref(), family: t.family, max_block_columns: t.max_block_columns };
                let step = self.recompute_lasso(task, plan, task_digest, secure, folds, &run, &t.previous, &|r| r.expect_round(&t.points))?;
                self.commit_run(&task.study_id, step)?;
                Ok(agg)
            }
            Some(task::Kind::CvLoss(t)) => {
                let data = self.training(plan, data_id, t.features.as_ref())?;
                self.accept_feature_standardiser(plan, &task.study_id, data_id, t.features.as_ref(), t.standardiser.as_ref(), &data.x)?;
                let folds = self.fold_count(data_id);
                let agg = selection::cv_loss(&data, t, folds, min, self.config.policy.max_parameter_ratio)?;
                let run = LassoRun { features: t.features.as_ref(), standardiser: t.standardiser.as_ref(), family: t.family, max_block_columns: t.max_block_columns };
                let step = self.recompute_lasso(task, plan, task_digest, secure, folds, &run, &t.previous, &|r| r.expect_cv(&t.points, t.path_length))?;
                self.commit_run(&task.study_id, step)?;
                Ok(agg)
            }
            Some(task::Kind::LogisticRound(t)) => {
                let variables = self.checked_variables(&t.variables)?;
                let roles = self.load_split(data_id)?;
                let rows: Vec<Vec<f64>> = records
                    .iter()
                    .zip(&roles)
                    .filter(|(_, r)| **r == CohortRole::Training)
                    .filter_map(|(p, _)| fedrad_shared::algorithms::logistic::design_row(p, &variables))
                    .collect();
                acceptance::clinical_models(plan, &rows, &t.models)?;
                selection::logistic_round(records, &roles, &variables, &t.models, min, self.config.policy.max_parameter_ratio)
            }
            Some(task::Kind::DesignMoments(t)) => selection::design_moments(&self.design(plan, data_id, t.design.as_ref())?, &t.centre, min),
            Some(task::Kind::ClassifierRound(t)) => {
                let data = self.standardised_design(plan, data_id, &task.study_id, t.design.as_ref(), t.standardiser.as_ref())?;
                let agg = selection::classifier_round(&data, t, min, self.config.policy.max_parameter_ratio)?;
                if t.exclude_fold > 0 {
                    let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
                    self.ledger(&task.study_id, plan).accept_searched_design(plan, t.design.as_ref())?;
                }
                let step = self.recompute_fit(task, plan, task_digest, secure, t)?;
                let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
                // Pinned once a round passed every check (a refused round pins nothing), and
                // before its answer leaves (a round with other features is then refused).
                if let Some(rff) = &t.random_features {
                    self.ledger(&task.study_id, plan).pin_random_features(t.design.as_ref(), rff)?;
                }
                self.commit_run(&task.study_id, step)?;
                self.ledger(&task.study_id, plan).record_fit(t).map_err(|e| Failure::Failed(format!("cannot record the fitted model: {e}")))?;
                Ok(agg)
            }
            Some(task::Kind::Score(t)) => {
                let held_out_here = approval.held_out() == Some(self.config.site_id.as_str());
                // Left out, the attestations first: without them nothing about this site's
                // data is consulted, not even whether the standardiser is within its bound.
                if held_out_here {
                    self.verify_attestations(task, plan, t)?;
                }
                let data = self.standardised_design(plan, data_id, &task.study_id, t.design.as_ref(), t.standardiser.as_ref())?;
                // Out-of-fold scores (folds > 0) are of training patients only.
                if t.folds == 0 {
                    self.validation_population_guard(data_id, t.design.as_ref(), &data)?;
                }
                let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
                if held_out_here {
                    self.ledger(&task.study_id, plan).accept_held_out_scorers(plan, t.design.as_ref(), t.standardiser.as_ref(), &t.scorers)?;
                } else {
                    // The sites' keys to check the fits' last answers against: the secure sum's,
                    // or those a score task read per site carries.
                    let carried =
                        if secure.is_none() && !t.fit_ends.is_empty() { self.carried_peers(plan, t.peers.as_ref(), "a score task with its fits' ends")? } else { None };
                    let verified = secure.or(carried.as_ref());
                    let fit_end = |slot: usize| self.fit_end(task, plan, task_digest, verified, t, slot);
                    // A study whose rounds this site recomputes (it pins the sites' keys, or has
                    // this site alone) scores its fitted models only as their fits ended.
                    let ends = if plan.secure_aggregation.is_some() || plan.site_set().len() == 1 {
                        crate::ledger::FitEnds::Recomputed(&fit_end)
                    } else {
                        crate::ledger::FitEnds::Unverifiable
                    };
                    self.ledger(&task.study_id, plan).accept_scorers(
                        plan,
                        &self.config.site_id,
                        t.design.as_ref(),
                        t.standardiser.as_ref(),
                        &t.scorers,
                        t.folds,
                        ends,
                    )?;
                }
                drop(_guard);
                selection::score(&data, t, min)
            }
            Some(task::Kind::ValueHistogram(t)) => {
                let agg = selection::value_histogram(&self.standardised_design(plan, data_id, &task.study_id, t.design.as_ref(), t.standardiser.as_ref())?, t, min)?;
                // The design's tree ensembles open from this task's answers (their bin edges).
                let opening = crate::replay::Opening { task_id: task.task_id.clone(), task_digest: task_digest.to_string() };
                let charge = |bytes| self.charge_disk(&task.study_id, bytes);
                crate::replay::record_opening(
                    &self.study_dir(&task.study_id),
                    &task.plan_sha256,
                    &tree_design_key(t.design.as_ref(), t.standardiser.as_ref()),
                    &opening,
                    &charge,
                )?;
                Ok(agg)
            }
            Some(task::Kind::TreeRound(t)) => {
                let data = self.standardised_design(plan, data_id, &task.study_id, t.design.as_ref(), t.standardiser.as_ref())?;
                let forest = t.objective == proto::TreeObjective::ForestCounts as i32;
                let edges: Vec<Vec<f64>> = t.edges.iter().map(|e| e.edges.clone()).collect();
                let step = self.recompute_trees(task, plan, task_digest, secure, t)?;
                // Edges are pinned by the first tree round this site answers for the design.
                let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
                let ledger = self.ledger(&task.study_id, plan);
                let pin = ledger.accept_edges(t.design.as_ref(), t.standardiser.as_ref(), forest, &edges)?;
                let agg = selection::tree_round(&data, t, min)?;
                self.commit_run(&task.study_id, step)?;
                pin.record().map_err(|e| Failure::Failed(format!("cannot record the bin edges: {e}")))?;
                Ok(agg)
            }
            Some(task::Kind::PairedScores(t)) => {
                if t.models.is_empty() || t.models.len() > 200 {
                    return Err(Failure::Refused(SiteRefusal::InvalidParameters("compare 1 to 200 models".into())));
                }
                // Round 2: the digest of the "merged" histograms sent back.
                let merged = (!t.negatives.is_empty() || !t.positives.is_empty()).then(|| {
                    let sent = proto::PairedScoresTask {
                        models: Vec::new(),
                        grid: t.grid,
                        negatives: t.negatives.clone(),
                        positives: t.positives.clone(),
                        previous: Vec::new(),
                    };
                    fedrad_shared::digest::sha256_hex(&prost::Message::encode_to_vec(&sent))
                });
                let designs = t
                    .models
                    .iter()
                    .map(|m| self.standardised_design(plan, data_id, &task.study_id, m.design.as_ref(), m.standardiser.as_ref()))
                    .collect::<Result<Vec<_>, _>>()?;
                // Each model's own validation rows (as its scores released them), and the
                // patients every compared model can score, which the comparison describes in
                // both cohorts: comparisons over subsets of models (A with B, with C, with both)
                // would otherwise give, by inclusion–exclusion, a model's scores over a cell no one
                // answer covers.
                let per_model: Vec<std::collections::BTreeSet<&str>> = designs.iter().map(|d| d.ids.iter().map(String::as_str).collect()).collect();
                let common: std::collections::BTreeSet<&str> = per_model[0].iter().copied().filter(|id| per_model.iter().all(|m| m.contains(id))).collect();
                for (m, data) in t.models.iter().zip(&designs) {
                    self.validation_population_guard(data_id, m.design.as_ref(), data)?;
                    for cohort in [CohortRole::Training, CohortRole::Validation] {
                        self.released_population_guard(data_id, m.design.as_ref(), data, &common, cohort)?;
                    }
                }
                // Round 2's "merged" histograms must be the sum of the sites' signed answers to
                // round 1, which this site checks and sums itself (`paired_auc::ComparisonReplica`).
                let step = self.recompute_comparison(task, plan, task_digest, secure, t)?;
                // Checked, answered and recorded under the lock: two second rounds of one list
                // with different merged histograms cannot both pass.
                let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
                let latch = self.study_dir(study_key(&task.study_id)).join(MERGE_LATCH);
                if merged.is_some() && latch.exists() {
                    return Err(Failure::Refused(merge_latch_refusal()));
                }
                let pin = self.ledger(&task.study_id, plan).accept_compared(&t.models, merged.as_deref())?;
                let agg = match selection::paired_scores(&designs, t, min) {
                    Err(Failure::Refused(r)) if merged.is_some() => {
                        // Whether forged merged histograms hold this site's own patients is a
                        // fact about its (secure-summed) score histograms: told once per study.
                        if let Err(io) = write_atomic(&latch, task.task_id.as_bytes()) {
                            tracing::error!(error = %io, "could not record the refused DeLong round on disk");
                            return Err(Failure::Failed(format!("cannot record a refused comparison: {io}")));
                        }
                        return Err(Failure::Refused(r));
                    }
                    other => other?,
                };
                // The run's step first: it may still refuse (the study's disk bound), and the
                // merged set is pinned only for an answer that leaves.
                self.commit_run(&task.study_id, step)?;
                pin.record().map_err(|e| Failure::Failed(format!("cannot record the comparison: {e}")))?;
                Ok(agg)
            }
            Some(task::Kind::EncoderRound(t)) => {
                // Checked before the (costly) local training.
                let encoder = (t.sequence.as_str(), t.architecture.as_ref(), &t.weights[..]);
                let step = self.recompute_encoder(task, plan, task_digest, secure, encoder, &t.previous, &|r| r.expect_round(t.round, &t.weights))?;
                let agg = self.encoder_round(&task.study_id, t, plan)?;
                self.commit_run(&task.study_id, step)?;
                Ok(agg)
            }
            Some(task::Kind::OnnxEmbed(t)) => {
                let agg = self.onnx_embed(&task.study_id, t, self.publishes_per_site_results(plan))?;
                self.tables.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| k.0 != task.study_id);
                Ok(agg)
            }
            Some(task::Kind::Embed(t)) => {
                check_weights_digest(t)?;
                // Embedding answers counts, not a secure sum: the sites' keys to check the
                // forwarded answers against come in `peers`, verified as a secure sum's are.
                let peers = self.carried_peers(plan, t.peers.as_ref(), "an embedding task")?;
                let encoder = (t.sequence.as_str(), t.architecture.as_ref(), &t.weights[..]);
                let step = self.recompute_encoder(task, plan, task_digest, peers.as_ref(), encoder, &t.previous, &|r| r.expect_final(&t.weights))?;
                let agg = self.embed(&task.study_id, t, plan)?;
                self.commit_run(&task.study_id, step)?;
                self.tables.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| k.0 != task.study_id);
                Ok(agg)
            }
            Some(task::Kind::CombatSums(t)) => {
                let part = self.combat_part(plan, &task.study_id, t.table.as_ref())?;
                part.sums(&part.y, min, self.config.policy.max_parameter_ratio)
            }
            Some(task::Kind::CombatApply(t)) => {
                let agg = self.combat_apply(plan, &task.study_id, t)?;
                self.tables.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| k.0 != task.study_id);
                Ok(agg)
            }
            None => Err(Failure::Refused(SiteRefusal::InvalidParameters("task kind not understood by this agent version".into()))),
        }
    }

    /// One feature table of a ComBat task as extracted, with its estimation rows.
    fn combat_part(&self, plan: &fedrad_shared::plan::StudyPlan, study_id: &str, table: Option<&proto::CombatTable>) -> Result<CombatPart, Failure> {
        let table = table.ok_or_else(|| Failure::Refused(SiteRefusal::InvalidParameters("the task names no feature table".into())))?;
        let settings = plan.combat.clone().ok_or_else(|| Failure::Refused(SiteRefusal::InvalidParameters("the approved plan does not harmonise with ComBat".into())))?;
        let covariates = settings.resolve(&plan.variables).map_err(|e| Failure::Refused(SiteRefusal::InvalidParameters(e)))?;
        let dir = self.study_dir(study_id);
        let (names, rows, extracted_sha256) = selection::read_part_with_digest(&dir, &table.sequence, table.deep, false)?;
        if fedrad_shared::algorithms::extraction::catalogue_sha256(&names) != table.catalogue_sha256 {
            return Err(Failure::Refused(SiteRefusal::InvalidParameters(format!("the {} feature names are not the ones the task names", table.sequence))));
        }
        let roles = self.load_split(study_id)?;
        let mut part = CombatPart {
            sequence: table.sequence.clone(),
            deep: table.deep,
            names,
            rows,
            extracted_sha256,
            settings,
            y: Vec::new(),
            x: Vec::new(),
            outcome: Vec::new(),
            estimation: BTreeMap::new(),
        };
        for (record, role) in self.cohort.records.iter().zip(&roles) {
            let Some(values) = part.rows.get(&record.patient_id) else { continue };
            if *role != CohortRole::Training {
                continue;
            }
            if let Some(x) = combat::covariate_row(record, &covariates) {
                part.y.push(values.clone());
                part.x.push(x.clone());
                part.outcome.push(record.outcome);
                part.estimation.insert(record.patient_id.clone(), x);
            }
        }
        let q = combat::covariate_columns(&covariates);
        if part.x.iter().any(|r| r.len() != q) {
            return Err(Failure::Failed("a covariate row does not have the plan's columns".into()));
        }
        self.combat_population_guard(plan, study_id, &part, &roles, &covariates)?;
        Ok(part)
    }

    /// The estimation rows of a ComBat task, with the other populations this study's answers
    /// describe, must not isolate 1 to `min_count` − 1 patients of a class
    /// ([`fedrad_shared::algorithms::isolates_few`]): otherwise sums and differences of answers
    /// describe them — ComBat's sums with the outcome protected against `feature_moments` over
    /// every training patient with the table's row, ComBat's sums of two tables whose
    /// extraction failed for one patient, or (inclusion–exclusion) answers over R, R∩C, R∩D and
    /// R∩C∩D whose pairwise differences are all large but whose cell R∖C∖D holds one patient.
    ///
    /// The other populations (training patients): all of them (Table 1, the split); those with
    /// complete clinical data (the clinical model); per existing table of the plan's sequences
    /// (radiomic, deep, radiomic+deep) those with a row, those also with complete clinical data
    /// (Model III designs) and those also with every protected covariate (ComBat); and every
    /// population an earlier ComBat answer of this study described, recorded in
    /// `harmonisation/populations.json` (a re-extraction between two ComBat rounds cannot
    /// shift the rows by one patient; extraction and embedding are refused from then on, too).
    /// Not among them: cross-validation folds (their answers are LASSO losses, not sums of
    /// covariates). Issue 17's population ledger is where every task kind's populations belong;
    /// until then this guard protects ComBat's answers only.
    ///
    /// The populations are compared, not the statistics over them, so the check is
    /// conservative: a site where 1 to `min_count` − 1 training patients of a class have
    /// clinical data but no row in a table (a failed extraction) refuses ComBat for the study —
    /// rightly so, as the clinical model's answers over them and ComBat's covariate sums
    /// without them would describe those patients.
    ///
    /// The estimation rows are recorded before any answer leaves.
    fn combat_population_guard(
        &self,
        plan: &fedrad_shared::plan::StudyPlan,
        study_id: &str,
        part: &CombatPart,
        roles: &[CohortRole],
        covariates: &[combat::Covariate],
    ) -> Result<(), Failure> {
        use std::collections::BTreeSet;
        let min = self.config.policy.min_count;
        let dir = self.study_dir(study_id);
        let training: Vec<&fedrad_shared::clinical::PatientRecord> =
            self.cohort.records.iter().zip(roles).filter(|(_, r)| **r == CohortRole::Training).map(|(p, _)| p).collect();
        let complete_covariates: BTreeSet<&str> = training.iter().filter(|p| combat::covariate_row(p, covariates).is_some()).map(|p| p.patient_id.as_str()).collect();
        // The clinical model's and Model III's rows: complete in the clinical model's variables.
        let clinical_variables = plan.clinical_variables().map_err(|e| Failure::Refused(SiteRefusal::InvalidParameters(e)))?;
        let complete_clinical: BTreeSet<&str> =
            training.iter().filter(|p| fedrad_shared::algorithms::logistic::design_row(p, &clinical_variables).is_some()).map(|p| p.patient_id.as_str()).collect();
        let all: BTreeSet<&str> = training.iter().map(|p| p.patient_id.as_str()).collect();
        // The tables are read and the population recorded under the study's lock, which the
        // deep-table writer takes too (and refuses once a population is recorded).
        let _lock = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        let owned = |ids: &BTreeSet<&str>| ids.iter().map(|id| id.to_string()).collect::<BTreeSet<String>>();
        let mut populations: Vec<BTreeSet<String>> = vec![owned(&all), owned(&complete_clinical)];
        // A table's patients with a row, and those of them in a clinical model or in ComBat.
        let with_table = |ids: BTreeSet<&str>, populations: &mut Vec<BTreeSet<String>>| {
            populations.push(ids.intersection(&complete_clinical).map(|id| id.to_string()).collect());
            populations.push(ids.intersection(&complete_covariates).map(|id| id.to_string()).collect());
            populations.push(ids.iter().map(|id| id.to_string()).collect());
        };
        let mut sequence_parts = BTreeMap::new();
        for seq in &plan.selection.sequences {
            let mut parts = Vec::new();
            for deep in [false, true] {
                let Ok((_, rows)) = selection::read_part(&dir, seq, deep, false) else { continue };
                let ids: BTreeSet<&str> = all.iter().copied().filter(|id| rows.contains_key(*id)).collect();
                with_table(ids.clone(), &mut populations);
                parts.push(ids);
            }
            if let [radiomic, deep] = &parts[..] {
                with_table(radiomic.intersection(deep).copied().collect(), &mut populations);
            }
            sequence_parts.insert(seq.as_str(), parts);
        }
        // The table of both sequences: the patients with both radiomic parts, and with all four.
        let [first, second] = fedrad_shared::algorithms::extraction::SEQUENCES;
        if plan.selection.both_sequences
            && let (Some(a), Some(b)) = (sequence_parts.get(first), sequence_parts.get(second))
        {
            if let (Some(ra), Some(rb)) = (a.first(), b.first()) {
                with_table(ra.intersection(rb).copied().collect(), &mut populations);
            }
            if let ([ra, da], [rb, db]) = (&a[..], &b[..]) {
                with_table(all.iter().copied().filter(|id| [ra, da, rb, db].iter().all(|p| p.contains(id))).collect(), &mut populations);
            }
        }
        let ledger_path = dir.join("harmonisation").join("populations.json");
        let mut recorded = read_populations(&ledger_path)?;
        let answered: Vec<BTreeSet<String>> = recorded.iter().map(|ids| ids.iter().filter(|id| all.contains(id.as_str())).cloned().collect()).collect();
        let own: BTreeSet<String> = part.estimation.keys().cloned().collect();
        let patients: Vec<(&str, bool)> = training.iter().map(|p| (p.patient_id.as_str(), p.outcome)).collect();
        if fedrad_shared::algorithms::isolates_few(&patients, &answered, &populations, &own, min) {
            // Nothing in the reason says which population or how many: repeated tasks would read it.
            return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                "ComBat's estimation rows of the {} {} features (training patients with features and every protected covariate) together with the other populations this study's answers describe would isolate fewer than this site's minimum of {min} patients of a class: differences of the answers would describe them",
                part.sequence,
                if part.deep { "deep" } else { "radiomic" },
            ))));
        }
        let own_ids: Vec<String> = own.into_iter().collect();
        if !recorded.contains(&own_ids) {
            recorded.push(own_ids);
            let failed = |e: std::io::Error| Failure::Failed(format!("cannot record ComBat's population in {}: {e}", ledger_path.display()));
            write_atomic(&ledger_path, (serde_json::to_string(&recorded).expect("json") + "\n").as_bytes()).map_err(failed)?;
        }
        Ok(())
    }

    /// Checks the coordinator's estimates, harmonises the table's rows (once per table: the
    /// estimates and the extracted table they apply to are pinned in `harmonisation/` before
    /// anything is written), and answers with the harmonised sums.
    fn combat_apply(&self, plan: &fedrad_shared::plan::StudyPlan, study_id: &str, t: &proto::CombatApplyTask) -> Result<proto::Aggregate, Failure> {
        let part = self.combat_part(plan, study_id, t.table.as_ref())?;
        let (min, ratio) = (self.config.policy.min_count, self.config.policy.max_parameter_ratio);
        // The population first (counts, classes, parameters): the estimate checks below run on
        // no fewer rows than any answer describes.
        part.sums(&part.y, min, ratio)?;
        let est = combat::CombatEstimates {
            alpha: t.alpha.clone(),
            beta: t.beta.clone(),
            var_pooled: t.var_pooled.clone(),
            covariate_mean: t.covariate_mean.clone(),
            harmonised: t.harmonised.clone(),
        };
        let (p, q) = (part.names.len(), part.x[0].len());
        combat::site_accepts_estimates(&est, &part.settings, p, q, &part.y, &part.x, plan.limits.max_scale_ratio)?;
        let dir = self.study_dir(study_id);
        let stem = format!("{}{}", part.sequence, if part.deep { ".deep" } else { "" });
        let record_path = dir.join("harmonisation").join(format!("{stem}.json"));
        let failed = |what: &str, e: std::io::Error| Failure::Failed(format!("cannot {what} the ComBat record of the {stem} features: {e}"));
        let raw_sha256 = part.extracted_sha256.clone();
        let digest = sha256_hex(&t.encode_to_vec());
        let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        match std::fs::read_to_string(&record_path) {
            Ok(text) => {
                let pinned: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| Failure::Failed(format!("{}: not a ComBat record ({e})", record_path.display())))?;
                if pinned["task_sha256"].as_str() != Some(digest.as_str()) {
                    return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                        "the {stem} features of this study are already harmonised with other ComBat estimates ({}); they cannot be changed",
                        record_path.display()
                    ))));
                }
                if pinned["extracted_sha256"].as_str() != Some(raw_sha256.as_str()) {
                    return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                        "the extracted {stem} features changed since this study harmonised them; ComBat is not applied twice"
                    ))));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed("read", e)),
        }
        let ids: Vec<&String> = part.rows.keys().collect();
        let rows: Vec<Vec<f64>> = part.rows.values().cloned().collect();
        let covariates: Vec<Option<Vec<f64>>> = ids.iter().map(|id| part.estimation.get(*id).cloned()).collect();
        let h = combat::site_harmonise(&est, &part.settings, &rows, &covariates);
        // Estimates that turn a finite value non-finite (e.g. priors from a single feature)
        // would pin a broken table.
        if rows.iter().zip(&h.rows).any(|(a, b)| a.iter().zip(b).any(|(x, y)| x.is_finite() && !y.is_finite())) {
            return Err(Failure::Refused(SiteRefusal::InvalidParameters("ComBat estimates: they make a finite feature value non-finite".into())));
        }
        let harmonised: BTreeMap<String, Vec<f64>> = ids.iter().map(|id| (*id).clone()).zip(h.rows).collect();
        // The harmonised estimation rows in the order of `part.x` (cohort order).
        let y: Vec<Vec<f64>> = self.cohort.records.iter().filter(|r| part.estimation.contains_key(&r.patient_id)).map(|r| harmonised[&r.patient_id].clone()).collect();
        let agg = part.sums(&y, min, ratio)?;
        // The pin first, then the table: a failure in between leaves the pin, never an
        // unpinned harmonised table.
        let record = serde_json::json!({
            "about": "ComBat harmonisation of this table (fedrad_shared::algorithms::combat): the estimates the coordinator sent, the extracted table they were applied to, and this site's own empirical Bayes adjustment over the harmonised features (gamma/delta hat and star). The adjustment is not sent, but the coordinator can derive it from this site's plain sums before and after",
            "sequence": part.sequence,
            "deep": part.deep,
            "task_sha256": digest,
            "extracted_sha256": raw_sha256,
            "settings": part.settings,
            "estimation_rows": part.estimation.len(),
            "estimates": est,
            "adjustment": h.adjustment,
        });
        write_atomic(&record_path, (serde_json::to_string_pretty(&record).expect("json") + "\n").as_bytes()).map_err(|e| failed("write", e))?;
        selection::write_part(&selection::part_path(&dir, &part.sequence, part.deep, true), &part.names, &harmonised)
            .map_err(|e| Failure::Failed(format!("cannot write the harmonised {stem} features: {e}")))?;
        Ok(agg)
    }

    /// Whether this site sends results about itself alone (failures per reason): the plan asks
    /// for per-site results and its policy publishes them (`policy.per_site_results`).
    fn publishes_per_site_results(&self, plan: &fedrad_shared::plan::StudyPlan) -> bool {
        plan.per_site_results && self.config.policy.per_site_results
    }

    /// Runs feature extraction over the cohort; only counts leave (per reason only where this
    /// site publishes per-site results).
    fn extract_features(&self, study_id: &str, t: &proto::ExtractFeaturesTask, by_reason: bool) -> Result<proto::Aggregate, Failure> {
        use fedrad_radiomics::settings::Settings;
        self.features_fixed_by_combat(study_id, "extracting features")?;
        let n = self.cohort.records.len() as u64;
        fedrad_shared::algorithms::require_min_count("the loaded cohort", n, self.config.policy.min_count)?;
        let settings = if t.parameters_yaml.trim().is_empty() {
            Settings::study_default()
        } else {
            Settings::from_pyradiomics_yaml(&t.parameters_yaml).map_err(|e| Failure::Refused(SiteRefusal::InvalidParameters(format!("extraction parameters: {e}"))))?
        };
        let total = 2 * self.cohort.records.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let progress = || {
            let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if k.is_multiple_of(50) || k == total {
                tracing::info!(done = k, total, "feature extraction");
            }
        };
        let outcomes = crate::features::extract_cohort(&self.cohort, &settings, &self.config.work_dir, &self.study_dir(study_id), &progress)
            .map_err(|e| Failure::Failed(format!("feature extraction: {e}")))?;
        Ok(fedrad_shared::algorithms::extraction::site_extraction_aggregate(n, &outcomes, self.config.policy.min_count, by_reason)?)
    }

    /// The encoder's crops of every loaded patient for a sequence (computed once per recipe).
    fn crops(&self, sequence: &str, arch: &Architecture) -> Arc<Vec<Result<Vec<f64>, CropError>>> {
        let key = (sequence.to_string(), format!("{} {} ", arch.crop, arch.field_mm));
        if let Some(c) = self.crops.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return c.clone();
        }
        let pairs: Vec<crate::manifest::ImagePair> = self.cohort.images.iter().map(|img| img.sequence(sequence).clone()).collect();
        let started = std::time::Instant::now();
        let crops = Arc::new(crate::deep::crop_all(&pairs, arch));
        tracing::info!(sequence, patients = pairs.len(), seconds = started.elapsed().as_secs_f64(), "encoder crops prepared");
        self.crops.lock().unwrap_or_else(|p| p.into_inner()).insert(key, crops.clone());
        crops
    }

    /// One FedAvg round on this site's training patients; weights and losses leave.
    fn encoder_round(&self, study_id: &str, t: &proto::EncoderRoundTask, plan: &fedrad_shared::plan::StudyPlan) -> Result<proto::Aggregate, Failure> {
        let (sequence, arch) = encoder_task(&t.sequence, t.architecture.as_ref(), &t.weights)?;
        let training = LocalTraining {
            epochs: t.local_epochs,
            batch_size: t.batch_size,
            learning_rate: t.learning_rate,
            momentum: t.momentum,
            proximal_mu: t.proximal_mu,
            mask_fraction: t.mask_fraction,
            seed: t.seed,
        };
        training.validate().map_err(|e| Failure::Refused(SiteRefusal::InvalidParameters(format!("encoder training: {e}"))))?;
        if t.round == 0 || t.round > 10_000 {
            return Err(Failure::Refused(SiteRefusal::InvalidParameters(format!("round {} is outside 1..=10000", t.round))));
        }
        let ledger_path = self.study_dir(study_id).join("encoder").join(&plan.sha256()[..16]).join(format!("{sequence}.json"));
        let initial = arch.initial_weights(plan.deep.local_training(plan.seed).seed);
        fedavg::site_accepts_round(read_round_record(&ledger_path)?.as_ref(), t.round, &t.weights, &initial)?;
        let roles = self.load_split(study_id)?;
        let crops = self.crops(sequence, &arch);
        let samples: Vec<Sample> = self
            .cohort
            .records
            .iter()
            .zip(roles.iter())
            .zip(crops.iter())
            .filter(|((_, role), _)| **role == CohortRole::Training)
            .filter_map(|((r, _), c)| Some(Sample { patient_id: r.patient_id.clone(), crop: c.as_ref().ok()?.clone() }))
            .collect();
        fedrad_shared::algorithms::require_min_count("the training cohort with encoder crops", samples.len() as u64, self.config.policy.min_count)?;
        let update = fedavg::site_train(&arch, &t.weights, &samples, &training, t.round);
        let agg = fedavg::site_aggregate(&update, self.config.policy.min_count)?;
        let sent = &update.weights[..];
        let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        let record = fedavg::RoundRecord { round: t.round, input: t.weights.clone(), own_change: fedavg::max_abs_difference(sent, &t.weights) };
        write_atomic(&ledger_path, &serde_json::to_vec(&record).expect("a record serialises"))
            .map_err(|e| Failure::Failed(format!("cannot record the encoder round: {e}")))?;
        Ok(agg)
    }

    /// Embeds every patient with the final weights and writes the deep-feature table; counts leave.
    fn embed(&self, study_id: &str, t: &proto::EmbedTask, plan: &fedrad_shared::plan::StudyPlan) -> Result<proto::Aggregate, Failure> {
        self.features_fixed_by_combat(study_id, "computing deep features")?;
        let (sequence, arch) = encoder_task(&t.sequence, t.architecture.as_ref(), &t.weights)?;
        let digest = check_weights_digest(t)?;
        let last = read_round_record(&self.study_dir(study_id).join("encoder").join(&plan.sha256()[..16]).join(format!("{sequence}.json")))?;
        fedavg::site_accepts_final(last.as_ref(), &t.weights, plan.deep.rounds)?;
        let crops = self.crops(sequence, &arch);
        let rows = crops.par_iter().map(|c| c.as_ref().map(|c| encoder::embed(&arch, &t.weights, c)).map_err(|e| e.reason().to_string())).collect();
        let about = serde_json::json!({"source": "encoder", "weights_sha256": digest, "architecture": arch});
        self.write_deep_table(study_id, sequence, rows, arch.embedding, about, self.publishes_per_site_results(plan))
    }

    /// Runs a study-supplied ONNX network (hash-checked) on every patient's crop and writes
    /// the deep-feature table; counts leave.
    fn onnx_embed(&self, study_id: &str, t: &proto::OnnxEmbedTask, by_reason: bool) -> Result<proto::Aggregate, Failure> {
        self.features_fixed_by_combat(study_id, "computing deep features")?;
        let invalid = |m: String| Failure::Refused(SiteRefusal::InvalidParameters(m));
        let sequence = match fedrad_shared::algorithms::extraction::table_name(&t.sequence) {
            Some((s, false)) => s,
            _ => return Err(invalid(format!("unknown sequence {:?}", t.sequence))),
        };
        let intensity = Intensity::parse(&t.intensity).ok_or_else(|| invalid(format!("intensity {:?}: use \"zscore\" or \"imagenet\"", t.intensity)))?;
        let recipe = InputRecipe { size: t.input_size as usize, channels: t.channels as usize, field_mm: t.field_mm, intensity };
        recipe.validate().map_err(|e| invalid(format!("network input: {e}")))?;
        let network = Network::load(&self.config.networks_dir(), &t.file_name, &t.sha256, &recipe).map_err(|e| match e {
            NetworkError::BadName(_) | NetworkError::HashMismatch { .. } => invalid(e.to_string()),
            other => Failure::Refused(SiteRefusal::Precondition(other.to_string())),
        })?;
        let arch = recipe.crop_architecture();
        let crops = self.crops(sequence, &arch);
        let inputs: Vec<Vec<f32>> = crops.iter().map(|c| c.as_ref().map_or_else(|_| Vec::new(), |c| recipe.input(c))).collect();
        let started = std::time::Instant::now();
        let outputs = network.run_all(&inputs);
        tracing::info!(sequence, patients = inputs.len(), seconds = started.elapsed().as_secs_f64(), network = %t.file_name, "ONNX network applied");
        let mut rows = Vec::with_capacity(crops.len());
        let mut dimension = None;
        for (c, out) in crops.iter().zip(outputs) {
            rows.push(match (c, out) {
                (Err(e), _) => Err(e.reason().to_string()),
                (Ok(_), Ok(v)) => {
                    if *dimension.get_or_insert(v.len()) != v.len() || v.iter().any(|x| !x.is_finite()) {
                        return Err(Failure::Failed(format!("network {} gave outputs of varying size or non-finite values", t.file_name)));
                    }
                    Ok(v)
                }
                (Ok(_), Err(e)) => return Err(Failure::Failed(e.to_string())),
            });
        }
        let about = serde_json::json!({"source": "onnx", "file": t.file_name, "sha256": t.sha256, "input_size": recipe.size, "channels": recipe.channels, "field_mm": recipe.field_mm, "intensity": intensity});
        self.write_deep_table(study_id, sequence, rows, dimension.unwrap_or(0), about, by_reason)
    }

    /// Writes `<sequence>.deep.csv` (the patients with an embedding) and `.deep.json` (its
    /// provenance and the failures), and returns the counts that leave the site.
    fn write_deep_table(
        &self,
        study_id: &str,
        sequence: &str,
        rows: Vec<Result<Vec<f64>, String>>,
        dimension: usize,
        mut about: serde_json::Value,
        by_reason: bool,
    ) -> Result<proto::Aggregate, Failure> {
        let n = self.cohort.records.len() as u64;
        fedrad_shared::algorithms::require_min_count("the loaded cohort", n, self.config.policy.min_count)?;
        let mut table = String::from("patient_id");
        for name in fedrad_shared::algorithms::extraction::deep_feature_names(dimension) {
            table.push(',');
            table.push_str(&name);
        }
        table.push('\n');
        let mut failed = BTreeMap::<String, u64>::new();
        let mut failures = Vec::new();
        let mut embedded = 0u64;
        for (r, row) in self.cohort.records.iter().zip(rows) {
            match row {
                Ok(values) => {
                    embedded += 1;
                    table.push_str(&r.patient_id);
                    for v in values {
                        table.push_str(&format!(",{v}"));
                    }
                    table.push('\n');
                }
                Err(reason) => {
                    failures.push(serde_json::json!({"patient_id": r.patient_id, "reason": reason}));
                    *failed.entry(reason).or_default() += 1;
                }
            }
        }
        about["embedded"] = embedded.into();
        about["failed"] = failures.into();
        let dir = self.study_dir(study_id).join("features");
        let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        // Again under the lock: a ComBat task answered while the embedding ran fixed the tables.
        self.features_fixed_by_combat(study_id, "computing deep features")?;
        let io = |e: std::io::Error| Failure::Failed(format!("cannot write the deep features: {e}"));
        write_atomic(&dir.join(format!("{sequence}.deep.csv")), table.as_bytes()).map_err(io)?;
        write_atomic(&dir.join(format!("{sequence}.deep.json")), (serde_json::to_string_pretty(&about).expect("json") + "\n").as_bytes()).map_err(io)?;
        let b = fedrad_shared::aggregate::AggregateBuilder::new(n).scalar("embedded", embedded as f64);
        Ok(fedrad_shared::algorithms::extraction::with_failures(b, "", &fedrad_shared::algorithms::encoder::CROP_FAILURE_REASONS, &failed, by_reason)
            .scalar("dimension", dimension as f64)
            .build())
    }

    /// The split is fixed once per study: recorded locally (never sent) so the site can
    /// audit and reproduce every later aggregate, and refused if a task tries to change it.
    fn record_split(&self, study_id: &str, s: &proto::SplitTask, roles: &[CohortRole]) -> Result<(), Failure> {
        let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.study_dir(study_id);
        let params = format!("seed={} quota_negative={} quota_positive={}", s.seed, s.training_quota_negative, s.training_quota_positive);
        let params_path = dir.join("split.params");
        if let Ok(existing) = std::fs::read_to_string(&params_path)
            && existing.trim() != params
        {
            return Err(Failure::Refused(SiteRefusal::Precondition(format!("this study's split is already fixed ({}); it cannot be changed", existing.trim()))));
        }
        let mut rows: Vec<(String, CohortRole)> = self.cohort.records.iter().map(|r| r.patient_id.clone()).zip(roles.iter().copied()).collect();
        rows.sort();
        let mut csv = String::from("patient_id,cohort\n");
        for (id, role) in rows {
            csv.push_str(&format!("{id},{}\n", role.as_str()));
        }
        write_atomic(&dir.join("split.csv"), csv.as_bytes()).map_err(|e| Failure::Failed(format!("cannot record the split: {e}")))?;
        write_atomic(&params_path, params.as_bytes()).map_err(|e| Failure::Failed(format!("cannot record the split: {e}")))?;
        Ok(())
    }

    /// A feature table of the study: ComBat's harmonised values when the plan harmonises.
    fn table(&self, plan: &fedrad_shared::plan::StudyPlan, study_id: &str, sequence: &str) -> Result<Arc<FeatureTable>, Failure> {
        let key = (study_id.to_string(), sequence.to_string());
        if let Some(t) = self.tables.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(t.clone());
        }
        let t = Arc::new(selection::load_table(&self.study_dir(study_id), sequence, plan.combat.is_some())?);
        self.tables.lock().unwrap_or_else(|p| p.into_inner()).insert(key, t.clone());
        Ok(t)
    }

    /// The training patients a feature table has rows for, in the cohort's order.
    fn training_with_rows<'a>(&'a self, table: &FeatureTable, roles: &[CohortRole]) -> Vec<&'a str> {
        self.cohort
            .records
            .iter()
            .zip(roles)
            .filter(|(p, r)| **r == CohortRole::Training && table.rows.contains_key(&p.patient_id))
            .map(|(p, _)| p.patient_id.as_str())
            .collect()
    }

    /// The study's training patients with features for the task's sequence and columns.
    fn training(&self, plan: &fedrad_shared::plan::StudyPlan, study_id: &str, columns: Option<&proto::FeatureColumns>) -> Result<TrainingData, Failure> {
        let columns = columns.ok_or_else(|| Failure::Refused(SiteRefusal::InvalidParameters("the task names no features".into())))?;
        let table = self.table(plan, study_id, &columns.sequence)?;
        let roles = self.load_split(study_id)?;
        let own = self.training_with_rows(&table, &roles).into_iter().map(str::to_string).collect();
        self.feature_population_guard(study_id, &columns.sequence, &roles, CohortRole::Training, own, Vec::new())?;
        let folds = self.load_folds(study_id);
        selection::training_data(&table, columns, &self.cohort.records, &roles, &folds)
    }

    /// The training patients of a feature-table task (standardisation moments, rank
    /// histograms, correlation, LASSO and CV rounds) must not, with the other populations the
    /// same sequence's features are answered over, isolate 1 to `min_count` − 1 patients of a
    /// class ([`fedrad_shared::algorithms::isolates_few`]). Attack: `feature_moments` over
    /// `t2` and over `t2+deep` differ by the patients whose deep features could not be
    /// computed; with one such patient the difference is that patient's radiomic row and
    /// outcome. Compared: the sequence's radiomic rows, deep rows and both (training
    /// patients), ComBat's estimation rows, and every population such a task of this study
    /// answered before (`ledger/populations/<sequence>.json`, recorded before the answer
    /// leaves; a population recorded once is answered again without the comparison).
    /// Only the sequence's own feature populations are compared: their answers carry its
    /// features, where clinical answers (all training patients, complete clinical data) do
    /// not. Model designs with features (`design_moments`, classifier, tree and score rounds)
    /// go through the same check with their training rows, and with the clinical model's rows
    /// when they have clinical columns. Cross-validation folds are not among the populations.
    /// The table of both sequences (`t1c+t2`) is checked against, and recorded in, the ledger
    /// of each sequence: its patients are those with both sequences' features, so `t1c`
    /// against `t1c+t2` would otherwise describe the patients whose T2WI features failed.
    ///
    /// `cohort` is the cohort `own` is drawn from. Model designs are checked for their
    /// validation rows too (`ledger/populations/<sequence>.validation.json`): score tasks
    /// release both cohorts, so scoring a one-column model fitted on `t1c` and the same column
    /// of `t1c+t2` (or of `t2+deep` against `t2`, or with and without clinical columns) would
    /// otherwise give, in the difference of the released sums, the value and class of a
    /// validation patient one table lacks.
    fn feature_population_guard(
        &self,
        study_id: &str,
        table: &str,
        roles: &[CohortRole],
        cohort: CohortRole,
        own: std::collections::BTreeSet<String>,
        extra: Vec<std::collections::BTreeSet<String>>,
    ) -> Result<(), Failure> {
        use std::collections::BTreeSet;
        let Some(name) = fedrad_shared::algorithms::extraction::parse_table(table) else {
            return Err(Failure::Refused(SiteRefusal::InvalidParameters(format!("unknown feature table {table:?}"))));
        };
        let dir = self.study_dir(study_id);
        let _lock = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        let min = self.config.policy.min_count;
        let patients: Vec<(&str, bool)> = self.cohort.records.iter().zip(roles).filter(|(_, r)| **r == cohort).map(|(p, _)| (p.patient_id.as_str(), p.outcome)).collect();
        let all: BTreeSet<&str> = patients.iter().map(|p| p.0).collect();
        let own_ids: Vec<String> = own.iter().cloned().collect();
        // ComBat estimates from training patients only.
        let harmonised: Vec<BTreeSet<String>> = if cohort == CohortRole::Training {
            read_populations(&dir.join("harmonisation").join("populations.json"))?
                .into_iter()
                .map(|ids| ids.into_iter().filter(|id| all.contains(id.as_str())).collect())
                .collect()
        } else {
            Vec::new()
        };
        let ledger_name = |sequence: &str| match cohort {
            CohortRole::Training => format!("{sequence}.json"),
            CohortRole::Validation => format!("{sequence}.validation.json"),
        };
        // The table of both sequences describes each sequence's features: its population is
        // compared with, and recorded among, each sequence's (all checked before any is recorded).
        let mut to_record = Vec::new();
        for sequence in name.sequences {
            let ledger_path = dir.join("ledger").join("populations").join(ledger_name(sequence));
            let mut recorded = read_populations(&ledger_path)?;
            if recorded.contains(&own_ids) {
                continue;
            }
            let mut others: Vec<BTreeSet<String>> = Vec::new();
            let mut parts = Vec::new();
            for deep in [false, true] {
                let Ok((_, rows)) = selection::read_part(&dir, sequence, deep, false) else { continue };
                let ids: BTreeSet<String> = all.iter().filter(|id| rows.contains_key(**id)).map(|id| id.to_string()).collect();
                others.push(ids.clone());
                parts.push(ids);
            }
            if let [radiomic, deep] = &parts[..] {
                others.push(radiomic.intersection(deep).cloned().collect());
            }
            others.extend(extra.iter().cloned());
            others.extend(harmonised.iter().cloned());
            let answered: Vec<BTreeSet<String>> = recorded.iter().map(|ids| ids.iter().filter(|id| all.contains(id.as_str())).cloned().collect()).collect();
            if fedrad_shared::algorithms::isolates_few(&patients, &answered, &others, &own, min) {
                // Nothing in the reason says which population or how many: repeated tasks would read it.
                return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                    "the {} patients with {table} features, with the other populations this study's answers about {sequence} features describe, would isolate fewer than this site's minimum of {min} patients of a class (e.g. patients whose deep features, or whose other sequence's features, could not be computed): differences of the answers would describe them",
                    cohort.as_str()
                ))));
            }
            recorded.push(own_ids.clone());
            to_record.push((ledger_path, recorded));
        }
        for (ledger_path, recorded) in to_record {
            write_atomic(&ledger_path, (serde_json::to_string(&recorded).expect("json") + "\n").as_bytes())
                .map_err(|e| Failure::Failed(format!("cannot record a population in {}: {e}", ledger_path.display())))?;
        }
        Ok(())
    }

    /// Clinical variables of a task, refused unless they match this site's table.
    fn checked_variables(&self, raw: &[proto::ClinicalVariable]) -> Result<Vec<VariableSpec>, Failure> {
        let variables = raw.iter().map(variable_from_proto).collect::<Result<Vec<_>, _>>()?;
        for v in &variables {
            let same = |s: &VariableSpec| {
                s.name == v.name
                    && match (&s.kind, &v.kind) {
                        (VariableKind::Categorical { levels: a }, VariableKind::Categorical { levels: b }) => a == b,
                        (VariableKind::Continuous { .. }, VariableKind::Continuous { .. }) => true,
                        _ => false,
                    }
            };
            if !self.schema.iter().any(same) {
                return Err(Failure::Refused(SiteRefusal::InvalidParameters(format!("variable `{}` is not in this site's clinical table as described", v.name))));
            }
        }
        Ok(variables)
    }

    /// The design rows of a model task.
    fn design(&self, plan: &fedrad_shared::plan::StudyPlan, study_id: &str, design: Option<&proto::ModelDesign>) -> Result<selection::DesignData, Failure> {
        let design = design.ok_or_else(|| Failure::Refused(SiteRefusal::InvalidParameters("the task has no model design".into())))?;
        // Every model an approved plan fits (Models I–III) has feature columns; the clinical
        // model has rounds of its own (`logistic_round`). A design of clinical columns alone
        // would be a population no feature table's checks see: two of them over different
        // variables differ by the patients missing one variable, and their score answers by
        // those patients' scores (issue 17, found by a red-team review).
        if design.features.as_ref().is_none_or(|f| f.columns.is_empty()) {
            return Err(Failure::Refused(SiteRefusal::InvalidParameters(
                "a model design without feature columns: the approved plan fits none (its clinical model has rounds of its own)".into(),
            )));
        }
        let table = match &design.features {
            Some(f) => Some(self.table(plan, study_id, &f.sequence)?),
            None => None,
        };
        let variables = self.checked_variables(&design.variables)?;
        let roles = self.load_split(study_id)?;
        let mut data = selection::design_data(table.as_deref(), design, &variables, &self.cohort.records, &roles)?;
        // A design with features: its training rows are one more population of the sequence's
        // features (Model III's: those with complete clinical data), compared as the feature
        // tables' are, beside the clinical model's rows when it has clinical columns.
        if design.features.is_some() {
            let own = data.ids.iter().zip(&data.role).filter(|(_, r)| **r == CohortRole::Training).map(|(id, _)| id.clone()).collect();
            self.design_population_guard(study_id, design, own, &roles, &variables, CohortRole::Training)?;
        }
        let folds = self.load_folds(study_id);
        if !folds.is_empty() {
            data.folds = self.fold_count(study_id);
            for (id, f) in data.ids.iter().zip(data.fold.iter_mut()) {
                *f = folds.get(id).copied().unwrap_or(0);
            }
        }
        Ok(data)
    }

    /// One cohort's rows of a design with features against the populations the study's
    /// answers about its sequences describe (see [`Self::feature_population_guard`]; with the
    /// clinical model's rows of that cohort when it has clinical columns).
    fn design_population_guard(
        &self,
        data_id: &str,
        design: &proto::ModelDesign,
        own: std::collections::BTreeSet<String>,
        roles: &[CohortRole],
        variables: &[VariableSpec],
        cohort: CohortRole,
    ) -> Result<(), Failure> {
        let Some(f) = &design.features else { return Ok(()) };
        let mut extra = Vec::new();
        if !design.clinical_columns.is_empty() {
            extra.push(
                self.cohort
                    .records
                    .iter()
                    .zip(roles)
                    .filter(|(p, r)| **r == cohort && fedrad_shared::algorithms::logistic::design_row(p, variables).is_some())
                    .map(|(p, _)| p.patient_id.clone())
                    .collect(),
            );
        }
        self.feature_population_guard(data_id, &f.sequence, roles, cohort, own, extra)
    }

    /// Before scores of the validation cohort leave (a `score` task of the fitted models, a
    /// DeLong comparison), the design's validation rows are checked as its training rows are
    /// (see [`Self::feature_population_guard`]). A validation cohort with fewer than
    /// `min_count` patients of a class is left to the score answers themselves, which refuse
    /// it (`site_score_summary`): its population is never released, and checking it would
    /// refuse the study's other tasks at a small hospital.
    fn validation_population_guard(&self, data_id: &str, design: Option<&proto::ModelDesign>, data: &selection::DesignData) -> Result<(), Failure> {
        let ids: std::collections::BTreeSet<&str> = data.ids.iter().map(String::as_str).collect();
        self.released_population_guard(data_id, design, data, &ids, CohortRole::Validation)
    }

    /// The rows of `cohort` among `released` (patients of the design's data) against the
    /// populations answered about the design's sequences; skipped when a class has fewer than
    /// `min_count` of them, which the answers releasing them refuse themselves.
    fn released_population_guard(
        &self,
        data_id: &str,
        design: Option<&proto::ModelDesign>,
        data: &selection::DesignData,
        released: &std::collections::BTreeSet<&str>,
        cohort: CohortRole,
    ) -> Result<(), Failure> {
        let Some(design) = design.filter(|d| d.features.is_some()) else { return Ok(()) };
        let rows: Vec<usize> = (0..data.ids.len()).filter(|&i| data.role[i] == cohort && released.contains(data.ids[i].as_str())).collect();
        let min = self.config.policy.min_count;
        for class in [false, true] {
            if (rows.iter().filter(|&&i| data.outcome[i] == class).count() as u64) < min {
                return Ok(());
            }
        }
        let own = rows.iter().map(|&i| data.ids[i].clone()).collect();
        let variables = self.checked_variables(&design.variables)?;
        let roles = self.load_split(data_id)?;
        self.design_population_guard(data_id, design, own, &roles, &variables, cohort)
    }

    /// The design rows of a model task whose standardiser this site accepts (no finer than its
    /// own spread of the training rows, see [`acceptance::standardiser`]).
    fn standardised_design(
        &self,
        plan: &fedrad_shared::plan::StudyPlan,
        data_id: &str,
        study_id: &str,
        design: Option<&proto::ModelDesign>,
        std: Option<&proto::Standardiser>,
    ) -> Result<selection::DesignData, Failure> {
        let data = self.design(plan, data_id, design)?;
        let training: Vec<Vec<f64>> = data.rows.iter().zip(&data.role).filter(|(_, r)| **r == CohortRole::Training).map(|(x, _)| x.clone()).collect();
        let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        let ledger = self.ledger(study_id, plan);
        // The pin first: a pinned design's standardiser passed the bound when it was pinned,
        // and another one is refused alike whether it is within the bound or not.
        if ledger.design_standardiser_pinned(design, std)?.is_none() {
            self.bound_within_budget(study_id, || acceptance::standardiser(plan, std, &training, data.width()))?;
            ledger.pin_design_standardiser(design, std)?;
        }
        Ok(data)
    }

    /// A feature task's standardiser: no finer than this site's spread, and each column's the
    /// same as at its first use over the same patients, under any table's name
    /// ([`crate::ledger::ModelLedger::pin_feature_standardiser`]).
    fn accept_feature_standardiser(
        &self,
        plan: &fedrad_shared::plan::StudyPlan,
        study_id: &str,
        data_id: &str,
        features: Option<&proto::FeatureColumns>,
        std: Option<&proto::Standardiser>,
        rows: &[Vec<f64>],
    ) -> Result<(), Failure> {
        let Some(f) = features else { return Ok(()) };
        let pins = self.column_pins(plan, data_id, f)?;
        let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        let ledger = self.ledger(study_id, plan);
        // The pins first (see `standardised_design`).
        if let Some(s) = std
            && ledger.feature_standardiser_pinned(&pins, s)?.is_some()
        {
            return Ok(());
        }
        self.bound_within_budget(study_id, || acceptance::standardiser(plan, std, rows, f.columns.len()))?;
        Ok(ledger.pin_feature_standardiser(&pins, std)?)
    }

    /// A feature task's columns as the standardiser pins key them
    /// ([`crate::ledger::FeatureColumnPins`]): each column's name independent of the table
    /// and the training patients the table has rows for.
    fn column_pins(&self, plan: &fedrad_shared::plan::StudyPlan, data_id: &str, f: &proto::FeatureColumns) -> Result<crate::ledger::FeatureColumnPins, Failure> {
        let table = self.table(plan, data_id, &f.sequence)?;
        let roles = self.load_split(data_id)?;
        let population = &crate::audit::sha256_hex(self.training_with_rows(&table, &roles).join("\n").as_bytes())[..32];
        let keys = f
            .columns
            .iter()
            .map(|&c| {
                let name = table.names.get(c as usize).ok_or_else(|| Failure::Refused(SiteRefusal::InvalidParameters("columns outside the feature table".into())))?;
                let column = fedrad_shared::algorithms::extraction::canonical_column(&f.sequence, name)
                    .ok_or_else(|| Failure::Refused(SiteRefusal::InvalidParameters(format!("unknown feature table {:?}", f.sequence))))?;
                Ok(format!("{column}@{population}"))
            })
            .collect::<Result<_, Failure>>()?;
        Ok(crate::ledger::FeatureColumnPins { table: f.sequence.clone(), columns: f.columns.clone(), keys })
    }

    fn ledger(&self, study_id: &str, plan: &fedrad_shared::plan::StudyPlan) -> crate::ledger::ModelLedger {
        crate::ledger::ModelLedger::new(&self.study_dir(study_id), &plan.sha256())
    }

    /// Checks `run_task` against its run in `runs` ([`crate::replay`]): who asks (this
    /// site, the task), the pins the task's secure sum verified, its study's disk and reply
    /// cache.
    fn accept_run<'a, R: crate::replay::Replay>(
        &self,
        runs: &'a crate::replay::Runs<R>,
        task: &Task,
        task_digest: &str,
        secure: Option<&VerifiedSites>,
        plan_sites: &[String],
        run_task: crate::replay::RunTask<R>,
    ) -> Result<crate::replay::RunStep<'a, R>, Failure> {
        let study_dir = self.study_dir(&task.study_id);
        let round = crate::replay::Round {
            site_id: &self.config.site_id,
            study_id: &task.study_id,
            plan_sha256: &task.plan_sha256,
            task_id: &task.task_id,
            task_digest,
            plan_sites,
            verified: secure,
            study_dir: &study_dir,
        };
        runs.check(&round, run_task, self.config.policy.unverified_rounds, |task_id| self.cached_answer(&task.study_id, task_id))
    }

    /// Records a run's step ([`crate::replay::RunStep::commit`]) on the study's disk use: called
    /// once the task passed every other check, just before its answer leaves.
    fn commit_run<R>(&self, study_id: &str, step: crate::replay::RunStep<R>) -> Result<(), Failure> {
        step.commit(&StudyDisk { engine: self, study_id })
    }

    /// Accepts a LASSO task only as the next task of its run (one per feature table),
    /// recomputed from the sites' signed answers ([`crate::replay`]).
    #[allow(clippy::too_many_arguments)]
    fn recompute_lasso(
        &self,
        task: &Task,
        plan: &fedrad_shared::plan::StudyPlan,
        task_digest: &str,
        secure: Option<&VerifiedSites>,
        folds: u32,
        run: &LassoRun,
        previous: &[proto::SignedAnswer],
        expect: &dyn Fn(&LassoReplica) -> Result<(), SiteRefusal>,
    ) -> Result<crate::replay::RunStep<'_, LassoReplica>, Failure> {
        let features = run.features.ok_or_else(|| Failure::Refused(SiteRefusal::InvalidParameters("LASSO task without its feature columns".into())))?;
        let p = features.columns.len();
        let max_block = run.max_block_columns.map_or(usize::MAX, |c| c as usize);
        let settings = fedrad_shared::algorithms::lasso::LassoSettings { folds, ..plan.selection.lasso.clone() };
        let key = crate::replay::key_of(&[
            &features.encode_to_vec(),
            &run.standardiser.map(|s| s.encode_to_vec()).unwrap_or_default(),
            &run.family.to_le_bytes(),
            &run.max_block_columns.map_or(u64::MAX, u64::from).to_le_bytes(),
        ]);
        let plan_sites = plan.site_set();
        let fresh = || LassoReplica::new(settings.clone(), p, max_block);
        let run_task = crate::replay::RunTask { slot: features.sequence.clone(), key, participants: plan_sites.clone(), fresh: &fresh, expect, previous, opening: None };
        self.accept_run(&self.lasso_runs, task, task_digest, secure, &plan_sites, run_task)
    }

    /// Accepts a classifier round only as the next round of its fit, recomputed from the
    /// sites' signed answers ([`crate::replay`]): a logistic or squared-hinge fit from zero
    /// with one of the plan's penalties, an SVM's Platt fit after it on its result; a
    /// site-alone baseline only as a logistic fit over all this site's training patients.
    fn recompute_fit(
        &self,
        task: &Task,
        plan: &fedrad_shared::plan::StudyPlan,
        task_digest: &str,
        secure: Option<&VerifiedSites>,
        t: &proto::ClassifierRoundTask,
    ) -> Result<crate::replay::RunStep<'_, fedrad_shared::algorithms::classifiers::FitReplica>, Failure> {
        use fedrad_shared::algorithms::classifiers::{FitReplica, SITE_ALONE_C};
        use proto::ClassifierObjective as O;
        let invalid = |m: String| Failure::Refused(SiteRefusal::InvalidParameters(m));
        let objective = O::try_from(t.objective).map_err(|_| invalid("unknown classifier objective".into()))?;
        let m = &plan.models;
        let logistic = objective == O::Logistic;
        let mut allowed: Vec<f64> = if logistic { vec![m.logistic.c] } else { vec![m.linear_svm.c, m.rbf_svm.c] };
        if m.search.enabled {
            allowed.extend(&m.search.c);
        }
        if t.site_alone {
            if !fedrad_shared::plan::runs_site_alone_baselines(plan) {
                return Err(invalid(
                    "a site-alone baseline's round, but the approved plan runs none (a study that secure-sums runs them only with secure_aggregation.site_alone_baselines; an analysis never)".into(),
                ));
            }
            if !logistic || t.exclude_fold != 0 || t.penalty != SITE_ALONE_C {
                return Err(invalid(format!("a site-alone baseline is a logistic fit with C = {SITE_ALONE_C} over all this site's training patients")));
            }
        } else if !allowed.contains(&t.penalty) {
            return Err(invalid(format!("classifier fit with C = {}: not one of the plan's ({allowed:?})", t.penalty)));
        }
        // The fit's size: the SVM's for Platt rounds.
        let q = if objective == O::Platt { t.svm.len() } else { t.parameters.len() };
        let key = fit_run_key(t.design.as_ref(), t.standardiser.as_ref(), logistic, t.random_features.as_ref(), t.exclude_fold, t.penalty, t.site_alone, q);
        let plan_sites = plan.site_set();
        let participants = if t.site_alone { vec![self.config.site_id.clone()] } else { plan_sites.clone() };
        let c = t.penalty;
        let fresh = || if logistic { FitReplica::logistic(c, q) } else { FitReplica::svm(c, q) };
        let expect = |r: &FitReplica| r.expect(objective, &t.parameters, &t.svm);
        let run_task = crate::replay::RunTask { slot: key.clone(), key, participants, fresh: &fresh, expect: &expect, previous: &t.previous, opening: None };
        self.accept_run(&self.classifier_fits, task, task_digest, secure, &plan_sites, run_task)
    }

    /// Accepts a tree round only as the next round of its ensemble, grown again from the
    /// sites' signed answers ([`crate::replay`], `trees::TreeReplica`): the plan's forest or
    /// boosting settings with a leaf size no smaller than the plan's and this site's
    /// `min_count`; the bin edges from the sum of the answers to the design's value counts;
    /// one ensemble per design, standardiser and objective.
    fn recompute_trees(
        &self,
        task: &Task,
        plan: &fedrad_shared::plan::StudyPlan,
        task_digest: &str,
        secure: Option<&VerifiedSites>,
        t: &proto::TreeRoundTask,
    ) -> Result<crate::replay::RunStep<'_, fedrad_shared::algorithms::trees::TreeReplica>, Failure> {
        use fedrad_shared::algorithms::trees::{self, EnsembleSettings, NodeRequest, TreeReplica};
        let invalid = |m: String| Failure::Refused(SiteRefusal::InvalidParameters(m));
        let width = crate::acceptance::design_width(t.design.as_ref());
        let m = &plan.models;
        let forest = t.objective == proto::TreeObjective::ForestCounts as i32;
        let planned_leaf = if forest { m.forest.min_leaf } else { m.boosting.min_leaf };
        let floor = planned_leaf.max(self.config.policy.min_count);
        if t.min_leaf < floor {
            return Err(invalid(format!("trees with leaves of {} patients; the plan's and this site's smallest is {floor}", t.min_leaf)));
        }
        let settings = if forest {
            EnsembleSettings::Forest(trees::ForestSettings { min_leaf: t.min_leaf, ..m.forest.clone() })
        } else {
            EnsembleSettings::Boosting(trees::BoostingSettings { min_leaf: t.min_leaf, ..m.boosting.clone() })
        };
        let design = tree_design_key(t.design.as_ref(), t.standardiser.as_ref());
        let (slot, key) = tree_run_ids(&design, t.objective, t.min_leaf, t.base_margin, t.seed);
        let growing = trees::read_trees(&t.growing, &mut 0, width)?;
        let ensemble = if t.ensemble.is_empty() { Vec::new() } else { trees::read_trees(&t.ensemble, &mut 0, width)? };
        let edges: Vec<Vec<f64>> = t.edges.iter().map(|e| e.edges.clone()).collect();
        let nodes: Vec<NodeRequest> = t.nodes.iter().map(|r| NodeRequest { tree: r.tree, node: r.node, columns: r.columns.clone() }).collect();
        // An ensemble's first round: nothing grown or finished yet. It carries the answers to
        // the design's value counts, which this site must have answered.
        let bare = |tree: &trees::Tree| tree.nodes.len() == 1 && tree.nodes[0].column.is_none() && tree.nodes[0].value == 0.0;
        let opening = if ensemble.is_empty() && growing.iter().all(bare) {
            let study_dir = self.study_dir(&task.study_id);
            Some(crate::replay::opening_of(&study_dir, &task.plan_sha256, &design).ok_or_else(|| {
                Failure::Refused(SiteRefusal::Precondition(
                    "a tree ensemble's first round, but this site has answered no value counts of its design to place the bin edges".into(),
                ))
            })?)
        } else {
            None
        };
        let plan_sites = plan.site_set();
        let fresh = || TreeReplica::new(settings.clone(), width);
        let expect = |r: &TreeReplica| r.expect(&edges, &ensemble, &growing, &nodes);
        let run_task = crate::replay::RunTask { slot, key, participants: plan_sites.clone(), fresh: &fresh, expect: &expect, previous: &t.previous, opening };
        self.accept_run(&self.tree_runs, task, task_digest, secure, &plan_sites, run_task)
    }

    /// Whether the task carries the end of the fit of the model at `slot` (`Ok(false)`: it
    /// does not), and if so whether the model is exactly what that fit reached
    /// ([`crate::ledger::FitEnds`]): the run of its design and standardiser (a tree ensemble's
    /// of its objective, with the leaf size the end names and, for boosting, the scorer's base
    /// margin; a Newton fit's of its family, random features and penalty, over all training
    /// patients) after the sum of every site's signed answer to its last round.
    fn fit_end(
        &self,
        task: &Task,
        plan: &fedrad_shared::plan::StudyPlan,
        task_digest: &str,
        verified: Option<&VerifiedSites>,
        t: &proto::ScoreTask,
        slot: usize,
    ) -> Result<bool, SiteRefusal> {
        use fedrad_shared::algorithms::classifiers::{FitReplica, Scorer};
        use fedrad_shared::algorithms::trees::{self, EnsembleSettings, TreeReplica};
        let Some(end) = t.fit_ends.iter().find(|e| e.scorer as usize == slot) else { return Ok(false) };
        let invalid = |m: String| SiteRefusal::InvalidParameters(m);
        let plan_sites = plan.site_set();
        if verified.is_none() && plan_sites.len() > 1 {
            return Err(invalid("the task carries no site keys to check its fits' last answers against".into()));
        }
        let width = crate::acceptance::design_width(t.design.as_ref());
        let spec = &t.scorers[slot];
        let study_dir = self.study_dir(&task.study_id);
        let round = crate::replay::Round {
            site_id: &self.config.site_id,
            study_id: &task.study_id,
            plan_sha256: &task.plan_sha256,
            task_id: &task.task_id,
            task_digest,
            plan_sites: &plan_sites,
            verified,
            study_dir: &study_dir,
        };
        let own_answer = |task_id: &str| self.cached_answer(&task.study_id, task_id);
        let m = &plan.models;
        let checked = match Scorer::from_proto(spec, width)? {
            scorer @ (Scorer::Forest { .. } | Scorer::Boosted { .. }) => {
                let (objective, base_margin, scored) = match scorer {
                    Scorer::Forest { trees, .. } => (proto::TreeObjective::ForestCounts, 0.0, trees),
                    Scorer::Boosted { base_margin, trees, .. } => (proto::TreeObjective::BoostingGradients, base_margin, trees),
                    _ => unreachable!("matched above"),
                };
                let (settings, seed) = if objective == proto::TreeObjective::ForestCounts {
                    (EnsembleSettings::Forest(trees::ForestSettings { min_leaf: end.min_leaf, ..m.forest.clone() }), m.forest.seed)
                } else {
                    (EnsembleSettings::Boosting(trees::BoostingSettings { min_leaf: end.min_leaf, ..m.boosting.clone() }), 0)
                };
                // The run's slot and key as its tree rounds made them (`recompute_trees`).
                let design = tree_design_key(t.design.as_ref(), t.standardiser.as_ref());
                let (run_slot, key) = tree_run_ids(&design, objective as i32, end.min_leaf, base_margin, seed);
                let fresh = || TreeReplica::new(settings.clone(), width);
                let expect = |r: &TreeReplica| r.expect_grown(&scored);
                let run = crate::replay::RunTask {
                    slot: run_slot,
                    key,
                    participants: plan_sites.clone(),
                    fresh: &fresh,
                    expect: &expect,
                    previous: &end.previous,
                    opening: None,
                };
                self.tree_runs.check_end(&round, run, own_answer)
            }
            Scorer::NaiveBayes { .. } => return Err(invalid(format!("scorer {slot} is naive Bayes, which has no fitting rounds to end"))),
            scorer => {
                let (model, platt): (Vec<f64>, Option<[f64; 2]>) = match scorer {
                    Scorer::Logistic { intercept, coefficients } => ([vec![intercept], coefficients].concat(), None),
                    Scorer::LinearSvm { intercept, coefficients, platt_a, platt_b } | Scorer::RbfSvm { intercept, coefficients, platt_a, platt_b, .. } => {
                        ([vec![intercept], coefficients].concat(), Some([platt_a, platt_b]))
                    }
                    _ => unreachable!("trees and naive Bayes matched above"),
                };
                // The fit's key as its classifier rounds made it (`recompute_fit`): all
                // training patients (no fold left out), not a site-alone baseline.
                let (q, c, logistic) = (model.len(), end.penalty, platt.is_none());
                let key = fit_run_key(t.design.as_ref(), t.standardiser.as_ref(), logistic, spec.random_features.as_ref(), 0, c, false, q);
                let fresh = || if logistic { FitReplica::logistic(c, q) } else { FitReplica::svm(c, q) };
                let expect = |r: &FitReplica| r.expect_fitted(&model, platt);
                let run = crate::replay::RunTask {
                    slot: key.clone(),
                    key,
                    participants: plan_sites.clone(),
                    fresh: &fresh,
                    expect: &expect,
                    previous: &end.previous,
                    opening: None,
                };
                self.classifier_fits.check_end(&round, run, own_answer)
            }
        };
        match checked {
            Ok(()) => Ok(true),
            Err(Failure::Refused(r)) => Err(r),
            Err(Failure::Failed(m)) => Err(SiteRefusal::Precondition(m)),
        }
    }

    /// Accepts a comparison's first round, and its second only with "merged" histograms that
    /// are exactly the sum of every site's signed answer to the first ([`crate::replay`],
    /// `paired_auc::ComparisonReplica`). One run per list of compared models.
    fn recompute_comparison(
        &self,
        task: &Task,
        plan: &fedrad_shared::plan::StudyPlan,
        task_digest: &str,
        secure: Option<&VerifiedSites>,
        t: &proto::PairedScoresTask,
    ) -> Result<crate::replay::RunStep<'_, fedrad_shared::algorithms::paired_auc::ComparisonReplica>, Failure> {
        use fedrad_shared::algorithms::paired_auc::ComparisonReplica;
        let asked = selection::merged_histograms(t)?;
        let models: Vec<u8> = t.models.iter().flat_map(prost::Message::encode_to_vec).collect();
        let slot = crate::replay::key_of(&[&models, &t.grid.to_le_bytes()]);
        let (count, grid) = (t.models.len(), t.grid);
        let fresh = || ComparisonReplica::new(count, grid);
        let expect = |r: &ComparisonReplica| r.expect(asked.as_deref());
        let plan_sites = plan.site_set();
        let run_task = crate::replay::RunTask {
            slot: slot.clone(),
            key: slot,
            participants: plan_sites.clone(),
            fresh: &fresh,
            expect: &expect,
            previous: &t.previous,
            opening: None,
        };
        self.accept_run(&self.comparisons, task, task_digest, secure, &plan_sites, run_task)
    }

    /// Accepts an encoder round, or embedding with the final weights, only as the next step of
    /// the sequence's federated averaging, recomputed from the sites' signed answers
    /// ([`crate::replay`], `fedavg::EncoderReplica`): round 1 at the plan's initial weights,
    /// every later round and the embedding at the average of the sites' answers to the round
    /// before. One training per sequence.
    #[allow(clippy::too_many_arguments)]
    fn recompute_encoder(
        &self,
        task: &Task,
        plan: &fedrad_shared::plan::StudyPlan,
        task_digest: &str,
        secure: Option<&VerifiedSites>,
        (sequence, architecture, weights): (&str, Option<&proto::EncoderArchitecture>, &[f64]),
        previous: &[proto::SignedAnswer],
        expect: &dyn Fn(&fedrad_shared::algorithms::fedavg::EncoderReplica) -> Result<(), SiteRefusal>,
    ) -> Result<crate::replay::RunStep<'_, fedrad_shared::algorithms::fedavg::EncoderReplica>, Failure> {
        let (sequence, arch) = encoder_task(sequence, architecture, weights)?;
        let initial = arch.initial_weights(plan.deep.local_training(plan.seed).seed);
        let key = crate::replay::key_of(&[sequence.as_bytes(), &architecture.map(|a| a.encode_to_vec()).unwrap_or_default()]);
        let plan_sites = plan.site_set();
        let rounds = plan.deep.rounds;
        let fresh = || fedrad_shared::algorithms::fedavg::EncoderReplica::new(initial.clone(), rounds);
        let run_task = crate::replay::RunTask { slot: sequence.to_string(), key, participants: plan_sites.clone(), fresh: &fresh, expect, previous, opening: None };
        self.accept_run(&self.encoder_runs, task, task_digest, secure, &plan_sites, run_task)
    }

    /// The sites' keys a task that is not secure-summed carries to check forwarded answers
    /// against (an embedding task; a score task of tree ensembles read per site), verified
    /// against the plan's pins (a study that secure-sums must send them; one that does not has
    /// none to send). `what` names the task in refusals.
    fn carried_peers(&self, plan: &fedrad_shared::plan::StudyPlan, peers: Option<&proto::SecureSum>, what: &str) -> Result<Option<VerifiedSites>, Failure> {
        let invalid = |m: String| Failure::Refused(SiteRefusal::InvalidParameters(m));
        match (&plan.secure_aggregation, peers) {
            (Some(settings), Some(peers)) => {
                let own = self
                    .masking
                    .as_ref()
                    .map_err(|why| Failure::Refused(SiteRefusal::Precondition(format!("this site has no certificate key to check the sites' keys: {why}"))))?;
                secure_sum::verify_peers(own, &plan.site_set(), &settings.site_keys, peers).map(Some).map_err(|e| invalid(format!("the sites' keys: {e}")))
            }
            (Some(_), None) => Err(invalid(format!("{what} of a study that secure-sums must carry the sites' keys to check the last round's answers against"))),
            (None, Some(_)) => Err(invalid(format!("{what} carries site keys, but the approved plan does not secure-sum"))),
            (None, None) => Ok(None),
        }
    }

    /// This site's answer to an earlier task of the study, as it sent it (its reply cache),
    /// with the digest of the task it answered.
    fn cached_answer(&self, study_id: &str, task_id: &str) -> Option<(String, proto::Aggregate)> {
        let bytes = std::fs::read(self.cache_path(study_id, task_id)).ok()?;
        let digest = String::from_utf8(bytes.get(..64)?.to_vec()).ok()?;
        match TaskReply::decode(bytes.get(65..)?).ok()?.outcome {
            Some(task_reply::Outcome::Aggregate(a)) => Some((digest, a)),
            _ => None,
        }
    }

    fn fold_count(&self, study_id: &str) -> u32 {
        std::fs::read_to_string(self.study_dir(study_id).join("folds.params"))
            .ok()
            .and_then(|t| t.split_whitespace().find_map(|w| w.strip_prefix("folds=").and_then(|v| v.parse().ok())))
            .unwrap_or(0)
    }

    fn load_folds(&self, study_id: &str) -> BTreeMap<String, u32> {
        let text = std::fs::read_to_string(self.study_dir(study_id).join("folds.csv")).unwrap_or_default();
        text.lines().skip(1).filter_map(|l| l.split_once(',')).filter_map(|(id, f)| Some((id.to_string(), f.parse().ok()?))).collect()
    }

    /// Folds, like the split, are fixed once per study and recorded locally.
    fn record_folds(&self, study_id: &str, f: &proto::FoldsTask, assignment: &[(String, u32)]) -> Result<(), Failure> {
        let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.study_dir(study_id);
        let params = format!("seed={} folds={}", f.seed, f.folds);
        let params_path = dir.join("folds.params");
        if let Ok(existing) = std::fs::read_to_string(&params_path)
            && existing.trim() != params
        {
            return Err(Failure::Refused(SiteRefusal::Precondition(format!("this study's folds are already fixed ({}); they cannot be changed", existing.trim()))));
        }
        let mut rows = assignment.to_vec();
        rows.sort();
        let mut csv = String::from("patient_id,fold\n");
        for (id, fold) in rows {
            csv.push_str(&format!("{id},{fold}\n"));
        }
        write_atomic(&dir.join("folds.csv"), csv.as_bytes()).map_err(|e| Failure::Failed(format!("cannot record the folds: {e}")))?;
        write_atomic(&params_path, params.as_bytes()).map_err(|e| Failure::Failed(format!("cannot record the folds: {e}")))?;
        Ok(())
    }

    /// Roles of the loaded records from the study's recorded split.
    /// Table 1 is answered over one population per study (found by a red-team review): its
    /// answer holds exact sums and the exclusions per reason, and the site answers it again on
    /// request, so were a patient's row excluded between two answers (an image become
    /// unreadable, the agent restarted), their difference would be that patient's clinical
    /// values, cohort and reason — secure-summed or not. The first answer pins the patients it
    /// covered; a later Table 1 over others is refused.
    fn pin_table1_population(&self, study_id: &str) -> Result<(), Failure> {
        let ids: Vec<&str> = self.cohort.records.iter().map(|r| r.patient_id.as_str()).collect();
        let digest = fedrad_shared::digest::sha256_hex(ids.join("\n").as_bytes());
        let path = self.study_dir(study_id).join(TABLE1_POPULATION);
        let _guard = self.study_lock.lock().unwrap_or_else(|p| p.into_inner());
        match std::fs::read_to_string(&path) {
            Ok(pinned) if pinned.trim() == digest => Ok(()),
            Ok(_) => Err(Failure::Refused(SiteRefusal::Precondition(
                "this study's Table 1 was answered over other patients than this site holds now (a row excluded or added since): answering again would release their difference".into(),
            ))),
            Err(_) => write_atomic(&path, digest.as_bytes()).map_err(|e| Failure::Failed(format!("cannot record Table 1's population: {e}"))),
        }
    }

    pub fn load_split(&self, study_id: &str) -> Result<Vec<CohortRole>, Failure> {
        let path = self.study_dir(study_id).join("split.csv");
        let text =
            std::fs::read_to_string(&path).map_err(|_| Failure::Refused(SiteRefusal::Precondition("no training/validation split recorded for this study".into())))?;
        let mut by_id = BTreeMap::new();
        for line in text.lines().skip(1) {
            if let Some((id, role)) = line.split_once(',') {
                let role = match role {
                    "training" => CohortRole::Training,
                    "validation" => CohortRole::Validation,
                    other => return Err(Failure::Failed(format!("{}: unknown cohort {other:?}", path.display()))),
                };
                by_id.insert(id.to_string(), role);
            }
        }
        self.cohort
            .records
            .iter()
            .map(|r| {
                by_id
                    .get(&r.patient_id)
                    .copied()
                    .ok_or_else(|| Failure::Refused(SiteRefusal::Precondition("the manifest changed since the split was recorded (a patient has no assignment)".into())))
            })
            .collect()
    }
}

#[derive(Debug)]
pub enum Failure {
    Refused(SiteRefusal),
    Failed(String),
}

impl From<SiteRefusal> for Failure {
    fn from(r: SiteRefusal) -> Self {
        Failure::Refused(r)
    }
}

fn variable_from_proto(v: &proto::ClinicalVariable) -> Result<VariableSpec, Failure> {
    Ok(acceptance::variable_spec(v)?)
}

/// The encoder rounds this site answered for one sequence, in its study folder.
fn read_round_record(path: &Path) -> Result<Option<fedavg::RoundRecord>, Failure> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Failure::Failed(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::Failed(format!("{}: {e}", path.display()))),
    }
}

/// The sequence and architecture of an encoder task, refused unless valid and matching the weights.
fn encoder_task(sequence: &str, arch: Option<&proto::EncoderArchitecture>, weights: &[f64]) -> Result<(&'static str, Architecture), Failure> {
    let invalid = |m: String| Failure::Refused(SiteRefusal::InvalidParameters(m));
    let sequence = match fedrad_shared::algorithms::extraction::table_name(sequence) {
        Some((s, false)) => s,
        _ => return Err(invalid(format!("unknown sequence {sequence:?}"))),
    };
    let a = arch.ok_or_else(|| invalid("the task has no encoder architecture".into()))?;
    if a.channels.len() != 2 {
        return Err(invalid(format!("the encoder has two convolution layers, not {}", a.channels.len())));
    }
    let arch = Architecture {
        crop: a.crop_pixels as usize,
        field_mm: a.field_mm,
        channels: [a.channels[0] as usize, a.channels[1] as usize],
        embedding: a.embedding_dim as usize,
    };
    arch.validate().map_err(|e| invalid(format!("encoder architecture: {e}")))?;
    if weights.len() != arch.parameter_count() {
        return Err(invalid(format!("{} weights for an encoder of {} parameters", weights.len(), arch.parameter_count())));
    }
    if weights.iter().any(|w| !w.is_finite()) {
        return Err(invalid("the encoder weights have non-finite values".into()));
    }
    Ok((sequence, arch))
}

/// At most `max` bytes of `text` (cut at a character boundary, marked with "…").
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Write to a temporary file and rename, so a crash never leaves half a record.
/// A recorded list of populations (patient ids per answer); none when the file is absent.
fn read_populations(path: &Path) -> Result<Vec<Vec<String>>, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| Failure::Failed(format!("{}: not a list of populations ({e})", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Failure::Failed(format!("cannot read {}: {e}", path.display()))),
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A temporary name of its own per call: two threads writing the same file must not
    // rename each other's temporary away.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}
