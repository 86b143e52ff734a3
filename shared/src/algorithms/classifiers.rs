//! Classifiers fitted from site aggregates, and the scorers that apply them.
//!
//! All work on a model's *design*: the selected features of one sequence and the selected
//! clinical columns, standardised with the training cohort's mean and SD (from one round of
//! per-class moments, which also gives naive Bayes its parameters).
//!
//! * **Logistic regression**, L2-penalised like scikit-learn's default
//!   (maximise ℓ(β) − ‖β‖²/(2C), intercept free, C = 1): Newton on summed gradients and
//!   Hessians ([`super::logistic::site_round`]).
//! * **Linear SVM**, liblinear's primal L2-loss problem as in scikit-learn's `LinearSVC`
//!   (½‖w‖² + C Σ max(0, 1 − yᵢfᵢ)², the intercept penalised as a feature of value 1): Newton
//!   with the generalised Hessian on summed answers of the margin violators; probabilities by
//!   Platt scaling, p = σ(A f + B), fitted on the training cohort (again by summed Newton).
//! * **RBF-kernel SVM** through random Fourier features ([`RandomFeatures`], drawn from a
//!   shared seed): the same squared-hinge problem and Platt scaling on φ(z), so the kernel
//!   machine is still a linear model fitted from sums. Its width is the number of random
//!   features, which the sites' `max_parameter_ratio` bounds.
//! * **Random forest** and **gradient-boosted trees**: grown from per-node histograms
//!   ([`super::trees`]).
//! * **Gaussian naive Bayes** (scikit-learn's `GaussianNB`: class priors, per-class means and
//!   population variances, variance smoothing 1e-9 × the largest feature variance): from the
//!   class moments alone.
//!
//! The Newton fits run as request/absorb state machines ([`NewtonMinimiser`] on a
//! [`NewtonObjective`]), so that each site replays the fit from the sums of the sites' signed
//! answers and answers only the points it asks next ([`FitReplica`]: what a site accepts);
//! a score task forwards the answers to the fit's last round too, and a site scores the model
//! only at the point its replica reached ([`FitReplica::expect_fitted`]).
//!
//! Every fit uses only sums over patients, so it is the pooled fit (partition tests below).
//! k-nearest neighbours is deliberately absent: it needs other patients' feature vectors.

use super::glm::{sigmoid, softplus};
use super::logistic::invert_spd;
use super::standardise::FeatureMoments;
use super::trees::{self, Tree};
use super::{SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::Aggregate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierKind {
    LogisticRegression,
    LinearSvm,
    RbfSvm,
    RandomForest,
    GradientBoosting,
    NaiveBayes,
}

impl ClassifierKind {
    pub const ALL: [ClassifierKind; 6] = [
        ClassifierKind::LogisticRegression,
        ClassifierKind::LinearSvm,
        ClassifierKind::RbfSvm,
        ClassifierKind::RandomForest,
        ClassifierKind::GradientBoosting,
        ClassifierKind::NaiveBayes,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ClassifierKind::LogisticRegression => "Logistic regression",
            ClassifierKind::LinearSvm => "Linear SVM (Platt)",
            ClassifierKind::RbfSvm => "RBF SVM (random features, Platt)",
            ClassifierKind::RandomForest => "Random forest",
            ClassifierKind::GradientBoosting => "Gradient-boosted trees",
            ClassifierKind::NaiveBayes => "Gaussian naive Bayes",
        }
    }
}

/// Random Fourier features (Rahimi & Recht 2007): φ(z) = √(2/D)·cos(Ωz + b) with
/// Ω ~ N(0, 2γ) and b ~ U(0, 2π), so that φ(z)·φ(z') ≈ exp(−γ‖z − z'‖²). Ω and b come from
/// the seed alone (xorshift stream, Box–Muller), so every site and every scorer draws the
/// same map; values agree bit for bit on one platform and to rounding of `cos`/`ln` across.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomFeatures {
    pub count: u32,
    pub seed: u64,
    pub gamma: f64,
}

/// Most random features a site computes.
pub const MAX_RANDOM_FEATURES: u32 = 4096;

impl RandomFeatures {
    pub fn to_proto(self) -> crate::proto::RandomFeatures {
        crate::proto::RandomFeatures { count: self.count, seed: self.seed, gamma: self.gamma }
    }

    pub fn from_proto(p: &crate::proto::RandomFeatures) -> Result<Self, SiteRefusal> {
        if p.count == 0 || p.count > MAX_RANDOM_FEATURES || !(p.gamma > 0.0 && p.gamma.is_finite()) {
            return Err(SiteRefusal::InvalidParameters(format!("random features need 1 to {MAX_RANDOM_FEATURES} features and a positive gamma")));
        }
        Ok(RandomFeatures { count: p.count, seed: p.seed, gamma: p.gamma })
    }

    /// The map for rows of `width` columns.
    pub fn map(&self, width: usize) -> RandomFeatureMap {
        let mut state = self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed_f00d_cafe_d00d;
        if state == 0 {
            state = 1;
        }
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let sd = (2.0 * self.gamma).sqrt();
        let d = self.count as usize;
        let mut omega = Vec::with_capacity(d * width);
        for _ in 0..d * width {
            let (a, b) = (uniform(), uniform());
            omega.push(sd * (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos());
        }
        let offset = (0..d).map(|_| std::f64::consts::TAU * uniform()).collect();
        RandomFeatureMap { width, omega, offset }
    }
}

/// A drawn random-feature map.
pub struct RandomFeatureMap {
    width: usize,
    omega: Vec<f64>,
    offset: Vec<f64>,
}

impl RandomFeatureMap {
    pub fn apply(&self, z: &[f64]) -> Vec<f64> {
        let scale = (2.0 / self.offset.len() as f64).sqrt();
        self.offset.iter().enumerate().map(|(k, b)| scale * (dot(&self.omega[k * self.width..(k + 1) * self.width], z) + b).cos()).collect()
    }
}

/// A fitted model on the standardised design: everything needed to score a patient.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scorer {
    Logistic {
        intercept: f64,
        coefficients: Vec<f64>,
    },
    LinearSvm {
        intercept: f64,
        coefficients: Vec<f64>,
        platt_a: f64,
        platt_b: f64,
    },
    NaiveBayes {
        log_prior: [f64; 2],
        mean: [Vec<f64>; 2],
        variance: [Vec<f64>; 2],
    },
    /// Linear SVM on random Fourier features of the `width` design columns.
    RbfSvm {
        width: usize,
        features: RandomFeatures,
        intercept: f64,
        coefficients: Vec<f64>,
        platt_a: f64,
        platt_b: f64,
    },
    Forest {
        width: usize,
        trees: Vec<Tree>,
    },
    Boosted {
        width: usize,
        base_margin: f64,
        trees: Vec<Tree>,
    },
}

/// Forest probabilities are fractions and may be 0 or 1; their log-odds are taken at this
/// distance from the ends, well inside the score grid.
const PROBABILITY_FLOOR: f64 = 1e-9;

impl Scorer {
    pub fn width(&self) -> usize {
        match self {
            Scorer::Logistic { coefficients, .. } | Scorer::LinearSvm { coefficients, .. } => coefficients.len(),
            Scorer::NaiveBayes { mean, .. } => mean[0].len(),
            Scorer::RbfSvm { width, .. } | Scorer::Forest { width, .. } | Scorer::Boosted { width, .. } => *width,
        }
    }

    /// P(recurrence) for one standardised design row.
    pub fn probability(&self, z: &[f64]) -> f64 {
        sigmoid(self.log_odds(z))
    }

    /// log(P / (1 − P)) for one standardised design row, without saturating.
    pub fn log_odds(&self, z: &[f64]) -> f64 {
        match self {
            Scorer::Logistic { intercept, coefficients } => intercept + dot(coefficients, z),
            Scorer::LinearSvm { intercept, coefficients, platt_a, platt_b } => platt_a * (intercept + dot(coefficients, z)) + platt_b,
            Scorer::NaiveBayes { log_prior, mean, variance } => {
                let ll = |c: usize| {
                    log_prior[c]
                        + z.iter().zip(&mean[c]).zip(&variance[c]).map(|((x, m), v)| -0.5 * ((2.0 * std::f64::consts::PI * v).ln() + (x - m) * (x - m) / v)).sum::<f64>()
                };
                ll(1) - ll(0)
            }
            Scorer::RbfSvm { width, features, intercept, coefficients, platt_a, platt_b } => {
                let phi = features.map(*width).apply(z);
                platt_a * (intercept + dot(coefficients, &phi)) + platt_b
            }
            Scorer::Forest { trees, .. } => {
                let p = trees::forest_probability(trees, z).clamp(PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR);
                (p / (1.0 - p)).ln()
            }
            Scorer::Boosted { base_margin, trees, .. } => trees::boosted_margin(*base_margin, trees, z),
        }
    }

    /// Wire form: kind and a flat parameter vector (layout documented in the proto).
    pub fn to_proto(&self) -> crate::proto::ScorerSpec {
        use crate::proto::ScorerKind as K;
        let (kind, parameters) = match self {
            Scorer::Logistic { intercept, coefficients } => (K::Logistic, std::iter::once(*intercept).chain(coefficients.iter().copied()).collect()),
            Scorer::LinearSvm { intercept, coefficients, platt_a, platt_b } => {
                (K::LinearSvm, std::iter::once(*intercept).chain(coefficients.iter().copied()).chain([*platt_a, *platt_b]).collect())
            }
            Scorer::NaiveBayes { log_prior, mean, variance } => {
                (K::NaiveBayes, log_prior.iter().chain(&mean[0]).chain(&mean[1]).chain(&variance[0]).chain(&variance[1]).copied().collect())
            }
            Scorer::RbfSvm { features, intercept, coefficients, platt_a, platt_b, .. } => {
                let p = std::iter::once(*intercept).chain(coefficients.iter().copied()).chain([*platt_a, *platt_b]).collect();
                return crate::proto::ScorerSpec { kind: K::RbfSvm as i32, parameters: p, random_features: Some(features.to_proto()) };
            }
            Scorer::Forest { trees, .. } => (K::RandomForest, trees::write_trees(trees)),
            Scorer::Boosted { base_margin, trees, .. } => (K::BoostedTrees, std::iter::once(*base_margin).chain(trees::write_trees(trees)).collect()),
        };
        crate::proto::ScorerSpec { kind: kind as i32, parameters, random_features: None }
    }

    pub fn from_proto(s: &crate::proto::ScorerSpec, width: usize) -> Result<Self, SiteRefusal> {
        use crate::proto::ScorerKind as K;
        let p = &s.parameters;
        let bad = || SiteRefusal::InvalidParameters(format!("scorer has {} parameters for a design of {width} columns", p.len()));
        if p.iter().any(|v| !v.is_finite()) {
            return Err(SiteRefusal::InvalidParameters("non-finite scorer parameter".into()));
        }
        match K::try_from(s.kind) {
            Ok(K::Logistic) if p.len() == width + 1 => Ok(Scorer::Logistic { intercept: p[0], coefficients: p[1..].to_vec() }),
            Ok(K::LinearSvm) if p.len() == width + 3 => {
                Ok(Scorer::LinearSvm { intercept: p[0], coefficients: p[1..=width].to_vec(), platt_a: p[width + 1], platt_b: p[width + 2] })
            }
            Ok(K::NaiveBayes) if p.len() == 2 + 4 * width => {
                let v = |k: usize| p[2 + k * width..2 + (k + 1) * width].to_vec();
                let variance = [v(2), v(3)];
                if variance.iter().flatten().any(|x| *x <= 0.0) {
                    return Err(SiteRefusal::InvalidParameters("naive Bayes variances must be positive".into()));
                }
                Ok(Scorer::NaiveBayes { log_prior: [p[0], p[1]], mean: [v(0), v(1)], variance })
            }
            Ok(K::RbfSvm) => {
                let features =
                    RandomFeatures::from_proto(s.random_features.as_ref().ok_or_else(|| SiteRefusal::InvalidParameters("RBF SVM without its random features".into()))?)?;
                let d = features.count as usize;
                if p.len() != d + 3 {
                    return Err(bad());
                }
                Ok(Scorer::RbfSvm { width, features, intercept: p[0], coefficients: p[1..=d].to_vec(), platt_a: p[d + 1], platt_b: p[d + 2] })
            }
            Ok(K::RandomForest) => {
                let mut pos = 0;
                let trees = trees::read_trees(p, &mut pos, width)?;
                if pos != p.len() || trees.is_empty() {
                    return Err(bad());
                }
                Ok(Scorer::Forest { width, trees })
            }
            Ok(K::BoostedTrees) if !p.is_empty() => {
                let mut pos = 1;
                let trees = trees::read_trees(p, &mut pos, width)?;
                if pos != p.len() {
                    return Err(bad());
                }
                Ok(Scorer::Boosted { width, base_margin: p[0], trees })
            }
            Ok(K::Logistic | K::LinearSvm | K::NaiveBayes | K::BoostedTrees) => Err(bad()),
            _ => Err(SiteRefusal::InvalidParameters(format!("unknown scorer kind {}", s.kind))),
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A fitted model as the study saves it: everything needed to score a new patient at a site
/// (`site-agent predict`): how to extract and pick its features, its clinical columns, the
/// standardiser, the scorer and the decision threshold.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelFile {
    pub study_id: String,
    pub sequence: String,
    pub model: String,
    pub classifier: ClassifierKind,
    /// Feature columns of the sequence's table, and that table's catalogue digest.
    pub features: Vec<String>,
    pub feature_columns: Vec<u32>,
    pub catalogue_sha256: String,
    /// Extraction settings (PyRadiomics YAML; empty = FedRad's MRI default).
    pub extraction_parameters: String,
    pub clinical_variables: Vec<crate::clinical::VariableSpec>,
    pub clinical_columns: Vec<u32>,
    pub standardiser: super::glm::Standardiser,
    pub scorer: Scorer,
    /// Probability at or above which a patient is called positive (Youden on training).
    pub threshold: f64,
    /// The study harmonised the features with ComBat before fitting: a site scoring new
    /// patients harmonises them first with its own adjustment (`site-agent predict
    /// --harmonisation`). Absent when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combat: Option<super::combat::CombatSettings>,
    /// Per harmonised part of the model's table (`t1c`, `t1c.deep`): the SHA-256 of the
    /// estimates the study sent ([`super::combat::estimates_sha256`]); a site's record must
    /// match it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub combat_estimates: std::collections::BTreeMap<String, String>,
    /// For a model with deep features (a `+deep` table): how the study computed them, so a
    /// site can compute them for a new patient. Absent for radiomic-only models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep: Option<DeepRecipe>,
    /// For a model on both sequences with deep features (`t1c+t2+deep`): each sequence's
    /// recipe, by sequence (`deep` is then absent).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub deep_per_sequence: std::collections::BTreeMap<String, DeepRecipe>,
}

impl ModelFile {
    /// How the study computed `sequence`'s deep features for this model, if it has them.
    pub fn deep_recipe(&self, sequence: &str) -> Option<&DeepRecipe> {
        match super::extraction::parse_table(&self.sequence) {
            Some(t) if t.is_joint() => self.deep_per_sequence.get(sequence),
            _ => self.deep.as_ref(),
        }
    }
}

/// The deep features of a model: the study's federated encoder, named by the SHA-256 of its
/// final weights (the weights themselves are in the study's `deep/<sequence>/weights.json`),
/// or a study-supplied ONNX network (`network`: its file name, SHA-256 and input recipe; the
/// file itself is the one hospital IT placed in the site's networks folder).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeepRecipe {
    pub architecture: Option<super::encoder::Architecture>,
    pub weights_sha256: String,
    /// Where the study wrote the weights, relative to its output folder.
    pub weights_file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::plan::OnnxNetwork>,
}

// ---- site half: the squared-hinge round and the Platt round -------------------------------

/// Σ over the training rows of the squared hinge loss at (intercept, w): "loss", "gradient"
/// (q + 1, intercept first) and the generalised Hessian "hessian" over the margin violators.
pub fn site_squared_hinge(z: &[Vec<f64>], y: &[bool], parameters: &[f64], min_count: u64, max_ratio: f64) -> Result<Aggregate, SiteRefusal> {
    let q = parameters.len();
    check_population(z.len(), y, q, min_count, max_ratio)?;
    let mut loss = 0.0;
    let mut g = vec![0.0; q];
    let mut h = vec![0.0; q * q];
    let mut row = vec![0.0; q];
    for (zi, &yi) in z.iter().zip(y) {
        row[0] = 1.0;
        row[1..].copy_from_slice(zi);
        let s = if yi { 1.0 } else { -1.0 };
        let margin = 1.0 - s * dot(parameters, &row);
        if margin > 0.0 {
            loss += margin * margin;
            for a in 0..q {
                g[a] += -2.0 * margin * s * row[a];
                for b in a..q {
                    h[a * q + b] += 2.0 * row[a] * row[b];
                }
            }
        }
    }
    symmetrise(&mut h, q);
    Ok(AggregateBuilder::new(z.len() as u64).scalar("loss", loss).vector("gradient", g).matrix("hessian", q, q, h).build())
}

/// The Platt round: logistic log-likelihood, gradient and information of (B, A) for the
/// SVM's decision values fᵢ on the training rows.
pub fn site_platt(z: &[Vec<f64>], y: &[bool], svm: &[f64], ab: [f64; 2], min_count: u64) -> Result<Aggregate, SiteRefusal> {
    check_population(z.len(), y, 2, min_count, 1.0)?;
    let (mut ll, mut g, mut h) = (0.0, [0.0; 2], [0.0; 4]);
    for (zi, &yi) in z.iter().zip(y) {
        let f = svm[0] + dot(&svm[1..], zi);
        let eta = ab[1] + ab[0] * f;
        let yv = yi as u8 as f64;
        ll += yv * eta - softplus(eta);
        let mu = sigmoid(eta);
        let w = mu * (1.0 - mu);
        let x = [1.0, f];
        for a in 0..2 {
            g[a] += (yv - mu) * x[a];
            for b in 0..2 {
                h[a * 2 + b] += w * x[a] * x[b];
            }
        }
    }
    Ok(AggregateBuilder::new(z.len() as u64).scalar("loglik", ll).vector("gradient", g.to_vec()).matrix("hessian", 2, 2, h.to_vec()).build())
}

fn check_population(n: usize, y: &[bool], q: usize, min_count: u64, max_ratio: f64) -> Result<(), SiteRefusal> {
    require_min_count("the training cohort of the model", n as u64, min_count)?;
    for class in [false, true] {
        let k = y.iter().filter(|&&v| v == class).count() as u64;
        require_min_count(&format!("training patients with a {} outcome", if class { "positive" } else { "negative" }), k, min_count)?;
    }
    if q > super::max_parameters(max_ratio, n as u64) {
        return Err(SiteRefusal::InvalidParameters(format!(
            "the model has {q} parameters for {n} training patients here, more than this site's policy allows ({max_ratio} per patient, fewer than the patients)"
        )));
    }
    Ok(())
}

fn symmetrise(h: &mut [f64], q: usize) {
    for a in 0..q {
        for b in 0..a {
            h[a * q + b] = h[b * q + a];
        }
    }
}

// ---- coordinator half: fitting -------------------------------------------------------------

/// Summed (objective part, gradient, Hessian) of one round.
pub type Totals = (f64, Vec<f64>, Vec<f64>);

/// Sums "loss"/"loglik", "gradient" and "hessian" over the sites.
pub fn combine_newton(answers: &[SiteAggregate], value: &str, q: usize) -> Result<Totals, super::CombineError> {
    if answers.is_empty() {
        return Err(super::CombineError::NoSites);
    }
    let (mut v, mut g, mut h) = (0.0, vec![0.0; q], vec![0.0; q * q]);
    for a in answers {
        v += a.scalar(value)?;
        for (x, y) in g.iter_mut().zip(a.vector("gradient", q)?) {
            *x += y;
        }
        for (x, y) in h.iter_mut().zip(a.vector("hessian", q * q)?) {
            *x += y;
        }
    }
    Ok((v, g, h))
}

/// Newton's method with step halving as a sequence of requests, so that a site can replay a
/// fit the coordinator runs (Flower's strategy idea: what to ask next, how to use the answer).
/// [`request`](Self::request) names the point to evaluate; [`absorb`](Self::absorb) takes the
/// minimised objective's (value, gradient, Hessian) there. A step that raises the objective is
/// halved (up to 40 times); the fit converges when every Newton step component is below 1e-10,
/// and stops after 200 evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct NewtonMinimiser {
    x: Vec<f64>,
    previous: Option<(Vec<f64>, f64)>,
    halvings: u32,
    rounds: u64,
    state: NewtonState,
}

#[derive(Debug, Clone, PartialEq)]
enum NewtonState {
    Running,
    Converged,
    Exhausted,
    Failed(String),
}

/// Evaluations before a fit stops unconverged.
const NEWTON_MAX_ROUNDS: u64 = 200;
/// Halvings of one step before it is taken anyway.
const NEWTON_MAX_HALVINGS: u32 = 40;

impl NewtonMinimiser {
    pub fn new(start: Vec<f64>) -> Self {
        NewtonMinimiser { x: start, previous: None, halvings: 0, rounds: 0, state: NewtonState::Running }
    }

    /// The point to evaluate next, or `None` when the fit is finished.
    pub fn request(&self) -> Option<&[f64]> {
        (self.state == NewtonState::Running).then_some(self.x.as_slice())
    }

    /// Uses (objective, gradient, Hessian) at the requested point.
    pub fn absorb(&mut self, (f, g, h): Totals) {
        if self.state != NewtonState::Running {
            return;
        }
        self.rounds += 1;
        let q = self.x.len();
        let halve = matches!(&self.previous, Some((_, pf)) if f > pf + 1e-12 * pf.abs().max(1.0)) && self.halvings < NEWTON_MAX_HALVINGS;
        if halve {
            self.halvings += 1;
            let (px, _) = self.previous.as_ref().expect("a previous point to halve towards");
            self.x = self.x.iter().zip(px).map(|(a, b)| 0.5 * (a + b)).collect();
        } else {
            self.halvings = 0;
            let Some(inv) = invert_spd(&h, q) else {
                self.state = NewtonState::Failed("the Hessian is singular (perfect separation or a constant column?)".into());
                return;
            };
            let step: Vec<f64> = (0..q).map(|a| -(0..q).map(|b| inv[a * q + b] * g[b]).sum::<f64>()).collect();
            if step.iter().all(|s| s.abs() < 1e-10) {
                self.state = NewtonState::Converged;
                return;
            }
            self.previous = Some((self.x.clone(), f));
            self.x = self.x.iter().zip(&step).map(|(a, s)| a + s).collect();
        }
        if self.rounds >= NEWTON_MAX_ROUNDS {
            self.state = NewtonState::Exhausted;
        }
    }

    /// The converged point (or the last one, unconverged after 200 evaluations), the
    /// evaluations it took and whether it converged; the reason if the fit failed.
    pub fn finish(self) -> Result<(Vec<f64>, u64, bool), String> {
        match self.state {
            NewtonState::Failed(reason) => Err(reason),
            NewtonState::Converged => Ok((self.x, self.rounds, true)),
            _ => Ok((self.x, self.rounds, false)),
        }
    }

    /// The converged point, once the fit has converged.
    pub fn converged(&self) -> Option<&[f64]> {
        (self.state == NewtonState::Converged).then_some(self.x.as_slice())
    }
}

/// Newton's method with step halving on an objective assembled from summed answers.
/// `evaluate(params)` returns (objective, gradient, Hessian) of the *minimised* objective.
pub async fn minimise(start: Vec<f64>, mut evaluate: impl AsyncFnMut(&[f64]) -> Result<Totals, String>) -> Result<(Vec<f64>, u64, bool), String> {
    let mut m = NewtonMinimiser::new(start);
    while let Some(x) = m.request() {
        let x = x.to_vec();
        m.absorb(evaluate(&x).await?);
    }
    m.finish()
}

/// Turns summed logistic answers (log-likelihood, its gradient, the information) into the
/// minimised objective −ℓ + ‖β‖²/(2C) (intercept unpenalised).
pub fn ridge_logistic_objective(t: Totals, beta: &[f64], c: f64) -> Totals {
    let (ll, g, mut h) = t;
    let q = beta.len();
    let pen: f64 = beta[1..].iter().map(|b| b * b).sum::<f64>() / (2.0 * c);
    let grad: Vec<f64> = (0..q).map(|a| -g[a] + if a > 0 { beta[a] / c } else { 0.0 }).collect();
    for a in 1..q {
        h[a * q + a] += 1.0 / c;
    }
    (-ll + pen, grad, h)
}

/// liblinear's primal objective ½‖(b, w)‖² + C·Σ hinge² from summed squared-hinge answers.
pub fn svm_objective(t: Totals, params: &[f64], c: f64) -> Totals {
    let (loss, g, h) = t;
    let q = params.len();
    let grad: Vec<f64> = (0..q).map(|a| params[a] + c * g[a]).collect();
    let hess: Vec<f64> = (0..q * q).map(|k| c * h[k] + if k / q == k % q { 1.0 } else { 0.0 }).collect();
    (0.5 * dot(params, params) + c * loss, grad, hess)
}

/// The penalty of a site-alone baseline (a logistic regression on one site's patients).
pub const SITE_ALONE_C: f64 = 1.0;

/// What a classifier's Newton fit minimises, assembled from one round's summed answers: the
/// coordinator and each site's replay of the fit ([`NewtonReplica`]) use the same arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NewtonObjective {
    /// −ℓ + ‖β‖²/(2C), intercept unpenalised, from logistic answers over every design column.
    RidgeLogistic { c: f64 },
    /// ½‖(b, w)‖² + C·Σ hinge², from squared-hinge answers.
    SquaredHinge { c: f64 },
    /// Platt's −ℓ(A, B) over the SVM's decision values, from Platt answers.
    Platt,
}

impl NewtonObjective {
    /// Where the fit starts: zero coefficients, or Platt's (A, B) = (1, 0).
    pub fn start(self, q: usize) -> Vec<f64> {
        match self {
            NewtonObjective::Platt => vec![1.0, 0.0],
            _ => vec![0.0; q],
        }
    }

    /// (objective, gradient, Hessian) at `x` from the round's answers (summed over the sites,
    /// or one site's).
    pub fn totals(self, answers: &[SiteAggregate], x: &[f64]) -> Result<Totals, super::CombineError> {
        match self {
            NewtonObjective::RidgeLogistic { c } => {
                let model = super::logistic::ModelPoint { columns: (0..x.len().saturating_sub(1)).collect(), coefficients: x.to_vec() };
                let (_, ll, g, h) = super::logistic::combine(answers, &[model])?.remove(0);
                Ok(ridge_logistic_objective((ll, g, h), x, c))
            }
            NewtonObjective::SquaredHinge { c } => Ok(svm_objective(combine_newton(answers, "loss", x.len())?, x, c)),
            NewtonObjective::Platt => {
                let (ll, g, h) = combine_newton(answers, "loglik", 2)?;
                Ok((-ll, vec![-g[1], -g[0]], vec![h[3], h[1], h[2], h[0]]))
            }
        }
    }
}

// ---- site half: recomputation ---------------------------------------------------------------

/// What a site checks of a classifier fit beyond each round's bounds: that every point is the
/// one the fit's Newton iteration asks for next from the sums of the sites' signed answers to
/// its previous round (as [`super::lasso::LassoReplica`] does for the LASSO; `site-agent`'s
/// `replay` checks and sums the answers).
///
/// Why: a classifier round at a point the coordinator chooses is a Hessian block of a
/// population it chooses — with a C search, the training patients and those outside one fold
/// at one point differ by that fold alone, and two such points gave every training row and
/// outcome in 40 tasks (`cargo test -p site-agent --test attacks fold_differenced_classifier`) —
/// and any point answered counted as a fitted model the site would then score. Replayed, the
/// points are the fit's own: a deterministic function of the plan's penalty, the population
/// and the data.
#[derive(Debug, Clone)]
pub struct NewtonReplica {
    objective: NewtonObjective,
    minimiser: NewtonMinimiser,
}

impl NewtonReplica {
    pub fn new(objective: NewtonObjective, q: usize) -> Self {
        NewtonReplica { objective, minimiser: NewtonMinimiser::new(objective.start(q)) }
    }

    /// Checks that `parameters` are the point the fit evaluates next.
    pub fn expect(&self, parameters: &[f64]) -> Result<(), SiteRefusal> {
        match self.minimiser.request() {
            Some(x) if x == parameters => Ok(()),
            Some(_) => Err(SiteRefusal::InvalidParameters(
                "classifier recomputation: the parameters are not the point the fit's Newton iteration asks for next from the sums of the sites' answers so far; this site answers only the study's own points".into(),
            )),
            None => Err(SiteRefusal::InvalidParameters("classifier recomputation: the fit is finished".into())),
        }
    }

    /// Feeds the sum of every site's answer to the point the fit asked for last.
    pub fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        let x = self.minimiser.request().ok_or_else(|| SiteRefusal::InvalidParameters("classifier recomputation: the fit asked for no further round".into()))?.to_vec();
        let totals = self
            .objective
            .totals(std::slice::from_ref(sum), &x)
            .map_err(|e| SiteRefusal::InvalidParameters(format!("classifier recomputation: the previous round's answers: {e}")))?;
        self.minimiser.absorb(totals);
        Ok(())
    }

    /// The fit's result once it has finished (converged, or stopped after its most rounds).
    pub fn finished(&self) -> Option<Vec<f64>> {
        if self.minimiser.request().is_some() {
            return None;
        }
        self.minimiser.clone().finish().ok().map(|r| r.0)
    }
}

/// A classifier fit as a site replays it: a logistic regression's Newton fit, or an SVM's
/// squared-hinge fit followed, once it has finished, by the Platt fit on its result (one run,
/// so that the Platt rounds can only name the SVM the site itself saw fitted).
#[derive(Debug, Clone)]
pub enum FitReplica {
    Logistic(NewtonReplica),
    Svm { hinge: NewtonReplica, platt: Option<NewtonReplica> },
}

impl FitReplica {
    /// A logistic fit with penalty `c` over `q` parameters (intercept first).
    pub fn logistic(c: f64, q: usize) -> Self {
        FitReplica::Logistic(NewtonReplica::new(NewtonObjective::RidgeLogistic { c }, q))
    }

    /// An SVM fit with penalty `c` over `q` parameters, then its Platt fit.
    pub fn svm(c: f64, q: usize) -> Self {
        FitReplica::Svm { hinge: NewtonReplica::new(NewtonObjective::SquaredHinge { c }, q), platt: None }
    }

    /// Checks a round of `objective` at `parameters` (and, for Platt, the SVM `svm` it scales).
    pub fn expect(&self, objective: crate::proto::ClassifierObjective, parameters: &[f64], svm: &[f64]) -> Result<(), SiteRefusal> {
        use crate::proto::ClassifierObjective as O;
        let out_of_turn = |what: &str| Err(SiteRefusal::InvalidParameters(format!("classifier recomputation: {what}")));
        match (self, objective) {
            (FitReplica::Logistic(r), O::Logistic) => r.expect(parameters),
            (FitReplica::Svm { hinge, platt: None }, O::SquaredHinge) => hinge.expect(parameters),
            (FitReplica::Svm { hinge, platt: Some(p) }, O::Platt) => {
                if hinge.finished().as_deref() != Some(svm) {
                    return out_of_turn("the Platt round scales an SVM other than the one this fit reached");
                }
                p.expect(parameters)
            }
            (FitReplica::Svm { platt: Some(_), .. }, O::SquaredHinge) => out_of_turn("the SVM fit is finished; its Platt fit is due"),
            (FitReplica::Svm { platt: None, .. }, O::Platt) => out_of_turn("the SVM fit is not finished, so its Platt fit is not due"),
            _ => out_of_turn("a round of another objective than the fit's"),
        }
    }

    /// Whether a scored model is exactly what the fit reached, once the replica has absorbed
    /// the sum of the sites' answers to its last round: a logistic regression's final point
    /// (`platt` none), or an SVM's final point and its Platt scaling `[A, B]`. A site scores a
    /// model it fitted only then (issue 17, property 5): an iterate the fit passed through, or
    /// the SVM of one fit with the Platt scaling of another, is not a fitted model.
    pub fn expect_fitted(&self, model: &[f64], platt: Option<[f64; 2]>) -> Result<(), SiteRefusal> {
        let bad = |m: &str| Err(SiteRefusal::InvalidParameters(format!("classifier recomputation: {m}; this site scores only the model its fit reached")));
        let reached = |r: &NewtonReplica, x: &[f64], what: &str| match r.finished() {
            None => bad(&format!("the {what} fit is not finished: its Newton iteration asks for a further point")),
            Some(b) if b != x => bad(&format!("the scored {what} parameters are not the point the fit reached from the sums of the sites' answers")),
            Some(_) => Ok(()),
        };
        match (self, platt) {
            (FitReplica::Logistic(r), None) => reached(r, model, "logistic"),
            (FitReplica::Svm { hinge, platt: Some(p) }, Some(ab)) => {
                reached(hinge, model, "SVM")?;
                reached(p, &ab, "Platt")
            }
            (FitReplica::Svm { platt: None, .. }, Some(_)) => bad("the SVM fit is not finished, so it has no Platt scaling yet"),
            _ => bad("a model of another kind than the fit's"),
        }
    }

    /// Feeds the sum of every site's answer to the round the fit asked for last.
    pub fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        match self {
            FitReplica::Logistic(r) => r.absorb(sum),
            FitReplica::Svm { platt: Some(p), .. } => p.absorb(sum),
            FitReplica::Svm { hinge, platt } => {
                hinge.absorb(sum)?;
                if hinge.finished().is_some() {
                    *platt = Some(NewtonReplica::new(NewtonObjective::Platt, 2));
                }
                Ok(())
            }
        }
    }
}

/// One value of a hyperparameter grid and its cross-validated AUC.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CvPoint {
    pub c: f64,
    pub auc: f64,
}

/// Chooses C by K-fold cross-validation on the folds the sites recorded: for every C and fold
/// k, `fit(c, k)` fits the classifier without fold k's patients; `oof_auc(scorers)` (scorers
/// C-major, fold k at index g·K + k − 1) has each site score every training patient with the
/// model that did not see it and returns, per C, the AUC of those out-of-fold scores pooled
/// over folds and sites. The best AUC wins; ties (within 1e-9) go to the smaller C, the
/// stronger penalty.
/// `context` is handed to both callbacks (the coordinator passes its connection to the sites).
pub async fn cv_search<C>(
    context: &mut C,
    grid: &[f64],
    folds: u32,
    mut fit: impl AsyncFnMut(&mut C, f64, u32) -> Result<Scorer, String>,
    oof_auc: impl AsyncFnOnce(&mut C, &[Scorer]) -> Result<Vec<f64>, String>,
) -> Result<(f64, Vec<CvPoint>), String> {
    let mut grid = grid.to_vec();
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    if grid.is_empty() || folds < 2 {
        return Err("a search needs at least one value and two folds".into());
    }
    let mut scorers = Vec::with_capacity(grid.len() * folds as usize);
    for &c in &grid {
        for k in 1..=folds {
            scorers.push(fit(context, c, k).await?);
        }
    }
    let auc = oof_auc(context, &scorers).await?;
    if auc.len() != grid.len() {
        return Err("the cross-validation answered a different number of grid values".into());
    }
    let points: Vec<CvPoint> = grid.iter().zip(&auc).map(|(&c, &auc)| CvPoint { c, auc }).collect();
    let best = points.iter().map(|p| p.auc).fold(f64::NEG_INFINITY, f64::max);
    let chosen = points.iter().find(|p| p.auc >= best - 1e-9).map_or(grid[0], |p| p.c);
    Ok((chosen, points))
}

/// Gaussian naive Bayes from the merged class moments of the design.
pub fn naive_bayes(moments: &FeatureMoments) -> Scorer {
    let width = moments.by_class[0].len();
    let n: f64 = moments.by_class[0].first().map_or(0.0, |m| m.n) + moments.by_class[1].first().map_or(0.0, |m| m.n);
    let total_var = (0..width).map(|j| {
        let all = moments.by_class[0][j].merge(moments.by_class[1][j]);
        all.m2 / all.n
    });
    let epsilon = 1e-9 * total_var.fold(0.0, f64::max);
    let class = |c: usize| {
        let m = &moments.by_class[c];
        (m.iter().map(|x| x.mean).collect::<Vec<_>>(), m.iter().map(|x| x.m2 / x.n + epsilon).collect::<Vec<_>>(), m.first().map_or(0.0, |x| x.n))
    };
    let (m0, v0, n0) = class(0);
    let (m1, v1, n1) = class(1);
    Scorer::NaiveBayes { log_prior: [(n0 / n).ln(), (n1 / n).ln()], mean: [m0, m1], variance: [v0, v1] }
}

// ---- what a site accepts ------------------------------------------------------------------

impl Scorer {
    /// The classifier a scorer is an instance of.
    pub fn kind(&self) -> ClassifierKind {
        match self {
            Scorer::Logistic { .. } => ClassifierKind::LogisticRegression,
            Scorer::LinearSvm { .. } => ClassifierKind::LinearSvm,
            Scorer::RbfSvm { .. } => ClassifierKind::RbfSvm,
            Scorer::NaiveBayes { .. } => ClassifierKind::NaiveBayes,
            Scorer::Forest { .. } => ClassifierKind::RandomForest,
            Scorer::Boosted { .. } => ClassifierKind::GradientBoosting,
        }
    }

    /// The trees of a tree ensemble (none for the other scorers).
    pub fn trees(&self) -> &[Tree] {
        match self {
            Scorer::Forest { trees, .. } | Scorer::Boosted { trees, .. } => trees,
            _ => &[],
        }
    }
}

/// A model a site scores or fits is accepted only with bounded parameters on the standardised
/// scale ([`super::glm::accept_coefficients`]): linear coefficients, intercepts, Platt's A and
/// B, boosting margins and leaf values within ±`max_coefficient`; naive Bayes means within it.
/// (Naive Bayes variances are not floored: the honest fit's variance of a clinical level absent
/// from one class is near zero. A narrow Gaussian is a membership test for one value, which is
/// why unverifiable scorers are budgeted by the site's ledger.) Tree depth and size are the
/// plan's ([`super::trees::site_accepts_tree_round`]).
pub fn site_accepts_scorer(s: &Scorer, max_coefficient: f64) -> Result<(), SiteRefusal> {
    use super::glm::accept_coefficients;
    let what = format!("the {} model", s.kind().label());
    match s {
        Scorer::Logistic { intercept, coefficients } => accept_coefficients(&what, &[&[*intercept][..], coefficients].concat(), max_coefficient),
        Scorer::LinearSvm { intercept, coefficients, platt_a, platt_b } | Scorer::RbfSvm { intercept, coefficients, platt_a, platt_b, .. } => {
            accept_coefficients(&what, &[&[*intercept, *platt_a, *platt_b][..], coefficients].concat(), max_coefficient)
        }
        Scorer::NaiveBayes { mean, .. } => accept_coefficients(&what, &[&mean[0][..], &mean[1][..]].concat(), max_coefficient),
        Scorer::Forest { .. } => Ok(()),
        Scorer::Boosted { base_margin, trees, .. } => {
            let leaves: Vec<f64> = trees.iter().flat_map(|t| t.nodes.iter().map(|n| n.value)).collect();
            accept_coefficients(&what, &[&[*base_margin][..], &leaves].concat(), max_coefficient)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::block_on_ready;
    use crate::algorithms::lasso::tests::{cohort, standardiser};
    use crate::algorithms::{logistic, standardise};

    use crate::algorithms::testdata::site_ranges as split;

    /// The four non-tree classifiers fitted over the given partition (trees: `super::trees`).
    fn fit_all(z: &[Vec<f64>], y: &[bool], sizes: &[usize]) -> Vec<Scorer> {
        let sites = split(sizes);
        let q = z[0].len() + 1;
        let ask_logistic = async |beta: &[f64]| -> Result<Totals, String> {
            let model = logistic::ModelPoint { columns: (0..q - 1).collect(), coefficients: beta.to_vec() };
            let answers: Vec<SiteAggregate> = sites
                .iter()
                .enumerate()
                .map(|(k, r)| {
                    SiteAggregate::new(format!("s{k}"), logistic::site_round(&z[r.clone()], &y[r.clone()], std::slice::from_ref(&model), 1, f64::INFINITY).unwrap())
                })
                .collect();
            let t = logistic::combine(&answers, std::slice::from_ref(&model)).unwrap().remove(0);
            Ok(ridge_logistic_objective((t.1, t.2, t.3), beta, 1.0))
        };
        let (lr, _, ok) = block_on_ready(minimise(vec![0.0; q], ask_logistic)).unwrap();
        assert!(ok);
        // Linear SVM then Platt scaling, on the rows given (the design, or its random features).
        let fit_svm = |rows: &[Vec<f64>]| {
            let q = rows[0].len() + 1;
            let ask_svm = async |w: &[f64]| -> Result<Totals, String> {
                let answers: Vec<SiteAggregate> = sites
                    .iter()
                    .enumerate()
                    .map(|(k, r)| SiteAggregate::new(format!("s{k}"), site_squared_hinge(&rows[r.clone()], &y[r.clone()], w, 1, f64::INFINITY).unwrap()))
                    .collect();
                Ok(svm_objective(combine_newton(&answers, "loss", q).unwrap(), w, 1.0))
            };
            let (svm, _, ok) = block_on_ready(minimise(vec![0.0; q], ask_svm)).unwrap();
            assert!(ok);
            let ask_platt = async |ab: &[f64]| -> Result<Totals, String> {
                let answers: Vec<SiteAggregate> = sites
                    .iter()
                    .enumerate()
                    .map(|(k, r)| SiteAggregate::new(format!("s{k}"), site_platt(&rows[r.clone()], &y[r.clone()], &svm, [ab[0], ab[1]], 1).unwrap()))
                    .collect();
                let (ll, g, h) = combine_newton(&answers, "loglik", 2).unwrap();
                // Parameters are (A, B); the site's gradient is ordered (B, A).
                Ok((-ll, vec![-g[1], -g[0]], vec![h[3], h[1], h[2], h[0]]))
            };
            let (ab, _, ok) = block_on_ready(minimise(vec![1.0, 0.0], ask_platt)).unwrap();
            assert!(ok);
            (svm, ab)
        };
        let (svm, ab) = fit_svm(z);
        let features = RandomFeatures { count: 24, seed: 11, gamma: 1.0 / (q - 1) as f64 };
        let map = features.map(q - 1);
        let phi: Vec<Vec<f64>> = z.iter().map(|r| map.apply(r)).collect();
        let (rbf, rbf_ab) = fit_svm(&phi);
        let parts: Vec<(&[Vec<f64>], &[bool])> = sites.iter().map(|r| (&z[r.clone()], &y[r.clone()])).collect();
        let nb = naive_bayes(&standardise::federated(&parts, q - 1, |answers| answers));
        vec![
            Scorer::Logistic { intercept: lr[0], coefficients: lr[1..].to_vec() },
            Scorer::LinearSvm { intercept: svm[0], coefficients: svm[1..].to_vec(), platt_a: ab[0], platt_b: ab[1] },
            Scorer::RbfSvm { width: q - 1, features, intercept: rbf[0], coefficients: rbf[1..].to_vec(), platt_a: rbf_ab[0], platt_b: rbf_ab[1] },
            nb,
        ]
    }

    fn data() -> (Vec<Vec<f64>>, Vec<bool>) {
        let (x, y, _) = cohort(21);
        let x: Vec<Vec<f64>> = x.iter().map(|r| r[..8].to_vec()).collect();
        let z = standardiser(&x).apply(&x).unwrap();
        (z, y.iter().map(|v| *v == 1.0).collect())
    }

    /// Recomputation: over 1, 4 and 7 sites a site's replica of a logistic fit and of an SVM
    /// fit with its Platt fit, fed only the sums of the sites' answers (in fixed point, as the
    /// coordinator sums them), expects exactly the coordinator's points in every round and
    /// refuses any other (here: the point moved by 1e-9, or a Platt round on another SVM).
    #[test]
    fn a_site_replica_follows_each_fit_and_refuses_any_other_point() {
        use crate::algorithms::lasso::sum_of_answers;
        use crate::proto::ClassifierObjective as O;
        let (z, y) = data();
        let q = z[0].len() + 1;
        for sizes in [&[229][..], &[73, 62, 53, 41], &[25, 60, 21, 40, 17, 50, 16]] {
            let sites = split(sizes);
            let answers = |x: &[f64], objective: O, svm: &[f64]| -> SiteAggregate {
                let per_site: Vec<SiteAggregate> = sites
                    .iter()
                    .enumerate()
                    .map(|(k, r)| {
                        let (zr, yr) = (&z[r.clone()], &y[r.clone()]);
                        let a = match objective {
                            O::Logistic => {
                                logistic::site_round(zr, yr, &[logistic::ModelPoint { columns: (0..q - 1).collect(), coefficients: x.to_vec() }], 1, f64::INFINITY)
                            }
                            O::SquaredHinge => site_squared_hinge(zr, yr, x, 1, f64::INFINITY),
                            _ => site_platt(zr, yr, svm, [x[0], x[1]], 1),
                        };
                        SiteAggregate::new(format!("s{k}"), a.unwrap())
                    })
                    .collect();
                sum_of_answers(&per_site).unwrap()
            };
            // The coordinator's fits, each round checked against the site's replica first.
            let fit = |replica: &mut FitReplica, objective: NewtonObjective, proto_objective: O, q: usize, svm: &[f64]| -> Vec<f64> {
                let mut newton = NewtonMinimiser::new(objective.start(q));
                let mut rounds = 0;
                while let Some(x) = newton.request() {
                    let x = x.to_vec();
                    replica.expect(proto_objective, &x, svm).unwrap();
                    if proto_objective == O::Logistic {
                        assert!(replica.expect_fitted(&x, None).is_err(), "an iterate the fit has not finished at was scored");
                    }
                    let mut moved = x.clone();
                    moved[0] += 1e-9;
                    assert!(replica.expect(proto_objective, &moved, svm).is_err());
                    let sum = answers(&x, proto_objective, svm);
                    newton.absorb(objective.totals(std::slice::from_ref(&sum), &x).unwrap());
                    replica.absorb(&sum).unwrap();
                    rounds += 1;
                }
                assert!(rounds > 3, "{rounds} rounds");
                let (x, _, converged) = newton.finish().unwrap();
                assert!(converged);
                x
            };
            let mut logistic_replica = FitReplica::logistic(1.0, q);
            let beta = fit(&mut logistic_replica, NewtonObjective::RidgeLogistic { c: 1.0 }, O::Logistic, q, &[]);
            assert!(logistic_replica.expect(O::Logistic, &vec![0.0; q], &[]).is_err(), "the fit is finished");
            // What the site scores: the point the fit reached, to the last bit.
            logistic_replica.expect_fitted(&beta, None).unwrap();
            let mut moved = beta.clone();
            moved[1] = f64::from_bits(moved[1].to_bits() + 1);
            assert!(logistic_replica.expect_fitted(&moved, None).is_err(), "a point one ulp from the fit's was scored");
            assert!(logistic_replica.expect_fitted(&vec![0.0; q], None).is_err(), "the fit's starting point was scored");
            assert!(logistic_replica.expect_fitted(&beta, Some([1.0, 0.0])).is_err(), "an SVM on a logistic fit was scored");
            let mut svm_replica = FitReplica::svm(1.0, q);
            assert!(svm_replica.expect(O::Platt, &[1.0, 0.0], &vec![0.0; q]).is_err(), "Platt before the SVM");
            let w = fit(&mut svm_replica, NewtonObjective::SquaredHinge { c: 1.0 }, O::SquaredHinge, q, &[]);
            let mut other = w.clone();
            other[1] += 1e-9;
            assert!(svm_replica.expect(O::Platt, &[1.0, 0.0], &other).is_err(), "a Platt round on another SVM");
            assert!(svm_replica.expect_fitted(&w, Some([1.0, 0.0])).is_err(), "an SVM before its Platt fit ended was scored");
            let ab = fit(&mut svm_replica, NewtonObjective::Platt, O::Platt, 2, &w);
            let ab = [ab[0], ab[1]];
            svm_replica.expect_fitted(&w, Some(ab)).unwrap();
            assert!(svm_replica.expect_fitted(&other, Some(ab)).is_err(), "another SVM with the fit's Platt scaling was scored");
            assert!(svm_replica.expect_fitted(&w, Some([ab[0] * 2.0, ab[1]])).is_err(), "another Platt scaling was scored");
        }
    }

    #[test]
    fn partition_classifiers_1_4_and_7_uneven_sites_equal_pooled() {
        let (z, y) = data();
        let reference = fit_all(&z, &y, &[229]);
        for sizes in [&[73, 62, 53, 41][..], &[25, 60, 21, 40, 17, 50, 16]] {
            let other = fit_all(&z, &y, sizes);
            for (a, b) in other.iter().zip(&reference) {
                for row in z.iter().take(50) {
                    assert!((a.probability(row) - b.probability(row)).abs() < 1e-9, "{a:?} vs {b:?}");
                }
            }
        }
        // The classifiers learn something on this cohort and agree roughly with each other.
        for s in &reference {
            let scores: Vec<f64> = z.iter().map(|r| s.probability(r)).collect();
            let (auc, _) = crate::algorithms::metrics::pooled_auc(&scores, &y);
            assert!(auc > 0.7, "{s:?}: AUC {auc}");
        }
    }

    /// Cross-validated C for logistic regression: the same choice and CV AUCs over 1, 4 and 7
    /// uneven sites as pooled, where the pooled reference refits on the rows of the other folds.
    #[test]
    fn partition_cv_search_equals_pooled() {
        let (z, y) = data();
        let fold: Vec<u32> = (0..z.len()).map(|i| (i % 5) as u32 + 1).collect();
        let grid = [0.001, 0.01, 1.0, 100.0];
        let run = |sizes: &[usize]| {
            let sites = split(sizes);
            let q = z[0].len() + 1;
            let fit = async |_: &mut (), c: f64, k: u32| -> Result<Scorer, String> {
                let ask = async |beta: &[f64]| -> Result<Totals, String> {
                    let model = logistic::ModelPoint { columns: (0..q - 1).collect(), coefficients: beta.to_vec() };
                    let answers: Vec<SiteAggregate> = sites
                        .iter()
                        .enumerate()
                        .map(|(s, r)| {
                            let keep: Vec<usize> = r.clone().filter(|&i| fold[i] != k).collect();
                            let zs: Vec<Vec<f64>> = keep.iter().map(|&i| z[i].clone()).collect();
                            let ys: Vec<bool> = keep.iter().map(|&i| y[i]).collect();
                            SiteAggregate::new(format!("s{s}"), logistic::site_round(&zs, &ys, std::slice::from_ref(&model), 1, f64::INFINITY).unwrap())
                        })
                        .collect();
                    let t = logistic::combine(&answers, std::slice::from_ref(&model)).unwrap().remove(0);
                    Ok(ridge_logistic_objective((t.1, t.2, t.3), beta, c))
                };
                let (b, _, _) = minimise(vec![0.0; q], ask).await?;
                Ok(Scorer::Logistic { intercept: b[0], coefficients: b[1..].to_vec() })
            };
            let oof = async |_: &mut (), scorers: &[Scorer]| -> Result<Vec<f64>, String> {
                let k = 5;
                Ok((0..scorers.len() / k)
                    .map(|g| {
                        let answers: Vec<SiteAggregate> = sites
                            .iter()
                            .enumerate()
                            .map(|(s, r)| {
                                let scores: Vec<(bool, f64)> = r.clone().map(|i| (y[i], scorers[g * k + fold[i] as usize - 1].log_odds(&z[i]))).collect();
                                SiteAggregate::new(format!("s{s}"), crate::algorithms::metrics::site_class_histograms(&scores, 100_000, 1).unwrap())
                            })
                            .collect();
                        crate::algorithms::metrics::combine_class_histograms(&answers, 100_000).unwrap().auc().0
                    })
                    .collect())
            };
            block_on_ready(cv_search(&mut (), &grid, 5, fit, oof)).unwrap()
        };
        let (c1, p1) = run(&[229]);
        for sizes in [&[73, 62, 53, 41][..], &[25, 60, 21, 40, 17, 50, 16]] {
            let (c, p) = run(sizes);
            assert_eq!(c, c1);
            for (a, b) in p.iter().zip(&p1) {
                assert!((a.auc - b.auc).abs() < 1e-12, "{a:?} vs {b:?}");
            }
        }
        // Pooled reference: out-of-fold predictions of an independent solver, ranked exactly.
        for point in &p1 {
            let mut scores = vec![0.0; z.len()];
            for k in 1..=5u32 {
                let keep: Vec<usize> = (0..z.len()).filter(|&i| fold[i] != k).collect();
                let zs: Vec<Vec<f64>> = keep.iter().map(|&i| z[i].clone()).collect();
                let ys: Vec<bool> = keep.iter().map(|&i| y[i]).collect();
                let beta = logistic_reference(&zs, &ys, point.c);
                for i in (0..z.len()).filter(|&i| fold[i] == k) {
                    // On the score grid, where out-of-fold scores of a heavily penalised model tie.
                    scores[i] = f64::from(crate::algorithms::metrics::score_cell(beta[0] + dot(&beta[1..], &z[i]), 100_000));
                }
            }
            let (auc, _) = crate::algorithms::metrics::pooled_auc(&scores, &y);
            assert!((auc - point.auc).abs() < 1e-4, "C = {}: {auc} vs {}", point.c, point.auc);
        }
        // The search discriminates: a tiny C shrinks everything and ranks worse than C = 1.
        let chosen = p1.iter().find(|p| p.c == c1).unwrap();
        assert!(p1.iter().all(|p| p.auc <= chosen.auc) && p1[0].auc < chosen.auc - 0.1, "{p1:?}");
    }

    /// Ridge logistic regression by plain gradient descent on all rows (an independent solver).
    fn logistic_reference(z: &[Vec<f64>], y: &[bool], c: f64) -> Vec<f64> {
        let q = z[0].len() + 1;
        let mut beta = vec![0.0; q];
        // Step 1/L with L bounding the objective's curvature: ¼Σ(1 + ‖zᵢ‖²) + 1/C.
        let lipschitz = 0.25 * z.iter().map(|r| 1.0 + dot(r, r)).sum::<f64>() + 1.0 / c;
        for _ in 0..20_000 {
            let mut g = vec![0.0; q];
            for (zi, &yi) in z.iter().zip(y) {
                let p = sigmoid(beta[0] + dot(&beta[1..], zi));
                let r = p - f64::from(u8::from(yi));
                g[0] += r;
                for j in 1..q {
                    g[j] += r * zi[j - 1];
                }
            }
            for j in 1..q {
                g[j] += beta[j] / c;
            }
            for j in 0..q {
                beta[j] -= g[j] / lipschitz;
            }
        }
        beta
    }

    #[test]
    fn random_fourier_features_approximate_the_rbf_kernel() {
        let features = RandomFeatures { count: 4000, seed: 3, gamma: 0.2 };
        let map = features.map(3);
        let pairs = [([0.0, 0.0, 0.0], [0.5, -0.5, 1.0]), ([1.0, 2.0, -1.0], [1.2, 1.5, -0.4]), ([0.3, 0.3, 0.3], [0.3, 0.3, 0.3])];
        for (a, b) in pairs {
            let exact = (-0.2 * a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>()).exp();
            let approx = dot(&map.apply(&a), &map.apply(&b));
            assert!((exact - approx).abs() < 0.05, "k = {exact}, φ·φ = {approx}");
        }
        // The same seed draws the same map; another seed another.
        assert_eq!(features.map(3).apply(&[0.1, 0.2, 0.3]), map.apply(&[0.1, 0.2, 0.3]));
        assert_ne!(RandomFeatures { seed: 4, ..features }.map(3).apply(&[0.1, 0.2, 0.3]), map.apply(&[0.1, 0.2, 0.3]));
    }

    #[test]
    fn every_scorer_travels_and_scores_the_same() {
        let (z, y) = data();
        let mut scorers = fit_all(&z, &y, &[229]);
        let leaf = |v: f64| trees::TreeNode { column: None, threshold: 0.0, children: [0, 0], value: v };
        let tree = Tree { nodes: vec![trees::TreeNode { column: Some(2), threshold: 0.1, children: [1, 2], value: 0.3 }, leaf(0.1), leaf(0.7)] };
        scorers.push(Scorer::Forest { width: 8, trees: vec![tree.clone(), tree.clone()] });
        scorers.push(Scorer::Boosted { width: 8, base_margin: -0.4, trees: vec![tree] });
        for s in &scorers {
            let back = Scorer::from_proto(&s.to_proto(), 8).unwrap();
            assert_eq!(&back, s);
            assert!(Scorer::from_proto(&s.to_proto(), 2).is_err() || matches!(s, Scorer::RbfSvm { .. }), "{s:?} accepted at another width");
            let json: Scorer = serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap();
            assert_eq!(json.log_odds(&z[0]), s.log_odds(&z[0]));
        }
        assert!((scorers[4].probability(&[0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]) - 0.7).abs() < 1e-12);
    }

    #[test]
    fn random_labels_give_a_validation_auc_near_one_half() {
        let (z, _) = data();
        let mut state = 0x9e37_79b9_u64;
        let y: Vec<bool> = z
            .iter()
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33).is_multiple_of(3)
            })
            .collect();
        let cut = 160;
        let scorers = fit_all(&z[..cut], &y[..cut], &[60, 50, 50]);
        for s in &scorers {
            let scores: Vec<f64> = z[cut..].iter().map(|r| s.log_odds(r)).collect();
            let (auc, se) = crate::algorithms::metrics::pooled_auc(&scores, &y[cut..]);
            assert!((auc - 0.5).abs() < 2.5 * se.max(0.05), "{s:?}: validation AUC {auc} ± {se} on random labels");
        }
    }

    #[test]
    fn scorers_round_trip_through_the_wire_form() {
        let (z, y) = data();
        for s in fit_all(&z, &y, &[229]) {
            assert_eq!(Scorer::from_proto(&s.to_proto(), 8).unwrap(), s);
            // The RBF SVM's width is that of its random features, not the design's.
            assert!(Scorer::from_proto(&s.to_proto(), 7).is_err() || matches!(s, Scorer::RbfSvm { .. }));
        }
    }

    #[test]
    fn too_many_parameters_for_a_site_is_refused() {
        let (z, y) = data();
        assert!(matches!(site_squared_hinge(&z[..20], &y[..20], &[0.0; 9], 1, 0.33), Err(SiteRefusal::InvalidParameters(_))));
    }
}
