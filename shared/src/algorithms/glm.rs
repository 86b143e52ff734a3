//! Pieces every generalised-linear federated algorithm shares: the two loss families, the
//! standardiser sites apply to their features, the site's view of its training matrix, and
//! the "point" at which a site evaluates a linear predictor (with its wire form).

use super::SiteRefusal;
use crate::proto;

/// The loss a linear model minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlmFamily {
    /// ½ (y − η)² on the 0/1 outcome: scikit-learn's `Lasso`/`ElasticNet` objective.
    Gaussian,
    /// −[y η − log(1 + e^η)]: logistic regression, glmnet's `family = "binomial"`.
    Binomial,
}

impl GlmFamily {
    /// Loss, mean μ and working weight w (the second derivative of the loss) at η.
    #[inline]
    pub fn evaluate(self, eta: f64, y: f64) -> (f64, f64, f64) {
        match self {
            GlmFamily::Gaussian => {
                let r = y - eta;
                (0.5 * r * r, eta, 1.0)
            }
            GlmFamily::Binomial => {
                let mu = sigmoid(eta);
                (softplus(eta) - y * eta, mu, mu * (1.0 - mu))
            }
        }
    }

    pub fn to_proto(self) -> proto::GlmFamily {
        match self {
            GlmFamily::Gaussian => proto::GlmFamily::Gaussian,
            GlmFamily::Binomial => proto::GlmFamily::Binomial,
        }
    }

    pub fn from_proto(v: i32) -> Result<Self, SiteRefusal> {
        match proto::GlmFamily::try_from(v) {
            Ok(proto::GlmFamily::Gaussian) => Ok(GlmFamily::Gaussian),
            Ok(proto::GlmFamily::Binomial) => Ok(GlmFamily::Binomial),
            _ => Err(SiteRefusal::InvalidParameters(format!("unknown model family {v}"))),
        }
    }
}

/// 1 / (1 + e^−η), without overflow for large |η|.
#[inline]
pub fn sigmoid(eta: f64) -> f64 {
    if eta >= 0.0 {
        1.0 / (1.0 + (-eta).exp())
    } else {
        let e = eta.exp();
        e / (1.0 + e)
    }
}

/// log(1 + e^η), without overflow.
#[inline]
pub fn softplus(eta: f64) -> f64 {
    eta.max(0.0) + (-eta.abs()).exp().ln_1p()
}

/// Centre and scale of each feature a task is about (global training mean and population SD).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardiser {
    pub center: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Standardiser {
    pub fn to_proto(&self) -> proto::Standardiser {
        proto::Standardiser { center: self.center.clone(), scale: self.scale.clone() }
    }

    pub fn from_proto(s: Option<&proto::Standardiser>, n_features: usize) -> Result<Self, SiteRefusal> {
        let s = s.ok_or_else(|| SiteRefusal::InvalidParameters("the task has no standardiser".into()))?;
        if s.center.len() != n_features || s.scale.len() != n_features {
            return Err(SiteRefusal::InvalidParameters(format!("standardiser has {}/{} values for {n_features} features", s.center.len(), s.scale.len())));
        }
        if s.center.iter().any(|v| !v.is_finite()) || s.scale.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(SiteRefusal::InvalidParameters("standardiser values must be finite with positive scales".into()));
        }
        Ok(Standardiser { center: s.center.clone(), scale: s.scale.clone() })
    }

    /// Standardised copy of the rows. Fails on a non-finite value (such features are dropped
    /// by the standardisation step, so one here means the table changed).
    pub fn apply(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, SiteRefusal> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .zip(self.center.iter().zip(&self.scale))
                    .map(|(x, (c, s))| {
                        let z = (x - c) / s;
                        if z.is_finite() { Ok(z) } else { Err(SiteRefusal::Precondition("a selected feature has a non-finite value".into())) }
                    })
                    .collect()
            })
            .collect()
    }
}

/// The site's training patients for one task: raw feature rows (the task's columns), the 0/1
/// outcome and each patient's cross-validation fold (1..=K; 0 if folds are not assigned).
#[derive(Debug, Clone, Copy)]
pub struct TrainingView<'a> {
    pub x: &'a [Vec<f64>],
    pub y: &'a [f64],
    pub fold: &'a [u32],
}

/// A linear predictor to evaluate on one population: fold 0 = all training patients, fold
/// k > 0 = those outside fold k. Coefficients are on the standardised scale.
#[derive(Debug, Clone, PartialEq)]
pub struct GlmPoint {
    pub fold: u32,
    pub intercept: f64,
    /// (column position, coefficient), ascending, non-zero.
    pub beta: Vec<(usize, f64)>,
    /// Columns whose Hessian block (with the intercept) the site returns, ascending.
    pub hessian: Vec<usize>,
    /// Whether the site returns the gradient of every column, or only of the intercept and the
    /// `hessian` columns (all a Newton step on them needs).
    pub gradient_all_columns: bool,
    /// When not empty, the site returns only these rows (ascending, among `hessian`) of the
    /// Hessian block.
    pub hessian_rows: Vec<usize>,
    /// The site returns no Hessian (`hessian` then names only the gradient's columns).
    pub without_hessian: bool,
}

impl GlmPoint {
    pub fn to_proto(&self) -> proto::GlmPoint {
        proto::GlmPoint {
            fold: self.fold,
            intercept: self.intercept,
            nonzero: self.beta.iter().map(|b| b.0 as u32).collect(),
            coefficients: self.beta.iter().map(|b| b.1).collect(),
            hessian: self.hessian.iter().map(|&j| j as u32).collect(),
            gradient_all_columns: self.gradient_all_columns,
            hessian_rows: self.hessian_rows.iter().map(|&j| j as u32).collect(),
            without_hessian: self.without_hessian,
        }
    }

    pub fn from_proto(p: &proto::GlmPoint, n_features: usize, max_fold: u32) -> Result<Self, SiteRefusal> {
        let bad = |what: &str| SiteRefusal::InvalidParameters(format!("model point: {what}"));
        if p.nonzero.len() != p.coefficients.len() {
            return Err(bad("positions and coefficients differ in length"));
        }
        if p.fold > max_fold {
            return Err(bad(&format!("fold {} does not exist (the study has {max_fold})", p.fold)));
        }
        if !p.intercept.is_finite() || p.coefficients.iter().any(|c| !c.is_finite()) {
            return Err(bad("non-finite coefficient"));
        }
        let ascending = |v: &[u32]| v.windows(2).all(|w| w[0] < w[1]) && v.last().is_none_or(|&j| (j as usize) < n_features);
        if !ascending(&p.nonzero) || !ascending(&p.hessian) {
            return Err(bad("positions must be ascending and within the task's columns"));
        }
        if !ascending(&p.hessian_rows) || p.hessian_rows.iter().any(|j| p.hessian.binary_search(j).is_err()) {
            return Err(bad("Hessian rows must be ascending and among the Hessian positions"));
        }
        if p.without_hessian && !p.hessian_rows.is_empty() {
            return Err(bad("Hessian rows asked for without a Hessian"));
        }
        Ok(GlmPoint {
            fold: p.fold,
            intercept: p.intercept,
            beta: p.nonzero.iter().map(|&j| j as usize).zip(p.coefficients.iter().copied()).collect(),
            hessian: p.hessian.iter().map(|&j| j as usize).collect(),
            gradient_all_columns: p.gradient_all_columns,
            hessian_rows: p.hessian_rows.iter().map(|&j| j as usize).collect(),
            without_hessian: p.without_hessian,
        })
    }

    /// The columns whose gradient the site returns (after the intercept's).
    pub fn gradient_columns(&self, n_features: usize) -> Vec<usize> {
        if self.gradient_all_columns { (0..n_features).collect() } else { self.hessian.clone() }
    }

    /// η for one standardised row.
    #[inline]
    pub fn eta(&self, z: &[f64]) -> f64 {
        self.intercept + self.beta.iter().map(|&(j, b)| b * z[j]).sum::<f64>()
    }
}

/// Whether patient `i` with fold `fold_i` belongs to the population of a point at `fold`.
#[inline]
pub fn in_population(point_fold: u32, patient_fold: u32) -> bool {
    point_fold == 0 || patient_fold != point_fold
}

// ---- what a site accepts -------------------------------------------------------------------
//
// Every model-shaped task (LASSO and classifier rounds, scores, tree rounds, histograms of
// standardised values) names a standardiser and, for linear models, coefficients. Left free,
// both turn a sum over patients into a probe of one patient: a scale far below the data's
// spread zooms every grid onto single values, and a coefficient of 1e9 makes the logistic loss
// a step at a threshold the coordinator chooses, so that two gradients whose thresholds
// bracket one patient differ by that patient's row. A site therefore accepts a standardiser
// no finer than its own spread divided by the plan's `max_scale_ratio`, and coefficients and
// intercepts within the plan's `max_coefficient` on that scale. This bounds the steepness of
// every step a model can take through the site's patients; it does not make a sequence of
// bounded points harmless, which is why the number of points per task and the task kinds are
// checked against the plan as well.
//
// Second-order answers add a bound of their own: a Hessian block (or a model) has at most
// `max_parameter_ratio` parameters per patient of the population it covers
// (`lasso::site_accepts_point_size`, `logistic::site_round`), because two blocks of one
// population at two points, as wide as it is large, give each patient's row. What no per-task
// bound stops: blocks of two populations that differ by a cross-validation fold, at one point,
// differ by that fold's few patients alone (`cargo test attacks fold_differenced` measures it);
// only points the site can recompute from verified totals do, and every LASSO and classifier
// point is recomputed so (`lasso::LassoReplica`, `classifiers::FitReplica`).

/// The site's own population SD of each column over `rows` (finite values only; 0 with
/// fewer than two).
pub fn column_sd(rows: &[Vec<f64>], width: usize) -> Vec<f64> {
    (0..width)
        .map(|j| {
            let v: Vec<f64> = rows.iter().filter_map(|r| r.get(j).copied()).filter(|x| x.is_finite()).collect();
            if v.len() < 2 {
                return 0.0;
            }
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / v.len() as f64).sqrt()
        })
        .collect()
}

/// Refuses a standardiser whose scale of some column is below the site's own SD of it
/// divided by `max_ratio` (columns the site holds constant are exempt: their scale reveals
/// nothing).
pub fn accept_standardiser(std: &Standardiser, own_sd: &[f64], max_ratio: f64) -> Result<(), SiteRefusal> {
    for (j, (&s, &own)) in std.scale.iter().zip(own_sd).enumerate() {
        if own > 0.0 && s < own / max_ratio {
            // The refusal states no number of the site's: its SD is a fact about its patients
            // (in a study that secure-sums, one the coordinator must not read per site).
            return Err(SiteRefusal::InvalidParameters(format!(
                "the standardiser's scale of column {j} is below this site's own SD / {max_ratio}: it would zoom onto single patients"
            )));
        }
    }
    Ok(())
}

/// Refuses a linear model with an intercept or coefficient beyond ±`max` (standardised scale).
pub fn accept_coefficients(what: &str, values: &[f64], max: f64) -> Result<(), SiteRefusal> {
    match values.iter().position(|v| v.is_nan() || v.abs() > max) {
        Some(k) => Err(SiteRefusal::InvalidParameters(format!(
            "{what}: parameter {k} is {:.3e}, beyond the study's bound of ±{max} per SD (a steep model probes single patients)",
            values[k]
        ))),
        None => Ok(()),
    }
}
