//! DeLong's test of AUC differences between models scored on the same patients.
//!
//! DeLong, DeLong & Clarke-Pearson (1988): for model m, a positive patient's placement is
//! V10ₘ(i) = (negatives scored below i + ½ tied) / n₀, a negative's V01ₘ(j) = (positives
//! scored above j + ½ tied) / n₁. Both average to AUCₘ, and
//! Cov(AUCₐ, AUC_b) = S10ₐ_b / n₁ + S01ₐ_b / n₀ with S10, S01 the sample covariances of the
//! placements over positives and negatives. The test of AUCₐ = AUC_b is
//! z = (AUCₐ − AUC_b) / √(Var AUCₐ + Var AUC_b − 2 Cov).
//!
//! Federated in two rounds over the validation patients every model can score:
//! 1. each site returns per model the per-class dense histograms of its patients' log-odds on
//!    the metrics grid (the score round, [`super::metrics::site_score_summary`]), secure-summed;
//! 2. the coordinator sends the merged per-class histograms back ([`ClassHistograms`]), with
//!    every site's signed answer to round 1; each site checks and sums those answers itself and
//!    goes on only if the merge is exactly their sum ([`ComparisonReplica`]), then places its
//!    own patients against it and returns, per class, the patient count, the sums of
//!    placements (M) and of their pairwise products (M × M) — [`site_placements`].
//!    A patient is placed by its *released* cell, the pseudo-patient of its rank in the small-
//!    cell group it fell in ([`super::metrics::released_score_cells`]), not by its own score:
//!    the placements then say nothing the first round's histograms did not, and the AUCs of
//!    the comparison equal those of the main table.
//!
//! The sums add up to the pooled ones exactly, so the covariance is the pooled DeLong
//! covariance on the grid (cells about 0.001 log-odds wide; ties within a cell count as ties). The
//! second round shows each site the merged score distribution of the cohort (no patient
//! identities), and every sum covers at least `min_count` patients of a class.

use std::collections::BTreeMap;

use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::Aggregate;
use crate::stats::normal_sf;

/// Merged histograms of one model's scores: cell → count, per class.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassHistograms {
    pub negative: BTreeMap<u32, u64>,
    pub positive: BTreeMap<u32, u64>,
}

impl ClassHistograms {
    /// Placement of a patient in `cell` against the other class.
    fn placement(&self, cell: u32, positive: bool) -> f64 {
        let (other, total): (&BTreeMap<u32, u64>, u64) =
            if positive { (&self.negative, self.negative.values().sum()) } else { (&self.positive, self.positive.values().sum()) };
        let tied = *other.get(&cell).unwrap_or(&0) as f64;
        let beaten: u64 = if positive { other.range(..cell).map(|(_, v)| v).sum() } else { other.range(cell + 1..).map(|(_, v)| v).sum() };
        (beaten as f64 + 0.5 * tied) / total as f64
    }
}

/// Site half of round 2. `cells[i]` holds patient i's released score cell under each of the M
/// models (as the first round counted it).
pub fn site_placements(cells: &[Vec<u32>], outcome: &[bool], merged: &[ClassHistograms], min_count: u64) -> Result<Aggregate, SiteRefusal> {
    let m = merged.len();
    if m == 0 || m > 200 {
        return Err(SiteRefusal::InvalidParameters("compare 1 to 200 models".into()));
    }
    if merged.iter().any(|h| h.negative.is_empty() || h.positive.is_empty()) {
        return Err(SiteRefusal::InvalidParameters("every model needs patients of both classes".into()));
    }
    site_accepts_merged(cells, outcome, merged)?;
    let mut b = AggregateBuilder::new(cells.len() as u64);
    for class in [false, true] {
        let rows: Vec<&Vec<u32>> = cells.iter().zip(outcome).filter(|(_, y)| **y == class).map(|(s, _)| s).collect();
        let name = if class { "positive" } else { "negative" };
        require_min_count(&format!("validation patients with a {name} outcome"), rows.len() as u64, min_count)?;
        let mut sum = vec![0.0; m];
        let mut products = vec![0.0; m * m];
        for r in rows.iter() {
            if r.len() != m {
                return Err(SiteRefusal::InvalidParameters("one score per model is needed".into()));
            }
            let mut v = Vec::with_capacity(m);
            for (k, h) in merged.iter().enumerate() {
                let cell = r[k];
                let own = if class { &h.positive } else { &h.negative };
                if !own.contains_key(&cell) {
                    return Err(SiteRefusal::Precondition("the merged histograms do not describe this site's patients".into()));
                }
                v.push(h.placement(cell, class));
            }
            for a in 0..m {
                sum[a] += v[a];
                for c in 0..m {
                    products[a * m + c] += v[a] * v[c];
                }
            }
        }
        b = b.scalar(format!("n.{name}"), rows.len() as f64).vector(format!("sum.{name}"), sum).matrix(format!("products.{name}"), m, m, products);
    }
    Ok(b.build())
}

/// AUCs of M models on the same patients and their DeLong covariance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairedAuc {
    pub auc: Vec<f64>,
    /// M × M, row-major.
    pub covariance: Vec<f64>,
    pub negatives: u64,
    pub positives: u64,
}

/// One comparison: AUCₐ − AUC_b with its DeLong 95% CI and two-sided p.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AucComparison {
    pub difference: f64,
    pub se: f64,
    pub ci: (f64, f64),
    pub z: f64,
    pub p_value: f64,
}

/// Coordinator half of round 2.
pub fn combine_placements(answers: &[SiteAggregate], m: usize) -> Result<PairedAuc, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let mut n = [0.0f64; 2];
    let mut sum = [vec![0.0; m], vec![0.0; m]];
    let mut products = [vec![0.0; m * m], vec![0.0; m * m]];
    for a in answers {
        for (c, name) in ["negative", "positive"].iter().enumerate() {
            n[c] += a.scalar(&format!("n.{name}"))?;
            for (t, v) in sum[c].iter_mut().zip(a.vector(&format!("sum.{name}"), m)?) {
                *t += v;
            }
            for (t, v) in products[c].iter_mut().zip(a.vector(&format!("products.{name}"), m * m)?) {
                *t += v;
            }
        }
    }
    // AUC from the positives' placements (equal to the negatives' up to rounding).
    let auc: Vec<f64> = (0..m).map(|k| sum[1][k] / n[1]).collect();
    let mean = |c: usize, k: usize| sum[c][k] / n[c];
    let cov = |c: usize, a: usize, b: usize| if n[c] > 1.0 { (products[c][a * m + b] - n[c] * mean(c, a) * mean(c, b)) / (n[c] - 1.0) } else { 0.0 };
    let covariance = (0..m * m).map(|k| cov(1, k / m, k % m) / n[1] + cov(0, k / m, k % m) / n[0]).collect();
    Ok(PairedAuc { auc, covariance, negatives: n[0] as u64, positives: n[1] as u64 })
}

impl PairedAuc {
    pub fn compare(&self, a: usize, b: usize) -> AucComparison {
        let m = self.auc.len();
        let difference = self.auc[a] - self.auc[b];
        let var = (self.covariance[a * m + a] + self.covariance[b * m + b] - 2.0 * self.covariance[a * m + b]).max(0.0);
        let se = var.sqrt();
        let z = if se > 0.0 { difference / se } else { 0.0 };
        let p_value = if se > 0.0 { (2.0 * normal_sf(z.abs())).min(1.0) } else { 1.0 };
        AucComparison { difference, se, ci: (difference - 1.959_963_984_540_054 * se, difference + 1.959_963_984_540_054 * se), z, p_value }
    }
}

/// Pooled reference: DeLong's covariance from raw scores (exact comparisons, no grid).
pub fn pooled_paired_auc(scores: &[Vec<f64>], outcome: &[bool]) -> PairedAuc {
    let m = scores[0].len();
    let pos: Vec<&Vec<f64>> = scores.iter().zip(outcome).filter(|(_, y)| **y).map(|(s, _)| s).collect();
    let neg: Vec<&Vec<f64>> = scores.iter().zip(outcome).filter(|(_, y)| !**y).map(|(s, _)| s).collect();
    let psi = |a: f64, b: f64| {
        if a > b {
            1.0
        } else if a == b {
            0.5
        } else {
            0.0
        }
    };
    let v10: Vec<Vec<f64>> = pos.iter().map(|p| (0..m).map(|k| neg.iter().map(|q| psi(p[k], q[k])).sum::<f64>() / neg.len() as f64).collect()).collect();
    let v01: Vec<Vec<f64>> = neg.iter().map(|q| (0..m).map(|k| pos.iter().map(|p| psi(p[k], q[k])).sum::<f64>() / pos.len() as f64).collect()).collect();
    let auc: Vec<f64> = (0..m).map(|k| v10.iter().map(|v| v[k]).sum::<f64>() / pos.len() as f64).collect();
    let cov = |v: &[Vec<f64>], a: usize, b: usize| v.iter().map(|r| (r[a] - auc[a]) * (r[b] - auc[b])).sum::<f64>() / (v.len() as f64 - 1.0);
    let covariance = (0..m * m).map(|k| cov(&v10, k / m, k % m) / pos.len() as f64 + cov(&v01, k / m, k % m) / neg.len() as f64).collect();
    PairedAuc { auc, covariance, negatives: neg.len() as u64, positives: pos.len() as u64 }
}

// ---- what a site accepts ------------------------------------------------------------------

/// Round 2 sends back "merged" histograms, and the placements a site returns are sums over
/// its patients of values read from them: a forged histogram (one cell of weight 1 just above
/// one patient's score, say) turns a placement sum into a membership test. A site therefore
/// accepts merged histograms only if they contain its own: in every cell, per model and class,
/// at least as many patients as it holds there itself. With secure aggregation and signed
/// answers (not yet) the site could check the merge itself; without them a coordinator can
/// still add made-up patients, but cannot remove or move this site's own.
///
/// And since every compared model scores the same patients, each model's merged histograms must
/// hold the same number of patients per class: a forgery that adds made-up patients to one
/// model's copy only (to set a threshold there) is refused, so made-up cells must be added to
/// every model alike.
pub fn site_accepts_merged(cells: &[Vec<u32>], outcome: &[bool], merged: &[ClassHistograms]) -> Result<(), SiteRefusal> {
    let totals = |h: &ClassHistograms| (h.negative.values().fold(0u64, |a, &b| a.saturating_add(b)), h.positive.values().fold(0u64, |a, &b| a.saturating_add(b)));
    if let Some(first) = merged.first()
        && merged.iter().any(|h| totals(h) != totals(first))
    {
        return Err(SiteRefusal::InvalidParameters(
            "the merged histograms of the compared models hold different numbers of patients: every model scores the same patients".into(),
        ));
    }
    for (k, h) in merged.iter().enumerate() {
        let mut own: [BTreeMap<u32, u64>; 2] = Default::default();
        for (r, &y) in cells.iter().zip(outcome) {
            let Some(&cell) = r.get(k) else { continue };
            *own[usize::from(y)].entry(cell).or_default() += 1;
        }
        for (class, theirs) in [(0, &h.negative), (1, &h.positive)] {
            if own[class].iter().any(|(cell, n)| theirs.get(cell).copied().unwrap_or(0) < *n) {
                return Err(SiteRefusal::InvalidParameters(format!(
                    "the merged histograms of model {k} hold fewer patients in some cell than this site itself: they are not a merge of the sites' answers"
                )));
            }
        }
    }
    Ok(())
}

/// The site's own merge of the first round (issue 17, property 7). The second round carries
/// every site's signed answer to the first ([`crate::secure_sum::answer_message`]; masked under
/// secure aggregation); the site checks them and sums them itself (`site-agent`'s replay), then
/// answers the second round only if the task's "merged" histograms are exactly that sum. A
/// coordinator alone then can neither add made-up patients to the merge (a threshold of its
/// choosing per model) nor learn anything from a refusal: it knows the true sum, and a forgery
/// is refused whatever this site's own histograms hold. A site colluding with it can still sign
/// a made-up first-round answer, as in every recomputed round.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonReplica {
    models: usize,
    grid: u32,
    merged: Option<Vec<ClassHistograms>>,
}

impl ComparisonReplica {
    pub fn new(models: usize, grid: u32) -> Self {
        ComparisonReplica { models, grid, merged: None }
    }

    /// Takes the sum of the sites' first-round answers: per model the validation cohort's
    /// histograms, merged as the coordinator merges them ([`super::metrics::combine`]).
    pub fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        let mut merged = Vec::with_capacity(self.models);
        for k in 0..self.models {
            let (total, _) = super::metrics::combine(&[sum.nested(&format!("m{k}."))], self.grid)
                .map_err(|e| SiteRefusal::InvalidParameters(format!("the first round's answers do not merge: {e}")))?;
            let v = total.get(&crate::clinical::CohortRole::Validation).cloned().unwrap_or_default();
            merged.push(ClassHistograms { negative: v.negative, positive: v.positive });
        }
        self.merged = Some(merged);
        Ok(())
    }

    /// Whether a task asks what the comparison asks next: the first round before any answers,
    /// the second with exactly the merge of the first round's answers.
    pub fn expect(&self, asked: Option<&[ClassHistograms]>) -> Result<(), SiteRefusal> {
        match (&self.merged, asked) {
            (None, None) => Ok(()),
            (Some(m), Some(a)) if m.as_slice() == a => Ok(()),
            (Some(_), Some(_)) => {
                Err(SiteRefusal::InvalidParameters("the merged histograms are not the sum of the sites' signed answers to the comparison's first round".into()))
            }
            (None, Some(_)) => Err(SiteRefusal::InvalidParameters("a comparison's second round without the sites' answers to its first".into())),
            (Some(_), None) => Err(SiteRefusal::InvalidParameters("a comparison's first round carries no answers".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::metrics::score_cell;

    #[test]
    fn merged_histograms_must_hold_the_sites_own_patients() {
        let grid = 1000;
        let cell = |x: f64| score_cell(x, grid);
        let cells = vec![vec![cell(-1.0)], vec![cell(0.5)], vec![cell(0.5)], vec![cell(2.0)]];
        let outcome = vec![false, false, true, true];
        let merged = |extra_neg: u64| ClassHistograms {
            negative: [(cell(-1.0), 1 + extra_neg), (cell(0.5), 1)].into_iter().collect(),
            positive: [(cell(0.5), 1), (cell(2.0), 3)].into_iter().collect(),
        };
        assert!(site_accepts_merged(&cells, &outcome, &[merged(0)]).is_ok());
        assert!(site_accepts_merged(&cells, &outcome, &[merged(5)]).is_ok(), "other sites' patients on top");
        let mut moved = merged(0);
        moved.negative.remove(&cell(-1.0));
        moved.negative.insert(cell(-0.9), 1);
        assert!(site_accepts_merged(&cells, &outcome, &[moved]).is_err(), "one of this site's patients moved");
        let two = |a: u64, b: u64| {
            let cells: Vec<Vec<u32>> = cells.iter().map(|c| vec![c[0], c[0]]).collect();
            site_accepts_merged(&cells, &outcome, &[merged(a), merged(b)])
        };
        assert!(two(5, 5).is_ok());
        assert!(two(0, 5).is_err(), "made-up patients in one model's histograms only");
    }
    use crate::algorithms::testdata::uniform_stream;

    /// Three models on the same 99 patients: informative, correlated with the first, noise.
    fn cohort() -> (Vec<Vec<f64>>, Vec<bool>) {
        let mut u = uniform_stream(77);
        let mut normal = move || (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u().max(1e-12)).cos();
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..99 {
            let outcome = i % 3 == 0;
            let signal = if outcome { 1.2 } else { 0.0 } + normal();
            rows.push(vec![signal - 0.5, 0.7 * signal + 0.7 * normal(), normal()]);
            y.push(outcome);
        }
        (rows, y)
    }

    fn merged(rows: &[Vec<f64>], y: &[bool], grid: u32) -> Vec<ClassHistograms> {
        (0..rows[0].len())
            .map(|k| {
                let mut h = ClassHistograms::default();
                for (r, &c) in rows.iter().zip(y) {
                    *(if c { &mut h.positive } else { &mut h.negative }).entry(score_cell(r[k], grid)).or_default() += 1;
                }
                h
            })
            .collect()
    }

    #[test]
    fn partition_paired_auc_equals_pooled_delong() {
        let (rows, y) = cohort();
        let grid = crate::algorithms::metrics::DEFAULT_GRID;
        let h = merged(&rows, &y, grid);
        // On the grid the federated result is the pooled one exactly; the grid itself moves an
        // AUC by at most the pairs it ties (each 1/(n₀n₁)).
        let on_grid: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|&v| f64::from(score_cell(v, grid))).collect()).collect();
        let pooled = pooled_paired_auc(&on_grid, &y);
        let raw = pooled_paired_auc(&rows, &y);
        for k in 0..3 {
            assert!((raw.auc[k] - pooled.auc[k]).abs() < 1e-3, "grid effect on AUC {k}");
        }
        for sizes in [vec![99], vec![30, 24, 25, 20], vec![12, 18, 9, 21, 14, 15, 10]] {
            let mut start = 0;
            let answers: Vec<SiteAggregate> = sizes
                .iter()
                .enumerate()
                .map(|(k, &s)| {
                    let r = start..start + s;
                    start += s;
                    let cells: Vec<Vec<u32>> = rows[r.clone()].iter().map(|row| row.iter().map(|&v| score_cell(v, grid)).collect()).collect();
                    SiteAggregate::new(format!("s{k}"), site_placements(&cells, &y[r], &h, 1).unwrap())
                })
                .collect();
            let fed = combine_placements(&answers, 3).unwrap();
            for k in 0..3 {
                assert!((fed.auc[k] - pooled.auc[k]).abs() < 1e-12, "AUC {k}: {} vs {}", fed.auc[k], pooled.auc[k]);
            }
            for (a, b) in fed.covariance.iter().zip(&pooled.covariance) {
                assert!((a - b).abs() < 1e-12, "covariance {a} vs {b}");
            }
        }
        // The diagonal is each model's own DeLong variance.
        for k in 0..3 {
            let single: Vec<f64> = on_grid.iter().map(|r| r[k]).collect();
            let (_, se) = crate::algorithms::metrics::pooled_auc(&single, &y);
            assert!((pooled.covariance[k * 3 + k] - se * se).abs() < 1e-12);
        }
        // Informative vs noise differs; a model against itself does not.
        let c = pooled.compare(0, 2);
        assert!(c.difference > 0.15 && c.p_value < 0.05, "{c:?}");
        assert_eq!(pooled.compare(1, 1).p_value, 1.0);
        // Correlated models: the paired SE is smaller than the unpaired one.
        let paired = pooled.compare(0, 1).se;
        let unpaired = (pooled.covariance[0] + pooled.covariance[4]).sqrt();
        assert!(paired < unpaired, "{paired} vs {unpaired}");
    }

    /// The replica's merge of the sites' first-round answers (summed in fixed point, as masked
    /// answers are) is the pooled histogram of every model over 1, 4 and 7 uneven sites: the
    /// second round asks exactly it, and a merge one patient off is refused.
    #[test]
    fn the_replica_merges_the_first_round_as_the_pooled_histograms() {
        use crate::algorithms::metrics::{Scored, site_score_summary};
        use crate::clinical::CohortRole;
        let (rows, y) = cohort();
        let grid = crate::algorithms::metrics::DEFAULT_GRID;
        let pooled = merged(&rows, &y, grid);
        for sizes in [vec![99], vec![30, 24, 25, 20], vec![12, 18, 9, 21, 14, 15, 10]] {
            let mut start = 0;
            let answers: Vec<SiteAggregate> = sizes
                .iter()
                .enumerate()
                .map(|(s, &n)| {
                    let r = start..start + n;
                    start += n;
                    let mut b = crate::aggregate::AggregateBuilder::new(n as u64);
                    for k in 0..3 {
                        let scored: Vec<Scored> =
                            rows[r.clone()].iter().zip(&y[r.clone()]).map(|(row, &o)| Scored { role: CohortRole::Validation, outcome: o, log_odds: row[k] }).collect();
                        // Every site also holds training patients (both classes, as the round needs).
                        let training = [(false, -1.0), (true, 1.0)].map(|(o, l)| Scored { role: CohortRole::Training, outcome: o, log_odds: l });
                        b = b.nested(&format!("m{k}."), site_score_summary(&[scored, training.to_vec()].concat(), grid, 1).unwrap());
                    }
                    SiteAggregate::new(format!("s{s}"), b.build())
                })
                .collect();
            let sum = crate::secure_sum::combine(&answers).unwrap();
            let mut replica = ComparisonReplica::new(3, grid);
            assert!(replica.expect(None).is_ok(), "the first round");
            assert!(replica.expect(Some(&pooled)).is_err(), "a second round before the answers");
            replica.absorb(&sum).unwrap();
            assert!(replica.expect(Some(&pooled)).is_ok(), "{sizes:?}");
            let mut off = pooled.clone();
            *off[1].negative.values_mut().next().unwrap() += 1;
            assert!(replica.expect(Some(&off)).is_err(), "{sizes:?}: a made-up patient");
        }
    }

    #[test]
    fn placements_refuse_histograms_that_are_not_the_cohorts() {
        let (rows, y) = cohort();
        let grid = crate::algorithms::metrics::DEFAULT_GRID;
        let cells: Vec<Vec<u32>> = rows.iter().map(|row| row.iter().map(|&v| score_cell(v, grid)).collect()).collect();
        let other = merged(&rows[50..], &y[50..], grid);
        assert!(matches!(site_placements(&cells[..40], &y[..40], &other, 1), Err(SiteRefusal::InvalidParameters(_))));
        let h = merged(&rows, &y, grid);
        assert!(matches!(site_placements(&cells[..8], &y[..8], &h, 5), Err(SiteRefusal::BelowMinCount { .. })));
    }

    /// With small cells merged (`min_count` 5), each site places its patients by their
    /// released cells: the comparison's AUCs are then those of the merged score histograms
    /// (the main table's), over 1, 4 and 7 sites.
    #[test]
    fn released_placements_give_the_main_tables_auc() {
        use crate::algorithms::metrics::{self, Scored};
        use crate::clinical::CohortRole;
        let (rows, y) = cohort();
        let grid = metrics::DEFAULT_GRID;
        for sizes in [vec![99], vec![30, 24, 25, 20], vec![17, 15, 15, 15, 18, 19]] {
            let mut start = 0;
            let mut released_per_site = Vec::new();
            let mut merged_h = vec![ClassHistograms::default(); 3];
            for &s in &sizes {
                let r = start..start + s;
                start += s;
                let mut site_cells = vec![Vec::new(); s];
                for k in 0..3 {
                    let scored: Vec<Scored> =
                        rows[r.clone()].iter().zip(&y[r.clone()]).map(|(row, &o)| Scored { role: CohortRole::Validation, outcome: o, log_odds: row[k] }).collect();
                    for (i, c) in metrics::released_score_cells(&scored, grid, 5).into_iter().enumerate() {
                        site_cells[i].push(c);
                        *(if y[r.start + i] { &mut merged_h[k].positive } else { &mut merged_h[k].negative }).entry(c).or_default() += 1;
                    }
                }
                released_per_site.push((r, site_cells));
            }
            let answers: Vec<SiteAggregate> = released_per_site
                .iter()
                .enumerate()
                .map(|(k, (r, cells))| SiteAggregate::new(format!("s{k}"), site_placements(cells, &y[r.clone()], &merged_h, 5).unwrap()))
                .collect();
            let fed = combine_placements(&answers, 3).unwrap();
            for k in 0..3 {
                let table = metrics::ScoreHistogram { grid, negative: merged_h[k].negative.clone(), positive: merged_h[k].positive.clone(), ..Default::default() };
                assert!((fed.auc[k] - table.auc().0).abs() < 1e-12, "{sizes:?} model {k}: {} vs {}", fed.auc[k], table.auc().0);
                let exact = pooled_paired_auc(&rows, &y).auc[k];
                // Sites of 5–10 positives at min_count 5 hold one group per class: the
                // coarsest case, where merging moves an AUC by up to a few hundredths.
                assert!((fed.auc[k] - exact).abs() < 0.03, "{sizes:?} model {k}: {} vs exact {exact}", fed.auc[k]);
            }
        }
    }
}
