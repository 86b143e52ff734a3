//! Synthetic data and an in-process federation for the algorithms' tests and
//! `examples/lasso_reference_case.rs` (which `scripts/compare_sklearn_lasso.py` checks against
//! scikit-learn). Not used by the product.

use super::glm::{Standardiser, TrainingView};
use super::lasso::{LassoPath, LassoPathSolver, LassoSettings, combine_cv, combine_round, drive, site_cv_loss, site_round};
use crate::aggregate::SiteAggregate;

/// Uniform numbers in (0, 1) from an xorshift64 stream started at `state` (non-zero): the
/// tests' one source of synthetic randomness, fixed and thread-free.
pub fn uniform_stream(mut state: u64) -> impl FnMut() -> f64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// A radiomics-like training set: 229 patients, 40 correlated features in blocks, an
/// outcome driven by five of them, folds 1..=10 stratified by outcome.
pub fn cohort(seed: u64) -> (Vec<Vec<f64>>, Vec<f64>, Vec<u32>) {
    cohort_of_width(seed, 40)
}

/// [`cohort`] with `width` features (eight correlated blocks; wider than 229 makes p > n, as
/// the study's LASSO candidates are).
pub fn cohort_of_width(seed: u64, width: usize) -> (Vec<Vec<f64>>, Vec<f64>, Vec<u32>) {
    let mut uniform = uniform_stream(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut draws = Vec::new();
    let normal = |u: &mut dyn FnMut() -> f64| {
        let (a, b) = (u(), u());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    };
    let n = 229;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let latent: Vec<f64> = (0..8).map(|_| normal(&mut uniform)).collect();
        let row: Vec<f64> = (0..width).map(|j| 3.0 * j as f64 + (1.0 + j as f64 * 0.1) * (0.8 * latent[j % 8] + 0.6 * normal(&mut uniform))).collect();
        let eta = -0.7 + 0.9 * latent[0] - 0.7 * latent[3] + 0.5 * latent[5];
        let p = 1.0 / (1.0 + (-eta).exp());
        draws.push(uniform());
        y.push(if *draws.last().unwrap() < p { 1.0 } else { 0.0 });
        x.push(row);
    }
    // Stratified folds: per class, in order, dealt 1..=10 continuing across classes.
    let mut fold = vec![0u32; n];
    let mut k = 0;
    for class in [0.0, 1.0] {
        for i in (0..n).filter(|&i| y[i] == class) {
            fold[i] = (k % 10) as u32 + 1;
            k += 1;
        }
    }
    (x, y, fold)
}

/// Consecutive row ranges of the given sizes: the patients of each simulated site.
pub fn site_ranges(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &s in sizes {
        out.push(start..start + s);
        start += s;
    }
    out
}

pub fn standardiser(x: &[Vec<f64>]) -> Standardiser {
    let p = x[0].len();
    let n = x.len() as f64;
    let center: Vec<f64> = (0..p).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n).collect();
    let scale = (0..p).map(|j| (x.iter().map(|r| (r[j] - center[j]).powi(2)).sum::<f64>() / n).sqrt()).collect();
    Standardiser { center, scale }
}

/// A LASSO run with the patients split over sites of the given sizes (in order), each site
/// answering through its site half, the coordinator combining — all in one process. The
/// sites check no parameter limit and the solver keeps no column limit.
pub fn federated(x: &[Vec<f64>], y: &[f64], fold: &[u32], sizes: &[usize], settings: &LassoSettings, min_count: u64) -> Result<LassoPath, String> {
    federated_within(x, y, fold, sizes, settings, min_count, f64::INFINITY, usize::MAX)
}

/// [`federated`] with sites that refuse points beyond `max_ratio` parameters per patient, and
/// a solver that keeps every set within `max_block_columns`.
#[allow(clippy::too_many_arguments)]
pub fn federated_within(
    x: &[Vec<f64>],
    y: &[f64],
    fold: &[u32],
    sizes: &[usize],
    settings: &LassoSettings,
    min_count: u64,
    max_ratio: f64,
    max_block_columns: usize,
) -> Result<LassoPath, String> {
    let std = standardiser(x);
    let p = std.center.len();
    let sites = site_ranges(sizes);
    assert_eq!(sites.last().map_or(0, |r| r.end), y.len());
    let view = |r: &std::ops::Range<usize>| TrainingView { x: &x[r.clone()], y: &y[r.clone()], fold: &fold[r.clone()] };
    let solver = LassoPathSolver::new(settings.clone(), p).with_max_block_columns(max_block_columns);
    drive(
        solver,
        |points| {
            let answers = sites
                .iter()
                .enumerate()
                .map(|(k, r)| site_round(view(r), &std, settings.family, points, min_count, max_ratio).map(|a| SiteAggregate::new(format!("s{k}"), a)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            combine_round(&answers, points, p).map_err(|e| e.to_string())
        },
        |points, l| {
            let answers = sites
                .iter()
                .enumerate()
                .map(|(k, r)| site_cv_loss(view(r), &std, settings.family, l, points, min_count, max_ratio).map(|a| SiteAggregate::new(format!("s{k}"), a)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            combine_cv(&answers, l).map_err(|e| e.to_string())
        },
    )
}

// ---- what a coordinator can read from Hessian blocks (the attack tests) ------------------

/// Eigenvalues and eigenvectors (columns of the row-major `v`) of a symmetric n × n matrix by
/// cyclic Jacobi rotations.
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * n + j] * a[i * n + j]).sum();
        let scale: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum::<f64>().max(1e-300);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// The attack on two Hessian blocks of one population: H₁ = ZᵀW₁Z at a point where every
/// weight is ¼ (β = 0, b₀ = 0), H₂ = ZᵀW₂Z at another, with Z = [1, z] (m = 1 + columns wide).
/// When m ≥ n, ZᵀZ has rank n; in its eigenbasis H₂ becomes VᵀW₂V with V = Z·T orthogonal, whose
/// eigenvectors are V's rows — each patient's row, scaled so that its intercept entry is 1. The
/// gradient at the first point, Zᵀ(½ − y), then gives each outcome. Returns the rows (without
/// the intercept) and outcomes it reads; with m < n it reads m "rows" that are no patient's.
pub fn diagonalise_blocks(h1: &[f64], h2: &[f64], g1: &[f64], m: usize) -> Vec<(Vec<f64>, bool)> {
    let gram: Vec<f64> = h1.iter().map(|v| v / 0.25).collect();
    let (lambda, u) = symmetric_eigen(gram, m);
    let top = lambda.iter().cloned().fold(0.0, f64::max);
    // The rank: where the spectrum drops by more than 1e3 at once (rounding below it).
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| lambda[b].total_cmp(&lambda[a]));
    let rank = (1..m).find(|&k| lambda[order[k]] < 1e-3 * lambda[order[k - 1]] || lambda[order[k]] <= 1e-14 * top).unwrap_or(m);
    let kept: Vec<usize> = order[..rank].to_vec();
    let n = kept.len();
    // T = U_n Λ_n^{-1/2} (m × n); Y = Tᵀ H₂ T.
    let t: Vec<f64> = (0..m).flat_map(|r| kept.iter().map(move |&c| (r, c))).map(|(r, c)| u[r * m + c] / lambda[c].sqrt()).collect();
    let h2t: Vec<f64> = (0..m).flat_map(|r| (0..n).map(move |c| (r, c))).map(|(r, c)| (0..m).map(|k| h2[r * m + k] * t[k * n + c]).sum()).collect();
    let y: Vec<f64> = (0..n).flat_map(|r| (0..n).map(move |c| (r, c))).map(|(r, c)| (0..m).map(|k| t[k * n + r] * h2t[k * n + c]).sum()).collect();
    let (_, q) = symmetric_eigen(y, n);
    // Patient i's row of V is the eigenvector q_i; z_i = q_iᵀ Λ^{1/2} Uᵀ, and r_i = q_iᵀ Λ^{-1/2} Uᵀ g.
    let ug: Vec<f64> = kept.iter().map(|&c| (0..m).map(|k| u[k * m + c] * g1[k]).sum::<f64>() / lambda[c].sqrt()).collect();
    (0..n)
        .map(|i| {
            let qi: Vec<f64> = (0..n).map(|a| q[a * n + i]).collect();
            let z: Vec<f64> = (0..m).map(|col| kept.iter().enumerate().map(|(a, &c)| qi[a] * lambda[c].sqrt() * u[col * m + c]).sum()).collect();
            let r: f64 = qi.iter().zip(&ug).map(|(a, b)| a * b).sum::<f64>() / z[0];
            (z[1..].iter().map(|v| v / z[0]).collect(), 0.5 - r > 0.5)
        })
        .collect()
}
