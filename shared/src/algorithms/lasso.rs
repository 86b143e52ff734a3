//! LASSO and elastic net with a λ path and K-fold cross-validation, from site aggregates.
//!
//! Objective, on features standardised with the global training mean and SD (population SD,
//! as glmnet), intercept unpenalised:
//!
//! * binomial: F(b₀, β) = (1/N) Σᵢ [log(1 + e^ηᵢ) − yᵢ ηᵢ] + λ [α ‖β‖₁ + (1 − α)/2 ‖β‖²₂]
//!   (glmnet's `family = "binomial"`; scikit-learn's `LogisticRegression(penalty="l1")` with
//!   C = 1 / (N λ));
//! * gaussian: F(b₀, β) = (1/2N) Σᵢ (yᵢ − ηᵢ)² + λ [α ‖β‖₁ + (1 − α)/2 ‖β‖²₂]
//!   (scikit-learn's `Lasso(alpha = λ)` / `ElasticNet(alpha = λ, l1_ratio = α)`).
//!
//! **Method: proximal Newton with strong rules (glmnet's outer loop, federated).** Each round
//! the coordinator sends, for every fit still running, its current point (intercept and the
//! non-zero coefficients) and a set of columns; every site returns over its patients the summed
//! loss, the summed gradient of the intercept and those columns, and their Hessian block. The
//! coordinator then
//! 1. backtracks (halves the step) if the objective rose;
//! 2. solves the penalised quadratic model on the column set by coordinate descent;
//! 3. once the step on the set is below the tolerance, asks at that same point for the gradient
//!    of every column (no Hessian) and checks the KKT conditions outside the set, adding the
//!    violators (glmnet's "converge on the set, then check"); after a step below √tolerance the
//!    next Newton answer carries every column's gradient at once, as it is likely the last;
//! 4. declares the λ converged when the step is below the tolerance and nothing violates, and
//!    moves to the next λ at once with the same answer (warm start). The next λ's set is its
//!    non-zero coefficients and the sequential strong rule's candidates |gⱼ| ≥ α(2λₗ₊₁ − λₗ),
//!    not every column a larger λ once needed.
//!
//! No p × p matrix crosses the wire: the gradient of every column about once per λ and fit, and
//! the Hessian of the columns that can be active. The gaussian model is quadratic, so it needs
//! about one round per λ; the binomial one two to four.
//!
//! **Hessian reuse.** The coordinator keeps each fit's last Hessian block. A point whose
//! linear predictor moved by at most `hessian_reuse` (weighted RMS) since the block was summed
//! — or any point, for the gaussian, whose Hessian does not depend on it — asks for no Hessian,
//! or only for the rows of columns new to the set; the rest comes from the kept block. The
//! gradient is always exact, so the fixed point (the KKT conditions) is the same; a nearby
//! Hessian only makes the steps contract linearly instead of quadratically. On 229 patients ×
//! 400 columns (the test `wide_candidates_…`) the default sends a third of the Hessian values
//! of a fresh block at every point (4.3 against 12.6 million) for 373 rounds instead of 310. A
//! step that raised the objective, or a step with a kept block more than `HESSIAN_REFRESH_RATE`
//! times the one before, drops the kept block.
//!
//! **Column limit (what a site accepts).** Two Hessian blocks of one population at two
//! points, over at least as many parameters as the population has patients, give back every
//! patient's row and outcome (they diagonalise together; `cargo test -p site-agent --test
//! attacks wide_hessian` reads 56 of 56 rows and outcomes from two such points). So a site
//! answers a point only if its block and its model (the intercept and its non-zero
//! coefficients) have at most `max_parameter_ratio` × the patients the point covers there
//! ([`site_accepts_point_size`]; DataSHIELD's `nfilter.glm`, as for every model round), and
//! the coordinator keeps every fit's set within the smallest site's limit
//! ([`LassoPathSolver::with_max_block_columns`]): non-zero coefficients first, then KKT
//! violators, then the strong rule's candidates. Where a fit converges on a full set of
//! non-zero coefficients and a column still violates, that λ's solution needs more columns than
//! the sites admit, and the path ends before it (glmnet's `pmax`), for every fit, so that cross-
//! validation covers the same λ values. Every λ kept is solved exactly: the path is the
//! unlimited one cut short (test `partition_lasso_within_a_column_limit_equals_pooled`).
//!
//! **Recomputation (what else a site accepts).** The column limit bounds each block by the
//! population it covers, not the difference of two populations: at one point, the full fit's
//! block minus a fold fit's is a block over that fold's few patients, and two such points give
//! their rows. So the coordinator chooses no point at all: each task after a run's first
//! carries every site's signed answer to the run's previous round, and each site sums them as
//! the coordinator does ([`sum_of_answers`]), feeds the sum to its own copy of this solver
//! ([`LassoReplica`]) and answers only the points that copy asks next. The solver is
//! deterministic and the sums fixed point, so the copy reaches the coordinator's points bit for
//! bit (test `a_site_replica_accepts_the_honest_run_and_refuses_any_other_point`, 1/4/7 sites).
//!
//! **Cross-validation**: the K fold fits (each on the training patients outside one fold) run
//! in the same rounds as the full fit, so all folds share each round trip. λ values are the
//! full fit's (λ_max from its gradient at β = 0, then `path_length` values down to
//! `lambda_min_ratio`·λ_max on a log scale), as in `cv.glmnet`. At the end one round scores each
//! training patient with the path of its own fold's fit and returns, per λ, the sum and sum of
//! squares of those held-out losses over the site's training patients: the CV mean is their
//! mean (×2 for the binomial deviance) and its standard error is `cv.glmnet(grouped = FALSE)`'s,
//! sd/√(N − 1), so no aggregate is ever taken over one fold at one site alone. λ_min minimises
//! the CV mean; λ_1se is the largest λ within one standard error of it.
//!
//! Every quantity the coordinator uses is a sum over patients, so the result depends only on
//! the pooled data, not on how patients are spread over sites (tests below: 1, 4 and 7 sites
//! agree to 1e-9, and an independent row-wise solver — glmnet's IRLS + coordinate descent with
//! residual updates — agrees with them).

use super::glm::{GlmFamily, GlmPoint, Standardiser, TrainingView, in_population};
use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::{self, Aggregate};

/// The settings of one LASSO run (validated by [`LassoSettings::validate`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LassoSettings {
    pub family: GlmFamily,
    /// Elastic-net mixing α: 1 = LASSO, 0 < α < 1 = elastic net.
    pub mixing: f64,
    pub path_length: usize,
    pub lambda_min_ratio: f64,
    pub folds: u32,
    /// Convergence: the largest coefficient change of a Newton step.
    pub tolerance: f64,
    /// Rounds spent on one λ before moving on (reported as not converged).
    pub max_rounds_per_lambda: u32,
    /// The largest weighted RMS change of the linear predictor since a Hessian block was
    /// summed at which a binomial fit steps with it instead of asking the sites again (see
    /// "Hessian reuse" above): 0 asks for a fresh block at every point (fewest rounds, most
    /// bytes); the default sends about a third of the Hessian values for a fifth more rounds.
    /// Left out of a plan at its default, so that plans (and the sites' approvals of them by
    /// hash) from before the setting existed keep their hash.
    #[serde(skip_serializing_if = "is_default_hessian_reuse")]
    pub hessian_reuse: f64,
}

const DEFAULT_HESSIAN_REUSE: f64 = 1e-2;

fn is_default_hessian_reuse(v: &f64) -> bool {
    *v == DEFAULT_HESSIAN_REUSE
}

impl Default for LassoSettings {
    fn default() -> Self {
        LassoSettings {
            family: GlmFamily::Binomial,
            mixing: 1.0,
            path_length: 100,
            lambda_min_ratio: 0.01,
            folds: 10,
            tolerance: 1e-10,
            max_rounds_per_lambda: 50,
            hessian_reuse: DEFAULT_HESSIAN_REUSE,
        }
    }
}

impl LassoSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.mixing > 0.0 && self.mixing <= 1.0) {
            return Err(format!("mixing = {}: must be in (0, 1] (1 = LASSO)", self.mixing));
        }
        if !(2..=1000).contains(&self.path_length) {
            return Err(format!("path_length = {}: must be 2..=1000", self.path_length));
        }
        if !(self.lambda_min_ratio > 0.0 && self.lambda_min_ratio < 1.0) {
            return Err(format!("lambda_min_ratio = {}: must be in (0, 1)", self.lambda_min_ratio));
        }
        if !(2..=50).contains(&self.folds) {
            return Err(format!("folds = {}: must be 2..=50", self.folds));
        }
        if !(self.tolerance > 0.0 && self.tolerance < 1e-3) {
            return Err(format!("tolerance = {}: must be in (0, 1e-3)", self.tolerance));
        }
        if self.max_rounds_per_lambda == 0 {
            return Err("max_rounds_per_lambda must be at least 1".into());
        }
        if !(0.0..=0.1).contains(&self.hessian_reuse) {
            return Err(format!("hessian_reuse = {}: must be in [0, 0.1] (0 = a fresh Hessian at every point)", self.hessian_reuse));
        }
        Ok(())
    }
}

fn penalty(beta: &[f64], lambda: f64, alpha: f64) -> f64 {
    lambda * beta.iter().map(|b| alpha * b.abs() + 0.5 * (1.0 - alpha) * b * b).sum::<f64>()
}

// ---- site half ---------------------------------------------------------------------------

/// One round: for each point, over its population, n, Σ loss, Σ gradient (`gradient.k`:
/// intercept first, then the point's [`gradient_columns`](GlmPoint::gradient_columns)) and the
/// Hessian block of the intercept and the point's `hessian` columns (`hessian.k`: the upper
/// triangle row by row, or only the point's `hessian_rows`, each over the whole block, or
/// nothing when the point is `without_hessian`).
/// Refuses when a population, or the fold it leaves out, is below `min_count`, and when a
/// point's model or Hessian block has more parameters than `max_ratio` times the patients of
/// its population here ([`site_accepts_point_size`]).
pub fn site_round(
    data: TrainingView,
    standardiser: &Standardiser,
    family: GlmFamily,
    points: &[GlmPoint],
    min_count: u64,
    max_ratio: f64,
) -> Result<Aggregate, SiteRefusal> {
    let z = standardiser.apply(data.x)?;
    let p = standardiser.center.len();
    let n_all = data.y.len() as u64;
    require_min_count("the training cohort", n_all, min_count)?;
    for (k, point) in points.iter().enumerate() {
        let population = data.fold.iter().filter(|&&f| in_population(point.fold, f)).count() as u64;
        site_accepts_point_size(k, point, population, max_ratio)?;
    }
    let mut n_out = Vec::with_capacity(points.len());
    let mut loss_out = Vec::with_capacity(points.len());
    let mut blocks = Vec::with_capacity(points.len());
    for (k, point) in points.iter().enumerate() {
        if point.fold > 0 {
            let held_out = data.fold.iter().filter(|&&f| f == point.fold).count() as u64;
            require_min_count(&format!("fold {}", point.fold), held_out, min_count)?;
        }
        let columns = point.gradient_columns(p);
        let mut n = 0u64;
        let mut loss = 0.0;
        let mut grad = vec![0.0; columns.len() + 1];
        let h = point.hessian.len() + 1;
        let part = if point.without_hessian {
            HessianPart::Nothing
        } else if point.hessian_rows.is_empty() {
            HessianPart::Block
        } else {
            // Block indices (0 = intercept) of the rows asked.
            HessianPart::Rows(
                point
                    .hessian_rows
                    .iter()
                    .map(|j| point.hessian.binary_search(j).map(|a| a + 1))
                    .collect::<Result<_, _>>()
                    .map_err(|_| SiteRefusal::InvalidParameters("model point: a Hessian row outside its Hessian positions".into()))?,
            )
        };
        let mut hess = vec![
            0.0;
            match &part {
                HessianPart::Block => h * h,
                HessianPart::Rows(rows) => rows.len() * h,
                HessianPart::Nothing => 0,
            }
        ];
        let mut zh = vec![0.0; h];
        for (i, zi) in z.iter().enumerate() {
            if !in_population(point.fold, data.fold[i]) {
                continue;
            }
            n += 1;
            let (l, mu, w) = family.evaluate(point.eta(zi), data.y[i]);
            loss += l;
            let r = mu - data.y[i];
            grad[0] += r;
            for (g, &j) in grad[1..].iter_mut().zip(&columns) {
                *g += r * zi[j];
            }
            zh[0] = 1.0;
            for (a, &j) in point.hessian.iter().enumerate() {
                zh[a + 1] = zi[j];
            }
            match &part {
                HessianPart::Block => {
                    for a in 0..h {
                        let wa = w * zh[a];
                        for b in a..h {
                            hess[a * h + b] += wa * zh[b];
                        }
                    }
                }
                HessianPart::Rows(rows) => {
                    for (r, &a) in rows.iter().enumerate() {
                        // The same products, in the same order, as the upper triangle's: an
                        // entry is the same number whichever way it was asked for.
                        for b in 0..h {
                            let (lo, hi) = if b < a { (b, a) } else { (a, b) };
                            hess[r * h + b] += w * zh[lo] * zh[hi];
                        }
                    }
                }
                HessianPart::Nothing => {}
            }
        }
        // Symmetric: only the upper triangle of a whole block travels (row by row).
        let packed: Vec<f64> = match part {
            HessianPart::Block => (0..h).flat_map(|a| (a..h).map(move |b| (a, b))).map(|(a, b)| hess[a * h + b]).collect(),
            _ => hess,
        };
        require_min_count(&format!("the population of model point {k}"), n, min_count)?;
        n_out.push(n as f64);
        loss_out.push(loss);
        blocks.push((grad, packed));
    }
    let mut b = AggregateBuilder::new(n_all).vector("n", n_out).vector("loss", loss_out);
    for (k, (grad, packed)) in blocks.into_iter().enumerate() {
        b = b.vector(format!("gradient.{k}"), grad).vector(format!("hessian.{k}"), packed);
    }
    Ok(b.build())
}

/// What a site accepts of a point's size: the intercept and the point's Hessian columns, and
/// the intercept and its non-zero coefficients, each at most `max_ratio` × the `population`
/// the point covers at this site and fewer than it ([`super::max_parameters`]; DataSHIELD's
/// `nfilter.glm`, as for every model round).
///
/// Why: Hessian blocks H₁ = ZᵀW₁Z and H₂ = ZᵀW₂Z of one population at two points whose
/// block has at least as many parameters as the population has patients give back every
/// patient's row of those columns — the pair diagonalises simultaneously, its eigenvectors
/// are Z's rows (`cargo test -p site-agent --test attacks wide_hessian`) — and the gradient at
/// either point then gives each outcome. Below the population's size the blocks are sums over
/// more patients than unknowns per patient; the honest path keeps its column set within this
/// bound ([`LassoPathSolver::with_max_block_columns`]).
pub fn site_accepts_point_size(k: usize, point: &GlmPoint, population: u64, max_ratio: f64) -> Result<(), SiteRefusal> {
    let block = point.hessian.len() + 1;
    let model = point.beta.len() + 1;
    let q = block.max(model);
    if q > super::max_parameters(max_ratio, population) {
        let what = if block >= model { "a Hessian block of" } else { "a model of" };
        return Err(SiteRefusal::InvalidParameters(format!(
            "model point {k} asks for {what} {q} parameters over {population} patients here, more than this site's policy allows ({max_ratio} per patient, fewer than the patients)"
        )));
    }
    Ok(())
}

/// How much of a point's Hessian block a site returns.
enum HessianPart {
    Block,
    Rows(Vec<usize>),
    Nothing,
}

/// Cross-validation losses: `points[(k − 1)·L + l]` is fold k's fit at λₗ. Each training
/// patient is scored by its own fold's fits; per λ the sum and the sum of squares of the
/// held-out losses come back, over all the site's training patients at once.
#[allow(clippy::too_many_arguments)]
pub fn site_cv_loss(
    data: TrainingView,
    standardiser: &Standardiser,
    family: GlmFamily,
    path_length: usize,
    points: &[GlmPoint],
    min_count: u64,
    max_ratio: f64,
) -> Result<Aggregate, SiteRefusal> {
    let z = standardiser.apply(data.x)?;
    require_min_count("the training cohort", data.y.len() as u64, min_count)?;
    if path_length == 0 || !points.len().is_multiple_of(path_length) {
        return Err(SiteRefusal::InvalidParameters("points are not folds × path length".into()));
    }
    let folds = (points.len() / path_length) as u32;
    for (k, chunk) in points.chunks(path_length).enumerate() {
        if chunk.iter().any(|p| p.fold != k as u32 + 1) {
            return Err(SiteRefusal::InvalidParameters("points must be grouped by fold 1..=K in order".into()));
        }
        let held_out = data.fold.iter().filter(|&&f| f == k as u32 + 1).count() as u64;
        require_min_count(&format!("fold {}", k + 1), held_out, min_count)?;
        // Each fold's models were fitted on the patients outside it: the same bound as the
        // fold fit's rounds.
        let fitted_on = data.y.len() as u64 - held_out;
        for (l, point) in chunk.iter().enumerate() {
            site_accepts_point_size(k * path_length + l, point, fitted_on, max_ratio)?;
        }
    }
    let mut sum = vec![0.0; path_length];
    let mut sq = vec![0.0; path_length];
    for (i, zi) in z.iter().enumerate() {
        let f = data.fold[i];
        if f == 0 || f > folds {
            return Err(SiteRefusal::Precondition("a training patient has no fold".into()));
        }
        let fits = &points[(f as usize - 1) * path_length..f as usize * path_length];
        for (l, point) in fits.iter().enumerate() {
            let (loss, _, _) = family.evaluate(point.eta(zi), data.y[i]);
            sum[l] += loss;
            sq[l] += loss * loss;
        }
    }
    Ok(AggregateBuilder::new(data.y.len() as u64).vector("cv_loss_sum", sum).vector("cv_loss_sq", sq).build())
}

// ---- coordinator half: combining one round -----------------------------------------------

/// One point's totals over all sites.
#[derive(Debug, Clone, PartialEq)]
pub struct PointTotals {
    pub n: f64,
    pub loss: f64,
    /// Intercept first, then every column; NaN for the columns the point did not ask for.
    pub gradient: Vec<f64>,
    /// Whether every entry of `gradient` was asked for.
    pub gradient_all_columns: bool,
    /// Row-major, (1 + |hessian columns|)²; NaN where the point asked for no Hessian, or only
    /// for some rows and neither the entry's row nor its column is one of them.
    pub hessian: Vec<f64>,
}

/// Sums the sites' answers to one round, in the (site-sorted) order given.
pub fn combine_round(answers: &[SiteAggregate], points: &[GlmPoint], p: usize) -> Result<Vec<PointTotals>, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut totals: Vec<PointTotals> = points
        .iter()
        .map(|pt| {
            let h = pt.hessian.len() + 1;
            let mut gradient = vec![f64::NAN; p + 1];
            gradient[0] = 0.0;
            for j in pt.gradient_columns(p) {
                gradient[j + 1] = 0.0;
            }
            let mut hessian = vec![if pt.without_hessian { f64::NAN } else { 0.0 }; h * h];
            if !pt.hessian_rows.is_empty() {
                let asked: Vec<bool> = std::iter::once(false).chain(pt.hessian.iter().map(|j| pt.hessian_rows.binary_search(j).is_ok())).collect();
                for r in 0..h {
                    for c in 0..h {
                        if !asked[r] && !asked[c] {
                            hessian[r * h + c] = f64::NAN;
                        }
                    }
                }
            }
            PointTotals { n: 0.0, loss: 0.0, gradient, gradient_all_columns: pt.gradient_all_columns, hessian }
        })
        .collect();
    for a in answers {
        let n = a.counts("n", points.len())?;
        let loss = a.vector("loss", points.len())?;
        for (k, t) in totals.iter_mut().enumerate() {
            t.n += n[k] as f64;
            t.loss += loss[k];
            let columns = points[k].gradient_columns(p);
            let grad = a.vector(&format!("gradient.{k}"), columns.len() + 1)?;
            t.gradient[0] += grad[0];
            for (&j, v) in columns.iter().zip(&grad[1..]) {
                t.gradient[j + 1] += v;
            }
            let pt = &points[k];
            let m = pt.hessian.len() + 1;
            if pt.without_hessian {
                a.vector(&format!("hessian.{k}"), 0)?;
            } else if pt.hessian_rows.is_empty() {
                let packed = a.vector(&format!("hessian.{k}"), m * (m + 1) / 2)?;
                let mut idx = 0;
                for r in 0..m {
                    for c in r..m {
                        t.hessian[r * m + c] += packed[idx];
                        if c != r {
                            t.hessian[c * m + r] += packed[idx];
                        }
                        idx += 1;
                    }
                }
            } else {
                let packed = a.vector(&format!("hessian.{k}"), pt.hessian_rows.len() * m)?;
                let rows: Vec<usize> = pt.hessian_rows.iter().map(|j| 1 + pt.hessian.binary_search(j).expect("rows among the Hessian positions")).collect();
                for (row, &r) in packed.chunks(m).zip(&rows) {
                    for (c, v) in row.iter().enumerate() {
                        // An entry between two rows asked comes twice: taken from the earlier row.
                        if c < r && rows.binary_search(&c).is_ok() {
                            continue;
                        }
                        t.hessian[r * m + c] += v;
                        if c != r {
                            t.hessian[c * m + r] += v;
                        }
                    }
                }
            }
        }
    }
    Ok(totals)
}

/// Totals of the CV round: (Σ loss, Σ loss², N) per λ.
pub fn combine_cv(answers: &[SiteAggregate], path_length: usize) -> Result<(Vec<f64>, Vec<f64>, f64), CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let (mut s, mut q, mut n) = (vec![0.0; path_length], vec![0.0; path_length], 0.0);
    for a in answers {
        for (x, v) in s.iter_mut().zip(a.vector("cv_loss_sum", path_length)?) {
            *x += v;
        }
        for (x, v) in q.iter_mut().zip(a.vector("cv_loss_sq", path_length)?) {
            *x += v;
        }
        n += a.patient_count() as f64;
    }
    Ok((s, q, n))
}

// ---- coordinator half: the path solver ---------------------------------------------------

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LassoError {
    #[error("the outcome has a single class in the {0}: a model cannot be fitted")]
    SingleClass(String),
    #[error("no feature varies with the outcome (λ_max = 0)")]
    NothingToSelect,
    #[error("the answers do not match the request ({0})")]
    Mismatch(String),
}

/// What the solver needs next from the sites.
#[derive(Debug, Clone, PartialEq)]
pub enum LassoRequest {
    /// A [`site_round`] at these points.
    Round(Vec<GlmPoint>),
    /// A [`site_cv_loss`] with these points (folds × path).
    CvLoss(Vec<GlmPoint>),
}

/// What a fit asks of the sites at its current point.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ask {
    /// Loss, and the gradient and Hessian block of the intercept and the set: what a Newton
    /// step on the set needs; with `all_columns`, the gradient of every column too.
    Newton { all_columns: bool },
    /// The gradient of every column at a point already answered, whose Newton step on the set
    /// converged: the KKT check outside the set (glmnet's "converge on the set, then check").
    Gradient,
}

/// The contraction rate (a step's size over the one before) above which a fit stepping with a
/// kept block asks for a fresh one.
const HESSIAN_REFRESH_RATE: f64 = 0.1;

/// When a fit steps with its kept Hessian block, from the settings.
#[derive(Debug, Clone, Copy)]
struct HessianReuse {
    /// The Hessian does not depend on the point (gaussian): always.
    constant: bool,
    /// [`LassoSettings::hessian_reuse`].
    distance: f64,
}

/// A fit's Hessian block, kept so that the sites need not send it again.
///
/// Why a kept Hessian block will do: a Newton step needs a Hessian of the set, not the
/// Hessian at exactly this point. With the exact gradient, a step with a nearby point's Hessian
/// has the same fixed point (the KKT conditions involve only the gradient) and contracts by a
/// factor of the order of the weights' relative change. Along a warm-started path the points
/// of one λ, and of the next, lie close to each other, so most rounds reuse the block the sites
/// sent before ([`LassoSettings::hessian_reuse`]) and ask only for the rows of columns new to
/// the set. The gaussian Hessian does not depend on the point and is always reused.
#[derive(Debug, Clone)]
struct HessianCache {
    /// The block's columns (after the intercept), ascending.
    columns: Vec<usize>,
    /// Row-major, summed over the sites.
    block: Vec<f64>,
    /// The point at which its oldest entries were summed.
    intercept: f64,
    beta: Vec<f64>,
}

impl HessianCache {
    fn summed_at(&self, intercept: f64, beta: &[f64]) -> bool {
        self.intercept == intercept && self.beta == beta
    }

    /// How far the linear predictor moved since the block was summed: the weighted RMS change
    /// of η, √(Δθᵀ H Δθ / Σw) with H the kept block itself (H₀₀ = Σw); `None` when a
    /// coefficient outside the block's columns moved.
    fn distance(&self, intercept: f64, beta: &[f64]) -> Option<f64> {
        let mut delta = vec![intercept - self.intercept];
        let mut kept = self.columns.iter().peekable();
        for (j, (b, old)) in beta.iter().zip(&self.beta).enumerate() {
            if kept.next_if_eq(&&j).is_some() {
                delta.push(b - old);
            } else if b != old {
                return None;
            }
        }
        let m = delta.len();
        let quadratic: f64 = (0..m).map(|r| delta[r] * (0..m).map(|c| self.block[r * m + c] * delta[c]).sum::<f64>()).sum();
        Some((quadratic.max(0.0) / self.block[0]).sqrt())
    }
}

#[derive(Debug, Clone)]
struct Fit {
    fold: u32,
    intercept: f64,
    beta: Vec<f64>,
    /// Columns whose Hessian the next answer carries (sorted).
    set: Vec<usize>,
    ask: Ask,
    /// What is already known at the current point (cleared when the point moves), completed
    /// by the next answer at the same point.
    known: Option<PointTotals>,
    hessian_cache: Option<HessianCache>,
    /// The last evaluated point with its objective, for backtracking.
    previous: Option<(f64, Vec<f64>, f64)>,
    halvings: u32,
    lambda_index: usize,
    rounds_at_lambda: u32,
    /// The last Newton step's size at this λ, for the contraction rate of the next.
    last_step: Option<f64>,
    /// Whether the current answer's Hessian block was summed at this very point.
    hessian_fresh: bool,
    path: Vec<(f64, Vec<f64>, bool)>,
}

impl Fit {
    fn point(&self, reuse: HessianReuse) -> GlmPoint {
        let (hessian, gradient_all_columns, (hessian_rows, without_hessian)) = match self.ask {
            Ask::Newton { all_columns } => (self.set.clone(), all_columns, self.hessian_to_ask(reuse)),
            Ask::Gradient => (Vec::new(), true, (Vec::new(), true)),
        };
        GlmPoint {
            fold: self.fold,
            intercept: self.intercept,
            beta: self.beta.iter().enumerate().filter(|(_, b)| **b != 0.0).map(|(j, b)| (j, *b)).collect(),
            hessian,
            gradient_all_columns,
            hessian_rows,
            without_hessian,
        }
    }

    /// (rows, none): the whole block of the set, only the rows of the columns the kept block
    /// lacks, or nothing, when a kept block is close enough to the current point.
    fn hessian_to_ask(&self, reuse: HessianReuse) -> (Vec<usize>, bool) {
        match &self.hessian_cache {
            Some(c) if reuse.constant || c.distance(self.intercept, &self.beta).is_some_and(|d| d <= reuse.distance) => {
                let rows: Vec<usize> = self.set.iter().copied().filter(|j| c.columns.binary_search(j).is_err()).collect();
                if rows.is_empty() {
                    (rows, true)
                } else if 2 * rows.len() < self.set.len() + 1 && (reuse.constant || c.summed_at(self.intercept, &self.beta)) {
                    // Rows are merged only into a block of the same point (or a constant one):
                    // rows of one point around a block of another need not make a positive
                    // definite matrix.
                    (rows, false)
                } else {
                    // Most of the block is new (its upper triangle is smaller than its rows), or
                    // the kept block is from another point.
                    (Vec::new(), false)
                }
            }
            _ => (Vec::new(), false),
        }
    }

    /// Moves the point; nothing known at the old one carries over.
    fn move_to(&mut self, intercept: f64, beta: Vec<f64>) {
        self.intercept = intercept;
        self.beta = beta;
        self.known = None;
    }

    /// The answer at the current point, completed by what was known there (the Hessian block
    /// the gradient check followed, or every column's gradient) and by the kept Hessian block;
    /// a whole block answered is kept.
    fn complete(&mut self, t: &PointTotals) -> PointTotals {
        let known = self.known.take();
        if self.ask == Ask::Gradient {
            let known = known.expect("a gradient check follows an answer at the same point");
            return PointTotals { gradient: t.gradient.clone(), gradient_all_columns: true, ..known };
        }
        let mut t = t.clone();
        if let Some(known) = known.filter(|k| k.gradient_all_columns && !t.gradient_all_columns) {
            t.gradient = known.gradient;
            t.gradient_all_columns = true;
        }
        self.hessian_fresh = !t.hessian.iter().any(|v| v.is_nan());
        match &mut self.hessian_cache {
            Some(kept) if !self.hessian_fresh => {
                t.hessian = fill_known(&t.hessian, &self.set, &kept.block, &kept.columns);
                // New rows from this point, the rest as old as the kept block was.
                kept.columns = self.set.clone();
                kept.block = t.hessian.clone();
            }
            _ => self.hessian_cache = Some(HessianCache { columns: self.set.clone(), block: t.hessian.clone(), intercept: self.intercept, beta: self.beta.clone() }),
        }
        t
    }
    fn done(&self, path_length: usize) -> bool {
        self.lambda_index >= path_length
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// Every fit at b₀ = 0, β = 0: gives each population's outcome mean.
    NullMean,
    /// Every fit at its null intercept: gives λ_max.
    NullGradient,
    Path,
    CrossValidation,
    Done,
}

/// The LASSO path with cross-validation as a sequence of requests (Flower's strategy idea:
/// what to ask next, how to use the answers; transport lives elsewhere).
#[derive(Debug, Clone)]
pub struct LassoPathSolver {
    settings: LassoSettings,
    p: usize,
    stage: Stage,
    lambdas: Vec<f64>,
    fits: Vec<Fit>,
    rounds: u64,
    cv: Option<(Vec<f64>, Vec<f64>, f64)>,
    n_full: f64,
    /// The most columns (beside the intercept) any fit's set may hold: what every site's
    /// parameter limit admits ([`site_accepts_point_size`]); `usize::MAX` when unbounded.
    max_block_columns: usize,
    /// The path ends before this λ index (`path_length` unless a fit needed a larger set).
    end: usize,
    stop: Option<PathStop>,
}

/// Where and why a path stopped before `path_length` λ values: at this λ a fit's solution
/// needed more columns than the sites' block limit admits (glmnet's `pmax`). The path holds
/// the λ values before it, every fit's solution there exact.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PathStop {
    pub lambda_index: usize,
    /// The fit that needed them (0 = the full fit, k = the fit without fold k).
    pub fold: u32,
    /// Its non-zero coefficients plus the columns that violated the KKT conditions.
    pub columns_needed: usize,
    pub max_block_columns: usize,
}

/// The outcome of a finished run, on the standardised scale.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LassoPath {
    pub family: GlmFamily,
    pub mixing: f64,
    pub folds: u32,
    /// Training patients in the full fit.
    pub n: f64,
    pub lambdas: Vec<f64>,
    pub intercepts: Vec<f64>,
    /// One row per λ, one value per column.
    pub coefficients: Vec<Vec<f64>>,
    /// Whether the full fit reached the tolerance at each λ.
    pub converged: Vec<bool>,
    /// CV mean per λ: binomial deviance (2 × mean held-out log-loss) or mean squared error.
    pub cv_mean: Vec<f64>,
    pub cv_se: Vec<f64>,
    pub lambda_min_index: usize,
    pub lambda_1se_index: usize,
    /// Fold fits that did not converge at some λ (count of (fold, λ) pairs).
    pub fold_fits_not_converged: usize,
    pub rounds: u64,
    /// Set when the path ended early because the sites' parameter limit was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<PathStop>,
}

impl LassoPathSolver {
    pub fn new(settings: LassoSettings, n_features: usize) -> Self {
        let fits = (0..=settings.folds)
            .map(|fold| Fit {
                fold,
                intercept: 0.0,
                beta: vec![0.0; n_features],
                set: Vec::new(),
                // The null mean needs the intercept's gradient only.
                ask: Ask::Newton { all_columns: false },
                known: None,
                hessian_cache: None,
                previous: None,
                halvings: 0,
                lambda_index: 0,
                rounds_at_lambda: 0,
                last_step: None,
                hessian_fresh: false,
                path: Vec::new(),
            })
            .collect();
        let end = settings.path_length;
        LassoPathSolver {
            settings,
            p: n_features,
            stage: Stage::NullMean,
            lambdas: Vec::new(),
            fits,
            rounds: 0,
            cv: None,
            n_full: 0.0,
            max_block_columns: usize::MAX,
            end,
            stop: None,
        }
    }

    /// Keeps every fit's column set within `columns` (beside the intercept): the most every
    /// site's `max_parameter_ratio` admits over the patients of the smallest fit it holds.
    ///
    /// The set keeps the non-zero coefficients first, then the columns that violate the KKT
    /// conditions (largest gradient first), then earlier members, then strong-rule
    /// candidates; a column left out is found again by the KKT check if it is needed. When a
    /// fit has converged on a set of non-zero coefficients only and a column still violates,
    /// its solution at this λ needs more columns than the sites admit: the path ends before
    /// this λ for every fit (glmnet's `pmax`), recorded in [`LassoPath::stopped`]. Each λ the
    /// path keeps is solved exactly, so the path equals the pooled one on its λ values.
    pub fn with_max_block_columns(mut self, columns: usize) -> Self {
        self.max_block_columns = columns;
        self
    }

    /// The λ values the path will hold at most (the cross-validation round's path length).
    pub fn path_end(&self) -> usize {
        self.end
    }

    pub fn settings(&self) -> &LassoSettings {
        &self.settings
    }

    /// The next request, or `None` when the run is finished.
    pub fn request(&self) -> Option<LassoRequest> {
        match self.stage {
            Stage::NullMean | Stage::NullGradient => Some(LassoRequest::Round(self.fits.iter().map(|f| f.point(self.hessian_reuse())).collect())),
            Stage::Path => Some(LassoRequest::Round(self.running().map(|k| self.fits[k].point(self.hessian_reuse())).collect())),
            Stage::CrossValidation => {
                let mut points = Vec::new();
                for fit in &self.fits[1..] {
                    for (b0, beta, _) in fit.path.iter().take(self.end) {
                        points.push(GlmPoint {
                            fold: fit.fold,
                            intercept: *b0,
                            beta: beta.iter().enumerate().filter(|(_, b)| **b != 0.0).map(|(j, b)| (j, *b)).collect(),
                            hessian: Vec::new(),
                            gradient_all_columns: false,
                            hessian_rows: Vec::new(),
                            without_hessian: true,
                        });
                    }
                }
                Some(LassoRequest::CvLoss(points))
            }
            Stage::Done => None,
        }
    }

    fn hessian_reuse(&self) -> HessianReuse {
        HessianReuse { constant: self.settings.family == GlmFamily::Gaussian, distance: self.settings.hessian_reuse }
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.fits.len()).filter(|&k| !self.fits[k].done(self.end))
    }

    /// Uses the totals of a [`LassoRequest::Round`] (one per point, in request order).
    pub fn absorb_round(&mut self, totals: &[PointTotals]) -> Result<(), LassoError> {
        self.rounds += 1;
        let order: Vec<usize> = match self.stage {
            Stage::NullMean | Stage::NullGradient => (0..self.fits.len()).collect(),
            Stage::Path => self.running().collect(),
            _ => return Err(LassoError::Mismatch("no round was requested".into())),
        };
        if order.len() != totals.len() || totals.iter().any(|t| t.gradient.len() != self.p + 1) {
            return Err(LassoError::Mismatch(format!("{} answers for {} points", totals.len(), order.len())));
        }
        for (&k, t) in order.iter().zip(totals) {
            let asked = self.fits[k].point(self.hessian_reuse());
            if t.hessian.len() != (asked.hessian.len() + 1).pow(2) || t.gradient_all_columns != asked.gradient_all_columns || t.n < 1.0 {
                return Err(LassoError::Mismatch("Hessian block size, gradient columns or empty population".into()));
            }
        }
        match self.stage {
            Stage::NullMean => {
                self.n_full = totals[0].n;
                for (fit, t) in self.fits.iter_mut().zip(totals) {
                    // At b₀ = 0: Σ(μ − y) = N μ₀ − Σy.
                    let mu0 = match self.settings.family {
                        GlmFamily::Binomial => 0.5,
                        GlmFamily::Gaussian => 0.0,
                    };
                    let ybar = (t.n * mu0 - t.gradient[0]) / t.n;
                    fit.intercept = match self.settings.family {
                        GlmFamily::Gaussian => ybar,
                        GlmFamily::Binomial => {
                            if ybar <= 0.0 || ybar >= 1.0 {
                                let what = if fit.fold == 0 { "training cohort".to_string() } else { format!("training patients outside fold {}", fit.fold) };
                                return Err(LassoError::SingleClass(what));
                            }
                            (ybar / (1.0 - ybar)).ln()
                        }
                    };
                    // λ_max and the first strong rule need every column's gradient.
                    fit.ask = Ask::Newton { all_columns: true };
                }
                self.stage = Stage::NullGradient;
            }
            Stage::NullGradient => {
                let alpha = self.settings.mixing;
                let n0 = totals[0].n;
                let lambda_max = totals[0].gradient[1..].iter().map(|g| (g / n0).abs()).fold(0.0, f64::max) / alpha.max(1e-3);
                if !(lambda_max > 0.0) {
                    return Err(LassoError::NothingToSelect);
                }
                let l = self.settings.path_length;
                self.lambdas = (0..l).map(|i| lambda_max * self.settings.lambda_min_ratio.powf(i as f64 / (l - 1) as f64)).collect();
                self.stage = Stage::Path;
                for (k, t) in totals.iter().enumerate() {
                    self.step(k, t);
                }
            }
            Stage::Path => {
                for (&k, t) in order.iter().zip(totals) {
                    self.step(k, t);
                }
            }
            _ => unreachable!(),
        }
        if self.stage == Stage::Path && self.running().next().is_none() {
            self.stage = Stage::CrossValidation;
            if self.end == 0 {
                // Not even the first λ's solution fits the column limit: no path, nothing to
                // cross-validate ([`LassoPath::lambdas`] is empty).
                self.cv = Some((Vec::new(), Vec::new(), 0.0));
                self.stage = Stage::Done;
            }
        }
        Ok(())
    }

    /// Uses the totals of a [`LassoRequest::CvLoss`].
    pub fn absorb_cv(&mut self, sum: Vec<f64>, sum_sq: Vec<f64>, n: f64) -> Result<(), LassoError> {
        if self.stage != Stage::CrossValidation || sum.len() != self.end || sum_sq.len() != self.end {
            return Err(LassoError::Mismatch("unexpected cross-validation answer".into()));
        }
        self.rounds += 1;
        self.cv = Some((sum, sum_sq, n));
        self.stage = Stage::Done;
        Ok(())
    }

    /// One fit's answer at its current point.
    fn step(&mut self, k: usize, t: &PointTotals) {
        let Self { settings, lambdas, fits, max_block_columns, end, stop, .. } = self;
        let cap = *max_block_columns;
        let (alpha, tol) = (settings.mixing, settings.tolerance);
        // A quadratic loss converges in one step, so every answer after a step may be the last.
        let quadratic = settings.family == GlmFamily::Gaussian;
        let fit = &mut fits[k];
        let checked = fit.ask == Ask::Gradient;
        let mut t = fit.complete(t);
        let mut lambda = lambdas[fit.lambda_index];

        if !checked {
            // 1. Backtracking: the Newton step raised the objective; halve it and ask again.
            let objective = t.loss / t.n + penalty(&fit.beta, lambda, alpha);
            if let Some((b0, beta, obj)) = &fit.previous
                && objective > obj + 1e-13 * obj.abs().max(1.0)
                && fit.halvings < 40
            {
                fit.halvings += 1;
                let halved = fit.beta.iter().zip(beta).map(|(x, p)| 0.5 * (x + p)).collect();
                fit.move_to(0.5 * (fit.intercept + b0), halved);
                fit.ask = Ask::Newton { all_columns: quadratic };
                // The step may have come from a kept block too far from the truth.
                fit.hessian_cache = None;
                return;
            }
            fit.halvings = 0;
            fit.rounds_at_lambda += 1;
        }

        loop {
            let g: Vec<f64> = t.gradient.iter().map(|v| v / t.n).collect();
            let h: Vec<f64> = t.hessian.iter().map(|v| v / t.n).collect();
            let all_columns = t.gradient_all_columns;
            // 2./3. Newton step on the column set; KKT check outside it when every column's
            // gradient is known.
            let violators = if all_columns { kkt_violators(&g, &fit.set, lambda, alpha) } else { Vec::new() };
            let (u0, u) = solve_quadratic(&g, &h, &fit.set, fit.intercept, &fit.beta, lambda, alpha, 1e-3 * tol);
            let step = fit.set.iter().map(|&j| (u[j] - fit.beta[j]).abs()).fold((u0 - fit.intercept).abs(), f64::max);
            if step <= tol && !all_columns {
                // Converged on the set: check every other column at this point.
                fit.ask = Ask::Gradient;
                fit.known = Some(t);
                return;
            }
            let converged = violators.is_empty() && step <= tol;
            if !converged && fit.rounds_at_lambda < settings.max_rounds_per_lambda {
                let strong_next = lambdas.get(fit.lambda_index + 1).filter(|_| all_columns).map(|&next| (next, lambda));
                let set = next_set(&fit.set, &u, &g, &violators, strong_next, alpha, cap);
                if step <= tol && !violators.iter().any(|j| set.binary_search(j).is_ok()) {
                    // Converged on a set the limit fills with non-zero coefficients, and a
                    // column outside still violates: this λ needs a larger set than the sites
                    // admit. The path ends before it, for every fit.
                    if fit.lambda_index < *end {
                        *end = fit.lambda_index;
                        let columns_needed = u.iter().filter(|b| **b != 0.0).count() + violators.len();
                        *stop = Some(PathStop { lambda_index: fit.lambda_index, fold: fit.fold, columns_needed, max_block_columns: cap });
                    }
                    return;
                }
                fit.previous = Some((fit.intercept, fit.beta.clone(), objective_at(&t, &fit.beta, lambda, alpha)));
                fit.move_to(u0, u);
                fit.set = set;
                // When the next answer is likely the converged one it carries every column's
                // gradient at once instead of a check round after it: after a step below
                // √tolerance with this point's own Hessian (Newton converges quadratically),
                // or when the step times its contraction rate is below the tolerance with a
                // kept one (which converges linearly).
                let rate = fit.last_step.map(|last| (step / last).min(1.0));
                fit.last_step = Some(step);
                let last_likely = if fit.hessian_fresh { step <= tol.sqrt() } else { step * rate.unwrap_or(1.0) <= tol };
                fit.ask = Ask::Newton { all_columns: quadratic || last_likely };
                if !fit.hessian_fresh && !quadratic && rate.is_some_and(|r| r > HESSIAN_REFRESH_RATE) {
                    // The kept block contracts too slowly here: a fresh one for the next step.
                    fit.hessian_cache = None;
                }
                return;
            }
            // 4. This λ is done (at the evaluated point); move on with the same answer.
            fit.path.push((fit.intercept, fit.beta.clone(), converged));
            fit.lambda_index += 1;
            fit.rounds_at_lambda = 1;
            fit.previous = None;
            fit.last_step = None;
            if fit.lambda_index >= *end {
                return;
            }
            let Some(&next) = lambdas.get(fit.lambda_index) else { return };
            let nonzero: Vec<usize> = (0..fit.beta.len()).filter(|&j| fit.beta[j] != 0.0).collect();
            if all_columns {
                // The next λ's set: its non-zero coefficients and the strong-rule candidates
                // |gⱼ| ≥ α(2λₗ₊₁ − λₗ), not every column a larger λ once needed (within the
                // sites' limit, largest gradients first).
                let strong: Vec<usize> = (0..g.len() - 1).filter(|&j| g[j + 1].abs() >= alpha * (2.0 * next - lambda)).collect();
                let wanted = capped(&nonzero, &[&by_gradient(&strong, &g)], cap);
                if wanted.iter().any(|j| fit.set.binary_search(j).is_err()) {
                    // New candidates need their Hessian rows: ask again at the same point.
                    fit.set = wanted;
                    fit.ask = Ask::Newton { all_columns: false };
                    fit.known = Some(t);
                    return;
                }
                t.hessian = narrow(&t.hessian, &fit.set, &wanted);
                fit.set = wanted;
            } else {
                // Out of rounds before a gradient of every column came: go on with the set.
                fit.set = union(&fit.set, &nonzero);
            }
            lambda = next;
        }
    }

    /// Rounds used so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The path with its cross-validation, once [`request`](Self::request) returns `None`.
    pub fn finish(&self) -> Option<LassoPath> {
        let (sum, sq, n) = self.cv.as_ref()?;
        let n = *n;
        // Both families report twice the mean loss: the binomial deviance, or the mean squared
        // error (the loss is ½ r²).
        let scale = 2.0;
        let cv_mean: Vec<f64> = sum.iter().map(|s| scale * s / n).collect();
        let cv_se: Vec<f64> = sum
            .iter()
            .zip(sq)
            .map(|(s, q)| {
                let m = s / n;
                let var = ((q / n) - m * m).max(0.0);
                scale * (var / (n - 1.0)).sqrt()
            })
            .collect();
        let lambda_min_index = (0..cv_mean.len()).fold(0, |best, l| if cv_mean[l] < cv_mean[best] { l } else { best });
        let bound = cv_mean.get(lambda_min_index).map_or(f64::INFINITY, |m| m + cv_se[lambda_min_index]);
        let lambda_1se_index = (0..=lambda_min_index).find(|&l| cv_mean.get(l).is_some_and(|m| *m <= bound)).unwrap_or(lambda_min_index);
        let full = &self.fits[0].path[..self.end];
        Some(LassoPath {
            family: self.settings.family,
            mixing: self.settings.mixing,
            folds: self.settings.folds,
            n: self.n_full,
            lambdas: self.lambdas[..self.end].to_vec(),
            intercepts: full.iter().map(|p| p.0).collect(),
            coefficients: full.iter().map(|p| p.1.clone()).collect(),
            converged: full.iter().map(|p| p.2).collect(),
            cv_mean,
            cv_se,
            lambda_min_index,
            lambda_1se_index,
            fold_fits_not_converged: self.fits[1..].iter().map(|f| f.path.iter().take(self.end).filter(|p| !p.2).count()).sum(),
            rounds: self.rounds,
            stopped: self.stop.clone(),
        })
    }
}

fn objective_at(t: &PointTotals, beta: &[f64], lambda: f64, alpha: f64) -> f64 {
    t.loss / t.n + penalty(beta, lambda, alpha)
}

fn kkt_violators(g: &[f64], set: &[usize], lambda: f64, alpha: f64) -> Vec<usize> {
    let bound = lambda * alpha * (1.0 + 1e-9) + 1e-15;
    (0..g.len() - 1).filter(|&j| set.binary_search(&j).is_err() && g[j + 1].abs() > bound).collect()
}

/// `partial` (intercept, then `set`, row-major) with its NaN entries taken from `known`
/// (intercept, then `known_set`), which holds every pair of columns outside the rows asked.
fn fill_known(partial: &[f64], set: &[usize], known: &[f64], known_set: &[usize]) -> Vec<f64> {
    let (m, mk) = (set.len() + 1, known_set.len() + 1);
    let index: Vec<Option<usize>> = std::iter::once(Some(0)).chain(set.iter().map(|j| known_set.binary_search(j).ok().map(|a| a + 1))).collect();
    let mut out = partial.to_vec();
    for r in 0..m {
        for c in 0..m {
            if out[r * m + c].is_nan()
                && let (Some(a), Some(b)) = (index[r], index[c])
            {
                out[r * m + c] = known[a * mk + b];
            }
        }
    }
    out
}

/// The block of `hessian` (intercept, then `set`, row-major) of the intercept and `to` ⊆ `set`.
fn narrow(hessian: &[f64], set: &[usize], to: &[usize]) -> Vec<f64> {
    let m = set.len() + 1;
    let index: Vec<usize> = std::iter::once(0).chain(to.iter().map(|j| 1 + set.binary_search(j).expect("a subset of the set"))).collect();
    index.iter().flat_map(|&r| index.iter().map(move |&c| hessian[r * m + c])).collect()
}

fn union(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut v: Vec<usize> = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The columns the next round returns the Hessian of: the non-zero coefficients of the new
/// point `beta`, the KKT violators, the current set and the strong-rule candidates for the
/// next λ — in that order of priority when they are more than `cap`.
#[allow(clippy::too_many_arguments)]
fn next_set(set: &[usize], beta: &[f64], g: &[f64], violators: &[usize], strong: Option<(f64, f64)>, alpha: f64, cap: usize) -> Vec<usize> {
    let nonzero: Vec<usize> = beta.iter().enumerate().filter(|(_, b)| **b != 0.0).map(|(j, _)| j).collect();
    let candidates: Vec<usize> = match strong {
        Some((next, current)) => (0..g.len() - 1).filter(|&j| g[j + 1].abs() >= alpha * (2.0 * next - current)).collect(),
        None => Vec::new(),
    };
    capped(&nonzero, &[&by_gradient(violators, g), set, &by_gradient(&candidates, g)], cap)
}

/// `columns` ordered by |gⱼ| (largest first; ties by column).
fn by_gradient(columns: &[usize], g: &[f64]) -> Vec<usize> {
    let mut v = columns.to_vec();
    v.sort_by(|&a, &b| g[b + 1].abs().total_cmp(&g[a + 1].abs()).then(a.cmp(&b)));
    v
}

/// `first` (all of it), then columns from `rest` in order, up to `cap` columns; sorted.
fn capped(first: &[usize], rest: &[&[usize]], cap: usize) -> Vec<usize> {
    let mut out: Vec<usize> = first.to_vec();
    out.sort_unstable();
    out.dedup();
    for &j in rest.iter().flat_map(|r| r.iter()) {
        if out.len() >= cap {
            break;
        }
        if let Err(at) = out.binary_search(&j) {
            out.insert(at, j);
        }
    }
    out
}

/// Minimises gᵀd + ½ dᵀHd + λ[α‖β + d‖₁ + (1 − α)/2 ‖β + d‖²] over the intercept and the
/// columns in `set` (H is the block of the intercept and `set`) by cyclic coordinate descent.
/// Returns the new intercept and coefficients (zero outside the set).
fn solve_quadratic(g: &[f64], h: &[f64], set: &[usize], b0: f64, beta: &[f64], lambda: f64, alpha: f64, tol: f64) -> (f64, Vec<f64>) {
    let m = set.len() + 1;
    // Coordinates: 0 = intercept, a = set[a - 1].
    let start: Vec<f64> = std::iter::once(b0).chain(set.iter().map(|&j| beta[j])).collect();
    let grad: Vec<f64> = std::iter::once(g[0]).chain(set.iter().map(|&j| g[j + 1])).collect();
    let mut u = start.clone();
    let mut hd = vec![0.0; m]; // H (u − start)
    for _sweep in 0..100_000 {
        let mut max_change: f64 = 0.0;
        for a in 0..m {
            let haa = h[a * m + a];
            let b = grad[a] + hd[a];
            let new = if a == 0 {
                if haa > 0.0 { u[0] - b / haa } else { u[0] }
            } else {
                let denom = haa + lambda * (1.0 - alpha);
                if denom > 0.0 { soft_threshold(haa * u[a] - b, lambda * alpha) / denom } else { 0.0 }
            };
            let delta = new - u[a];
            if delta != 0.0 {
                u[a] = new;
                for c in 0..m {
                    hd[c] += h[c * m + a] * delta;
                }
                max_change = max_change.max(delta.abs() * haa.max(1e-300).sqrt());
            }
        }
        if max_change < tol {
            break;
        }
    }
    let mut out = vec![0.0; beta.len()];
    for (a, &j) in set.iter().enumerate() {
        out[j] = u[a + 1];
    }
    (u[0], out)
}

#[inline]
fn soft_threshold(x: f64, t: f64) -> f64 {
    if x > t {
        x - t
    } else if x < -t {
        x + t
    } else {
        0.0
    }
}

/// Runs the whole solver against a function that answers a request with the combined
/// totals (the sites' answers summed). The coordinator does the same over the network.
pub fn drive(
    mut solver: LassoPathSolver,
    mut round: impl FnMut(&[GlmPoint]) -> Result<Vec<PointTotals>, String>,
    mut cv: impl FnMut(&[GlmPoint], usize) -> Result<(Vec<f64>, Vec<f64>, f64), String>,
) -> Result<LassoPath, String> {
    while let Some(req) = solver.request() {
        match req {
            LassoRequest::Round(points) => {
                let totals = round(&points)?;
                solver.absorb_round(&totals).map_err(|e| e.to_string())?;
            }
            LassoRequest::CvLoss(points) => {
                let (s, q, n) = cv(&points, solver.path_end())?;
                solver.absorb_cv(s, q, n).map_err(|e| e.to_string())?;
            }
        }
    }
    solver.finish().ok_or_else(|| "the solver finished without a result".into())
}

// ---- site half: recomputation --------------------------------------------------------------

/// What a site checks of a LASSO run beyond each point's size ([`site_accepts_point_size`]):
/// that every point is the one the plan's solver asks next. The coordinator forwards every
/// site's signed answer to a run's previous round with the next task; each site checks the
/// signatures (`site-agent`'s `replay`), sums the answers as the coordinator does
/// ([`sum_of_answers`]), feeds the sum to its own copy of the solver and answers only if the
/// task's points are the ones that copy asks for.
///
/// Why: each block the coordinator reads is then one the approved study's own solver asks
/// for, from the sums it has already seen; it chooses no point. Without this, a coordinator
/// asks for the full population's Hessian block and a fold fit's block at the same point, and
/// their difference covers only that fold's 5–6 patients: 20 such tasks read every row and
/// outcome of a site's training cohort (`cargo test -p site-agent --test attacks
/// fold_differenced_hessian`). The solver is deterministic and the sums are fixed point, so a
/// site's copy reaches the coordinator's points bit for bit.
///
/// What remains free: the run's inputs (candidate columns, standardiser, column limit), each
/// checked on its own, and one run per feature table.
#[derive(Debug, Clone)]
pub struct LassoReplica {
    solver: LassoPathSolver,
    p: usize,
}

impl LassoReplica {
    /// A run of `settings` (the plan's, with the study's fold count) over `p` columns, with
    /// each fit's set kept within `max_block_columns`.
    pub fn new(settings: LassoSettings, p: usize, max_block_columns: usize) -> Self {
        LassoReplica { solver: LassoPathSolver::new(settings, p).with_max_block_columns(max_block_columns), p }
    }

    /// Checks that `points` are the round the solver asks for next.
    pub fn expect_round(&self, points: &[proto::GlmPoint]) -> Result<(), SiteRefusal> {
        match self.solver.request() {
            Some(LassoRequest::Round(want)) => same_points(&want, points),
            Some(LassoRequest::CvLoss(_)) => {
                Err(SiteRefusal::InvalidParameters("LASSO recomputation: the run's next task is its cross-validation round, not another path round".into()))
            }
            None => Err(SiteRefusal::InvalidParameters("LASSO recomputation: the run is finished".into())),
        }
    }

    /// Checks that `points` over a path of `path_length` are the cross-validation round the
    /// solver asks for next.
    pub fn expect_cv(&self, points: &[proto::GlmPoint], path_length: u32) -> Result<(), SiteRefusal> {
        match self.solver.request() {
            Some(LassoRequest::CvLoss(want)) => {
                if path_length as usize != self.solver.path_end() {
                    return Err(SiteRefusal::InvalidParameters(format!(
                        "LASSO recomputation: cross-validation over a path of {path_length}; the run's path ends after {}",
                        self.solver.path_end()
                    )));
                }
                same_points(&want, points)
            }
            Some(LassoRequest::Round(_)) => {
                Err(SiteRefusal::InvalidParameters("LASSO recomputation: the run's path is not finished, so its cross-validation round is not due".into()))
            }
            None => Err(SiteRefusal::InvalidParameters("LASSO recomputation: the run is finished".into())),
        }
    }

    /// Feeds the sum of every site's answer to the round the solver asked for last.
    pub fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        let bad = |e: String| SiteRefusal::InvalidParameters(format!("LASSO recomputation: the previous round's answers: {e}"));
        match self.solver.request() {
            Some(LassoRequest::Round(points)) => {
                let totals = combine_round(std::slice::from_ref(sum), &points, self.p).map_err(|e| bad(e.to_string()))?;
                self.solver.absorb_round(&totals).map_err(|e| bad(e.to_string()))
            }
            _ => Err(bad("the run asked for no further path round".into())),
        }
    }

    /// Rounds absorbed so far.
    pub fn rounds(&self) -> u64 {
        self.solver.rounds()
    }
}

/// A round's answers summed as the coordinator sums them: one site's answer as it is; those
/// of two or more sites in fixed point ([`crate::secure_sum::combine`], masked or not), in
/// site order.
pub fn sum_of_answers(answers: &[SiteAggregate]) -> Result<SiteAggregate, CombineError> {
    match answers {
        [] => Err(CombineError::NoSites),
        [one] => Ok(one.clone()),
        _ => {
            let mut sorted = answers.to_vec();
            sorted.sort_by(|a, b| a.site_id.cmp(&b.site_id));
            crate::secure_sum::combine(&sorted)
        }
    }
}

fn same_points(want: &[GlmPoint], got: &[proto::GlmPoint]) -> Result<(), SiteRefusal> {
    if want.len() != got.len() {
        return Err(SiteRefusal::InvalidParameters(format!(
            "LASSO recomputation: {} points; the plan's solver, from the sums of the sites' answers so far, asks for {}",
            got.len(),
            want.len()
        )));
    }
    for (k, (w, g)) in want.iter().zip(got).enumerate() {
        if w.to_proto() != *g {
            return Err(SiteRefusal::InvalidParameters(format!(
                "LASSO recomputation: point {k} (fold {}) is not the one the plan's solver asks for next from the sums of the sites' answers so far{}; this site answers only the study's own points",
                g.fold,
                if g.fold == w.fold { String::new() } else { format!(" (a point of fold {})", w.fold) }
            )));
        }
    }
    Ok(())
}

// ---- pooled reference --------------------------------------------------------------------

/// glmnet's algorithm on all standardised rows in one process: for each λ (warm starts), an
/// outer IRLS loop (binomial) around cyclic coordinate descent with residual updates over every
/// column. Independent of the federated solver above: no Hessian blocks, no strong rules.
pub fn pooled_path(z: &[Vec<f64>], y: &[f64], lambdas: &[f64], family: GlmFamily, alpha: f64, tol: f64) -> Vec<(f64, Vec<f64>)> {
    let n = y.len() as f64;
    let p = z.first().map_or(0, |r| r.len());
    let ybar = y.iter().sum::<f64>() / n;
    let mut b0 = match family {
        GlmFamily::Gaussian => ybar,
        GlmFamily::Binomial => (ybar / (1.0 - ybar)).ln(),
    };
    let mut beta = vec![0.0; p];
    let mut out = Vec::new();
    for &lambda in lambdas {
        for _outer in 0..1000 {
            // Quadratic approximation at the current point: weights w and working response.
            let eta: Vec<f64> = z.iter().map(|r| b0 + r.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>()).collect();
            let (w, work): (Vec<f64>, Vec<f64>) = eta
                .iter()
                .zip(y)
                .map(|(&e, &yi)| {
                    let (_, mu, w) = family.evaluate(e, yi);
                    let w = w.max(1e-12);
                    (w, e + (yi - mu) / w)
                })
                .unzip();
            let (old_b0, old_beta) = (b0, beta.clone());
            // Residual of the weighted least-squares problem.
            let mut r: Vec<f64> = work.iter().zip(&eta).map(|(a, e)| a - e).collect();
            let xw: Vec<f64> = (0..p).map(|j| z.iter().zip(&w).map(|(row, wi)| wi * row[j] * row[j]).sum::<f64>() / n).collect();
            let sw = w.iter().sum::<f64>() / n;
            for _ in 0..100_000 {
                let mut max_change: f64 = 0.0;
                let d0 = r.iter().zip(&w).map(|(ri, wi)| ri * wi).sum::<f64>() / n / sw;
                if d0 != 0.0 {
                    b0 += d0;
                    r.iter_mut().for_each(|ri| *ri -= d0);
                    max_change = max_change.max(d0.abs());
                }
                for j in 0..p {
                    let rho = z.iter().zip(&r).zip(&w).map(|((row, ri), wi)| wi * row[j] * ri).sum::<f64>() / n + xw[j] * beta[j];
                    let new = soft_threshold(rho, lambda * alpha) / (xw[j] + lambda * (1.0 - alpha));
                    let d = new - beta[j];
                    if d != 0.0 {
                        beta[j] = new;
                        for (ri, row) in r.iter_mut().zip(z) {
                            *ri -= d * row[j];
                        }
                        max_change = max_change.max(d.abs());
                    }
                }
                if max_change < tol {
                    break;
                }
            }
            let change = beta.iter().zip(&old_beta).map(|(a, b)| (a - b).abs()).fold((b0 - old_b0).abs(), f64::max);
            if family == GlmFamily::Gaussian || change < tol {
                break;
            }
        }
        out.push((b0, beta.clone()));
    }
    out
}

/// Pooled cross-validation with the same folds and λ values: (CV mean, CV SE) per λ.
pub fn pooled_cv(z: &[Vec<f64>], y: &[f64], fold: &[u32], folds: u32, lambdas: &[f64], family: GlmFamily, alpha: f64, tol: f64) -> (Vec<f64>, Vec<f64>) {
    let n = y.len() as f64;
    let mut losses = vec![vec![0.0; y.len()]; lambdas.len()];
    for k in 1..=folds {
        let train: Vec<usize> = (0..y.len()).filter(|&i| fold[i] != k).collect();
        let zt: Vec<Vec<f64>> = train.iter().map(|&i| z[i].clone()).collect();
        let yt: Vec<f64> = train.iter().map(|&i| y[i]).collect();
        let path = pooled_path(&zt, &yt, lambdas, family, alpha, tol);
        for (l, (b0, beta)) in path.iter().enumerate() {
            for i in (0..y.len()).filter(|&i| fold[i] == k) {
                let eta = b0 + z[i].iter().zip(beta).map(|(a, b)| a * b).sum::<f64>();
                losses[l][i] = family.evaluate(eta, y[i]).0;
            }
        }
    }
    losses
        .iter()
        .map(|ls| {
            let m = ls.iter().sum::<f64>() / n;
            let var = ls.iter().map(|l| (l - m) * (l - m)).sum::<f64>() / n;
            (2.0 * m, 2.0 * (var / (n - 1.0)).sqrt())
        })
        .unzip()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub use crate::algorithms::testdata::{cohort, federated, federated_within, standardiser};

    const PARTITIONS: [&[usize]; 3] = [&[229], &[73, 62, 53, 41], &[5, 60, 11, 40, 7, 90, 16]];

    fn assert_paths_equal(a: &LassoPath, b: &LassoPath, tol: f64) {
        assert_eq!(a.lambdas.len(), b.lambdas.len());
        for l in 0..a.lambdas.len() {
            assert!((a.lambdas[l] - b.lambdas[l]).abs() <= 1e-12 * b.lambdas[l], "λ {l}");
            assert!((a.intercepts[l] - b.intercepts[l]).abs() <= tol, "intercept at λ {l}");
            for j in 0..a.coefficients[l].len() {
                let (u, v) = (a.coefficients[l][j], b.coefficients[l][j]);
                assert!((u - v).abs() <= tol, "β{j} at λ {l}: {u} vs {v}");
            }
            assert!((a.cv_mean[l] - b.cv_mean[l]).abs() <= tol, "CV mean at λ {l}: {} vs {}", a.cv_mean[l], b.cv_mean[l]);
            assert!((a.cv_se[l] - b.cv_se[l]).abs() <= tol, "CV SE at λ {l}");
        }
        assert_eq!((a.lambda_min_index, a.lambda_1se_index), (b.lambda_min_index, b.lambda_1se_index));
    }

    fn check_family(family: GlmFamily, mixing: f64) {
        let (x, y, fold) = cohort(7);
        let settings = LassoSettings { family, mixing, ..Default::default() };
        let runs: Vec<LassoPath> = PARTITIONS.iter().map(|s| federated(&x, &y, &fold, s, &settings, 0).unwrap()).collect();
        let reference = &runs[0];
        assert!(reference.converged.iter().all(|&c| c), "full fit converged at every λ");
        assert_eq!(reference.fold_fits_not_converged, 0);
        for r in &runs[1..] {
            assert_paths_equal(r, reference, 1e-9);
        }
        // Independent pooled solver on all rows.
        let std = standardiser(&x);
        let z = std.apply(&x).unwrap();
        let pooled = pooled_path(&z, &y, &reference.lambdas, family, mixing, 1e-13);
        for (l, (b0, beta)) in pooled.iter().enumerate() {
            assert!((b0 - reference.intercepts[l]).abs() < 1e-7, "pooled intercept at λ {l}");
            for j in 0..beta.len() {
                assert!((beta[j] - reference.coefficients[l][j]).abs() < 1e-7, "pooled β{j} at λ {l}: {} vs {}", beta[j], reference.coefficients[l][j]);
            }
        }
        let (cvm, cvse) = pooled_cv(&z, &y, &fold, 10, &reference.lambdas, family, mixing, 1e-13);
        for l in 0..cvm.len() {
            assert!((cvm[l] - reference.cv_mean[l]).abs() < 1e-7 && (cvse[l] - reference.cv_se[l]).abs() < 1e-7, "pooled CV at λ {l}");
        }
        // The path selects something, and the CV curve has an interior minimum.
        let nonzero = reference.coefficients[reference.lambda_min_index].iter().filter(|b| **b != 0.0).count();
        assert!((2..40).contains(&nonzero), "{nonzero} features at λ_min");
        assert!(reference.lambda_1se_index <= reference.lambda_min_index);
    }

    #[test]
    fn partition_lasso_binomial_1_4_and_7_uneven_sites_equal_pooled() {
        check_family(GlmFamily::Binomial, 1.0);
    }

    #[test]
    fn partition_lasso_gaussian_1_4_and_7_uneven_sites_equal_pooled() {
        check_family(GlmFamily::Gaussian, 1.0);
    }

    #[test]
    fn partition_elastic_net_binomial_equals_pooled() {
        check_family(GlmFamily::Binomial, 0.5);
    }

    /// The gaussian path against linfa's elastic net (coordinate descent, same objective as
    /// scikit-learn's `ElasticNet`) on the pooled standardised rows, at several λ.
    #[test]
    fn partition_lasso_gaussian_matches_linfa_elastic_net() {
        use linfa::prelude::*;
        let (x, y, fold) = cohort(7);
        for mixing in [1.0, 0.5] {
            let settings = LassoSettings { family: GlmFamily::Gaussian, mixing, ..Default::default() };
            let path = federated(&x, &y, &fold, &[73, 62, 53, 41], &settings, 0).unwrap();
            let z = standardiser(&x).apply(&x).unwrap();
            let records = ndarray::Array2::from_shape_fn((z.len(), 40), |(i, j)| z[i][j]);
            let targets = ndarray::Array1::from(y.clone());
            let data = linfa::Dataset::new(records, targets);
            for l in [5, 20, 40, 70, 99] {
                let model =
                    linfa_elasticnet::ElasticNet::params().penalty(path.lambdas[l]).l1_ratio(mixing).tolerance(1e-13).max_iterations(1_000_000).fit(&data).unwrap();
                assert!((model.intercept() - path.intercepts[l]).abs() < 1e-6, "intercept at λ {l}");
                for (j, b) in model.hyperplane().iter().enumerate() {
                    assert!((b - path.coefficients[l][j]).abs() < 1e-6, "α {mixing}, λ {l}, β{j}: linfa {b} vs {}", path.coefficients[l][j]);
                }
            }
        }
    }

    #[test]
    fn binomial_path_needs_a_few_hundred_rounds_at_most() {
        let (x, y, fold) = cohort(3);
        let path = federated(&x, &y, &fold, &[73, 62, 53, 41], &LassoSettings::default(), 0).unwrap();
        assert!(path.rounds <= 400, "{} rounds", path.rounds);
        let gaussian = federated(&x, &y, &fold, &[73, 62, 53, 41], &LassoSettings { family: GlmFamily::Gaussian, ..Default::default() }, 0).unwrap();
        assert!(gaussian.rounds <= 250, "{} rounds", gaussian.rounds);
    }

    /// What one site sends over a whole path when the candidates outnumber the patients, as
    /// the study's do: every column's gradient about once per λ and fit (the KKT check and the
    /// strong rule), otherwise only the set's gradient and Hessian block, the set being the
    /// non-zero coefficients and the strong-rule candidates of the current λ. The path equals
    /// the pooled one as in the partition tests.
    /// What one LASSO run on 229 patients × 400 correlated columns (one site) asked for.
    struct WideRun {
        path: LassoPath,
        p: usize,
        gradients_sent: usize,
        /// Rounds × fits × (p + 1): every column's gradient in every round.
        gradients_every_round: usize,
        hessians_sent: usize,
        /// Had every Newton round sent its whole block.
        hessians_every_round: usize,
        /// Whole blocks, row answers, answers without a Hessian.
        kinds: [usize; 3],
        all_column_gradients_per_lambda_and_fit: f64,
        largest_set: usize,
    }

    fn wide_run(settings: &LassoSettings) -> WideRun {
        let (x, y, fold) = crate::algorithms::testdata::cohort_of_width(11, 400);
        let std = standardiser(&x);
        let p = std.center.len();
        let view = TrainingView { x: &x, y: &y, fold: &fold };
        let (mut gradients_sent, mut hessians_sent, mut all_column_gradients, mut largest_set) = (0usize, 0usize, 0usize, 0usize);
        let (mut hessians_every_round, mut kinds) = (0usize, [0usize; 3]);
        let path = drive(
            LassoPathSolver::new(settings.clone(), p),
            |points| {
                let answer = site_round(view, &std, settings.family, points, 0, f64::INFINITY).map_err(|e| e.to_string())?;
                for t in &answer.tensors {
                    if t.name.starts_with("gradient.") {
                        gradients_sent += t.values.len();
                    } else if t.name.starts_with("hessian.") {
                        hessians_sent += t.values.len();
                    }
                }
                all_column_gradients += points.iter().filter(|pt| pt.gradient_all_columns).count();
                for pt in points.iter().filter(|pt| !(pt.without_hessian && pt.hessian.is_empty())) {
                    let m = pt.hessian.len() + 1;
                    hessians_every_round += m * (m + 1) / 2;
                    kinds[if pt.without_hessian {
                        2
                    } else if pt.hessian_rows.is_empty() {
                        0
                    } else {
                        1
                    }] += 1;
                }
                largest_set = largest_set.max(points.iter().map(|pt| pt.hessian.len()).max().unwrap_or(0));
                combine_round(&[SiteAggregate::new("s", answer)], points, p).map_err(|e| e.to_string())
            },
            |points, l| {
                let answer = site_cv_loss(view, &std, settings.family, l, points, 0, f64::INFINITY).map_err(|e| e.to_string())?;
                combine_cv(&[SiteAggregate::new("s", answer)], l).map_err(|e| e.to_string())
            },
        )
        .unwrap();
        let fits = settings.folds as usize + 1;
        let run = WideRun {
            gradients_every_round: path.rounds as usize * fits * (p + 1),
            all_column_gradients_per_lambda_and_fit: all_column_gradients as f64 / (fits * settings.path_length) as f64,
            path,
            p,
            gradients_sent,
            hessians_sent,
            hessians_every_round,
            kinds,
            largest_set,
        };
        println!(
            "hessian_reuse {}: {} rounds; {} gradient values from the site ({} for every column's gradient in every round), \
             {} Hessian values ({} for every Newton round's whole block; {} whole blocks, {} row answers, {} without); \
             {:.2} gradients of every column per λ and fit; largest Hessian set {} columns",
            settings.hessian_reuse,
            run.path.rounds,
            run.gradients_sent,
            run.gradients_every_round,
            run.hessians_sent,
            run.hessians_every_round,
            run.kinds[0],
            run.kinds[1],
            run.kinds[2],
            run.all_column_gradients_per_lambda_and_fit,
            run.largest_set
        );
        let pooled = pooled_path(&std.apply(&x).unwrap(), &y, &run.path.lambdas, settings.family, 1.0, 1e-13);
        for (l, (b0, beta)) in pooled.iter().enumerate() {
            assert!((b0 - run.path.intercepts[l]).abs() < 1e-7, "pooled intercept at λ {l}");
            for j in 0..p {
                assert!((beta[j] - run.path.coefficients[l][j]).abs() < 1e-7, "pooled β{j} at λ {l}: {} vs {}", beta[j], run.path.coefficients[l][j]);
            }
        }
        run
    }

    #[test]
    fn wide_candidates_cost_about_one_gradient_of_every_column_per_lambda_and_fit() {
        let fresh = wide_run(&LassoSettings { hessian_reuse: 0.0, ..LassoSettings::default() });
        let reused = wide_run(&LassoSettings::default());
        for run in [&fresh, &reused] {
            let per = run.all_column_gradients_per_lambda_and_fit;
            assert!(per <= 1.2, "{per:.2} gradients of every column per λ and fit");
            assert!(run.gradients_sent * 2 < run.gradients_every_round, "{} gradient values sent", run.gradients_sent);
            let selected = run.path.coefficients[run.path.lambda_min_index].iter().filter(|b| **b != 0.0).count();
            assert!(run.largest_set < run.p / 2 && selected > 0, "set of {}, {selected} selected", run.largest_set);
        }
        // Without reuse: whole blocks, apart from the rows new candidates add at a λ's last point.
        assert_eq!(fresh.kinds[2], 0, "no answer without a Hessian when none is reused");
        assert!(fresh.hessians_sent * 10 > fresh.hessians_every_round * 9);
        // With the default: at most 60 % of those Hessian values, for at most 30 % more rounds.
        assert!(reused.hessians_sent * 10 < fresh.hessians_sent * 6, "{} against {}", reused.hessians_sent, fresh.hessians_sent);
        assert!(reused.path.rounds * 10 < fresh.path.rounds * 13, "{} rounds against {}", reused.path.rounds, fresh.path.rounds);
    }

    #[test]
    fn a_site_with_a_fold_below_its_minimum_refuses() {
        let (x, y, fold) = cohort(7);
        // The 41-patient site has about 4 patients per fold.
        let err = federated(&x, &y, &fold, &[73, 62, 53, 41], &LassoSettings::default(), 5).unwrap_err();
        assert!(err.contains("fold") && err.contains("fewer than this site's minimum of 5"), "{err}");
    }

    #[test]
    fn hostile_points_are_refused() {
        let (x, y, fold) = cohort(7);
        let std = standardiser(&x);
        let view = TrainingView { x: &x, y: &y, fold: &fold };
        let bad = crate::proto::GlmPoint { fold: 0, intercept: 0.0, nonzero: vec![3, 2], coefficients: vec![1.0, 1.0], gradient_all_columns: true, ..Default::default() };
        assert!(GlmPoint::from_proto(&bad, 40, 10).is_err());
        let out_of_range = crate::proto::GlmPoint { fold: 11, ..Default::default() };
        assert!(GlmPoint::from_proto(&out_of_range, 40, 10).is_err());
        let ok = GlmPoint::from_proto(&crate::proto::GlmPoint::default(), 40, 10).unwrap();
        assert!(site_round(view, &std, GlmFamily::Binomial, &[ok], 5, 0.33).is_ok());
        // Rows of the Hessian: a subset of the block, ascending, and never together with "no
        // Hessian"; a subset of what a point may already ask for, so nothing new to bound.
        let rows =
            |hessian: Vec<u32>, hessian_rows: Vec<u32>, without_hessian: bool| crate::proto::GlmPoint { hessian, hessian_rows, without_hessian, ..Default::default() };
        for (what, point) in [
            ("a row outside the block", rows(vec![1, 2], vec![3], false)),
            ("rows not ascending", rows(vec![1, 2, 3], vec![3, 1], false)),
            ("rows without a Hessian", rows(vec![1, 2], vec![2], true)),
        ] {
            assert!(GlmPoint::from_proto(&point, 40, 10).is_err(), "{what} accepted");
        }
        let asked = GlmPoint::from_proto(&rows(vec![1, 2, 3], vec![2], false), 40, 10).unwrap();
        let answer = site_round(view, &std, GlmFamily::Binomial, &[asked], 5, 0.33).unwrap();
        let tensor = |name: &str| answer.tensors.iter().find(|t| t.name == name).unwrap().values.len();
        // One row over the intercept and three columns; the gradient of the intercept and the block's columns.
        assert_eq!((tensor("hessian.0"), tensor("gradient.0")), (4, 4));
        let none = GlmPoint::from_proto(&rows(vec![1, 2, 3], vec![], true), 40, 10).unwrap();
        let answer = site_round(view, &std, GlmFamily::Binomial, &[none], 5, 0.33).unwrap();
        assert_eq!(answer.tensors.iter().find(|t| t.name == "hessian.0").unwrap().values.len(), 0);
    }

    /// A plan at the default writes no `hessian_reuse`, so plans approved before the setting
    /// existed keep their hash; any other value is written and read back.
    #[test]
    fn hessian_reuse_is_left_out_of_a_plan_at_its_default() {
        let default = serde_json::to_value(LassoSettings::default()).unwrap();
        assert!(default.get("hessian_reuse").is_none() && default.get("tolerance").is_some());
        let fresh = LassoSettings { hessian_reuse: 0.0, ..LassoSettings::default() };
        let written = serde_json::to_string(&fresh).unwrap();
        assert!(written.contains("\"hessian_reuse\":0.0"), "{written}");
        assert_eq!(serde_json::from_str::<LassoSettings>(&written).unwrap(), fresh);
        assert!(LassoSettings { hessian_reuse: 0.5, ..LassoSettings::default() }.validate().is_err());
    }

    /// A block asked for in rows is the same numbers as the whole block, summed over any split.
    #[test]
    fn hessian_rows_are_the_whole_blocks_rows() {
        let (x, y, fold) = cohort(7);
        let std = standardiser(&x);
        let p = std.center.len();
        let beta = vec![(1, 0.3), (4, -0.2)];
        let point = |hessian_rows: Vec<usize>| GlmPoint {
            fold: 2,
            intercept: 0.1,
            beta: beta.clone(),
            hessian: vec![1, 4, 6, 9],
            gradient_all_columns: false,
            hessian_rows,
            without_hessian: false,
        };
        let points = [point(vec![]), point(vec![4, 9]), point(vec![1])];
        for sizes in [vec![x.len()], vec![90, 60, 50, 29], vec![10, 20, 30, 40, 50, 30, 49]] {
            let mut answers = Vec::new();
            let mut start = 0;
            for (s, &size) in sizes.iter().enumerate() {
                let r = start..start + size;
                let view = TrainingView { x: &x[r.clone()], y: &y[r.clone()], fold: &fold[r] };
                answers.push(SiteAggregate::new(format!("s{s}"), site_round(view, &std, GlmFamily::Binomial, &points, 0, f64::INFINITY).unwrap()));
                start += size;
            }
            let totals = combine_round(&answers, &points, p).unwrap();
            let whole = &totals[0].hessian;
            for t in &totals[1..] {
                for (a, b) in whole.iter().zip(&t.hessian) {
                    assert!(b.is_nan() || (a - b).abs() <= 1e-12 * a.abs().max(1.0), "{a} vs {b}");
                }
            }
            // Rows 4 and 9 (block indices 2 and 4) and their columns are known; (1, 6) is not.
            let m = 5;
            assert!(totals[1].hessian[m + 3].is_nan() && !totals[1].hessian[2 * m + 4].is_nan() && !totals[1].hessian[3 * m + 2].is_nan());
        }
    }

    /// With a column limit (the sites' `max_parameter_ratio`), the path ends at the first λ
    /// whose solution needs more columns; every λ before it is the unlimited path's, over 1, 4
    /// and 7 uneven sites, and the pooled solver's on those λ values.
    #[test]
    fn partition_lasso_within_a_column_limit_equals_pooled() {
        let (x, y, fold) = cohort(7);
        let settings = LassoSettings::default();
        let unlimited = federated(&x, &y, &fold, &[229], &settings, 0).unwrap();
        let most = unlimited.coefficients.iter().map(|c| c.iter().filter(|b| **b != 0.0).count()).max().unwrap();
        let cap = 6;
        assert!(most > cap, "the unlimited path reaches {most} columns");
        let runs: Vec<LassoPath> = PARTITIONS.iter().map(|s| federated_within(&x, &y, &fold, s, &settings, 0, f64::INFINITY, cap).unwrap()).collect();
        let reference = &runs[0];
        let stop = reference.stopped.clone().expect("the path stops at the limit");
        assert_eq!(stop.max_block_columns, cap);
        assert!(stop.columns_needed > cap, "{stop:?}");
        let end = reference.lambdas.len();
        assert_eq!(end, stop.lambda_index);
        assert!((2..settings.path_length).contains(&end), "{end} λ values");
        for r in &runs[1..] {
            assert_eq!(r.stopped, reference.stopped);
            assert_paths_equal(r, reference, 1e-9);
        }
        for l in 0..end {
            assert!(reference.coefficients[l].iter().filter(|b| **b != 0.0).count() <= cap, "λ {l}");
            assert!((reference.lambdas[l] - unlimited.lambdas[l]).abs() <= 1e-12 * unlimited.lambdas[l]);
            assert!((reference.intercepts[l] - unlimited.intercepts[l]).abs() <= 1e-9, "intercept at λ {l}");
            for (a, b) in reference.coefficients[l].iter().zip(&unlimited.coefficients[l]) {
                assert!((a - b).abs() <= 1e-9, "λ {l}: {a} vs {b}");
            }
        }
        // The first λ left out does need more columns than the limit.
        assert!(unlimited.coefficients[end].iter().filter(|b| **b != 0.0).count() > cap || stop.fold > 0);
        let z = standardiser(&x).apply(&x).unwrap();
        let pooled = pooled_path(&z, &y, &reference.lambdas, GlmFamily::Binomial, 1.0, 1e-13);
        for (l, (b0, beta)) in pooled.iter().enumerate() {
            assert!((b0 - reference.intercepts[l]).abs() < 1e-7, "pooled intercept at λ {l}");
            for j in 0..beta.len() {
                assert!((beta[j] - reference.coefficients[l][j]).abs() < 1e-7, "pooled β{j} at λ {l}");
            }
        }
        let (cvm, cvse) = pooled_cv(&z, &y, &fold, 10, &reference.lambdas, GlmFamily::Binomial, 1.0, 1e-13);
        for l in 0..end {
            assert!((cvm[l] - reference.cv_mean[l]).abs() < 1e-7 && (cvse[l] - reference.cv_se[l]).abs() < 1e-7, "pooled CV at λ {l}");
        }
    }

    /// Sites at `max_parameter_ratio` 0.33 answer the path a solver plans for them, and refuse
    /// one that asks for wider blocks than their patients admit.
    #[test]
    fn sites_refuse_blocks_wider_than_their_parameter_limit() {
        let (x, y, fold) = cohort(7);
        let sizes = [73, 62, 53, 41];
        // The smallest fit a site holds: 41 patients less its largest fold (5): 36 patients,
        // ⌊0.33 · 36⌋ = 11 parameters, so 10 columns beside the intercept.
        let planned = federated_within(&x, &y, &fold, &sizes, &LassoSettings::default(), 0, 0.33, 10).unwrap();
        assert!(planned.stopped.is_some() && planned.coefficients.iter().all(|c| c.iter().filter(|b| **b != 0.0).count() <= 10));
        let err = federated_within(&x, &y, &fold, &sizes, &LassoSettings::default(), 0, 0.33, 30).unwrap_err();
        assert!(err.contains("Hessian block of") && err.contains("0.33 per patient"), "{err}");

        let std = standardiser(&x);
        let view = TrainingView { x: &x[..56], y: &y[..56], fold: &fold[..56] };
        let point = |columns: usize, nonzero: usize| GlmPoint {
            fold: 0,
            intercept: 0.0,
            beta: (0..nonzero).map(|j| (j, 0.1)).collect(),
            hessian: (0..columns).collect(),
            gradient_all_columns: false,
            hessian_rows: Vec::new(),
            without_hessian: false,
        };
        // 56 patients: at most 18 parameters.
        assert!(site_round(view, &std, GlmFamily::Binomial, &[point(17, 3)], 0, 0.33).is_ok());
        for (what, pt) in [("block", point(18, 3)), ("block without a Hessian asked", GlmPoint { without_hessian: true, ..point(40, 3) })] {
            let e = site_round(view, &std, GlmFamily::Binomial, &[pt], 0, 0.33).unwrap_err();
            assert!(e.to_string().contains("19 parameters") || e.to_string().contains("41 parameters"), "{what}: {e}");
        }
        let e = site_round(view, &std, GlmFamily::Binomial, &[point(2, 30)], 0, 0.33).unwrap_err();
        assert!(e.to_string().contains("a model of 31 parameters"), "{e}");
        // Whatever the ratio, never as many parameters as patients: at 1 per patient, 55
        // parameters over 56 patients are answered and 56 are not.
        assert!(site_round(view, &std, GlmFamily::Binomial, &[point(34, 3)], 0, 1.0).is_ok());
        let wide: Vec<Vec<f64>> = crate::algorithms::testdata::cohort_of_width(7, 60).0;
        let wide_std = standardiser(&wide);
        let wide_view = TrainingView { x: &wide[..56], y: &y[..56], fold: &fold[..56] };
        assert!(site_round(wide_view, &wide_std, GlmFamily::Binomial, &[point(54, 3)], 0, 1.0).is_ok());
        let e = site_round(wide_view, &wide_std, GlmFamily::Binomial, &[point(55, 3)], 0, 1.0).unwrap_err();
        assert!(e.to_string().contains("56 parameters over 56 patients"), "{e}");
        // Cross-validation points: each fold's model over the patients outside that fold.
        let fits: Vec<GlmPoint> = (1..=10).map(|k| GlmPoint { fold: k, hessian: Vec::new(), ..point(0, 20) }).collect();
        let e = site_cv_loss(view, &std, GlmFamily::Binomial, 1, &fits, 0, 0.33).unwrap_err();
        assert!(e.to_string().contains("a model of 21 parameters"), "{e}");
        let small: Vec<GlmPoint> = (1..=10).map(|k| GlmPoint { fold: k, hessian: Vec::new(), ..point(0, 5) }).collect();
        assert!(site_cv_loss(view, &std, GlmFamily::Binomial, 1, &small, 0, 0.33).is_ok());
    }

    /// The fold-difference attack (`cargo test -p site-agent --test attacks fold_differenced`)
    /// against what a coordinator sees under a secure sum over four sites: at one point, the
    /// summed full fit's block minus the summed fit without fold k covers fold k over all four
    /// sites (about 23 patients here), more than a block's 11 parameters, and two points read no
    /// row; against one site's own answers (about 4 patients per fold) they read every row.
    #[test]
    fn fold_differences_of_a_sum_over_four_sites_read_no_rows() {
        use crate::algorithms::testdata::{diagonalise_blocks, site_ranges};
        let (x, y, fold) = cohort(7);
        // 11 parameters: the most the 41-patient site admits outside a fold (36 patients).
        let width = 10;
        let x: Vec<Vec<f64>> = x.iter().map(|r| r[..width].to_vec()).collect();
        let std = standardiser(&x);
        let z = std.apply(&x).unwrap();
        let m = width + 1;
        let point = |fold: u32, second: bool| GlmPoint {
            fold,
            intercept: if second { 0.3 } else { 0.0 },
            beta: if second { vec![(0, 2.0), (1, -1.5)] } else { Vec::new() },
            hessian: (0..width).collect(),
            gradient_all_columns: false,
            hessian_rows: Vec::new(),
            without_hessian: false,
        };
        // Per fold: the rows two points read from the sum over `sites`, and how many of that
        // fold's patients they match.
        let read_folds = |sites: &[std::ops::Range<usize>]| -> (usize, usize) {
            let (mut read_rows, mut patients) = (0, 0);
            for k in 1..=10u32 {
                let mut differences = Vec::new();
                for second in [false, true] {
                    let points = [point(0, second), point(k, second)];
                    let answers: Vec<SiteAggregate> = sites
                        .iter()
                        .enumerate()
                        .map(|(s, r)| {
                            let view = TrainingView { x: &x[r.clone()], y: &y[r.clone()], fold: &fold[r.clone()] };
                            SiteAggregate::new(format!("s{s}"), site_round(view, &std, GlmFamily::Binomial, &points, 0, 0.33).unwrap())
                        })
                        .collect();
                    let t = combine_round(&answers, &points, width).unwrap();
                    let h: Vec<f64> = t[0].hessian.iter().zip(&t[1].hessian).map(|(a, b)| a - b).collect();
                    let g: Vec<f64> = t[0].gradient.iter().zip(&t[1].gradient).take(m).map(|(a, b)| a - b).collect();
                    differences.push((h, g));
                }
                let read = diagonalise_blocks(&differences[0].0, &differences[1].0, &differences[0].1, m);
                for i in sites.iter().flat_map(|r| r.clone()).filter(|&i| fold[i] == k) {
                    patients += 1;
                    read_rows += usize::from(read.iter().any(|(r, _)| r.iter().zip(&z[i]).all(|(a, b)| (a - b).abs() < 1e-6)));
                }
            }
            (read_rows, patients)
        };
        let sites = site_ranges(&[73, 62, 53, 41]);
        let (alone, alone_patients) = read_folds(&sites[3..]);
        assert_eq!(alone, alone_patients, "one site's own fold differences give its rows");
        let (summed, summed_patients) = read_folds(&sites);
        assert_eq!(summed_patients, 229);
        assert_eq!(summed, 0, "a sum over four sites gave {summed} rows");
    }

    /// Sites that admit no column beside the intercept: the path ends before its first λ (whose
    /// solution, at λ_max, already has a column at the KKT bound), no cross-validation is
    /// asked, and the path is empty rather than a cross-validation over no λ.
    #[test]
    fn a_limit_of_no_column_ends_the_path_before_its_first_lambda() {
        let (x, y, fold) = cohort(7);
        let path = federated_within(&x, &y, &fold, &[73, 62, 53, 41], &LassoSettings::default(), 0, f64::INFINITY, 0).unwrap();
        assert!(path.lambdas.is_empty() && path.cv_mean.is_empty() && path.coefficients.is_empty(), "{} λ values", path.lambdas.len());
        assert_eq!(path.stopped.as_ref().map(|s| (s.lambda_index, s.max_block_columns)), Some((0, 0)));
    }

    /// Recomputation: over 1, 4 and 7 sites a site's replica, fed only the sums of the
    /// sites' answers, asks for exactly the coordinator's points in every round, so it
    /// accepts the honest run; it refuses a fold fit's point moved onto the full fit's (the
    /// fold-difference attack), a round out of order, and a cross-validation over another path.
    #[test]
    fn a_site_replica_accepts_the_honest_run_and_refuses_any_other_point() {
        let (x, y, fold) = cohort(7);
        let std = standardiser(&x);
        let p = std.center.len();
        let settings = LassoSettings::default();
        for sizes in PARTITIONS {
            let sites = crate::algorithms::testdata::site_ranges(sizes);
            let view = |r: &std::ops::Range<usize>| TrainingView { x: &x[r.clone()], y: &y[r.clone()], fold: &fold[r.clone()] };
            let mut solver = LassoPathSolver::new(settings.clone(), p).with_max_block_columns(10);
            let mut replica = LassoReplica::new(settings.clone(), p, 10);
            let mut tampered_refused = 0;
            while let Some(request) = solver.request() {
                match request {
                    LassoRequest::Round(points) => {
                        let asked: Vec<proto::GlmPoint> = points.iter().map(|q| q.to_proto()).collect();
                        replica.expect_round(&asked).unwrap();
                        // A fold fit asked at the full fit's point: the two blocks' difference
                        // would cover that fold's patients only.
                        let mut moved = asked.clone();
                        if asked.len() > 1 {
                            moved[1] = proto::GlmPoint { fold: asked[1].fold, ..asked[0].clone() };
                        }
                        if moved != asked {
                            assert!(replica.expect_round(&moved).is_err());
                            tampered_refused += 1;
                        }
                        assert!(replica.expect_cv(&asked, settings.path_length as u32).is_err(), "not due yet");
                        let answers: Vec<SiteAggregate> = sites
                            .iter()
                            .enumerate()
                            .map(|(k, r)| SiteAggregate::new(format!("s{k}"), site_round(view(r), &std, settings.family, &points, 0, f64::INFINITY).unwrap()))
                            .collect();
                        let sum = sum_of_answers(&answers).unwrap();
                        solver.absorb_round(&combine_round(std::slice::from_ref(&sum), &points, p).unwrap()).unwrap();
                        replica.absorb(&sum).unwrap();
                    }
                    LassoRequest::CvLoss(points) => {
                        let asked: Vec<proto::GlmPoint> = points.iter().map(|q| q.to_proto()).collect();
                        let l = solver.path_end() as u32;
                        replica.expect_cv(&asked, l).unwrap();
                        assert!(replica.expect_cv(&asked, l + 1).is_err());
                        assert!(replica.expect_round(&asked).is_err());
                        let answers: Vec<SiteAggregate> = sites
                            .iter()
                            .enumerate()
                            .map(|(k, r)| {
                                SiteAggregate::new(format!("s{k}"), site_cv_loss(view(r), &std, settings.family, l as usize, &points, 0, f64::INFINITY).unwrap())
                            })
                            .collect();
                        let (s, q, n) = combine_cv(&answers, l as usize).unwrap();
                        solver.absorb_cv(s, q, n).unwrap();
                    }
                }
            }
            assert_eq!(replica.rounds() + 1, solver.rounds(), "{} sites", sizes.len());
            assert!(tampered_refused > 20, "{tampered_refused} tampered rounds tried");
            let path = solver.finish().unwrap();
            assert!(path.stopped.is_some(), "the limit of 10 columns ends the path");
        }
    }
}
