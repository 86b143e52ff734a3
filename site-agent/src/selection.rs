//! The site half of feature selection and the clinical model: loading the study's feature
//! tables, the training cohort with its folds, and answering the selection tasks with the
//! shared algorithms' site halves.

use std::collections::BTreeMap;
use std::path::Path;

use fedrad_shared::algorithms::extraction::{catalogue_sha256, parse_table, sequence_column};
use fedrad_shared::algorithms::glm::{GlmFamily, GlmPoint, Standardiser, TrainingView};
use fedrad_shared::algorithms::{SiteRefusal, correlation, folds, lasso, logistic, standardise, univariate};
use fedrad_shared::clinical::{CohortRole, PatientRecord, VariableSpec};
use fedrad_shared::proto;

use crate::engine::Failure;

/// One sequence's feature table as extraction wrote it.
#[derive(Debug)]
pub struct FeatureTable {
    pub names: Vec<String>,
    pub digest: String,
    pub rows: BTreeMap<String, Vec<f64>>,
}

/// One table as a task names it: `t2` (handcrafted features), `t2+deep` (handcrafted then
/// deep features), or the table of both sequences, `t1c+t2` and `t1c+t2+deep`
/// ([`BOTH_SEQUENCES`](fedrad_shared::algorithms::extraction::BOTH_SEQUENCES): each part's
/// columns prefixed with its sequence); its rows are the patients with every part.
pub fn load_table(study_dir: &Path, name: &str, harmonised: bool) -> Result<FeatureTable, Failure> {
    let Some(table) = parse_table(name) else {
        return Err(SiteRefusal::InvalidParameters(format!("unknown feature table {name:?}")).into());
    };
    let deep_parts: &[bool] = if table.deep { &[false, true] } else { &[false] };
    let mut names = Vec::new();
    let mut rows: Option<Rows> = None;
    for &deep in deep_parts {
        for sequence in table.sequences {
            let (part_names, part_rows) = read_part(study_dir, sequence, deep, harmonised)?;
            if table.is_joint() {
                names.extend(part_names.iter().map(|n| sequence_column(sequence, n)));
            } else {
                names.extend(part_names);
            }
            rows = Some(match rows {
                None => part_rows,
                Some(rows) => rows
                    .into_iter()
                    .filter_map(|(id, mut v)| {
                        v.extend_from_slice(part_rows.get(&id)?);
                        Some((id, v))
                    })
                    .collect(),
            });
        }
    }
    Ok(FeatureTable { digest: catalogue_sha256(&names), names, rows: rows.unwrap_or_default() })
}

/// The file of one part of a sequence's features: its radiomic or its deep features, as
/// extracted or as ComBat harmonised them.
pub fn part_path(study_dir: &Path, sequence: &str, deep: bool, harmonised: bool) -> std::path::PathBuf {
    let part = if deep { ".deep" } else { "" };
    let stage = if harmonised { ".harmonised" } else { "" };
    study_dir.join("features").join(format!("{sequence}{part}{stage}.csv"))
}

/// One part of a sequence's features (see [`part_path`]): names and rows by patient.
pub fn read_part(study_dir: &Path, sequence: &str, deep: bool, harmonised: bool) -> Result<(Vec<String>, Rows), Failure> {
    read_part_with_digest(study_dir, sequence, deep, harmonised).map(|(names, rows, _)| (names, rows))
}

/// [`read_part`] with the SHA-256 (hex) of the very bytes it parsed, so that a record of what
/// was read cannot name a file that changed in between.
pub fn read_part_with_digest(study_dir: &Path, sequence: &str, deep: bool, harmonised: bool) -> Result<(Vec<String>, Rows, String), Failure> {
    let what = if deep { "deep features" } else { "features" };
    read_table(&part_path(study_dir, sequence, deep, harmonised), || {
        if harmonised {
            format!("ComBat has not harmonised the {sequence} {what} of this study yet")
        } else if deep {
            format!("no {sequence} deep features computed for this study yet")
        } else {
            format!("no {sequence} features extracted for this study yet")
        }
    })
}

/// Writes a part in [`read_part`]'s format (values in Rust's shortest round-trip form).
pub fn write_part(path: &Path, names: &[String], rows: &BTreeMap<String, Vec<f64>>) -> std::io::Result<()> {
    let mut text = String::from("patient_id");
    for n in names {
        text.push(',');
        text.push_str(n);
    }
    text.push('\n');
    for (id, values) in rows {
        text.push_str(id);
        for v in values {
            text.push_str(&format!(",{v}"));
        }
        text.push('\n');
    }
    crate::engine::write_atomic(path, text.as_bytes())
}

pub type Rows = BTreeMap<String, Vec<f64>>;

fn read_table(path: &Path, missing: impl Fn() -> String) -> Result<(Vec<String>, Rows, String), Failure> {
    let bytes = std::fs::read(path).map_err(|_| Failure::Refused(SiteRefusal::Precondition(missing())))?;
    let digest = crate::audit::sha256_hex(&bytes);
    let text = String::from_utf8(bytes).map_err(|_| Failure::Failed(format!("{}: not UTF-8 text", path.display())))?;
    let mut lines = text.lines();
    let names: Vec<String> = lines.next().unwrap_or("").split(',').skip(1).map(str::to_string).collect();
    let mut rows = BTreeMap::new();
    for (k, line) in lines.enumerate() {
        let mut cells = line.split(',');
        let id = cells.next().unwrap_or("").to_string();
        let values: Result<Vec<f64>, _> = cells.map(|c| c.parse::<f64>()).collect();
        match values {
            Ok(v) if v.len() == names.len() => {
                rows.insert(id, v);
            }
            _ => return Err(Failure::Failed(format!("{}: row {} is malformed", path.display(), k + 2))),
        }
    }
    Ok((names, rows, digest))
}

/// The training patients of one task: the requested columns, the outcome and the fold.
pub struct TrainingData {
    pub x: Vec<Vec<f64>>,
    pub outcome: Vec<bool>,
    pub y: Vec<f64>,
    pub fold: Vec<u32>,
}

impl TrainingData {
    pub fn view(&self) -> TrainingView<'_> {
        TrainingView { x: &self.x, y: &self.y, fold: &self.fold }
    }
}

/// Training patients with features for the task's sequence, restricted to its columns.
pub fn training_data(
    table: &FeatureTable,
    columns: &proto::FeatureColumns,
    records: &[PatientRecord],
    roles: &[CohortRole],
    fold_of: &BTreeMap<String, u32>,
) -> Result<TrainingData, Failure> {
    if columns.catalogue_sha256 != table.digest {
        return Err(SiteRefusal::Precondition(format!(
            "this site's {} feature table has other columns than the coordinator expects (catalogue {} here, {} asked); were the features extracted with the study's settings?",
            columns.sequence,
            &table.digest[..12],
            columns.catalogue_sha256.get(..12).unwrap_or(&columns.catalogue_sha256)
        ))
        .into());
    }
    let cols: Vec<usize> = columns.columns.iter().map(|&c| c as usize).collect();
    if cols.is_empty() || cols.iter().any(|&c| c >= table.names.len()) || cols.len() > table.names.len() {
        return Err(SiteRefusal::InvalidParameters("columns outside the feature table".into()).into());
    }
    let mut data = TrainingData { x: Vec::new(), outcome: Vec::new(), y: Vec::new(), fold: Vec::new() };
    for (r, role) in records.iter().zip(roles) {
        if *role != CohortRole::Training {
            continue;
        }
        let Some(row) = table.rows.get(&r.patient_id) else { continue };
        data.x.push(cols.iter().map(|&c| row[c]).collect());
        data.outcome.push(r.outcome);
        data.y.push(r.outcome as u8 as f64);
        data.fold.push(fold_of.get(&r.patient_id).copied().unwrap_or(0));
    }
    Ok(data)
}

/// Assigns folds to the training cohort; returns (patient id, fold) pairs and the aggregate.
pub fn assign_folds(records: &[PatientRecord], roles: &[CohortRole], task: &proto::FoldsTask, min_count: u64) -> Result<(Vec<(String, u32)>, proto::Aggregate), Failure> {
    if !(2..=50).contains(&task.folds) {
        return Err(SiteRefusal::InvalidParameters(format!("{} folds: use 2 to 50", task.folds)).into());
    }
    let training: Vec<(String, bool)> = records.iter().zip(roles).filter(|(_, r)| **r == CohortRole::Training).map(|(p, _)| (p.patient_id.clone(), p.outcome)).collect();
    let fold = folds::site_assign(&training, task.seed, task.folds);
    let outcome: Vec<bool> = training.iter().map(|t| t.1).collect();
    let agg = folds::site_fold_counts(&fold, &outcome, task.folds, min_count)?;
    Ok((training.into_iter().map(|t| t.0).zip(fold).collect(), agg))
}

/// One of the two rounds of the training moments (`centre` empty: the sums).
pub fn feature_moments(data: &TrainingData, centre: &[f64], min_count: u64) -> Result<proto::Aggregate, Failure> {
    let p = data.x.first().map_or(0, |r| r.len());
    Ok(standardise::site_moments(&data.x, &data.outcome, p, (!centre.is_empty()).then_some(centre), min_count)?)
}

pub fn rank_histogram(data: &TrainingData, t: &proto::RankHistogramTask, min_count: u64) -> Result<proto::Aggregate, Failure> {
    let p = data.x.first().map_or(0, |r| r.len());
    let std = Standardiser::from_proto(t.standardiser.as_ref(), p)?;
    Ok(univariate::site_rank_histograms(&data.x, &data.outcome, &std, t.resolution, t.limit, min_count)?)
}

pub fn correlation(data: &TrainingData, t: &proto::CorrelationTask, min_count: u64) -> Result<proto::Aggregate, Failure> {
    let p = data.x.first().map_or(0, |r| r.len());
    let std = Standardiser::from_proto(t.standardiser.as_ref(), p)?;
    Ok(correlation::site_comoments(&data.x, &std, min_count)?)
}

fn points(raw: &[proto::GlmPoint], p: usize, folds: u32) -> Result<Vec<GlmPoint>, Failure> {
    if raw.is_empty() || raw.len() > 100_000 {
        return Err(SiteRefusal::InvalidParameters("a model task needs 1 to 100000 points".into()).into());
    }
    Ok(raw.iter().map(|pt| GlmPoint::from_proto(pt, p, folds)).collect::<Result<Vec<_>, _>>()?)
}

pub fn lasso_round(data: &TrainingData, t: &proto::LassoRoundTask, folds: u32, min_count: u64, max_ratio: f64) -> Result<proto::Aggregate, Failure> {
    let p = data.x.first().map_or(0, |r| r.len());
    let std = Standardiser::from_proto(t.standardiser.as_ref(), p)?;
    let family = GlmFamily::from_proto(t.family)?;
    let pts = points(&t.points, p, folds)?;
    if pts.iter().any(|pt| pt.fold > 0) && data.fold.contains(&0) {
        return Err(SiteRefusal::Precondition("cross-validation folds are not assigned for this study".into()).into());
    }
    Ok(lasso::site_round(data.view(), &std, family, &pts, min_count, max_ratio)?)
}

pub fn cv_loss(data: &TrainingData, t: &proto::CvLossTask, folds: u32, min_count: u64, max_ratio: f64) -> Result<proto::Aggregate, Failure> {
    let p = data.x.first().map_or(0, |r| r.len());
    let std = Standardiser::from_proto(t.standardiser.as_ref(), p)?;
    let family = GlmFamily::from_proto(t.family)?;
    let pts = points(&t.points, p, folds)?;
    if data.fold.contains(&0) {
        return Err(SiteRefusal::Precondition("cross-validation folds are not assigned for this study".into()).into());
    }
    Ok(lasso::site_cv_loss(data.view(), &std, family, t.path_length as usize, &pts, min_count, max_ratio)?)
}

/// The clinical logistic regression round over training patients with complete data.
pub fn logistic_round(
    records: &[PatientRecord],
    roles: &[CohortRole],
    variables: &[VariableSpec],
    models: &[proto::ClinicalModel],
    min_count: u64,
    max_ratio: f64,
) -> Result<proto::Aggregate, Failure> {
    let width = logistic::design_columns(variables).len();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (r, role) in records.iter().zip(roles) {
        if *role == CohortRole::Training
            && let Some(row) = logistic::design_row(r, variables)
        {
            x.push(row);
            y.push(r.outcome);
        }
    }
    if models.is_empty() || models.len() > 1000 {
        return Err(SiteRefusal::InvalidParameters("a clinical task needs 1 to 1000 models".into()).into());
    }
    let points: Vec<logistic::ModelPoint> = models
        .iter()
        .map(|m| {
            if m.columns.iter().any(|&c| c as usize >= width) {
                return Err(Failure::Refused(SiteRefusal::InvalidParameters("model column outside the design".into())));
            }
            Ok(logistic::ModelPoint { columns: m.columns.iter().map(|&c| c as usize).collect(), coefficients: m.coefficients.clone() })
        })
        .collect::<Result<_, _>>()?;
    Ok(logistic::site_clinical_round(&x, &y, &points, min_count, max_ratio)?)
}

// ---- models ------------------------------------------------------------------------------

/// The patients of a model's design: raw design rows with cohort and outcome (complete cases).
pub struct DesignData {
    pub rows: Vec<Vec<f64>>,
    /// Patient ids stay at the site; trees draw their bootstrap weights from them.
    pub ids: Vec<String>,
    /// Cross-validation fold of each patient (0: none recorded, or not in training).
    pub fold: Vec<u32>,
    /// How many folds the site recorded for the study (0: none).
    pub folds: u32,
    pub role: Vec<CohortRole>,
    pub outcome: Vec<bool>,
}

impl DesignData {
    pub fn width(&self) -> usize {
        self.rows.first().map_or(0, |r| r.len())
    }

    /// Standardised training rows and outcomes.
    fn training(&self, std: &Standardiser) -> Result<(Vec<Vec<f64>>, Vec<bool>), Failure> {
        let (z, y, _) = self.training_with_ids(std)?;
        Ok((z, y))
    }

    fn training_with_ids(&self, std: &Standardiser) -> Result<(Vec<Vec<f64>>, Vec<bool>, Vec<String>), Failure> {
        self.training_outside_fold(std, 0)
    }

    /// Training patients outside fold `k` (all of them for k = 0).
    fn training_outside_fold(&self, std: &Standardiser, k: u32) -> Result<(Vec<Vec<f64>>, Vec<bool>, Vec<String>), Failure> {
        if k > 0 && k > self.folds {
            return Err(Failure::Refused(SiteRefusal::Precondition(format!("fold {k} does not exist here ({} folds recorded for this study)", self.folds))));
        }
        let keep: Vec<usize> = (0..self.rows.len()).filter(|&i| self.role[i] == CohortRole::Training && (k == 0 || self.fold[i] != k)).collect();
        let rows: Vec<Vec<f64>> = keep.iter().map(|&i| self.rows[i].clone()).collect();
        Ok((std.apply(&rows)?, keep.iter().map(|&i| self.outcome[i]).collect(), keep.iter().map(|&i| self.ids[i].clone()).collect()))
    }
}

/// Builds the design rows; `table` is the feature table when the design names features.
pub fn design_data(
    table: Option<&FeatureTable>,
    design: &proto::ModelDesign,
    variables: &[VariableSpec],
    records: &[PatientRecord],
    roles: &[CohortRole],
) -> Result<DesignData, Failure> {
    let feature_cols: Vec<usize> = match (&design.features, table) {
        (Some(f), Some(t)) => {
            if f.catalogue_sha256 != t.digest {
                return Err(SiteRefusal::Precondition(format!("this site's {} feature table has other columns than the model expects", f.sequence)).into());
            }
            let cols: Vec<usize> = f.columns.iter().map(|&c| c as usize).collect();
            if cols.iter().any(|&c| c >= t.names.len()) {
                return Err(SiteRefusal::InvalidParameters("columns outside the feature table".into()).into());
            }
            cols
        }
        _ => Vec::new(),
    };
    let clinical_width = logistic::design_columns(variables).len();
    let clinical_cols: Vec<usize> = design.clinical_columns.iter().map(|&c| c as usize).collect();
    if clinical_cols.iter().any(|&c| c >= clinical_width) {
        return Err(SiteRefusal::InvalidParameters("clinical column outside the design".into()).into());
    }
    if feature_cols.is_empty() && clinical_cols.is_empty() {
        return Err(SiteRefusal::InvalidParameters("the model design is empty".into()).into());
    }
    let mut data = DesignData { rows: Vec::new(), ids: Vec::new(), fold: Vec::new(), folds: 0, role: Vec::new(), outcome: Vec::new() };
    for (r, role) in records.iter().zip(roles) {
        let mut row: Vec<f64> = match table {
            Some(t) if !feature_cols.is_empty() => match t.rows.get(&r.patient_id) {
                Some(v) => feature_cols.iter().map(|&c| v[c]).collect(),
                None => continue,
            },
            _ => Vec::new(),
        };
        if !clinical_cols.is_empty() {
            let Some(c) = logistic::design_row(r, variables) else { continue };
            row.extend(clinical_cols.iter().map(|&k| c[k]));
        }
        data.rows.push(row);
        data.ids.push(r.patient_id.clone());
        data.fold.push(0);
        data.role.push(*role);
        data.outcome.push(r.outcome);
    }
    Ok(data)
}

/// One of the two rounds of a design's training moments (`centre` empty: the sums).
pub fn design_moments(data: &DesignData, centre: &[f64], min_count: u64) -> Result<proto::Aggregate, Failure> {
    let (rows, y): (Vec<Vec<f64>>, Vec<bool>) =
        data.rows.iter().zip(&data.role).zip(&data.outcome).filter(|((_, r), _)| **r == CohortRole::Training).map(|((x, _), y)| (x.clone(), *y)).unzip();
    Ok(standardise::site_moments(&rows, &y, data.width(), (!centre.is_empty()).then_some(centre), min_count)?)
}

pub fn classifier_round(data: &DesignData, t: &proto::ClassifierRoundTask, min_count: u64, max_ratio: f64) -> Result<proto::Aggregate, Failure> {
    use fedrad_shared::algorithms::classifiers;
    use fedrad_shared::proto::ClassifierObjective as O;
    let std = Standardiser::from_proto(t.standardiser.as_ref(), data.width())?;
    let (mut z, y, _) = data.training_outside_fold(&std, t.exclude_fold)?;
    let mut w = data.width();
    if let Some(rf) = &t.random_features {
        let features = classifiers::RandomFeatures::from_proto(rf)?;
        let map = features.map(w);
        z = z.iter().map(|r| map.apply(r)).collect();
        w = features.count as usize;
    }
    let params = &t.parameters;
    if params.iter().chain(&t.svm).any(|v| !v.is_finite()) {
        return Err(SiteRefusal::InvalidParameters("non-finite parameter".into()).into());
    }
    match O::try_from(t.objective) {
        Ok(O::Logistic) if params.len() == w + 1 && t.random_features.is_none() => {
            let model = logistic::ModelPoint { columns: (0..w).collect(), coefficients: params.clone() };
            Ok(logistic::site_round(&z, &y, &[model], min_count, max_ratio)?)
        }
        Ok(O::SquaredHinge) if params.len() == w + 1 => Ok(classifiers::site_squared_hinge(&z, &y, params, min_count, max_ratio)?),
        Ok(O::Platt) if params.len() == 2 && t.svm.len() == w + 1 => Ok(classifiers::site_platt(&z, &y, &t.svm, [params[0], params[1]], min_count)?),
        _ => Err(SiteRefusal::InvalidParameters("unknown objective, or parameters that do not fit the design".into()).into()),
    }
}

pub fn score(data: &DesignData, t: &proto::ScoreTask, min_count: u64) -> Result<proto::Aggregate, Failure> {
    use fedrad_shared::algorithms::classifiers::Scorer;
    use fedrad_shared::algorithms::metrics::{Scored, site_score_summary};
    let w = data.width();
    let std = Standardiser::from_proto(t.standardiser.as_ref(), w)?;
    let z = std.apply(&data.rows)?;
    if t.scorers.is_empty() || t.scorers.len() > 100 {
        return Err(SiteRefusal::InvalidParameters("a score task needs 1 to 100 scorers".into()).into());
    }
    if t.folds > 0 {
        return out_of_fold_scores(data, &z, t, min_count);
    }
    let mut b = fedrad_shared::aggregate::AggregateBuilder::new(data.rows.len() as u64);
    for (k, spec) in t.scorers.iter().enumerate() {
        let scorer = Scorer::from_proto(spec, w)?;
        let scored: Vec<Scored> =
            z.iter().zip(&data.role).zip(&data.outcome).map(|((zi, role), y)| Scored { role: *role, outcome: *y, log_odds: scorer.log_odds(zi) }).collect();
        b = b.nested(&format!("s{k}."), site_score_summary(&scored, t.grid, min_count)?);
    }
    Ok(b.build())
}

pub fn value_histogram(data: &DesignData, t: &proto::ValueHistogramTask, min_count: u64) -> Result<proto::Aggregate, Failure> {
    use fedrad_shared::algorithms::trees::{ValueGrid, site_value_histogram};
    let std = Standardiser::from_proto(t.standardiser.as_ref(), data.width())?;
    let (z, _) = data.training(&std)?;
    Ok(site_value_histogram(&z, data.width(), ValueGrid { cells_per_sd: t.cells_per_sd, limit_sd: t.limit_sd }, min_count)?)
}

pub fn tree_round(data: &DesignData, t: &proto::TreeRoundTask, min_count: u64) -> Result<proto::Aggregate, Failure> {
    use fedrad_shared::algorithms::trees::{self, NodeRequest, TreeObjective};
    use fedrad_shared::proto::TreeObjective as O;
    let w = data.width();
    let std = Standardiser::from_proto(t.standardiser.as_ref(), w)?;
    let (z, y, ids) = data.training_with_ids(&std)?;
    let invalid = |m: &str| Failure::Refused(SiteRefusal::InvalidParameters(m.into()));
    if t.edges.len() != w {
        return Err(invalid("one list of bin edges per design column is needed"));
    }
    let edges: Vec<Vec<f64>> = t.edges.iter().map(|e| e.edges.clone()).collect();
    let growing = trees::read_trees(&t.growing, &mut 0, w)?;
    let objective = match O::try_from(t.objective) {
        Ok(O::ForestCounts) => TreeObjective::ForestCounts { seed: t.seed },
        Ok(O::BoostingGradients) if t.base_margin.is_finite() => {
            TreeObjective::BoostingGradients { base_margin: t.base_margin, ensemble: trees::read_trees(&t.ensemble, &mut 0, w)? }
        }
        _ => return Err(invalid("unknown tree objective")),
    };
    let nodes: Vec<NodeRequest> = t.nodes.iter().map(|r| NodeRequest { tree: r.tree, node: r.node, columns: r.columns.clone() }).collect();
    Ok(trees::site_tree_round(&z, &y, &ids, &edges, &objective, &growing, &nodes, min_count)?)
}

/// DeLong comparison of several models on the patients every one of them can score: round 1
/// answers each model's score summary, round 2 (with the merged histograms) the placement sums.
pub fn paired_scores(designs: &[DesignData], t: &proto::PairedScoresTask, min_count: u64) -> Result<proto::Aggregate, Failure> {
    use fedrad_shared::algorithms::classifiers::Scorer;
    use fedrad_shared::algorithms::metrics::{Scored, released_score_cells, site_score_summary};
    use fedrad_shared::algorithms::paired_auc::site_placements;
    let invalid = |m: &str| Failure::Refused(SiteRefusal::InvalidParameters(m.into()));
    let m = t.models.len();
    if m == 0 || m > 200 || designs.len() != m {
        return Err(invalid("compare 1 to 200 models"));
    }
    // Log-odds of every patient under every model, keyed by patient id (ids stay here).
    let mut scores: Vec<BTreeMap<&str, (CohortRole, bool, f64)>> = Vec::with_capacity(m);
    for (data, model) in designs.iter().zip(&t.models) {
        let w = data.width();
        let std = Standardiser::from_proto(model.standardiser.as_ref(), w)?;
        let scorer = Scorer::from_proto(model.scorer.as_ref().ok_or_else(|| invalid("a model without its scorer"))?, w)?;
        let z = std.apply(&data.rows)?;
        scores.push((0..z.len()).map(|i| (data.ids[i].as_str(), (data.role[i], data.outcome[i], scorer.log_odds(&z[i])))).collect());
    }
    let common: Vec<&str> = scores[0].keys().copied().filter(|id| scores.iter().all(|s| s.contains_key(id))).collect();
    // The patients every model scores may be fewer than one model's own (a patient without a
    // row in another model's table): the difference of this answer and that model's score
    // answer would describe the patients left out. Refused when, in some cohort and class,
    // 1 to min_count − 1 of a model's patients are left out.
    let kept: std::collections::BTreeSet<&str> = common.iter().copied().collect();
    for s in &scores {
        let mut left_out: BTreeMap<(CohortRole, bool), u64> = BTreeMap::new();
        for (id, (role, outcome, _)) in s {
            if !kept.contains(id) {
                *left_out.entry((*role, *outcome)).or_default() += 1;
            }
        }
        if left_out.values().any(|&n| n > 0 && n < min_count) {
            return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                "the patients every compared model can score differ from one model's own by fewer than this site's minimum of {min_count} patients of a cohort and class: the comparison and that model's scores would together describe them"
            ))));
        }
    }
    if t.negatives.is_empty() && t.positives.is_empty() {
        let mut b = fedrad_shared::aggregate::AggregateBuilder::new(common.len() as u64);
        for (k, s) in scores.iter().enumerate() {
            let scored: Vec<Scored> = common.iter().map(|id| s[id]).map(|(role, outcome, log_odds)| Scored { role, outcome, log_odds }).collect();
            b = b.nested(&format!("m{k}."), site_score_summary(&scored, t.grid, min_count)?);
        }
        return Ok(b.build());
    }
    let merged = merged_histograms(t)?.expect("a second round");
    if t.grid < 100 || t.grid > fedrad_shared::algorithms::metrics::MAX_GRID {
        return Err(invalid("score grid outside 100 to 100000 cells"));
    }
    // Each patient placed by its released cell, from the same groups the first round counted
    // (every common patient, per cohort and class), so the placements reveal no finer score.
    let released: Vec<Vec<u32>> = scores
        .iter()
        .map(|s| {
            let scored: Vec<Scored> = common.iter().map(|id| s[id]).map(|(role, outcome, log_odds)| Scored { role, outcome, log_odds }).collect();
            released_score_cells(&scored, t.grid, min_count)
        })
        .collect();
    let validation: Vec<usize> = (0..common.len()).filter(|&i| scores[0][common[i]].0 == CohortRole::Validation).collect();
    let cells: Vec<Vec<u32>> = validation.iter().map(|&i| released.iter().map(|r| r[i]).collect()).collect();
    let outcome: Vec<bool> = validation.iter().map(|&i| scores[0][common[i]].1).collect();
    Ok(site_placements(&cells, &outcome, &merged, min_count)?)
}

/// The "merged" histograms of a comparison's second round (`None` in its first), one per
/// class and model, each a strictly increasing list of cells on the task's grid.
pub fn merged_histograms(t: &proto::PairedScoresTask) -> Result<Option<Vec<fedrad_shared::algorithms::paired_auc::ClassHistograms>>, Failure> {
    use fedrad_shared::algorithms::paired_auc::ClassHistograms;
    let invalid = |m: &str| Failure::Refused(SiteRefusal::InvalidParameters(m.into()));
    if t.negatives.is_empty() && t.positives.is_empty() {
        return Ok(None);
    }
    if t.negatives.len() != t.models.len() || t.positives.len() != t.models.len() {
        return Err(invalid("one negative and one positive histogram per model"));
    }
    let histogram = |h: &proto::SparseHistogram| -> Result<BTreeMap<u32, u64>, Failure> {
        if h.cells.len() != h.counts.len() || h.cells.windows(2).any(|w| w[0] >= w[1]) || h.cells.iter().any(|&c| c >= t.grid) {
            return Err(invalid("malformed score histogram"));
        }
        Ok(h.cells.iter().copied().zip(h.counts.iter().copied()).collect())
    };
    t.negatives.iter().zip(&t.positives).map(|(n, p)| Ok(ClassHistograms { negative: histogram(n)?, positive: histogram(p)? })).collect::<Result<_, Failure>>().map(Some)
}

/// Hyperparameter search: every training patient scored by the model fitted without its fold.
fn out_of_fold_scores(data: &DesignData, z: &[Vec<f64>], t: &proto::ScoreTask, min_count: u64) -> Result<proto::Aggregate, Failure> {
    use fedrad_shared::algorithms::classifiers::Scorer;
    use fedrad_shared::algorithms::metrics::site_class_histograms;
    let k = t.folds as usize;
    if t.folds != data.folds || !t.scorers.len().is_multiple_of(k) {
        return Err(Failure::Refused(SiteRefusal::Precondition(format!("out-of-fold scoring needs one scorer per recorded fold ({} here) and value", data.folds))));
    }
    let scorers = t.scorers.iter().map(|s| Scorer::from_proto(s, data.width())).collect::<Result<Vec<_>, _>>()?;
    let training: Vec<usize> = (0..z.len()).filter(|&i| data.role[i] == CohortRole::Training && data.fold[i] > 0).collect();
    let mut b = fedrad_shared::aggregate::AggregateBuilder::new(training.len() as u64);
    for g in 0..scorers.len() / k {
        let scores: Vec<(bool, f64)> = training.iter().map(|&i| (data.outcome[i], scorers[g * k + data.fold[i] as usize - 1].log_odds(&z[i]))).collect();
        b = b.nested(&format!("g{g}."), site_class_histograms(&scores, t.grid, min_count)?);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(n: usize, skip: &[usize]) -> DesignData {
        let keep: Vec<usize> = (0..n).filter(|i| !skip.contains(i)).collect();
        DesignData {
            rows: keep.iter().map(|&i| vec![(i as f64 * 0.37).sin()]).collect(),
            ids: keep.iter().map(|i| format!("p{i:03}")).collect(),
            fold: vec![0; keep.len()],
            folds: 0,
            role: keep.iter().map(|&i| if i % 3 == 0 { CohortRole::Validation } else { CohortRole::Training }).collect(),
            outcome: keep.iter().map(|&i| i % 2 == 0).collect(),
        }
    }

    /// DeLong's first round covers the patients every compared model scores; with one patient
    /// missing from the second model's rows, that answer minus the first model's own score
    /// answer would describe the missing patient: refused, while equal populations (or ones
    /// that differ by at least min_count per cohort and class) are answered.
    #[test]
    fn a_comparison_that_leaves_out_a_few_of_a_models_patients_is_refused() {
        let model = |c: f64| proto::ScoredModel {
            design: None,
            standardiser: Some(proto::Standardiser { center: vec![0.0], scale: vec![1.0] }),
            scorer: Some(proto::ScorerSpec { kind: proto::ScorerKind::Logistic as i32, parameters: vec![0.0, c], random_features: None }),
        };
        let task = proto::PairedScoresTask {
            models: vec![model(1.0), model(2.0)],
            grid: fedrad_shared::algorithms::metrics::DEFAULT_GRID,
            negatives: vec![],
            positives: vec![],
            previous: vec![],
        };
        let same = paired_scores(&[design(90, &[]), design(90, &[])], &task, 5);
        assert!(same.is_ok(), "{same:?}");
        match paired_scores(&[design(90, &[]), design(90, &[7])], &task, 5) {
            Err(Failure::Refused(SiteRefusal::Precondition(d))) => assert!(d.contains("differ from one model's own"), "{d}"),
            other => panic!("one patient left out was not refused: {other:?}"),
        }
        let many: Vec<usize> = (0..90).filter(|i| i % 6 == 1).collect();
        assert!(paired_scores(&[design(90, &[]), design(90, &many)], &task, 5).is_ok(), "15 training negatives left out");
    }
}
