//! Small-cell merging: no histogram a site sends has a cell that describes 1 to `min_count` − 1
//! of its patients (issue 17, property 6).
//!
//! Histograms on a fine shared grid (score cells 0.0001 log-odds wide, Table 1 grids of one
//! year, value grids of 0.05 SD) put most patients alone in their cell: the cell then *is* that
//! patient's value, with the population (cohort, outcome class) the histogram is of.
//!
//! **Method.** Per population and variable, the site ranks its patients by value and cuts the
//! ranks into ⌊n / `min_count`⌋ *groups* of at least `min_count` at ranks fixed by n alone, the
//! same read from either end ([`rank_groups`]). A group spans the values from halfway to the
//! mean of the group below to halfway to the mean of the group above (the outer groups are
//! open), so its span, like everything else released of it, depends on groups' moments only
//! (a second review found spans taken from the cells of the patients either side of a cut,
//! clipped at the grid's ends, placing single order statistics).
//! Of each group the site releases only what describes all its n ≥ `min_count` patients
//! together — n, the mean μ and the standard deviation σ (the moments other tasks send over
//! whole cohorts) — rendered on the grid as n *pseudo-patients* at the normal quantiles
//! μ + σ·zᵢ/√s, zᵢ = Φ⁻¹((i − ½)/n), i = 1…n, with s the SD of the zᵢ, kept inside the
//! group's span (a group of equal values stays at their cell). The plain quantiles (σ·zᵢ) understate a group's spread (s < 1), and scaling
//! them to its SD (σ·zᵢ/s) overstates it for the short blocks of ranks groups are; either
//! biases the AUC across overlapping groups (simulated on four sites with 8 positives and 17
//! negatives each at `min_count` 3: +0.0030 and −0.0023), the geometric middle much less
//! (+0.0006; mean |ΔAUC| 0.0037 against 0.0045 and 0.0040). A group whose patients share
//! The histogram sent is the pseudo-patients' histogram.
//!
//! **Why rendered pseudo-patients.** Every site's pseudo-patients sit on the one shared grid, so
//! all sites' histograms still add cell by cell — as plain sums and under secure aggregation —
//! and every coordinator formula (AUC, DeLong, ROC, quantiles, Mann–Whitney) runs unchanged on
//! the merged histogram. And the site can give each patient the pseudo-patient of the same rank
//! in its group ([`released_cells`] keeps the order), which DeLong's paired comparison needs:
//! its second round sums products of each patient's placements under several models.
//!
//! **Why cuts by rank fixed in advance** (found by a red-team review): groups closed by a sweep
//! over occupied cells start wherever the data put them, so a coordinator that moves where the
//! sweep starts — pushing b patients into the grid's end cell with a steep intercept, or
//! reversing the order with a negative coefficient — shifts every later group by b patients,
//! and the difference of two answers' exact group sums is one patient's value. With cuts fixed
//! by n and symmetric, any order-preserving or order-reversing rescoring of one column releases
//! the same groups (their moments transformed alike). A scorer that reorders patients (two
//! columns, or a quadratic) does give other groups; see "What remains".
//!
//! **What it costs.** Exactly nothing with `min_count` = 1 (every patient is a group of its
//! own, released in its cell). Otherwise ranks *within* a group are the normal rendering's, so
//! statistics that depend on ranks across overlapping groups of different sites or classes
//! become approximations: the AUC, its DeLong SE, ROC points, the Youden threshold, quantiles
//! and Mann–Whitney U. Measured in `metrics`' tests on scores like the study's (|ΔAUC| 0.0025
//! on average and at most 0.0074 at `min_count` 5 over 1, 4 and 7 sites) and on the demo
//! (README, "What leaves the building").
//!
//! **What remains.** A group's μ and σ are exact moments of ≥ `min_count` patients. Scorers
//! that order patients differently (several columns, naive Bayes' quadratic terms) give
//! other groups, and enough of them can be differenced back to values; only a site that
//! scores no model it did not fit (property 2: recomputing the coordinator's steps) or that
//! coarsens or noises the moments closes that. Histograms of nested populations on one
//! variable are merged independently; populations are policed by the population checks, not
//! here. Group boundaries depend on the data. Tree nodes' per-bin sums are merged by their own
//! rule (runs of bins of 0 or at least `min_count` patients, nested along a node's path,
//! `trees::nested_runs`).

use std::ops::Range;

use crate::stats::normal_quantile;

/// The released cell of each value: its pseudo-patient's cell (see the module doc). `cell_of`
/// maps a value to its grid cell and must be non-decreasing; values must not be NaN. With
/// fewer than `min_count` values in all they form one group (callers refuse such populations
/// before they get here).
///
/// The result keeps the values' order: a value below another is never released above it.
pub fn released_cells(values: &[f64], cell_of: impl Fn(f64) -> i64, min_count: u64) -> Vec<i64> {
    let n = values.len();
    let mut released = vec![0i64; n];
    if n == 0 {
        return released;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    let groups = rank_groups(n, min_count);
    let moments: Vec<(f64, f64)> = groups
        .iter()
        .map(|g| {
            let k = g.len() as f64;
            let mean = order[g.clone()].iter().map(|&i| values[i]).sum::<f64>() / k;
            let sd = (order[g.clone()].iter().map(|&i| (values[i] - mean).powi(2)).sum::<f64>() / k).sqrt();
            (mean, sd)
        })
        .collect();
    for (g, members) in groups.iter().enumerate() {
        let (mean, sd) = moments[g];
        // The span: halfway to the neighbouring groups' means, in values (the grid clips only
        // when the pseudo-patients are drawn), so it depends on released moments alone.
        let lo = (g > 0).then(|| 0.5 * (moments[g - 1].0 + mean));
        let hi = moments.get(g + 1).map(|next| 0.5 * (mean + next.0));
        let k = members.len() as f64;
        let z: Vec<f64> = (0..members.len()).map(|rank| normal_quantile((rank as f64 + 0.5) / k)).collect();
        let z_sd = (z.iter().map(|v| v * v).sum::<f64>() / k).sqrt();
        let stretch = if z_sd > 0.0 { 1.0 / z_sd.sqrt() } else { 0.0 };
        for (rank, &i) in order[members.clone()].iter().enumerate() {
            let mut pseudo = mean + sd * stretch * z[rank];
            if let Some(lo) = lo {
                pseudo = pseudo.max(lo);
            }
            if let Some(hi) = hi {
                pseudo = pseudo.min(hi);
            }
            released[i] = cell_of(pseudo);
        }
    }
    released
}

/// The groups, as ranges of ranks: ⌊n / `min_count`⌋ groups (one fewer when that is even and n
/// odd), cut at ranks b_k = ⌊k·n/g + ½⌋ for the lower half and n − b_(g−k) for the upper, so
/// every group holds at least `min_count` ranks and the cut is the same read from either end.
/// It depends on n alone: whatever order a scorer puts the patients in, the groups are blocks
/// of ranks fixed in advance, so pushing some patients to an end of the grid (a steep
/// intercept) or reversing the order (a negative coefficient) cannot shift a block by one
/// patient and let two answers differ by that patient.
fn rank_groups(n: usize, min_count: u64) -> Vec<Range<usize>> {
    let min = (min_count.max(1) as usize).min(n.max(1));
    let mut g = (n / min).max(1);
    if g.is_multiple_of(2) && !n.is_multiple_of(2) {
        g -= 1;
    }
    let lower = |k: usize| ((k * n) as f64 / g as f64 + 0.5).floor() as usize;
    let cut = |k: usize| if 2 * k <= g { lower(k) } else { n - lower(g - k) };
    (0..g).map(|k| cut(k)..cut(k + 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normals(n: usize, seed: u64, shift: f64) -> Vec<f64> {
        let mut u = crate::algorithms::testdata::uniform_stream(seed | 1);
        (0..n).map(|_| shift + (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()).collect()
    }

    fn fine(x: f64) -> i64 {
        (x * 10_000.0).floor() as i64
    }

    #[test]
    fn with_a_minimum_of_one_every_value_keeps_its_cell() {
        let xs = normals(200, 3, 0.0);
        let cells: Vec<i64> = xs.iter().map(|&x| (x * 3.0).floor() as i64).collect();
        assert_eq!(released_cells(&xs, |x| (x * 3.0).floor() as i64, 1), cells);
    }

    #[test]
    fn groups_hold_the_minimum_and_read_the_same_from_either_end() {
        for n in 1..200 {
            for min in [1, 3, 5, 10] {
                let groups = rank_groups(n, min);
                assert_eq!((groups.first().unwrap().start, groups.last().unwrap().end), (0, n));
                assert!(groups.windows(2).all(|w| w[0].end == w[1].start));
                let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
                assert!(n < min as usize || sizes.iter().all(|&s| s >= min as usize), "n {n}, min {min}: {sizes:?}");
                let mut reversed = sizes.clone();
                reversed.reverse();
                assert_eq!(sizes, reversed, "n {n}, min {min}: the cut must not depend on the direction");
            }
        }
    }

    /// The groups are sets of patients fixed by rank: a monotone rescoring, a reversed order or
    /// values pushed to the grid's ends (clamped cells) release the same groups' moments, so two
    /// such answers cannot differ by one patient.
    #[test]
    fn order_preserving_or_reversing_rescorings_keep_the_groups() {
        let xs = normals(57, 9, 0.0);
        let n = xs.len();
        let group_of = |values: &[f64]| -> Vec<usize> {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
            let mut g = vec![0; n];
            for (k, r) in rank_groups(n, 5).into_iter().enumerate() {
                for &i in &order[r] {
                    g[i] = k;
                }
            }
            g
        };
        let base = group_of(&xs);
        let k = *base.iter().max().unwrap();
        let steep: Vec<f64> = xs.iter().map(|x| 50.0 * x + 40.0).collect();
        assert_eq!(group_of(&steep), base);
        let flipped: Vec<f64> = xs.iter().map(|x| -x).collect();
        assert_eq!(group_of(&flipped).iter().map(|g| k - g).collect::<Vec<_>>(), base);
        // Released cells: order kept, and a monotone rescoring moves every group as one.
        let released = released_cells(&xs, fine, 5);
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
        assert!(idx.windows(2).all(|w| released[w[0]] <= released[w[1]]), "order");
    }

    #[test]
    fn one_patient_moved_within_its_group_changes_nothing_but_the_moments_say() {
        // Seven patients, min 5: one group of all; moving one value so that the mean and SD
        // stay put (swap two values' positions symmetrically) releases the same cells.
        let xs = [0.10, 0.20, 0.35, 0.50, 0.65, 0.80, 0.90];
        let mirrored: Vec<f64> = xs.iter().map(|x| 1.0 - x).collect();
        let mut a = released_cells(&xs, fine, 5);
        let mut b = released_cells(&mirrored, fine, 5);
        a.sort();
        b.sort();
        // Same multiset of released cells up to the mirror's rounding of the mean (1 cell).
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1), "{a:?} {b:?}");
    }

    #[test]
    fn a_group_in_one_cell_is_released_there_and_groups_stay_in_their_spans() {
        // Twelve patients, min 3: four groups of three ranks, narrow enough that their
        // pseudo-patients stay in the cells the patients are in.
        let xs = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 5.0, 5.1, 5.2, 5.3, 5.4, 5.5];
        let r = released_cells(&xs, |x| x.floor() as i64, 3);
        assert_eq!(r, vec![1, 1, 1, 1, 1, 1, 5, 5, 5, 5, 5, 5]);
        // Spread groups are clamped to their spans, which end halfway to the next group's mean:
        // {0, 19, 19, 19} (mean 14.25) renders up to 14.25 + 8.2·1.15·1.09 ≈ 24.5, kept at
        // 17.125, halfway to {20 × 4}, which stays at its cell.
        let ys = [0.0, 19.0, 19.0, 19.0, 20.0, 20.0, 20.0, 20.0];
        let r = released_cells(&ys, |x| x.floor() as i64, 4);
        assert_eq!(r[..4].iter().max(), Some(&17), "{r:?}");
        assert!(r[0] > 0 && r[4..].iter().all(|&c| c == 20), "{r:?}");
    }
}
