//! Table 1: the clinical characteristics of the training and validation cohorts, with tests
//! of their difference, and the manifest rows the sites excluded, per reason — from sums over
//! the sites only; per hospital only where the plan and every site's policy publish it.
//!
//! **What a site sends**, per cohort and variable, every part a sum over its patients so that
//! the sites' answers add tensor by tensor (and under secure aggregation, masked):
//! * categorical: the count of each level;
//! * continuous: n, Σx and Σx² (`raw.` tensors: wide fixed-point words, exact for values on
//!   the variable's grid), and a *dense* histogram of the values over [`cells`] fixed cells
//!   (`packed.` tensor: four counts to a word);
//! * once: its excluded manifest rows per reason ([`ExclusionReason::ALL`]).
//!
//! **Pooled moments.** mean = Σx / n and the centred sum of squares Σx² − (Σx)²/n, so the
//! pooled mean ± SD and Welch's t-test are those of the pooled rows (to floating-point
//! rounding of the subtraction; 10⁻¹² relative for ages and EBV DNA).
//!
//! **The grid.** A secure sum needs every site's histogram to be the same fixed length, and an
//! EBV DNA load in copies/mL has no natural top: at one copy per cell a 10⁶ range would cost
//! 8 MB per cohort and site. So the cells are the variable's resolution steps k·r for
//! |k| ≤ [`LINEAR_STEPS`] — exact there, which covers ages in years and EBV DNA up to 10 000
//! copies/mL — and beyond that [`LOG_CELLS`] cells uniform in log|x| out to
//! [`TOP_STEPS`]·r (each 0.18 % wide, a value counted at its cell's geometric middle; values
//! further out count in the last cell). Rank statistics read off these counts — the median,
//! quartiles (NumPy's linear rule) and the Mann-Whitney U — are those of the pooled data
//! placed on the grid; the pooled reference ([`pooled`]) places its rows the same way, and
//! `grid_costs_the_rank_statistics_little` measures the cost against the raw values on
//! EBV-like loads (median and quartiles within 0.1 %).
//!
//! **Small cells.** A site merges cells holding 1 to `min_count` − 1 of a cohort's patients
//! ([`super::small_cells`]), so with `min_count` above 1 the median, IQR and Mann-Whitney U are
//! those of the released pseudo-patients (mean ± SD and Welch's test stay exact).
//!
//! **Per hospital.** With the plan's `per_site_results` the task asks each site for its own
//! answer in the clear (`Table1Task.per_site`), which a site gives only if its policy publishes
//! per-site results: then the table has a scope per hospital, and the exclusions per site.
//! Otherwise the answers are summed (masked when the study secure-sums) and the coordinator
//! learns the all-sites table only.
//!
//! Tests: categorical variables use Pearson's χ² (no continuity correction), or Fisher's exact
//! test for a 2×2 table with an expected count below 5; continuous variables report Welch's
//! t-test beside mean ± SD and the Mann-Whitney U test (asymptotic, tie-corrected) beside
//! median [IQR].

use std::collections::BTreeMap;

use super::small_cells::released_cells;
use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::clinical::{ClinicalValue, CohortRole, ExclusionReason, PatientRecord, VariableKind, VariableSpec};
use crate::proto::Aggregate;
use crate::secure_sum::{PACKED_PREFIX, SUM_OF_SITES};
use crate::stats::{
    GridCounts, Moments, TestResult, chi_square_independence, fisher_exact_2x2, mann_whitney_from_counts, min_expected, quantile_from_counts, welch_t_test,
};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NamedTest {
    pub test: String,
    #[serde(flatten)]
    pub result: TestResult,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VariableSummary {
    Categorical {
        levels: Vec<String>,
        /// `[training, validation]`, each one count per level.
        counts: [Vec<u64>; 2],
        test: Option<NamedTest>,
    },
    Continuous {
        unit: String,
        moments: [Moments; 2],
        median: [Option<f64>; 2],
        q1: [Option<f64>; 2],
        q3: [Option<f64>; 2],
        welch: Option<TestResult>,
        mann_whitney: Option<TestResult>,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VariableRow {
    pub name: String,
    pub label: String,
    #[serde(flatten)]
    pub summary: VariableSummary,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Table1Scope {
    /// "all sites" or a site id.
    pub scope: String,
    /// `[training, validation]` patient counts.
    pub n: [u64; 2],
    pub variables: Vec<VariableRow>,
    /// Manifest rows excluded, per reason (reasons with none omitted).
    #[serde(default)]
    pub excluded: BTreeMap<ExclusionReason, u64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Table1 {
    /// The all-sites table first, then one per hospital if the plan publishes them.
    pub scopes: Vec<Table1Scope>,
}

impl Table1 {
    /// The table over all sites.
    pub fn all_sites(&self) -> &Table1Scope {
        &self.scopes[0]
    }

    /// Whether the hospitals' own tables were published.
    pub fn per_site(&self) -> bool {
        self.scopes.len() > 1
    }
}

pub const ALL_SITES: &str = "all sites";

// ---- the grid ------------------------------------------------------------------------------

/// Resolution steps either side of zero counted one per cell (exact for values on the grid).
pub const LINEAR_STEPS: i64 = 10_000;
/// Cells uniform in log|x| from [`LINEAR_STEPS`] out to [`TOP_STEPS`] steps, each side.
pub const LOG_CELLS: i64 = 10_000;
/// Where the logarithmic cells end, in resolution steps; values beyond count in the last cell.
pub const TOP_STEPS: f64 = 1e12;

/// The number of cells of every continuous variable's dense histogram.
pub const fn cells() -> usize {
    (2 * (LINEAR_STEPS + LOG_CELLS) + 1) as usize
}

/// The ratio of a logarithmic cell's ends, (TOP / LINEAR)^(1 / LOG_CELLS) ≈ 1.0018.
fn log_ratio() -> f64 {
    (TOP_STEPS / LINEAR_STEPS as f64).ln() / LOG_CELLS as f64
}

/// The signed cell of `x` on the grid of resolution `r`: the nearest step k for |k| ≤
/// [`LINEAR_STEPS`], then ±(LINEAR_STEPS + j) for the j-th logarithmic cell.
pub fn grid_cell(x: f64, r: f64) -> i64 {
    let steps = (x / r).abs();
    let sign = if x < 0.0 { -1 } else { 1 };
    if steps <= LINEAR_STEPS as f64 + 0.5 {
        return sign * steps.round() as i64;
    }
    let j = ((steps / LINEAR_STEPS as f64).ln() / log_ratio()).ceil().clamp(1.0, LOG_CELLS as f64) as i64;
    sign * (LINEAR_STEPS + j)
}

/// The value a cell stands for: its step for the linear cells, the geometric middle of its
/// ends for the logarithmic ones.
pub fn cell_value(cell: i64, r: f64) -> f64 {
    let magnitude = cell.abs();
    let steps = if magnitude <= LINEAR_STEPS { magnitude as f64 } else { LINEAR_STEPS as f64 * (((magnitude - LINEAR_STEPS) as f64 - 0.5) * log_ratio()).exp() };
    cell.signum() as f64 * steps * r
}

fn position(cell: i64) -> usize {
    (cell + LINEAR_STEPS + LOG_CELLS) as usize
}

fn cell_at(position: usize) -> i64 {
    position as i64 - LINEAR_STEPS - LOG_CELLS
}

// ---- sufficient statistics, shared by both halves and the reference -----------------------

#[derive(Debug, Clone, PartialEq)]
enum Stats {
    Categorical(Vec<u64>),
    /// n, Σx, Σx² and the dense histogram of cells.
    Continuous {
        sums: [f64; 3],
        cells: Vec<u64>,
    },
}

impl Stats {
    fn merge(&mut self, other: &Stats) {
        match (self, other) {
            (Stats::Categorical(a), Stats::Categorical(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
            (Stats::Continuous { sums, cells }, Stats::Continuous { sums: s2, cells: c2 }) => {
                sums.iter_mut().zip(s2).for_each(|(x, y)| *x += y);
                cells.iter_mut().zip(c2).for_each(|(x, y)| *x += y);
            }
            _ => unreachable!("variables are typed by the shared schema"),
        }
    }
}

fn moments_from_sums([n, sum, sum_sq]: [f64; 3]) -> Moments {
    if n == 0.0 {
        return Moments::default();
    }
    let mean = sum / n;
    Moments { n, mean, m2: (sum_sq - sum * mean).max(0.0) }
}

fn validate_spec(spec: &VariableSpec) -> Result<(), SiteRefusal> {
    match &spec.kind {
        VariableKind::Categorical { levels } if levels.is_empty() => Err(SiteRefusal::InvalidParameters(format!("variable `{}` has no levels", spec.name))),
        VariableKind::Continuous { resolution, .. } if !(resolution.is_finite() && *resolution > 0.0) => {
            Err(SiteRefusal::InvalidParameters(format!("variable `{}` has grid resolution {resolution}", spec.name)))
        }
        _ => Ok(()),
    }
}

fn counts_name(role: CohortRole, variable: &str) -> String {
    format!("{}/{variable}/counts", role.as_str())
}

/// Wide words ([`crate::secure_sum::is_wide`]): Σx² of EBV DNA loads reaches 10¹⁴ per site.
fn sums_name(role: CohortRole, variable: &str) -> String {
    format!("raw.{}/{variable}/sums", role.as_str())
}

fn cells_name(role: CohortRole, variable: &str) -> String {
    format!("{PACKED_PREFIX}{}/{variable}", role.as_str())
}

const EXCLUDED: &str = "excluded_by_reason";

// ---- site half ---------------------------------------------------------------------------

/// `schema` is the site's own typing of its table; the task's variables must agree with it.
/// `excluded` counts the manifest rows the site left out, per reason.
pub fn site_table1(
    records: &[PatientRecord],
    roles: &[CohortRole],
    variables: &[VariableSpec],
    schema: &[VariableSpec],
    excluded: &BTreeMap<ExclusionReason, u64>,
    min_count: u64,
) -> Result<Aggregate, SiteRefusal> {
    for role in CohortRole::ALL {
        let n = roles.iter().filter(|r| **r == role).count() as u64;
        require_min_count(&format!("the {} cohort", role.as_str()), n, min_count)?;
    }
    let mut b = AggregateBuilder::new(records.len() as u64).vector(EXCLUDED, ExclusionReason::ALL.iter().map(|r| *excluded.get(r).unwrap_or(&0) as f64).collect());
    for spec in variables {
        validate_spec(spec)?;
        let own = schema
            .iter()
            .find(|s| s.name == spec.name)
            .ok_or_else(|| SiteRefusal::InvalidParameters(format!("variable `{}` is not in this site's clinical schema", spec.name)))?;
        if let (VariableKind::Categorical { levels: a }, VariableKind::Categorical { levels: b }) = (&own.kind, &spec.kind)
            && a != b
        {
            return Err(SiteRefusal::InvalidParameters(format!("variable `{}`: the study's levels {b:?} differ from this site's {a:?}", spec.name)));
        }
        for role in CohortRole::ALL {
            let values = records.iter().zip(roles).filter(|(_, r)| **r == role).map(|(p, _)| p.clinical.get(&spec.name));
            match &spec.kind {
                VariableKind::Categorical { levels } => {
                    let mut counts = vec![0.0; levels.len()];
                    for v in values {
                        match v {
                            Some(ClinicalValue::Level(i)) if *i < levels.len() => counts[*i] += 1.0,
                            _ => return Err(type_mismatch(&spec.name)),
                        }
                    }
                    b = b.vector(counts_name(role, &spec.name), counts);
                }
                VariableKind::Continuous { resolution, .. } => {
                    let mut xs = Vec::new();
                    for v in values {
                        match v {
                            Some(ClinicalValue::Number(x)) if x.is_finite() => xs.push(*x),
                            _ => return Err(type_mismatch(&spec.name)),
                        }
                    }
                    let sums = [xs.len() as f64, xs.iter().sum(), xs.iter().map(|x| x * x).sum()];
                    // Small cells merged (`small_cells`): no cell describes 1 to min − 1
                    // patients of the cohort; the sums stay exact.
                    let mut cells = vec![0.0; cells()];
                    for k in released_cells(&xs, |x| grid_cell(x, *resolution), min_count) {
                        cells[position(k)] += 1.0;
                    }
                    b = b.vector(sums_name(role, &spec.name), sums.to_vec()).vector(cells_name(role, &spec.name), cells);
                }
            }
        }
    }
    Ok(b.build())
}

fn type_mismatch(name: &str) -> SiteRefusal {
    SiteRefusal::InvalidParameters(format!("variable `{name}` is typed differently in this site's schema"))
}

// ---- coordinator half --------------------------------------------------------------------

struct Decoded {
    variables: Vec<[Stats; 2]>,
    excluded: Vec<u64>,
}

fn decode(a: &SiteAggregate, variables: &[VariableSpec]) -> Result<Decoded, CombineError> {
    let mut out = Vec::new();
    for spec in variables {
        let mut pair = Vec::new();
        for role in CohortRole::ALL {
            pair.push(match &spec.kind {
                VariableKind::Categorical { levels } => Stats::Categorical(a.counts(&counts_name(role, &spec.name), levels.len())?),
                VariableKind::Continuous { .. } => {
                    let s = a.vector(&sums_name(role, &spec.name), 3)?;
                    let cells = a.counts(&cells_name(role, &spec.name), cells())?;
                    if cells.iter().sum::<u64>() as f64 != s[0] {
                        return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: format!("histogram of `{}` does not match its count", spec.name) });
                    }
                    Stats::Continuous { sums: [s[0], s[1], s[2]], cells }
                }
            });
        }
        let [t, v]: [Stats; 2] = pair.try_into().expect("two roles");
        out.push([t, v]);
    }
    Ok(Decoded { variables: out, excluded: a.counts(EXCLUDED, ExclusionReason::ALL.len())? })
}

fn cohort_n(stats: &[[Stats; 2]], role: usize) -> u64 {
    match stats.first().map(|s| &s[role]) {
        Some(Stats::Categorical(c)) => c.iter().sum(),
        Some(Stats::Continuous { sums, .. }) => sums[0] as u64,
        None => 0,
    }
}

/// The table from the sites' answers: the all-sites scope from their sum (one answer of
/// [`SUM_OF_SITES`] when the study secure-sums), and with `per_site` (the plan publishes
/// per-site results, so each answer is one hospital's own) a scope per hospital.
pub fn combine(answers: &[SiteAggregate], variables: &[VariableSpec], per_site: bool) -> Result<Table1, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut decoded = Vec::new();
    for a in answers {
        decoded.push((a.site_id.clone(), decode(a, variables)?));
    }
    let mut all = decoded[0].1.variables.clone();
    let mut excluded = decoded[0].1.excluded.clone();
    for (_, d) in &decoded[1..] {
        for (acc, x) in all.iter_mut().zip(&d.variables) {
            acc[0].merge(&x[0]);
            acc[1].merge(&x[1]);
        }
        excluded.iter_mut().zip(&d.excluded).for_each(|(x, y)| *x += y);
    }
    let mut scopes = vec![finish(ALL_SITES, &all, &excluded, variables)];
    if per_site {
        for (site, d) in decoded.iter().filter(|(site, _)| site != SUM_OF_SITES) {
            scopes.push(finish(site, &d.variables, &d.excluded, variables));
        }
    }
    Ok(Table1 { scopes })
}

fn excluded_map(counts: &[u64]) -> BTreeMap<ExclusionReason, u64> {
    ExclusionReason::ALL.iter().zip(counts).filter(|(_, c)| **c > 0).map(|(r, c)| (*r, *c)).collect()
}

fn grid_counts(cells: &[u64], resolution: f64) -> GridCounts {
    cells.iter().enumerate().filter(|(_, c)| **c > 0).map(|(p, c)| (cell_value(cell_at(p), resolution), *c)).collect()
}

fn finish(scope: &str, stats: &[[Stats; 2]], excluded: &[u64], variables: &[VariableSpec]) -> Table1Scope {
    let mut rows = Vec::new();
    for (spec, pair) in variables.iter().zip(stats) {
        let summary = match (&spec.kind, &pair[0], &pair[1]) {
            (VariableKind::Categorical { levels }, Stats::Categorical(t), Stats::Categorical(v)) => {
                VariableSummary::Categorical { levels: levels.clone(), counts: [t.clone(), v.clone()], test: categorical_test(t, v) }
            }
            (VariableKind::Continuous { resolution, unit }, Stats::Continuous { sums: st, cells: gt }, Stats::Continuous { sums: sv, cells: gv }) => {
                continuous_summary(unit, [moments_from_sums(*st), moments_from_sums(*sv)], [grid_counts(gt, *resolution), grid_counts(gv, *resolution)])
            }
            _ => unreachable!("decoded by the same specs"),
        };
        rows.push(VariableRow { name: spec.name.clone(), label: spec.display_label().to_string(), summary });
    }
    Table1Scope { scope: scope.to_string(), n: [cohort_n(stats, 0), cohort_n(stats, 1)], variables: rows, excluded: excluded_map(excluded) }
}

/// Mean ± SD and Welch's test from the moments, median [IQR] and Mann-Whitney from the grid.
fn continuous_summary(unit: &str, [mt, mv]: [Moments; 2], [ct, cv]: [GridCounts; 2]) -> VariableSummary {
    VariableSummary::Continuous {
        unit: unit.to_string(),
        moments: [mt, mv],
        median: [quantile_from_counts(&ct, 0.5), quantile_from_counts(&cv, 0.5)],
        q1: [quantile_from_counts(&ct, 0.25), quantile_from_counts(&cv, 0.25)],
        q3: [quantile_from_counts(&ct, 0.75), quantile_from_counts(&cv, 0.75)],
        welch: welch_t_test(mt, mv),
        mann_whitney: mann_whitney_from_counts(&ct, &cv),
    }
}

fn categorical_test(t: &[u64], v: &[u64]) -> Option<NamedTest> {
    // Levels by cohort, with empty levels removed.
    let table: Vec<Vec<u64>> = t.iter().zip(v).filter(|(a, b)| **a + **b > 0).map(|(a, b)| vec![*a, *b]).collect();
    if table.len() == 2 && min_expected(&table) < 5.0 {
        let p = fisher_exact_2x2(table[0][0], table[0][1], table[1][0], table[1][1]);
        return Some(NamedTest { test: "fisher_exact".into(), result: TestResult { statistic: f64::NAN, df: None, p_value: p } });
    }
    chi_square_independence(&table).map(|result| NamedTest { test: "chi_square".into(), result })
}

// ---- pooled reference --------------------------------------------------------------------

/// Table 1 from all rows in one process: `patients` are (site, record, role), `excluded` each
/// site's excluded rows per reason. Uses the raw values — two-pass moments, sorting for
/// quantiles and ranks for Mann-Whitney — placed on the grid ([`grid_cell`], [`cell_value`])
/// for the rank statistics, rather than the aggregates; with `per_site`, a scope per site too.
pub fn pooled(
    patients: &[(String, PatientRecord, CohortRole)],
    variables: &[VariableSpec],
    excluded: &BTreeMap<String, BTreeMap<ExclusionReason, u64>>,
    per_site: bool,
) -> Table1 {
    let mut sites: Vec<String> = patients.iter().map(|p| p.0.clone()).chain(excluded.keys().cloned()).collect();
    sites.sort();
    sites.dedup();
    let mut all_excluded: BTreeMap<ExclusionReason, u64> = BTreeMap::new();
    for (reason, count) in excluded.values().flatten() {
        *all_excluded.entry(*reason).or_default() += count;
    }
    all_excluded.retain(|_, c| *c > 0);
    let mut scopes = vec![pooled_scope(ALL_SITES, patients.iter().collect(), variables, all_excluded)];
    if per_site {
        for s in &sites {
            let own = excluded.get(s).cloned().unwrap_or_default().into_iter().filter(|(_, c)| *c > 0).collect();
            scopes.push(pooled_scope(s, patients.iter().filter(|p| &p.0 == s).collect(), variables, own));
        }
    }
    Table1 { scopes }
}

fn pooled_scope(scope: &str, patients: Vec<&(String, PatientRecord, CohortRole)>, variables: &[VariableSpec], excluded: BTreeMap<ExclusionReason, u64>) -> Table1Scope {
    let of_role = |role: CohortRole| patients.iter().filter(move |p| p.2 == role).map(|p| &p.1);
    let mut rows = Vec::new();
    for spec in variables {
        let summary = match &spec.kind {
            VariableKind::Categorical { levels } => {
                let count = |role| {
                    let mut c = vec![0u64; levels.len()];
                    for r in of_role(role) {
                        if let Some(ClinicalValue::Level(i)) = r.clinical.get(&spec.name) {
                            c[*i] += 1;
                        }
                    }
                    c
                };
                let (t, v) = (count(CohortRole::Training), count(CohortRole::Validation));
                let test = categorical_test(&t, &v);
                VariableSummary::Categorical { levels: levels.clone(), counts: [t, v], test }
            }
            VariableKind::Continuous { unit, resolution } => {
                let values = |role| -> Vec<f64> {
                    of_role(role)
                        .filter_map(|r| match r.clinical.get(&spec.name) {
                            Some(ClinicalValue::Number(x)) => Some(*x),
                            _ => None,
                        })
                        .collect()
                };
                let (t, v) = (values(CohortRole::Training), values(CohortRole::Validation));
                let (mt, mv) = (Moments::from_values(&t), Moments::from_values(&v));
                let placed = |xs: &[f64]| -> Vec<f64> {
                    let mut p: Vec<f64> = xs.iter().map(|x| cell_value(grid_cell(*x, *resolution), *resolution)).collect();
                    p.sort_by(f64::total_cmp);
                    p
                };
                let (t, v) = (placed(&t), placed(&v));
                VariableSummary::Continuous {
                    unit: unit.clone(),
                    moments: [mt, mv],
                    median: [sorted_quantile(&t, 0.5), sorted_quantile(&v, 0.5)],
                    q1: [sorted_quantile(&t, 0.25), sorted_quantile(&v, 0.25)],
                    q3: [sorted_quantile(&t, 0.75), sorted_quantile(&v, 0.75)],
                    welch: welch_t_test(mt, mv),
                    mann_whitney: mann_whitney_by_ranks(&t, &v),
                }
            }
        };
        rows.push(VariableRow { name: spec.name.clone(), label: spec.display_label().to_string(), summary });
    }
    let n = [of_role(CohortRole::Training).count() as u64, of_role(CohortRole::Validation).count() as u64];
    Table1Scope { scope: scope.to_string(), n, variables: rows, excluded }
}

fn sorted_quantile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let h = (xs.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(xs.len() - 1);
    Some(xs[lo] + (h - lo as f64) * (xs[hi] - xs[lo]))
}

/// Mann-Whitney from the rank definition on raw values (mid-ranks for ties).
fn mann_whitney_by_ranks(a: &[f64], b: &[f64]) -> Option<TestResult> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a.iter().map(|x| (*x, true)).chain(b.iter().map(|x| (*x, false))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let n = n1 + n2;
    let (mut i, mut rank_sum, mut ties) = (0, 0.0, 0.0);
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        let mid = (i + j + 1) as f64 / 2.0;
        rank_sum += mid * all[i..j].iter().filter(|x| x.1).count() as f64;
        ties += t * t * t - t;
        i = j;
    }
    let u1 = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let sigma = (n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))).sqrt();
    let z = (u1.max(n1 * n2 - u1) - n1 * n2 / 2.0 - 0.5) / sigma;
    Some(TestResult { statistic: u1, df: None, p_value: (2.0 * crate::stats::normal_sf(z)).min(1.0) })
}

// ---- presentation ------------------------------------------------------------------------

fn fmt_p(p: f64) -> String {
    if p < 0.001 { "<0.001".into() } else { format!("{p:.3}") }
}

/// Markdown rendering used in the study report.
pub fn to_markdown(t: &Table1) -> String {
    let mut out = String::new();
    for scope in &t.scopes {
        out.push_str(&format!(
            "### {}\n\n| Characteristic | Training (n = {}) | Validation (n = {}) | p | test |\n|---|---|---|---|---|\n",
            if scope.scope == ALL_SITES { "All sites".to_string() } else { format!("Site {} (published by its policy and the plan)", scope.scope) },
            scope.n[0],
            scope.n[1]
        ));
        for row in &scope.variables {
            match &row.summary {
                VariableSummary::Categorical { levels, counts, test } => {
                    let (p, name) = test.as_ref().map_or(("–".into(), "–".into()), |t| (fmt_p(t.result.p_value), t.test.clone()));
                    out.push_str(&format!("| {} | | | {p} | {name} |\n", row.label));
                    let tot = [counts[0].iter().sum::<u64>().max(1), counts[1].iter().sum::<u64>().max(1)];
                    for (i, l) in levels.iter().enumerate() {
                        out.push_str(&format!(
                            "| &nbsp;&nbsp;{l} | {} ({:.1}%) | {} ({:.1}%) | | |\n",
                            counts[0][i],
                            100.0 * counts[0][i] as f64 / tot[0] as f64,
                            counts[1][i],
                            100.0 * counts[1][i] as f64 / tot[1] as f64
                        ));
                    }
                }
                VariableSummary::Continuous { moments, median, q1, q3, welch, mann_whitney, .. } => {
                    let p = |t: &Option<TestResult>| t.map_or("–".into(), |t| fmt_p(t.p_value));
                    out.push_str(&format!(
                        "| {}, mean ± SD | {:.1} ± {:.1} | {:.1} ± {:.1} | {} | Welch t |\n",
                        row.label,
                        moments[0].mean,
                        moments[0].sd(),
                        moments[1].mean,
                        moments[1].sd(),
                        p(welch)
                    ));
                    let q = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.1}"));
                    out.push_str(&format!(
                        "| {}, median [IQR] | {} [{}, {}] | {} [{}, {}] | {} | Mann-Whitney U |\n",
                        row.label,
                        q(median[0]),
                        q(q1[0]),
                        q(q3[0]),
                        q(median[1]),
                        q(q1[1]),
                        q(q3[1]),
                        p(mann_whitney)
                    ));
                }
            }
        }
        out.push('\n');
    }
    out
}

// ---- what a site accepts ------------------------------------------------------------------

/// Table 1 is answered only for the plan's variables with the schema's levels and grids: a
/// coordinator may not choose a finer grid (a resolution of 1e-6 years would place every
/// patient's exact age in a cell of its own) or variables the plan does not tabulate.
pub fn site_accepts(asked: &[VariableSpec], planned: &[VariableSpec]) -> Result<(), SiteRefusal> {
    let same = |a: &VariableSpec, b: &VariableSpec| {
        a.name == b.name
            && match (&a.kind, &b.kind) {
                (VariableKind::Categorical { levels: x }, VariableKind::Categorical { levels: y }) => x == y,
                (VariableKind::Continuous { resolution: x, .. }, VariableKind::Continuous { resolution: y, .. }) => x == y,
                _ => false,
            }
    };
    if asked.len() != planned.len() || asked.iter().zip(planned).any(|(a, b)| !same(a, b)) {
        let names = |v: &[VariableSpec]| v.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(SiteRefusal::InvalidParameters(format!("Table 1 of ({}) with their levels and grids is not the study plan's ({})", names(asked), names(planned))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::testdata::{site_ranges, uniform_stream};
    use crate::clinical::npc_dictionary;

    /// Patients like the study's: ages in years, EBV DNA log-normal in copies/mL (a tenth at
    /// zero, many beyond the linear cells), staging and histology.
    fn cohort(seed: u64, n: usize) -> Vec<(PatientRecord, CohortRole)> {
        let mut u = uniform_stream(seed);
        let mut normal = move || (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos();
        let mut u2 = uniform_stream(seed ^ 0x9e37_79b9);
        (0..n)
            .map(|i| {
                let mut clinical = BTreeMap::new();
                clinical.insert("age".to_string(), ClinicalValue::Number((47.0 + 11.0 * normal()).round().clamp(18.0, 90.0)));
                clinical.insert("sex".to_string(), ClinicalValue::Level(usize::from(u2() < 0.3)));
                clinical.insert("t_stage".to_string(), ClinicalValue::Level((u2() * 4.0) as usize));
                clinical.insert("n_stage".to_string(), ClinicalValue::Level((u2() * 4.0) as usize));
                clinical.insert("overall_stage".to_string(), ClinicalValue::Level(usize::from(u2() < 0.4)));
                let ebv = if u2() < 0.1 { 0.0 } else { 10f64.powf(3.1 + 0.95 * normal()).round() };
                clinical.insert("ebv_dna".to_string(), ClinicalValue::Number(ebv));
                clinical.insert("histology".to_string(), ClinicalValue::Level((u2() * 2.99) as usize));
                let role = if u2() < 0.7 { CohortRole::Training } else { CohortRole::Validation };
                (PatientRecord { patient_id: format!("p{i}"), outcome: u2() < 0.3, clinical }, role)
            })
            .collect()
    }

    fn excluded_of(site: usize) -> BTreeMap<ExclusionReason, u64> {
        [(ExclusionReason::MissingValue, site as u64 % 3), (ExclusionReason::EmptyMask, 1)].into_iter().collect()
    }

    /// Numbers equal to `tol` relative to their size (1 below it), everything else exactly.
    fn assert_close(a: &serde_json::Value, b: &serde_json::Value, tol: f64, path: &str) {
        use serde_json::Value;
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() <= tol * x.abs().max(y.abs()).max(1.0), "{path}: {x} vs {y}");
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{path}");
                x.iter().zip(y).enumerate().for_each(|(i, (x, y))| assert_close(x, y, tol, &format!("{path}[{i}]")));
            }
            (Value::Object(x), Value::Object(y)) => {
                assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{path}");
                x.iter().for_each(|(k, v)| assert_close(v, &y[k], tol, &format!("{path}.{k}")));
            }
            _ => assert_eq!(a, b, "{path}"),
        }
    }

    #[test]
    fn federated_equals_pooled_over_1_4_and_7_sites_summed_or_per_site() {
        let variables = npc_dictionary();
        let patients = cohort(7, 331);
        for sizes in [vec![331], vec![40, 121, 77, 93], vec![25, 61, 33, 70, 48, 52, 42]] {
            let mut answers = Vec::new();
            let mut rows = Vec::new();
            let mut excluded = BTreeMap::new();
            for (s, range) in site_ranges(&sizes).into_iter().enumerate() {
                let site = format!("site-{s}");
                let (records, roles): (Vec<PatientRecord>, Vec<CohortRole>) = patients[range].iter().cloned().unzip();
                let answer = site_table1(&records, &roles, &variables, &variables, &excluded_of(s), 1).unwrap();
                answers.push(SiteAggregate::new(site.clone(), answer));
                rows.extend(records.into_iter().zip(roles).map(|(r, role)| (site.clone(), r, role)));
                excluded.insert(site, excluded_of(s));
            }
            let want = |per_site| serde_json::to_value(pooled(&rows, &variables, &excluded, per_site)).unwrap();
            let per_site = combine(&answers, &variables, true).unwrap();
            assert_eq!(per_site.scopes.len(), sizes.len() + 1);
            assert_close(&serde_json::to_value(&per_site).unwrap(), &want(true), 1e-9, &format!("{} sites, per site", sizes.len()));
            // The secure sum's path: one answer of the sum, in its fixed point.
            let summed = crate::secure_sum::combine(&answers).unwrap();
            let table = combine(&[summed], &variables, false).unwrap();
            assert!(!table.per_site());
            assert_close(&serde_json::to_value(&table).unwrap(), &want(false), 1e-9, &format!("{} sites, summed", sizes.len()));
            assert_eq!(table.all_sites().excluded[&ExclusionReason::EmptyMask], sizes.len() as u64);
        }
    }

    #[test]
    fn the_grid_is_the_resolution_steps_then_logarithmic_cells() {
        for r in [1.0, 0.5, 1e-3] {
            for k in [-LINEAR_STEPS, -1, 0, 1, 45, LINEAR_STEPS] {
                let x = k as f64 * r;
                assert_eq!(grid_cell(x, r), k, "step {k} at {r}");
                assert_eq!(cell_value(k, r), x);
            }
        }
        // Beyond the linear steps: monotone, cells ≈ 0.18 % wide, a value within half a cell
        // of its cell's value, and the far tail in the last cell.
        let mut last = grid_cell(10_000.0, 1.0);
        for i in 0..200_000 {
            let x = 10_000.0 * 1.0001f64.powi(i);
            let c = grid_cell(x, 1.0);
            assert!(c >= last, "{x}");
            last = c;
            if c > LINEAR_STEPS && c < LINEAR_STEPS + LOG_CELLS {
                assert!((cell_value(c, 1.0) / x).ln().abs() <= 0.5 * log_ratio() + 1e-12, "{x} in cell {c}");
            }
        }
        assert!((log_ratio().exp() - 1.0 - 0.00184).abs() < 1e-5, "{}", log_ratio().exp() - 1.0);
        assert_eq!(grid_cell(1e300, 1.0), LINEAR_STEPS + LOG_CELLS);
        assert_eq!(grid_cell(-1e300, 1.0), -(LINEAR_STEPS + LOG_CELLS));
        assert_eq!(grid_cell(-123_456.0, 1.0), -grid_cell(123_456.0, 1.0));
        assert_eq!(position(-(LINEAR_STEPS + LOG_CELLS)), 0);
        assert_eq!(position(LINEAR_STEPS + LOG_CELLS), cells() - 1);
    }

    /// The cost of the logarithmic cells: EBV DNA loads ten times the study's (median about
    /// 10⁴ copies/mL, so most quartiles lie beyond the linear steps); the grid's median,
    /// quartiles and Mann-Whitney p against the same statistics of the raw values.
    #[test]
    fn grid_costs_the_rank_statistics_little() {
        let (mut worst_quantile, mut worst_p, mut sum_quantile, mut tallies) = (0.0f64, 0.0f64, 0.0, 0);
        for seed in 1..=40 {
            let patients = cohort(seed, 229 + 99);
            let ebv = |role| -> Vec<f64> {
                let mut v: Vec<f64> = patients
                    .iter()
                    .filter(|p| p.1 == role)
                    .map(|p| match p.0.clinical["ebv_dna"] {
                        ClinicalValue::Number(x) => 10.0 * x,
                        _ => unreachable!(),
                    })
                    .collect();
                v.sort_by(f64::total_cmp);
                v
            };
            let (t, v) = (ebv(CohortRole::Training), ebv(CohortRole::Validation));
            let placed = |xs: &[f64]| -> GridCounts {
                let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
                xs.iter().for_each(|x| *counts.entry(grid_cell(*x, 1.0)).or_default() += 1);
                counts.into_iter().map(|(c, n)| (cell_value(c, 1.0), n)).collect()
            };
            let (gt, gv) = (placed(&t), placed(&v));
            for (raw, grid) in [(&t, &gt), (&v, &gv)] {
                for p in [0.25, 0.5, 0.75] {
                    let (exact, on_grid) = (sorted_quantile(raw, p).unwrap(), quantile_from_counts(grid, p).unwrap());
                    let rel = (on_grid - exact).abs() / exact.max(1.0);
                    worst_quantile = worst_quantile.max(rel);
                    sum_quantile += rel;
                    tallies += 1;
                }
            }
            let dp = (mann_whitney_by_ranks(&t, &v).unwrap().p_value - mann_whitney_from_counts(&gt, &gv).unwrap().p_value).abs();
            worst_p = worst_p.max(dp);
        }
        println!(
            "EBV DNA on the grid: quantiles off by {:.5} % on average, {:.5} % at most; Mann-Whitney p by {worst_p:.2e} at most",
            100.0 * sum_quantile / tallies as f64,
            100.0 * worst_quantile
        );
        assert!(worst_quantile > 0.0, "some quartile lies beyond the linear steps, so the test measures something");
        assert!(worst_quantile <= 0.5 * (log_ratio().exp() - 1.0), "{worst_quantile}");
        assert!(worst_p < 2e-3, "{worst_p}");
    }

    #[test]
    fn small_cells_keep_the_moments_and_merge_the_histogram() {
        let variables = npc_dictionary();
        let (records, roles): (Vec<PatientRecord>, Vec<CohortRole>) = cohort(3, 120).into_iter().unzip();
        let none = BTreeMap::new();
        let exact = combine(&[SiteAggregate::new("a", site_table1(&records, &roles, &variables, &variables, &none, 1).unwrap())], &variables, false).unwrap();
        let merged = site_table1(&records, &roles, &variables, &variables, &none, 5).unwrap();
        let merged_site = SiteAggregate::new("a", merged);
        let exact_site = SiteAggregate::new("a", site_table1(&records, &roles, &variables, &variables, &none, 1).unwrap());
        for role in CohortRole::ALL {
            let (merged_cells, exact_cells) =
                (merged_site.counts(&cells_name(role, "ebv_dna"), cells()).unwrap(), exact_site.counts(&cells_name(role, "ebv_dna"), cells()).unwrap());
            assert_ne!(merged_cells, exact_cells, "the groups are rendered as pseudo-patients");
            assert_eq!(merged_cells.iter().sum::<u64>(), exact_cells.iter().sum::<u64>());
        }
        let table = combine(&[merged_site], &variables, false).unwrap();
        let age = |t: &Table1| match &t.all_sites().variables[0].summary {
            VariableSummary::Continuous { moments, .. } => *moments,
            _ => unreachable!(),
        };
        assert_eq!(age(&table), age(&exact), "mean and SD stay exact");
        assert!(site_table1(&records, &roles, &variables, &variables, &none, 200).is_err(), "a cohort below min_count is refused");
    }
}
