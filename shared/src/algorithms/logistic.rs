//! Logistic regression by Newton–Raphson (IRLS) on summed gradients and Hessians: the clinical
//! model of Model III (univariate screening, then a multivariable model) and the base of the
//! logistic classifier.
//!
//! Each round the coordinator sends the current coefficients of every model being fitted; each
//! site returns, per model, over its training patients with complete data, the count, the
//! log-likelihood, the gradient and the (q + 1)² Hessian. These are sums, so the Newton step
//! the coordinator takes is the pooled one. Step halving guards the log-likelihood; the
//! covariance at convergence (the inverse Hessian) gives Wald standard errors.

use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::clinical::{ClinicalValue, PatientRecord, VariableKind, VariableSpec};
use crate::proto::Aggregate;
use crate::stats::{chi2_sf, normal_sf};

use super::block_on_ready;
use super::glm::{sigmoid, softplus};

/// One column of a clinical design matrix.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DesignColumn {
    pub variable: String,
    /// For a categorical variable, the level this 0/1 column indicates (the first level is the
    /// reference); `None` for a continuous variable.
    pub level: Option<String>,
}

impl DesignColumn {
    pub fn label(&self) -> String {
        match &self.level {
            Some(l) => format!("{} = {l}", self.variable),
            None => self.variable.clone(),
        }
    }
}

/// The columns a set of variables expands to, in order.
pub fn design_columns(variables: &[VariableSpec]) -> Vec<DesignColumn> {
    let mut out = Vec::new();
    for v in variables {
        match &v.kind {
            VariableKind::Continuous { .. } => out.push(DesignColumn { variable: v.name.clone(), level: None }),
            VariableKind::Categorical { levels } => out.extend(levels.iter().skip(1).map(|l| DesignColumn { variable: v.name.clone(), level: Some(l.clone()) })),
        }
    }
    out
}

/// The design row of one patient, or `None` if a variable is missing.
pub fn design_row(record: &PatientRecord, variables: &[VariableSpec]) -> Option<Vec<f64>> {
    let mut row = Vec::new();
    for v in variables {
        match (&v.kind, record.clinical.get(&v.name)?) {
            (VariableKind::Continuous { .. }, ClinicalValue::Number(x)) => row.push(*x),
            (VariableKind::Categorical { levels }, ClinicalValue::Level(k)) => row.extend((1..levels.len()).map(|l| (l == *k) as u8 as f64)),
            _ => return None,
        }
    }
    Some(row)
}

/// A model to evaluate: design columns used and coefficients (intercept first).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPoint {
    pub columns: Vec<usize>,
    pub coefficients: Vec<f64>,
}

// ---- site half ---------------------------------------------------------------------------

/// Per model: "n", "loglik", "gradient.k" (of the log-likelihood), "hessian.k" (of the
/// negative log-likelihood, i.e. the information). `x` are complete design rows.
pub fn site_round(x: &[Vec<f64>], y: &[bool], models: &[ModelPoint], min_count: u64, max_ratio: f64) -> Result<Aggregate, SiteRefusal> {
    require_min_count("the training patients with complete clinical data", x.len() as u64, min_count)?;
    for class in [false, true] {
        let n = y.iter().filter(|&&v| v == class).count() as u64;
        require_min_count(&format!("training patients with a {} outcome and complete clinical data", if class { "positive" } else { "negative" }), n, min_count)?;
    }
    let width = x.first().map_or(0, |r| r.len());
    let mut b = AggregateBuilder::new(x.len() as u64);
    let mut logliks = Vec::new();
    for (k, m) in models.iter().enumerate() {
        let q = m.columns.len() + 1;
        if m.coefficients.len() != q || m.columns.iter().any(|&c| c >= width) || m.coefficients.iter().any(|c| !c.is_finite()) {
            return Err(SiteRefusal::InvalidParameters(format!("model {k}: columns or coefficients do not fit the design")));
        }
        if q > super::max_parameters(max_ratio, x.len() as u64) {
            return Err(SiteRefusal::InvalidParameters(format!(
                "model {k} has {q} parameters for {} training patients here, more than this site's policy allows ({max_ratio} per patient, fewer than the patients)",
                x.len()
            )));
        }
        let mut ll = 0.0;
        let mut g = vec![0.0; q];
        let mut h = vec![0.0; q * q];
        let mut row = vec![0.0; q];
        for (xi, &yi) in x.iter().zip(y) {
            row[0] = 1.0;
            for (a, &c) in m.columns.iter().enumerate() {
                row[a + 1] = xi[c];
            }
            let eta: f64 = row.iter().zip(&m.coefficients).map(|(a, b)| a * b).sum();
            let yv = yi as u8 as f64;
            ll += yv * eta - softplus(eta);
            let mu = sigmoid(eta);
            let w = mu * (1.0 - mu);
            for a in 0..q {
                g[a] += (yv - mu) * row[a];
                for c in a..q {
                    h[a * q + c] += w * row[a] * row[c];
                }
            }
        }
        for a in 0..q {
            for c in 0..a {
                h[a * q + c] = h[c * q + a];
            }
        }
        logliks.push(ll);
        b = b.vector(format!("gradient.{k}"), g).matrix(format!("hessian.{k}"), q, q, h);
    }
    Ok(b.vector("loglik", logliks).build())
}

/// The clinical model's round: [`site_round`] on the raw design (age in years, level
/// indicators), whose information matrices reach 10⁹ and more, with its tensors named `raw.*`
/// so that a study that secure-sums carries them in wide fixed-point words
/// (`crate::secure_sum::encode_wide`); [`combine_clinical`] reads them.
pub fn site_clinical_round(x: &[Vec<f64>], y: &[bool], models: &[ModelPoint], min_count: u64, max_ratio: f64) -> Result<Aggregate, SiteRefusal> {
    let mut answer = site_round(x, y, models, min_count, max_ratio)?;
    for t in &mut answer.tensors {
        t.name = format!("{RAW}{}", t.name);
    }
    Ok(answer)
}

const RAW: &str = "raw.";

// ---- coordinator half --------------------------------------------------------------------

/// [`combine`] of [`site_clinical_round`] answers (every site's, or their one sum).
pub fn combine_clinical(answers: &[SiteAggregate], models: &[ModelPoint]) -> Result<ModelTotals, CombineError> {
    let unprefixed: Vec<SiteAggregate> = answers
        .iter()
        .map(|a| {
            let mut a = a.clone();
            for t in &mut a.aggregate.tensors {
                if let Some(name) = t.name.strip_prefix(RAW) {
                    t.name = name.to_string();
                }
            }
            a
        })
        .collect();
    combine(&unprefixed, models)
}

/// Summed (n, log-likelihood, gradient, information) per model.
pub fn combine(answers: &[SiteAggregate], models: &[ModelPoint]) -> Result<ModelTotals, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut out: Vec<(f64, f64, Vec<f64>, Vec<f64>)> =
        models.iter().map(|m| (0.0, 0.0, vec![0.0; m.columns.len() + 1], vec![0.0; (m.columns.len() + 1).pow(2)])).collect();
    for a in answers {
        let ll = a.vector("loglik", models.len())?;
        for (k, o) in out.iter_mut().enumerate() {
            o.0 += a.patient_count() as f64;
            o.1 += ll[k];
            let (gl, hl) = (o.2.len(), o.3.len());
            for (t, v) in o.2.iter_mut().zip(a.vector(&format!("gradient.{k}"), gl)?) {
                *t += v;
            }
            for (t, v) in o.3.iter_mut().zip(a.vector(&format!("hessian.{k}"), hl)?) {
                *t += v;
            }
        }
    }
    Ok(out)
}

/// A fitted model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogisticFit {
    pub columns: Vec<usize>,
    /// Intercept first.
    pub coefficients: Vec<f64>,
    pub standard_errors: Vec<f64>,
    pub loglik: f64,
    pub n: f64,
    pub converged: bool,
    pub iterations: u32,
}

impl LogisticFit {
    /// Wald p-value of coefficient a (0 = intercept).
    pub fn p_value(&self, a: usize) -> f64 {
        2.0 * normal_sf((self.coefficients[a] / self.standard_errors[a]).abs())
    }
}

/// Summed (n, log-likelihood, gradient, information) per model, as [`combine`] returns them.
pub type ModelTotals = Vec<(f64, f64, Vec<f64>, Vec<f64>)>;

/// Fits several models at once; `round` asks the sites and answers with [`combine`]'s totals
/// (async so the coordinator can go over the network; [`block_on_ready`] runs it in-process).
pub async fn fit_models(models: &[Vec<usize>], round: &mut impl AsyncFnMut(&[ModelPoint]) -> Result<ModelTotals, String>) -> Result<(Vec<LogisticFit>, u64), String> {
    struct State {
        beta: Vec<f64>,
        last: Option<(Vec<f64>, f64)>,
        halvings: u32,
        done: Option<LogisticFit>,
        iterations: u32,
    }
    let mut states: Vec<State> = models.iter().map(|m| State { beta: vec![0.0; m.len() + 1], last: None, halvings: 0, done: None, iterations: 0 }).collect();
    let mut rounds = 0;
    while states.iter().any(|s| s.done.is_none()) {
        let running: Vec<usize> = (0..states.len()).filter(|&k| states[k].done.is_none()).collect();
        let points: Vec<ModelPoint> = running.iter().map(|&k| ModelPoint { columns: models[k].clone(), coefficients: states[k].beta.clone() }).collect();
        let totals = round(&points).await?;
        rounds += 1;
        for (&k, (n, ll, g, h)) in running.iter().zip(totals) {
            let s = &mut states[k];
            let q = s.beta.len();
            if let Some((prev, prev_ll)) = &s.last
                && ll < prev_ll - 1e-10 * prev_ll.abs().max(1.0)
                && s.halvings < 30
            {
                s.halvings += 1;
                s.beta = s.beta.iter().zip(prev).map(|(b, p)| 0.5 * (b + p)).collect();
                continue;
            }
            s.halvings = 0;
            s.iterations += 1;
            let Some(inverse) = invert_spd(&h, q) else {
                s.done = Some(LogisticFit {
                    columns: models[k].clone(),
                    coefficients: s.beta.clone(),
                    standard_errors: vec![f64::NAN; q],
                    loglik: ll,
                    n,
                    converged: false,
                    iterations: s.iterations,
                });
                continue;
            };
            let step: Vec<f64> = (0..q).map(|a| (0..q).map(|c| inverse[a * q + c] * g[c]).sum()).collect();
            let size = step.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if size < 1e-10 || s.iterations >= 60 {
                s.done = Some(LogisticFit {
                    columns: models[k].clone(),
                    coefficients: s.beta.clone(),
                    standard_errors: (0..q).map(|a| inverse[a * q + a].sqrt()).collect(),
                    loglik: ll,
                    n,
                    converged: size < 1e-10,
                    iterations: s.iterations,
                });
                continue;
            }
            s.last = Some((s.beta.clone(), ll));
            s.beta = s.beta.iter().zip(&step).map(|(b, d)| b + d).collect();
        }
    }
    Ok((states.into_iter().map(|s| s.done.expect("all done")).collect(), rounds))
}

/// Inverse of a symmetric positive-definite matrix by Cholesky; `None` if it is not.
pub fn invert_spd(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if !(s > 1e-12 * a[i * n + i].abs().max(1e-300)) {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    // Solve L Lᵀ X = I column by column.
    let mut inv = vec![0.0; n * n];
    for col in 0..n {
        let mut y = vec![0.0; n];
        for i in 0..n {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for k in 0..i {
                s -= l[i * n + k] * y[k];
            }
            y[i] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = y[i];
            for k in i + 1..n {
                s -= l[k * n + i] * inv[k * n + col];
            }
            inv[i * n + col] = s / l[i * n + i];
        }
    }
    Some(inv)
}

// ---- the clinical model ------------------------------------------------------------------

/// One row of the clinical model table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OddsRatio {
    pub term: String,
    pub odds_ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub p_value: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnivariateClinical {
    pub variable: String,
    /// Likelihood-ratio test against the intercept-only model; none when the variable's model
    /// has more parameters than every site fits (`note` says so).
    pub lr_p_value: Option<f64>,
    pub terms: Vec<OddsRatio>,
    pub entered: bool,
    /// Why the variable was not screened, or screened but left out of the multivariable model.
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClinicalModel {
    pub n: f64,
    pub entry_p: f64,
    pub univariate: Vec<UnivariateClinical>,
    /// Variables in the multivariable model.
    pub selected: Vec<String>,
    pub multivariable: Vec<OddsRatio>,
    pub converged: bool,
    pub rounds: u64,
}

fn odds_ratios(fit: &LogisticFit, columns: &[DesignColumn]) -> Vec<OddsRatio> {
    fit.columns
        .iter()
        .enumerate()
        .map(|(a, &c)| {
            let (b, se) = (fit.coefficients[a + 1], fit.standard_errors[a + 1]);
            OddsRatio {
                term: columns[c].label(),
                odds_ratio: b.exp(),
                ci_low: (b - 1.959_963_984_540_054 * se).exp(),
                ci_high: (b + 1.959_963_984_540_054 * se).exp(),
                p_value: fit.p_value(a + 1),
            }
        })
        .collect()
}

/// Univariate screening (each variable's columns vs the intercept-only model, likelihood-ratio
/// test), then one multivariable model of the variables with p < `entry_p`.
///
/// `max_parameters` is the most parameters (intercept included) every site fits: a variable
/// whose own model has more is not screened, and the multivariable model takes the entered
/// variables in order of their p-values for as long as it stays within it (the others are
/// noted), so that no site refuses a round.
pub async fn clinical_model(
    variables: &[VariableSpec],
    entry_p: f64,
    max_parameters: usize,
    mut round: impl AsyncFnMut(&[ModelPoint]) -> Result<ModelTotals, String>,
) -> Result<ClinicalModel, String> {
    let columns = design_columns(variables);
    let mut models: Vec<Vec<usize>> = vec![Vec::new()];
    let mut screened = Vec::new();
    let mut start = 0;
    for v in variables {
        let width = design_columns(std::slice::from_ref(v)).len();
        if width < max_parameters {
            models.push((start..start + width).collect());
            screened.push(true);
        } else {
            screened.push(false);
        }
        start += width;
    }
    let (fits, mut rounds) = fit_models(&models, &mut round).await?;
    let null = &fits[0];
    let mut univariate = Vec::new();
    let mut fits = fits[1..].iter();
    // (p, variable index) of the variables that pass the screen.
    let mut passing = Vec::new();
    for (k, v) in variables.iter().enumerate() {
        if !screened[k] {
            let width = design_columns(std::slice::from_ref(v)).len();
            univariate.push(UnivariateClinical {
                variable: v.name.clone(),
                lr_p_value: None,
                terms: Vec::new(),
                entered: false,
                note: Some(format!("not screened: {} parameters, more than the {max_parameters} every site fits", width + 1)),
            });
            continue;
        }
        let fit = fits.next().expect("one fit per screened variable");
        let lr = 2.0 * (fit.loglik - null.loglik);
        let p = chi2_sf(lr.max(0.0), fit.columns.len() as f64);
        if p < entry_p && fit.converged {
            passing.push((p, k));
        }
        univariate.push(UnivariateClinical { variable: v.name.clone(), lr_p_value: Some(p), terms: odds_ratios(fit, &columns), entered: false, note: None });
    }
    // The multivariable model: the strongest first, while every site fits it.
    passing.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut entering = Vec::new();
    let mut width = 0;
    for &(_, k) in &passing {
        let w = design_columns(std::slice::from_ref(&variables[k])).len();
        if width + w < max_parameters {
            width += w;
            entering.push(k);
        } else {
            univariate[k].note =
                Some(format!("passed the screen but left out: the multivariable model would have more than the {max_parameters} parameters every site fits"));
        }
    }
    entering.sort_unstable();
    let mut selected_columns = Vec::new();
    let mut selected = Vec::new();
    for &k in &entering {
        univariate[k].entered = true;
        selected.push(variables[k].name.clone());
        let first = design_columns(&variables[..k]).len();
        selected_columns.extend(first..first + design_columns(std::slice::from_ref(&variables[k])).len());
    }
    let (multivariable, converged) = if selected_columns.is_empty() {
        (Vec::new(), true)
    } else {
        let (fit, r) = fit_models(&[selected_columns], &mut round).await?;
        rounds += r;
        (odds_ratios(&fit[0], &columns), fit[0].converged)
    };
    Ok(ClinicalModel { n: null.n, entry_p, univariate, selected, multivariable, converged, rounds })
}

/// The pooled reference: Newton–Raphson on all rows in one process.
pub fn pooled_fit(x: &[Vec<f64>], y: &[bool], columns: &[usize]) -> Vec<f64> {
    let (fits, _) = block_on_ready(fit_models(&[columns.to_vec()], &mut async |points: &[ModelPoint]| {
        let agg = site_round(x, y, points, 0, 1.0).map_err(|e| e.to_string())?;
        combine(&[SiteAggregate::new("pooled", agg)], points).map_err(|e| e.to_string())
    }))
    .expect("pooled fit");
    fits[0].coefficients.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn records(n: usize) -> Vec<PatientRecord> {
        let mut u = crate::algorithms::testdata::uniform_stream(0x1234_5678_9abc_def1);
        (0..n)
            .map(|i| {
                let age = 30.0 + 40.0 * u();
                let stage = (u() * 4.0) as usize;
                let sex = (u() < 0.3) as usize;
                let eta = -4.0 + 0.05 * age + 0.6 * stage as f64;
                let outcome = u() < 1.0 / (1.0 + (-eta).exp());
                let mut clinical = BTreeMap::new();
                clinical.insert("age".to_string(), ClinicalValue::Number(age.round()));
                clinical.insert("t_stage".to_string(), ClinicalValue::Level(stage));
                clinical.insert("sex".to_string(), ClinicalValue::Level(sex));
                PatientRecord { patient_id: format!("P{i}"), outcome, clinical }
            })
            .collect()
    }

    #[test]
    fn partition_clinical_model_equals_pooled_newton() {
        let schema = crate::clinical::npc_dictionary();
        let vars: Vec<VariableSpec> = schema.into_iter().filter(|v| ["age", "sex", "t_stage"].contains(&v.name.as_str())).collect();
        let recs = records(229);
        let x: Vec<Vec<f64>> = recs.iter().map(|r| design_row(r, &vars).unwrap()).collect();
        let y: Vec<bool> = recs.iter().map(|r| r.outcome).collect();
        let mut results = Vec::new();
        // Each partition twice: the sites' answers as they are, and summed in fixed point (wide
        // words: the raw design) as the coordinator sums them from two sites on.
        for (sizes, fixed_point) in [vec![229], vec![73, 62, 53, 41], vec![25, 60, 21, 40, 17, 50, 16]].into_iter().flat_map(|s| [(s.clone(), false), (s, true)]) {
            let model = block_on_ready(clinical_model(&vars, 0.05, usize::MAX, async |points: &[ModelPoint]| {
                let mut answers = Vec::new();
                let mut start = 0;
                for (k, s) in sizes.iter().enumerate() {
                    answers.push(SiteAggregate::new(
                        format!("s{k}"),
                        site_clinical_round(&x[start..start + s], &y[start..start + s], points, 1, f64::INFINITY).map_err(|e| e.to_string())?,
                    ));
                    start += s;
                }
                if fixed_point && answers.len() > 1 {
                    answers = vec![crate::secure_sum::combine(&answers).map_err(|e| e.to_string())?];
                }
                combine_clinical(&answers, points).map_err(|e| e.to_string())
            }))
            .unwrap();
            results.push(model);
        }
        let reference = &results[0];
        assert!(reference.selected.contains(&"age".to_string()), "{:?}", reference.univariate);
        for r in &results[1..] {
            assert_eq!(r.selected, reference.selected);
            for (a, b) in r.multivariable.iter().zip(&reference.multivariable) {
                assert!((a.odds_ratio - b.odds_ratio).abs() < 1e-9 * b.odds_ratio && (a.p_value - b.p_value).abs() < 1e-9);
            }
        }
        // The pooled Newton fit of the same columns.
        let cols: Vec<usize> = design_columns(&vars).iter().enumerate().filter(|(_, c)| reference.selected.contains(&c.variable)).map(|(k, _)| k).collect();
        let beta = pooled_fit(&x, &y, &cols);
        for (a, or) in reference.multivariable.iter().enumerate() {
            assert!((or.odds_ratio.ln() - beta[a + 1]).abs() < 1e-9);
        }
    }

    /// A site that fits at most three parameters (intercept included) on these 229 patients:
    /// T stage (four parameters) is not screened, and the multivariable model keeps what fits;
    /// no round is refused.
    #[test]
    fn the_clinical_model_stays_within_the_parameters_every_site_fits() {
        let vars: Vec<VariableSpec> = crate::clinical::npc_dictionary().into_iter().filter(|v| ["age", "sex", "t_stage"].contains(&v.name.as_str())).collect();
        let recs = records(229);
        let x: Vec<Vec<f64>> = recs.iter().map(|r| design_row(r, &vars).unwrap()).collect();
        let y: Vec<bool> = recs.iter().map(|r| r.outcome).collect();
        let fit = |most: usize| {
            let ratio = most as f64 / 229.0;
            block_on_ready(clinical_model(&vars, 0.9, most, async |points: &[ModelPoint]| {
                combine(&[SiteAggregate::new("s", site_round(&x, &y, points, 1, ratio).map_err(|e| e.to_string())?)], points).map_err(|e| e.to_string())
            }))
            .unwrap()
        };
        let m = fit(3);
        let stage = m.univariate.iter().find(|u| u.variable == "t_stage").unwrap();
        assert!(stage.lr_p_value.is_none() && !stage.entered && stage.note.as_deref().unwrap().contains("not screened: 4 parameters"), "{stage:?}");
        assert_eq!(m.selected, ["age", "sex"], "{:?}", m.univariate);
        // Two parameters: the stronger of age and sex alone.
        let m = fit(2);
        let p = |v: &str| m.univariate.iter().find(|u| u.variable == v).unwrap().lr_p_value.unwrap();
        let stronger = if p("age") <= p("sex") { "age" } else { "sex" };
        assert_eq!(m.selected, [stronger]);
        let other = m.univariate.iter().find(|u| u.variable != stronger && u.variable != "t_stage").unwrap();
        assert!(!other.entered && other.note.as_deref().unwrap().contains("left out"), "{other:?}");
        // Without a limit all three enter (entry p 0.9).
        assert_eq!(fit(usize::MAX).selected.len(), 3);
    }

    #[test]
    fn too_many_parameters_for_the_patients_is_refused() {
        let recs = records(12);
        let vars = crate::clinical::npc_dictionary().into_iter().filter(|v| v.name == "t_stage").collect::<Vec<_>>();
        let x: Vec<Vec<f64>> = recs.iter().map(|r| design_row(r, &vars).unwrap()).collect();
        let y: Vec<bool> = (0..12).map(|i| i % 2 == 0).collect();
        let m = ModelPoint { columns: vec![0, 1, 2], coefficients: vec![0.0; 4] };
        assert!(matches!(site_round(&x[..11], &y[..11], std::slice::from_ref(&m), 1, 1.0 / 3.0), Err(SiteRefusal::InvalidParameters(_))));
        assert!(site_round(&x, &y, &[m], 1, 1.0 / 3.0).is_ok());
    }
}
