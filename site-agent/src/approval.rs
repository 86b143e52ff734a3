//! Which studies this site takes part in: the operator's approvals.
//!
//! A site answers a task only if its operator approved the task's study, and only under the
//! exact plan approved: the study's id and the SHA-256 of its canonical plan
//! ([`fedrad_shared::plan::StudyPlan`]) travel with every task. The approved plan is kept here
//! in full, because the site checks every task's parameters against it (grids, folds, seeds,
//! model bounds, encoder settings, the feature parameter file), whatever the coordinator sends.
//!
//! Files: `<work_dir>/approved/<study_id>.json` (one per approved study, with the plan in full
//! and when it was approved). Withdrawing an approval removes the file. Approvals are not yet
//! entries of the audit log; the log's entries name the study each answer belongs to.

use std::path::{Path, PathBuf};

use fedrad_shared::clinical::{VariableSpec, dictionary_mismatch};
use fedrad_shared::plan::StudyPlan;

/// One study this site's operator approved.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub study_id: String,
    pub plan_sha256: String,
    pub approved_unix_millis: u64,
    pub plan: StudyPlan,
    /// For a leave-one-hospital-out analysis ([`StudyPlan::held_out_analysis`]): the approved
    /// study it belongs to, whose populations (split, folds, features) it reads. Not stored:
    /// an analysis is approved with its study, never on its own.
    #[serde(skip)]
    pub analysis_of: Option<HeldOutAnalysis>,
}

/// The study a leave-one-hospital-out analysis belongs to, and the site it leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOutAnalysis {
    pub study_id: String,
    pub held_out: String,
}

impl Approval {
    /// The study whose populations (split, folds, feature tables) the tasks read: the study
    /// itself, or the study an analysis belongs to.
    pub fn data_study(&self) -> &str {
        self.analysis_of.as_ref().map_or(&self.study_id, |a| &a.study_id)
    }

    /// The site a leave-one-hospital-out analysis leaves out, if this is one.
    pub fn held_out(&self) -> Option<&str> {
        self.analysis_of.as_ref().map(|a| a.held_out.as_str())
    }

    /// The leave-one-hospital-out analysis of this approved study without `site`, if its plan
    /// has such analyses and `site` is one of its sites.
    pub fn held_out_analysis(&self, site: &str) -> Option<Approval> {
        let plan = self.plan.held_out_analysis(site)?;
        Some(Approval {
            study_id: plan.study_id.clone(),
            plan_sha256: plan.sha256(),
            approved_unix_millis: self.approved_unix_millis,
            plan,
            analysis_of: Some(HeldOutAnalysis { study_id: self.study_id.clone(), held_out: site.to_string() }),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an approval record: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("{path}: the recorded plan hashes to {actual}, not the recorded {recorded} (the file was edited)")]
    Tampered { path: PathBuf, recorded: String, actual: String },
    #[error("study id {0:?}: use 1-64 characters A-Z a-z 0-9 . _ -")]
    BadStudyId(String),
    #[error("the plan of study {study_id} does not list this site ({site_id}) among its sites ({sites})")]
    NotAmongSites { study_id: String, site_id: String, sites: String },
    #[error("study {0} is not approved at this site")]
    NotApproved(String),
    #[error("study {study_id} cannot be approved here: {}", problems.join("; "))]
    Dictionary { study_id: String, problems: Vec<String> },
    #[error("study {study_id}: its plan is not valid: {detail}")]
    InvalidPlan { study_id: String, detail: String },
    #[error(
        "study {study_id} secure-sums its aggregates and pins key {pinned} for this site, but {actual}: the plan was made for another key (enrolled again since?) or was altered; ask the coordinator for a plan with this site's key (`coordinator certs pins`)"
    )]
    OwnKeyNotPinned { study_id: String, pinned: String, actual: String },
}

fn dir(work_dir: &Path) -> PathBuf {
    work_dir.join("approved")
}

fn path(work_dir: &Path, study_id: &str) -> Result<PathBuf, ApprovalError> {
    if !crate::engine::valid_study_id(study_id) {
        return Err(ApprovalError::BadStudyId(study_id.into()));
    }
    Ok(dir(work_dir).join(format!("{study_id}.json")))
}

/// Records the operator's approval of `plan` for this site. Replaces an earlier approval of the
/// same study id (the split and folds the site already recorded for it stay fixed).
///
/// The plan carries the study's data dictionary; every variable the study will ask about
/// (Table 1's and the clinical model's) must be a column of this site's table (`schema`: its
/// manifest as the config describes it) with the same kind, levels and unit. A study that
/// means something else by a name is refused here, naming each variable, rather than answered
/// with counts of the wrong thing.
///
/// A plan that secure-sums must pin `own_key`, the fingerprint of this site's certificate key
/// (None: the site has no certificate, and cannot take part in secure sums).
pub fn approve(work_dir: &Path, site_id: &str, schema: &[VariableSpec], plan: &StudyPlan, own_key: Option<&str>) -> Result<Approval, ApprovalError> {
    let p = path(work_dir, &plan.study_id)?;
    if plan.study_id.contains(fedrad_shared::plan::HELD_OUT_SEPARATOR) {
        // Such ids name a study's leave-one-hospital-out analyses, approved with the study.
        return Err(ApprovalError::InvalidPlan {
            study_id: plan.study_id.clone(),
            detail: format!("`{}` names leave-one-hospital-out analyses, which are approved with their study", fedrad_shared::plan::HELD_OUT_SEPARATOR),
        });
    }
    if !plan.sites.iter().any(|s| s == site_id) {
        return Err(ApprovalError::NotAmongSites { study_id: plan.study_id.clone(), site_id: site_id.into(), sites: plan.sites.join(", ") });
    }
    if let Some(secure) = &plan.secure_aggregation {
        let pinned = secure.site_keys.get(site_id).cloned().unwrap_or_else(|| "none".into());
        if own_key != Some(pinned.as_str()) {
            let actual = own_key.map_or("this site has no certificate key ([tls])".to_string(), |k| format!("this site's certificate key is {k}"));
            return Err(ApprovalError::OwnKeyNotPinned { study_id: plan.study_id.clone(), pinned, actual });
        }
    }
    let used = plan.used_variables().map_err(|detail| ApprovalError::InvalidPlan { study_id: plan.study_id.clone(), detail })?;
    fedrad_shared::clinical::validate_dictionary(&used).map_err(|detail| ApprovalError::InvalidPlan { study_id: plan.study_id.clone(), detail })?;
    let problems: Vec<String> = used.iter().filter_map(|v| dictionary_mismatch(schema, v)).collect();
    if !problems.is_empty() {
        return Err(ApprovalError::Dictionary { study_id: plan.study_id.clone(), problems });
    }
    let approval = Approval {
        study_id: plan.study_id.clone(),
        plan_sha256: plan.sha256(),
        approved_unix_millis: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        plan: plan.clone(),
        analysis_of: None,
    };
    let text = serde_json::to_string_pretty(&approval).expect("an approval serialises") + "\n";
    crate::engine::write_atomic(&p, text.as_bytes()).map_err(|source| ApprovalError::Io { path: p.clone(), source })?;
    Ok(approval)
}

/// Withdraws the approval of `study_id`: from then on its tasks are refused.
pub fn withdraw(work_dir: &Path, study_id: &str) -> Result<Approval, ApprovalError> {
    let approval = load(work_dir, study_id)?;
    let p = path(work_dir, study_id)?;
    std::fs::remove_file(&p).map_err(|source| ApprovalError::Io { path: p, source })?;
    Ok(approval)
}

/// The approval of `study_id`, checked: a record whose plan no longer hashes to its recorded
/// SHA-256 is refused as tampered.
pub fn load(work_dir: &Path, study_id: &str) -> Result<Approval, ApprovalError> {
    let p = path(work_dir, study_id)?;
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ApprovalError::NotApproved(study_id.into())),
        Err(source) => return Err(ApprovalError::Io { path: p, source }),
    };
    let a: Approval = serde_json::from_str(&text).map_err(|source| ApprovalError::Corrupt { path: p.clone(), source })?;
    let actual = a.plan.sha256();
    if actual != a.plan_sha256 || a.plan.study_id != a.study_id || a.study_id != study_id {
        return Err(ApprovalError::Tampered { path: p, recorded: a.plan_sha256, actual });
    }
    Ok(a)
}

/// The approval records a running agent has read, so that a task does not read, parse and
/// hash its study's plan again (two or three times per task before). A record is read again
/// whenever its file changed — another length, modification time or inode (approvals are
/// written by an atomic rename) — or is gone, so `site-agent approve` and `withdraw` take effect
/// at the next task as before.
#[derive(Debug, Default)]
pub struct ApprovalCache {
    read: std::sync::Mutex<std::collections::BTreeMap<String, (FileStamp, std::sync::Arc<Approval>)>>,
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(m);
        #[cfg(not(unix))]
        let inode = 0;
        FileStamp { len: m.len(), modified: m.modified().ok(), inode }
    }
}

impl ApprovalCache {
    /// [`load`], reading the record only when its file changed since it was last read.
    pub fn load(&self, work_dir: &Path, study_id: &str) -> Result<std::sync::Arc<Approval>, ApprovalError> {
        match self.load_recorded(work_dir, study_id) {
            Err(ApprovalError::NotApproved(id)) => {
                // A leave-one-hospital-out analysis is approved with its study.
                let derived =
                    fedrad_shared::plan::parse_held_out_study_id(study_id).and_then(|(study, site)| self.load_recorded(work_dir, study).ok()?.held_out_analysis(site));
                derived.map(std::sync::Arc::new).ok_or(ApprovalError::NotApproved(id))
            }
            other => other,
        }
    }

    fn load_recorded(&self, work_dir: &Path, study_id: &str) -> Result<std::sync::Arc<Approval>, ApprovalError> {
        let p = path(work_dir, study_id)?;
        let stamp = match std::fs::metadata(&p) {
            Ok(m) => FileStamp::of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.read.lock().unwrap_or_else(|e| e.into_inner()).remove(study_id);
                return Err(ApprovalError::NotApproved(study_id.into()));
            }
            Err(source) => return Err(ApprovalError::Io { path: p, source }),
        };
        if let Some((seen, a)) = self.read.lock().unwrap_or_else(|e| e.into_inner()).get(study_id)
            && *seen == stamp
        {
            return Ok(a.clone());
        }
        let a = std::sync::Arc::new(load(work_dir, study_id)?);
        // Stamped as it was before the read: a file replaced during the read is read again next time.
        self.read.lock().unwrap_or_else(|e| e.into_inner()).insert(study_id.to_string(), (stamp, a.clone()));
        Ok(a)
    }
}

/// Every approval record that reads and checks, by study id; the others are skipped with a
/// warning (a task of such a study is refused at the site with the reason).
pub fn readable(work_dir: &Path) -> Vec<Approval> {
    let Ok(entries) = std::fs::read_dir(dir(work_dir)) else { return Vec::new() };
    let mut ids: Vec<String> = entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string)).collect();
    ids.sort();
    ids.iter()
        .filter_map(|id| match load(work_dir, id) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(study = %id, error = %e, "approval record skipped");
                None
            }
        })
        .collect()
}

/// Every approved study, by id.
pub fn list(work_dir: &Path) -> Result<Vec<Approval>, ApprovalError> {
    let d = dir(work_dir);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ApprovalError::Io { path: d, source }),
    };
    let mut ids: Vec<String> = entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string)).collect();
    ids.sort();
    ids.iter().map(|id| load(work_dir, id)).collect()
}

/// What an operator reads before and after approving: the plan's identity and the settings
/// that decide what this site will be asked.
pub fn summary(a: &Approval) -> String {
    let p = &a.plan;
    let classifiers: Vec<&str> = p.models.classifiers.iter().map(|c| c.label()).collect();
    let deep = match (p.deep.enabled, p.deep.source) {
        (false, _) => "none".to_string(),
        (true, fedrad_shared::plan::DeepSource::Encoder) => format!(
            "encoder trained here, {} rounds, batches of {}, {} features",
            p.deep.rounds,
            if p.deep.batch_size == 0 { "the whole cohort".to_string() } else { p.deep.batch_size.to_string() },
            p.deep.embedding
        ),
        (true, fedrad_shared::plan::DeepSource::Onnx) => format!("ONNX network {}", p.deep.onnx.as_ref().map_or("?", |n| n.file.as_str())),
    };
    format!(
        "study {} — plan {}\n  sites: {}\n  seed {}, training fraction {}, {} folds, sequences {}\n  feature parameters: {}\n  univariate test {:?} (grid {} SD over ±{}), clinical variables {}\n  classifiers: {}\n  RBF SVM {} random features; forest {} trees of depth ≤ {} on {} bins; boosting {} rounds of depth ≤ {} on {} bins; C search {}\n  deep features: {}\n  model bounds: |coefficient| ≤ {} per SD, standardiser ≥ site SD / {}\n",
        a.study_id,
        a.plan_sha256,
        p.sites.join(", "),
        p.seed,
        p.split.training_fraction,
        p.selection.lasso.folds,
        p.selection.feature_sets().join(", "),
        if p.feature_parameters.is_empty() { "FedRad's default".to_string() } else { format!("{} bytes of PyRadiomics YAML", p.feature_parameters.len()) },
        p.selection.univariate.test,
        p.selection.univariate.resolution,
        p.selection.univariate.limit,
        p.used_variables().map(|v| v.iter().map(|v| v.name.clone()).collect::<Vec<_>>().join(", ")).unwrap_or_else(|e| e),
        classifiers.join(", "),
        p.models.rbf_svm.features,
        p.models.forest.trees,
        p.models.forest.max_depth,
        p.models.forest.bins,
        p.models.boosting.rounds,
        p.models.boosting.max_depth,
        p.models.boosting.bins,
        if p.models.search.enabled { format!("{:?}", p.models.search.c) } else { "off".to_string() },
        deep,
        p.limits.max_coefficient,
        p.limits.max_scale_ratio,
    ) + &secure_summary(p)
        + &held_out_summary(p)
        + if p.per_site_results {
            "  per-site results: each model's score histograms and Table 1 (with excluded rows per reason) per site in the clear (its AUC and characteristics at each hospital); answered only if this site's policy.per_site_results publishes them\n"
        } else {
            if p.secure_aggregation.is_some() {
                "  per-site results: none (score histograms and Table 1 only as secure sums over all sites)\n"
            } else {
                "  per-site results: none published (without secure aggregation the coordinator still sees each site's score histograms and Table 1)\n"
            }
        }
}

/// What approving a plan with leave-one-hospital-out analyses also approves.
fn held_out_summary(p: &StudyPlan) -> String {
    if !p.leave_one_hospital_out {
        return String::new();
    }
    let ids: Vec<String> = p.site_set().iter().map(|s| fedrad_shared::plan::held_out_study_id(&p.study_id, s)).collect();
    format!(
        "  leave-one-hospital-out: the selection and models again without each site ({}), on this study's split, folds and features; left out, this site only scores the models every other site attested. The study's sums minus those of the analysis without this site are this site's own aggregates: approving publishes them\n",
        ids.join(", ")
    )
}

/// The secure-aggregation lines of the summary: each site's pinned key, which the operator
/// compares (its own is checked on approval; the others' with those hospitals, with the plan hash).
fn secure_summary(p: &StudyPlan) -> String {
    match &p.secure_aggregation {
        None => "  secure aggregation: off (the coordinator sees this site's aggregates)\n".into(),
        Some(s) => {
            let mut out = format!(
                "  secure aggregation: on (the coordinator learns only sums over all sites of the rounds it adds up); site-alone baselines {}\n",
                if s.site_alone_baselines { "published (per-site results)" } else { "not run" }
            );
            for (site, key) in &s.site_keys {
                out += &format!("    {site} key {key}\n");
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(study: &str) -> StudyPlan {
        let cfg: fedrad_shared::plan::StudyConfig =
            toml::from_str(&format!("study_id = \"{study}\"\noutput_dir = \"out\"\nseed = 7\nsites = [\"site-a\", \"site-b\"]\n")).unwrap();
        cfg.plan().unwrap()
    }

    #[test]
    fn approve_list_withdraw_and_tamper_detection() {
        let work = std::env::temp_dir().join(format!("fedrad-approval-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let p = plan("s1");
        let schema = fedrad_shared::clinical::npc_dictionary();
        assert!(matches!(approve(&work, "site-z", &schema, &p, None), Err(ApprovalError::NotAmongSites { .. })));
        let a = approve(&work, "site-a", &schema, &p, None).unwrap();
        assert_eq!(a.plan_sha256, p.sha256());
        approve(&work, "site-a", &schema, &plan("s2"), None).unwrap();
        assert_eq!(list(&work).unwrap().iter().map(|a| a.study_id.as_str()).collect::<Vec<_>>(), ["s1", "s2"]);
        // A plan edited in the record no longer matches its hash.
        let file = work.join("approved/s1.json");
        let text = std::fs::read_to_string(&file).unwrap().replace("\"seed\": 7", "\"seed\": 8");
        std::fs::write(&file, text).unwrap();
        assert!(matches!(load(&work, "s1"), Err(ApprovalError::Tampered { .. })));
        withdraw(&work, "s2").unwrap();
        assert!(matches!(load(&work, "s2"), Err(ApprovalError::NotApproved(_))));
        assert!(matches!(load(&work, "../x"), Err(ApprovalError::BadStudyId(_))));
        let _ = std::fs::remove_dir_all(&work);
    }

    /// The cache answers what `load` answers, whatever happened to the file since it was read:
    /// another plan approved, the record edited in place (even to the same length), withdrawn.
    #[test]
    fn the_approval_cache_reads_a_record_again_when_its_file_changes() {
        let work = std::env::temp_dir().join(format!("fedrad-approval-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let schema = fedrad_shared::clinical::npc_dictionary();
        let cache = ApprovalCache::default();
        assert!(matches!(cache.load(&work, "s1"), Err(ApprovalError::NotApproved(_))));
        approve(&work, "site-a", &schema, &plan("s1"), None).unwrap();
        let first = cache.load(&work, "s1").unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &cache.load(&work, "s1").unwrap()), "an unchanged record is not read again");
        // Another plan for the same study (seed 8, written by rename).
        let other: fedrad_shared::plan::StudyConfig = toml::from_str("study_id = \"s1\"\noutput_dir = \"out\"\nseed = 8\nsites = [\"site-a\", \"site-b\"]\n").unwrap();
        approve(&work, "site-a", &schema, &other.plan().unwrap(), None).unwrap();
        let second = cache.load(&work, "s1").unwrap();
        assert_eq!(second.plan.seed, 8);
        assert_ne!(second.plan_sha256, first.plan_sha256);
        // Edited in place to the same length: detected as tampering, not served from the cache.
        let file = work.join("approved/s1.json");
        let text = std::fs::read_to_string(&file).unwrap().replace("\"seed\": 8", "\"seed\": 9");
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&file, text).unwrap();
        assert!(matches!(cache.load(&work, "s1"), Err(ApprovalError::Tampered { .. })));
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(cache.load(&work, "s1"), Err(ApprovalError::NotApproved(_))));
        let _ = std::fs::remove_dir_all(&work);
    }

    #[test]
    fn a_study_whose_dictionary_this_sites_table_does_not_match_is_refused_naming_each_variable() {
        let work = std::env::temp_dir().join(format!("fedrad-approval-dict-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let schema = fedrad_shared::clinical::npc_dictionary();
        let study = |vars: &str| -> StudyPlan {
            let cfg: fedrad_shared::plan::StudyConfig =
                toml::from_str(&format!("study_id = \"d\"\noutput_dir = \"out\"\nseed = 7\nsites = [\"site-a\"]\n{vars}")).unwrap();
            cfg.validate().unwrap();
            cfg.plan().unwrap()
        };
        // The NPC dictionary spelled out in the study file equals the default, hash included.
        let spelled: String = schema
            .iter()
            .map(|v| match &v.kind {
                fedrad_shared::clinical::VariableKind::Categorical { levels } => {
                    format!("[[variables]]\nname = \"{}\"\nlabel = \"{}\"\nkind = \"categorical\"\nlevels = {levels:?}\n", v.name, v.label)
                }
                fedrad_shared::clinical::VariableKind::Continuous { resolution, unit } => {
                    format!("[[variables]]\nname = \"{}\"\nlabel = \"{}\"\nkind = \"continuous\"\nresolution = {resolution:?}\nunit = \"{unit}\"\n", v.name, v.label)
                }
            })
            .collect();
        assert_eq!(study(&spelled).sha256(), study("").sha256());
        approve(&work, "site-a", &schema, &study(&spelled), None).unwrap();
        // Another level order, another unit, a variable this site does not hold: each named.
        let other = spelled.replace("[\"male\", \"female\"]", "[\"female\", \"male\"]").replace("unit = \"copies/mL\"", "unit = \"kcopies/mL\"")
            + "[[variables]]\nname = \"smoking\"\nkind = \"categorical\"\nlevels = [\"never\", \"former\", \"current\"]\n";
        let Err(ApprovalError::Dictionary { problems, .. }) = approve(&work, "site-a", &schema, &study(&other), None) else {
            panic!("approved a mismatching dictionary")
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`sex`") && problems[0].contains("female, male"), "{problems:?}");
        assert!(problems[1].contains("`ebv_dna`") && problems[1].contains("kcopies/mL"), "{problems:?}");
        assert!(problems[2].contains("`smoking`") && problems[2].contains("[[clinical.extra]]"), "{problems:?}");
        // A study that uses only what the site holds is approved, whatever else its dictionary lists.
        let narrow = other + "[table1]\nvariables = [\"age\", \"t_stage\"]\n[clinical_model]\nvariables = [\"age\"]\n";
        approve(&work, "site-a", &schema, &study(&narrow), None).unwrap();
        let _ = std::fs::remove_dir_all(&work);
    }
}
