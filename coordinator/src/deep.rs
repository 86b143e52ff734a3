//! The deep-features steps of a study, per sequence: `deep.<seq>` trains the encoder by
//! federated averaging (one round per task to all sites), `embed.<seq>` has every site embed
//! all its patients with the final weights. Outputs: `deep/<seq>/training.json` (loss per
//! round, overall and per site; the weights' SHA-256), `deep/<seq>/weights.json` (final
//! weights) and `deep/<seq>/checkpoint.json`, rewritten after every round.
//!
//! A stopped study resumes training from the round journal: every completed round's answers
//! are replayed (the tasks are byte-identical because they are determined by the previous
//! round), so the checkpoint is for people, not for the resume logic.

use std::collections::BTreeMap;

use fedrad_shared::algorithms::encoder::Architecture;
use fedrad_shared::algorithms::fedavg::{self, RoundSummary, weights_sha256};
use fedrad_shared::proto::{self, task};

use crate::config::{DeepSource, OnnxNetwork};
use crate::study::{StudyError, StudyRunner, algorithm_error, write_json};

/// What the deep steps produced for one sequence.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeepResult {
    pub sequence: String,
    /// Deep features per patient.
    pub dimension: usize,
    /// The federated encoder (absent with a study-supplied network).
    pub architecture: Option<Architecture>,
    pub parameters: Option<usize>,
    pub training: Option<fedavg::LocalTraining>,
    pub rounds: Vec<RoundSummary>,
    /// SHA-256 of the encoder's final weights, or of the study-supplied network file.
    pub weights_sha256: String,
    /// The study-supplied network, when deep features come from one.
    pub network: Option<OnnxNetwork>,
    /// Patients embedded, over all sites, and per site.
    pub embedded: u64,
    pub embedded_per_site: BTreeMap<String, u64>,
    /// Patients without a crop, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Why there are no deep features, when there are none.
    pub note: Option<String>,
}

fn architecture_proto(a: &Architecture) -> proto::EncoderArchitecture {
    proto::EncoderArchitecture {
        crop_pixels: a.crop as u32,
        field_mm: a.field_mm,
        channels: a.channels.iter().map(|&c| c as u32).collect(),
        embedding_dim: a.embedding as u32,
    }
}

#[derive(serde::Serialize)]
struct Checkpoint<'a> {
    sequence: &'a str,
    round: u32,
    weights_sha256: String,
    weights: &'a [f64],
}

impl StudyRunner<'_> {
    /// Deep features for one sequence: the federated encoder, or the study's ONNX network.
    pub(crate) async fn run_deep(&mut self, seq: &str) -> Result<DeepResult, StudyError> {
        let settings = self.study.deep.clone();
        if let (DeepSource::Onnx, Some(net)) = (settings.source, settings.onnx.clone()) {
            let kind = task::Kind::OnnxEmbed(proto::OnnxEmbedTask {
                sequence: seq.into(),
                file_name: net.file.clone(),
                sha256: net.sha256.to_ascii_lowercase(),
                input_size: net.input_size as u32,
                channels: net.channels as u32,
                field_mm: net.field_mm,
                intensity: net.intensity.clone(),
            });
            let (embedded_per_site, failed, dimension) = self.embed_step(seq, kind, None).await?;
            let result = DeepResult {
                sequence: seq.into(),
                dimension,
                architecture: None,
                parameters: None,
                training: None,
                rounds: Vec::new(),
                weights_sha256: net.sha256.to_ascii_lowercase(),
                network: Some(net),
                embedded: embedded_per_site.values().sum(),
                embedded_per_site,
                failed,
                note: None,
            };
            write_json(&self.study.output_dir.join("deep").join(seq).join("network.json"), &result)?;
            return Ok(result);
        }
        let arch = settings.architecture();
        let training = settings.local_training(self.study.seed);
        let dir = self.study.output_dir.join("deep").join(seq);
        let step = format!("deep.{seq}");
        // Every round forwards the sites' signed answers to the round before (and embedding
        // those to the last), so that each site trains and embeds only with the average it
        // computes itself (fedavg::EncoderReplica).
        let (weights, rounds, last_answers) = self
            .step(&step.clone(), async |s: &mut Self| {
                let mut w = arch.initial_weights(training.seed);
                let mut history = Vec::new();
                let mut previous = Vec::new();
                for round in 1..=settings.rounds {
                    let kind = task::Kind::EncoderRound(proto::EncoderRoundTask {
                        sequence: seq.into(),
                        architecture: Some(architecture_proto(&arch)),
                        weights: w.clone(),
                        round,
                        local_epochs: training.epochs,
                        batch_size: training.batch_size,
                        learning_rate: training.learning_rate,
                        momentum: training.momentum,
                        proximal_mu: training.proximal_mu,
                        mask_fraction: training.mask_fraction,
                        seed: training.seed,
                        previous: std::mem::take(&mut previous),
                    });
                    let (answers, signed) = s.round_signed(&step, round as u64, s.all_sites(kind)).await?;
                    previous = signed;
                    let (next, summary) = fedavg::combine(&answers, w.len(), round).map_err(|source| StudyError::Combine { step: step.clone(), source })?;
                    if next.iter().any(|v| !v.is_finite()) {
                        return Err(StudyError::Algorithm { step: step.clone(), detail: format!("the weights diverged in round {round}; lower deep.learning_rate") });
                    }
                    tracing::info!(sequence = seq, round, loss = summary.loss_at_start, "encoder round");
                    w = next;
                    history.push(summary);
                    write_json(&dir.join("checkpoint.json"), &Checkpoint { sequence: seq, round, weights_sha256: weights_sha256(&w), weights: &w })?;
                }
                let n = history.len() as u64;
                Ok(((w, history, previous), n))
            })
            .await?;
        let digest = weights_sha256(&weights);
        write_json(&dir.join("weights.json"), &Checkpoint { sequence: seq, round: settings.rounds, weights_sha256: digest.clone(), weights: &weights })?;

        let kind = task::Kind::Embed(proto::EmbedTask {
            sequence: seq.into(),
            architecture: Some(architecture_proto(&arch)),
            weights: weights.clone(),
            weights_sha256: digest.clone(),
            previous: last_answers,
            peers: self.peer_keys()?,
        });
        let (embedded_per_site, failed, dimension) = self.embed_step(seq, kind, Some(arch.embedding)).await?;
        let result = DeepResult {
            sequence: seq.into(),
            dimension,
            architecture: Some(arch),
            parameters: Some(arch.parameter_count()),
            training: Some(training),
            rounds,
            weights_sha256: digest,
            network: None,
            embedded: embedded_per_site.values().sum(),
            embedded_per_site,
            failed,
            note: None,
        };
        write_json(&dir.join("training.json"), &result)?;
        Ok(result)
    }

    /// The `embed.<seq>` step: every site embeds all its patients; counts per site and
    /// failure reason come back, and every site must report the same dimension.
    async fn embed_step(&mut self, seq: &str, kind: task::Kind, expected: Option<usize>) -> Result<(BTreeMap<String, u64>, BTreeMap<String, u64>, usize), StudyError> {
        let step = format!("embed.{seq}");
        let reasons = fedrad_shared::algorithms::encoder::CROP_FAILURE_REASONS;
        self.step(&step.clone(), async |s: &mut Self| {
            let answers = s.round(&step, 1, s.all_sites(kind)).await?;
            let mut per_site = BTreeMap::new();
            let mut failed = BTreeMap::<String, u64>::new();
            let mut dimension = expected;
            for a in &answers {
                let combine = |source: fedrad_shared::aggregate::AggregateError| StudyError::Combine { step: step.clone(), source: source.into() };
                let inconsistent = |detail: String| StudyError::Combine {
                    step: step.clone(),
                    source: fedrad_shared::algorithms::CombineError::Inconsistent { site: a.site_id.clone(), detail },
                };
                let embedded = a.count("embedded").map_err(combine)?;
                let f = fedrad_shared::algorithms::extraction::failures(a, "", &reasons).map_err(|source| StudyError::Combine { step: step.clone(), source })?;
                let d = a.count("dimension").map_err(combine)? as usize;
                if embedded + f.values().sum::<u64>() != a.patient_count() {
                    return Err(inconsistent("embedding counts do not add up to the cohort".into()));
                }
                if embedded > 0 && *dimension.get_or_insert(d) != d {
                    return Err(inconsistent(format!("{d} deep features where {} were expected", dimension.unwrap_or(0))));
                }
                per_site.insert(a.site_id.clone(), embedded);
                for (r, c) in f {
                    *failed.entry(r).or_default() += c;
                }
            }
            let dimension = dimension.filter(|d| *d > 0).ok_or_else(|| algorithm_error(&step)("no site embedded any patient".into()))?;
            Ok(((per_site, failed, dimension), 1))
        })
        .await
    }
}
