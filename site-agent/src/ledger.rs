//! The models this site helped fit, so that it scores only those (issue 17, property 5), and
//! the standardisers and tree edges it first answered with, so that they stay fixed.
//!
//! Attack: a score task answers, per cohort and outcome class, a histogram of each scorer's
//! predictions on a fine grid. A "model" that is one feature column (or a tree whose leaf is a
//! box on age, sex and stage) turns that histogram into every patient's value of the column
//! with their outcome. The plan's coefficient bounds do not stop this: the grid is fine enough
//! for any bounded slope.
//!
//! Check: in a study whose rounds the site recomputes (it pins the sites' keys, or has the
//! site alone), a model the sites fitted is scored only as its fit ended: the score task
//! carries every site's signed answer to the fit's last round, the site's replica of that fit
//! absorbs them, and the scorer must be exactly what it reached — a logistic regression's or
//! SVM's final Newton point and the SVM's Platt scaling, a tree ensemble's trees to the last
//! leaf value ([`FitEnds`]). Not an iterate the fit passed through, nor a point of the
//! coordinator's choosing. Its own site-alone baseline, which the study scores at every site,
//! a site scores at any point of that fit. In a study it cannot recompute, the site records
//! every linear model it evaluated in a classifier round (logistic regression, the SVMs'
//! Platt rounds) under the design and standardiser of that round and scores a logistic
//! regression or SVM only if it is one of them, and trees only with thresholds on the pinned
//! edges. Scorers it cannot verify from its own rounds — naive Bayes (from merged moments),
//! other sites' site-alone baselines, and tree ensembles of a study whose rounds it cannot
//! recompute — are accepted only within a per-study budget derived from the plan: one of each
//! kind per model of the plan (three per sequence), and one site-alone baseline per other site
//! and sequence.
//! A scorer answered once may be asked again (DeLong's comparison re-scores the same models);
//! a comparison may only name models already scored.
//!
//! The ledger also pins what a sweep would move: a model design's standardiser and each
//! feature column's centre and scale at their first use, and a design's tree bin edges at its
//! first tree round. The first choice is still the coordinator's (bounded by the plan's
//! `max_scale_ratio` and the value grid); only the repeats that difference one patient are
//! refused.
//!
//! What remains: within the budget an attacker may still choose an unverifiable scorer (six
//! naive Bayes "models" on single columns, say); small-cell merging of the score histograms
//! (property 6) is what bounds their resolution.

use std::path::{Path, PathBuf};

use fedrad_shared::algorithms::SiteRefusal;
use fedrad_shared::algorithms::classifiers::{ClassifierKind, Scorer};
use fedrad_shared::plan::StudyPlan;
use fedrad_shared::proto;
use prost::Message;

/// Bin edges to pin once their first tree round is answered (nothing when already pinned).
pub struct EdgePin {
    path: PathBuf,
    edges: Option<Vec<Vec<f64>>>,
}

impl EdgePin {
    pub fn record(self) -> std::io::Result<()> {
        match self.edges {
            Some(e) => crate::engine::write_atomic(&self.path, &serde_json::to_vec(&e).expect("edges serialise")),
            None => Ok(()),
        }
    }
}

/// How a score task's fitted models are checked ([`ModelLedger::accept_scorers`]).
pub enum FitEnds<'a> {
    /// The study's rounds are recomputed: a model the sites fitted is scored only as its fit
    /// ended. `check(slot)` is `Ok(false)` when the task carries no end for the scorer at
    /// `slot`, `Ok(true)` when it does and the scorer is exactly what that fit reached (a
    /// tree ensemble as the site's replica grew it, a Newton fit's final point and Platt
    /// scaling; [`crate::replay::Runs::check_end`]), and a refusal otherwise.
    Recomputed(&'a dyn Fn(usize) -> Result<bool, SiteRefusal>),
    /// A study this site cannot recompute (several sites, no pinned keys, the site's
    /// `policy.unverified_rounds`): linear models at any point their fits evaluated, trees with
    /// thresholds on the pinned edges within the budget of unverified scorers.
    Unverifiable,
}

/// Fitted models of one kind a site scores per model design and standardiser (see
/// [`ModelLedger::accept_scorers`]).
pub const FITTED_SCORED_PER_DESIGN: usize = 2;

/// The ledger key a fitted linear scorer was recorded under ([`ModelLedger::record_fit`]);
/// none for the other kinds.
fn fitted_key(frame: &[u8], scorer: &Scorer, spec: &proto::ScorerSpec) -> Option<String> {
    match scorer {
        Scorer::Logistic { intercept, coefficients } => Some(linear_key(frame, "logistic", None, &[&[*intercept][..], coefficients].concat(), &[])),
        Scorer::LinearSvm { intercept, coefficients, platt_a, platt_b } => {
            Some(linear_key(frame, "platt", None, &[&[*intercept][..], coefficients].concat(), &[*platt_a, *platt_b]))
        }
        Scorer::RbfSvm { intercept, coefficients, platt_a, platt_b, .. } => {
            Some(linear_key(frame, "platt", spec.random_features.as_ref(), &[&[*intercept][..], coefficients].concat(), &[*platt_a, *platt_b]))
        }
        _ => None,
    }
}

/// The model designs a study's hyperparameter search may cover: Models I, II and III of each
/// of the plan's sequences.
pub fn searched_designs(plan: &StudyPlan) -> usize {
    3 * plan.selection.feature_sets().len().max(1)
}

/// The columns of a feature task as the standardiser pins know them: by table name and
/// number (as an earlier FedRad pinned them), and by key — the column's name independent of
/// the table that holds it (`t2:<name>`, see
/// [`canonical_column`](fedrad_shared::algorithms::extraction::canonical_column)) and the
/// training patients the table has rows for. One column over one population then has one
/// pinned standardiser whether a task names it in `t2`, `t2+deep`, `t1c+t2` or `t1c+t2+deep`;
/// over another population (a table that lacks some patients) it is another column's worth of
/// moments, standardised on its own.
pub struct FeatureColumnPins {
    pub table: String,
    pub columns: Vec<u32>,
    pub keys: Vec<String>,
}

/// One study plan's ledger: `<study>/ledger/<plan>/{fits,scored,unverified}.txt` (one key per
/// line) and its pinned standardisers and bin edges.
pub struct ModelLedger {
    dir: PathBuf,
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    crate::audit::hex(ctx.finish().as_ref())
}

fn floats(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The design and standardiser a model applies to, as bytes.
fn model_frame(design: Option<&proto::ModelDesign>, std: Option<&proto::Standardiser>) -> Vec<u8> {
    let mut b = design.map(|d| d.encode_to_vec()).unwrap_or_default();
    b.extend(std.map(|s| s.encode_to_vec()).unwrap_or_default());
    b
}

/// The key of a linear model: its frame, its kind (with its random features) and parameters.
fn linear_key(frame: &[u8], kind: &str, rff: Option<&proto::RandomFeatures>, coefficients: &[f64], extra: &[f64]) -> String {
    let rff = rff.map(|r| r.encode_to_vec()).unwrap_or_default();
    sha256_hex(&[frame, kind.as_bytes(), &rff, &floats(coefficients), &floats(extra)])
}

impl ModelLedger {
    /// The ledger of one approved plan of a study: a re-approved, changed plan starts its own
    /// (the split and folds, fixed per study, stay).
    pub fn new(study_dir: &Path, plan_sha256: &str) -> ModelLedger {
        ModelLedger { dir: study_dir.join("ledger").join(plan_sha256.get(..16).unwrap_or(plan_sha256)) }
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn append(&self, file: &str, line: &str) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&self.dir)?;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(file))?;
        writeln!(f, "{line}")?;
        f.sync_data()
    }

    /// Accepts a classifier round that leaves out a fold (a hyperparameter search) only for a
    /// design already searched, or while the study has searched fewer designs than
    /// [`searched_designs`] allows; records a new one.
    ///
    /// Why: every fit starts from zero coefficients, so the first rounds of a design's fit over
    /// the training patients and of its fit without fold k stand at the same point, and their
    /// difference is a sum over fold k alone: its count, its outcome-weighted column sums and
    /// its Gram matrix over the design's columns. Recomputation cannot move those points (they
    /// are the fits' own), so the number of designs bounds how many such fold sums a
    /// coordinator collects — without it, designs covering every pair of columns would give
    /// each fold's Gram matrix over every candidate feature.
    pub fn accept_searched_design(&self, plan: &StudyPlan, design: Option<&proto::ModelDesign>) -> Result<(), SiteRefusal> {
        let id = sha256_hex(&[&design.map(|d| d.encode_to_vec()).unwrap_or_default()]);
        let known = self.lines("searched_designs.txt");
        if known.contains(&id) {
            return Ok(());
        }
        let most = searched_designs(plan);
        if known.len() >= most {
            return Err(SiteRefusal::InvalidParameters(format!(
                "a hyperparameter search on another model design: this study's plan searches at most {most} designs (Models I–III per sequence), and this site has answered search rounds for {}",
                known.len()
            )));
        }
        self.append("searched_designs.txt", &id).map_err(|e| SiteRefusal::Precondition(format!("cannot record the searched design: {e}")))
    }

    /// Records the model a classifier round evaluated (after the site answered it).
    pub fn record_fit(&self, t: &proto::ClassifierRoundTask) -> std::io::Result<()> {
        use proto::ClassifierObjective as O;
        let frame = model_frame(t.design.as_ref(), t.standardiser.as_ref());
        let key = match O::try_from(t.objective) {
            Ok(O::Logistic) => linear_key(&frame, "logistic", None, &t.parameters, &[]),
            Ok(O::Platt) => linear_key(&frame, "platt", t.random_features.as_ref(), &t.svm, &t.parameters),
            _ => return Ok(()), // squared-hinge rounds fit the SVM that its Platt rounds then name
        };
        if t.exclude_fold > 0 {
            // A search's fit without fold k: scored out of fold in fold k's place only.
            self.append("fold_fits.txt", &format!("{} {key}", t.exclude_fold))?;
        }
        if t.site_alone {
            // The site's own site-alone baseline, scored without its fit's end (the study's
            // score task goes to every site; only this one fitted it).
            self.append("alone_fits.txt", &key)?;
        }
        self.append("fits.txt", &key)
    }

    /// Accepts the scorers of a score task (recording the new ones), or refuses naming why.
    ///
    /// Of the models this site fitted, at most [`FITTED_SCORED_PER_DESIGN`] of one kind are
    /// scored per model design and standardiser (out-of-fold scoring of a hyperparameter
    /// search, `out_of_fold`, aside): the study scores the final model of each fit, and a site
    /// its own site-alone baseline. Without the cap, any bounded point answered in one
    /// classifier round counts as fitted, so one two-column design could be scored along
    /// hundreds of directions cos θ·x₁ + sin θ·x₂, each ordering the patients differently; the
    /// small-cell groups' exact moments then change by the two patients that swap across a
    /// cut, which gives both patients' values (a red-team review decoded 90 % of a cohort's
    /// values to 0.001 SD with 1 000 directions).
    pub fn accept_scorers(
        &self,
        plan: &StudyPlan,
        site_id: &str,
        design: Option<&proto::ModelDesign>,
        std: Option<&proto::Standardiser>,
        scorers: &[proto::ScorerSpec],
        folds: u32,
        ends: FitEnds,
    ) -> Result<(), SiteRefusal> {
        let out_of_fold = folds > 0;
        let frame = model_frame(design, std);
        let fold_fits = if out_of_fold { self.lines("fold_fits.txt") } else { Vec::new() };
        let frame_id = sha256_hex(&[&frame]);
        let verified = self.lines("verified.txt");
        let width = design.map_or(0, |d| d.features.as_ref().map_or(0, |f| f.columns.len()) + d.clinical_columns.len());
        let fits = self.lines("fits.txt");
        let alone_fits = self.lines("alone_fits.txt");
        let mut scored = self.lines("scored.txt");
        let mut unverified = self.lines("unverified.txt");
        let sequences = plan.selection.feature_sets().len().max(1);
        let other_sites = plan.site_set().iter().filter(|s| s.as_str() != site_id).count();
        let mut new = Vec::new();
        let mut new_verified: Vec<String> = Vec::new();
        for (slot, spec) in scorers.iter().enumerate() {
            let scorer = Scorer::from_proto(spec, width)?;
            if out_of_fold {
                // Scorers C-major, fold k's at g·K + k − 1: each must be a fit that left out
                // that very fold, so no in-sample model is scored as if held out.
                let fold = slot as u32 % folds + 1;
                let fitted = fitted_key(&frame, &scorer, spec);
                if !fitted.is_some_and(|f| fold_fits.contains(&format!("{fold} {f}"))) {
                    return Err(SiteRefusal::InvalidParameters(format!(
                        "out-of-fold scorer {slot} (fold {fold}) is not a model this site fitted without fold {fold}: it scores a search's held-out patients only with the fits that left them out"
                    )));
                }
            }
            // Out-of-fold acceptances are kept apart: a fold fit's point scored in its fold's
            // place is not thereby a model scored over every patient (nor one to compare).
            let key = if out_of_fold { sha256_hex(&[&frame, b"out-of-fold", &spec.encode_to_vec()]) } else { sha256_hex(&[&frame, &spec.encode_to_vec()]) };
            if scored.contains(&key) || new.iter().any(|(k, _)| k == &key) {
                continue;
            }
            // In a study whose rounds this site recomputes, a model it fitted is scored as its
            // fit ended (the task carries the signed answers to the fit's last round), or as the
            // site's own site-alone baseline; out of fold, or in a study it cannot recompute,
            // any point its fits evaluated counts.
            let recomputed = matches!(ends, FitEnds::Recomputed(_)) && !out_of_fold;
            let ended = match &ends {
                FitEnds::Recomputed(check) if !out_of_fold => check(slot)?,
                _ => false,
            };
            let fitted = fitted_key(&frame, &scorer, spec);
            let fitted_here =
                if recomputed { ended || fitted.as_ref().is_some_and(|f| alone_fits.contains(f)) } else { fitted.as_ref().is_some_and(|f| fits.contains(f)) };
            if fitted.is_some() && fitted_here {
                if !out_of_fold {
                    let label = scorer.kind().label();
                    let prefix = format!("{frame_id} {label} ");
                    let earlier = verified.iter().filter(|l| l.starts_with(&prefix)).count();
                    let now = new_verified.iter().filter(|l: &&String| l.starts_with(&prefix)).count();
                    if earlier + now >= FITTED_SCORED_PER_DESIGN {
                        return Err(SiteRefusal::InvalidParameters(format!(
                            "another fitted {label} model on a design and standardiser this site has scored {FITTED_SCORED_PER_DESIGN} of already: it scores the final model of a fit, not every point a fit passed through"
                        )));
                    }
                    new_verified.push(format!("{prefix}{key}"));
                }
                new.push((key, None));
                continue;
            }
            let kind = scorer.kind();
            let trees = matches!(kind, ClassifierKind::RandomForest | ClassifierKind::GradientBoosting);
            if trees && recomputed {
                if !ended {
                    return Err(SiteRefusal::InvalidParameters(format!(
                        "scorer {slot} is a tree ensemble, and the task carries no signed answers to its last tree round: this site scores only the ensemble its replica grew"
                    )));
                }
                new.push((key, None));
                continue;
            }
            if trees {
                let edges = self
                    .pinned_edges(&frame, kind == ClassifierKind::RandomForest)
                    .ok_or_else(|| SiteRefusal::InvalidParameters(format!("a {} this site took no part in growing", kind.label())))?;
                for t in scorer.trees() {
                    fedrad_shared::algorithms::trees::site_accepts_thresholds(t, &edges)?;
                }
            }
            let (budget, why) = match kind {
                // A leave-one-hospital-out analysis has no site-alone baselines, nor has a study
                // that secure-sums without opting in to them.
                ClassifierKind::LogisticRegression if !fedrad_shared::plan::runs_site_alone_baselines(plan) => (0, "the approved plan runs no site-alone baselines"),
                ClassifierKind::LogisticRegression => (other_sites * sequences, "other sites' site-alone baselines"),
                ClassifierKind::LinearSvm | ClassifierKind::RbfSvm => (0, "SVMs this site fitted"),
                _ => (3 * sequences, "one per model of the plan"),
            };
            let used = unverified.iter().chain(new.iter().filter_map(|(_, k)| k.as_ref())).filter(|k| k.as_str() == kind.label()).count();
            if used >= budget {
                return Err(SiteRefusal::InvalidParameters(format!(
                    "a {} model this site did not fit{}: it scores only models whose fitting rounds it answered, and of the ones it cannot verify at most {budget} ({why}), all used",
                    kind.label(),
                    if recomputed { " to its end (the task carries no signed answers to the last round of a fit that reached it)" } else { "" }
                )));
            }
            new.push((key, Some(kind.label().to_string())));
        }
        let io = |e: std::io::Error| SiteRefusal::Precondition(format!("cannot record the scored models: {e}"));
        for line in new_verified {
            self.append("verified.txt", &line).map_err(io)?;
        }
        for (key, kind) in new {
            self.append("scored.txt", &key).map_err(io)?;
            scored.push(key);
            if let Some(k) = kind {
                self.append("unverified.txt", &k).map_err(io)?;
                unverified.push(k);
            }
        }
        Ok(())
    }

    /// The held-out site's count of a leave-one-hospital-out analysis's models (each already
    /// attested by every fitting site, see the engine's `verify_attestations`): at most
    /// one per classifier of each model of the plan (`classifiers × 3 × sequences`), each
    /// scored once per cohort in the same answer; a model scored before may be asked again.
    pub fn accept_held_out_scorers(
        &self,
        plan: &StudyPlan,
        design: Option<&proto::ModelDesign>,
        std: Option<&proto::Standardiser>,
        scorers: &[proto::ScorerSpec],
    ) -> Result<(), SiteRefusal> {
        let frame = model_frame(design, std);
        let most = plan.models.classifiers.len().max(1) * searched_designs(plan);
        let scored = self.lines("held_out_scored.txt");
        let mut new = Vec::new();
        for spec in scorers {
            let key = sha256_hex(&[&frame, &spec.encode_to_vec()]);
            if !scored.contains(&key) && !new.contains(&key) {
                new.push(key);
            }
        }
        if scored.len() + new.len() > most {
            return Err(SiteRefusal::InvalidParameters(format!(
                "the held-out site scores at most {most} models per analysis (one per classifier of each model of the plan), and this task would take it to {}",
                scored.len() + new.len()
            )));
        }
        for key in new {
            self.append("held_out_scored.txt", &key).map_err(|e| SiteRefusal::Precondition(format!("cannot record the scored models: {e}")))?;
        }
        Ok(())
    }

    fn edges_path(&self, frame: &[u8], forest: bool) -> PathBuf {
        let kind: &[u8] = if forest { b"forest" } else { b"boosting" };
        self.dir.join(format!("edges-{}.json", &sha256_hex(&[frame, kind])[..32]))
    }

    /// Pins a design's tree bin edges at the first tree round this site answers for it: later
    /// rounds (and the trees scored) must use the same, so a coordinator cannot move an edge to
    /// difference one patient out of a node. Returns what to record once the round is answered.
    pub fn accept_edges(&self, design: Option<&proto::ModelDesign>, std: Option<&proto::Standardiser>, forest: bool, edges: &[Vec<f64>]) -> Result<EdgePin, SiteRefusal> {
        let path = self.edges_path(&model_frame(design, std), forest);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let pinned: Vec<Vec<f64>> = serde_json::from_slice(&bytes).map_err(|e| SiteRefusal::Precondition(format!("{}: {e}", path.display())))?;
                if pinned != edges {
                    return Err(SiteRefusal::InvalidParameters("the bin edges differ from the ones this design's trees were grown on".into()));
                }
                Ok(EdgePin { path, edges: None })
            }
            Err(_) => Ok(EdgePin { path, edges: Some(edges.to_vec()) }),
        }
    }

    /// The edges a design's trees were grown on here, if any.
    fn pinned_edges(&self, frame: &[u8], forest: bool) -> Option<Vec<Vec<f64>>> {
        serde_json::from_slice(&std::fs::read(self.edges_path(frame, forest)).ok()?).ok()
    }

    fn design_standardiser_path(&self, design: Option<&proto::ModelDesign>) -> PathBuf {
        let design = design.map(|d| d.encode_to_vec()).unwrap_or_default();
        self.dir.join(format!("standardiser-{}.pb", &sha256_hex(&[&design])[..32]))
    }

    /// Pins an earlier FedRad kept per table name and column number (read, so that a site
    /// upgraded during a study keeps them; no longer written).
    fn table_pins(&self, table: &str) -> std::collections::BTreeMap<u32, (f64, f64)> {
        let path = self.dir.join(format!("standardiser-{}.json", &sha256_hex(&[table.as_bytes()])[..32]));
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn column_pins_path(&self) -> PathBuf {
        self.dir.join("standardiser-columns.json")
    }

    /// The pinned centre and scale per column key (see [`FeatureColumnPins`]).
    fn column_pins(&self) -> std::collections::BTreeMap<String, (f64, f64)> {
        std::fs::read(self.column_pins_path()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Whether a design's standardiser is already pinned here: `Some(())` when `std` is the
    /// pinned one, a refusal when it differs, `None` when the design has none pinned yet. The
    /// engine asks this before the bound relative to its own data, so that once a design is
    /// pinned, another standardiser is refused the same way within the bound or below it.
    pub fn design_standardiser_pinned(&self, design: Option<&proto::ModelDesign>, std: Option<&proto::Standardiser>) -> Result<Option<()>, SiteRefusal> {
        let std = std.map(|s| s.encode_to_vec()).unwrap_or_default();
        match std::fs::read(self.design_standardiser_path(design)) {
            Ok(pinned) if pinned == std => Ok(Some(())),
            Ok(_) => Err(SiteRefusal::InvalidParameters("the standardiser differs from the one this model design was first used with here".into())),
            Err(_) => Ok(None),
        }
    }

    /// As [`Self::design_standardiser_pinned`], for the columns of a feature table: `Some(())`
    /// when every column is pinned to `std`'s centre and scale, a refusal when one differs,
    /// `None` when some column has none pinned yet.
    pub fn feature_standardiser_pinned(&self, columns: &FeatureColumnPins, std: &proto::Standardiser) -> Result<Option<()>, SiteRefusal> {
        Ok(self.unpinned_columns(columns, std)?.is_empty().then_some(()))
    }

    /// The (key, centre, scale) of `std` not pinned yet; a refusal if one pinned differs.
    fn unpinned_columns(&self, columns: &FeatureColumnPins, std: &proto::Standardiser) -> Result<Vec<(String, f64, f64)>, SiteRefusal> {
        let (pinned, legacy) = (self.column_pins(), self.table_pins(&columns.table));
        let mut new = Vec::new();
        for (k, (&c, key)) in columns.columns.iter().zip(&columns.keys).enumerate() {
            let (Some(&center), Some(&scale)) = (std.center.get(k), std.scale.get(k)) else { continue };
            let differs = |p: Option<&(f64, f64)>| p.is_some_and(|&(pc, ps)| pc != center || ps != scale);
            if differs(pinned.get(key)) || differs(legacy.get(&c)) {
                return Err(SiteRefusal::InvalidParameters(format!(
                    "the standardiser of column {c} differs from the one this feature column was first used with here (under this or another table's name, over the same patients)"
                )));
            }
            if !pinned.contains_key(key) {
                new.push((key.clone(), center, scale));
            }
        }
        Ok(new)
    }

    /// Pins the standardiser of a model design at its first use here: every later task on the
    /// design (classifier rounds, value histograms, tree rounds, scores, comparisons) must use
    /// the same centre and scale, so a coordinator cannot sweep the centre or rescale between
    /// tasks to move a grid cell or a tree's bin edges across one patient.
    pub fn pin_design_standardiser(&self, design: Option<&proto::ModelDesign>, std: Option<&proto::Standardiser>) -> Result<(), SiteRefusal> {
        if self.design_standardiser_pinned(design, std)?.is_some() {
            return Ok(());
        }
        let std = std.map(|s| s.encode_to_vec()).unwrap_or_default();
        crate::engine::write_atomic(&self.design_standardiser_path(design), &std).map_err(|e| SiteRefusal::Precondition(format!("cannot record the standardiser: {e}")))
    }

    /// Pins a design's random Fourier features at their first classifier round here. A study
    /// may use fewer features than the plan's (so that every site's parameter limit admits the
    /// RBF SVM), but one number per design: each count draws another random map of the same
    /// patients, so a coordinator free to vary it would get up to the plan's count of different
    /// models' sums where the study needs one.
    pub fn pin_random_features(&self, design: Option<&proto::ModelDesign>, rff: &proto::RandomFeatures) -> Result<(), SiteRefusal> {
        let design = design.map(|d| d.encode_to_vec()).unwrap_or_default();
        let path = self.dir.join(format!("random-features-{}.pb", &sha256_hex(&[&design])[..32]));
        let rff = rff.encode_to_vec();
        match std::fs::read(&path) {
            Ok(pinned) if pinned == rff => Ok(()),
            Ok(_) => Err(SiteRefusal::InvalidParameters("the random features differ from the ones this model design's RBF SVM was first fitted with here".into())),
            Err(_) => crate::engine::write_atomic(&path, &rff).map_err(|e| SiteRefusal::Precondition(format!("cannot record the random features: {e}"))),
        }
    }

    /// Pins each feature column's centre and scale at its first use over the table's patients
    /// (rank histograms, correlation, LASSO rounds, cross-validation), under whichever table
    /// names it ([`FeatureColumnPins`]): see [`Self::pin_design_standardiser`].
    pub fn pin_feature_standardiser(&self, columns: &FeatureColumnPins, std: Option<&proto::Standardiser>) -> Result<(), SiteRefusal> {
        let Some(std) = std else { return Ok(()) };
        let new = self.unpinned_columns(columns, std)?;
        if new.is_empty() {
            return Ok(());
        }
        let mut pinned = self.column_pins();
        pinned.extend(new.into_iter().map(|(key, center, scale)| (key, (center, scale))));
        crate::engine::write_atomic(&self.column_pins_path(), &serde_json::to_vec(&pinned).expect("a map serialises"))
            .map_err(|e| SiteRefusal::Precondition(format!("cannot record the standardiser: {e}")))
    }

    /// A comparison names only models this site has already scored, each once; and its second
    /// round (`merged`: the digest of the "merged" histograms sent back) is answered for one set
    /// of merged histograms per list of models. Copies of one model, or one list asked again
    /// with other merged histograms, would let a coordinator set a different threshold in each
    /// (a made-up heavy cell) and read the patients' scores against all of them.
    ///
    /// Returns what to record once the second round is answered ([`ComparisonPin::record`]), so
    /// that a refused round 2 does not use up the list.
    pub fn accept_compared(&self, models: &[proto::ScoredModel], merged: Option<&str>) -> Result<ComparisonPin, SiteRefusal> {
        let scored = self.lines("scored.txt");
        let mut keys: Vec<String> = Vec::with_capacity(models.len());
        for (k, m) in models.iter().enumerate() {
            let frame = model_frame(m.design.as_ref(), m.standardiser.as_ref());
            let key = sha256_hex(&[&frame, &m.scorer.as_ref().map(|s| s.encode_to_vec()).unwrap_or_default()]);
            if !scored.contains(&key) {
                return Err(SiteRefusal::InvalidParameters(format!("compared model {k} is not one this site has scored in this study")));
            }
            if let Some(first) = keys.iter().position(|x| *x == key) {
                return Err(SiteRefusal::InvalidParameters(format!("compared models {first} and {k} are the same model")));
            }
            keys.push(key);
        }
        let mut pin = ComparisonPin { path: self.dir.join("compared.txt"), line: None };
        if let Some(merged) = merged {
            let list = sha256_hex(&keys.iter().map(|k| k.as_bytes()).collect::<Vec<_>>());
            let answered = self.lines("compared.txt");
            match answered.iter().find(|l| l.starts_with(&format!("{list} "))) {
                Some(line) if line.ends_with(&format!(" {merged}")) => {}
                Some(_) => {
                    return Err(SiteRefusal::InvalidParameters(
                        "this list of models was compared here already with other merged histograms: one second round per comparison".into(),
                    ));
                }
                None => pin.line = Some(format!("{list} {merged}")),
            }
        }
        Ok(pin)
    }
}

/// A comparison's second round to record once answered (nothing when already recorded).
pub struct ComparisonPin {
    path: PathBuf,
    line: Option<String>,
}

impl ComparisonPin {
    pub fn record(self) -> std::io::Result<()> {
        match self.line {
            Some(line) => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
                std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes())?;
                f.sync_data()
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_of(center: &[f64], scale: &[f64]) -> proto::Standardiser {
        proto::Standardiser { center: center.to_vec(), scale: scale.to_vec() }
    }

    /// A column's pin holds under any table's name over the same patients, not over others;
    /// pins an earlier version kept per table and column number still hold.
    #[test]
    fn feature_pins_follow_the_column_and_read_the_earlier_per_table_pins() {
        let dir = std::env::temp_dir().join(format!("fedrad-ledger-pins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ledger = ModelLedger::new(&dir, "0123456789abcdef0123");
        std::fs::create_dir_all(&ledger.dir).unwrap();
        let pins = |table: &str, column: u32, key: &str| FeatureColumnPins { table: table.into(), columns: vec![column], keys: vec![key.into()] };
        ledger.pin_feature_standardiser(&pins("t2", 4, "t2:a@P"), Some(&std_of(&[1.0], &[2.0]))).unwrap();
        // The same column and patients under the name t1c+t2: the pin holds.
        assert!(ledger.feature_standardiser_pinned(&pins("t1c+t2", 1201, "t2:a@P"), &std_of(&[1.0], &[2.0])).unwrap().is_some());
        let moved = ledger.feature_standardiser_pinned(&pins("t1c+t2", 1201, "t2:a@P"), &std_of(&[1.5], &[2.0])).unwrap_err();
        assert!(moved.to_string().contains("first used with"), "{moved}");
        // Over other patients it is not pinned yet.
        assert!(ledger.feature_standardiser_pinned(&pins("t2+deep", 4, "t2:a@Q"), &std_of(&[1.5], &[2.0])).unwrap().is_none());
        // An earlier version's pin of t2 column 7, by table name and number.
        let legacy = ledger.dir.join(format!("standardiser-{}.json", &sha256_hex(&["t2".as_bytes()])[..32]));
        std::fs::write(&legacy, serde_json::to_vec(&std::collections::BTreeMap::from([(7u32, (3.0, 4.0))])).unwrap()).unwrap();
        assert!(ledger.pin_feature_standardiser(&pins("t2", 7, "t2:b@P"), Some(&std_of(&[3.5], &[4.0]))).is_err());
        ledger.pin_feature_standardiser(&pins("t2", 7, "t2:b@P"), Some(&std_of(&[3.0], &[4.0]))).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
