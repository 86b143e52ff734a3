//! Univariate filter: per feature, a two-sample test between outcome classes over the
//! training cohort; features with p < α pass.
//!
//! * **Welch's t-test** (default) needs each class's count, mean and centred sum of squares,
//!   which come from the standardisation round ([`super::standardise`]) and merge exactly:
//!   federated equals pooled to rounding.
//! * **Mann–Whitney U** needs ranks, which cannot be summed. Each site instead counts its
//!   standardised values per class on a shared grid k·h (|k·h| ≤ limit, values beyond counted
//!   at the ends). The coordinator ranks grid cells, so two values in the same cell count as a
//!   tie. The statistic is exact when no two patients of *different* classes share a cell; in
//!   general U differs from the pooled rank statistic by at most half the number of such
//!   cross-class pairs within cells. At the default h = 0.01 SD on 229 patients about 30 of the
//!   ~12 000 cross-class pairs share a cell: the p-values differ from the exact pooled ones by
//!   less than 5e-3 where p < 0.2 and by up to 2.5e-2 near p = 1 (test below); a finer grid
//!   shrinks this in proportion.
//!   The price is disclosure: the counts are each class's value distribution at that
//!   resolution, far more than Welch's moments reveal — which is why Welch is the default.

use super::glm::Standardiser;
use super::small_cells::released_cells;
use super::standardise::FeatureMoments;
use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::Aggregate;
use crate::stats::{GridCounts, mann_whitney_from_counts, welch_t_test};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnivariateTest {
    Welch,
    MannWhitney,
}

/// One feature's test.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureTest {
    /// Column in the feature table.
    pub column: usize,
    pub statistic: f64,
    pub p_value: f64,
    /// Standardised mean difference (positive minus negative, over the pooled SD).
    pub effect: f64,
}

/// Welch's t per feature, for the given columns, from merged class moments.
pub fn welch(moments: &FeatureMoments, columns: &[usize]) -> Vec<FeatureTest> {
    columns
        .iter()
        .map(|&j| {
            let (neg, pos) = (moments.by_class[0][j], moments.by_class[1][j]);
            let all = neg.merge(pos);
            let effect = (pos.mean - neg.mean) / (all.m2 / all.n).sqrt();
            match welch_t_test(pos, neg) {
                Some(t) => FeatureTest { column: j, statistic: t.statistic, p_value: t.p_value, effect },
                None => FeatureTest { column: j, statistic: 0.0, p_value: 1.0, effect },
            }
        })
        .collect()
}

/// Grid cells: index k covers values rounding to k·h; |k| ≤ K = round(limit / h).
fn cells(resolution: f64, limit: f64) -> i64 {
    (limit / resolution).round() as i64
}

// ---- site half ---------------------------------------------------------------------------

/// Counts of standardised values per feature and class on the grid ("counts", features × 2 ×
/// (2K + 1)). Each class must reach `min_count`.
pub fn site_rank_histograms(
    rows: &[Vec<f64>],
    outcome: &[bool],
    standardiser: &Standardiser,
    resolution: f64,
    limit: f64,
    min_count: u64,
) -> Result<Aggregate, SiteRefusal> {
    if !(resolution > 1e-6 && limit > resolution && limit / resolution <= 100_000.0) {
        return Err(SiteRefusal::InvalidParameters("grid resolution and limit out of range".into()));
    }
    require_min_count("the training cohort", rows.len() as u64, min_count)?;
    for class in [false, true] {
        let n = outcome.iter().filter(|&&y| y == class).count() as u64;
        require_min_count(&format!("training patients with a {} outcome", if class { "positive" } else { "negative" }), n, min_count)?;
    }
    let z = standardiser.apply(rows)?;
    let p = standardiser.center.len();
    let k = cells(resolution, limit);
    let width = (2 * k + 1) as usize;
    let mut counts = vec![0.0; p * 2 * width];
    // Per feature and class, small cells merged (`small_cells`): no cell describes 1 to
    // min − 1 patients.
    for j in 0..p {
        for class in [false, true] {
            let values: Vec<f64> = z.iter().zip(outcome).filter(|(_, y)| **y == class).map(|(zi, _)| zi[j]).collect();
            if values.iter().any(|v| v.is_nan()) {
                return Err(SiteRefusal::Precondition("a standardised value is not a number".into()));
            }
            for cell in released_cells(&values, |v| ((v / resolution).round() as i64).clamp(-k, k), min_count) {
                counts[(j * 2 + class as usize) * width + (cell + k) as usize] += 1.0;
            }
        }
    }
    Ok(AggregateBuilder::new(rows.len() as u64).tensor_nd("counts", vec![p as u64, 2, width as u64], counts).build())
}

// ---- coordinator half --------------------------------------------------------------------

/// Mann–Whitney U per feature from the summed grid counts; `columns[i]` names feature i.
pub fn combine_mann_whitney(answers: &[SiteAggregate], columns: &[usize], resolution: f64, limit: f64) -> Result<Vec<FeatureTest>, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let k = cells(resolution, limit);
    let width = (2 * k + 1) as usize;
    let p = columns.len();
    let mut total = vec![0u64; p * 2 * width];
    for a in answers {
        for (t, c) in total.iter_mut().zip(a.counts("counts", p * 2 * width)?) {
            *t += c;
        }
    }
    Ok(columns.iter().enumerate().map(|(i, &column)| mann_whitney_from_grid(&total[i * 2 * width..(i + 1) * 2 * width], width, k, resolution, column)).collect())
}

fn mann_whitney_from_grid(counts: &[u64], width: usize, k: i64, resolution: f64, column: usize) -> FeatureTest {
    let grid = |class: usize| -> GridCounts {
        (0..width).filter(|&c| counts[class * width + c] > 0).map(|c| ((c as i64 - k) as f64 * resolution, counts[class * width + c])).collect()
    };
    let (neg, pos) = (grid(0), grid(1));
    let mean = |g: &GridCounts| g.iter().map(|(v, c)| v * *c as f64).sum::<f64>() / g.iter().map(|c| c.1 as f64).sum::<f64>();
    let effect = mean(&pos) - mean(&neg);
    match mann_whitney_from_counts(&pos, &neg) {
        Some(t) => FeatureTest { column, statistic: t.statistic, p_value: t.p_value, effect },
        None => FeatureTest { column, statistic: 0.0, p_value: 1.0, effect },
    }
}

// ---- pooled reference --------------------------------------------------------------------

/// Mann–Whitney U on the pooled rows with exact mid-ranks (SciPy's asymptotic method): every
/// distinct value is its own cell.
pub fn pooled_mann_whitney(values: &[f64], outcome: &[bool]) -> (f64, f64) {
    // Same arithmetic as the grid version, with each distinct value as its own cell.
    let grid = |class: bool| -> GridCounts {
        let mut g: Vec<(f64, u64)> = Vec::new();
        let mut vs: Vec<f64> = values.iter().zip(outcome).filter(|(_, y)| **y == class).map(|(v, _)| *v).collect();
        vs.sort_by(f64::total_cmp);
        for v in vs {
            match g.last_mut() {
                Some(last) if last.0 == v => last.1 += 1,
                _ => g.push((v, 1)),
            }
        }
        g
    };
    let t = mann_whitney_from_counts(&grid(true), &grid(false)).expect("both classes present");
    (t.statistic, t.p_value)
}

// ---- what a site accepts ------------------------------------------------------------------

/// Rank histograms only when the plan's univariate test is Mann–Whitney, and only on the
/// plan's grid (resolution and range in SD units): the coordinator cannot zoom the grid, and
/// the standardiser is bounded by [`super::glm::accept_standardiser`].
pub fn site_accepts(resolution: f64, limit: f64, mann_whitney_planned: bool, plan_resolution: f64, plan_limit: f64) -> Result<(), SiteRefusal> {
    if !mann_whitney_planned {
        return Err(SiteRefusal::InvalidParameters("the study plan's univariate test needs no rank histograms".into()));
    }
    if resolution != plan_resolution || limit != plan_limit {
        return Err(SiteRefusal::InvalidParameters(format!("rank grid of {resolution} SD over ±{limit}; the study plan's is {plan_resolution} SD over ±{plan_limit}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::lasso::tests::{cohort, standardiser};
    use crate::algorithms::standardise;

    #[test]
    fn partition_univariate_welch_and_mann_whitney_match_pooled() {
        let (x, y, _) = cohort(5);
        let outcome: Vec<bool> = y.iter().map(|v| *v == 1.0).collect();
        let std = standardiser(&x);
        let columns: Vec<usize> = (0..40).collect();
        let pooled_moments = standardise::pooled(&x, &outcome, 40);
        let pooled_welch = welch(&pooled_moments, &columns);
        for sizes in [vec![229], vec![73, 62, 53, 41], vec![25, 60, 21, 40, 17, 50, 16]] {
            let mut sites = Vec::new();
            let mut histograms = Vec::new();
            let mut start = 0;
            for (k, s) in sizes.iter().enumerate() {
                let r = start..start + s;
                sites.push((&x[r.clone()], &outcome[r.clone()]));
                histograms.push(SiteAggregate::new(format!("s{k}"), site_rank_histograms(&x[r.clone()], &outcome[r.clone()], &std, 0.01, 8.0, 1).unwrap()));
                start += s;
            }
            let fed = welch(&standardise::federated(&sites, 40, |answers| answers), &columns);
            for (a, b) in fed.iter().zip(&pooled_welch) {
                assert!((a.statistic - b.statistic).abs() < 1e-10 && (a.p_value - b.p_value).abs() < 1e-10);
            }
            let mw = combine_mann_whitney(&histograms, &columns, 0.01, 8.0).unwrap();
            let z = std.apply(&x).unwrap();
            for (j, t) in mw.iter().enumerate() {
                let values: Vec<f64> = z.iter().map(|r| r[j]).collect();
                let (_, p) = pooled_mann_whitney(&values, &outcome);
                // p moves fastest near 1 (z near 0), least near the decision threshold.
                let tol = if p < 0.2 { 5e-3 } else { 2.5e-2 };
                assert!((t.p_value - p).abs() < tol, "feature {j}: grid p {} vs exact {p}", t.p_value);
            }
        }
    }
}
