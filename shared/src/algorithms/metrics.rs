//! Validation metrics from score histograms: each site scores its own patients and sends, per
//! cohort (training, validation) and outcome class, how many predicted log-odds fall in each
//! cell of a shared grid, as a *dense* histogram (every cell, empty or not) so that the sites'
//! histograms add cell by cell under secure aggregation ([`crate::secure_sum`]): the
//! coordinator then learns the pooled histogram and never one site's. Nothing per patient
//! leaves, and nothing else: the Brier score and the calibration curve are computed from the
//! histograms too. The grid is on the log-odds scale so that confident classifiers (naive
//! Bayes easily says 1e-12) are still resolved; it is monotone in the probability, so ranks,
//! the ROC curve and the AUC are those of the probabilities.
//!
//! **The grid** ([`DEFAULT_GRID`] = 10 000 cells over [−50, 50] log-odds, beyond that at the
//! ends) is uniform in asinh(log-odds): cells 0.0009 log-odds wide at 0, 0.004 at ±4, 0.046 at
//! ±50. A dense histogram on the earlier uniform grid (10⁶ cells, 0.0001 wide) would cost a
//! million words per model and site; this one costs 10 000 words for its four cohort × class
//! histograms (four counts to a 64-bit word, [`crate::secure_sum::is_packed`]). Ties within a
//! cell count as ties; what the coarser cells cost against the earlier grid is measured in
//! `the_asinh_grid_costs_auc_little` below and on the demo (README).
//!
//! No cell describes fewer than the site's `min_count` patients: per cohort × class the site
//! merges its small cells into groups and sends the groups' pseudo-patients
//! ([`super::small_cells`]). With `min_count` = 1
//! nothing changes; above it the metrics below are those of the pseudo-patients (the cost is
//! measured in `small_cells_cost_auc_little` below and in the README).
//!
//! From the merged histograms the coordinator computes, exactly for scores on the grid and to
//! within (cross-class pairs sharing a cell)/(2·n₁n₀) otherwise — below 1e-3 on the study's
//! cohorts (tests below and in `tests/federation.rs`):
//! * ROC AUC = P(score₊ > score₋) + ½P(tie), and its DeLong standard error from the placement
//!   values (each positive's share of negatives below it, each negative's share of positives
//!   above it), which are functions of the histograms; 95% CI AUC ± 1.96·SE clipped to [0, 1];
//! * the ROC curve at every cell boundary;
//! * the Youden threshold on the training cohort (the lowest cell boundary maximising
//!   sensitivity + specificity − 1), applied unchanged to validation: accuracy, sensitivity,
//!   specificity ("positive" = probability ≥ threshold);
//! * Brier score, a 10-bin calibration curve (mean predicted vs observed per bin) and the
//!   decision curve (net benefit at thresholds 1%–99%, with treat-all for reference).

use std::collections::BTreeMap;

use super::small_cells::released_cells;
use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::clinical::CohortRole;
use crate::proto::Aggregate;

pub const DEFAULT_GRID: u32 = 10_000;
/// The grid covers log-odds in [−LOG_ODDS_LIMIT, LOG_ODDS_LIMIT].
pub const LOG_ODDS_LIMIT: f64 = 50.0;
/// The most cells a score task may ask for: every cell is sent (dense histograms).
pub const MAX_GRID: u32 = 100_000;
/// Scores beyond this are capped before small cells are merged (only infinities reach it).
const RAW_LIMIT: f64 = 1e12;
const CALIBRATION_BINS: usize = 10;

/// One scored patient as the site holds it (never sent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub role: CohortRole,
    pub outcome: bool,
    /// log(p / (1 − p)) of the predicted probability p.
    pub log_odds: f64,
}

impl Scored {
    pub fn probability(&self) -> f64 {
        super::glm::sigmoid(self.log_odds)
    }
}

/// The grid cell of a log-odds value (shared with the paired-AUC comparison).
pub fn score_cell(log_odds: f64, grid: u32) -> u32 {
    cell(log_odds, grid)
}

/// Where a log-odds value lies on the grid, from 0 (−[`LOG_ODDS_LIMIT`]) to 1: uniform in
/// asinh(log-odds), so cells are finest where scores are dense.
fn grid_position(log_odds: f64) -> f64 {
    let a = LOG_ODDS_LIMIT.asinh();
    (log_odds.clamp(-LOG_ODDS_LIMIT, LOG_ODDS_LIMIT).asinh() + a) / (2.0 * a)
}

/// The log-odds at grid coordinate `x` (cell k spans [k, k + 1)).
pub fn grid_log_odds(x: f64, grid: u32) -> f64 {
    let a = LOG_ODDS_LIMIT.asinh();
    (-a + 2.0 * a * x / f64::from(grid)).sinh()
}

fn cell(log_odds: f64, grid: u32) -> u32 {
    ((grid_position(log_odds) * grid as f64).floor() as u32).min(grid - 1)
}

/// The probability at the lower edge of cell k.
pub fn cell_probability(k: u32, grid: u32) -> f64 {
    super::glm::sigmoid(grid_log_odds(f64::from(k), grid))
}

/// The first cell whose lower edge is at or above probability p.
fn cell_at_probability(p: f64, grid: u32) -> u32 {
    let x = grid_position((p / (1.0 - p)).ln()) * grid as f64;
    (x.ceil().max(0.0) as u32).min(grid)
}

fn class_name(c: bool) -> &'static str {
    if c { "positive" } else { "negative" }
}

// ---- site half ---------------------------------------------------------------------------

/// The name of the dense histogram of one cohort and class in a score answer.
pub fn histogram_name(role: CohortRole, class: bool) -> String {
    format!("{PACKED}{}.{}", role.as_str(), class_name(class))
}

/// Dense histograms are counts the secure sum packs four to a word ([`crate::secure_sum::is_packed`]).
const PACKED: &str = crate::secure_sum::PACKED_PREFIX;

fn check_grid(grid: u32) -> Result<(), SiteRefusal> {
    if !(100..=MAX_GRID).contains(&grid) {
        return Err(SiteRefusal::InvalidParameters(format!("score grid {grid}: use 100 to {MAX_GRID} cells")));
    }
    Ok(())
}

fn dense(cells: impl Iterator<Item = u32>, grid: u32) -> Vec<f64> {
    let mut h = vec![0.0; grid as usize];
    for c in cells {
        h[c as usize] += 1.0;
    }
    h
}

/// Per cohort and class: the dense histogram of released score cells
/// ([`histogram_name`], one count per cell). Every cohort × class population must reach
/// `min_count`.
pub fn site_score_summary(scored: &[Scored], grid: u32, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    check_grid(grid)?;
    if scored.iter().any(|s| s.log_odds.is_nan()) {
        return Err(SiteRefusal::Precondition("a patient's score is not finite".into()));
    }
    let released = released_score_cells(scored, grid, min_count);
    let mut b = AggregateBuilder::new(scored.len() as u64);
    for role in CohortRole::ALL {
        let members: Vec<usize> = (0..scored.len()).filter(|&i| scored[i].role == role).collect();
        for class in [false, true] {
            let n = members.iter().filter(|&&i| scored[i].outcome == class).count() as u64;
            require_min_count(&format!("{} patients with a {} outcome", role.as_str(), class_name(class)), n, min_count)?;
            let cells = members.iter().filter(|&&i| scored[i].outcome == class).map(|&i| released[i]);
            b = b.vector(histogram_name(role, class), dense(cells, grid));
        }
    }
    Ok(b.build())
}

/// Each patient's released score cell: per cohort × class, small cells merged into groups of
/// at least `min_count` patients and rendered as pseudo-patients ([`super::small_cells`]).
/// The score round's histograms count these cells; DeLong's second round places each patient
/// by its own released cell, so its placements say no more than the first round's histograms.
pub fn released_score_cells(scored: &[Scored], grid: u32, min_count: u64) -> Vec<u32> {
    let mut released = vec![0u32; scored.len()];
    for role in CohortRole::ALL {
        for class in [false, true] {
            let members: Vec<usize> = (0..scored.len()).filter(|&i| scored[i].role == role && scored[i].outcome == class).collect();
            // Moments of the scores as they are (only infinities capped), not clamped to the
            // grid: a clamped block of ties would let a steep intercept move patients between
            // groups' sums.
            let values: Vec<f64> = members.iter().map(|&i| scored[i].log_odds.clamp(-RAW_LIMIT, RAW_LIMIT)).collect();
            for (&i, c) in members.iter().zip(released_cells(&values, |x| i64::from(cell(x, grid)), min_count)) {
                released[i] = c as u32;
            }
        }
    }
    released
}

/// Out-of-fold scores of the training patients (each scored by the model fitted without its
/// fold): per class the dense histogram of released cells (`packed.<class>`), for the
/// cross-validated AUC of a hyperparameter search. Each class must reach `min_count`.
pub fn site_class_histograms(scores: &[(bool, f64)], grid: u32, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    check_grid(grid)?;
    if scores.iter().any(|s| s.1.is_nan()) {
        return Err(SiteRefusal::Precondition("a patient's score is not finite".into()));
    }
    let mut b = AggregateBuilder::new(scores.len() as u64);
    for class in [false, true] {
        let values: Vec<f64> = scores.iter().filter(|s| s.0 == class).map(|s| s.1.clamp(-RAW_LIMIT, RAW_LIMIT)).collect();
        require_min_count(&format!("training patients with a {} outcome", class_name(class)), values.len() as u64, min_count)?;
        let cells = released_cells(&values, |x| i64::from(cell(x, grid)), min_count).into_iter().map(|c| c as u32);
        b = b.vector(format!("{PACKED}{}", class_name(class)), dense(cells, grid));
    }
    Ok(b.build())
}

// ---- coordinator half --------------------------------------------------------------------

/// Merges [`site_class_histograms`] answers.
pub fn combine_class_histograms(answers: &[SiteAggregate], grid: u32) -> Result<ScoreHistogram, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut h = ScoreHistogram { grid, calibration: vec![[0.0; 3]; CALIBRATION_BINS], ..Default::default() };
    for a in answers {
        for class in [false, true] {
            let target = if class { &mut h.positive } else { &mut h.negative };
            add_dense(target, &a.counts(&format!("{PACKED}{}", class_name(class)), grid as usize)?);
        }
    }
    Ok(h)
}

/// Adds a dense histogram's non-empty cells to a sparse one.
fn add_dense(target: &mut BTreeMap<u32, u64>, counts: &[u64]) {
    for (c, &n) in counts.iter().enumerate() {
        if n > 0 {
            *target.entry(c as u32).or_default() += n;
        }
    }
}

/// Merged histograms of one cohort: counts per cell for negatives and positives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreHistogram {
    pub grid: u32,
    pub negative: BTreeMap<u32, u64>,
    pub positive: BTreeMap<u32, u64>,
    pub brier_sum: f64,
    pub n: f64,
    /// Per calibration bin: [n, Σp, Σy].
    pub calibration: Vec<[f64; 3]>,
}

/// Merges the answers, per cohort; `per_site` also returns each answering site's own
/// histograms (none for the secure sum of all sites, [`crate::secure_sum::SUM_OF_SITES`]).
pub fn combine(
    answers: &[SiteAggregate],
    grid: u32,
) -> Result<(BTreeMap<CohortRole, ScoreHistogram>, BTreeMap<String, BTreeMap<CohortRole, ScoreHistogram>>), CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut total: BTreeMap<CohortRole, ScoreHistogram> = BTreeMap::new();
    let mut per_site = BTreeMap::new();
    for a in answers {
        let mut site: BTreeMap<CohortRole, ScoreHistogram> = BTreeMap::new();
        for role in CohortRole::ALL {
            let mut h = ScoreHistogram { grid, calibration: vec![[0.0; 3]; CALIBRATION_BINS], ..Default::default() };
            for class in [false, true] {
                let target = if class { &mut h.positive } else { &mut h.negative };
                add_dense(target, &a.counts(&histogram_name(role, class), grid as usize)?);
            }
            h.derive_brier_and_calibration();
            total.entry(role).or_insert_with(|| ScoreHistogram { grid, calibration: vec![[0.0; 3]; CALIBRATION_BINS], ..Default::default() }).add(&h);
            site.insert(role, h);
        }
        if a.site_id != crate::secure_sum::SUM_OF_SITES {
            per_site.insert(a.site_id.clone(), site);
        }
    }
    Ok((total, per_site))
}

/// What the report shows for one cohort.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CohortMetrics {
    pub n: u64,
    pub positives: u64,
    pub auc: f64,
    pub auc_se: f64,
    pub auc_ci: (f64, f64),
    pub threshold: f64,
    pub accuracy: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub brier: f64,
    /// (false-positive rate, true-positive rate), from (0, 0) to (1, 1).
    pub roc: Vec<(f64, f64)>,
    /// Per non-empty bin: (mean predicted, observed rate, n).
    pub calibration: Vec<(f64, f64, u64)>,
    /// (threshold, net benefit of the model, net benefit of treating all).
    pub decision_curve: Vec<(f64, f64, f64)>,
}

impl ScoreHistogram {
    /// Adds `other`'s patients (histograms on the same grid): the histogram of both groups.
    pub fn add(&mut self, other: &ScoreHistogram) {
        self.grid = other.grid;
        for (c, n) in &other.negative {
            *self.negative.entry(*c).or_default() += n;
        }
        for (c, n) in &other.positive {
            *self.positive.entry(*c).or_default() += n;
        }
        self.brier_sum += other.brier_sum;
        self.n += other.n;
        if self.calibration.len() < other.calibration.len() {
            self.calibration.resize(other.calibration.len(), [0.0; 3]);
        }
        for (a, b) in self.calibration.iter_mut().zip(&other.calibration) {
            for m in 0..3 {
                a[m] += b[m];
            }
        }
    }

    /// The Brier sum and the calibration bins from the released histograms, each patient at its
    /// cell's centre. Sites used to send these sums over their patients' own probabilities, but
    /// a cohort total of probabilities is one patient's probability plus an integer once a
    /// steep scorer saturates all the others, and its Brier sum gives that patient's outcome:
    /// they say no more than the histograms now (a cell's centre is within 1.2·10⁻⁴ of the
    /// probability of any score in it).
    fn derive_brier_and_calibration(&mut self) {
        self.brier_sum = 0.0;
        self.n = 0.0;
        self.calibration = vec![[0.0; 3]; CALIBRATION_BINS];
        for (class, cells) in [(0.0, &self.negative), (1.0, &self.positive)] {
            for (&c, &count) in cells {
                let p = super::glm::sigmoid(grid_log_odds(f64::from(c) + 0.5, self.grid));
                let n = count as f64;
                self.brier_sum += n * (p - class).powi(2);
                self.n += n;
                let k = ((p * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
                self.calibration[k][0] += n;
                self.calibration[k][1] += n * p;
                self.calibration[k][2] += n * class;
            }
        }
    }

    fn totals(&self) -> (u64, u64) {
        (self.negative.values().sum(), self.positive.values().sum())
    }

    /// Sensitivity and specificity when "positive" means cell ≥ k.
    fn rates_at(&self, k: u32) -> (f64, f64) {
        let (n0, n1) = self.totals();
        let tp: u64 = self.positive.range(k..).map(|(_, v)| v).sum();
        let tn: u64 = self.negative.range(..k).map(|(_, v)| v).sum();
        (tp as f64 / n1.max(1) as f64, tn as f64 / n0.max(1) as f64)
    }

    /// AUC and DeLong's standard error from the histograms.
    pub fn auc(&self) -> (f64, f64) {
        let (n0, n1) = self.totals();
        if n0 == 0 || n1 == 0 {
            return (f64::NAN, f64::NAN);
        }
        let (f0, f1) = (n0 as f64, n1 as f64);
        let cells: std::collections::BTreeSet<u32> = self.negative.keys().chain(self.positive.keys()).copied().collect();
        // Placement values per cell.
        let mut neg_below = 0u64;
        let mut v10 = Vec::new(); // (count of positives, placement)
        for &c in &cells {
            let neg_here = *self.negative.get(&c).unwrap_or(&0);
            if let Some(&pos) = self.positive.get(&c) {
                v10.push((pos, (neg_below as f64 + 0.5 * neg_here as f64) / f0));
            }
            neg_below += neg_here;
        }
        let mut pos_above = 0u64;
        let mut v01 = Vec::new();
        for &c in cells.iter().rev() {
            let pos_here = *self.positive.get(&c).unwrap_or(&0);
            if let Some(&neg) = self.negative.get(&c) {
                v01.push((neg, (pos_above as f64 + 0.5 * pos_here as f64) / f1));
            }
            pos_above += pos_here;
        }
        let auc = v10.iter().map(|(n, v)| *n as f64 * v).sum::<f64>() / f1;
        let s10 = if n1 > 1 { v10.iter().map(|(n, v)| *n as f64 * (v - auc).powi(2)).sum::<f64>() / (f1 - 1.0) } else { 0.0 };
        let s01 = if n0 > 1 { v01.iter().map(|(n, v)| *n as f64 * (v - auc).powi(2)).sum::<f64>() / (f0 - 1.0) } else { 0.0 };
        (auc, (s10 / f1 + s01 / f0).sqrt())
    }

    /// The Youden-optimal cell boundary (lowest on ties).
    pub fn youden_cell(&self) -> u32 {
        let mut best = (f64::NEG_INFINITY, 0);
        let mut boundaries: Vec<u32> = self.negative.keys().chain(self.positive.keys()).flat_map(|&c| [c, c + 1]).collect();
        boundaries.sort_unstable();
        boundaries.dedup();
        for k in boundaries {
            let (sens, spec) = self.rates_at(k);
            let j = sens + spec - 1.0;
            if j > best.0 + 1e-12 {
                best = (j, k);
            }
        }
        best.1
    }

    /// All metrics, classifying at cell boundary `threshold_cell`.
    pub fn metrics(&self, threshold_cell: u32) -> CohortMetrics {
        let (n0, n1) = self.totals();
        let (auc, se) = self.auc();
        let (sens, spec) = self.rates_at(threshold_cell);
        let n = (n0 + n1) as f64;
        let accuracy = (sens * n1 as f64 + spec * n0 as f64) / n.max(1.0);
        let mut roc = vec![(0.0, 0.0)];
        let mut bounds: Vec<u32> = self.negative.keys().chain(self.positive.keys()).copied().collect();
        bounds.sort_unstable_by(|a, b| b.cmp(a));
        bounds.dedup();
        for k in bounds {
            let (se_k, sp_k) = self.rates_at(k);
            roc.push((1.0 - sp_k, se_k));
        }
        if roc.last() != Some(&(1.0, 1.0)) {
            roc.push((1.0, 1.0));
        }
        let calibration = self.calibration.iter().filter(|b| b[0] > 0.0).map(|b| (b[1] / b[0], b[2] / b[0], b[0] as u64)).collect();
        let prevalence = n1 as f64 / n.max(1.0);
        let decision_curve = (1..100)
            .map(|t| {
                let pt = t as f64 / 100.0;
                let k = cell_at_probability(pt, self.grid);
                let tp: u64 = self.positive.range(k..).map(|(_, v)| v).sum();
                let fp: u64 = self.negative.range(k..).map(|(_, v)| v).sum();
                let odds = pt / (1.0 - pt);
                (pt, tp as f64 / n - fp as f64 / n * odds, prevalence - (1.0 - prevalence) * odds)
            })
            .collect();
        CohortMetrics {
            n: n0 + n1,
            positives: n1,
            auc,
            auc_se: se,
            auc_ci: ((auc - 1.959_963_984_540_054 * se).max(0.0), (auc + 1.959_963_984_540_054 * se).min(1.0)),
            threshold: cell_probability(threshold_cell, self.grid),
            accuracy,
            sensitivity: sens,
            specificity: spec,
            brier: self.brier_sum / self.n.max(1.0),
            roc,
            calibration,
            decision_curve,
        }
    }
}

// ---- pooled reference --------------------------------------------------------------------

/// AUC and DeLong SE from raw scores (exact mid-ranks), for the tests.
pub fn pooled_auc(scores: &[f64], outcome: &[bool]) -> (f64, f64) {
    let pos: Vec<f64> = scores.iter().zip(outcome).filter(|(_, y)| **y).map(|(s, _)| *s).collect();
    let neg: Vec<f64> = scores.iter().zip(outcome).filter(|(_, y)| !**y).map(|(s, _)| *s).collect();
    let psi = |a: f64, b: f64| {
        if a > b {
            1.0
        } else if a == b {
            0.5
        } else {
            0.0
        }
    };
    let v10: Vec<f64> = pos.iter().map(|&p| neg.iter().map(|&q| psi(p, q)).sum::<f64>() / neg.len() as f64).collect();
    let v01: Vec<f64> = neg.iter().map(|&q| pos.iter().map(|&p| psi(p, q)).sum::<f64>() / pos.len() as f64).collect();
    let auc = v10.iter().sum::<f64>() / pos.len() as f64;
    let var = |v: &[f64]| v.iter().map(|x| (x - auc).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0);
    (auc, (var(&v10) / pos.len() as f64 + var(&v01) / neg.len() as f64).sqrt())
}

// ---- what a site accepts ------------------------------------------------------------------

/// Score histograms only on the study's grid ([`DEFAULT_GRID`] cells of probability), so the
/// coordinator cannot choose the resolution. Which models may be scored at all is checked
/// against the plan by the site (`site-agent`'s acceptance of score tasks).
pub fn site_accepts_grid(grid: u32) -> Result<(), SiteRefusal> {
    if grid != DEFAULT_GRID {
        return Err(SiteRefusal::InvalidParameters(format!("a score grid of {grid} cells; the study's is {DEFAULT_GRID}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(n: usize, seed: u64) -> Vec<Scored> {
        let mut u = crate::algorithms::testdata::uniform_stream(seed | 1);
        (0..n)
            .map(|i| {
                let outcome = u() < 0.34;
                let z = if outcome { 0.9 } else { 0.0 } + (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos();
                let role = if i % 10 < 7 { CohortRole::Training } else { CohortRole::Validation };
                Scored { role, outcome, log_odds: z - 0.8 }
            })
            .collect()
    }

    /// Each site's score answer, the patients cut into consecutive sites of `sizes`.
    fn site_answers(all: &[Scored], sizes: &[usize], min_count: u64) -> Vec<SiteAggregate> {
        let mut start = 0;
        sizes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                start += s;
                SiteAggregate::new(format!("s{k}"), site_score_summary(&all[start - s..start], DEFAULT_GRID, min_count).unwrap())
            })
            .collect()
    }

    #[test]
    fn partition_auc_from_histograms_equals_pooled_within_1e4() {
        let all = scored(328, 42);
        let mut reference = None;
        for sizes in [vec![328], vec![105, 88, 76, 59], vec![30, 60, 41, 55, 27, 70, 45]] {
            let (total, per_site) = combine(&site_answers(&all, &sizes, 1), DEFAULT_GRID).unwrap();
            assert_eq!(per_site.len(), sizes.len());
            let train = &total[&CohortRole::Training];
            let k = train.youden_cell();
            let m = (train.metrics(k), total[&CohortRole::Validation].metrics(k));
            for (cohort, metrics) in [(CohortRole::Training, &m.0), (CohortRole::Validation, &m.1)] {
                let (s, y): (Vec<f64>, Vec<bool>) = all.iter().filter(|p| p.role == cohort).map(|p| (p.probability(), p.outcome)).unzip();
                let (auc, se) = pooled_auc(&s, &y);
                assert!((metrics.auc - auc).abs() < 1e-3 && (metrics.auc_se - se).abs() < 1e-3, "{cohort:?}: {} vs {auc}", metrics.auc);
                let brier = s.iter().zip(&y).map(|(p, y)| (p - *y as u8 as f64).powi(2)).sum::<f64>() / s.len() as f64;
                // From cell centres: each probability within 1.2e-4 of the patient's own.
                assert!((metrics.brier - brier).abs() < 1e-4, "Brier {} vs {brier}", metrics.brier);
                // Sensitivity/specificity at the threshold, straight from the scores.
                let t = metrics.threshold;
                let tp = s.iter().zip(&y).filter(|(p, y)| **y && **p >= t).count() as f64;
                assert!((metrics.sensitivity - tp / y.iter().filter(|v| **v).count() as f64).abs() < 1e-12);
            }
            match &reference {
                None => reference = Some(m),
                Some(r) => {
                    // Counts merge exactly; the Brier sum only sees the order of addition.
                    for (a, b) in [(&m.0, &r.0), (&m.1, &r.1)] {
                        assert_eq!((a.auc, a.auc_se, a.threshold, a.sensitivity, a.specificity), (b.auc, b.auc_se, b.threshold, b.sensitivity, b.specificity));
                        assert!(a.roc == b.roc && a.decision_curve == b.decision_curve, "ROC and decision curves depend on the partition");
                        assert!((a.brier - b.brier).abs() < 1e-14);
                    }
                }
            }
        }
        let (train, _) = reference.unwrap();
        assert!(train.auc > 0.6 && train.auc < 0.9, "{}", train.auc);
        assert!(train.roc.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
    }

    /// What merging small cells costs: with the default `min_count` of 5, the AUC and its
    /// DeLong SE from the pseudo-patients against the exact pooled values, over 1, 4 and 7
    /// uneven sites (the smallest with about 10 validation positives) and several draws.
    #[test]
    fn small_cells_cost_auc_little() {
        let mut worst: f64 = 0.0;
        let mut total = 0.0;
        let mut runs = 0.0;
        for seed in [42, 7, 99, 1234, 5] {
            let all = scored(1000, seed);
            for sizes in [vec![1000], vec![280, 250, 260, 210], vec![120, 170, 130, 160, 100, 180, 140]] {
                let (merged, _) = combine(&site_answers(&all, &sizes, 5), DEFAULT_GRID).unwrap();
                for cohort in CohortRole::ALL {
                    let (sc, y): (Vec<f64>, Vec<bool>) = all.iter().filter(|p| p.role == cohort).map(|p| (p.log_odds, p.outcome)).unzip();
                    let (auc, se) = pooled_auc(&sc, &y);
                    let (a, s) = merged[&cohort].auc();
                    assert!((s - se).abs() < 0.01, "SE {s} vs {se}");
                    worst = worst.max((a - auc).abs());
                    total += (a - auc).abs();
                    runs += 1.0;
                }
            }
        }
        assert!(worst < 0.009, "worst |ΔAUC| {worst}");
        assert!(total / runs < 0.003, "mean |ΔAUC| {}", total / runs);
        eprintln!("min_count 5: mean |ΔAUC| {:.4}, worst {worst:.4} over {runs} cohorts", total / runs);
    }

    /// What the grid's cells cost on their own (`min_count` = 1, so every patient is released
    /// in its own cell): patients within one cell tie. Over 328-patient cohorts with the
    /// study's spread of scores, the AUC from the histograms against the exact AUC of the
    /// scores; and the cells are what the module doc says (0.0009 log-odds wide at 0).
    #[test]
    fn the_asinh_grid_costs_auc_little() {
        let width = |l: f64| {
            let c = cell(l, DEFAULT_GRID);
            grid_log_odds(f64::from(c) + 1.0, DEFAULT_GRID) - grid_log_odds(f64::from(c), DEFAULT_GRID)
        };
        assert!((width(0.0) - 0.00092).abs() < 1e-5 && (width(4.0) - 0.0038).abs() < 2e-4 && width(49.0) < 0.05, "{} {} {}", width(0.0), width(4.0), width(49.0));
        for k in [0, 1, 4_999, 5_000, 9_999] {
            assert_eq!(cell(grid_log_odds(f64::from(k) + 0.5, DEFAULT_GRID), DEFAULT_GRID), k);
        }
        let (mut worst, mut total, mut runs) = (0.0f64, 0.0, 0.0);
        for seed in 1..=20 {
            let all = scored(328, seed);
            let (merged, _) = combine(&[SiteAggregate::new("a", site_score_summary(&all, DEFAULT_GRID, 1).unwrap())], DEFAULT_GRID).unwrap();
            for cohort in CohortRole::ALL {
                let (sc, y): (Vec<f64>, Vec<bool>) = all.iter().filter(|p| p.role == cohort).map(|p| (p.log_odds, p.outcome)).unzip();
                let d = (merged[&cohort].auc().0 - pooled_auc(&sc, &y).0).abs();
                worst = worst.max(d);
                total += d;
                runs += 1.0;
            }
        }
        eprintln!("grid of {DEFAULT_GRID} cells: mean |ΔAUC| {:.5}, worst {worst:.5} over {runs} cohorts", total / runs);
        assert!(worst < 0.001, "worst |ΔAUC| {worst}");
    }

    /// A site sends the released histograms and nothing else: no Brier or calibration sums over
    /// its patients' own probabilities (with a steep scorer saturating every other patient, a
    /// cohort's Σp is an integer plus one patient's p, and its Brier sum that patient's outcome).
    #[test]
    fn a_site_sends_histograms_only_and_calibration_comes_from_them() {
        let all = scored(300, 11);
        let answer = site_score_summary(&all, DEFAULT_GRID, 5).unwrap();
        assert!(
            answer.tensors.iter().all(|t| t.name.starts_with(PACKED) && t.values.len() == DEFAULT_GRID as usize),
            "{:?}",
            answer.tensors.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        let (total, _) = combine(&[SiteAggregate::new("s", answer)], DEFAULT_GRID).unwrap();
        let m = total[&CohortRole::Training].metrics(DEFAULT_GRID / 2);
        let training: Vec<&Scored> = all.iter().filter(|p| p.role == CohortRole::Training).collect();
        assert_eq!(m.calibration.iter().map(|c| c.2).sum::<u64>(), training.len() as u64);
        // Mean predicted over all bins equals the mean released probability, close to the truth.
        let mean_p = training.iter().map(|p| p.probability()).sum::<f64>() / training.len() as f64;
        let mean_released = m.calibration.iter().map(|c| c.0 * c.2 as f64).sum::<f64>() / training.len() as f64;
        assert!((mean_p - mean_released).abs() < 0.02, "{mean_p} vs {mean_released}");
    }

    #[test]
    fn random_scores_give_auc_near_one_half_and_a_ci_covering_it() {
        let mut all = scored(2000, 7);
        let mut s = 99u64;
        for p in &mut all {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            p.log_odds = (u / (1.0 - u)).ln();
        }
        let (total, _) = combine(&[SiteAggregate::new("a", site_score_summary(&all, DEFAULT_GRID, 1).unwrap())], DEFAULT_GRID).unwrap();
        let m = total[&CohortRole::Training].metrics(DEFAULT_GRID / 2);
        assert!((m.auc - 0.5).abs() < 0.05 && m.auc_ci.0 < 0.5 && m.auc_ci.1 > 0.5, "{:?}", (m.auc, m.auc_ci));
    }

    #[test]
    fn a_class_below_the_minimum_is_refused() {
        let all = scored(40, 3);
        assert!(matches!(site_score_summary(&all, DEFAULT_GRID, 20), Err(SiteRefusal::BelowMinCount { .. })));
    }
}
