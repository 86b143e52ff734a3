//! Table 1: the clinical characteristics of the training and validation cohorts, overall
//! and per site, with tests of their difference — from aggregates only.
//!
//! Per cohort and variable a site sends:
//! * categorical: the count of each level;
//! * continuous: count, mean and centred sum of squares (merged with Chan's update, so the
//!   pooled mean ± SD and Welch's t-test are exact), and a sparse count histogram of the
//!   values on the variable's grid `k · resolution`.
//!
//! Rank statistics without pooling rows: the median, quartiles (NumPy's linear rule) and the
//! Mann-Whitney U of the pooled data are functions of how many values of each cohort fall on
//! each grid point, so the coordinator computes them exactly from the summed histograms for
//! any data on the grid (ages in whole years, EBV DNA in whole copies/mL). Data off the grid
//! are rounded to it first; the error is then at most half a resolution step per value. A
//! site merges grid points holding 1 to `min_count` − 1 of a cohort's patients
//! ([`super::small_cells`]), so with `min_count` above 1 the median, IQR and Mann-Whitney U
//! are those of the released pseudo-patients (mean ± SD and Welch's test stay exact).
//!
//! Tests: categorical variables use Pearson's χ² (no continuity correction), or Fisher's exact
//! test for a 2×2 table with an expected count below 5; continuous variables report Welch's
//! t-test beside mean ± SD and the Mann-Whitney U test (asymptotic, tie-corrected) beside
//! median [IQR].

use std::collections::BTreeMap;

use super::small_cells::released_cells;
use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::clinical::{ClinicalValue, CohortRole, PatientRecord, VariableKind, VariableSpec};
use crate::proto::Aggregate;
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
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Table1 {
    pub scopes: Vec<Table1Scope>,
}

pub const ALL_SITES: &str = "all sites";

// ---- sufficient statistics, shared by both halves and the reference -----------------------

#[derive(Debug, Clone, PartialEq)]
enum Stats {
    Categorical(Vec<u64>),
    Continuous { moments: Moments, grid: BTreeMap<i64, u64> },
}

impl Stats {
    fn merge(&mut self, other: &Stats) {
        match (self, other) {
            (Stats::Categorical(a), Stats::Categorical(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
            (Stats::Continuous { moments, grid }, Stats::Continuous { moments: m2, grid: g2 }) => {
                *moments = moments.merge(*m2);
                for (k, c) in g2 {
                    *grid.entry(*k).or_default() += c;
                }
            }
            _ => unreachable!("variables are typed by the shared schema"),
        }
    }
}

fn grid_index(v: f64, resolution: f64) -> i64 {
    (v / resolution).round() as i64
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

// ---- site half ---------------------------------------------------------------------------

/// `schema` is the site's own typing of its table; the task's variables must agree with it.
pub fn site_table1(
    records: &[PatientRecord],
    roles: &[CohortRole],
    variables: &[VariableSpec],
    schema: &[VariableSpec],
    min_count: u64,
) -> Result<Aggregate, SiteRefusal> {
    for role in CohortRole::ALL {
        let n = roles.iter().filter(|r| **r == role).count() as u64;
        require_min_count(&format!("the {} cohort", role.as_str()), n, min_count)?;
    }
    let mut b = AggregateBuilder::new(records.len() as u64);
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
            let prefix = format!("{}/{}", role.as_str(), spec.name);
            match &spec.kind {
                VariableKind::Categorical { levels } => {
                    let mut counts = vec![0.0; levels.len()];
                    for v in values {
                        match v {
                            Some(ClinicalValue::Level(i)) if *i < levels.len() => counts[*i] += 1.0,
                            _ => return Err(type_mismatch(&spec.name)),
                        }
                    }
                    b = b.vector(format!("{prefix}/counts"), counts);
                }
                VariableKind::Continuous { resolution, .. } => {
                    let mut xs = Vec::new();
                    for v in values {
                        match v {
                            Some(ClinicalValue::Number(x)) => xs.push(*x),
                            _ => return Err(type_mismatch(&spec.name)),
                        }
                    }
                    let m = Moments::from_values(&xs);
                    if xs.iter().any(|x| x.is_nan()) {
                        return Err(type_mismatch(&spec.name));
                    }
                    // Small cells merged (`small_cells`): no grid point describes 1 to min − 1
                    // patients of the cohort; mean and SD stay exact.
                    let mut grid: BTreeMap<i64, u64> = BTreeMap::new();
                    for k in released_cells(&xs, |x| grid_index(x, *resolution), min_count) {
                        *grid.entry(k).or_default() += 1;
                    }
                    b = b
                        .vector(format!("{prefix}/moments"), vec![m.n, m.mean, m.m2])
                        .vector(format!("{prefix}/grid"), grid.keys().map(|k| *k as f64).collect())
                        .vector(format!("{prefix}/grid_counts"), grid.values().map(|c| *c as f64).collect());
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

fn decode(a: &SiteAggregate, variables: &[VariableSpec]) -> Result<Vec<[Stats; 2]>, CombineError> {
    let mut out = Vec::new();
    for spec in variables {
        let mut pair = Vec::new();
        for role in CohortRole::ALL {
            let prefix = format!("{}/{}", role.as_str(), spec.name);
            pair.push(match &spec.kind {
                VariableKind::Categorical { levels } => Stats::Categorical(a.counts(&format!("{prefix}/counts"), levels.len())?),
                VariableKind::Continuous { .. } => {
                    let m = a.vector(&format!("{prefix}/moments"), 3)?;
                    let keys = a.integers_any(&format!("{prefix}/grid"))?;
                    let counts = a.counts(&format!("{prefix}/grid_counts"), keys.len())?;
                    let grid: BTreeMap<i64, u64> = keys.into_iter().zip(counts).collect();
                    if grid.values().sum::<u64>() as f64 != m[0] {
                        return Err(CombineError::Inconsistent { site: a.site_id.clone(), detail: format!("histogram of `{}` does not match its count", spec.name) });
                    }
                    Stats::Continuous { moments: Moments { n: m[0], mean: m[1], m2: m[2] }, grid }
                }
            });
        }
        let [t, v]: [Stats; 2] = pair.try_into().expect("two roles");
        out.push([t, v]);
    }
    Ok(out)
}

fn cohort_n(stats: &[[Stats; 2]], role: usize) -> u64 {
    match stats.first().map(|s| &s[role]) {
        Some(Stats::Categorical(c)) => c.iter().sum(),
        Some(Stats::Continuous { moments, .. }) => moments.n as u64,
        None => 0,
    }
}

pub fn combine(answers: &[SiteAggregate], variables: &[VariableSpec]) -> Result<Table1, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut per_site = Vec::new();
    for a in answers {
        per_site.push((a.site_id.clone(), decode(a, variables)?));
    }
    let mut all = per_site[0].1.clone();
    for (_, s) in &per_site[1..] {
        for (acc, x) in all.iter_mut().zip(s) {
            acc[0].merge(&x[0]);
            acc[1].merge(&x[1]);
        }
    }
    let mut scopes = vec![finish(ALL_SITES, &all, variables)];
    for (site, s) in &per_site {
        scopes.push(finish(site, s, variables));
    }
    Ok(Table1 { scopes })
}

fn finish(scope: &str, stats: &[[Stats; 2]], variables: &[VariableSpec]) -> Table1Scope {
    let mut rows = Vec::new();
    for (spec, pair) in variables.iter().zip(stats) {
        let summary = match (&spec.kind, &pair[0], &pair[1]) {
            (VariableKind::Categorical { levels }, Stats::Categorical(t), Stats::Categorical(v)) => {
                VariableSummary::Categorical { levels: levels.clone(), counts: [t.clone(), v.clone()], test: categorical_test(t, v) }
            }
            (VariableKind::Continuous { resolution, unit }, Stats::Continuous { moments: mt, grid: gt }, Stats::Continuous { moments: mv, grid: gv }) => {
                let to_counts = |g: &BTreeMap<i64, u64>| -> GridCounts { g.iter().map(|(k, c)| (*k as f64 * resolution, *c)).collect() };
                let (ct, cv) = (to_counts(gt), to_counts(gv));
                VariableSummary::Continuous {
                    unit: unit.clone(),
                    moments: [*mt, *mv],
                    median: [quantile_from_counts(&ct, 0.5), quantile_from_counts(&cv, 0.5)],
                    q1: [quantile_from_counts(&ct, 0.25), quantile_from_counts(&cv, 0.25)],
                    q3: [quantile_from_counts(&ct, 0.75), quantile_from_counts(&cv, 0.75)],
                    welch: welch_t_test(*mt, *mv),
                    mann_whitney: mann_whitney_from_counts(&ct, &cv),
                }
            }
            _ => unreachable!("decoded by the same specs"),
        };
        rows.push(VariableRow { name: spec.name.clone(), label: spec.display_label().to_string(), summary });
    }
    Table1Scope { scope: scope.to_string(), n: [cohort_n(stats, 0), cohort_n(stats, 1)], variables: rows }
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

/// Table 1 from all rows in one process: `patients` are (site, record, role). Uses the raw
/// values (two-pass moments, sorting for quantiles and ranks) rather than the aggregates.
pub fn pooled(patients: &[(String, PatientRecord, CohortRole)], variables: &[VariableSpec]) -> Table1 {
    let mut sites: Vec<String> = patients.iter().map(|p| p.0.clone()).collect();
    sites.sort();
    sites.dedup();
    let mut scopes = vec![pooled_scope(ALL_SITES, patients.iter().collect(), variables)];
    for s in &sites {
        scopes.push(pooled_scope(s, patients.iter().filter(|p| &p.0 == s).collect(), variables));
    }
    Table1 { scopes }
}

fn pooled_scope(scope: &str, patients: Vec<&(String, PatientRecord, CohortRole)>, variables: &[VariableSpec]) -> Table1Scope {
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
            VariableKind::Continuous { unit, .. } => {
                let values = |role| -> Vec<f64> {
                    let mut xs: Vec<f64> = of_role(role)
                        .filter_map(|r| match r.clinical.get(&spec.name) {
                            Some(ClinicalValue::Number(x)) => Some(*x),
                            _ => None,
                        })
                        .collect();
                    xs.sort_by(f64::total_cmp);
                    xs
                };
                let (t, v) = (values(CohortRole::Training), values(CohortRole::Validation));
                let (mt, mv) = (Moments::from_values(&t), Moments::from_values(&v));
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
    Table1Scope { scope: scope.to_string(), n, variables: rows }
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
            if scope.scope == ALL_SITES { "All sites".to_string() } else { format!("Site {}", scope.scope) },
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
