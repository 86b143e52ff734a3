//! Small-cell merging: no histogram a site sends has a cell that describes 1 to `min_count` − 1
//! of its patients (issue 17, property 6).
//!
//! Histograms on a fine shared grid (score cells 0.0001 log-odds wide, Table 1 grids of one
//! year, value grids of 0.05 SD) put most patients alone in their cell: the cell then *is* that
//! patient's value, with the population (cohort, outcome class) the histogram is of.
//!
//! **Method.** Per population and variable, the site sweeps its occupied cells from low to high
//! and closes a *group* as soon as it holds `min_count` patients; a last group short of that
//! joins the one before. A group spans the grid from halfway across the empty gap below its
//! first occupied cell to halfway across the gap above its last one (the outer groups run to the
//! grid's ends), so a boundary marks the midpoint between two groups, not one patient's value.
//! Of each group the site releases only what describes all its n ≥ `min_count` patients
//! together — n, the mean μ and the standard deviation σ (the moments other tasks send over
//! whole cohorts) — rendered on the grid as n *pseudo-patients* at the normal quantiles
//! μ + σ·Φ⁻¹((i − ½)/n), i = 1…n, kept inside the group's span. A group whose patients share
//! one cell is released in that cell (a cell of ≥ `min_count` patients). The histogram sent is
//! the pseudo-patients' histogram.
//!
//! **Why rendered pseudo-patients.** Every site's pseudo-patients sit on the one shared grid, so
//! all sites' histograms still add cell by cell — as plain sums and under secure aggregation —
//! and every coordinator formula (AUC, DeLong, ROC, quantiles, Mann–Whitney) runs unchanged on
//! the merged histogram. And the site can give each patient the pseudo-patient of the same rank
//! in its group ([`released_cells`] keeps the order), which DeLong's paired comparison needs:
//! its second round sums products of each patient's placements under several models.
//!
//! **What it costs.** Exactly nothing with `min_count` = 1 (every occupied cell is a group of
//! its own, released in place). Otherwise ranks *within* a group are the normal rendering's, so
//! statistics that depend on ranks across overlapping groups of different sites or classes
//! become approximations: the AUC, its DeLong SE, ROC points, the Youden threshold, quantiles
//! and Mann–Whitney U. Measured in `metrics`' tests on scores like the study's (|ΔAUC| 0.0012
//! on average and at most 0.0039 at `min_count` 5 over 1, 4 and 7 sites) and on the demo
//! (README, "What leaves the building": 0.0026 on average, 0.0092 at most, with a small upward
//! bias in small validation cohorts, where the rendering slightly separates the classes).
//!
//! **What remains.** A group's μ and σ are moments of ≥ `min_count` patients, but two
//! histograms of one population on different variables, or of nested populations on one
//! variable, are merged independently; populations are policed by the population checks, not
//! here. Group boundaries depend on the data (they say that the patients on either side are
//! `min_count` or more). Tree nodes' per-bin counts are not merged yet.

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
    let cells: Vec<i64> = order.iter().map(|&i| cell_of(values[i])).collect();
    // Runs of one occupied cell, as ranges into `order`.
    let mut runs: Vec<Range<usize>> = Vec::new();
    for k in 0..n {
        match runs.last_mut() {
            Some(r) if cells[r.start] == cells[k] => r.end = k + 1,
            _ => runs.push(k..k + 1),
        }
    }
    let groups = groups_of_runs(&runs, min_count);
    // Boundaries halfway across the gaps between groups.
    let boundary = |below: i64, above: i64| below + 1 + (above - below - 1) / 2;
    for (g, members) in groups.iter().enumerate() {
        let first_cell = cells[members.start];
        let last_cell = cells[members.end - 1];
        if first_cell == last_cell {
            for &i in &order[members.clone()] {
                released[i] = first_cell;
            }
            continue;
        }
        let lo = (g > 0).then(|| boundary(cells[groups[g - 1].end - 1], first_cell));
        let hi = groups.get(g + 1).map(|next| boundary(last_cell, cells[next.start]) - 1);
        let xs: Vec<f64> = order[members.clone()].iter().map(|&i| values[i]).collect();
        let k = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / k;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / k).sqrt();
        for (rank, &i) in order[members.clone()].iter().enumerate() {
            let pseudo = mean + sd * normal_quantile((rank as f64 + 0.5) / k);
            let mut c = cell_of(pseudo);
            if let Some(lo) = lo {
                c = c.max(lo);
            }
            if let Some(hi) = hi {
                c = c.min(hi);
            }
            released[i] = c;
        }
    }
    released
}

/// Consecutive runs (of one occupied cell each) grouped so that each group holds at least
/// `min_count` patients: a group closes once it reaches the minimum, a short last one joins
/// the group before (or is the only group).
fn groups_of_runs(runs: &[Range<usize>], min_count: u64) -> Vec<Range<usize>> {
    let min = min_count.max(1) as usize;
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut open: Option<Range<usize>> = None;
    for r in runs {
        let g = open.get_or_insert(r.start..r.start);
        g.end = r.end;
        if g.len() >= min {
            groups.push(open.take().expect("just filled"));
        }
    }
    if let Some(rest) = open {
        match groups.last_mut() {
            Some(last) => last.end = rest.end,
            None => groups.push(rest),
        }
    }
    groups
}

/// Consecutive bins merged so that every merged bin holds 0 or at least `min_count` patients:
/// sweeping from the first bin, a merged bin closes once it reaches `min_count`; a short last
/// one joins the one before. For coarse, fixed bins (the 10 calibration bins) whose sums are
/// released per bin: each range's sums are sent as one bin.
pub fn merged_bins(counts: &[u64], min_count: u64) -> Vec<Range<usize>> {
    let min = min_count.max(1);
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    let mut held = 0;
    for (k, &c) in counts.iter().enumerate() {
        held += c;
        if held >= min {
            out.push(start..k + 1);
            start = k + 1;
            held = 0;
        }
    }
    if start < counts.len() {
        match out.last_mut() {
            Some(last) if held > 0 => last.end = counts.len(),
            _ => out.push(start..counts.len()),
        }
    }
    out
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
    fn every_group_holds_at_least_the_minimum_and_order_is_kept() {
        for (n, min) in [(5, 5), (12, 5), (57, 5), (100, 3), (31, 10), (4, 5)] {
            let xs = normals(n, n as u64 + min, 0.4);
            let released = released_cells(&xs, fine, min);
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
            assert!(idx.windows(2).all(|w| released[w[0]] <= released[w[1]]), "order");
            // The groups behind it, from runs of equal cells.
            let cells: Vec<i64> = idx.iter().map(|&i| fine(xs[i])).collect();
            let mut runs: Vec<Range<usize>> = Vec::new();
            for k in 0..n {
                match runs.last_mut() {
                    Some(r) if cells[r.start] == cells[k] => r.end = k + 1,
                    _ => runs.push(k..k + 1),
                }
            }
            let groups = groups_of_runs(&runs, min);
            assert_eq!(groups.first().unwrap().start, 0);
            assert_eq!(groups.last().unwrap().end, n);
            assert!(groups.windows(2).all(|w| w[0].end == w[1].start));
            assert!(groups.iter().all(|g| g.len() >= min as usize) || groups.len() == 1, "{groups:?}");
            assert!(groups.iter().all(|g| cells[g.start] != cells[g.start.max(1) - 1] || g.start == 0), "a group starts at a new cell");
        }
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
        let xs = [1.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.1, 5.2, 9.0, 9.5, 9.9, 9.9];
        let r = released_cells(&xs, |x| x.floor() as i64, 3);
        assert_eq!(&r[..5], &[1; 5]);
        // Groups: {1×5}, {5.0, 5.1, 5.2}, {9.0, 9.5, 9.9, 9.9}: the second sits in cell 5, the
        // third in cell 9 (all one cell), and nothing crosses the boundaries 3 and 7.
        assert!(r[5..8].iter().all(|&c| c == 5), "{r:?}");
        assert!(r[8..].iter().all(|&c| c == 9), "{r:?}");
        // Spread groups are clamped to their spans, which end halfway to the next group:
        // {0, 19, 19, 19} renders up to 14.25 + 8.2·1.15 ≈ 23.7, kept at 19 below {20 × 4}.
        let ys = [0.0, 19.0, 19.0, 19.0, 20.0, 20.0, 20.0, 20.0];
        let r = released_cells(&ys, |x| x.floor() as i64, 4);
        assert_eq!(r[..4].iter().max(), Some(&19), "{r:?}");
        assert!(r[0] > 0 && r[4..].iter().all(|&c| c == 20), "{r:?}");
    }

    #[test]
    fn calibration_bins_merge_to_zero_or_the_minimum() {
        let counts = [0, 3, 9, 2, 2, 0, 7, 1, 0, 1];
        let bins = merged_bins(&counts, 5);
        let held: Vec<u64> = bins.iter().map(|r| counts[r.clone()].iter().sum()).collect();
        assert!(held.iter().all(|&h| h == 0 || h >= 5), "{bins:?} {held:?}");
        assert_eq!(bins.first().unwrap().start, 0);
        assert_eq!(bins.last().unwrap().end, counts.len());
        assert!(bins.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(merged_bins(&counts, 1).len(), counts.iter().filter(|&&c| c > 0).count(), "each non-empty bin its own, with the empties before it");
        assert_eq!(merged_bins(&[0, 4, 0, 0], 1), vec![0..2, 2..4], "trailing empties one bin");
    }
}
