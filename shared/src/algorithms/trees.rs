//! Tree ensembles grown from per-node histograms: the random forest and gradient-boosted
//! trees (XGBoost's second-order histogram method).
//!
//! Both work on the standardised model design, discretised by **shared bin edges**: up to
//! B − 1 cut points per column at the pooled training quantiles. The coordinator finds them
//! from one round of per-column counts on a fine grid of standardised values
//! ([`site_value_histogram`], cells of 1/`cells_per_sd` SD over ±`limit_sd`; integer counts, so
//! the edges are exactly the pooled ones), and every site then bins identically.
//!
//! The coordinator grows the trees **level by level**. Each round it sends the trees grown so
//! far and the nodes to expand, with the columns to consider at each; every site routes its
//! training patients down the trees and answers, per requested node, column and bin, three
//! sums ([`site_tree_round`]):
//!
//! * random forest: patients in the bag, Σ w·(1 − y) and Σ w·y, where w ~ Poisson(1) is the
//!   patient's bootstrap weight in that tree, drawn from SHA-256(seed, tree, patient id) — a
//!   patient's weight does not depend on its hospital, so neither does the forest;
//! * boosting: patients, Σ g and Σ h of the logistic loss at the current margin
//!   (g = p − y, h = p(1 − p)).
//!
//! The coordinator sums the histograms ([`combine_tree_round`]) and splits each node where the
//! cumulative sums give the largest Gini decrease (forest) or XGBoost gain
//! ½[G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)] (boosting), with at least `min_leaf` patients on
//! each side. Both children of every split are asked in the next round, those that cannot
//! grow further (pure, too small, or at the last level) for their totals alone, and a node's
//! value comes from its own sums (weighted fraction of positives; −η·G/(H+λ)): exact leaf
//! values where sites merged bins, and a check of every pair for withholding (below). The
//! last level costs one more round: one for all of a forest's trees, one per boosted tree
//! (valuing boosting's deepest level from its split's spread sums instead doubled its cost in
//! validation AUC on the demo, as the errors add up over the trees; see the README). Forest
//! sums are integers and hence exact in any order; gains are compared to 1e-9 of the node's best, then by column and bin,
//! so the choice of a split does not depend on the summation order either.
//!
//! **Recomputation.** Growth is a request/absorb state machine ([`EnsembleGrower`]): every
//! split is a function of the settings, the bin edges and the summed histograms. Each round
//! the coordinator forwards every site's signed answer to the round before (the value counts,
//! for an ensemble's first round), and each site grows the same trees ([`TreeReplica`]) and
//! answers only the round they ask next (see [`site_accepts_value_grid`]). The score task
//! forwards the answers to the last round too, and a site scores an ensemble only if it is
//! the one its replica grew ([`TreeReplica::expect_grown`]), to the last leaf value.
//!
//! **Disclosure.** `min_leaf` is never below the largest `min_count` of the sites. A site
//! that holds between 1 and `min_count − 1` of a requested node's patients *withholds* that
//! node: it answers exactly what it answers for a node it holds none of (zero patients, zero
//! bins, flag clear), so the answer is no membership test for a box the coordinator drew. The
//! coordinator sees the withholding as a shortfall — the pair's summed patients below their
//! parent's — and grows the pair on the sums of the sites that answered (the withholding site
//! answers every node below them as empty too, by the sibling rule). (A tree's root, which the
//! coordinator does not draw, still carries the flag, so that a site too small for a tree's
//! sample stops the study instead of silently dropping out of it.) Withholding makes
//! the trees depend on how the patients are spread, so results count withheld nodes; with
//! none withheld, the ensemble is the pooled one (tests: 1, 4 and 7 uneven sites, and a row-
//! wise pooled grower, [`pooled_forest`], [`pooled_boosting`]). The bin sums are histogram
//! cells, and a site releases them as runs of bins holding 0 or at least `min_count` of a
//! node's patients, nested along the node's path so that no difference with an ancestor
//! isolates fewer ([`nested_runs`]): with `min_count` above 1 the splits are chosen on those
//! runs, not on the pooled rows.
//!
//! Merged bins make a split's sums approximate where a threshold falls inside a run, and a
//! child's exact totals minus its parent's runs wholly on its side would be its part of that
//! run: a site also withholds a pair whose split leaves 1 to `min_count` − 1 of its patients
//! on either side of one of an ancestor's released runs ([`split_cuts_a_run_small`]). A child's
//! own count is therefore not known from its parent's split; a withheld pair is seen instead
//! because both children are always asked: their summed patients fall short of their
//! parent's, which its own answer gave exactly.

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};

use super::glm::sigmoid;
use super::small_cells::released_cells;
use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::Aggregate;

/// Most histogram values one tree round may ask a site for (bounds the answer's size).
pub const MAX_HISTOGRAM_VALUES: usize = 8_000_000;
/// Most nodes a tree may have on the wire.
pub const MAX_TREE_NODES: usize = 1 << 16;

// ---- trees ---------------------------------------------------------------------------------

/// A node: a split `z[column] < threshold` → `children[0]`, else `children[1]`, or a leaf
/// (`column == None`). `value` is the leaf value, and for inner nodes the value the node had
/// as a leaf (the fraction of positives, or the boosting weight).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TreeNode {
    pub column: Option<u32>,
    pub threshold: f64,
    pub children: [u32; 2],
    pub value: f64,
}

/// A binary tree, nodes in the order they were created (root first); children always come
/// after their parent, which keeps routing free of cycles.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    pub nodes: Vec<TreeNode>,
}

impl Tree {
    fn leaf(value: f64) -> Self {
        Tree { nodes: vec![TreeNode { column: None, threshold: 0.0, children: [0, 0], value }] }
    }

    /// The leaf a standardised design row reaches.
    pub fn leaf_of(&self, z: &[f64]) -> usize {
        let mut k = 0;
        while let Some(c) = self.nodes[k].column {
            k = self.nodes[k].children[usize::from(z[c as usize] >= self.nodes[k].threshold)] as usize;
        }
        k
    }

    pub fn predict(&self, z: &[f64]) -> f64 {
        self.nodes[self.leaf_of(z)].value
    }

    /// Whether a standardised design row passes through `node` on its way to a leaf.
    pub fn reaches(&self, z: &[f64], node: usize) -> bool {
        let mut k = 0;
        loop {
            if k == node {
                return true;
            }
            match self.nodes[k].column {
                Some(c) => k = self.nodes[k].children[usize::from(z[c as usize] >= self.nodes[k].threshold)] as usize,
                None => return false,
            }
        }
    }

    /// The nodes from the root down to `node`, each with its sibling (none for the root).
    /// Answers for an ancestor and for the path's nodes below it differ by exactly the
    /// siblings' subtrees.
    pub fn path_from_root(&self, node: usize) -> Vec<(usize, Option<usize>)> {
        let mut out = Vec::new();
        let mut k = node as u32;
        while let Some(p) = self.nodes.iter().position(|p| p.column.is_some() && p.children.contains(&k)) {
            let c = self.nodes[p].children;
            out.push((k as usize, Some(if c[0] == k { c[1] } else { c[0] } as usize)));
            k = p as u32;
        }
        out.push((k as usize, None));
        out.reverse();
        out
    }

    pub fn leaves(&self) -> usize {
        self.nodes.iter().filter(|n| n.column.is_none()).count()
    }

    /// The number of splits on the longest path from the root to a leaf.
    pub fn depth(&self) -> u32 {
        let mut depth = vec![0u32; self.nodes.len()];
        for (k, n) in self.nodes.iter().enumerate() {
            if n.column.is_some() {
                for &c in &n.children {
                    depth[c as usize] = depth[c as usize].max(depth[k] + 1);
                }
            }
        }
        depth.into_iter().max().unwrap_or(0)
    }

    /// Wire form: node count, then per node (column or −1, threshold, left, right, value).
    pub fn write_flat(&self, out: &mut Vec<f64>) {
        out.push(self.nodes.len() as f64);
        for n in &self.nodes {
            out.extend([n.column.map_or(-1.0, f64::from), n.threshold, f64::from(n.children[0]), f64::from(n.children[1]), n.value]);
        }
    }

    /// Reads one tree at `*pos`, checking that it routes every row of `width` columns to a leaf.
    pub fn read_flat(p: &[f64], pos: &mut usize, width: usize) -> Result<Tree, SiteRefusal> {
        let bad = |why: &str| SiteRefusal::InvalidParameters(format!("malformed tree: {why}"));
        let integer = |v: f64, below: usize| (v.fract() == 0.0 && v >= 0.0 && v < below as f64).then_some(v as usize);
        let n = p.get(*pos).copied().and_then(|v| integer(v, MAX_TREE_NODES + 1)).filter(|&n| n > 0).ok_or_else(|| bad("node count"))?;
        *pos += 1;
        let body = p.get(*pos..*pos + 5 * n).ok_or_else(|| bad("truncated"))?;
        *pos += 5 * n;
        let mut nodes = Vec::with_capacity(n);
        for (k, f) in body.chunks_exact(5).enumerate() {
            if !f.iter().all(|v| v.is_finite()) {
                return Err(bad("non-finite value"));
            }
            let column = if f[0] == -1.0 { None } else { Some(integer(f[0], width).ok_or_else(|| bad("column outside the design"))? as u32) };
            let mut children = [0u32; 2];
            if column.is_some() {
                for (c, v) in children.iter_mut().zip(&f[2..4]) {
                    *c = integer(*v, n).filter(|&c| c > k).ok_or_else(|| bad("a child must come after its parent"))? as u32;
                }
            }
            nodes.push(TreeNode { column, threshold: f[1], children, value: f[4] });
        }
        // A tree, not a graph: every node but the root is the child of exactly one parent (a
        // node listed under two parents would let "parent minus child" name a population the
        // site never answered as a parent).
        let mut parents = vec![0u32; n];
        for node in nodes.iter().filter(|t| t.column.is_some()) {
            if node.children[0] == node.children[1] {
                return Err(bad("a node's two children must differ"));
            }
            node.children.iter().for_each(|&c| parents[c as usize] += 1);
        }
        if parents.iter().skip(1).any(|&k| k != 1) {
            return Err(bad("every node but the root must have exactly one parent"));
        }
        Ok(Tree { nodes })
    }
}

/// Writes several trees: their count, then each tree.
pub fn write_trees(trees: &[Tree]) -> Vec<f64> {
    let mut out = vec![trees.len() as f64];
    for t in trees {
        t.write_flat(&mut out);
    }
    out
}

pub fn read_trees(p: &[f64], pos: &mut usize, width: usize) -> Result<Vec<Tree>, SiteRefusal> {
    let n = p.get(*pos).copied().filter(|v| v.fract() == 0.0 && *v >= 0.0 && *v <= 100_000.0);
    let n = n.ok_or_else(|| SiteRefusal::InvalidParameters("malformed tree list".into()))? as usize;
    *pos += 1;
    (0..n).map(|_| Tree::read_flat(p, pos, width)).collect()
}

/// Forest probability: the mean of the trees' leaf fractions.
pub fn forest_probability(trees: &[Tree], z: &[f64]) -> f64 {
    trees.iter().map(|t| t.predict(z)).sum::<f64>() / trees.len().max(1) as f64
}

/// Boosted margin (log-odds): the base margin plus every tree's leaf weight.
pub fn boosted_margin(base_margin: f64, trees: &[Tree], z: &[f64]) -> f64 {
    base_margin + trees.iter().map(|t| t.predict(z)).sum::<f64>()
}

// ---- settings ------------------------------------------------------------------------------

/// Random forest hyperparameters. Defaults follow scikit-learn's `RandomForestClassifier`
/// (100 trees, √p candidate columns per node, Gini, bootstrap) with a depth limit and a leaf
/// size suited to a few hundred patients.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForestSettings {
    pub trees: u32,
    pub max_depth: u32,
    /// Smallest number of (in-bag) patients in a leaf; raised to the sites' `min_count`.
    pub min_leaf: u64,
    /// Candidate columns per node; 0 = ⌈√p⌉.
    pub max_features: u32,
    pub bins: u32,
    pub seed: u64,
}

impl Default for ForestSettings {
    fn default() -> Self {
        ForestSettings { trees: 100, max_depth: 6, min_leaf: 5, max_features: 0, bins: 32, seed: 20_261_130 }
    }
}

/// Gradient-boosting hyperparameters (XGBoost's names; shallower and slower-learning than its
/// defaults, for a few hundred patients).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoostingSettings {
    pub rounds: u32,
    pub max_depth: u32,
    pub learning_rate: f64,
    /// L2 penalty on leaf weights (λ).
    pub lambda: f64,
    /// Smallest Σh in a child.
    pub min_child_weight: f64,
    /// Smallest number of patients in a leaf; raised to the sites' `min_count`.
    pub min_leaf: u64,
    pub bins: u32,
}

impl Default for BoostingSettings {
    fn default() -> Self {
        BoostingSettings { rounds: 100, max_depth: 3, learning_rate: 0.1, lambda: 1.0, min_child_weight: 1.0, min_leaf: 5, bins: 32 }
    }
}

impl ForestSettings {
    pub fn validate(&self) -> Result<(), String> {
        check(self.trees >= 1 && self.trees <= 2000, "forest.trees must be 1 to 2000")?;
        check(self.max_depth >= 1 && self.max_depth <= 16, "forest.max_depth must be 1 to 16")?;
        check(self.min_leaf >= 1, "forest.min_leaf must be at least 1")?;
        check(self.bins >= 2 && self.bins <= 256, "forest.bins must be 2 to 256")
    }

    fn candidates(&self, width: usize) -> usize {
        if self.max_features == 0 { ((width as f64).sqrt().ceil() as usize).clamp(1, width) } else { (self.max_features as usize).min(width) }
    }
}

impl BoostingSettings {
    pub fn validate(&self) -> Result<(), String> {
        check(self.rounds >= 1 && self.rounds <= 2000, "boosting.rounds must be 1 to 2000")?;
        check(self.max_depth >= 1 && self.max_depth <= 10, "boosting.max_depth must be 1 to 10")?;
        check(self.learning_rate > 0.0 && self.learning_rate <= 1.0, "boosting.learning_rate must be in (0, 1]")?;
        check(self.lambda >= 0.0 && self.lambda.is_finite(), "boosting.lambda must be ≥ 0")?;
        check(self.min_child_weight >= 0.0 && self.min_child_weight.is_finite(), "boosting.min_child_weight must be ≥ 0")?;
        check(self.min_leaf >= 1, "boosting.min_leaf must be at least 1")?;
        check(self.bins >= 2 && self.bins <= 256, "boosting.bins must be 2 to 256")
    }
}

fn check(ok: bool, msg: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(msg.to_string()) }
}

// ---- shared bin edges ----------------------------------------------------------------------

/// The grid on which sites count standardised values to place the bin edges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueGrid {
    pub cells_per_sd: u32,
    pub limit_sd: f64,
}

impl ValueGrid {
    pub const DEFAULT: ValueGrid = ValueGrid { cells_per_sd: 20, limit_sd: 6.0 };

    pub fn cells(&self) -> usize {
        (2.0 * self.limit_sd * f64::from(self.cells_per_sd)).round() as usize
    }

    fn cell(&self, v: f64) -> usize {
        let c = ((v + self.limit_sd) * f64::from(self.cells_per_sd)).floor();
        (c.max(0.0) as usize).min(self.cells() - 1)
    }

    pub fn upper(&self, cell: usize) -> f64 {
        -self.limit_sd + (cell + 1) as f64 / f64::from(self.cells_per_sd)
    }

    pub fn check(&self) -> Result<(), SiteRefusal> {
        if self.cells_per_sd == 0 || self.cells_per_sd > 1000 || !(self.limit_sd > 0.0 && self.limit_sd <= 100.0) || self.cells() > 200_000 {
            return Err(SiteRefusal::InvalidParameters("value grid outside 1–1000 cells per SD and ±100 SD".into()));
        }
        Ok(())
    }
}

/// Site half: per design column, the number of training patients in each grid cell
/// ("counts", width × cells; values beyond the grid count in its end cells).
pub fn site_value_histogram(z: &[Vec<f64>], width: usize, grid: ValueGrid, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    grid.check()?;
    require_min_count("the training cohort of the model", z.len() as u64, min_count)?;
    let cells = grid.cells();
    let mut counts = vec![0.0; width * cells];
    for j in 0..width {
        let column: Vec<f64> = z.iter().map(|row| row[j]).collect();
        if column.iter().any(|v| v.is_nan()) {
            return Err(SiteRefusal::Precondition("a standardised value is not a number".into()));
        }
        // Small cells merged per column (`small_cells`): no cell describes 1 to min − 1 patients.
        for c in released_cells(&column, |v| grid.cell(v) as i64, min_count) {
            counts[j * cells + c as usize] += 1.0;
        }
    }
    Ok(AggregateBuilder::new(z.len() as u64).matrix("counts", width, cells, counts).build())
}

/// Coordinator half: sums the counts and puts up to `bins − 1` edges per column at the
/// quantiles k/bins (the upper boundary of the cell where the cumulative count reaches k·n/bins).
pub fn combine_bin_edges(answers: &[SiteAggregate], width: usize, grid: ValueGrid, bins: u32) -> Result<Vec<Vec<f64>>, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let cells = grid.cells();
    let mut total = vec![0u64; width * cells];
    for a in answers {
        for (t, c) in total.iter_mut().zip(a.counts("counts", width * cells)?) {
            *t += c;
        }
    }
    Ok((0..width).map(|j| quantile_edges(&total[j * cells..(j + 1) * cells], grid, bins)).collect())
}

fn quantile_edges(counts: &[u64], grid: ValueGrid, bins: u32) -> Vec<f64> {
    let n: u64 = counts.iter().sum();
    let mut edges: Vec<f64> = Vec::new();
    let mut cumulative = 0u64;
    let mut k = 1u64;
    for (c, &count) in counts.iter().enumerate() {
        cumulative += count;
        // Reached the k-th quantile (integer arithmetic: cumulative·bins ≥ k·n).
        while k < u64::from(bins) && cumulative * u64::from(bins) >= k * n {
            let e = grid.upper(c);
            if c + 1 < counts.len() && edges.last() != Some(&e) && cumulative < n {
                edges.push(e);
            }
            k += 1;
        }
    }
    edges
}

fn bin_of(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|&e| e <= v)
}

/// No bin of a node's column describes 1 to `min_count` − 1 of the site's patients (issue 17,
/// property 6): a bin of one patient would give that patient's outcome (or gradient) with the
/// range its value lies in. So the site releases a node's column as *runs* of consecutive bins
/// ([`nested_runs`]) and of each run only its moments: its patients and two sums spread evenly
/// over the bins within one SD of its patients' mean bin ([`render_in_runs`]).
///
/// The runs must hold for differences too (found by a red-team review): a node and its
/// parent are both answered at the same columns, so their difference is the sibling's
/// histogram, and a bin that is a run of its own in both would give the sibling's patients
/// there exactly — one of them if one. The runs are therefore nested along the node's path:
/// the root's are the bins swept into stretches of at least `min_count` patients; each level
/// down joins its parent's runs until both the child on the path and its sibling hold 0 or at
/// least `min_count` patients in each (a last stretch that cannot joins the one before it;
/// with every run joined the constraints hold, or the node would have been withheld for a
/// small sibling). Every run of a node is then a union of its ancestors' runs, the rendering
/// never crosses a run's ends, and so any ancestor's total over one of the node's runs minus
/// the node's is the patients of the path's siblings there: 0 or at least `min_count` of them.
///
/// Every site bins on the study's edges, so the answers still add bin by bin; a node's totals
/// are unchanged, and what is approximate is how a run's patients fall on either side of a
/// split inside it (measured on the demo in the README). A run's ends are where the sweep met
/// `min_count` patients, so they follow the data; where the sweep starts is not the
/// coordinator's to move (a round's nodes, columns and edges are those the site's own replica
/// asks, `TreeReplica`). Nothing moves with `min_count` 1.
///
/// `levels` holds, root first, the bin counts of each node on the path and of its sibling
/// (none for the root); returns the runs of the last, as inclusive bin ranges.
fn nested_runs(levels: &[(Vec<f64>, Option<Vec<f64>>)], min_count: u64) -> Vec<(usize, usize)> {
    let min = min_count as f64;
    let small = |k: f64| k > 0.0 && k < min;
    let bins = levels.first().map_or(0, |l| l.0.len());
    let mut runs: Vec<(usize, usize)> = (0..bins).map(|b| (b, b)).collect();
    for (node, sibling) in levels {
        let count = |v: &[f64], (from, to): (usize, usize)| v[from..=to].iter().sum::<f64>();
        let closes = |r: (usize, usize)| {
            let (k, other) = (count(node, r), sibling.as_ref().map_or(0.0, |v| count(v, r)));
            !small(k) && !small(other) && k + other > 0.0
        };
        let mut joined: Vec<(usize, usize)> = Vec::new();
        let mut open: Option<(usize, usize)> = None;
        for r in runs {
            let now = open.map_or(r, |(from, _)| (from, r.1));
            if closes(now) {
                joined.push(now);
                open = None;
            } else {
                open = Some(now);
            }
        }
        if let Some((_, to)) = open {
            match joined.last_mut() {
                Some(last) => last.1 = to,
                None => joined.push((0, to)),
            }
        }
        while joined.len() > 1 && !closes(*joined.last().expect("non-empty")) {
            let (_, to) = joined.pop().expect("non-empty");
            joined.last_mut().expect("non-empty").1 = to;
        }
        runs = joined;
    }
    runs
}

/// Patients of `set` per bin of column `c` (edges `e`).
fn bin_counts(set: &[usize], z: &[Vec<f64>], e: &[f64], c: usize) -> Vec<f64> {
    let mut v = vec![0.0; e.len() + 1];
    set.iter().for_each(|&i| v[bin_of(e, z[i][c])] += 1.0);
    v
}

/// [`bin_counts`] of every node on a path and of its sibling: the levels [`nested_runs`] cuts.
fn path_bin_counts(sets: &[(Vec<usize>, Option<Vec<usize>>)], z: &[Vec<f64>], e: &[f64], c: usize) -> Vec<(Vec<f64>, Option<Vec<f64>>)> {
    sets.iter().map(|(node, sibling)| (bin_counts(node, z, e, c), sibling.as_deref().map(|s| bin_counts(s, z, e, c)))).collect()
}

/// Per node of `trees` that this site answered (not withheld for holding, or for a sibling
/// along its path holding, 1 to `min_count` − 1 of its patients; roots left out, as a root's
/// difference with any answered node is that node's siblings along its path), which of the
/// rows `z` pass through it, and how many. (Nodes withheld for a split cutting a run are kept:
/// comparing with them withholds more, never less.)
fn answered_node_members(trees: &[Tree], z: &[Vec<f64>], min_count: u64) -> Vec<(Vec<bool>, u64)> {
    let small = |k: u64| k > 0 && k < min_count;
    let mut out = Vec::new();
    for tree in trees {
        let mut members = vec![(vec![false; z.len()], 0u64); tree.nodes.len()];
        for (i, row) in z.iter().enumerate() {
            let mut k = 0;
            loop {
                members[k].0[i] = true;
                members[k].1 += 1;
                match tree.nodes[k].column {
                    Some(c) => k = tree.nodes[k].children[usize::from(row[c as usize] >= tree.nodes[k].threshold)] as usize,
                    None => break,
                }
            }
        }
        for node in 1..tree.nodes.len() {
            let path = tree.path_from_root(node);
            if !small(members[node].1) && !path.iter().any(|&(_, sibling)| sibling.is_some_and(|k| small(members[k].1))) {
                out.push(members[node].clone());
            }
        }
    }
    out
}

/// Whether the split that made a node cuts one of an ancestor's released runs into a part of
/// 1 to `min_count` − 1 patients (issue 17, property 6; found in review, 2026-12-07). An
/// ancestor answered at its split column with runs of exact totals; its child is the ancestor's
/// patients on one side of the threshold, and the child's exact total minus the ancestor's runs
/// wholly on that side is the child's part of the run the threshold falls in — its patients and
/// their outcome sums (a forest's weights give each patient's outcome). The split rule puts
/// thresholds inside runs as a matter of course (it sees the runs' spread sums), so the honest
/// growth alone would read such parts. Two checks, on both children of the split:
///
/// * against every ancestor down from which the path splits on that one column only (each
///   child is then an interval of the ancestor's patients on it): the children's parts of the
///   ancestor's runs;
/// * against the parent's run the threshold cuts: an ancestor higher up, answered at the same column with finer runs that meet at the
///   threshold, gives its patients on either side of it there, and minus the child's part
///   that is the part of the siblings along the path in between (a second review's attack: the
///   root's other child held one patient there, whose gradient it read). Every run of siblings
///   along the path, on each side of the threshold, must hold 0 or at least `min_count`.
///
/// Where either fails the site withholds the pair, which the grower sees as their shortfall.
/// `path` and `sets`: the node's path from the root with its siblings, and their patients here
/// (as in [`site_tree_round`]).
fn split_cuts_a_run_small(
    tree: &Tree,
    path: &[(usize, Option<usize>)],
    sets: &[(Vec<usize>, Option<Vec<usize>>)],
    z: &[Vec<f64>],
    edges: &[Vec<f64>],
    min_count: u64,
) -> bool {
    let Some(depth) = path.len().checked_sub(1).filter(|&d| d > 0) else { return false };
    let parent = &tree.nodes[path[depth - 1].0];
    let Some(column) = parent.column else { return false };
    let (c, threshold) = (column as usize, parent.threshold);
    let e = &edges[c];
    let levels = path_bin_counts(sets, z, e, c);
    let (child, Some(sibling)) = &levels[depth] else { return false };
    let small = |k: f64| k > 0.0 && k < min_count as f64;
    let sum = |v: &[f64], (from, to): (usize, usize)| v[from..=to].iter().sum::<f64>();
    for j in (0..depth).rev().take_while(|&j| tree.nodes[path[j].0].column == Some(column)) {
        for run in nested_runs(&levels[..=j], min_count) {
            let total = sum(&levels[j].0, run);
            for part in [child, sibling] {
                let k = sum(part, run);
                if k > 0.0 && k < total && (small(k) || small(total - k)) {
                    return true;
                }
            }
        }
    }
    // The siblings along the path above the parent, each split at the threshold: per bin, the
    // patients below it and at or above it.
    let halves: Vec<(Vec<f64>, Vec<f64>)> = sets[1..depth]
        .iter()
        .filter_map(|(_, sibling)| sibling.as_deref())
        .map(|set| {
            let (below, above): (Vec<usize>, Vec<usize>) = set.iter().partition(|&&i| z[i][c] < threshold);
            (bin_counts(&below, z, e, c), bin_counts(&above, z, e, c))
        })
        .collect();
    // Every run, even one whose parent's patients all lie on one side of the threshold (the
    // child's total still gives its part of the run, and the siblings' part follows: a third
    // review's case); a run wholly on one side passes, its siblings' parts being unions of
    // the ancestors' runs.
    for run in nested_runs(&levels[..depth], min_count) {
        for first in 0..halves.len() {
            let (mut below, mut above) = (0.0, 0.0);
            for h in &halves[first..] {
                below += sum(&h.0, run);
                above += sum(&h.1, run);
                if small(below) || small(above) {
                    return true;
                }
            }
        }
    }
    false
}

/// The released histogram: per run, its patients and sums (`h` holds (patients, sum 1, sum 2)
/// per bin) spread evenly over the bins within one SD of its patients' mean bin, inside the run.
fn render_in_runs(h: &[f64], runs: &[(usize, usize)]) -> Vec<f64> {
    let mut out = vec![0.0; h.len()];
    for &(from, to) in runs {
        let (mut sums, mut first, mut second) = ([0.0; 3], 0.0, 0.0);
        for b in from..=to {
            sums = add(sums, [h[3 * b], h[3 * b + 1], h[3 * b + 2]]);
            first += h[3 * b] * b as f64;
            second += h[3 * b] * (b * b) as f64;
        }
        if sums[0] <= 0.0 {
            continue;
        }
        let mean = first / sums[0];
        let sd = (second / sums[0] - mean * mean).max(0.0).sqrt();
        let lo = ((mean - sd).round() as usize).clamp(from, to);
        let hi = ((mean + sd).round() as usize).clamp(lo, to);
        let width = (hi - lo + 1) as f64;
        for b in lo..=hi {
            for j in 0..3 {
                out[3 * b + j] = sums[j] / width;
            }
        }
    }
    out
}

// ---- the tree round ------------------------------------------------------------------------

/// What a tree round sums per patient.
#[derive(Debug, Clone, PartialEq)]
pub enum TreeObjective {
    /// Random forest: bootstrap weights from the seed (the tree index is the request's).
    ForestCounts { seed: u64 },
    /// Boosting: gradients of the logistic loss at base + Σ finished trees.
    BoostingGradients { base_margin: f64, ensemble: Vec<Tree> },
}

/// One node to expand: tree (index into the growing trees), node, candidate columns.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRequest {
    pub tree: u32,
    pub node: u32,
    pub columns: Vec<u32>,
}

/// Poisson(1) bootstrap weight of a patient in a tree: inverse CDF of a uniform taken from
/// SHA-256(seed, tree, patient id).
pub fn bootstrap_weight(seed: u64, tree: u32, patient_id: &str) -> u32 {
    let mut msg = Vec::with_capacity(32 + patient_id.len());
    msg.extend_from_slice(b"fedrad-bootstrap-v1\0");
    msg.extend_from_slice(&seed.to_le_bytes());
    msg.extend_from_slice(&tree.to_le_bytes());
    msg.extend_from_slice(patient_id.as_bytes());
    let h = digest(&SHA256, &msg);
    let bits = u64::from_le_bytes(h.as_ref()[..8].try_into().expect("8 bytes"));
    let u = ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut k = 0u32;
    let mut p = (-1.0f64).exp();
    let mut cdf = p;
    while u > cdf && k < 30 {
        k += 1;
        p /= f64::from(k);
        cdf += p;
    }
    k
}

/// Site half. `z`, `y`, `ids`: the site's standardised training rows, outcomes and patient
/// ids. Answers "patients" and "withheld" (one per request), "totals" (per request: patients,
/// then the two sums of the objective) and "histogram" (the same three per request, column and
/// bin; a request with no columns asks for its totals alone). A withheld node answers as an
/// empty one does; only a withheld root sets its "withheld" flag (see the module doc).
#[allow(clippy::too_many_arguments)]
pub fn site_tree_round(
    z: &[Vec<f64>],
    y: &[bool],
    ids: &[String],
    edges: &[Vec<f64>],
    objective: &TreeObjective,
    growing: &[Tree],
    nodes: &[NodeRequest],
    min_count: u64,
) -> Result<Aggregate, SiteRefusal> {
    let width = edges.len();
    let n = z.len();
    require_min_count("the training cohort of the model", n as u64, min_count)?;
    for class in [false, true] {
        let k = y.iter().filter(|&&v| v == class).count() as u64;
        require_min_count(&format!("training patients with a {} outcome", if class { "positive" } else { "negative" }), k, min_count)?;
    }
    if edges.iter().any(|e| e.len() > 1024 || e.windows(2).any(|w| !(w[0] < w[1])) || e.iter().any(|v| !v.is_finite())) {
        return Err(SiteRefusal::InvalidParameters("bin edges must be finite, ascending and at most 1024 per column".into()));
    }
    let mut size = 0usize;
    let mut seen = std::collections::BTreeSet::new();
    for r in nodes {
        let tree = growing.get(r.tree as usize).ok_or_else(|| SiteRefusal::InvalidParameters("a node request names no growing tree".into()))?;
        let node = tree.nodes.get(r.node as usize).ok_or_else(|| SiteRefusal::InvalidParameters("a node request names no node".into()))?;
        if node.column.is_some() || !seen.insert((r.tree, r.node)) {
            return Err(SiteRefusal::InvalidParameters("only leaves can be expanded, each once".into()));
        }
        if r.columns.iter().any(|&c| c as usize >= width) || r.columns.windows(2).any(|w| w[0] >= w[1]) {
            return Err(SiteRefusal::InvalidParameters("candidate columns must be ascending and inside the design".into()));
        }
        size += 3 + r.columns.iter().map(|&c| 3 * (edges[c as usize].len() + 1)).sum::<usize>();
    }
    if size > MAX_HISTOGRAM_VALUES {
        return Err(SiteRefusal::InvalidParameters(format!("a tree round of {size} values is larger than this site answers")));
    }
    // Per patient: the two summed quantities (and whether it counts at all) for each tree.
    let stats = |tree: u32| -> Vec<(f64, f64, f64)> {
        match objective {
            TreeObjective::ForestCounts { seed } => (0..n)
                .map(|i| {
                    let w = f64::from(bootstrap_weight(*seed, tree, &ids[i]));
                    (if w > 0.0 { 1.0 } else { 0.0 }, if y[i] { 0.0 } else { w }, if y[i] { w } else { 0.0 })
                })
                .collect(),
            TreeObjective::BoostingGradients { base_margin, ensemble } => (0..n)
                .map(|i| {
                    let p = sigmoid(boosted_margin(*base_margin, ensemble, &z[i]));
                    (1.0, p - f64::from(u8::from(y[i])), p * (1.0 - p))
                })
                .collect(),
        }
    };
    // Boosting's finished trees were answered over the same patients: which of them each of
    // their nodes holds here, and how many.
    let finished: Vec<(Vec<bool>, u64)> = match objective {
        TreeObjective::BoostingGradients { ensemble, .. } if min_count > 1 => answered_node_members(ensemble, z, min_count),
        _ => Vec::new(),
    };
    // Which patients reach which requested node.
    let mut per_tree: BTreeMap<u32, (Vec<(f64, f64, f64)>, Vec<usize>)> = BTreeMap::new();
    let mut patients = Vec::with_capacity(nodes.len());
    let mut withheld = Vec::with_capacity(nodes.len());
    let mut totals = Vec::with_capacity(3 * nodes.len());
    let mut histogram = Vec::with_capacity(size);
    for r in nodes {
        let (s, leaf) = per_tree.entry(r.tree).or_insert_with(|| (stats(r.tree), z.iter().map(|zi| growing[r.tree as usize].leaf_of(zi)).collect()));
        let members: Vec<usize> = (0..n).filter(|&i| leaf[i] == r.node as usize && s[i].0 > 0.0).collect();
        let here = members.len() as u64;
        // An ancestor's answer minus this node's is the union of the siblings along the path
        // (the parent's other child, the grandparent's, …): a sibling subtree with 1 to
        // `min_count` − 1 of the site's patients withholds this node too. (In honest growth
        // such a sibling was withheld, so its own sibling — this node's ancestor — was as
        // well, and this node is never asked.)
        let tree = &growing[r.tree as usize];
        let small = |k: u64| k > 0 && k < min_count;
        // The patients of every node on the path and of its sibling: the siblings' sizes say
        // whether to withhold, and all of them cut the nested runs. (With `min_count` 1 no
        // set is small and nothing is merged.)
        let in_bag = |node: usize| -> Vec<usize> { (0..n).filter(|&i| s[i].0 > 0.0 && tree.reaches(&z[i], node)).collect() };
        let path_nodes = if min_count > 1 { tree.path_from_root(r.node as usize) } else { Vec::new() };
        let path: Vec<(Vec<usize>, Option<Vec<usize>>)> = path_nodes.iter().map(|&(node, sibling)| (in_bag(node), sibling.map(in_bag))).collect();
        let small_sibling = path.iter().any(|(_, sibling)| sibling.as_ref().is_some_and(|v| small(v.len() as u64)));
        let cuts = (1..path.len()).any(|m| split_cuts_a_run_small(tree, &path_nodes[..=m], &path[..=m], z, edges, min_count));
        // A node that holds, or lies within, a finished tree's node and differs from it by 1 to
        // `min_count` − 1 patients would give their count by difference, and with the
        // finished trees' exact totals their gradients (a second review's attack). Checked for
        // every node on the path below the root and its sibling (a third review's): a
        // withheld node is its parent minus its sibling, and the sum of its children.
        let near = |set: &[usize]| {
            let k = set.len() as u64;
            finished.iter().any(|(m, size)| {
                let both = set.iter().filter(|&&i| m[i]).count() as u64;
                (both == k && small(size - k)) || (both == *size && small(k - size))
            })
        };
        let near_a_finished_node = !finished.is_empty() && path.iter().skip(1).any(|(node, sibling)| near(node) || sibling.as_deref().is_some_and(near));
        let hold = small(here) || (here > 0 && (small_sibling || cuts || near_a_finished_node));
        patients.push(if hold { 0.0 } else { here as f64 });
        // An empty node and a withheld one must look alike: only roots say which they are.
        withheld.push(if hold && r.node == 0 { 1.0 } else { 0.0 });
        let sums = members.iter().fold([0.0; 3], |a, &i| add(a, [s[i].0, s[i].1, s[i].2]));
        totals.extend(if hold { [0.0; 3] } else { sums });
        for &c in &r.columns {
            let e = &edges[c as usize];
            let mut h = vec![0.0; 3 * (e.len() + 1)];
            if !hold {
                for &i in &members {
                    let b = bin_of(e, z[i][c as usize]);
                    h[3 * b] += s[i].0;
                    h[3 * b + 1] += s[i].1;
                    h[3 * b + 2] += s[i].2;
                }
                if min_count > 1 {
                    let levels = path_bin_counts(&path, z, e, c as usize);
                    h = render_in_runs(&h, &nested_runs(&levels, min_count));
                }
            }
            histogram.extend(h);
        }
    }
    Ok(AggregateBuilder::new(n as u64).vector("patients", patients).vector("withheld", withheld).vector("totals", totals).vector("histogram", histogram).build())
}

/// Summed statistics of one node: per candidate column, per bin, [patients, a, b].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHistogram {
    /// Some site withheld the node (it holds too few of the node's patients).
    pub withheld: bool,
    /// The node's patients and two sums (exact: merged bins keep them).
    pub totals: [f64; 3],
    pub columns: Vec<Vec<[f64; 3]>>,
}

/// Coordinator half: sums the sites' histograms per requested node.
pub fn combine_tree_round(answers: &[SiteAggregate], edges: &[Vec<f64>], nodes: &[NodeRequest]) -> Result<Vec<NodeHistogram>, CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let size: usize = nodes.iter().flat_map(|r| &r.columns).map(|&c| 3 * (edges[c as usize].len() + 1)).sum();
    let mut out: Vec<NodeHistogram> = nodes
        .iter()
        .map(|r| NodeHistogram { withheld: false, totals: [0.0; 3], columns: r.columns.iter().map(|&c| vec![[0.0; 3]; edges[c as usize].len() + 1]).collect() })
        .collect();
    for a in answers {
        let withheld = a.vector("withheld", nodes.len())?;
        let totals = a.vector("totals", 3 * nodes.len())?;
        let h = a.vector("histogram", size)?;
        let mut pos = 0;
        for (k, node) in out.iter_mut().enumerate() {
            node.withheld |= withheld[k] != 0.0;
            node.totals = add(node.totals, [totals[3 * k], totals[3 * k + 1], totals[3 * k + 2]]);
            for col in &mut node.columns {
                for cell in col.iter_mut() {
                    for (t, v) in cell.iter_mut().zip(&h[pos..pos + 3]) {
                        *t += v;
                    }
                    pos += 3;
                }
            }
        }
    }
    Ok(out)
}

// ---- split choice (coordinator) ------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Criterion {
    Gini,
    Gain { lambda: f64, min_child_weight: f64, learning_rate: f64 },
}

impl Criterion {
    /// The node's "score" (larger is purer): Gini: −(W − Σw_c²/W); XGBoost: G²/(H + λ).
    fn score(self, s: [f64; 3]) -> f64 {
        match self {
            Criterion::Gini => {
                let w = s[1] + s[2];
                if w > 0.0 { (s[1] * s[1] + s[2] * s[2]) / w - w } else { 0.0 }
            }
            Criterion::Gain { lambda, .. } => s[1] * s[1] / (s[2] + lambda),
        }
    }

    fn value(self, s: [f64; 3]) -> f64 {
        match self {
            Criterion::Gini => {
                let w = s[1] + s[2];
                if w > 0.0 { s[2] / w } else { 0.5 }
            }
            Criterion::Gain { lambda, learning_rate, .. } => -learning_rate * s[1] / (s[2] + lambda),
        }
    }

    fn admissible(self, left: [f64; 3], right: [f64; 3], min_leaf: u64) -> bool {
        let ok = left[0] >= min_leaf as f64 && right[0] >= min_leaf as f64;
        match self {
            Criterion::Gini => ok,
            Criterion::Gain { min_child_weight, .. } => ok && left[2] >= min_child_weight && right[2] >= min_child_weight,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Split {
    column: u32,
    threshold: f64,
    left: [f64; 3],
    right: [f64; 3],
}

fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// The best admissible split, or none. Gains within 1e-9 of the best tie, and the earlier
/// column, then the lower bin, wins — so rounding in the sites' sums never decides.
fn best_split(h: &NodeHistogram, columns: &[u32], edges: &[Vec<f64>], criterion: Criterion, min_leaf: u64) -> Option<Split> {
    let total = h.totals;
    let parent = criterion.score(total);
    let mut candidates: Vec<(f64, Split)> = Vec::new();
    for (col_hist, &c) in h.columns.iter().zip(columns) {
        let mut left = [0.0; 3];
        for (b, cell) in col_hist.iter().enumerate().take(col_hist.len() - 1) {
            left = add(left, *cell);
            let right = sub(total, left);
            if cell[0] == 0.0 || !criterion.admissible(left, right, min_leaf) {
                continue; // an empty bin repeats the previous split
            }
            let gain = criterion.score(left) + criterion.score(right) - parent;
            candidates.push((gain, Split { column: c, threshold: edges[c as usize][b], left, right }));
        }
    }
    let best = candidates.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max);
    if !(best > 1e-9 * total[0].max(1.0)) {
        return None;
    }
    candidates.into_iter().find(|(g, _)| *g >= best - 1e-9 * best.abs()).map(|(_, s)| s)
}

/// `k` distinct columns of `width`, drawn from SHA-256(seed, tree, node), ascending.
fn candidate_columns(seed: u64, tree: u32, node: u32, width: usize, k: usize) -> Vec<u32> {
    if k >= width {
        return (0..width as u32).collect();
    }
    let mut msg = b"fedrad-mtry-v1\0".to_vec();
    msg.extend_from_slice(&seed.to_le_bytes());
    msg.extend_from_slice(&tree.to_le_bytes());
    msg.extend_from_slice(&node.to_le_bytes());
    let mut state = u64::from_le_bytes(digest(&SHA256, &msg).as_ref()[..8].try_into().expect("8 bytes")) | 1;
    let mut pool: Vec<u32> = (0..width as u32).collect();
    for i in 0..k {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = i + (state % (width - i) as u64) as usize;
        pool.swap(i, j);
    }
    let mut chosen = pool[..k].to_vec();
    chosen.sort_unstable();
    chosen
}

// ---- coordinator: the grower, a request/absorb state machine ------------------------------

/// A node waiting to be expanded, with what the coordinator knows of it.
#[derive(Debug, Clone, Copy)]
struct Open {
    tree: u32,
    node: u32,
    /// Its patients as its parent's split counted them (approximate where sites merged bins):
    /// whether it is worth expanding.
    patients: f64,
    pure: bool,
    /// The other child of its parent, and the parent's patients from its own answer (exact).
    sibling: Option<u32>,
    parent_patients: f64,
}

/// Result of growing an ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Growth {
    pub rounds: u64,
    /// Nodes some site withheld (their patients fell short of their parent's); they are grown
    /// on the sums of the sites that answered.
    pub withheld_nodes: u64,
    pub leaves: u64,
}

/// Which ensemble a grower builds. `min_leaf` must already include the sites' `min_count`.
#[derive(Debug, Clone, PartialEq)]
pub enum EnsembleSettings {
    Forest(ForestSettings),
    Boosting(BoostingSettings),
}

impl EnsembleSettings {
    fn bins(&self) -> u32 {
        match self {
            EnsembleSettings::Forest(f) => f.bins,
            EnsembleSettings::Boosting(b) => b.bins,
        }
    }
}

/// The tree round a grower asks for next.
#[derive(Debug, Clone, Copy)]
pub struct TreeRoundRequest<'a> {
    /// The finished trees whose margin the gradients are taken at (boosting; none for a forest).
    pub ensemble: &'a [Tree],
    /// The trees being grown, as far as they are.
    pub growing: &'a [Tree],
    pub nodes: &'a [NodeRequest],
}

/// Grows an ensemble level by level: [`request`](Self::request) names the next tree round,
/// [`absorb`](Self::absorb) takes its summed histograms ([`combine_tree_round`]). A forest
/// grows all its trees together; boosting grows one tree after another, each at the margin of
/// those before it. Every step is a function of the settings, the bin edges and the sums, so
/// a site that holds the same sums grows the same trees ([`TreeReplica`]).
#[derive(Debug, Clone)]
pub struct EnsembleGrower {
    settings: EnsembleSettings,
    edges: Vec<Vec<f64>>,
    criterion: Criterion,
    max_depth: u32,
    min_leaf: u64,
    /// Boosting's finished trees.
    ensemble: Vec<Tree>,
    growing: Vec<Tree>,
    open: Vec<Open>,
    depth: u32,
    /// Roots start as leaves of value 0 (on the wire) until their first histogram arrives.
    root_known: Vec<bool>,
    /// The next round's nodes; empty once grown (or failed).
    requests: Vec<NodeRequest>,
    growth: Growth,
    failed: Option<String>,
}

impl EnsembleGrower {
    pub fn new(settings: EnsembleSettings, edges: Vec<Vec<f64>>) -> Self {
        let (criterion, max_depth, min_leaf, trees) = match &settings {
            EnsembleSettings::Forest(f) => (Criterion::Gini, f.max_depth, f.min_leaf, f.trees),
            EnsembleSettings::Boosting(b) => {
                (Criterion::Gain { lambda: b.lambda, min_child_weight: b.min_child_weight, learning_rate: b.learning_rate }, b.max_depth, b.min_leaf, 1)
            }
        };
        let mut g = EnsembleGrower {
            settings,
            edges,
            criterion,
            max_depth,
            min_leaf,
            ensemble: Vec::new(),
            growing: Vec::new(),
            open: Vec::new(),
            depth: 0,
            root_known: Vec::new(),
            requests: Vec::new(),
            growth: Growth { rounds: 0, withheld_nodes: 0, leaves: 0 },
            failed: None,
        };
        g.plant(trees);
        g.advance();
        g
    }

    fn plant(&mut self, trees: u32) {
        self.growing = (0..trees).map(|_| Tree::leaf(0.0)).collect();
        self.open = (0..trees).map(|t| Open { tree: t, node: 0, patients: f64::INFINITY, pure: false, sibling: None, parent_patients: f64::INFINITY }).collect();
        self.root_known = vec![false; trees as usize];
        self.depth = 0;
    }

    fn columns_for(&self, tree: u32, node: u32) -> Vec<u32> {
        let width = self.edges.len();
        match &self.settings {
            EnsembleSettings::Forest(f) => candidate_columns(f.seed, tree, node, width, f.candidates(width)),
            EnsembleSettings::Boosting(_) => (0..width as u32).collect(),
        }
    }

    /// Names the next round's nodes: every node the last round's splits made, with candidate
    /// columns where it can grow further and with none (its totals alone) where it cannot;
    /// ends the trees once none is left (and plants boosting's next tree).
    fn advance(&mut self) {
        loop {
            let min_leaf = self.min_leaf as f64;
            if !self.open.is_empty() {
                let grows = |o: &Open| self.depth < self.max_depth && !o.pure && o.patients >= 2.0 * min_leaf;
                self.requests = self
                    .open
                    .iter()
                    .map(|o| NodeRequest { tree: o.tree, node: o.node, columns: if grows(o) { self.columns_for(o.tree, o.node) } else { Vec::new() } })
                    .collect();
                return;
            }
            self.requests.clear();
            if self.root_known.iter().any(|k| !k) {
                self.failed = Some("a site withheld a tree's root (too few of its patients in the tree's sample)".into());
                return;
            }
            if let EnsembleSettings::Boosting(b) = &self.settings {
                let rounds = b.rounds as usize;
                self.ensemble.push(self.growing.remove(0));
                if self.ensemble.len() < rounds {
                    self.plant(1);
                    continue;
                }
            }
            return;
        }
    }

    /// The bin edges the trees split on.
    pub fn edges(&self) -> &[Vec<f64>] {
        &self.edges
    }

    /// The next tree round, or `None` once the ensemble is grown (or a root was withheld).
    pub fn request(&self) -> Option<TreeRoundRequest<'_>> {
        (!self.requests.is_empty()).then_some(TreeRoundRequest { ensemble: &self.ensemble, growing: &self.growing, nodes: &self.requests })
    }

    /// Takes the summed histograms of the round [`request`](Self::request) named.
    pub fn absorb(&mut self, answers: &[NodeHistogram]) -> Result<(), String> {
        if self.requests.is_empty() {
            return Err("the ensemble asked for no further tree round".into());
        }
        if answers.len() != self.requests.len() {
            return Err("tree round answered a different number of nodes".into());
        }
        self.growth.rounds += 1;
        let requests = std::mem::take(&mut self.requests);
        let open = std::mem::take(&mut self.open);
        let criterion = self.criterion;
        let mut next = Vec::new();
        let asked: BTreeMap<(u32, u32), f64> = requests.iter().zip(answers).map(|(r, h)| ((r.tree, r.node), h.totals[0])).collect();
        for ((r, h), o) in requests.iter().zip(answers).zip(&open) {
            // A site withholds a node by answering as if it held none of its patients, and
            // withholds its sibling too: the pair's sum then falls short of their parent's
            // (counts are whole numbers, exact in any order and under secure sums). Both
            // children of every split are asked, so every pair is checked. The flag covers
            // roots.
            let short = o.sibling.and_then(|sib| asked.get(&(r.tree, sib))).is_some_and(|sibling| h.totals[0] + sibling + 0.5 < o.parent_patients);
            // Only a root carries the flag (a site never sets it elsewhere).
            let root_withheld = h.withheld && r.node == 0;
            if root_withheld || short {
                self.growth.withheld_nodes += 1;
                if root_withheld {
                    continue; // the ensemble fails below
                }
            }
            let tree = &mut self.growing[r.tree as usize];
            if r.node == 0 && self.depth == 0 {
                self.root_known[r.tree as usize] = true;
            }
            if h.totals[0] > 0.0 {
                // An empty child (a split inside a run can leave one) keeps its split's value.
                tree.nodes[r.node as usize].value = criterion.value(h.totals);
            }
            if r.columns.is_empty() {
                continue; // asked for its value only
            }
            let parent_patients = h.totals[0];
            let Some(split) = best_split(h, &r.columns, &self.edges, criterion, self.min_leaf) else { continue };
            let base = tree.nodes.len() as u32;
            let parent = &mut tree.nodes[r.node as usize];
            parent.column = Some(split.column);
            parent.threshold = split.threshold;
            parent.children = [base, base + 1];
            for (k, s) in [split.left, split.right].into_iter().enumerate() {
                tree.nodes.push(TreeNode { column: None, threshold: 0.0, children: [0, 0], value: criterion.value(s) });
                let pure = matches!(criterion, Criterion::Gini) && (s[1] == 0.0 || s[2] == 0.0);
                let sibling = Some(if k == 0 { base + 1 } else { base });
                next.push(Open { tree: r.tree, node: tree.nodes.len() as u32 - 1, patients: s[0], pure, sibling, parent_patients });
            }
        }
        self.open = next;
        self.depth += 1;
        self.advance();
        Ok(())
    }

    /// The grown ensemble (a forest's trees, or boosting's in order) and how it grew.
    pub fn finish(self) -> Result<(Vec<Tree>, Growth), String> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.requests.is_empty() {
            return Err("the ensemble is not grown yet".into());
        }
        let trees = match self.settings {
            EnsembleSettings::Forest(_) => self.growing,
            EnsembleSettings::Boosting(_) => self.ensemble,
        };
        let growth = Growth { leaves: trees.iter().map(|t| t.leaves() as u64).sum(), ..self.growth };
        Ok((trees, growth))
    }
}

/// Grows a random forest. `ask(growing, requests)` runs one tree round at every site (with
/// [`TreeObjective::ForestCounts`]) and returns [`combine_tree_round`]'s sums. The root value
/// of each tree comes from its first round; `min_leaf` must already include the sites' policy.
pub async fn grow_forest(
    settings: &ForestSettings,
    edges: &[Vec<f64>],
    mut ask: impl AsyncFnMut(&[Tree], &[NodeRequest]) -> Result<Vec<NodeHistogram>, String>,
) -> Result<(Vec<Tree>, Growth), String> {
    let mut grower = EnsembleGrower::new(EnsembleSettings::Forest(settings.clone()), edges.to_vec());
    while let Some(r) = grower.request() {
        let answers = ask(r.growing, r.nodes).await?;
        grower.absorb(&answers)?;
    }
    grower.finish()
}

/// Grows boosted trees one after another; `ask(ensemble, growing, requests)` runs one round
/// with [`TreeObjective::BoostingGradients`] at the margin of the finished `ensemble`.
pub async fn grow_boosting(
    settings: &BoostingSettings,
    edges: &[Vec<f64>],
    mut ask: impl AsyncFnMut(&[Tree], &[Tree], &[NodeRequest]) -> Result<Vec<NodeHistogram>, String>,
) -> Result<(Vec<Tree>, Growth), String> {
    let mut grower = EnsembleGrower::new(EnsembleSettings::Boosting(settings.clone()), edges.to_vec());
    while let Some(r) = grower.request() {
        let answers = ask(r.ensemble, r.growing, r.nodes).await?;
        grower.absorb(&answers)?;
    }
    grower.finish()
}

// ---- site: recomputation -------------------------------------------------------------------

/// A site's copy of one ensemble's growth (issue 17, property 2). Its first input is the sum
/// of the sites' answers to the design's value-count round, from which it places the bin edges
/// ([`combine_bin_edges`] on the study's [`ValueGrid`]); then, round by round, the sum of their
/// answers to the tree round it asked for. A site answers a tree round only if its nodes, the
/// trees grown so far, the finished ensemble and the edges are exactly what the replica asks:
/// every split is then the study's split rule applied to sums over the study's own training
/// cohort, and no node, threshold or tree shape is the coordinator's choice.
#[derive(Debug, Clone)]
pub struct TreeReplica {
    settings: EnsembleSettings,
    width: usize,
    /// `None` until the value counts are in.
    grower: Option<EnsembleGrower>,
}

impl TreeReplica {
    pub fn new(settings: EnsembleSettings, width: usize) -> Self {
        TreeReplica { settings, width, grower: None }
    }

    /// Takes the sum of the sites' answers to the round asked last: the value counts first,
    /// tree rounds after.
    pub fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        let bad = |m: String| SiteRefusal::InvalidParameters(format!("tree recomputation: {m}"));
        match &mut self.grower {
            None => {
                let edges = combine_bin_edges(std::slice::from_ref(sum), self.width, ValueGrid::DEFAULT, self.settings.bins()).map_err(|e| bad(e.to_string()))?;
                self.grower = Some(EnsembleGrower::new(self.settings.clone(), edges));
                Ok(())
            }
            Some(g) => {
                let nodes = g.request().ok_or_else(|| bad("the ensemble asked for no further round".into()))?.nodes.to_vec();
                let h = combine_tree_round(std::slice::from_ref(sum), g.edges(), &nodes).map_err(|e| bad(e.to_string()))?;
                g.absorb(&h).map_err(bad)
            }
        }
    }

    /// Whether a tree round asks exactly what the replica asks next.
    pub fn expect(&self, edges: &[Vec<f64>], ensemble: &[Tree], growing: &[Tree], nodes: &[NodeRequest]) -> Result<(), SiteRefusal> {
        let bad = |m: &str| Err(SiteRefusal::InvalidParameters(format!("tree recomputation: {m}; this site answers only the study's own splits")));
        let Some(g) = &self.grower else { return bad("the run's first tree round must carry the sites' signed answers to the design's value counts") };
        let Some(r) = g.request() else { return bad("the ensemble is grown; the study's split rule asks for no further round") };
        if g.edges() != edges {
            return bad("the bin edges are not the ones the sum of the sites' value counts gives");
        }
        if r.ensemble != ensemble {
            return bad("the finished trees are not the ones grown from the sums of the sites' answers");
        }
        if r.growing != growing {
            return bad("the growing trees are not the ones the split rule grew from the sums of the sites' answers");
        }
        if r.nodes != nodes {
            return bad("the nodes to expand (or their candidate columns) are not the ones the split rule asks for next");
        }
        Ok(())
    }

    /// Whether `trees` are exactly the ensemble the replica grew, once it has absorbed the sum
    /// of the sites' answers to the last tree round. A site scores a forest or boosted trees
    /// only then (issue 17, property 5): no scored tree, threshold or leaf value is the
    /// coordinator's choice. Before, a scored ensemble was checked only for thresholds on the
    /// pinned edges, so its leaves could be boxes around known people within the edges' cells
    /// and a budget of unverified scorers.
    pub fn expect_grown(&self, trees: &[Tree]) -> Result<(), SiteRefusal> {
        let bad = |m: &str| Err(SiteRefusal::InvalidParameters(format!("tree recomputation: {m}; this site scores only the ensemble the study's split rule grew")));
        let Some(g) = &self.grower else { return bad("the ensemble has no bin edges yet") };
        if g.request().is_some() {
            return bad("the ensemble is not grown yet: the split rule asks for a further round");
        }
        match g.clone().finish() {
            Err(e) => bad(&e),
            Ok((grown, _)) if grown != trees => bad("the scored trees are not the ones grown from the sums of the sites' answers"),
            Ok(_) => Ok(()),
        }
    }

    /// Tree rounds absorbed so far.
    pub fn rounds(&self) -> u64 {
        self.grower.as_ref().map_or(0, |g| g.growth.rounds)
    }
}

// ---- pooled references ---------------------------------------------------------------------

/// The pooled grower: nodes hold their rows, histograms are summed straight from them (no
/// routing, no sites), level by level with the same split rule and candidate columns.
fn pooled_grow(
    z: &[Vec<f64>],
    stats: &[(f64, f64, f64)],
    edges: &[Vec<f64>],
    criterion: Criterion,
    max_depth: u32,
    min_leaf: u64,
    columns_for: impl Fn(u32) -> Vec<u32>,
) -> Tree {
    let mut tree = Tree::leaf(0.0);
    let rows: Vec<usize> = (0..z.len()).filter(|&i| stats[i].0 > 0.0).collect();
    let mut level = vec![(0u32, rows, f64::INFINITY, false)];
    for _ in 0..max_depth {
        let mut next = Vec::new();
        for (node, rows, patients, pure) in level {
            if pure || patients < 2.0 * min_leaf as f64 {
                continue;
            }
            let columns = columns_for(node);
            let h = NodeHistogram {
                withheld: false,
                totals: rows.iter().fold([0.0; 3], |a, &i| add(a, [stats[i].0, stats[i].1, stats[i].2])),
                columns: columns
                    .iter()
                    .map(|&c| {
                        let e = &edges[c as usize];
                        let mut col = vec![[0.0; 3]; e.len() + 1];
                        for &i in &rows {
                            let b = bin_of(e, z[i][c as usize]);
                            col[b] = add(col[b], [stats[i].0, stats[i].1, stats[i].2]);
                        }
                        col
                    })
                    .collect(),
            };
            if node == 0 {
                tree.nodes[0].value = criterion.value(h.totals);
            }
            let Some(split) = best_split(&h, &columns, edges, criterion, min_leaf) else { continue };
            let base = tree.nodes.len() as u32;
            let parent = &mut tree.nodes[node as usize];
            parent.column = Some(split.column);
            parent.threshold = split.threshold;
            parent.children = [base, base + 1];
            let (l, r): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&i| z[i][split.column as usize] < split.threshold);
            for (s, part) in [(split.left, l), (split.right, r)] {
                tree.nodes.push(TreeNode { column: None, threshold: 0.0, children: [0, 0], value: criterion.value(s) });
                let pure = matches!(criterion, Criterion::Gini) && (s[1] == 0.0 || s[2] == 0.0);
                next.push((tree.nodes.len() as u32 - 1, part, s[0], pure));
            }
        }
        level = next;
    }
    tree
}

/// Pooled reference of [`grow_forest`] (no site withholds anything).
pub fn pooled_forest(z: &[Vec<f64>], y: &[bool], ids: &[String], edges: &[Vec<f64>], settings: &ForestSettings) -> Vec<Tree> {
    let width = edges.len();
    let k = settings.candidates(width);
    (0..settings.trees)
        .map(|t| {
            let stats: Vec<(f64, f64, f64)> = (0..z.len())
                .map(|i| {
                    let w = f64::from(bootstrap_weight(settings.seed, t, &ids[i]));
                    (if w > 0.0 { 1.0 } else { 0.0 }, if y[i] { 0.0 } else { w }, if y[i] { w } else { 0.0 })
                })
                .collect();
            pooled_grow(z, &stats, edges, Criterion::Gini, settings.max_depth, settings.min_leaf, |n| candidate_columns(settings.seed, t, n, width, k))
        })
        .collect()
}

/// Pooled reference of [`grow_boosting`].
pub fn pooled_boosting(z: &[Vec<f64>], y: &[bool], base_margin: f64, edges: &[Vec<f64>], settings: &BoostingSettings) -> Vec<Tree> {
    let criterion = Criterion::Gain { lambda: settings.lambda, min_child_weight: settings.min_child_weight, learning_rate: settings.learning_rate };
    let mut ensemble = Vec::new();
    for _ in 0..settings.rounds {
        let stats: Vec<(f64, f64, f64)> = (0..z.len())
            .map(|i| {
                let p = sigmoid(boosted_margin(base_margin, &ensemble, &z[i]));
                (1.0, p - f64::from(u8::from(y[i])), p * (1.0 - p))
            })
            .collect();
        let tree = pooled_grow(z, &stats, edges, criterion, settings.max_depth, settings.min_leaf, |_| (0..edges.len() as u32).collect());
        ensemble.push(tree);
    }
    ensemble
}

/// Pooled bin edges from all rows (reference of the value-histogram round).
pub fn pooled_bin_edges(z: &[Vec<f64>], width: usize, grid: ValueGrid, bins: u32) -> Vec<Vec<f64>> {
    let cells = grid.cells();
    (0..width)
        .map(|j| {
            let mut counts = vec![0u64; cells];
            for r in z {
                counts[grid.cell(r[j])] += 1;
            }
            quantile_edges(&counts, grid, bins)
        })
        .collect()
}

// ---- what a site accepts ------------------------------------------------------------------

/// Value histograms only on the study's grid ([`ValueGrid::DEFAULT`]); tree rounds only for a
/// tree kind the plan fits, with its seed, at most its number of trees and depth, at most its
/// bins per column, and (boosting) at most its rounds in the ensemble. Why: the grid, the
/// bootstrap seed and the size of what is grown are then the approved plan's, not the
/// coordinator's. Bin edges lie on the value grid's cell boundaries (where
/// [`combine_bin_edges`] puts them, so no threshold is finer than the grid's 0.05 SD) and every
/// split's threshold is one of its column's edges; the site also pins a design's edges at its
/// first tree round (`site-agent`'s model ledger), so later rounds cannot move them to
/// difference one patient out of a node. Within a tree, a node whose sibling holds 1 to
/// `min_count` − 1 of the site's patients is withheld as well (its parent's answer minus its
/// own would be the sibling's; likewise for every sibling along its path to the root, and a
/// tree must be a tree: one parent per node), and so is a pair whose split cuts one of an
/// ancestor's released runs into a part of 1 to `min_count` − 1 patients (a child's exact
/// totals minus the runs wholly on its side would be that part). A withheld node answers byte for byte as an
/// empty one (only a root carries the flag), so withholding is no membership test for a box
/// the coordinator draws.
///
/// **Recomputation** (the strongest check, [`TreeReplica`]): the site also grows the ensemble
/// itself, from the sums of every site's signed answers, and answers a round only if its
/// edges, finished trees, growing trees and nodes with their candidate columns are exactly
/// what its replica asks next — one ensemble per design, standardiser and objective, from the
/// plan's settings with a leaf size no smaller than the plan's and the site's `min_count`. So
/// no tree, node or threshold is the coordinator's choice: "tree 0" cannot take another shape
/// in another round, and two nodes a few patients apart exist only where the study's own split
/// rule put them. What the honest growth itself gave: nodes of one boosting ensemble's
/// successive trees grow over the same patients and could differ by a few of them; a node one
/// inside or around a finished tree's answered node and 1 to `min_count` − 1 patients from it
/// is withheld too. Overlapping boxes of three or more nodes across trees are not checked.
pub fn site_accepts_value_grid(grid: ValueGrid) -> Result<(), SiteRefusal> {
    if grid != ValueGrid::DEFAULT {
        return Err(SiteRefusal::InvalidParameters(format!(
            "a value grid of {} cells per SD over ±{} SD; the study's is {} over ±{}",
            grid.cells_per_sd,
            grid.limit_sd,
            ValueGrid::DEFAULT.cells_per_sd,
            ValueGrid::DEFAULT.limit_sd
        )));
    }
    Ok(())
}

/// Bin edges only on the study's value grid's cell boundaries (see [`site_accepts_value_grid`]).
pub fn site_accepts_edges(edges: &[Vec<f64>]) -> Result<(), SiteRefusal> {
    let grid = ValueGrid::DEFAULT;
    for e in edges.iter().flatten() {
        let cell = ((e + grid.limit_sd) * f64::from(grid.cells_per_sd)).round() - 1.0;
        if !(cell >= 0.0 && (cell as usize) < grid.cells() && grid.upper(cell as usize) == *e) {
            return Err(SiteRefusal::InvalidParameters(format!("bin edge {e} is not on the study's value grid (cells of 1/{} SD)", grid.cells_per_sd)));
        }
    }
    Ok(())
}

/// Every split of a tree on one of its column's bin edges.
pub fn site_accepts_thresholds(tree: &Tree, edges: &[Vec<f64>]) -> Result<(), SiteRefusal> {
    for n in &tree.nodes {
        if let Some(c) = n.column
            && !edges.get(c as usize).is_some_and(|e| e.contains(&n.threshold))
        {
            return Err(SiteRefusal::InvalidParameters(format!("a split at {} on column {c}, not one of the column's bin edges", n.threshold)));
        }
    }
    Ok(())
}

/// The size limits of a tree round from the plan: see [`site_accepts_value_grid`].
pub struct TreeLimits {
    pub seed: Option<u64>,
    pub trees: usize,
    pub max_depth: u32,
    pub bins: u32,
    pub ensemble: usize,
}

pub fn site_accepts_tree_round(edges: &[Vec<f64>], growing: &[Tree], ensemble: &[Tree], seed: Option<u64>, limits: &TreeLimits) -> Result<(), SiteRefusal> {
    let invalid = |m: String| Err(SiteRefusal::InvalidParameters(m));
    if limits.seed.is_some() && seed != limits.seed {
        return invalid("the forest's bootstrap seed is not the study plan's".into());
    }
    if growing.len() > limits.trees {
        return invalid(format!("{} trees grown at once; the study plan grows {}", growing.len(), limits.trees));
    }
    if ensemble.len() > limits.ensemble {
        return invalid(format!("an ensemble of {} trees; the study plan has at most {}", ensemble.len(), limits.ensemble));
    }
    if let Some(e) = edges.iter().find(|e| e.len() + 1 > limits.bins as usize) {
        return invalid(format!("{} bins in a column; the study plan has {}", e.len() + 1, limits.bins));
    }
    site_accepts_edges(edges)?;
    for t in growing.iter().chain(ensemble) {
        site_accepts_thresholds(t, edges)?;
    }
    for t in growing.iter().chain(ensemble) {
        let depth = t.depth();
        if depth > limits.max_depth {
            return invalid(format!("a tree of depth {depth}; the study plan's trees are at most {} deep", limits.max_depth));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_accepts_edges_on_the_value_grid_and_splits_only_on_them() {
        let grid = ValueGrid::DEFAULT;
        assert!(site_accepts_edges(&[vec![grid.upper(0), grid.upper(119), grid.upper(200)]]).is_ok());
        assert!(site_accepts_edges(&[vec![0.0125]]).is_err(), "between two grid boundaries");
        assert!(site_accepts_edges(&[vec![1e6]]).is_err(), "beyond the grid");
        let edges = vec![vec![-0.5, 0.0, 0.5]];
        let split = |t: f64| Tree {
            nodes: vec![
                TreeNode { column: Some(0), threshold: t, children: [1, 2], value: 0.0 },
                TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.1 },
                TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.2 },
            ],
        };
        assert!(site_accepts_thresholds(&split(0.5), &edges).is_ok());
        assert!(site_accepts_thresholds(&split(0.49), &edges).is_err());
        assert_eq!(split(0.5).depth(), 1);
        let limits = TreeLimits { seed: Some(3), trees: 2, max_depth: 1, bins: 4, ensemble: 0 };
        assert!(site_accepts_tree_round(&edges, &[split(0.0)], &[], Some(3), &limits).is_ok());
        assert!(site_accepts_tree_round(&edges, &[split(0.0)], &[], Some(4), &limits).is_err(), "another bootstrap seed");
        assert!(site_accepts_tree_round(&edges, &vec![split(0.0); 3], &[], Some(3), &limits).is_err(), "more trees than planned");
        let deep = TreeLimits { max_depth: 0, ..limits };
        assert!(site_accepts_tree_round(&edges, &[split(0.0)], &[], Some(3), &deep).is_err(), "deeper than planned");
    }
    use crate::algorithms::block_on_ready;
    use crate::algorithms::metrics::pooled_auc;
    use crate::algorithms::testdata::{cohort, standardiser};

    fn data() -> (Vec<Vec<f64>>, Vec<bool>, Vec<String>) {
        let (x, y, _) = cohort(5);
        let x: Vec<Vec<f64>> = x.iter().map(|r| r[..10].to_vec()).collect();
        let z = standardiser(&x).apply(&x).unwrap();
        let ids = (0..z.len()).map(|i| format!("P-{i:04}")).collect();
        (z, y.iter().map(|v| *v == 1.0).collect(), ids)
    }

    use crate::algorithms::testdata::site_ranges as sites;

    struct Federation<'a> {
        z: &'a [Vec<f64>],
        y: &'a [bool],
        ids: &'a [String],
        sites: Vec<std::ops::Range<usize>>,
        min_count: u64,
    }

    impl Federation<'_> {
        fn edges(&self, bins: u32) -> Vec<Vec<f64>> {
            let width = self.z[0].len();
            let answers: Vec<SiteAggregate> = self
                .sites
                .iter()
                .enumerate()
                .map(|(k, r)| SiteAggregate::new(format!("s{k}"), site_value_histogram(&self.z[r.clone()], width, ValueGrid::DEFAULT, 1).unwrap()))
                .collect();
            combine_bin_edges(&answers, width, ValueGrid::DEFAULT, bins).unwrap()
        }

        fn round(&self, edges: &[Vec<f64>], objective: &TreeObjective, growing: &[Tree], nodes: &[NodeRequest]) -> Result<Vec<NodeHistogram>, String> {
            let answers: Vec<SiteAggregate> = self
                .sites
                .iter()
                .enumerate()
                .map(|(k, r)| {
                    let a = site_tree_round(&self.z[r.clone()], &self.y[r.clone()], &self.ids[r.clone()], edges, objective, growing, nodes, self.min_count);
                    SiteAggregate::new(format!("s{k}"), a.unwrap())
                })
                .collect();
            combine_tree_round(&answers, edges, nodes).map_err(|e| e.to_string())
        }

        fn forest(&self, settings: &ForestSettings) -> (Vec<Tree>, Growth) {
            let edges = self.edges(settings.bins);
            let objective = TreeObjective::ForestCounts { seed: settings.seed };
            block_on_ready(grow_forest(settings, &edges, async |g: &[Tree], r: &[NodeRequest]| self.round(&edges, &objective, g, r))).unwrap()
        }

        fn boosting(&self, settings: &BoostingSettings, base: f64) -> (Vec<Tree>, Growth) {
            let edges = self.edges(settings.bins);
            block_on_ready(grow_boosting(settings, &edges, async |e: &[Tree], g: &[Tree], r: &[NodeRequest]| {
                self.round(&edges, &TreeObjective::BoostingGradients { base_margin: base, ensemble: e.to_vec() }, g, r)
            }))
            .unwrap()
        }
    }

    fn max_tree_difference(a: &[Tree], b: &[Tree]) -> f64 {
        assert_eq!(a.len(), b.len());
        let mut d: f64 = 0.0;
        for (s, t) in a.iter().zip(b) {
            assert_eq!(s.nodes.len(), t.nodes.len(), "trees differ in shape");
            for (m, n) in s.nodes.iter().zip(&t.nodes) {
                assert_eq!((m.column, m.threshold, m.children), (n.column, n.threshold, n.children), "trees differ in a split");
                d = d.max((m.value - n.value).abs());
            }
        }
        d
    }

    #[test]
    fn partition_forest_1_4_and_7_uneven_sites_equal_pooled() {
        let (z, y, ids) = data();
        let settings = ForestSettings { trees: 25, ..ForestSettings::default() };
        let edges = pooled_bin_edges(&z, 10, ValueGrid::DEFAULT, settings.bins);
        let pooled = pooled_forest(&z, &y, &ids, &edges, &settings);
        for sizes in [vec![229], vec![60, 57, 52, 60], vec![10, 61, 5, 40, 33, 71, 9]] {
            let fed = Federation { z: &z, y: &y, ids: &ids, sites: sites(&sizes), min_count: 1 };
            assert_eq!(fed.edges(settings.bins), edges, "bin edges, sites {sizes:?}");
            let (forest, growth) = fed.forest(&settings);
            assert_eq!(growth.withheld_nodes, 0);
            assert_eq!(max_tree_difference(&forest, &pooled), 0.0, "sites {sizes:?}");
            // A round per level, and one more for the values of the last level's nodes.
            assert!(growth.rounds <= u64::from(settings.max_depth) + 1 && growth.rounds >= 5);
        }
        // The trees split and learn something.
        assert!(pooled.iter().map(Tree::leaves).sum::<usize>() > 25 * 8);
        let p: Vec<f64> = z.iter().map(|r| forest_probability(&pooled, r)).collect();
        assert!(pooled_auc(&p, &y).0 > 0.85, "training AUC {}", pooled_auc(&p, &y).0);
    }

    #[test]
    fn partition_boosting_1_4_and_7_uneven_sites_equal_pooled() {
        let (z, y, ids) = data();
        let settings = BoostingSettings { rounds: 30, ..BoostingSettings::default() };
        let n1 = y.iter().filter(|v| **v).count() as f64;
        let base = (n1 / (y.len() as f64 - n1)).ln();
        let edges = pooled_bin_edges(&z, 10, ValueGrid::DEFAULT, settings.bins);
        let pooled = pooled_boosting(&z, &y, base, &edges, &settings);
        for sizes in [vec![229], vec![60, 57, 52, 60], vec![10, 61, 5, 40, 33, 71, 9]] {
            let fed = Federation { z: &z, y: &y, ids: &ids, sites: sites(&sizes), min_count: 1 };
            let (trees, growth) = fed.boosting(&settings, base);
            assert!(max_tree_difference(&trees, &pooled) < 1e-12, "sites {sizes:?}");
            assert_eq!(growth.rounds, 30 * (3 + 1), "three levels of splits and the leaves' values per tree");
        }
        let m: Vec<f64> = z.iter().map(|r| boosted_margin(base, &pooled, r)).collect();
        assert!(pooled_auc(&m, &y).0 > 0.8);
    }

    /// The first 60 patients, column 0's values sorted, and three bin edges per column.
    #[allow(clippy::type_complexity)]
    fn sixty_patients() -> (Vec<Vec<f64>>, Vec<bool>, Vec<String>, Vec<f64>, Vec<Vec<f64>>) {
        let (mut z, mut y, mut ids) = data();
        z.truncate(60);
        y.truncate(60);
        ids.truncate(60);
        let mut col: Vec<f64> = z.iter().map(|r| r[0]).collect();
        col.sort_by(f64::total_cmp);
        let edges = vec![vec![-1.0, 0.0, 1.0]; z[0].len()];
        (z, y, ids, col, edges)
    }

    /// A site's replica grows what the coordinator grows, from the sums alone (fixed point, as
    /// the coordinator sums several sites), over 1, 4 and 7 uneven sites, forest and boosting,
    /// and equals the pooled ensemble; a round that differs in anything — a threshold moved to
    /// another edge, a node left out, other candidate columns, other edges, another finished
    /// ensemble, a round past the end — is refused.
    #[test]
    fn replica_follows_the_honest_growth_and_refuses_any_other_round() {
        use crate::algorithms::lasso::sum_of_answers;
        let (z, y, ids) = data();
        let width = 10;
        let n1 = y.iter().filter(|v| **v).count() as f64;
        let base = (n1 / (y.len() as f64 - n1)).ln();
        let forest = ForestSettings { trees: 8, ..ForestSettings::default() };
        let boosting = BoostingSettings { rounds: 5, ..BoostingSettings::default() };
        for sizes in [vec![229], vec![60, 57, 52, 60], vec![10, 61, 5, 40, 33, 71, 9]] {
            let ranges = sites(&sizes);
            let sum = |answer: &dyn Fn(std::ops::Range<usize>) -> Aggregate| {
                let answers: Vec<SiteAggregate> = ranges.iter().enumerate().map(|(k, r)| SiteAggregate::new(format!("s{k}"), answer(r.clone()))).collect();
                sum_of_answers(&answers).unwrap()
            };
            for settings in [EnsembleSettings::Forest(forest.clone()), EnsembleSettings::Boosting(boosting.clone())] {
                let counts = sum(&|r| site_value_histogram(&z[r], width, ValueGrid::DEFAULT, 1).unwrap());
                let edges = combine_bin_edges(std::slice::from_ref(&counts), width, ValueGrid::DEFAULT, settings.bins()).unwrap();
                let mut coordinator = EnsembleGrower::new(settings.clone(), edges.clone());
                let mut replica = TreeReplica::new(settings.clone(), width);
                {
                    let first = coordinator.request().unwrap();
                    assert!(replica.expect(&edges, first.ensemble, first.growing, first.nodes).is_err(), "no edges before the value counts");
                }
                replica.absorb(&counts).unwrap();
                let mut round = 0;
                while let Some(r) = coordinator.request() {
                    round += 1;
                    replica.expect(&edges, r.ensemble, r.growing, r.nodes).unwrap_or_else(|e| panic!("round {round}, sites {sizes:?}: {e}"));
                    if round == 2 {
                        let refused = |e: &[Vec<f64>], ens: &[Tree], g: &[Tree], n: &[NodeRequest], what: &str| {
                            assert!(replica.expect(e, ens, g, n).is_err(), "{what} was accepted");
                        };
                        // A split moved to the column's next edge.
                        let mut moved = r.growing.to_vec();
                        let node = moved.iter_mut().flat_map(|t| t.nodes.iter_mut()).find(|n| n.column.is_some()).unwrap();
                        let e = &edges[node.column.unwrap() as usize];
                        node.threshold = e[(e.iter().position(|v| *v == node.threshold).unwrap() + 1) % e.len()];
                        refused(&edges, r.ensemble, &moved, r.nodes, "a moved threshold");
                        refused(&edges, r.ensemble, r.growing, &r.nodes[1..], "a node left out");
                        let mut columns = r.nodes.to_vec();
                        columns[0].columns =
                            if columns[0].columns.len() > 1 { columns[0].columns[1..].to_vec() } else { vec![(columns[0].columns[0] + 1) % width as u32] };
                        refused(&edges, r.ensemble, r.growing, &columns, "other candidate columns");
                        // Totals alone where the rule asks columns, or columns where it asks totals.
                        let mut flipped = r.nodes.to_vec();
                        flipped[0].columns = if flipped[0].columns.is_empty() { vec![0] } else { Vec::new() };
                        refused(&edges, r.ensemble, r.growing, &flipped, "a node's totals alone instead of its columns, or the reverse");
                        if let Some(k) = r.nodes.iter().position(|n| n.columns.is_empty()) {
                            let mut asked = r.nodes.to_vec();
                            asked[k].columns = vec![0];
                            refused(&edges, r.ensemble, r.growing, &asked, "columns of a node the rule asks only its totals of");
                        }
                        let mut other_edges = edges.clone();
                        other_edges[0].pop();
                        refused(&other_edges, r.ensemble, r.growing, r.nodes, "other bin edges");
                    }
                    if !r.ensemble.is_empty() {
                        assert!(replica.expect(&edges, &r.ensemble[1..], r.growing, r.nodes).is_err(), "another finished ensemble");
                    }
                    assert!(replica.expect_grown(r.growing).is_err(), "round {round}: an ensemble still growing is scored");
                    let objective = match &settings {
                        EnsembleSettings::Forest(f) => TreeObjective::ForestCounts { seed: f.seed },
                        EnsembleSettings::Boosting(_) => TreeObjective::BoostingGradients { base_margin: base, ensemble: r.ensemble.to_vec() },
                    };
                    let answer = sum(&|s| site_tree_round(&z[s.clone()], &y[s.clone()], &ids[s], &edges, &objective, r.growing, r.nodes, 1).unwrap());
                    let h = combine_tree_round(std::slice::from_ref(&answer), &edges, r.nodes).unwrap();
                    replica.absorb(&answer).unwrap();
                    coordinator.absorb(&h).unwrap();
                }
                assert_eq!(replica.rounds(), round);
                let (last_e, last_g) = (Vec::new(), vec![Tree::leaf(0.0)]);
                assert!(replica.expect(&edges, &last_e, &last_g, &[NodeRequest { tree: 0, node: 0, columns: vec![0] }]).is_err(), "a round past the end");
                let (trees, growth) = coordinator.finish().unwrap();
                assert_eq!(growth.withheld_nodes, 0);
                // What the site scores: exactly the grown ensemble, to the last leaf value.
                replica.expect_grown(&trees).unwrap_or_else(|e| panic!("sites {sizes:?}: {e}"));
                let mut moved = trees.clone();
                let leaf = moved.iter_mut().flat_map(|t| t.nodes.iter_mut()).rfind(|n| n.column.is_none()).unwrap();
                leaf.value = f64::from_bits(leaf.value.to_bits() + 1);
                assert!(replica.expect_grown(&moved).is_err(), "a leaf value moved by one ulp was scored");
                assert!(replica.expect_grown(&trees[1..]).is_err(), "a tree left out was scored");
                let pooled_edges = pooled_bin_edges(&z, width, ValueGrid::DEFAULT, settings.bins());
                assert_eq!(edges, pooled_edges);
                let pooled = match &settings {
                    EnsembleSettings::Forest(f) => pooled_forest(&z, &y, &ids, &edges, f),
                    EnsembleSettings::Boosting(b) => pooled_boosting(&z, &y, base, &edges, b),
                };
                assert!(max_tree_difference(&trees, &pooled) < 1e-9, "sites {sizes:?}");
                assert!(round >= 4, "{round} rounds");
            }
        }
    }

    /// The withheld flag is no membership oracle: a node the coordinator drew around 1 to
    /// `min_count` − 1 of a site's patients is answered byte for byte as one around none.
    #[test]
    fn a_withheld_node_answers_exactly_as_an_empty_one() {
        let (z, y, ids, col, edges) = sixty_patients();
        let (z, y, ids) = (&z[..], &y[..], &ids[..]);
        let objective = TreeObjective::BoostingGradients { base_margin: 0.0, ensemble: Vec::new() };
        let answer = |inside: usize| {
            // Node 1 holds the `inside` smallest values of column 0.
            let threshold = if inside == 0 { col[0] - 1.0 } else { (col[inside - 1] + col[inside]) / 2.0 };
            let leaf = TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.0 };
            let tree = Tree { nodes: vec![TreeNode { column: Some(0), threshold, children: [1, 2], value: 0.0 }, leaf.clone(), leaf] };
            let request = [NodeRequest { tree: 0, node: 1, columns: vec![1, 2] }];
            site_tree_round(z, y, ids, &edges, &objective, &[tree], &request, 5).unwrap()
        };
        let empty = answer(0);
        for inside in 1..5 {
            assert_eq!(answer(inside), empty, "{inside} patients inside");
        }
        assert_ne!(answer(5), empty, "5 patients: answered");
    }

    /// A parent's answer minus its child's is the sibling's: a child whose sibling holds 1 to
    /// `min_count` − 1 of the site's patients is withheld too, whatever its own size.
    #[test]
    fn a_node_whose_sibling_is_small_is_withheld() {
        use crate::proto::Aggregate;
        let (z, y, ids, col, edges) = sixty_patients();
        let (z, y, ids) = (&z[..], &y[..], &ids[..]);
        let ask = |left: usize, min: u64| {
            // Threshold between the `left`-th and next smallest value: `left` patients go left.
            let threshold = (col[left - 1] + col[left]) / 2.0;
            let tree = Tree {
                nodes: vec![
                    TreeNode { column: Some(0), threshold, children: [1, 2], value: 0.0 },
                    TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.0 },
                    TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.0 },
                ],
            };
            let objective = TreeObjective::BoostingGradients { base_margin: 0.0, ensemble: Vec::new() };
            let request = [NodeRequest { tree: 0, node: 2, columns: vec![1] }];
            let a = site_tree_round(z, y, ids, &edges, &objective, &[tree], &request, min).unwrap();
            assert_eq!(a.tensors.iter().find(|t| t.name == "withheld").unwrap().values, [0.0], "only roots carry the flag");
            // Withheld: the node answers zero patients although it holds 60 − `left`.
            a.tensors.iter().find(|t| t.name == "patients").unwrap().values[0] == 0.0
        };
        assert!(ask(3, 5), "57 patients on the right, 3 on the left: the right child is withheld");
        assert!(!ask(5, 5), "55 and 5: answered");
        assert!(!ask(3, 3), "57 and 3 with a minimum of 3: answered");

        // The small set left as an unasked leaf beside an inner node whose two children are
        // asked: root − node 3 − node 4 would be it. Its nodes' path siblings include it.
        let leaf = || TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.0 };
        let (a, b) = ((col[2] + col[3]) / 2.0, (col[30] + col[31]) / 2.0);
        let uncle = Tree {
            nodes: vec![
                TreeNode { column: Some(0), threshold: a, children: [1, 2], value: 0.0 },
                leaf(),
                TreeNode { column: Some(0), threshold: b, children: [3, 4], value: 0.0 },
                leaf(),
                leaf(),
            ],
        };
        let objective = TreeObjective::BoostingGradients { base_margin: 0.0, ensemble: Vec::new() };
        let both = [NodeRequest { tree: 0, node: 3, columns: vec![1] }, NodeRequest { tree: 0, node: 4, columns: vec![1] }];
        let a5 = site_tree_round(z, y, ids, &edges, &objective, std::slice::from_ref(&uncle), &both, 5).unwrap();
        let patients = |a: &Aggregate| a.tensors.iter().find(|t| t.name == "patients").unwrap().values.clone();
        assert_eq!(patients(&a5), vec![0.0, 0.0], "an uncle of 3 patients withholds both");
        let a3 = site_tree_round(z, y, ids, &edges, &objective, &[uncle], &both, 3).unwrap();
        assert!(patients(&a3).iter().all(|p| *p > 0.0), "{:?}", patients(&a3));

        // A node under two parents is not a tree: refused when read.
        let two_parents = Tree {
            nodes: vec![
                TreeNode { column: Some(0), threshold: a, children: [1, 2], value: 0.0 },
                TreeNode { column: Some(0), threshold: b, children: [3, 2], value: 0.0 },
                leaf(),
                leaf(),
            ],
        };
        let flat = write_trees(&[two_parents]);
        assert!(matches!(read_trees(&flat, &mut 0, z[0].len()), Err(SiteRefusal::InvalidParameters(d)) if d.contains("exactly one parent")));
    }

    #[test]
    fn a_site_withholds_nodes_where_it_has_too_few_patients() {
        let (z, y, ids) = data();
        let settings = ForestSettings { trees: 10, min_leaf: 5, ..ForestSettings::default() };
        let fed = Federation { z: &z, y: &y, ids: &ids, sites: sites(&[60, 57, 52, 60]), min_count: 5 };
        let (forest, growth) = fed.forest(&settings);
        assert!(growth.withheld_nodes > 0, "deep nodes hold fewer than 5 patients of some site");
        // Every leaf still predicts a fraction, and the forest still ranks.
        let p: Vec<f64> = z.iter().map(|r| forest_probability(&forest, r)).collect();
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        // Training AUC: 0.79 from exact bins, 0.69 with this `min_count` of 5 on 57-patient
        // sites (their nodes' bins merged into runs of 5, and no split cutting a run into a
        // part of 1 to 4 patients at any site).
        assert!(pooled_auc(&p, &y).0 > 0.65, "{}", pooled_auc(&p, &y).0);
        // Boosting grows too: no root is withheld, whatever the finished trees released.
        let n1 = y.iter().filter(|v| **v).count() as f64;
        let base = (n1 / (y.len() as f64 - n1)).ln();
        let (boosted, growth) = fed.boosting(&BoostingSettings { rounds: 20, min_leaf: 5, ..BoostingSettings::default() }, base);
        assert!(growth.withheld_nodes > 0 && boosted.iter().filter(|t| t.leaves() > 1).count() > 10, "{growth:?}");
        let m: Vec<f64> = z.iter().map(|r| boosted_margin(base, &boosted, r)).collect();
        assert!(pooled_auc(&m, &y).0 > 0.65, "{}", pooled_auc(&m, &y).0);
        // The site half enforces it directly: a node request at the root of a 3-patient site.
        let r = site_tree_round(&z[..3], &y[..3], &ids[..3], &fed.edges(8), &TreeObjective::ForestCounts { seed: 1 }, &[Tree::leaf(0.5)], &[], 5);
        assert!(matches!(r, Err(SiteRefusal::BelowMinCount { .. })));
    }

    /// Property 6 for tree rounds: at `min_count` 5 every run a site releases holds 0 or at
    /// least 5 patients, also as a difference between a node and its parent at the same column
    /// (a red-team review's attack: parent minus child gave one patient's bin and gradient),
    /// with the node's totals kept; at `min_count` 1 nothing moves (the partition tests above).
    #[test]
    fn a_site_sends_no_tree_bin_of_one_to_min_count_minus_one_patients() {
        let (z, y, ids) = data();
        let n = 60;
        let edges = pooled_bin_edges(&z, 10, ValueGrid::DEFAULT, 32);
        let columns: Vec<u32> = (0..z[0].len() as u32).collect();
        // Root, then the root split on column 0 at the end of the root's run nearest the
        // median (a split inside a run is withheld, see the next test).
        let mut counts = vec![0.0; edges[0].len() + 1];
        z[..n].iter().for_each(|r| counts[bin_of(&edges[0], r[0])] += 1.0);
        let cut = nested_runs(&[(counts.clone(), None)], 5).iter().map(|r| r.1).min_by_key(|&b| (counts[..=b].iter().sum::<f64>() - 30.0).abs() as u64).unwrap();
        let leaf = || TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.0 };
        let split = Tree { nodes: vec![TreeNode { column: Some(0), threshold: edges[0][cut], children: [1, 2], value: 0.0 }, leaf(), leaf()] };
        let objective = TreeObjective::BoostingGradients { base_margin: -0.4, ensemble: Vec::new() };
        let answer = |tree: &Tree, node: u32, min: u64| {
            let request = [NodeRequest { tree: 0, node, columns: columns.clone() }];
            let a = SiteAggregate::new("s", site_tree_round(&z[..n], &y[..n], &ids[..n], &edges, &objective, std::slice::from_ref(tree), &request, min).unwrap());
            a.values("histogram").unwrap().to_vec()
        };
        let (root_exact, root) = (answer(&Tree::leaf(0.0), 0, 1), answer(&Tree::leaf(0.0), 0, 5));
        let (child_exact, child) = (answer(&split, 1, 1), answer(&split, 1, 5));
        let mut offset = 0;
        let mut isolated_before = 0;
        for &c in &columns {
            let width = 3 * (edges[c as usize].len() + 1);
            let at = |h: &[f64]| h[offset..offset + width].to_vec();
            let (pe, ce, p, ch) = (at(&root_exact), at(&child_exact), at(&root), at(&child));
            assert_ne!(pe, p, "column {c}: merged");
            // Exact bins: the root minus its child at a bin often leaves 1 to 4 patients.
            isolated_before += pe.chunks(3).zip(ce.chunks(3)).filter(|(a, b)| a[0] - b[0] > 0.0 && a[0] - b[0] < 5.0).count();
            // The child's runs, as the site cut them; over each, root minus child is 0 or ≥ 5.
            let counts = |h: &[f64]| h.chunks(3).map(|b| b[0]).collect::<Vec<f64>>();
            let sibling: Vec<f64> = counts(&pe).iter().zip(counts(&ce)).map(|(a, b)| a - b).collect();
            let runs = nested_runs(&[(counts(&pe), None), (counts(&ce), Some(sibling))], 5);
            assert_eq!(ch, render_in_runs(&ce, &runs), "column {c}: the child's answer is its runs' rendering");
            for &(from, to) in &runs {
                let total = |h: &[f64]| h[3 * from..3 * (to + 1)].chunks(3).map(|b| b[0]).sum::<f64>();
                let (parent, own) = (total(&p), total(&ch));
                assert!(own == 0.0 || own >= 5.0 - 1e-9, "column {c}: a run of {own} patients");
                let difference = parent - own;
                assert!(difference.abs() < 1e-9 || difference >= 5.0 - 1e-9, "column {c}, bins {from}..={to}: root minus child is {difference} patients");
            }
            for j in 0..3 {
                let total = |h: &[f64]| h.iter().skip(j).step_by(3).sum::<f64>();
                assert!((total(&pe) - total(&p)).abs() < 1e-9 && (total(&ce) - total(&ch)).abs() < 1e-9, "column {c}: totals kept");
            }
            offset += width;
        }
        assert!(isolated_before > 10, "the exact bins gave the attack {isolated_before} cells");
    }

    /// Every child of a split is asked, those that cannot grow with no columns: a leaf takes
    /// its value from its own summed totals, and a pair some site withholds is seen at every
    /// level, the last included (before, the deepest level was valued from its parent's split
    /// and a site's withholding there went unseen).
    #[test]
    fn the_last_level_is_asked_for_its_values_and_its_withholding_is_seen() {
        let (z, y, ids) = data();
        let settings = ForestSettings { trees: 10, max_depth: 1, min_leaf: 5, ..ForestSettings::default() };
        let exact = Federation { z: &z, y: &y, ids: &ids, sites: sites(&[60, 57, 52, 60]), min_count: 1 };
        let (forest, growth) = exact.forest(&settings);
        assert_eq!(growth.rounds, 2, "the root's split, then its children's values");
        for (t, tree) in forest.iter().enumerate() {
            for leaf in [1, 2] {
                let (mut positives, mut all) = (0.0, 0.0);
                for (i, r) in z.iter().enumerate() {
                    let w = f64::from(bootstrap_weight(settings.seed, t as u32, &ids[i]));
                    if tree.leaf_of(r) == leaf {
                        all += w;
                        positives += if y[i] { w } else { 0.0 };
                    }
                }
                assert_eq!(tree.nodes[leaf].value, positives / all, "tree {t}, leaf {leaf}: the bootstrap's fraction of positives there");
            }
        }
        let merged = Federation { min_count: 5, ..exact };
        let (_, growth) = merged.forest(&settings);
        assert_eq!(growth.rounds, 2);
        assert!(growth.withheld_nodes > 0, "a site holding 1 to 4 of a stump's leaf (or cutting one of its runs so) withholds the pair");
    }

    /// Property 6 across a split (found in review, 2026-12-07): a child's exact total minus its
    /// parent's runs wholly on its side is its part of the run the threshold cuts. At every
    /// edge of the root's column, a child either is withheld or leaves a part of 0 or at least
    /// `min_count` patients on each side of that run.
    #[test]
    fn a_split_inside_a_run_leaves_no_part_of_one_to_min_count_minus_one_patients() {
        let (z, y, ids) = data();
        let n = 60;
        let edges = pooled_bin_edges(&z, 10, ValueGrid::DEFAULT, 32);
        let objective = TreeObjective::BoostingGradients { base_margin: -0.4, ensemble: Vec::new() };
        let ask = |tree: &Tree, node: u32| {
            let request = [NodeRequest { tree: 0, node, columns: vec![0] }];
            SiteAggregate::new("s", site_tree_round(&z[..n], &y[..n], &ids[..n], &edges, &objective, std::slice::from_ref(tree), &request, 5).unwrap())
        };
        let released = ask(&Tree::leaf(0.0), 0).values("histogram").unwrap().to_vec();
        let mut counts = vec![0.0; edges[0].len() + 1];
        z[..n].iter().for_each(|r| counts[bin_of(&edges[0], r[0])] += 1.0);
        let runs = nested_runs(&[(counts.clone(), None)], 5);
        let run_total = |h: &[f64], (from, to): (usize, usize)| h[3 * from..3 * (to + 1)].iter().step_by(3).sum::<f64>();
        let leaf = || TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.0 };
        let (mut small_parts, mut withheld, mut answered) = (0, 0, 0);
        for (b, &threshold) in edges[0].iter().enumerate() {
            let tree = Tree { nodes: vec![TreeNode { column: Some(0), threshold, children: [1, 2], value: 0.0 }, leaf(), leaf()] };
            // The run the threshold falls inside (between bins b and b + 1), if any.
            let Some(&cut) = runs.iter().find(|&&(from, to)| from <= b && b < to) else { continue };
            let exact_left: f64 = counts[cut.0..=b].iter().sum();
            let total: f64 = counts[cut.0..=cut.1].iter().sum();
            let small = |k: f64| k > 0.0 && k < 5.0;
            small_parts += usize::from(small(exact_left) || small(total - exact_left));
            for node in [1u32, 2] {
                let patients = ask(&tree, node).values("patients").unwrap()[0];
                if patients == 0.0 {
                    withheld += 1;
                    continue;
                }
                // The attack: the child's total minus the released runs wholly on its side.
                let wholly: f64 = runs.iter().filter(|&&(from, to)| if node == 1 { to <= b } else { from > b }).map(|&r| run_total(&released, r)).sum();
                let part = patients - wholly;
                answered += 1;
                assert!(
                    part.abs() < 1e-9 || (total - part).abs() < 1e-9 || (part >= 5.0 - 1e-9 && total - part >= 5.0 - 1e-9),
                    "threshold {threshold}: node {node} leaves {part} of a run of {total}"
                );
            }
        }
        assert!(small_parts > 2, "the honest thresholds cut {small_parts} runs into a small part");
        assert!(withheld >= 2 * small_parts, "every child of such a split is withheld ({withheld})");
        assert!(answered > 2, "splits inside runs that leave parts of 5 or more are answered ({answered})");
    }

    /// Property 6 across two columns (a second review's attack, 2026-12-07): the root splits
    /// on column 0, its child on column 1 inside one of the child's runs there. Where the
    /// root's own runs on column 1 meet at the threshold, the root's patients of that run below
    /// it minus the grandchild's part are the root's other child's patients there — one
    /// patient, with its gradient, in the review's run. Answered grandchildren leave 0 or at
    /// least `min_count`.
    #[test]
    fn a_split_below_another_columns_split_leaves_the_siblings_above_no_small_part() {
        let (z, y, ids) = data();
        let edges = pooled_bin_edges(&z, 10, ValueGrid::DEFAULT, 32);
        let objective = TreeObjective::BoostingGradients { base_margin: -0.4, ensemble: Vec::new() };
        let leaf = || TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.0 };
        let (mut attacks, mut withheld) = (0, 0);
        // Several cohorts (the whole one and 60-patient slices) and pairs of columns.
        for rows in [0..z.len(), 0..60, 60..120, 120..180, 169..229] {
            let (z, y, ids) = (&z[rows.clone()], &y[rows.clone()], &ids[rows]);
            for (ca, cb) in [(0usize, 1usize), (2, 3), (4, 5)] {
                let counts = |c: usize, keep: &dyn Fn(&[f64]) -> bool| {
                    let mut v = vec![0.0; edges[c].len() + 1];
                    z.iter().filter(|r| keep(r)).for_each(|r| v[bin_of(&edges[c], r[c])] += 1.0);
                    v
                };
                let root_on_b = counts(cb, &|_| true);
                let root_runs_on_b = nested_runs(&[(root_on_b.clone(), None)], 5);
                for (_, to) in nested_runs(&[(counts(ca, &|_| true), None)], 5) {
                    let Some(&ta) = edges[ca].get(to) else { continue };
                    let left_on_b = counts(cb, &|r| r[ca] < ta);
                    let right_on_b = counts(cb, &|r| r[ca] >= ta);
                    let parent_runs = nested_runs(&[(root_on_b.clone(), None), (left_on_b.clone(), Some(right_on_b))], 5);
                    for (b, &tb) in edges[cb].iter().enumerate() {
                        let Some(&run) = parent_runs.iter().find(|&&(from, to)| from <= b && b < to) else { continue };
                        let tree = Tree {
                            nodes: vec![
                                TreeNode { column: Some(ca as u32), threshold: ta, children: [1, 2], value: 0.0 },
                                TreeNode { column: Some(cb as u32), threshold: tb, children: [3, 4], value: 0.0 },
                                leaf(),
                                leaf(),
                                leaf(),
                            ],
                        };
                        let request = [NodeRequest { tree: 0, node: 3, columns: Vec::new() }];
                        let a = SiteAggregate::new("s", site_tree_round(z, y, ids, &edges, &objective, std::slice::from_ref(&tree), &request, 5).unwrap());
                        let patients = a.values("patients").unwrap()[0];
                        if patients == 0.0 {
                            withheld += 1;
                            continue;
                        }
                        if !root_runs_on_b.iter().any(|r| r.1 == b) {
                            continue; // the root's runs do not meet at the threshold
                        }
                        // The attack, from released totals only.
                        let root_below: f64 = root_on_b[run.0..=b].iter().sum();
                        let parent_before: f64 = parent_runs.iter().filter(|r| r.1 < run.0).map(|r| left_on_b[r.0..=r.1].iter().sum::<f64>()).sum();
                        let part = root_below - (patients - parent_before);
                        attacks += 1;
                        assert!(
                            part.abs() < 1e-9 || part >= 5.0 - 1e-9,
                            "columns {ca}, {cb}: root split at {ta}, child at {tb}: the root's other child holds {part} patients there"
                        );
                    }
                }
            }
        }
        assert!(attacks > 5 && withheld > 5, "{attacks} answered grandchildren attacked, {withheld} withheld");
    }

    /// A third review's case: the parent's patients of the cut run all lie on one side of the
    /// threshold, yet the root's finer runs meet there, so the grandchild's total gives the
    /// root's other child's 2 patients below it. Built by hand: node 1 (column 0 < 0) holds 5
    /// patients in column 1's bin 0, node 2 holds 2 there and 5 in bin 1; node 1's one run on
    /// column 1 spans both, and node 1 splits at the bins' boundary.
    #[test]
    fn the_path_siblings_part_is_checked_where_the_parents_patients_lie_on_one_side() {
        let mut z = vec![vec![-1.0, 0.5]; 5];
        z.extend(vec![vec![1.0, 0.5]; 2]);
        z.extend(vec![vec![1.0, 1.5]; 5]);
        let y: Vec<bool> = (0..z.len()).map(|i| i % 2 == 0).collect();
        let ids: Vec<String> = (0..z.len()).map(|i| format!("P{i}")).collect();
        let edges = vec![vec![0.0], vec![1.0, 2.0, 3.0]];
        let leaf = || TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.0 };
        let tree = Tree {
            nodes: vec![
                TreeNode { column: Some(0), threshold: 0.0, children: [1, 2], value: 0.0 },
                TreeNode { column: Some(1), threshold: 1.0, children: [3, 4], value: 0.0 },
                leaf(),
                leaf(),
                leaf(),
            ],
        };
        // What the attack reads: the root's runs on column 1 meet at the threshold, node 1's do not.
        let root: Vec<f64> = vec![7.0, 5.0, 0.0, 0.0];
        assert_eq!(nested_runs(&[(root.clone(), None)], 5), [(0, 0), (1, 3)]);
        assert_eq!(nested_runs(&[(root, None), (vec![5.0, 0.0, 0.0, 0.0], Some(vec![2.0, 5.0, 0.0, 0.0]))], 5), [(0, 3)]);
        let objective = TreeObjective::BoostingGradients { base_margin: 0.0, ensemble: Vec::new() };
        let request = [NodeRequest { tree: 0, node: 3, columns: Vec::new() }, NodeRequest { tree: 0, node: 4, columns: Vec::new() }];
        let a = SiteAggregate::new("s", site_tree_round(&z, &y, &ids, &edges, &objective, &[tree], &request, 5).unwrap());
        // Answered, node 3's 5 patients would leave the root's run of 7 below the threshold
        // with node 2's 2 there.
        assert_eq!(a.values("patients").unwrap(), [0.0, 0.0], "the pair is withheld");
    }

    /// Boosting's successive trees grow over the same patients (a second review's attack): a
    /// node of the growing tree that holds, or lies within, a finished tree's node and differs
    /// from it by 1 to `min_count` − 1 patients is withheld.
    #[test]
    fn a_boosted_tree_answers_no_node_a_few_patients_from_a_finished_trees() {
        let (z, y, ids) = data();
        let n = 60;
        let edges = pooled_bin_edges(&z, 10, ValueGrid::DEFAULT, 32);
        let stump = |t: f64| Tree {
            nodes: vec![
                TreeNode { column: Some(0), threshold: t, children: [1, 2], value: 0.0 },
                TreeNode { column: None, threshold: 0.0, children: [0, 0], value: 0.1 },
                TreeNode { column: None, threshold: 0.0, children: [0, 0], value: -0.1 },
            ],
        };
        let below = |t: f64| z[..n].iter().filter(|r| r[0] < t).count() as i64;
        let (mut small_differences, mut answered) = (0, 0);
        for &ta in &edges[0] {
            for &tb in &edges[0] {
                let objective = TreeObjective::BoostingGradients { base_margin: -0.4, ensemble: vec![stump(ta)] };
                let request = [NodeRequest { tree: 0, node: 1, columns: Vec::new() }, NodeRequest { tree: 0, node: 2, columns: Vec::new() }];
                let a = SiteAggregate::new("s", site_tree_round(&z[..n], &y[..n], &ids[..n], &edges, &objective, &[stump(tb)], &request, 5).unwrap());
                let (patients, sibling) = (a.values("patients").unwrap()[0], a.values("patients").unwrap()[1]);
                let difference = (below(ta) - below(tb)).abs();
                let answered_before = below(ta) >= 5 && n as i64 - below(ta) >= 5; // else the finished stump's leaves were withheld
                if answered_before && (1..5).contains(&difference) {
                    small_differences += 1;
                    // The sibling too: the root minus the sibling would be the node.
                    assert_eq!((patients, sibling), (0.0, 0.0), "thresholds {ta} and {tb}: {difference} patients apart");
                    // And the node's children: their sum would be the node.
                    let mut deeper = stump(tb);
                    deeper.nodes[1] = TreeNode { column: Some(1), threshold: 0.0, children: [3, 4], value: 0.0 };
                    deeper.nodes.extend([stump(0.0).nodes[1].clone(), stump(0.0).nodes[2].clone()]);
                    let request = [NodeRequest { tree: 0, node: 3, columns: Vec::new() }, NodeRequest { tree: 0, node: 4, columns: Vec::new() }];
                    let a = SiteAggregate::new("s", site_tree_round(&z[..n], &y[..n], &ids[..n], &edges, &objective, &[deeper], &request, 5).unwrap());
                    assert_eq!(a.values("patients").unwrap(), [0.0, 0.0], "thresholds {ta} and {tb}: the children of a withheld node");
                } else if patients > 0.0 {
                    answered += 1;
                }
            }
        }
        assert!(small_differences > 10 && answered > 10, "{small_differences} pairs a few patients apart, {answered} answered");
        // A finished stump whose small leaf this site withheld (with its sibling, which holds
        // all but 1 to 4 patients): the next tree's root is still answered, as every root is.
        let ta = *edges[0].iter().find(|&&t| (1..5).contains(&below(t))).expect("an edge a few patients from the bottom");
        let objective = TreeObjective::BoostingGradients { base_margin: -0.4, ensemble: vec![stump(ta)] };
        let root = [NodeRequest { tree: 0, node: 0, columns: vec![0] }];
        let a = SiteAggregate::new("s", site_tree_round(&z[..n], &y[..n], &ids[..n], &edges, &objective, &[Tree::leaf(0.0)], &root, 5).unwrap());
        assert_eq!(a.values("patients").unwrap()[0], n as f64);
    }

    #[test]
    fn random_labels_give_trees_a_validation_auc_near_one_half() {
        let (z, _, ids) = data();
        let mut u = crate::algorithms::testdata::uniform_stream(0x1234_5678_9abc_def1);
        let y: Vec<bool> = z.iter().map(|_| u() < 0.35).collect();
        let cut = 160;
        let fed = Federation { z: &z[..cut], y: &y[..cut], ids: &ids[..cut], sites: sites(&[60, 50, 50]), min_count: 1 };
        let (forest, _) = fed.forest(&ForestSettings { trees: 50, ..ForestSettings::default() });
        let n1 = y[..cut].iter().filter(|v| **v).count() as f64;
        let base = (n1 / (cut as f64 - n1)).ln();
        let (boosted, _) = fed.boosting(&BoostingSettings { rounds: 50, ..BoostingSettings::default() }, base);
        for (name, scores) in [
            ("forest", z[cut..].iter().map(|r| forest_probability(&forest, r)).collect::<Vec<f64>>()),
            ("boosting", z[cut..].iter().map(|r| boosted_margin(base, &boosted, r)).collect()),
        ] {
            let (auc, se) = pooled_auc(&scores, &y[cut..]);
            assert!((auc - 0.5).abs() < 2.5 * se.max(0.05), "{name}: validation AUC {auc} ± {se} on random labels");
        }
        // On the training rows the trees do fit the noise (the test can see a difference).
        let train: Vec<f64> = z[..cut].iter().map(|r| boosted_margin(base, &boosted, r)).collect();
        assert!(pooled_auc(&train, &y[..cut]).0 > 0.7);
    }

    #[test]
    fn bootstrap_weights_are_poisson_one() {
        let w: Vec<u32> = (0..20_000).map(|i| bootstrap_weight(7, 3, &format!("X{i}"))).collect();
        let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / w.len() as f64;
        let zeros = w.iter().filter(|&&v| v == 0).count() as f64 / w.len() as f64;
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
        assert!((zeros - (-1.0f64).exp()).abs() < 0.01, "P(0) {zeros}");
        let differ = (0..100).filter(|i| bootstrap_weight(7, 3, &format!("X{i}")) != bootstrap_weight(7, 4, &format!("X{i}"))).count();
        assert!(differ > 30, "trees draw different bootstrap samples");
    }

    #[test]
    fn trees_travel_flat_and_malformed_trees_are_refused() {
        let (z, y, ids) = data();
        let fed = Federation { z: &z, y: &y, ids: &ids, sites: sites(&[229]), min_count: 1 };
        let (forest, _) = fed.forest(&ForestSettings { trees: 3, ..ForestSettings::default() });
        let flat = write_trees(&forest);
        let back = read_trees(&flat, &mut 0, 10).unwrap();
        assert_eq!(back, forest);
        assert!(read_trees(&flat, &mut 0, 2).is_err(), "columns beyond the design");
        let cycle = [1.0, 2.0, 0.0, 0.5, 0.0, 1.0, 0.1, -1.0, 0.0, 0.0, 0.0, 0.2];
        assert!(read_trees(&cycle, &mut 0, 10).is_err(), "a child pointing back at its parent");
        assert!(read_trees(&flat[..flat.len() - 1], &mut 0, 10).is_err(), "truncated");
    }
}
