//! ComBat harmonisation of site (scanner) effects, federated: the result of neuroCombat on the
//! pooled rows, while the coordinator learns only sums over sites.
//!
//! **Model** (Johnson et al. 2007; Fortin et al. 2017's neuroCombat): for feature j of patient
//! i at site s, yᵢⱼ = αⱼ + xᵢβⱼ + γₛⱼ + δₛⱼεᵢⱼ, with xᵢ the protected covariates (the outcome,
//! age, …) whose effects harmonisation must keep. neuroCombat fits, per feature, the least
//! squares regression of y on [site indicators | x] (coefficients γ̃ₛ, β), takes the grand mean
//! α = Σₛ (nₛ/N) γ̃ₛ and the pooled variance σ² = (1/N) Σᵢ (residualᵢ)², standardises
//! zᵢ = (yᵢ − α − xᵢβ)/σ, and then, **per site and on that site's z alone**, estimates the
//! site's location γ̂ (mean of z) and scale δ̂ (variance of z, n − 1) and shrinks them towards
//! priors fitted across the site's features (parametric: normal and inverse-gamma priors by the
//! method of moments, iterated to the posterior means; non-parametric: a likelihood-weighted
//! average over the site's other features). The harmonised value is
//! y*ᵢ = σ (zᵢ − γ*ₛ)/√δ*ₛ + α + xᵢβ.
//!
//! **Method: d-ComBat (Chen et al., NeuroImage 2022), in one round of sums.** Only the
//! regression needs other sites' patients, and by Frisch–Waugh–Lovell its covariate
//! coefficients are the within-site regression's: β = (Σₛ Xₛᶜᵀ Xₛᶜ)⁻¹ Σₛ Xₛᶜᵀ Yₛᶜ with each
//! site's rows centred on the site's own means. Then α = ȳ − x̄β (the n-weighted average of
//! the site intercepts γ̃ₛ = ȳₛ − x̄ₛβ) and N σ² = Σₛ Σᵢ (yᶜ − xᶜβ)² = Σₛ yᶜᵀyᶜ − (Σₛ Xᶜᵀyᶜ)ᵀβ.
//! So every site sends [`site_sums`] — its count, covariate and feature sums, and its centred
//! cross-products — the coordinator [`combine`]s them and computes
//! [`CombatSums::estimates`] (α, β, σ², x̄), and every site [`site_harmonise`]s its own rows:
//! z, γ̂, δ̂, the priors and γ*, δ* are not sent. Every quantity the coordinator uses is a sum
//! over sites (no site indicator column), which is what secure aggregation needs: in a study
//! that secure-sums, the sums travel masked, on their raw scales in wide fixed-point words
//! (`crate::secure_sum::encode_wide`), and the coordinator learns their totals only (each
//! site also answers a 1, so the total says how many sites took part).
//!
//! **Patients.** The estimation rows are the site's training patients with a feature row and
//! every covariate. Other patients (validation, or a covariate missing) are harmonised as
//! neuroCombat's `neuroCombatFromTraining` does: their covariate term is the training mean
//! x̄β, so a validation patient's outcome is never used.
//!
//! **Features not harmonised** (passed through unchanged, as [`CombatEstimates::harmonised`]
//! lists): a feature with a non-finite training value at any site (neuroCombat would fit it
//! on the finite ones; standardisation drops it anyway), and one whose pooled residual SD is at
//! most 1e-12·max(1, |mean|) (neuroCombat's replacement of a zero variance by a median of
//! booleans is a bug, not a method).
//!
//! **Site effect** ([`CombatSums::site_effect`]): per feature, the one-way ANOVA F test of the
//! site means over the estimation rows, from the same sums (between-site sum of squares
//! Σₛ Sₛ²/nₛ − S²/N, each site sending Sₛ²/nₛ; within-site Σₛ yᶜᵀyᶜ). Run on the raw and on the
//! harmonised values, it gives the share of features with a site effect before and after.
//!
//! **Pooled reference**: [`pooled`] is neuroCombat's computation on all rows in one process
//! (the full design with site indicators, its normal equations, the residuals row by row); the
//! tests check the federated path against it over 1, 4 and 7 uneven sites, and both against
//! neuroCombat's own output (`shared/tests/fixtures/combat_neurocombat.json`, written by
//! `scripts/make_combat_fixture.py`) to 1e-8. The per-site empirical Bayes step
//! ([`batch_adjustment`]) is shared: it is what each site runs, and the fixture checks it
//! against neuroCombat's, including the parametric iteration's stopping rule.
//!
//! **What a site accepts** ([`site_accepts_estimates`]). The sums round has no free parameter
//! beyond the table (its covariates are the plan's; its population the site's training
//! patients, each outcome class at least `min_count` when the outcome is a covariate; 1 + q
//! parameters per feature within the site's `max_parameter_ratio`). The estimates the
//! coordinator sends back decide the harmonised values every later task computes on, so a site
//! accepts them once per table (the engine pins them; another set is refused), with the
//! plan's shape, finite, and σ at least the site's own residual SD under β divided by
//! `max_scale_ratio`. That bound always holds for honest estimates at a site with at least
//! 1/ratio² of the patients (N σ² is the sum of every site's residual sum of squares, so
//! σ ≥ √(nₛ/N) × the site's residual SD), and it stops a steep β (say, 10⁶ per year of age)
//! sent with an honest σ. **What it does not stop**: the same β sent with σ raised to the
//! residual spread it leaves, which turns the table's harmonised values into the covariate
//! term (`cargo test attacks combat` measures it). No bound on σ or β from above can refuse
//! that and still accept honest ComBat, whose purpose is to remove differences of scale that
//! between MR scanners exceed any fixed ratio (the tests' own sites differ by more than 10×).
//! What limits it: one set per table, the later tasks' own checks on the harmonised values
//! (which treat them as any feature column), and that such a column is a combination of a
//! feature with the protected covariates, which Model III's designs already combine.

use super::logistic::invert_spd;
use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::clinical::{PatientRecord, VariableKind, VariableSpec};
use crate::proto::Aggregate;

/// How the site location and scale are shrunk (neuroCombat's `eb` and `parametric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prior {
    /// Normal prior on γ, inverse gamma on δ, iterated to the posterior means (the default).
    Parametric,
    /// Each feature's γ*, δ* a likelihood-weighted average of the site's other features' γ̂, δ̂.
    NonParametric,
    /// No empirical Bayes: γ* = γ̂, δ* = δ̂.
    None,
}

/// `[combat]` of the study file: part of the plan every site approves.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CombatSettings {
    pub enabled: bool,
    pub prior: Prior,
    /// Adjust the site location only (δ* = 1).
    pub mean_only: bool,
    /// Protected covariates, in design order: `outcome` (the study outcome, 0/1) and variables
    /// of the study's dictionary (continuous as is, categorical as indicators of every level
    /// but the first listed).
    pub covariates: Vec<String>,
}

impl Default for CombatSettings {
    fn default() -> Self {
        CombatSettings { enabled: false, prior: Prior::Parametric, mean_only: false, covariates: vec!["outcome".into(), "age".into()] }
    }
}

/// The name of the outcome among [`CombatSettings::covariates`].
pub const OUTCOME: &str = "outcome";

/// A protected covariate, resolved against the study's dictionary.
#[derive(Debug, Clone, PartialEq)]
pub enum Covariate {
    Outcome,
    Clinical(VariableSpec),
}

impl CombatSettings {
    /// The covariates in design order, or why one is not usable.
    pub fn resolve(&self, dictionary: &[VariableSpec]) -> Result<Vec<Covariate>, String> {
        let mut out = Vec::new();
        for (k, name) in self.covariates.iter().enumerate() {
            if self.covariates[..k].contains(name) {
                return Err(format!("combat.covariates: `{name}` is listed twice"));
            }
            out.push(if name == OUTCOME {
                Covariate::Outcome
            } else {
                Covariate::Clinical(
                    dictionary
                        .iter()
                        .find(|v| &v.name == name)
                        .cloned()
                        .ok_or_else(|| format!("combat.covariates: unknown variable `{name}` (use `outcome` or a [[variables]] name)"))?,
                )
            });
        }
        if out.len() > 8 {
            return Err("combat.covariates: at most 8".into());
        }
        Ok(out)
    }
}

/// The covariate design row of a patient (`None` if a covariate is missing): the outcome as
/// 0/1, a continuous variable as is, a categorical one as indicators of its levels but the first.
pub fn covariate_row(record: &PatientRecord, covariates: &[Covariate]) -> Option<Vec<f64>> {
    let mut row = Vec::new();
    for c in covariates {
        match c {
            Covariate::Outcome => row.push(f64::from(u8::from(record.outcome))),
            Covariate::Clinical(v) => row.extend(super::logistic::design_row(record, std::slice::from_ref(v))?),
        }
    }
    Some(row)
}

/// The number of design columns of the covariates.
pub fn covariate_columns(covariates: &[Covariate]) -> usize {
    covariates
        .iter()
        .map(|c| match c {
            Covariate::Outcome => 1,
            Covariate::Clinical(VariableSpec { kind: VariableKind::Categorical { levels }, .. }) => levels.len().saturating_sub(1),
            Covariate::Clinical(_) => 1,
        })
        .sum()
}

/// neuroCombat's convergence threshold of the parametric iteration.
const CONVERGENCE: f64 = 1e-4;
/// A guard neuroCombat lacks: its iteration has no cap.
const MAX_ITERATIONS: usize = 10_000;

/// Whether a feature with this pooled residual variance and mean is harmonised.
fn harmonisable(var_pooled: f64, mean: f64) -> bool {
    var_pooled.is_finite() && var_pooled.sqrt() > 1e-12 * mean.abs().max(1.0)
}

// ---- site half ---------------------------------------------------------------------------

/// One site's sums over its estimation rows: `y` the feature rows (`p` values each), `x` the
/// covariate design rows (the same number of rows, `q` values each), `outcome` the rows'
/// outcomes when the outcome is a covariate (each class must then reach `min_count`).
pub fn site_sums(y: &[Vec<f64>], x: &[Vec<f64>], p: usize, q: usize, outcome: Option<&[bool]>, min_count: u64, max_ratio: f64) -> Result<Aggregate, SiteRefusal> {
    let n = y.len();
    require_min_count("the training patients with features and every protected covariate", n as u64, min_count)?;
    if x.len() != n || y.iter().any(|r| r.len() != p) || x.iter().any(|r| r.len() != q) {
        return Err(SiteRefusal::InvalidParameters(format!("ComBat rows do not have {p} features and {q} covariate columns")));
    }
    if let Some(o) = outcome {
        for (class, label) in [(false, "negative"), (true, "positive")] {
            let k = o.iter().filter(|v| **v == class).count() as u64;
            require_min_count(&format!("training patients with a {label} outcome, features and every protected covariate"), k, min_count)?;
        }
    }
    let parameters = 1 + q;
    if parameters > super::max_parameters(max_ratio, n as u64) {
        return Err(SiteRefusal::InvalidParameters(format!(
            "ComBat's regression has {parameters} parameters per feature over {n} patients, beyond this site's ratio of {max_ratio}"
        )));
    }
    let nf = n as f64;
    let x_sum: Vec<f64> = (0..q).map(|k| x.iter().map(|r| r[k]).sum()).collect();
    let x_mean: Vec<f64> = x_sum.iter().map(|s| s / nf).collect();
    let xc: Vec<Vec<f64>> = x.iter().map(|r| r.iter().zip(&x_mean).map(|(v, m)| v - m).collect()).collect();
    let mut xx = vec![0.0; q * q];
    for r in &xc {
        for a in 0..q {
            for b in 0..q {
                xx[a * q + b] += r[a] * r[b];
            }
        }
    }
    let (mut y_sum, mut within, mut between, mut nonfinite) = (vec![0.0; p], vec![0.0; p], vec![0.0; p], vec![0.0; p]);
    let mut xy = vec![0.0; q * p];
    for j in 0..p {
        let bad = y.iter().filter(|r| !r[j].is_finite()).count();
        if bad > 0 {
            nonfinite[j] = bad as f64;
            continue;
        }
        let s: f64 = y.iter().map(|r| r[j]).sum();
        let m = s / nf;
        y_sum[j] = s;
        between[j] = s * s / nf;
        for (r, c) in y.iter().zip(&xc) {
            let d = r[j] - m;
            within[j] += d * d;
            for k in 0..q {
                xy[k * p + j] += c[k] * d;
            }
        }
    }
    Ok(AggregateBuilder::new(n as u64)
        .scalar("sites", 1.0)
        .vector("raw.covariate.sum", x_sum)
        .matrix("raw.covariate.cross", q, q, xx)
        .vector("raw.feature.sum", y_sum)
        .matrix("raw.covariate_feature.cross", q, p, xy)
        .vector("raw.feature.within", within)
        .vector("raw.feature.between", between)
        .vector("feature.nonfinite", nonfinite)
        .build())
}

/// The empirical Bayes location and scale of one site, over its estimation rows' standardised
/// values `z` (one row per patient, one value per harmonised feature).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchAdjustment {
    pub gamma_hat: Vec<f64>,
    pub delta_hat: Vec<f64>,
    pub gamma_star: Vec<f64>,
    pub delta_star: Vec<f64>,
}

/// neuroCombat's `fit_LS_model_and_find_priors` and `find_*_adjustments` for one site.
pub fn batch_adjustment(z: &[Vec<f64>], prior: Prior, mean_only: bool) -> BatchAdjustment {
    let n = z.len();
    let m = z.first().map_or(0, |r| r.len());
    let gamma_hat: Vec<f64> = (0..m).map(|j| z.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
    let delta_hat: Vec<f64> = (0..m)
        .map(|j| {
            if mean_only {
                return 1.0;
            }
            let v = z.iter().map(|r| (r[j] - gamma_hat[j]).powi(2)).sum::<f64>() / (n as f64 - 1.0);
            // neuroCombat's convert_zeroes.
            if v == 0.0 { 1.0 } else { v }
        })
        .collect();
    let (gamma_star, delta_star) = match prior {
        Prior::None => (gamma_hat.clone(), delta_hat.clone()),
        Prior::Parametric => {
            let g_bar = mean(&gamma_hat);
            let t2 = var_ddof1(&gamma_hat);
            if mean_only {
                (gamma_hat.iter().map(|&g| postmean(g, g_bar, 1.0, 1.0, t2)).collect(), vec![1.0; m])
            } else {
                let (md, sd2) = (mean(&delta_hat), var_ddof1(&delta_hat));
                let a = (2.0 * sd2 + md * md) / sd2;
                let b = (md * sd2 + md * md * md) / sd2;
                iterate_posterior(z, &gamma_hat, &delta_hat, g_bar, t2, a, b)
            }
        }
        Prior::NonParametric => integrate_prior(z, &gamma_hat, &delta_hat),
    };
    BatchAdjustment { gamma_hat, delta_hat, gamma_star, delta_star }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn var_ddof1(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)
}

fn postmean(g_hat: f64, g_bar: f64, n: f64, d_star: f64, t2: f64) -> f64 {
    (t2 * n * g_hat + d_star * g_bar) / (t2 * n + d_star)
}

fn postvar(sum2: f64, n: f64, a: f64, b: f64) -> f64 {
    (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
}

/// numpy's `max` of an array: NaN if any element is NaN.
fn np_max(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::NEG_INFINITY, |acc, v| if v.is_nan() || acc.is_nan() { f64::NAN } else { acc.max(v) })
}

/// neuroCombat's `it_sol`, stopping rule included: the largest *signed* relative change
/// (divided by the old value, not its magnitude) of γ and of δ over all features, combined
/// with Python's `max` (which keeps its first argument when the comparison fails on NaN), must
/// fall to 1e-4.
fn iterate_posterior(z: &[Vec<f64>], g_hat: &[f64], d_hat: &[f64], g_bar: f64, t2: f64, a: f64, b: f64) -> (Vec<f64>, Vec<f64>) {
    let n = z.len() as f64;
    let m = g_hat.len();
    let (mut g_old, mut d_old) = (g_hat.to_vec(), d_hat.to_vec());
    for _ in 0..MAX_ITERATIONS {
        let g_new: Vec<f64> = (0..m).map(|j| postmean(g_hat[j], g_bar, n, d_old[j], t2)).collect();
        let d_new: Vec<f64> = (0..m).map(|j| postvar(z.iter().map(|r| (r[j] - g_new[j]).powi(2)).sum(), n, a, b)).collect();
        let dg = np_max((0..m).map(|j| (g_new[j] - g_old[j]).abs() / g_old[j]));
        let dd = np_max((0..m).map(|j| (d_new[j] - d_old[j]).abs() / d_old[j]));
        let change = if dd > dg { dd } else { dg };
        (g_old, d_old) = (g_new, d_new);
        if !(change > CONVERGENCE) {
            break;
        }
    }
    (g_old, d_old)
}

/// neuroCombat's `int_eprior`: feature j's γ*, δ* are the averages of the site's other
/// features' γ̂, δ̂ weighted by the likelihood of feature j's values under each. The weights
/// are formed in logarithms (neuroCombat multiplies (2πδ)^(−n/2) by exp(…), which underflows
/// for large sites); where neuroCombat's product does not underflow the two agree.
fn integrate_prior(z: &[Vec<f64>], g_hat: &[f64], d_hat: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = z.len() as f64;
    let m = g_hat.len();
    let mut gamma_star = Vec::with_capacity(m);
    let mut delta_star = Vec::with_capacity(m);
    let mut log_lh = vec![0.0; m];
    for i in 0..m {
        for k in 0..m {
            if k == i {
                continue;
            }
            let sum2: f64 = z.iter().map(|r| (r[i] - g_hat[k]).powi(2)).sum();
            log_lh[k] = -(n / 2.0) * (2.0 * std::f64::consts::PI * d_hat[k]).ln() - sum2 / (2.0 * d_hat[k]);
        }
        let top = (0..m).filter(|&k| k != i).map(|k| log_lh[k]).fold(f64::NEG_INFINITY, f64::max);
        let (mut w_sum, mut g_sum, mut d_sum) = (0.0, 0.0, 0.0);
        for k in (0..m).filter(|&k| k != i) {
            let w = (log_lh[k] - top).exp();
            w_sum += w;
            g_sum += w * g_hat[k];
            d_sum += w * d_hat[k];
        }
        gamma_star.push(g_sum / w_sum);
        delta_star.push(d_sum / w_sum);
    }
    (gamma_star, delta_star)
}

/// A site's harmonised rows and the adjustment it made (kept at the site, for its audit).
#[derive(Debug, Clone, PartialEq)]
pub struct Harmonised {
    pub rows: Vec<Vec<f64>>,
    /// Over [`CombatEstimates::harmonised`] features, in that order.
    pub adjustment: BatchAdjustment,
}

/// Harmonises all of a site's feature rows. `covariates[i]` is `Some(x)` for an estimation
/// row (a training patient with every covariate) and `None` for the others, which are
/// harmonised with the training mean covariate term. Call [`site_accepts_estimates`] first.
pub fn site_harmonise(est: &CombatEstimates, settings: &CombatSettings, rows: &[Vec<f64>], covariates: &[Option<Vec<f64>>]) -> Harmonised {
    let p = est.alpha.len();
    let kept: Vec<usize> = est.harmonised.iter().map(|&j| j as usize).collect();
    let term = |x: &[f64], j: usize| est.alpha[j] + x.iter().enumerate().map(|(k, v)| v * est.beta[k * p + j]).sum::<f64>();
    let z: Vec<Vec<f64>> =
        rows.iter().zip(covariates).filter_map(|(r, x)| x.as_ref().map(|x| kept.iter().map(|&j| (r[j] - term(x, j)) / est.var_pooled[j].sqrt()).collect())).collect();
    let adjustment = batch_adjustment(&z, settings.prior, settings.mean_only);
    let rows = rows.iter().zip(covariates).map(|(r, x)| harmonise_row(est, &adjustment, r, x.as_deref())).collect();
    Harmonised { rows, adjustment }
}

/// One patient's harmonised row: `x` its covariate row if it is an estimation row; otherwise
/// (validation, a covariate missing, a new patient scored later) the covariate term is the
/// training mean x̄β, as `neuroCombatFromTraining` does.
pub fn harmonise_row(est: &CombatEstimates, adjustment: &BatchAdjustment, row: &[f64], x: Option<&[f64]>) -> Vec<f64> {
    let p = est.alpha.len();
    let x = x.unwrap_or(&est.covariate_mean);
    let mut out = row.to_vec();
    for (k, &j) in est.harmonised.iter().enumerate() {
        let j = j as usize;
        let stand = est.alpha[j] + x.iter().enumerate().map(|(c, v)| v * est.beta[c * p + j]).sum::<f64>();
        let sd = est.var_pooled[j].sqrt();
        out[j] = sd * ((row[j] - stand) / sd - adjustment.gamma_star[k]) / adjustment.delta_star[k].sqrt() + stand;
    }
    out
}

/// The checks a site runs on the estimates a coordinator sends, against its own estimation
/// rows (`y` features, `x` covariates): see the module doc.
pub fn site_accepts_estimates(
    est: &CombatEstimates,
    settings: &CombatSettings,
    p: usize,
    q: usize,
    y: &[Vec<f64>],
    x: &[Vec<f64>],
    max_scale_ratio: f64,
) -> Result<(), SiteRefusal> {
    let bad = |m: String| Err(SiteRefusal::InvalidParameters(format!("ComBat estimates: {m}")));
    if est.alpha.len() != p || est.var_pooled.len() != p || est.beta.len() != q * p || est.covariate_mean.len() != q {
        return bad(format!("expected {p} features and {q} covariate columns"));
    }
    if !est.harmonised.windows(2).all(|w| w[0] < w[1]) || est.harmonised.last().is_some_and(|&j| j as usize >= p) {
        return bad("the harmonised features must be distinct column indices in ascending order".into());
    }
    if est.alpha.iter().chain(&est.beta).chain(&est.var_pooled).chain(&est.covariate_mean).any(|v| !v.is_finite()) {
        return bad("a value is not finite".into());
    }
    if y.is_empty() || x.len() != y.len() {
        return bad("this site has no estimation rows".into());
    }
    // The priors are fitted across the harmonised features: one feature gives no variance.
    if settings.prior != Prior::None && est.harmonised.len() == 1 {
        return bad("empirical Bayes needs at least two harmonised features".into());
    }
    // An honest x̄ is the pooled mean of the covariate columns: indicators (the outcome, a
    // categorical level) within [0, 1], continuous ones within `max_scale_ratio` SDs of this
    // site's mean. It sets the covariate term of every patient outside the estimation rows
    // (validation patients). The bound is made of this site's mean and SD only: a coordinator
    // that probes where it lies learns those two aggregates, not the extremes (a bound from the
    // site's minimum and maximum would give away the oldest and youngest patient's age).
    for k in 0..q {
        let col: Vec<f64> = x.iter().map(|r| r[k]).collect();
        let indicator = col.iter().all(|v| *v == 0.0 || *v == 1.0);
        let (m, sd) = (mean(&col), spread(&col));
        // A covariate constant at this site has no spread to scale by; its mean stands in.
        let width = max_scale_ratio * if sd > 0.0 { sd } else { m.abs().max(1.0) };
        let (lo, hi) = if indicator { (0.0, 1.0) } else { (m - width, m + width) };
        if !(est.covariate_mean[k] >= lo && est.covariate_mean[k] <= hi) {
            return bad("a covariate's training mean is not a plausible pooled mean of this site's values".into());
        }
    }
    for &j in &est.harmonised {
        let j = j as usize;
        let col: Vec<f64> = y.iter().map(|r| r[j]).collect();
        if col.iter().any(|v| !v.is_finite()) {
            return bad(format!("feature {j} has a non-finite value at this site and cannot be harmonised"));
        }
        let term: Vec<f64> = x.iter().map(|r| r.iter().enumerate().map(|(k, v)| v * est.beta[k * p + j]).sum()).collect();
        // The site's own residual spread under β: an honest σ² is at least (nₛ/N) times its
        // square, so σ below it / `max_scale_ratio` is not a pooled value unless this site
        // holds under 1/ratio² of the patients.
        let residual_sd = spread(&col.iter().zip(&term).map(|(v, t)| v - t).collect::<Vec<_>>());
        let sd = est.var_pooled[j].sqrt();
        if !(est.var_pooled[j] > 0.0) || sd * max_scale_ratio < residual_sd {
            // No number derived from the data in a refusal: repeated probes would read them.
            return bad(format!("a pooled SD is below this site's own residual SD divided by {max_scale_ratio}"));
        }
    }
    Ok(())
}

/// Population SD.
fn spread(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

// ---- coordinator half --------------------------------------------------------------------

/// The sums over all sites of [`site_sums`].
#[derive(Debug, Clone, PartialEq)]
pub struct CombatSums {
    pub n: u64,
    /// Sites that answered with at least one row.
    pub sites: usize,
    pub p: usize,
    pub q: usize,
    x_sum: Vec<f64>,
    xx: Vec<f64>,
    y_sum: Vec<f64>,
    xy: Vec<f64>,
    within: Vec<f64>,
    between: Vec<f64>,
    nonfinite: Vec<u64>,
}

/// SHA-256 (hex) of estimates in their JSON form (the form of the site's record): a model
/// file names the estimates its study sent per table, so that `predict` applies only a
/// record of that study's harmonisation.
pub fn estimates_sha256(est: &CombatEstimates) -> String {
    crate::digest::sha256_hex(&serde_json::to_vec(est).expect("estimates serialise"))
}

/// The name of a feature table's part in harmonisation records and model files: `t1c`,
/// `t1c.deep`.
pub fn table_stem(sequence: &str, deep: bool) -> String {
    format!("{sequence}{}", if deep { ".deep" } else { "" })
}

/// What the coordinator sends back: the pooled regression, per feature.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CombatEstimates {
    /// Grand mean α = ȳ − x̄β (0 for a feature not harmonised).
    pub alpha: Vec<f64>,
    /// Covariate coefficients, covariate column-major: βₖⱼ at `k * p + j`.
    pub beta: Vec<f64>,
    /// Pooled residual variance σ² (denominator N).
    pub var_pooled: Vec<f64>,
    /// Training mean x̄ of the covariate columns (for patients outside the estimation rows).
    pub covariate_mean: Vec<f64>,
    /// The features harmonised, ascending; the others pass through.
    pub harmonised: Vec<u32>,
}

/// Sums the sites' [`site_sums`] answers for `p` features and `q` covariate columns.
pub fn combine(answers: &[SiteAggregate], p: usize, q: usize) -> Result<CombatSums, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut s = CombatSums {
        n: 0,
        sites: 0,
        p,
        q,
        x_sum: vec![0.0; q],
        xx: vec![0.0; q * q],
        y_sum: vec![0.0; p],
        xy: vec![0.0; q * p],
        within: vec![0.0; p],
        between: vec![0.0; p],
        nonfinite: vec![0; p],
    };
    let add = |acc: &mut [f64], v: &[f64]| acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
    for a in answers {
        s.n += a.patient_count();
        // Each site answers 1 here, so a secure sum still says how many sites took part.
        s.sites += a.counts("sites", 1)?[0] as usize;
        add(&mut s.x_sum, a.vector("raw.covariate.sum", q)?);
        add(&mut s.xx, a.vector("raw.covariate.cross", q * q)?);
        add(&mut s.y_sum, a.vector("raw.feature.sum", p)?);
        add(&mut s.xy, a.vector("raw.covariate_feature.cross", q * p)?);
        add(&mut s.within, a.vector("raw.feature.within", p)?);
        add(&mut s.between, a.vector("raw.feature.between", p)?);
        for (acc, c) in s.nonfinite.iter_mut().zip(a.counts("feature.nonfinite", p)?) {
            *acc += c;
        }
    }
    Ok(s)
}

/// Why the pooled regression cannot be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CombatError {
    #[error("no training patient has features and every protected covariate")]
    NoRows,
    #[error("the protected covariates are collinear over the training patients (e.g. a categorical level no training patient has, or a constant covariate)")]
    CollinearCovariates,
}

impl CombatSums {
    /// The pooled regression (see the module doc).
    pub fn estimates(&self) -> Result<CombatEstimates, CombatError> {
        let (p, q) = (self.p, self.q);
        if self.n == 0 {
            return Err(CombatError::NoRows);
        }
        let nf = self.n as f64;
        let inv = if q == 0 { Vec::new() } else { invert_spd(&self.xx, q).ok_or(CombatError::CollinearCovariates)? };
        let covariate_mean: Vec<f64> = self.x_sum.iter().map(|v| v / nf).collect();
        let mut e = CombatEstimates { alpha: vec![0.0; p], beta: vec![0.0; q * p], var_pooled: vec![0.0; p], covariate_mean, harmonised: Vec::new() };
        for j in 0..p {
            if self.nonfinite[j] > 0 {
                continue;
            }
            let beta: Vec<f64> = (0..q).map(|a| (0..q).map(|b| inv[a * q + b] * self.xy[b * p + j]).sum()).collect();
            let rss = self.within[j] - (0..q).map(|k| self.xy[k * p + j] * beta[k]).sum::<f64>();
            let var = rss.max(0.0) / nf;
            let y_mean = self.y_sum[j] / nf;
            if !harmonisable(var, y_mean) {
                continue;
            }
            e.alpha[j] = y_mean - e.covariate_mean.iter().zip(&beta).map(|(m, b)| m * b).sum::<f64>();
            for (k, b) in beta.into_iter().enumerate() {
                e.beta[k * p + j] = b;
            }
            e.var_pooled[j] = var;
            e.harmonised.push(j as u32);
        }
        Ok(e)
    }

    /// Per feature, the p-value of the one-way ANOVA F test of a site effect (`None` for a
    /// feature with non-finite values, no spread, or with fewer than two sites).
    pub fn site_effect(&self) -> Vec<Option<f64>> {
        let k = self.sites as f64;
        let nf = self.n as f64;
        (0..self.p)
            .map(|j| {
                if self.nonfinite[j] > 0 || self.sites < 2 || nf <= k {
                    return None;
                }
                let between = (self.between[j] - self.y_sum[j] * self.y_sum[j] / nf).max(0.0);
                let within = self.within[j];
                if !(within > 0.0) {
                    return None;
                }
                Some(f_test_p(between / (k - 1.0), within / (nf - k), k - 1.0, nf - k))
            })
            .collect()
    }
}

/// P(F > f) for an F(d1, d2) variable, from mean squares `ms_between`, `ms_within`.
fn f_test_p(ms_between: f64, ms_within: f64, d1: f64, d2: f64) -> f64 {
    let f = ms_between / ms_within;
    crate::stats::beta_inc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f))
}

/// The share of features with a site effect at level `alpha` among those tested.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiteEffectShare {
    pub tested: usize,
    pub significant: usize,
}

pub fn site_effect_share(p_values: &[Option<f64>], alpha: f64) -> SiteEffectShare {
    SiteEffectShare { tested: p_values.iter().flatten().count(), significant: p_values.iter().flatten().filter(|p| **p < alpha).count() }
}

// ---- pooled reference --------------------------------------------------------------------

/// neuroCombat on the pooled rows: `y` the features, `site[i]` the site index (0..sites), `x`
/// the covariate design rows. Rows not in `estimation` are harmonised as
/// `neuroCombatFromTraining` does. Returns the harmonised rows, the estimates and each site's
/// adjustment.
pub fn pooled(y: &[Vec<f64>], site: &[usize], x: &[Vec<f64>], estimation: &[bool], settings: &CombatSettings) -> (Vec<Vec<f64>>, CombatEstimates, Vec<BatchAdjustment>) {
    let p = y[0].len();
    let q = x.first().map_or(0, |r| r.len());
    let sites = site.iter().max().map_or(0, |m| m + 1);
    let rows: Vec<usize> = (0..y.len()).filter(|&i| estimation[i]).collect();
    let n = rows.len() as f64;
    let width = sites + q;
    let design = |i: usize| -> Vec<f64> {
        let mut d = vec![0.0; sites];
        d[site[i]] = 1.0;
        d.extend_from_slice(&x[i]);
        d
    };
    let mut dtd = vec![0.0; width * width];
    for &i in &rows {
        let d = design(i);
        for a in 0..width {
            for b in 0..width {
                dtd[a * width + b] += d[a] * d[b];
            }
        }
    }
    let inv = invert_spd(&dtd, width).expect("a full-rank design");
    let per_site: Vec<f64> = (0..sites).map(|s| rows.iter().filter(|&&i| site[i] == s).count() as f64).collect();
    let mut est = CombatEstimates { alpha: vec![0.0; p], beta: vec![0.0; q * p], var_pooled: vec![0.0; p], covariate_mean: vec![0.0; q], harmonised: Vec::new() };
    for k in 0..q {
        est.covariate_mean[k] = rows.iter().map(|&i| x[i][k]).sum::<f64>() / n;
    }
    for j in 0..p {
        if rows.iter().any(|&i| !y[i][j].is_finite()) {
            continue;
        }
        let mut dty = vec![0.0; width];
        for &i in &rows {
            for (acc, d) in dty.iter_mut().zip(design(i)) {
                *acc += d * y[i][j];
            }
        }
        let b: Vec<f64> = (0..width).map(|a| (0..width).map(|c| inv[a * width + c] * dty[c]).sum()).collect();
        let var = rows.iter().map(|&i| (y[i][j] - design(i).iter().zip(&b).map(|(d, c)| d * c).sum::<f64>()).powi(2)).sum::<f64>() / n;
        let y_mean = rows.iter().map(|&i| y[i][j]).sum::<f64>() / n;
        if !harmonisable(var, y_mean) {
            continue;
        }
        est.alpha[j] = (0..sites).map(|s| per_site[s] / n * b[s]).sum();
        for k in 0..q {
            est.beta[k * p + j] = b[sites + k];
        }
        est.var_pooled[j] = var;
        est.harmonised.push(j as u32);
    }
    let mut out = y.to_vec();
    let mut adjustments = Vec::new();
    for s in 0..sites {
        let members: Vec<usize> = (0..y.len()).filter(|&i| site[i] == s).collect();
        let rows_s: Vec<Vec<f64>> = members.iter().map(|&i| y[i].clone()).collect();
        let cov_s: Vec<Option<Vec<f64>>> = members.iter().map(|&i| estimation[i].then(|| x[i].clone())).collect();
        let h = site_harmonise(&est, settings, &rows_s, &cov_s);
        for (&i, r) in members.iter().zip(h.rows) {
            out[i] = r;
        }
        adjustments.push(h.adjustment);
    }
    (out, est, adjustments)
}

/// Per feature, the one-way ANOVA p-value of a site effect over the given rows, computed row
/// by row (the reference for [`CombatSums::site_effect`]).
pub fn pooled_site_effect(y: &[Vec<f64>], site: &[usize]) -> Vec<Option<f64>> {
    let sites = site.iter().max().map_or(0, |m| m + 1);
    let n = y.len() as f64;
    (0..y[0].len())
        .map(|j| {
            if y.iter().any(|r| !r[j].is_finite()) || sites < 2 {
                return None;
            }
            let grand = y.iter().map(|r| r[j]).sum::<f64>() / n;
            let (mut between, mut within) = (0.0, 0.0);
            for s in 0..sites {
                let v: Vec<f64> = y.iter().zip(site).filter(|(_, t)| **t == s).map(|(r, _)| r[j]).collect();
                let m = mean(&v);
                between += v.len() as f64 * (m - grand).powi(2);
                within += v.iter().map(|x| (x - m).powi(2)).sum::<f64>();
            }
            let k = sites as f64;
            (within > 0.0).then(|| f_test_p(between / (k - 1.0), within / (n - k), k - 1.0, n - k))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::testdata::{site_ranges, uniform_stream};

    /// A harmonisation data set: `sizes` sites with site-specific location and scale, an age
    /// and an outcome effect, a constant feature and one with a non-finite value.
    fn cohort(sizes: &[usize], seed: u64) -> (Vec<Vec<f64>>, Vec<usize>, Vec<Vec<f64>>, Vec<bool>) {
        let mut u = uniform_stream(seed | 1);
        let mut normal = move || {
            let (a, b) = (u(), u());
            (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
        };
        let p = 12;
        let (mut y, mut site, mut x, mut estimation) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (s, &n) in sizes.iter().enumerate() {
            for i in 0..n {
                let age = 30.0 + ((i * 7 + s * 13) % 45) as f64;
                let outcome = f64::from((i + s) % 3 == 0);
                let row: Vec<f64> = (0..p)
                    .map(|j| match j {
                        10 => 4.0,
                        _ => {
                            50.0 * j as f64
                                + 0.3 * (age - 50.0) * (j as f64 - 5.0) / 5.0
                                + 4.0 * outcome
                                + (s as f64 - 1.5) * (j as f64 + 1.0)
                                + (1.0 + 0.4 * s as f64) * (1.0 + j as f64 * 0.2) * normal()
                        }
                    })
                    .collect();
                y.push(row);
                site.push(s);
                x.push(vec![outcome, age]);
                // Every fifth patient is a validation patient.
                estimation.push(i % 5 != 4);
            }
        }
        y[3][11] = f64::NAN;
        (y, site, x, estimation)
    }

    /// The federated path: site sums, combine, estimates, each site harmonising its rows.
    fn federated(y: &[Vec<f64>], x: &[Vec<f64>], estimation: &[bool], sizes: &[usize], settings: &CombatSettings) -> (Vec<Vec<f64>>, CombatSums, CombatSums) {
        let p = y[0].len();
        let q = x[0].len();
        let ranges = site_ranges(sizes);
        let sums = |rows: &dyn Fn(usize) -> Vec<f64>| {
            let answers: Vec<SiteAggregate> = ranges
                .iter()
                .enumerate()
                .map(|(k, r)| {
                    let idx: Vec<usize> = r.clone().filter(|&i| estimation[i]).collect();
                    let ys: Vec<Vec<f64>> = idx.iter().map(|&i| rows(i)).collect();
                    let xs: Vec<Vec<f64>> = idx.iter().map(|&i| x[i].clone()).collect();
                    let o: Vec<bool> = idx.iter().map(|&i| x[i][0] == 1.0).collect();
                    SiteAggregate::new(format!("s{k}"), site_sums(&ys, &xs, p, q, Some(&o), 3, 0.33).expect("site sums"))
                })
                .collect();
            combine(&answers, p, q).expect("combine")
        };
        let before = sums(&|i| y[i].clone());
        let est = before.estimates().expect("estimates");
        let mut out = Vec::new();
        for r in &ranges {
            let rows: Vec<Vec<f64>> = y[r.clone()].to_vec();
            let cov: Vec<Option<Vec<f64>>> = r.clone().map(|i| estimation[i].then(|| x[i].clone())).collect();
            let ys: Vec<Vec<f64>> = r.clone().filter(|&i| estimation[i]).map(|i| y[i].clone()).collect();
            let xs: Vec<Vec<f64>> = r.clone().filter(|&i| estimation[i]).map(|i| x[i].clone()).collect();
            site_accepts_estimates(&est, settings, p, q, &ys, &xs, 10.0).expect("an honest site accepts honest estimates");
            out.extend(site_harmonise(&est, settings, &rows, &cov).rows);
        }
        let after = sums(&|i| out[i].clone());
        (out, before, after)
    }

    fn settings(prior: Prior, mean_only: bool) -> CombatSettings {
        CombatSettings { enabled: true, prior, mean_only, ..CombatSettings::default() }
    }

    fn assert_rows_close(a: &[Vec<f64>], b: &[Vec<f64>], tol: f64, what: &str) {
        for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
            for (j, (va, vb)) in ra.iter().zip(rb).enumerate() {
                if va.is_nan() && vb.is_nan() {
                    continue;
                }
                assert!((va - vb).abs() <= tol * vb.abs().max(1.0), "{what}: row {i} feature {j}: {va} vs {vb}");
            }
        }
    }

    #[test]
    fn federated_combat_equals_pooled_over_1_4_and_7_sites() {
        for prior in [Prior::Parametric, Prior::NonParametric, Prior::None] {
            for mean_only in [false, true] {
                let s = settings(prior, mean_only);
                // Site membership is part of the model, so each partition has its own pooled run.
                for sizes in [vec![150], vec![45, 30, 52, 23], vec![14, 31, 22, 12, 27, 18, 29]] {
                    let (y, site, x, estimation) = cohort(&sizes, 7 + sizes.len() as u64);
                    let (reference, est, _) = pooled(&y, &site, &x, &estimation, &s);
                    let (fed, before, _) = federated(&y, &x, &estimation, &sizes, &s);
                    assert_rows_close(&fed, &reference, 1e-9, &format!("{prior:?} mean_only={mean_only} sites={}", sizes.len()));
                    let fed_est = before.estimates().unwrap();
                    assert_eq!(fed_est.harmonised, est.harmonised);
                    // The constant feature and the one with a non-finite training value pass through.
                    assert!(!est.harmonised.contains(&10) && !est.harmonised.contains(&11));
                    assert_rows_close(
                        &[fed_est.var_pooled.clone(), fed_est.alpha.clone(), fed_est.beta.clone()],
                        &[est.var_pooled.clone(), est.alpha.clone(), est.beta.clone()],
                        1e-9,
                        "estimates",
                    );
                }
            }
        }
    }

    #[test]
    fn site_effect_from_sums_equals_the_row_by_row_anova_and_combat_removes_it() {
        let sizes = [45, 30, 52, 23];
        let (y, site, x, estimation) = cohort(&sizes, 11);
        let (out, before, after) = federated(&y, &x, &estimation, &sizes, &settings(Prior::Parametric, false));
        let pick = |rows: &[Vec<f64>]| -> (Vec<Vec<f64>>, Vec<usize>) {
            let idx: Vec<usize> = (0..rows.len()).filter(|&i| estimation[i]).collect();
            (idx.iter().map(|&i| rows[i].clone()).collect(), idx.iter().map(|&i| site[i]).collect())
        };
        let (yr, sr) = pick(&y);
        let reference = pooled_site_effect(&yr, &sr);
        let fed = before.site_effect();
        for (j, (a, b)) in fed.iter().zip(&reference).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9 * b.max(1e-300) + 1e-15, "feature {j}: {a} vs {b}"),
                (None, None) => {}
                // The constant feature: the sums give a rounding-level within SS, the rows 0.
                _ => assert_eq!(j, 10, "feature {j}: {a:?} vs {b:?}"),
            }
        }
        let share_before = site_effect_share(&fed, 0.05);
        let share_after = site_effect_share(&after.site_effect(), 0.05);
        assert!(share_before.significant >= 8, "{share_before:?}");
        assert!(share_after.significant <= 1, "{share_after:?}");
        let (hr, _) = pick(&out);
        let after_reference = pooled_site_effect(&hr, &sr);
        assert_eq!(site_effect_share(&after_reference, 0.05).significant, share_after.significant);
    }

    #[derive(serde::Deserialize)]
    struct Fixture {
        sizes: Vec<usize>,
        features: Vec<Vec<f64>>,
        age: Vec<f64>,
        outcome: Vec<f64>,
        validation: FixtureValidation,
        runs: std::collections::BTreeMap<String, FixtureRun>,
    }
    #[derive(serde::Deserialize)]
    struct FixtureValidation {
        features: Vec<Vec<f64>>,
        site: Vec<usize>,
    }
    #[derive(serde::Deserialize)]
    struct FixtureRun {
        harmonised: Vec<Vec<f64>>,
        gamma_star: Vec<Vec<f64>>,
        delta_star: Vec<Vec<f64>>,
        var_pooled: Vec<f64>,
        validation_harmonised: Vec<Vec<f64>>,
    }

    #[test]
    fn pooled_and_federated_combat_match_neurocombat_to_1e8() {
        let f: Fixture = serde_json::from_str(include_str!("../../tests/fixtures/combat_neurocombat.json")).expect("fixture");
        let runs = [
            ("parametric", Prior::Parametric, false),
            ("non_parametric", Prior::NonParametric, false),
            ("parametric_mean_only", Prior::Parametric, true),
            ("non_parametric_mean_only", Prior::NonParametric, true),
            ("no_eb", Prior::None, false),
        ];
        assert_eq!(f.runs.len(), runs.len());
        // Training rows site by site, then the validation rows (sorted by site in the fixture).
        let mut site: Vec<usize> = f.sizes.iter().enumerate().flat_map(|(s, &n)| std::iter::repeat_n(s, n)).collect();
        let x: Vec<Vec<f64>> = f.outcome.iter().zip(&f.age).map(|(o, a)| vec![*o, *a]).collect();
        let n_train = f.features.len();
        let mut y = f.features.clone();
        y.extend(f.validation.features.iter().cloned());
        site.extend(&f.validation.site);
        let mut xs = x.clone();
        xs.extend(std::iter::repeat_n(vec![0.0, 0.0], f.validation.site.len()));
        let estimation: Vec<bool> = (0..y.len()).map(|i| i < n_train).collect();
        for (name, prior, mean_only) in runs {
            let run = &f.runs[name];
            let s = settings(prior, mean_only);
            let (out, est, adjustments) = pooled(&y, &site, &xs, &estimation, &s);
            assert_eq!(est.harmonised.len(), 30);
            assert_rows_close(std::slice::from_ref(&est.var_pooled), std::slice::from_ref(&run.var_pooled), 1e-10, &format!("{name}: var_pooled"));
            for (k, a) in adjustments.iter().enumerate() {
                assert_rows_close(
                    &[a.gamma_star.clone(), a.delta_star.clone()],
                    &[run.gamma_star[k].clone(), run.delta_star[k].clone()],
                    1e-8,
                    &format!("{name}: site {k}"),
                );
            }
            assert_rows_close(&out[..n_train], &run.harmonised, 1e-8, &format!("{name}: training"));
            assert_rows_close(&out[n_train..], &run.validation_harmonised, 1e-8, &format!("{name}: validation"));
            // The federated path, each fixture site a site (validation rows after its training rows).
            let mut order: Vec<usize> = (0..y.len()).collect();
            order.sort_by_key(|&i| (site[i], i));
            let yo: Vec<Vec<f64>> = order.iter().map(|&i| y[i].clone()).collect();
            let xo: Vec<Vec<f64>> = order.iter().map(|&i| xs[i].clone()).collect();
            let eo: Vec<bool> = order.iter().map(|&i| estimation[i]).collect();
            let sizes: Vec<usize> = (0..f.sizes.len()).map(|s| site.iter().filter(|&&t| t == s).count()).collect();
            let (fed, _, _) = federated(&yo, &xo, &eo, &sizes, &s);
            let expected: Vec<Vec<f64>> =
                order.iter().map(|&i| if i < n_train { run.harmonised[i].clone() } else { run.validation_harmonised[i - n_train].clone() }).collect();
            assert_rows_close(&fed, &expected, 1e-8, &format!("{name}: federated"));
        }
    }

    #[test]
    fn a_site_refuses_estimates_that_would_zoom_or_steer_its_features() {
        let sizes = [60];
        let (y, _, x, estimation) = cohort(&sizes, 3);
        let ys: Vec<Vec<f64>> = y.iter().zip(&estimation).filter(|(_, e)| **e).map(|(r, _)| r.clone()).collect();
        let xs: Vec<Vec<f64>> = x.iter().zip(&estimation).filter(|(_, e)| **e).map(|(r, _)| r.clone()).collect();
        let o: Vec<bool> = xs.iter().map(|r| r[0] == 1.0).collect();
        let (p, q) = (12, 2);
        let honest = combine(&[SiteAggregate::new("s", site_sums(&ys, &xs, p, q, Some(&o), 3, 0.33).unwrap())], p, q).unwrap().estimates().unwrap();
        // The non-finite feature is at this site; without it the honest estimates pass.
        site_accepts_estimates(&honest, &CombatSettings::default(), p, q, &ys, &xs, 10.0).unwrap();
        let refused = |e: &CombatEstimates, what: &str| {
            let r = site_accepts_estimates(e, &CombatSettings::default(), p, q, &ys, &xs, 10.0);
            assert!(matches!(r, Err(SiteRefusal::InvalidParameters(_))), "{what}: {r:?}");
        };
        let mut tiny = honest.clone();
        tiny.var_pooled[0] *= 1e-4; // SD 100× below the site's residual SD: its harmonised values squeezed
        refused(&tiny, "tiny variance");
        let mut steep = honest.clone();
        steep.beta[p] = 1e6; // age × 1e6 in feature 0: the feature would carry age
        refused(&steep, "steep covariate");
        let mut short = honest.clone();
        short.alpha.pop();
        refused(&short, "wrong shape");
        let mut nan = honest.clone();
        nan.alpha[2] = f64::NAN;
        refused(&nan, "non-finite");
        let mut unordered = honest.clone();
        unordered.harmonised.swap(0, 1);
        refused(&unordered, "unordered");
        let mut far = honest.clone();
        far.covariate_mean[1] = 1e6; // an "average age" that puts every validation patient far out
        refused(&far, "implausible covariate mean");
        let mut outcome_mean = honest.clone();
        outcome_mean.covariate_mean[0] = 1.5;
        refused(&outcome_mean, "an outcome share above 1");
        let mut single = honest.clone();
        single.harmonised.truncate(1); // priors over one feature: NaN everywhere
        refused(&single, "empirical Bayes over one feature");
        let mut with_nan_feature = honest.clone();
        with_nan_feature.harmonised.push(11);
        with_nan_feature.var_pooled[11] = 1.0;
        refused(&with_nan_feature, "a feature with a non-finite value here");
        // Too few patients of a class, or too many parameters for the site's ratio.
        assert!(matches!(site_sums(&ys, &xs, p, q, Some(&o), 40, 0.33), Err(SiteRefusal::BelowMinCount { .. })));
        assert!(matches!(site_sums(&ys[..8], &xs[..8], p, q, None, 3, 0.33), Err(SiteRefusal::InvalidParameters(_))));
    }

    /// Probing where the x̄ bound lies must not read the oldest or youngest patient's age:
    /// two sites whose ages have the same mean and SD but other extremes accept and refuse the
    /// same training means.
    #[test]
    fn the_covariate_mean_bound_reveals_only_the_mean_and_sd() {
        let (y, _, x, estimation) = cohort(&[60], 3);
        let ys: Vec<Vec<f64>> = y.iter().zip(&estimation).filter(|(_, e)| **e).map(|(r, _)| r[..11].to_vec()).collect();
        let xs: Vec<Vec<f64>> = x.iter().zip(&estimation).filter(|(_, e)| **e).map(|(r, _)| r.clone()).collect();
        let o: Vec<bool> = xs.iter().map(|r| r[0] == 1.0).collect();
        let (p, q) = (11, 2);
        let honest = combine(&[SiteAggregate::new("s", site_sums(&ys, &xs, p, q, Some(&o), 3, 0.33).unwrap())], p, q).unwrap().estimates().unwrap();
        // The same ages with the oldest moved up and the youngest down by the same amount, then
        // rescaled about the mean to the same SD: other extremes, same mean and SD.
        let ages: Vec<f64> = xs.iter().map(|r| r[1]).collect();
        let (m, sd) = (mean(&ages), spread(&ages));
        let (lo, hi) = (0..ages.len()).fold((0, 0), |(l, h), i| (if ages[i] < ages[l] { i } else { l }, if ages[i] > ages[h] { i } else { h }));
        let mut moved = ages.clone();
        moved[lo] -= 20.0;
        moved[hi] += 20.0;
        let (m2, sd2) = (mean(&moved), spread(&moved));
        let moved: Vec<f64> = moved.iter().map(|a| m + (a - m2) * sd / sd2).collect();
        assert!((mean(&moved) - m).abs() < 1e-9 && (spread(&moved) - sd).abs() < 1e-9);
        assert!(moved.iter().cloned().fold(f64::NEG_INFINITY, f64::max) > ages[hi] + 1.0, "the oldest patient is older");
        let xs2: Vec<Vec<f64>> = xs.iter().zip(&moved).map(|(r, a)| vec![r[0], *a]).collect();
        for k in -120i32..=120 {
            let mut e = honest.clone();
            e.covariate_mean[1] = m + sd * k as f64 / 10.0;
            let a = site_accepts_estimates(&e, &CombatSettings::default(), p, q, &ys, &xs, 10.0).is_ok();
            let b = site_accepts_estimates(&e, &CombatSettings::default(), p, q, &ys, &xs2, 10.0).is_ok();
            // ±10 SD exactly is the bound (`max_scale_ratio`), where rounding decides.
            if k.abs() == 100 {
                continue;
            }
            assert_eq!(a, b, "x̄ = mean + {:.1} SD", k as f64 / 10.0);
            assert!(a == (k.abs() < 100), "x̄ = mean + {:.1} SD accepted: {a}", k as f64 / 10.0);
        }
    }
}
