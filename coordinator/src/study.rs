//! Running a study: each step asks every site for one kind of aggregate, combines the
//! answers with the algorithm's coordinator half, and writes its results.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fedrad_shared::aggregate::SiteAggregate;
use fedrad_shared::algorithms::{CombineError, cohort_summary, extraction, split, standardise, table1};
use fedrad_shared::clinical::{VariableKind, VariableSpec};
use fedrad_shared::proto::{self, Task, task, task_reply};
use fedrad_shared::secure_sum;

use crate::config::StudyConfig;
use crate::hub::{Hub, TaskError, Traffic};

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("site(s) {} did not connect within {seconds} s; check that their agents run and can reach this coordinator", .sites.join(", "))]
    SitesMissing { sites: Vec<String>, seconds: u64 },
    #[error("step {step}: site {site} refused: {detail}")]
    Refused { step: String, site: String, detail: String },
    #[error("step {step}: site {site} failed: {detail}")]
    SiteFailed { step: String, site: String, detail: String },
    #[error("step {step}: {source}")]
    Timeout { step: String, source: TaskError },
    #[error("step {step}: cannot combine the answers: {source}")]
    Combine { step: String, source: CombineError },
    #[error("step {step}: {detail}")]
    Algorithm { step: String, detail: String },
    #[error("writing results to {path}: {source}")]
    Output { path: String, source: std::io::Error },
}

/// Rounds, tasks and bytes of one step (the protocol's cost, for the report).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepProtocol {
    pub step: String,
    pub rounds: u64,
    pub tasks: u64,
    pub bytes_to_sites: u64,
    pub bytes_from_sites: u64,
    pub seconds: f64,
    /// False if the step failed (e.g. a site refused); its cost is still counted.
    pub completed: bool,
    /// Rounds answered from the journal of an earlier run (`--resume`), which cost nothing.
    pub replayed_rounds: u64,
    /// Rounds whose answers the sites masked, so that only their sum was learnt
    /// (`fedrad_shared::secure_sum`).
    pub secure_summed_rounds: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StudyResults {
    pub study_id: String,
    pub seed: u64,
    pub sites: Vec<String>,
    pub cohort: cohort_summary::CohortSummary,
    pub split: split::SplitSummary,
    pub table1: table1::Table1,
    pub extraction: extraction::ExtractionSummary,
    /// Deep features per sequence: the encoder's federated training and the embedding counts.
    pub deep: Vec<crate::deep::DeepResult>,
    /// Per sequence, why it has no deep features when the study asked for them.
    pub deep_notes: BTreeMap<String, String>,
    /// ComBat harmonisation per feature table (absent, and not in `results.json`, when off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harmonisation: Option<crate::harmonisation::Harmonisation>,
    /// Feature selection per sequence (absent if disabled in the study file).
    pub selection: Option<crate::selection::SelectionResults>,
    pub clinical_model: Option<fedrad_shared::algorithms::logistic::ClinicalModel>,
    /// Models I–III per sequence with every classifier (absent if selection is disabled).
    pub models: Vec<crate::models::ModelResult>,
    /// DeLong's paired comparisons of the fitted models' validation AUCs.
    pub comparison: Option<crate::comparison::ModelComparison>,
    /// Why the models were not compared, when they were not.
    pub comparison_note: Option<String>,
    /// Leave-one-hospital-out validation (absent, and not in `results.json`, when off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leave_one_hospital_out: Option<crate::held_out::LeaveOneHospitalOut>,
    /// Rounds, bytes and seconds per step of this run: written to `protocol.json`, not to
    /// `results.json`, which depends only on the data and the study file (a resumed or
    /// disturbed run writes the same bytes).
    #[serde(skip)]
    pub protocol: Vec<StepProtocol>,
    pub software_version: String,
}

/// Progress callbacks, so the CLI can draw bars and tests can stay quiet.
pub trait Progress: Send + Sync {
    fn waiting(&self, _connected: &[String], _expected: &[String]) {}
    fn step_started(&self, _step: &str, _sites: usize) {}
    fn site_answered(&self, _step: &str, _site: &str) {}
    fn step_finished(&self, _step: &str) {}
}

pub struct Quiet;
impl Progress for Quiet {}

pub struct StudyRunner<'a> {
    pub(crate) hub: Hub,
    pub(crate) study: StudyConfig,
    pub(crate) progress: &'a dyn Progress,
    protocol: Vec<StepProtocol>,
    pub(crate) resume: bool,
    pub(crate) journal: Option<crate::journal::Journal>,
    replayed: u64,
    /// SHA-256 of the study's plan, sent with every task (sites answer only a plan they approved).
    pub(crate) plan_sha256: String,
    /// The plan secure-sums the kinds the coordinator only adds up.
    pub(crate) secure: bool,
    secure_rounds: u64,
    /// The secure-sum directory the last secure round was sent with: the held-out site of a
    /// leave-one-hospital-out analysis gets the same one, so that its task's digest is the one
    /// the fitting sites signed ([`crate::held_out`]).
    pub(crate) last_directory: Option<proto::SecureSum>,
    /// Each site's policy as published in its hello when the study started (sites may
    /// reconnect during the study; the plan of folds and model sizes uses these).
    pub(crate) policies: BTreeMap<String, proto::SitePolicy>,
    /// In a leave-one-hospital-out analysis ([`crate::held_out`]): the site it leaves out,
    /// which scores the analysis's final models.
    pub(crate) held_out: Option<String>,
}

fn traffic_total(t: &std::collections::HashMap<String, Traffic>) -> Traffic {
    t.values().fold(Traffic::default(), |a, b| Traffic {
        tasks: a.tasks + b.tasks,
        bytes_to_site: a.bytes_to_site + b.bytes_to_site,
        bytes_from_site: a.bytes_from_site + b.bytes_from_site,
    })
}

impl<'a> StudyRunner<'a> {
    pub fn new(hub: Hub, study: StudyConfig, progress: &'a dyn Progress) -> Self {
        let plan = study.plan().ok();
        let plan_sha256 = plan.as_ref().map(|p| p.sha256()).unwrap_or_default();
        let secure = plan.is_some_and(|p| p.secure_aggregation.is_some());
        StudyRunner {
            hub,
            study,
            progress,
            protocol: Vec::new(),
            resume: false,
            journal: None,
            replayed: 0,
            plan_sha256,
            secure,
            secure_rounds: 0,
            last_directory: None,
            policies: BTreeMap::new(),
            held_out: None,
        }
    }

    /// Continue an interrupted run: rounds recorded in `<output_dir>/journal/` are replayed
    /// instead of being asked again (see [`crate::journal`]).
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// One round of a step: the same task kind to every site, concurrently.
    ///
    /// A round of a kind the coordinator only adds up ([`secure_sum::secure_summable`]) over
    /// all the study's sites comes back as one answer, their sum, from
    /// [`secure_sum::SUM_OF_SITES`]: masked by the sites when the plan secure-sums, and summed
    /// in the same fixed point when it does not, so both give the same results.
    pub(crate) async fn round(&mut self, step: &str, round: u64, kinds: BTreeMap<String, task::Kind>) -> Result<Vec<SiteAggregate>, StudyError> {
        Ok(self.round_inner(step, round, kinds, false).await?.0)
    }

    /// [`Self::round`], also returning every site's answer as it sent and signed it (sorted by
    /// site), for the rounds whose answers the next task forwards to every site so that each
    /// can recompute it (the LASSO's and the classifier fits'; `lasso::LassoReplica`,
    /// `classifiers::FitReplica`).
    pub(crate) async fn round_signed(
        &mut self,
        step: &str,
        round: u64,
        kinds: BTreeMap<String, task::Kind>,
    ) -> Result<(Vec<SiteAggregate>, Vec<proto::SignedAnswer>), StudyError> {
        self.round_inner(step, round, kinds, true).await
    }

    async fn round_inner(
        &mut self,
        step: &str,
        round: u64,
        kinds: BTreeMap<String, task::Kind>,
        keep_signed: bool,
    ) -> Result<(Vec<SiteAggregate>, Vec<proto::SignedAnswer>), StudyError> {
        let timeout = Duration::from_secs(self.study.timeouts.task_secs);
        let (task_id, round_digest) = self.round_id(step, round, &kinds);
        let mut study_sites = self.study.sites.clone();
        study_sites.sort();
        study_sites.dedup();
        let summed = study_sites.len() >= 2 && kinds.keys().eq(study_sites.iter()) && kinds.values().all(secure_sum::secure_summable);
        let directory = match (summed && self.secure).then(|| self.hub.secure_sum_directory(&study_sites)) {
            Some(Ok(d)) => Some(d),
            Some(Err(missing)) => {
                return Err(StudyError::Algorithm {
                    step: step.into(),
                    detail: format!(
                        "the study secure-sums and site(s) {} sent no secure-sum key (an agent without a certificate key, or of a version before secure aggregation)",
                        missing.join(", ")
                    ),
                });
            }
            None => None,
        };
        if directory.is_some() {
            self.last_directory = directory.clone();
        }
        let replayed = self.journal.as_ref().and_then(|j| {
            let answers = j.replay(&task_id, &round_digest)?;
            let signed = if keep_signed { j.replay_signed(&task_id, &round_digest)? } else { Vec::new() };
            Some((answers, signed))
        });
        if let Some((answers, signed)) = replayed {
            self.replayed += 1;
            for a in &answers {
                self.progress.site_answered(step, &a.site_id);
            }
            return Ok((answers, signed));
        }
        let mut set = tokio::task::JoinSet::new();
        for (site, kind) in kinds {
            let hub = self.hub.clone();
            let task = self.round_task(&task_id, &round_digest, kind, directory.clone());
            set.spawn(async move {
                let r = hub.run_task(&site, task, timeout).await;
                (site, r)
            });
        }
        let mut answers = Vec::new();
        let mut signed = Vec::new();
        // Every error is kept and the one from the first site by id is reported, so the
        // outcome (e.g. a classifier's "not fitted" reason) does not depend on which site
        // happened to answer first.
        let mut errors: Vec<(String, StudyError)> = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (site, result) = joined.expect("task joins");
            self.progress.site_answered(step, &site);
            let from = site.clone();
            let err = match result {
                Err(source) => Some(StudyError::Timeout { step: step.into(), source }),
                Ok(reply) => match reply_aggregate(step, &site, reply.outcome) {
                    Ok(a) => {
                        if keep_signed {
                            signed.push(proto::SignedAnswer { site_id: site.clone(), aggregate: Some(a.clone()), signature: reply.signature });
                        }
                        answers.push(SiteAggregate::new(site, a));
                        None
                    }
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = err {
                errors.push((from, e));
            }
        }
        if let Some((_, e)) = errors.into_iter().min_by(|a, b| a.0.cmp(&b.0)) {
            return Err(e);
        }
        answers.sort_by(|a, b| a.site_id.cmp(&b.site_id));
        if summed {
            answers = vec![secure_sum::combine(&answers).map_err(|source| StudyError::Combine { step: step.into(), source })?];
            self.secure_rounds += u64::from(directory.is_some());
        }
        signed.sort_by(|a, b| a.site_id.cmp(&b.site_id));
        if let Some(j) = &self.journal {
            // The signed answers first: a round entry is replayed only with them.
            let recorded = if keep_signed { j.record_signed(&task_id, &round_digest, &signed) } else { Ok(()) };
            if let Err(e) = recorded.and_then(|()| j.record(&task_id, &round_digest, &answers)) {
                tracing::warn!(error = %e, round = %task_id, "could not journal the round; a resumed run will ask it again");
            }
        }
        Ok((answers, signed))
    }

    /// A leave-one-hospital-out analysis's steps, appended to this study's protocol under
    /// their analysis's name.
    pub(crate) fn absorb_protocol(&mut self, analysis: &StudyRunner<'_>) {
        self.protocol.extend(analysis.protocol.iter().cloned());
        self.secure_rounds += analysis.secure_rounds;
        self.replayed += analysis.replayed;
    }

    /// A round's id (`<step>-r<round>`, the journal's key) and the digest of its content.
    pub(crate) fn round_id(&self, step: &str, round: u64, kinds: &BTreeMap<String, task::Kind>) -> (String, String) {
        let task_id = format!("{step}-r{round}");
        let digest = crate::journal::Journal::round_digest(&self.study.study_id, &self.plan_sha256, &task_id, kinds);
        (task_id, digest)
    }

    /// The task of a round as a site receives it. The id names the round and its content, so
    /// a rerun with other settings never reuses an id a site has already answered for a
    /// different task. (The held-out site of a leave-one-hospital-out analysis gets the
    /// fitting sites' task from here too, so that their signatures bind the same bytes.)
    pub(crate) fn round_task(&self, task_id: &str, round_digest: &str, kind: task::Kind, secure_sum: Option<proto::SecureSum>) -> Task {
        Task {
            task_id: format!("{task_id}-{}", &round_digest[..12]),
            study_id: self.study.study_id.clone(),
            kind: Some(kind),
            study_sites: self.study.sites.clone(),
            plan_sha256: self.plan_sha256.clone(),
            secure_sum,
        }
    }

    pub(crate) async fn step<T>(&mut self, name: &str, body: impl AsyncFnOnce(&mut Self) -> Result<(T, u64), StudyError>) -> Result<T, StudyError> {
        // An analysis's steps are named after it in the progress and the protocol.
        let shown = match &self.held_out {
            Some(site) => format!("without {site}: {name}"),
            None => name.to_string(),
        };
        let name = shown.as_str();
        self.progress.step_started(name, self.study.sites.len());
        let before = traffic_total(&self.hub.traffic());
        let replayed_before = self.replayed;
        let secure_before = self.secure_rounds;
        let start = Instant::now();
        let result = body(self).await;
        let after = traffic_total(&self.hub.traffic());
        let tasks = after.tasks - before.tasks;
        // A failed step still cost what it sent; count it so the protocol table is complete.
        let rounds = match &result {
            Ok((_, r)) => *r,
            Err(_) => tasks / self.study.sites.len().max(1) as u64,
        };
        self.protocol.push(StepProtocol {
            step: name.into(),
            rounds,
            tasks,
            bytes_to_sites: after.bytes_to_site - before.bytes_to_site,
            bytes_from_sites: after.bytes_from_site - before.bytes_from_site,
            seconds: start.elapsed().as_secs_f64(),
            completed: result.is_ok(),
            replayed_rounds: self.replayed - replayed_before,
            secure_summed_rounds: self.secure_rounds - secure_before,
        });
        self.progress.step_finished(name);
        tracing::info!(step = name, rounds, seconds = format!("{:.2}", start.elapsed().as_secs_f64()), "step done");
        result.map(|(out, _)| out)
    }

    /// In a study that secure-sums, the sites' signed keys (the directory a secure-sum round
    /// carries), for a task whose forwarded answers the sites check but do not mask.
    pub(crate) fn peer_keys(&self) -> Result<Option<proto::SecureSum>, StudyError> {
        if !self.secure {
            return Ok(None);
        }
        let mut sites = self.study.sites.clone();
        sites.sort();
        sites.dedup();
        self.hub.secure_sum_directory(&sites).map(Some).map_err(|missing| StudyError::Algorithm {
            step: "deep".into(),
            detail: format!("the study secure-sums and site(s) {} sent no secure-sum key", missing.join(", ")),
        })
    }

    /// The largest `min_count` the connected sites published: tree leaves never go below it.
    pub(crate) fn largest_min_count(&self) -> u64 {
        self.policies.values().map(|p| p.min_count).max().unwrap_or(1)
    }

    /// The two rounds of the training moments of a feature table or model design
    /// ([`standardise::MomentsRun`]), as rounds `after + 1` and `after + 2` of `step`; `task`
    /// makes the task from round 2's centres (none for round 1). Returns the moments and the
    /// step's last round.
    pub(crate) async fn moments(
        &mut self,
        step: &str,
        after: u64,
        width: usize,
        task: impl Fn(Vec<f64>) -> task::Kind,
    ) -> Result<(standardise::FeatureMoments, u64), StudyError> {
        let mut run = standardise::MomentsRun::new(width);
        let mut round = after;
        while let Some(request) = run.request() {
            let centre = match request {
                standardise::MomentsRequest::Sums => Vec::new(),
                standardise::MomentsRequest::Squares { centre } => centre,
            };
            round += 1;
            let answers = self.round(step, round, self.all_sites(task(centre))).await?;
            run.absorb(&answers).map_err(|source| StudyError::Combine { step: step.into(), source })?;
        }
        Ok((run.moments().expect("both rounds absorbed").clone(), round))
    }

    pub(crate) fn all_sites(&self, kind: task::Kind) -> BTreeMap<String, task::Kind> {
        self.study.sites.iter().map(|s| (s.clone(), kind.clone())).collect()
    }

    pub async fn wait_for_sites(&self) -> Result<(), StudyError> {
        let expected = self.study.sites.clone();
        let secs = self.study.timeouts.site_wait_secs;
        self.hub
            .wait_for_sites(&expected, Duration::from_secs(secs), &|c| self.progress.waiting(c, &expected))
            .await
            .map_err(|sites| StudyError::SitesMissing { sites, seconds: secs })
    }

    /// Runs every step and writes the outputs.
    pub async fn run(mut self) -> Result<StudyResults, StudyError> {
        let out = self.study.output_dir.clone();
        let plan = self.study.plan().map_err(|e| StudyError::Algorithm { step: "start".into(), detail: format!("the study's plan: {e}") })?;
        self.plan_sha256 = plan.sha256();
        // What every site's operator approves, beside the results (`site-agent approve --plan`).
        write_text(&out.join("plan.json"), &(plan.canonical_json() + "\n"))?;
        tracing::info!(plan_sha256 = %self.plan_sha256, "study plan");
        if self.study.sites.len() > 1 && plan.secure_aggregation.is_none() {
            // Without pinned keys no site can check the others' answers, so none can recompute
            // the LASSO and classifier rounds (site-agent's `replay`).
            tracing::warn!(
                "the plan pins no site keys: sites at their default policy will refuse the LASSO and classifier rounds, which they cannot recompute without them; turn secure aggregation on ([secure_aggregation] enabled = true, site_keys from `coordinator certs pins`)"
            );
        }
        let journal_dir = out.join("journal");
        self.journal = Some(
            crate::journal::Journal::open(journal_dir.clone(), self.resume).map_err(|source| StudyError::Output { path: journal_dir.display().to_string(), source })?,
        );
        self.hub.journal_receipts(&self.study.study_id, out.join("receipts"));
        self.wait_for_sites().await?;
        self.policies = self.study.sites.iter().filter_map(|s| Some((s.clone(), self.hub.policy(s)?))).collect();
        // A site that takes part only in larger studies would refuse every task; say so now.
        let n = self.study.sites.len();
        for site in &self.study.sites {
            if let Some(m) = self.hub.min_sites(site).filter(|m| *m as usize > n) {
                return Err(StudyError::Refused {
                    step: "start".into(),
                    site: site.clone(),
                    detail: format!("its policy takes part only in studies of at least {m} sites; this study has {n}"),
                });
            }
        }

        let cohort = self
            .step("cohort_summary", async |s: &mut Self| {
                let answers = s.round("cohort_summary", 1, s.all_sites(task::Kind::CohortSummary(proto::CohortSummaryTask {}))).await?;
                let c = cohort_summary::combine(&answers).map_err(|source| StudyError::Combine { step: "cohort_summary".into(), source })?;
                Ok((c, 1))
            })
            .await?;
        write_json(&out.join("cohort_summary.json"), &cohort)?;

        let seed = self.study.seed;
        let fraction = self.study.split.training_fraction;
        let split = self
            .step("split", async |s: &mut Self| {
                let strata = cohort.sites.iter().map(|c| (c.site_id.clone(), (c.negatives, c.positives))).collect();
                let quotas = split::plan_quotas(&strata, fraction);
                let kinds = quotas
                    .iter()
                    .map(|(site, q)| {
                        (site.clone(), task::Kind::Split(proto::SplitTask { seed, training_quota_negative: q.negative, training_quota_positive: q.positive }))
                    })
                    .collect();
                let answers = s.round("split", 1, kinds).await?;
                let sp = split::combine(&answers).map_err(|source| StudyError::Combine { step: "split".into(), source })?;
                Ok((sp, 1))
            })
            .await?;
        write_json(&out.join("split.json"), &split)?;

        let variables = self.study.table1_variables().expect("validated at load");
        let table = self
            .step("table1", async |s: &mut Self| {
                // Per hospital only if the plan publishes per-site results (every site's policy
                // then does); otherwise one sum over the sites, masked when the study secure-sums.
                let per_site = s.study.validation.per_site_results;
                let t = proto::Table1Task { variables: variables.iter().map(variable_to_proto).collect(), per_site };
                let answers = s.round("table1", 1, s.all_sites(task::Kind::Table1(t))).await?;
                let t = table1::combine(&answers, &variables, per_site).map_err(|source| StudyError::Combine { step: "table1".into(), source })?;
                Ok((t, 1))
            })
            .await?;
        write_json(&out.join("table1.json"), &table)?;
        write_text(&out.join("table1.md"), &table1::to_markdown(&table))?;

        let parameters_yaml = match &self.study.features.parameters {
            Some(p) => std::fs::read_to_string(p).map_err(|source| StudyError::Output { path: p.display().to_string(), source })?,
            None => String::new(),
        };
        let extraction_summary = self
            .step("extract_features", async |s: &mut Self| {
                let kind = task::Kind::ExtractFeatures(proto::ExtractFeaturesTask { parameters_yaml: parameters_yaml.clone() });
                let answers = s.round("extract_features", 1, s.all_sites(kind)).await?;
                let e = extraction::combine(&answers).map_err(|source| StudyError::Combine { step: "extract_features".into(), source })?;
                Ok((e, 1))
            })
            .await?;
        write_json(&out.join("extraction.json"), &extraction_summary)?;

        let mut catalogue = Vec::new();
        let mut deep = Vec::new();
        let mut deep_notes = BTreeMap::new();
        let mut deep_catalogues = BTreeMap::new();
        let mut harmonisation = None;
        // Per site, patients the designs may lack: clinical values now (from Table 1), feature
        // rows once extracted.
        let mut missing = crate::selection::Missing {
            clinical: self.study.clinical_variables().map(|v| training_without_clinical(&table, &v, &cohort)).unwrap_or_default(),
            ..Default::default()
        };
        let (selection, clinical_model) = if self.study.selection.enabled {
            let settings = if parameters_yaml.trim().is_empty() {
                fedrad_radiomics::settings::Settings::study_default()
            } else {
                fedrad_radiomics::settings::Settings::from_pyradiomics_yaml(&parameters_yaml)
                    .map_err(|e| StudyError::Algorithm { step: "selection".into(), detail: format!("extraction parameters: {e}") })?
            };
            catalogue = fedrad_radiomics::catalogue::feature_catalogue(&settings)
                .map_err(|e| StudyError::Algorithm { step: "selection".into(), detail: format!("feature catalogue: {e}") })?;
            if self.study.deep.enabled {
                for seq in self.study.selection.sequences.clone() {
                    // A sequence whose encoder cannot be trained (e.g. a site refuses) goes on
                    // without deep features; Model II says why.
                    match self.run_deep(&seq).await {
                        Ok(r) => {
                            let mut names = catalogue.clone();
                            names.extend(extraction::deep_feature_names(r.dimension));
                            deep_catalogues.insert(seq.clone(), names);
                            deep.push(r);
                        }
                        Err(e @ (StudyError::Refused { .. } | StudyError::Algorithm { .. } | StudyError::Combine { .. })) => {
                            tracing::warn!(sequence = %seq, error = %e, "no deep features");
                            deep_notes.insert(seq.clone(), e.to_string());
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            // The clinical model first: its terms count towards Model III's size at the sites.
            let clinical_model = if self.study.clinical_model.enabled { Some(self.run_clinical_model(&split, &missing).await?) } else { None };
            missing.features = patients_without_features(&cohort, &extraction_summary, &deep, &self.study.selection.sequences, self.study.selection.both_sequences);
            if self.study.combat.enabled {
                let deep_names = deep_catalogues.iter().map(|(seq, names)| (seq.clone(), names[catalogue.len()..].to_vec())).collect();
                harmonisation = Some(self.run_combat(&catalogue, &deep_names).await?);
            }
            let selection = self.run_selection(&catalogue, &deep_catalogues, &split, &missing, clinical_model.as_ref()).await?;
            (Some(selection), clinical_model)
        } else {
            (None, if self.study.clinical_model.enabled { Some(self.run_clinical_model(&split, &missing).await?) } else { None })
        };
        let models = match &selection {
            Some(sel) => self.run_models(&catalogue, &deep_catalogues, &deep, sel, clinical_model.as_ref(), harmonisation.as_ref(), &parameters_yaml).await?,
            None => Vec::new(),
        };
        // DeLong comparisons; a refusal (e.g. a site too small for the validation classes) is
        // reported and the study still writes its results.
        let mut comparison_note = None;
        let comparison = if models.iter().map(|m| m.classifiers.len()).sum::<usize>() >= 2 {
            match self.step("compare_models", async |s: &mut Self| s.compare_models(&models).await).await {
                Ok(c) => Some(c),
                Err(e @ (StudyError::Refused { .. } | StudyError::Algorithm { .. } | StudyError::Combine { .. })) => {
                    tracing::warn!(error = %e, "models not compared");
                    comparison_note = Some(e.to_string());
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };

        // Leave-one-hospital-out: the selection and the models again without each hospital.
        let leave_one_hospital_out = match &selection {
            Some(sel) if plan.leave_one_hospital_out => {
                let parts = crate::held_out::StudyParts {
                    plan: &plan,
                    catalogue: &catalogue,
                    deep_catalogues: &deep_catalogues,
                    deep: &deep,
                    split: &split,
                    missing: &missing,
                    selection: sel,
                    extraction_parameters: &parameters_yaml,
                };
                let l = self.run_leave_one_hospital_out(&parts).await?;
                write_json(&out.join("leave_one_hospital_out.json"), &l)?;
                Some(l)
            }
            _ => None,
        };

        let results = StudyResults {
            study_id: self.study.study_id.clone(),
            seed,
            sites: self.study.sites.clone(),
            cohort,
            split,
            table1: table,
            extraction: extraction_summary,
            deep,
            deep_notes,
            harmonisation,
            selection,
            clinical_model,
            models,
            comparison,
            comparison_note,
            leave_one_hospital_out,
            protocol: self.protocol.clone(),
            software_version: env!("CARGO_PKG_VERSION").into(),
        };
        write_json(&out.join("results.json"), &results)?;
        write_json(&out.join("protocol.json"), &results.protocol)?;
        let settings = serde_json::to_string_pretty(&self.study).expect("serialisable");
        crate::report::write_all(&results, &settings, &out).map_err(|source| StudyError::Output { path: out.display().to_string(), source })?;
        Ok(results)
    }
}

/// Per site, the most of its patients that may lack a row in a feature table the selection
/// uses: those whose extraction failed for a sequence, plus, with deep features, those not
/// embedded (both known only as counts over all the site's patients).
fn patients_without_features(
    cohort: &cohort_summary::CohortSummary,
    extraction: &extraction::ExtractionSummary,
    deep: &[crate::deep::DeepResult],
    sequences: &[String],
    both_sequences: bool,
) -> BTreeMap<String, u64> {
    cohort
        .sites
        .iter()
        .map(|c| {
            let per_sequence: Vec<u64> = sequences
                .iter()
                .map(|seq| {
                    let extracted = extraction.per_site.get(&c.site_id).and_then(|m| m.get(seq)).map_or(0, |x| x.succeeded);
                    let not_embedded =
                        deep.iter().find(|d| &d.sequence == seq).map_or(0, |d| c.loaded.saturating_sub(d.embedded_per_site.get(&c.site_id).copied().unwrap_or(0)));
                    c.loaded.saturating_sub(extracted) + not_embedded
                })
                .collect();
            // The table of both sequences lacks a patient missing either.
            let most = if both_sequences { per_sequence.iter().sum() } else { per_sequence.iter().copied().max().unwrap_or(0) };
            (c.site_id.clone(), most)
        })
        .collect()
}

/// Per site, the most training patients that may lack a clinical model variable: Table 1's
/// training patients without each variable, summed over the variables (a variable Table 1
/// does not list counts as complete: the study cannot bound it beforehand). From the site's
/// own table where the plan publishes them, and otherwise the all-sites count for every
/// site, which bounds each site's.
fn training_without_clinical(
    table: &table1::Table1,
    variables: &[fedrad_shared::clinical::VariableSpec],
    cohort: &cohort_summary::CohortSummary,
) -> BTreeMap<String, u64> {
    let missing = |scope: &table1::Table1Scope| -> u64 {
        scope
            .variables
            .iter()
            .filter(|row| variables.iter().any(|v| v.name == row.name))
            .map(|row| {
                let observed = match &row.summary {
                    table1::VariableSummary::Categorical { counts, .. } => counts[0].iter().sum::<u64>(),
                    table1::VariableSummary::Continuous { moments, .. } => moments[0].n as u64,
                };
                scope.n[0].saturating_sub(observed)
            })
            .sum()
    };
    if table.per_site() {
        table.scopes[1..].iter().map(|scope| (scope.scope.clone(), missing(scope))).collect()
    } else {
        let all = missing(table.all_sites());
        cohort.sites.iter().map(|c| (c.site_id.clone(), all)).collect()
    }
}

/// A site's reply to a task of `step`: its aggregate, or its refusal or failure as an error.
pub(crate) fn reply_aggregate(step: &str, site: &str, outcome: Option<task_reply::Outcome>) -> Result<proto::Aggregate, StudyError> {
    match outcome {
        Some(task_reply::Outcome::Aggregate(a)) => Ok(a),
        Some(task_reply::Outcome::Refusal(r)) => Err(StudyError::Refused { step: step.into(), site: site.into(), detail: r.detail }),
        Some(task_reply::Outcome::Failure(f)) => Err(StudyError::SiteFailed { step: step.into(), site: site.into(), detail: f.detail }),
        None => Err(StudyError::SiteFailed { step: step.into(), site: site.into(), detail: "empty reply".into() }),
    }
}

/// An algorithm's failure in a step, as a [`StudyError`]; a detail that already names the
/// step (a round's error turned into text) is not prefixed twice.
pub(crate) fn algorithm_error(step: &str) -> impl Fn(String) -> StudyError + '_ {
    move |detail| {
        let detail = detail.strip_prefix(&format!("step {step}: ")).map(str::to_string).unwrap_or(detail);
        StudyError::Algorithm { step: step.into(), detail }
    }
}

pub fn variable_to_proto(v: &VariableSpec) -> proto::ClinicalVariable {
    let kind = match &v.kind {
        VariableKind::Categorical { levels } => proto::clinical_variable::Kind::Categorical(proto::CategoricalLevels { levels: levels.clone() }),
        VariableKind::Continuous { resolution, .. } => proto::clinical_variable::Kind::Continuous(proto::ContinuousGrid { resolution: *resolution }),
    };
    proto::ClinicalVariable { name: v.name.clone(), kind: Some(kind) }
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), StudyError> {
    let err = |source| StudyError::Output { path: path.display().to_string(), source };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StudyError> {
    write_text(path, &(serde_json::to_string_pretty(value).expect("serialisable") + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedrad_shared::clinical::{ClinicalValue, CohortRole, PatientRecord, npc_dictionary};

    /// Table 1's per-site counts bound the training patients without a clinical model value:
    /// missing cells summed over the model's variables (a patient missing two counts twice,
    /// which only lowers the bound), validation patients and other variables not counted.
    #[test]
    fn training_patients_without_a_clinical_value_are_counted_per_site() {
        let dictionary = npc_dictionary();
        let record = |i: usize, age: Option<f64>, sex: Option<usize>| {
            let mut clinical = std::collections::BTreeMap::new();
            if let Some(a) = age {
                clinical.insert("age".to_string(), ClinicalValue::Number(a));
            }
            if let Some(s) = sex {
                clinical.insert("sex".to_string(), ClinicalValue::Level(s));
            }
            PatientRecord { patient_id: format!("P{i}"), outcome: i.is_multiple_of(2), clinical }
        };
        let mut patients = Vec::new();
        for i in 0..10 {
            // Site a: 2 training patients without age, 1 without sex, 1 validation without both.
            let (age, sex) = match i {
                0 | 1 => (None, Some(0)),
                2 => (Some(50.0), None),
                9 => (None, None),
                _ => (Some(40.0 + i as f64), Some(1)),
            };
            let role = if i < 8 { CohortRole::Training } else { CohortRole::Validation };
            patients.push(("a".to_string(), record(i, age, sex), role));
            patients.push(("b".to_string(), record(100 + i, Some(60.0), Some(0)), role));
        }
        let none = BTreeMap::new();
        let table = table1::pooled(&patients, &dictionary, &none, true);
        let site = |id: &str| cohort_summary::SiteCohortSummary { site_id: id.into(), loaded: 10, negatives: 5, positives: 5 };
        let cohort = cohort_summary::CohortSummary { sites: vec![site("a"), site("b")], loaded: 20, negatives: 10, positives: 10 };
        let age_and_sex: Vec<_> = dictionary.iter().filter(|v| v.name == "age" || v.name == "sex").cloned().collect();
        let missing = training_without_clinical(&table, &age_and_sex, &cohort);
        assert_eq!(missing, BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 0)]));
        let age: Vec<_> = dictionary.iter().filter(|v| v.name == "age").cloned().collect();
        assert_eq!(training_without_clinical(&table, &age, &cohort)["a"], 2);
        // Without per-site tables, the all-sites count bounds every site's.
        let summed = table1::pooled(&patients, &dictionary, &none, false);
        assert_eq!(training_without_clinical(&summed, &age_and_sex, &cohort), BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 3)]));
    }
}
