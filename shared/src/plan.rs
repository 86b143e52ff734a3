//! The study file (`study.toml`) and the study's plan: what the coordinator runs and what
//! each site's operator approves. The plan ([`StudyPlan`]) is every setting that shapes a task
//! the sites receive; its SHA-256 travels with every task, and a site answers only tasks of a
//! plan its operator approved (`site-agent approve --study study.toml`), checking each task's
//! parameters against it. Relative paths are relative to the file's folder.
//!
//! ```toml
//! # study.toml
//! study_id = "npc-recurrence"
//! output_dir = "results"
//! seed = 20260101
//! sites = ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]
//! [timeouts]
//! site_wait_secs = 600   # how long to wait for every site to connect
//! task_secs = 900        # how long one site may take for one task (incl. reconnects)
//! [[variables]]                  # the data dictionary; none declared: the NPC study's
//! name = "age"                    # (deploy/study.example.toml lists all seven)
//! label = "Age (years)"
//! kind = "continuous"
//! resolution = 1.0                # grid of rank statistics (medians, Mann-Whitney)
//! unit = "years"
//! [[variables]]
//! name = "t_stage"
//! label = "T stage"
//! kind = "categorical"
//! levels = ["T1", "T2", "T3", "T4"]
//! [split]
//! training_fraction = 0.7
//! [table1]
//! variables = ["age", "sex", "t_stage", "n_stage", "overall_stage", "ebv_dna", "histology"]
//! [features]
//! parameters = "radiomics.yaml"   # PyRadiomics parameter file; default: FedRad's MRI settings
//! [selection]                     # every key optional; these are the defaults
//! sequences = ["t1c", "t2"]
//! univariate = { test = "welch", alpha = 0.05 }      # or "mann_whitney", "none"
//! redundancy = { enabled = true, threshold = 0.9 }
//! select_at = "lambda_min"        # or "lambda_1se"
//! both_sequences = false          # true: also select and model on T1WI+C and T2WI together
//! [selection.lasso]
//! family = "binomial"             # or "gaussian" (scikit-learn's Lasso on the 0/1 outcome)
//! mixing = 1.0                    # elastic-net α; 1 = LASSO
//! path_length = 100
//! lambda_min_ratio = 0.01
//! folds = 10
//! [clinical_model]
//! entry_p = 0.05                  # univariate p below which a variable enters the model
//! [models]
//! classifiers = ["logistic_regression", "linear_svm", "rbf_svm", "random_forest", "gradient_boosting", "naive_bayes"]
//! logistic = { c = 1.0 }
//! linear_svm = { c = 1.0 }
//! rbf_svm = { features = 24, gamma = 0.0, c = 1.0 }   # gamma 0 = 1 / design columns
//! forest = { trees = 100, max_depth = 6, min_leaf = 5, max_features = 0, bins = 32 }
//! boosting = { rounds = 100, max_depth = 3, learning_rate = 0.1, lambda = 1.0, min_leaf = 5, bins = 32 }
//! search = { enabled = false, c = [0.01, 0.1, 1, 10, 100] }  # C by CV AUC on the selection folds
//! [deep]                          # deep features: encoder trained by federated averaging
//! enabled = true
//! rounds = 20
//! local_epochs = 1
//! batch_size = 16                 # 0 = full batch (with local_epochs = 1: FedSGD)
//! learning_rate = 0.1
//! momentum = 0.9
//! proximal_mu = 0.0               # FedProx; 0 = FedAvg
//! mask_fraction = 0.25            # masked-autoencoder corruption
//! crop = 32                       # pixels; 2.5D crop of the largest tumour slice ± 1
//! field_mm = 64.0
//! channels = [8, 16]
//! embedding = 1000                # deep features per sequence
//! source = "encoder"              # or "onnx": a study-supplied network, then:
//! # onnx = { file = "resnet50.onnx", sha256 = "…", input_size = 224, channels = 3, field_mm = 64.0, intensity = "imagenet" }
//! [limits]                        # bounds every site checks on the models it is asked about
//! max_coefficient = 50.0          # |coefficient| per SD of its column, and |intercept|
//! max_scale_ratio = 10.0          # standardiser scale ≥ the site's own SD / this
//! [secure_aggregation]            # crate::secure_sum; on by default for ≥ 4 sites
//! site_keys = { hospital-a = "…" }  # every site's key fingerprint: `coordinator certs pins`
//! site_alone_baselines = false    # per-site results, published only if true
//! [combat]                        # ComBat harmonisation before selection (algorithms::combat)
//! enabled = false
//! prior = "parametric"            # or "non_parametric", "none" (no empirical Bayes)
//! mean_only = false
//! covariates = ["outcome", "age"] # protected: `outcome` and [[variables]] names
//! ```

use std::path::{Path, PathBuf};

use crate::clinical::{VariableSpec, npc_dictionary};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    pub study_id: String,
    pub output_dir: PathBuf,
    pub seed: u64,
    pub sites: Vec<String>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// The study's data dictionary (`[[variables]]`): every clinical variable Table 1 and the
    /// clinical model may use. None declared: the NPC study's ([`npc_dictionary`]).
    #[serde(default)]
    pub variables: Vec<VariableSpec>,
    #[serde(default)]
    pub split: SplitSettings,
    #[serde(default)]
    pub table1: Table1Settings,
    #[serde(default)]
    pub features: FeatureSettings,
    #[serde(default)]
    pub selection: SelectionSettings,
    #[serde(default)]
    pub clinical_model: ClinicalModelSettings,
    #[serde(default)]
    pub models: ModelSettings,
    #[serde(default)]
    pub deep: DeepSettings,
    #[serde(default)]
    pub limits: DisclosureLimits,
    #[serde(default)]
    pub secure_aggregation: SecureAggregationSettings,
    /// `[combat]`: ComBat harmonisation of site effects before selection (off by default).
    #[serde(default)]
    pub combat: crate::algorithms::combat::CombatSettings,
    /// `[validation]`: validation beside the random split (off by default).
    #[serde(default)]
    pub validation: ValidationSettings,
}

/// `[validation]` of the study file.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSettings {
    /// Leave-one-hospital-out: for each site, selection and models again on the other sites'
    /// training patients, validated on every patient of that site ([`StudyPlan::held_out_analysis`]).
    pub leave_one_hospital_out: bool,
    /// Per-site results: each site's own score histograms and Table 1 in the clear, for each
    /// model's AUC per hospital and Table 1 per hospital (with its excluded rows per reason).
    /// Off by default: both are then summed over the sites (secure-summed when the study
    /// secure-sums) and no hospital's AUC or table is computed. A site answers such tasks
    /// only if its own policy publishes them (`policy.per_site_results`).
    pub per_site_results: bool,
}

/// What joins a study id and a held-out site in a leave-one-hospital-out analysis's id.
pub const HELD_OUT_SEPARATOR: &str = ".without-";

/// The study id of the leave-one-hospital-out analysis of `study_id` without `site`.
pub fn held_out_study_id(study_id: &str, site: &str) -> String {
    format!("{study_id}{HELD_OUT_SEPARATOR}{site}")
}

/// The study and held-out site of an analysis id ([`held_out_study_id`]), if it is one.
pub fn parse_held_out_study_id(id: &str) -> Option<(&str, &str)> {
    id.rsplit_once(HELD_OUT_SEPARATOR).filter(|(study, site)| !study.is_empty() && !site.is_empty())
}

/// Whether an approved plan runs site-alone baselines: never in a leave-one-hospital-out
/// analysis, and in a study that secure-sums only when it opts in
/// (`secure_aggregation.site_alone_baselines`: a baseline is a per-site result).
pub fn runs_site_alone_baselines(plan: &StudyPlan) -> bool {
    parse_held_out_study_id(&plan.study_id).is_none() && plan.secure_aggregation.as_ref().is_none_or(|s| s.site_alone_baselines)
}

/// `[secure_aggregation]` of the study file ([`crate::secure_sum`]): the sites mask their
/// replies to the task kinds the coordinator only sums, so it learns only sums over all sites.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecureAggregationSettings {
    /// Unset: on for studies of four or more sites (with fewer, one site's answer is close to
    /// what the sum minus the others' reveals anyway, and a two-site sum hides nothing from
    /// either site).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Each site's certificate key fingerprint (SHA-256 of its SubjectPublicKeyInfo, hex), as
    /// `coordinator certs pins` prints them. Part of the plan, so the keys every site checks
    /// the others' against are the ones its operator approved.
    #[serde(default)]
    pub site_keys: std::collections::BTreeMap<String, String>,
    /// Run the site-alone baselines (a logistic regression fitted on one site's patients, whose
    /// rounds go to that site alone and so cannot be secure-summed). Off by default when secure
    /// aggregation is on: they are per-site results.
    #[serde(default)]
    pub site_alone_baselines: bool,
}

/// Secure aggregation as the plan fixes it (absent when off).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecureAggregationPlan {
    pub site_keys: std::collections::BTreeMap<String, String>,
    pub site_alone_baselines: bool,
}

impl SecureAggregationSettings {
    /// Whether a study of `sites` sites secure-sums.
    pub fn on(&self, sites: usize) -> bool {
        self.enabled.unwrap_or(sites >= 4)
    }

    fn validate(&self, sites: &[String]) -> Result<(), String> {
        if !self.on(sites.len()) {
            return Ok(());
        }
        if sites.len() < 2 {
            return Err("secure_aggregation.enabled: a secure sum needs at least two sites".into());
        }
        let missing: Vec<&str> = sites.iter().filter(|s| !self.site_keys.contains_key(*s)).map(|s| s.as_str()).collect();
        if !missing.is_empty() {
            return Err(format!(
                "secure aggregation (on by default for four or more sites) needs each site's key fingerprint in [secure_aggregation] site_keys; missing {}. `coordinator certs pins` prints them once the sites' certificates are signed; or set secure_aggregation.enabled = false",
                missing.join(", ")
            ));
        }
        for (site, fp) in &self.site_keys {
            if !sites.contains(site) {
                return Err(format!("secure_aggregation.site_keys: {site} is not one of the study's sites"));
            }
            if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                return Err(format!("secure_aggregation.site_keys.{site}: {fp:?} is not a SHA-256 fingerprint (64 lower-case hex digits)"));
            }
        }
        Ok(())
    }

    fn plan(&self, sites: usize) -> Option<SecureAggregationPlan> {
        self.on(sites).then(|| SecureAggregationPlan { site_keys: self.site_keys.clone(), site_alone_baselines: self.site_alone_baselines })
    }
}

/// Bounds on the models a task may ask a site about, on the study's standardised scale: part
/// of the plan, checked by every site. The defaults are far beyond what an honest fit reaches
/// and far below what a reconstruction attack needs (a steep logistic step at a chosen
/// threshold needs coefficients of 1e3 to 1e9 per standard deviation).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisclosureLimits {
    /// Largest |coefficient| of a linear model per standard deviation of its column, and the
    /// largest |intercept|.
    pub max_coefficient: f64,
    /// Largest standardiser a task may use, relative to the site's own: a task's scale of a
    /// column must be at least the site's own standard deviation divided by this (a smaller
    /// scale zooms grids and steepens models).
    pub max_scale_ratio: f64,
}

impl Default for DisclosureLimits {
    fn default() -> Self {
        DisclosureLimits { max_coefficient: 50.0, max_scale_ratio: 10.0 }
    }
}

impl DisclosureLimits {
    fn validate(&self) -> Result<(), String> {
        if !(self.max_coefficient > 0.0 && self.max_coefficient <= 1e4) {
            return Err(format!("limits.max_coefficient must be in (0, 10000], not {}", self.max_coefficient));
        }
        if !(self.max_scale_ratio >= 1.0 && self.max_scale_ratio <= 1e3) {
            return Err(format!("limits.max_scale_ratio must be in [1, 1000], not {}", self.max_scale_ratio));
        }
        Ok(())
    }
}

/// The study's plan: every setting of the study file that shapes a task a site receives, with
/// the feature parameter file's text in place of its path. What a site's operator approves.
/// Its canonical form is its JSON (fields in declaration order, floats as shortest round-trip
/// decimals), and [`StudyPlan::sha256`] names it on every task.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StudyPlan {
    pub study_id: String,
    pub seed: u64,
    pub sites: Vec<String>,
    /// The study's data dictionary in full (the NPC study's when the study file declares
    /// none): each site checks on approval that its table describes these variables the same way.
    pub variables: Vec<VariableSpec>,
    pub split: SplitSettings,
    pub table1: Table1Settings,
    /// The PyRadiomics parameter file's text sent to every site ("" = FedRad's default).
    pub feature_parameters: String,
    pub selection: SelectionSettings,
    pub clinical_model: ClinicalModelSettings,
    pub models: ModelSettings,
    pub deep: DeepSettings,
    pub limits: DisclosureLimits,
    /// Absent (and so not in the canonical JSON, whose hash stays what it was) when off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_aggregation: Option<SecureAggregationPlan>,
    /// ComBat's settings when on; absent (and so not in the canonical JSON) when off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combat: Option<crate::algorithms::combat::CombatSettings>,
    /// Leave-one-hospital-out analyses; absent (and so not in the canonical JSON) when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leave_one_hospital_out: bool,
    /// Per-site score histograms and Table 1 ([`ValidationSettings::per_site_results`]); absent when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_site_results: bool,
}

impl StudyPlan {
    /// The plan of the leave-one-hospital-out analysis without `site`, which every site derives
    /// from the plan its operator approved (so approving a study with
    /// `leave_one_hospital_out` approves its analyses): the same settings under the analysis's
    /// id ([`held_out_study_id`]), over the other sites, with no analyses of its own. `None` if
    /// the plan has no such analyses or `site` is not one of its sites.
    ///
    /// The analysis shares the study's populations — split, folds, features — which the sites
    /// read from the study itself; everything an analysis pins (standardisers, fitted models,
    /// tree edges, replayed runs) is its own.
    pub fn held_out_analysis(&self, site: &str) -> Option<StudyPlan> {
        if !self.leave_one_hospital_out || !self.sites.iter().any(|s| s == site) {
            return None;
        }
        let mut plan = self.clone();
        plan.study_id = held_out_study_id(&self.study_id, site);
        plan.sites.retain(|s| s != site);
        plan.leave_one_hospital_out = false;
        Some(plan)
    }

    /// The canonical bytes the plan's SHA-256 is taken over.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serialises")
    }

    pub fn sha256(&self) -> String {
        crate::digest::sha256_hex(self.canonical_json().as_bytes())
    }

    /// The study's sites, sorted and without repeats (the form tasks are compared in).
    pub fn site_set(&self) -> Vec<String> {
        let mut s = self.sites.clone();
        s.sort();
        s.dedup();
        s
    }
}

/// Deep features: the encoder trained across the sites by federated averaging
/// (`crate::algorithms::{encoder, fedavg}`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeepSettings {
    pub enabled: bool,
    /// Federated rounds per sequence.
    pub rounds: u32,
    pub local_epochs: u32,
    /// Patients per local mini-batch; 0 = each site's whole training cohort.
    pub batch_size: u32,
    pub learning_rate: f64,
    pub momentum: f64,
    /// FedProx's μ; 0 = FedAvg.
    pub proximal_mu: f64,
    /// Fraction of 4×4 input patches masked in training.
    pub mask_fraction: f64,
    /// Crop side in pixels (a multiple of 4) and in millimetres.
    pub crop: usize,
    pub field_mm: f64,
    pub channels: [usize; 2],
    /// Number of deep features per sequence.
    pub embedding: usize,
    /// Seed of the initial weights, masks and batch order (default: the study seed).
    pub seed: Option<u64>,
    /// Where deep features come from: the federated encoder, or a study-supplied network.
    pub source: DeepSource,
    /// The study-supplied network (`source = "onnx"`).
    pub onnx: Option<OnnxNetwork>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeepSource {
    Encoder,
    Onnx,
}

/// A study-supplied ONNX network: each site holds the approved file in its `networks_dir`
/// and runs it only if it hashes to `sha256`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxNetwork {
    /// File name in the sites' networks folder.
    pub file: String,
    /// SHA-256 of the file (hex).
    pub sha256: String,
    /// Input side in pixels (`1 × channels × size × size`).
    #[serde(default = "default_input_size")]
    pub input_size: usize,
    /// 3 = the largest tumour slice and its neighbours; 1 = that slice.
    #[serde(default = "default_channels")]
    pub channels: usize,
    #[serde(default = "default_field")]
    pub field_mm: f64,
    /// "imagenet" (crop to [0, 1], ImageNet mean/SD) or "zscore" (tumour z-scores).
    #[serde(default = "default_intensity")]
    pub intensity: String,
}

fn default_input_size() -> usize {
    224
}
fn default_channels() -> usize {
    3
}
fn default_field() -> f64 {
    64.0
}
fn default_intensity() -> String {
    "imagenet".into()
}

impl Default for DeepSettings {
    fn default() -> Self {
        let a = crate::algorithms::encoder::Architecture::default();
        DeepSettings {
            enabled: true,
            rounds: 20,
            local_epochs: 1,
            batch_size: 16,
            learning_rate: 0.1,
            momentum: 0.9,
            proximal_mu: 0.0,
            mask_fraction: 0.25,
            crop: a.crop,
            field_mm: a.field_mm,
            channels: a.channels,
            embedding: a.embedding,
            seed: None,
            source: DeepSource::Encoder,
            onnx: None,
        }
    }
}

impl DeepSettings {
    pub fn architecture(&self) -> crate::algorithms::encoder::Architecture {
        crate::algorithms::encoder::Architecture { crop: self.crop, field_mm: self.field_mm, channels: self.channels, embedding: self.embedding }
    }

    pub fn local_training(&self, study_seed: u64) -> crate::algorithms::fedavg::LocalTraining {
        crate::algorithms::fedavg::LocalTraining {
            epochs: self.local_epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            momentum: self.momentum,
            proximal_mu: self.proximal_mu,
            mask_fraction: self.mask_fraction,
            seed: self.seed.unwrap_or(study_seed),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.source == DeepSource::Onnx {
            let n = self.onnx.as_ref().ok_or("deep.source = \"onnx\" needs [deep.onnx] with file and sha256")?;
            if n.file.is_empty() || n.file.contains(['/', '\\']) || n.file.starts_with('.') {
                return Err(format!("deep.onnx.file {:?}: a plain file name in the sites' networks folder", n.file));
            }
            if n.sha256.len() != 64 || !n.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("deep.onnx.sha256 {:?}: 64 hexadecimal digits", n.sha256));
            }
            let intensity =
                crate::onnx_input::Intensity::parse(&n.intensity).ok_or_else(|| format!("deep.onnx.intensity {:?}: use \"imagenet\" or \"zscore\"", n.intensity))?;
            let recipe = crate::onnx_input::InputRecipe { size: n.input_size, channels: n.channels, field_mm: n.field_mm, intensity };
            return recipe.validate().map_err(|e| format!("deep.onnx.{e}"));
        }
        if self.rounds == 0 || self.rounds > 1000 {
            return Err(format!("deep.rounds must be from 1 to 1000, not {}", self.rounds));
        }
        self.architecture().validate().map_err(|e| format!("deep.{e}"))?;
        self.local_training(0).validate().map_err(|e| format!("deep.{e}"))
    }
}

/// The classifiers of the models step and their hyperparameters.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// Which classifiers to fit (default: all six).
    pub classifiers: Vec<crate::algorithms::classifiers::ClassifierKind>,
    pub logistic: PenaltySettings,
    pub linear_svm: PenaltySettings,
    pub rbf_svm: RbfSvmSettings,
    pub forest: crate::algorithms::trees::ForestSettings,
    pub boosting: crate::algorithms::trees::BoostingSettings,
    pub search: SearchSettings,
}

/// Optional search of C (logistic regression, linear and RBF SVM) by cross-validated AUC on
/// the training folds of the selection step; off by default (one fit per value and fold).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSettings {
    pub enabled: bool,
    pub c: Vec<f64>,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings { enabled: false, c: vec![0.01, 0.1, 1.0, 10.0, 100.0] }
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            classifiers: crate::algorithms::classifiers::ClassifierKind::ALL.to_vec(),
            logistic: PenaltySettings::default(),
            linear_svm: PenaltySettings::default(),
            rbf_svm: RbfSvmSettings::default(),
            forest: Default::default(),
            boosting: Default::default(),
            search: SearchSettings::default(),
        }
    }
}

/// scikit-learn's C: inverse strength of the L2 penalty.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PenaltySettings {
    pub c: f64,
}

impl Default for PenaltySettings {
    fn default() -> Self {
        PenaltySettings { c: 1.0 }
    }
}

/// The RBF SVM's random Fourier features. Each feature is a model parameter, so `features + 1`
/// must stay within every site's `max_parameter_ratio` × its training patients.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RbfSvmSettings {
    pub features: u32,
    /// Kernel width γ in exp(−γ‖z − z'‖²) on the standardised design; 0 = 1 / (design
    /// columns), scikit-learn's `gamma = "scale"` on standardised data.
    pub gamma: f64,
    pub c: f64,
    pub seed: u64,
}

impl Default for RbfSvmSettings {
    fn default() -> Self {
        RbfSvmSettings { features: 24, gamma: 0.0, c: 1.0, seed: 20_261_130 }
    }
}

/// Feature selection per sequence: standardisation, univariate filter, redundancy filter,
/// LASSO with cross-validation (see `shared::algorithms`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionSettings {
    pub enabled: bool,
    pub sequences: Vec<String>,
    pub univariate: UnivariateSettings,
    pub redundancy: RedundancySettings,
    pub lasso: crate::algorithms::lasso::LassoSettings,
    /// Which λ's non-zero coefficients are the selected features.
    pub select_at: SelectAt,
    /// A selection and Models I–III on both sequences' features together (the `t1c+t2`
    /// table), beside each sequence's own. Absent from the canonical JSON when off, so the
    /// plans approved before the option keep their hash.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub both_sequences: bool,
}

impl SelectionSettings {
    /// The feature sets selection and models run over, in order: each sequence, then with
    /// `both_sequences` the table of both ([`BOTH_SEQUENCES`](crate::algorithms::extraction::BOTH_SEQUENCES)).
    pub fn feature_sets(&self) -> Vec<String> {
        let mut out = self.sequences.clone();
        if self.both_sequences {
            out.push(crate::algorithms::extraction::BOTH_SEQUENCES.to_string());
        }
        out
    }
}

impl Default for SelectionSettings {
    fn default() -> Self {
        SelectionSettings {
            enabled: true,
            sequences: vec!["t1c".into(), "t2".into()],
            univariate: UnivariateSettings::default(),
            redundancy: RedundancySettings::default(),
            lasso: Default::default(),
            select_at: SelectAt::LambdaMin,
            both_sequences: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnivariateChoice {
    Welch,
    MannWhitney,
    None,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnivariateSettings {
    /// `welch` (exact from moments), `mann_whitney` (grid counts; see the docs on accuracy and
    /// disclosure) or `none`.
    pub test: UnivariateChoice,
    pub alpha: f64,
    /// Mann–Whitney grid step and range, in SD units.
    pub resolution: f64,
    pub limit: f64,
}

impl Default for UnivariateSettings {
    fn default() -> Self {
        UnivariateSettings { test: UnivariateChoice::Welch, alpha: 0.05, resolution: 0.01, limit: 8.0 }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedundancySettings {
    pub enabled: bool,
    /// Drop one of each pair with |Pearson r| above this.
    pub threshold: f64,
}

impl Default for RedundancySettings {
    fn default() -> Self {
        RedundancySettings { enabled: true, threshold: 0.9 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectAt {
    LambdaMin,
    /// Spelt `lambda_1se`, as the docs and glmnet's `lambda.1se` (snake case alone would
    /// give `lambda1se`, which is also accepted).
    #[serde(rename = "lambda_1se", alias = "lambda1se")]
    Lambda1se,
}

/// The clinical model of Model III: univariate logistic regression per variable, then a
/// multivariable model of those with p below `entry_p`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClinicalModelSettings {
    pub enabled: bool,
    /// Built-in variables to consider (default: all); extras from `[[table1.extra]]` by name.
    pub variables: Option<Vec<String>>,
    pub entry_p: f64,
}

impl Default for ClinicalModelSettings {
    fn default() -> Self {
        ClinicalModelSettings { enabled: true, variables: None, entry_p: 0.05 }
    }
}

/// Radiomic feature extraction at the sites.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSettings {
    /// A PyRadiomics parameter file (YAML), sent to every site; default: FedRad's MRI settings
    /// (z-score ×100, 32 fixed bins, 3D texture; the original image with all IBSI families,
    /// 8 coif1 wavelet bands and LoG σ 1, 3 mm with the PyRadiomics classes: 1 197 features).
    #[serde(default)]
    pub parameters: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "default_site_wait")]
    pub site_wait_secs: u64,
    #[serde(default = "default_task")]
    pub task_secs: u64,
}

fn default_site_wait() -> u64 {
    600
}
fn default_task() -> u64 {
    900
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { site_wait_secs: default_site_wait(), task_secs: default_task() }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSettings {
    #[serde(default = "default_fraction")]
    pub training_fraction: f64,
}

fn default_fraction() -> f64 {
    0.7
}

impl Default for SplitSettings {
    fn default() -> Self {
        SplitSettings { training_fraction: default_fraction() }
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Table1Settings {
    /// Variables of the study's dictionary to tabulate (default: all of them).
    #[serde(default)]
    pub variables: Option<Vec<String>>,
    /// Further variables to tabulate beyond the dictionary (kept for study files written
    /// before `[[variables]]`; declaring them there is clearer).
    #[serde(default)]
    pub extra: Vec<VariableSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })
}

impl StudyConfig {
    /// The plan the sites approve: this file's settings with the feature parameter file read.
    pub fn plan(&self) -> Result<StudyPlan, ConfigError> {
        let feature_parameters = match &self.features.parameters {
            Some(p) => read_file(p)?,
            None => String::new(),
        };
        Ok(StudyPlan {
            study_id: self.study_id.clone(),
            seed: self.seed,
            sites: self.sites.clone(),
            variables: self.dictionary(),
            split: self.split.clone(),
            table1: self.table1.clone(),
            feature_parameters,
            selection: self.selection.clone(),
            clinical_model: self.clinical_model.clone(),
            models: self.models.clone(),
            deep: self.deep.clone(),
            limits: self.limits.clone(),
            secure_aggregation: self.secure_aggregation.plan(self.sites.len()),
            combat: self.combat.enabled.then(|| self.combat.clone()),
            leave_one_hospital_out: self.validation.leave_one_hospital_out,
            per_site_results: self.validation.per_site_results,
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut s: StudyConfig = toml::from_str(&read_file(path)?).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        s.output_dir = base.join(&s.output_dir);
        s.features.parameters = s.features.parameters.map(|p| base.join(p));
        s.validate().map_err(|detail| ConfigError::Invalid { path: path.into(), detail })?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        let ok_id = !self.study_id.is_empty()
            && self.study_id.len() <= 64
            && !self.study_id.starts_with('.')
            && self.study_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok_id {
            return Err(format!("study_id {:?}: use 1-64 characters A-Z a-z 0-9 . _ -", self.study_id));
        }
        if self.study_id.contains(HELD_OUT_SEPARATOR) {
            return Err(format!("study_id {:?}: `{HELD_OUT_SEPARATOR}` names leave-one-hospital-out analyses; choose another id", self.study_id));
        }
        if self.sites.is_empty() {
            return Err("sites: list at least one site".into());
        }
        for s in &self.sites {
            crate::identity::validate_site_id(s).map_err(|e| e.to_string())?;
        }
        let f = self.split.training_fraction;
        if !(f > 0.0 && f < 1.0) {
            return Err(format!("split.training_fraction = {f}: must be between 0 and 1"));
        }
        crate::clinical::validate_dictionary(&self.dictionary()).map_err(|e| format!("[[variables]]: {e}"))?;
        crate::clinical::validate_dictionary(&self.table1.extra).map_err(|e| format!("[[table1.extra]]: {e}"))?;
        self.table1_variables()?;
        let sel = &self.selection;
        for (k, seq) in sel.sequences.iter().enumerate() {
            if !crate::algorithms::extraction::SEQUENCES.contains(&seq.as_str()) {
                return Err(format!("selection.sequences: unknown sequence `{seq}` (use t1c, t2)"));
            }
            if sel.sequences[..k].contains(seq) {
                return Err(format!("selection.sequences: `{seq}` is listed twice"));
            }
        }
        if sel.both_sequences && !crate::algorithms::extraction::SEQUENCES.iter().all(|s| sel.sequences.iter().any(|q| q == s)) {
            return Err(format!("selection.both_sequences: selects on t1c and t2 together, so selection.sequences must list both (it lists {:?})", sel.sequences));
        }
        if !(sel.univariate.alpha > 0.0 && sel.univariate.alpha <= 1.0) {
            return Err("selection.univariate.alpha must be in (0, 1]".into());
        }
        if !(sel.univariate.resolution > 1e-4 && sel.univariate.limit > sel.univariate.resolution && sel.univariate.limit / sel.univariate.resolution <= 10_000.0) {
            return Err("selection.univariate: resolution must be > 1e-4 and limit/resolution at most 10000".into());
        }
        if !(sel.redundancy.threshold > 0.0 && sel.redundancy.threshold <= 1.0) {
            return Err("selection.redundancy.threshold must be in (0, 1]".into());
        }
        sel.lasso.validate().map_err(|e| format!("selection.lasso: {e}"))?;
        if !(self.clinical_model.entry_p > 0.0 && self.clinical_model.entry_p <= 1.0) {
            return Err("clinical_model.entry_p must be in (0, 1]".into());
        }
        self.clinical_variables()?;
        let m = &self.models;
        for (name, c) in [("logistic", m.logistic.c), ("linear_svm", m.linear_svm.c), ("rbf_svm", m.rbf_svm.c)] {
            if !(c > 0.0 && c.is_finite()) {
                return Err(format!("models.{name}.c must be positive"));
            }
        }
        if m.rbf_svm.features == 0 || m.rbf_svm.features > crate::algorithms::classifiers::MAX_RANDOM_FEATURES || !(m.rbf_svm.gamma >= 0.0 && m.rbf_svm.gamma.is_finite())
        {
            return Err("models.rbf_svm: features must be 1 to 4096 and gamma ≥ 0".into());
        }
        if m.search.enabled && (m.search.c.is_empty() || m.search.c.len() > 20 || m.search.c.iter().any(|c| !(*c > 0.0 && c.is_finite()))) {
            return Err("models.search.c: list 1 to 20 positive values".into());
        }
        m.forest.validate().map_err(|e| format!("models.{e}"))?;
        m.boosting.validate().map_err(|e| format!("models.{e}"))?;
        if self.deep.enabled {
            self.deep.validate()?;
        }
        self.secure_aggregation.validate(&self.sites)?;
        if self.combat.enabled {
            if !self.selection.enabled {
                return Err("combat.enabled: ComBat harmonises the features selection uses; enable [selection]".into());
            }
            self.combat.resolve(&self.dictionary())?;
        }
        if self.validation.leave_one_hospital_out {
            if self.sites.len() < 4 {
                // With two fitting sites, each would read the other's answers off the sums it
                // recomputes the fits from.
                return Err("validation.leave_one_hospital_out: needs at least four sites, so that each analysis is fitted across three or more".into());
            }
            if !self.secure_aggregation.on(self.sites.len()) {
                // The held-out site checks the fitting sites' signatures against pinned keys.
                return Err(
                    "validation.leave_one_hospital_out: needs [secure_aggregation] (the held-out site checks the other sites' signatures against the keys it pins)"
                        .into(),
                );
            }
            if !self.selection.enabled {
                return Err("validation.leave_one_hospital_out: repeats selection and models without each site; enable [selection]".into());
            }
            if self.combat.enabled {
                // ComBat's estimates protect the outcome: harmonising with the held-out site's
                // labels would let them into the models validated on it.
                return Err("validation.leave_one_hospital_out: not with [combat] yet (ComBat's estimates use every site's outcomes, the held-out site's too)".into());
            }
            for site in &self.sites {
                let id = held_out_study_id(&self.study_id, site);
                if id.len() > 64 {
                    return Err(format!("validation.leave_one_hospital_out: the analysis id {id:?} is longer than 64 characters; shorten study_id"));
                }
            }
        }
        self.limits.validate()
    }

    /// The study's data dictionary: the declared `[[variables]]`, or the NPC study's.
    pub fn dictionary(&self) -> Vec<VariableSpec> {
        if self.variables.is_empty() { npc_dictionary() } else { self.variables.clone() }
    }

    /// The clinical model's candidate variables.
    pub fn clinical_variables(&self) -> Result<Vec<VariableSpec>, String> {
        clinical_variables(&self.dictionary(), &self.table1, &self.clinical_model)
    }

    /// The Table 1 variables in order: those chosen from the dictionary, then extras.
    pub fn table1_variables(&self) -> Result<Vec<VariableSpec>, String> {
        table1_variables(&self.dictionary(), &self.table1)
    }
}

impl StudyPlan {
    /// The study file's checks, for a plan read on its own (`site-agent approve --plan`).
    pub fn validate(&self) -> Result<(), String> {
        StudyConfig {
            study_id: self.study_id.clone(),
            output_dir: PathBuf::new(),
            seed: self.seed,
            sites: self.sites.clone(),
            timeouts: Timeouts::default(),
            variables: self.variables.clone(),
            split: self.split.clone(),
            table1: self.table1.clone(),
            features: FeatureSettings::default(),
            selection: self.selection.clone(),
            clinical_model: self.clinical_model.clone(),
            models: self.models.clone(),
            deep: self.deep.clone(),
            limits: self.limits.clone(),
            secure_aggregation: SecureAggregationSettings {
                enabled: Some(self.secure_aggregation.is_some()),
                site_keys: self.secure_aggregation.as_ref().map(|s| s.site_keys.clone()).unwrap_or_default(),
                site_alone_baselines: self.secure_aggregation.as_ref().is_some_and(|s| s.site_alone_baselines),
            },
            combat: self.combat.clone().unwrap_or_default(),
            validation: ValidationSettings { leave_one_hospital_out: self.leave_one_hospital_out, per_site_results: self.per_site_results },
        }
        .validate()
    }

    /// The clinical model's candidate variables (also the clinical columns of Model III).
    pub fn clinical_variables(&self) -> Result<Vec<VariableSpec>, String> {
        clinical_variables(&self.variables, &self.table1, &self.clinical_model)
    }

    /// The Table 1 variables in order: those chosen from the dictionary, then extras.
    pub fn table1_variables(&self) -> Result<Vec<VariableSpec>, String> {
        table1_variables(&self.variables, &self.table1)
    }

    /// Every variable a task of this study may ask a site about (Table 1's, then the clinical
    /// model's not already listed): what a site's table must describe as the study does.
    pub fn used_variables(&self) -> Result<Vec<VariableSpec>, String> {
        let mut out = self.table1_variables()?;
        let combat = match &self.combat {
            Some(c) => c.resolve(&self.variables)?,
            None => Vec::new(),
        };
        let protected = combat.into_iter().filter_map(|c| match c {
            crate::algorithms::combat::Covariate::Clinical(v) => Some(v),
            crate::algorithms::combat::Covariate::Outcome => None,
        });
        for v in self.clinical_variables()?.into_iter().chain(protected) {
            if !out.iter().any(|u| u.name == v.name) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The feature tables tasks may name: the selected sequences, with `selection.both_sequences`
    /// the table of both, and with deep features enabled each of those with `+deep`.
    pub fn allows_table(&self, table: &str) -> bool {
        let Some(name) = crate::algorithms::extraction::parse_table(table) else { return false };
        let planned = if name.is_joint() { self.selection.both_sequences } else { self.selection.sequences.iter().any(|s| s == name.sequences[0]) };
        planned && (!name.deep || self.deep.enabled)
    }
}

fn clinical_variables(dictionary: &[VariableSpec], table1: &Table1Settings, clinical_model: &ClinicalModelSettings) -> Result<Vec<VariableSpec>, String> {
    let mut all = dictionary.to_vec();
    all.extend(table1.extra.iter().cloned());
    match &clinical_model.variables {
        None => Ok(dictionary.to_vec()),
        Some(names) => {
            names.iter().map(|n| all.iter().find(|v| &v.name == n).cloned().ok_or_else(|| format!("clinical_model.variables: unknown variable `{n}`"))).collect()
        }
    }
}

fn table1_variables(dictionary: &[VariableSpec], table1: &Table1Settings) -> Result<Vec<VariableSpec>, String> {
    let mut out = match &table1.variables {
        None => dictionary.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                dictionary.iter().find(|v| &v.name == n).cloned().ok_or_else(|| format!("table1.variables: unknown variable `{n}` (declare it under [[variables]])"))
            })
            .collect::<Result<_, _>>()?,
    };
    out.extend(table1.extra.iter().cloned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(extra: &str) -> StudyConfig {
        toml::from_str(&format!("study_id = \"s\"\noutput_dir = \"out\"\nseed = 3\nsites = [\"a\", \"b\"]\n{extra}")).unwrap()
    }

    /// A leave-one-hospital-out analysis is the study's plan over the other sites, under its
    /// own id and hash, with no analyses of its own; a plan without them has none, and the
    /// option is off (and absent from the canonical JSON, so older plans keep their hash)
    /// unless asked for. It needs three sites and is refused with ComBat.
    #[test]
    fn held_out_analyses_derive_from_the_approved_plan() {
        let four = || {
            let mut s = StudyConfig { sites: vec!["a".into(), "b".into(), "c".into(), "d".into()], ..study("") };
            s.secure_aggregation.site_keys = s.sites.iter().map(|x| (x.clone(), "0".repeat(64))).collect();
            s
        };
        let off = four().plan().unwrap();
        assert!(!off.canonical_json().contains("leave_one_hospital_out"));
        assert!(off.held_out_analysis("a").is_none());
        let on_config = StudyConfig { validation: ValidationSettings { leave_one_hospital_out: true, per_site_results: false }, ..four() };
        on_config.validate().unwrap();
        let on = on_config.plan().unwrap();
        on.validate().unwrap();
        let without_b = on.held_out_analysis("b").unwrap();
        assert_eq!(without_b.study_id, "s.without-b");
        assert_eq!(parse_held_out_study_id(&without_b.study_id), Some(("s", "b")));
        assert_eq!(without_b.sites, vec!["a".to_string(), "c".to_string(), "d".to_string()]);
        assert!(!without_b.leave_one_hospital_out && without_b.held_out_analysis("a").is_none());
        assert_ne!(without_b.sha256(), on.sha256());
        assert_ne!(without_b.sha256(), on.held_out_analysis("a").unwrap().sha256());
        assert!(on.held_out_analysis("x").is_none());
        assert_eq!(parse_held_out_study_id("plain"), None);
        let two = StudyConfig { validation: ValidationSettings { leave_one_hospital_out: true, per_site_results: false }, ..study("") };
        assert!(two.validate().unwrap_err().contains("at least four sites"));
        let mut plain = on_config.clone();
        plain.secure_aggregation.enabled = Some(false);
        assert!(plain.validate().unwrap_err().contains("secure_aggregation"));
        let reserved = StudyConfig { study_id: "s.without-a".into(), ..four() };
        assert!(reserved.validate().unwrap_err().contains("names leave-one-hospital-out analyses"));
        let mut combat = on_config.clone();
        combat.combat.enabled = true;
        assert!(combat.validate().unwrap_err().contains("combat"));
    }

    #[test]
    fn the_plan_hash_covers_every_task_shaping_setting_and_nothing_else() {
        let base = study("").plan().unwrap().sha256();
        assert_eq!(base, study("").plan().unwrap().sha256(), "deterministic");
        // Where results go and how long to wait do not shape a task.
        assert_eq!(base, study("[timeouts]\ntask_secs = 5\n").plan().unwrap().sha256());
        let mut other = study("");
        other.output_dir = "elsewhere".into();
        assert_eq!(base, other.plan().unwrap().sha256());
        for changed in [
            "[split]\ntraining_fraction = 0.71\n",
            "[selection.lasso]\nfolds = 9\n",
            "[selection.univariate]\nresolution = 0.02\n",
            "[models.forest]\nmax_depth = 7\n",
            "[deep]\nbatch_size = 8\n",
            "[limits]\nmax_coefficient = 51.0\n",
        ] {
            assert_ne!(base, study(changed).plan().unwrap().sha256(), "{changed}");
        }
        let mut seed = study("");
        seed.seed = 4;
        assert_ne!(base, seed.plan().unwrap().sha256());
    }

    #[test]
    fn a_plan_names_the_feature_tables_tasks_may_use() {
        let p = study("[selection]\nsequences = [\"t2\"]\n").plan().unwrap();
        assert!(p.allows_table("t2") && p.allows_table("t2+deep"));
        assert!(!p.allows_table("t1c") && !p.allows_table("t2+x") && !p.allows_table("../t2"));
        assert!(!study("[selection]\nsequences = [\"t2\"]\n[deep]\nenabled = false\n").plan().unwrap().allows_table("t2+deep"));
        assert!(!p.allows_table("t1c+t2") && !study("").plan().unwrap().allows_table("t1c+t2+deep"));
        let both = study("[selection]\nboth_sequences = true\n").plan().unwrap();
        assert!(both.allows_table("t1c+t2") && both.allows_table("t1c+t2+deep") && both.allows_table("t1c"));
        assert!(!both.allows_table("t2+t1c"));
        assert_eq!(both.selection.feature_sets(), ["t1c", "t2", "t1c+t2"]);
        assert_ne!(both.sha256(), study("").plan().unwrap().sha256(), "the option is part of the plan");
        assert!(!study("").plan().unwrap().canonical_json().contains("both_sequences"), "absent when off: approved plans keep their hash");
        assert!(study("[selection]\nsequences = [\"t2\", \"t2\"]\n").validate().unwrap_err().contains("listed twice"));
        let err = study("[selection]\nsequences = [\"t2\"]\nboth_sequences = true\n").validate().unwrap_err();
        assert!(err.contains("selection.both_sequences") && err.contains("t2"), "{err}");
        assert!(study("[limits]\nmax_coefficient = 0.0\n").validate().unwrap_err().contains("max_coefficient"));
    }
}
