//! Set-up shared by the site-agent tests: one hospital's synthetic cohort in a fresh
//! temporary folder, and a site config that points at it (never connected anywhere).

use std::path::{Path, PathBuf};

/// A fresh, empty folder for one test.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fedrad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One coarse hospital (the first of the default four) out of a cohort of `patients`.
pub fn one_hospital(dir: &Path, seed: u64, patients: usize) -> fedrad_synth::GeneratedCohort {
    let mut spec = fedrad_synth::default_cohort(seed, patients);
    spec.coarsen = 3.0;
    spec.hospitals.truncate(1);
    fedrad_synth::generate(&spec, dir, &|| {}).unwrap()
}

/// A config for `hospital-a` reading `manifest`, with its work folder in `dir`.
#[allow(dead_code)]
pub fn local_config(manifest: &Path, dir: &Path) -> site_agent::config::SiteConfig {
    site_agent::config::SiteConfig {
        site_id: "hospital-a".into(),
        coordinator: "https://localhost:1".into(),
        coordinator_name: None,
        manifest: manifest.to_path_buf(),
        work_dir: dir.join("work"),
        tls: Some(fedrad_shared::tls::TlsFiles::bundle(dir)),
        insecure_plaintext: false,
        policy: Default::default(),
        clinical: Default::default(),
        export: Default::default(),
        max_message_bytes: 1 << 20,
        networks_dir: None,
    }
}

/// Approves at `cfg`'s site a study plan `study_id` with this site alone, seed 1 and the
/// defaults, after `edit` (e.g. fewer folds for a small test cohort); returns the plan.
#[allow(dead_code)]
pub fn approve(cfg: &site_agent::config::SiteConfig, study_id: &str, edit: impl FnOnce(&mut fedrad_shared::plan::StudyConfig)) -> fedrad_shared::plan::StudyPlan {
    let text = format!("study_id = \"{study_id}\"\noutput_dir = \"out\"\nseed = 1\nsites = [\"{}\"]\n", cfg.site_id);
    let mut study: fedrad_shared::plan::StudyConfig = toml::from_str(&text).unwrap();
    edit(&mut study);
    let plan = study.plan().unwrap();
    site_agent::approval::approve(&cfg.work_dir, &cfg.site_id, &cfg.schema(), &plan, cfg.key_fingerprint().ok().flatten().as_deref()).unwrap();
    plan
}

/// A task of an approved study, as its coordinator sends it.
#[allow(dead_code)]
pub fn task(plan: &fedrad_shared::plan::StudyPlan, id: &str, kind: Option<fedrad_shared::proto::task::Kind>) -> fedrad_shared::proto::Task {
    fedrad_shared::proto::Task {
        task_id: id.into(),
        study_id: plan.study_id.clone(),
        study_sites: plan.sites.clone(),
        plan_sha256: plan.sha256(),
        kind,
        secure_sum: None,
    }
}

/// The centre and scale (mean and population SD over every patient) of some feature columns:
/// a standardiser as the study would compute it, close enough for a site to accept.
#[allow(dead_code)]
pub fn standardiser_of(table: &site_agent::selection::FeatureTable, columns: &[u32]) -> fedrad_shared::proto::Standardiser {
    let rows: Vec<Vec<f64>> = table.rows.values().map(|r| columns.iter().map(|&c| r[c as usize]).collect()).collect();
    let sd = fedrad_shared::algorithms::glm::column_sd(&rows, columns.len());
    let mean = (0..columns.len()).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64).collect();
    fedrad_shared::proto::Standardiser { center: mean, scale: sd.into_iter().map(|s| if s > 0.0 { s } else { 1.0 }).collect() }
}

/// A clinical variable as a task carries it (what the coordinator sends).
#[allow(dead_code)]
pub fn variable_to_proto(v: &fedrad_shared::clinical::VariableSpec) -> fedrad_shared::proto::ClinicalVariable {
    use fedrad_shared::clinical::VariableKind;
    use fedrad_shared::proto::{self, clinical_variable::Kind};
    let kind = match &v.kind {
        VariableKind::Categorical { levels } => Kind::Categorical(proto::CategoricalLevels { levels: levels.clone() }),
        VariableKind::Continuous { resolution, .. } => Kind::Continuous(proto::ContinuousGrid { resolution: *resolution }),
    };
    proto::ClinicalVariable { name: v.name.clone(), kind: Some(kind) }
}

/// The honest start of a one-site study's boosting ensemble on `design`: `ask` answers the
/// design's value counts, and the first tree round the study's grower then asks is returned
/// with the site's answer to them as its `previous` (one site: its answer is the sum, checked
/// against its reply cache). The task without `previous` is what a site must refuse.
#[allow(dead_code)]
pub fn first_tree_round(
    engine: &site_agent::engine::SiteEngine,
    plan: &fedrad_shared::plan::StudyPlan,
    design: &fedrad_shared::proto::ModelDesign,
    std: &fedrad_shared::proto::Standardiser,
    ask: impl FnOnce(fedrad_shared::proto::task::Kind) -> fedrad_shared::proto::Aggregate,
) -> (fedrad_shared::algorithms::trees::EnsembleGrower, fedrad_shared::proto::TreeRoundTask) {
    use fedrad_shared::algorithms::trees::{self, ValueGrid};
    use fedrad_shared::proto::{self, task};
    let grid = ValueGrid::DEFAULT;
    let counts = ask(task::Kind::ValueHistogram(proto::ValueHistogramTask {
        design: Some(design.clone()),
        standardiser: Some(std.clone()),
        cells_per_sd: grid.cells_per_sd,
        limit_sd: grid.limit_sd,
    }));
    let width = design.features.as_ref().map_or(0, |f| f.columns.len()) + design.clinical_columns.len();
    let b = &plan.models.boosting;
    let min_leaf = b.min_leaf.max(engine.config.policy.min_count);
    let site = engine.config.site_id.clone();
    let edges = trees::combine_bin_edges(&[fedrad_shared::aggregate::SiteAggregate::new(site.clone(), counts.clone())], width, grid, b.bins).unwrap();
    let grower = trees::EnsembleGrower::new(trees::EnsembleSettings::Boosting(trees::BoostingSettings { min_leaf, ..b.clone() }), edges.clone());
    let r = grower.request().expect("a first round");
    let task = proto::TreeRoundTask {
        design: Some(design.clone()),
        standardiser: Some(std.clone()),
        objective: proto::TreeObjective::BoostingGradients as i32,
        edges: edges.iter().map(|e| proto::BinEdges { edges: e.clone() }).collect(),
        growing: trees::write_trees(r.growing),
        nodes: r.nodes.iter().map(|q| proto::NodeRequest { tree: q.tree, node: q.node, columns: q.columns.clone() }).collect(),
        seed: 0,
        base_margin: 0.0,
        ensemble: trees::write_trees(r.ensemble),
        min_leaf,
        previous: vec![proto::SignedAnswer { site_id: site, aggregate: Some(counts), signature: Vec::new() }],
    };
    (grower, task)
}
