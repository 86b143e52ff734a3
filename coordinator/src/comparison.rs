//! The comparison step: DeLong's paired test of validation AUCs between the fitted models,
//! on the validation patients every model can score (`shared::algorithms::paired_auc`).
//! Two rounds: score histograms of those patients, then placement sums against the merged
//! histograms. Reported: the best model against every other, and Model III against Model I
//! per sequence and classifier (does the clinical model add to the radiomics?).

use fedrad_shared::algorithms::classifiers::ModelFile;
use fedrad_shared::algorithms::metrics;
use fedrad_shared::algorithms::paired_auc::{self, AucComparison};
use fedrad_shared::clinical::CohortRole;
use fedrad_shared::proto::{self, task};

use crate::models::ModelResult;
use crate::study::{StudyError, StudyRunner, variable_to_proto};

/// One paired comparison, A − B.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PairedComparison {
    pub a: String,
    pub b: String,
    pub auc_a: f64,
    pub auc_b: f64,
    #[serde(flatten)]
    pub test: AucComparison,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelComparison {
    /// The compared models ("T2WI Model I, Random forest"), in the order of `auc`.
    pub models: Vec<String>,
    pub validation_negatives: u64,
    pub validation_positives: u64,
    /// Validation AUCs over the patients every model can score.
    pub auc: Vec<f64>,
    pub best_versus_others: Vec<PairedComparison>,
    pub clinical_added: Vec<PairedComparison>,
    /// Model II against Model I, per sequence and classifier: do the deep features add?
    pub deep_added: Vec<PairedComparison>,
}

fn label(m: &ModelResult, classifier: &str) -> String {
    format!("{} Model {}, {classifier}", crate::report::sequence_label(&m.sequence), m.model)
}

impl StudyRunner<'_> {
    pub(crate) async fn compare_models(&mut self, models: &[ModelResult]) -> Result<(ModelComparison, u64), StudyError> {
        let step = "compare_models";
        let mut labels = Vec::new();
        let mut keys = Vec::new();
        let mut scored = Vec::new();
        for m in models {
            for c in &m.classifiers {
                let path = self.study.output_dir.join(&c.model_file);
                let text = std::fs::read_to_string(&path).map_err(|source| StudyError::Output { path: path.display().to_string(), source })?;
                let file: ModelFile = serde_json::from_str(&text).map_err(|e| StudyError::Algorithm { step: step.into(), detail: format!("{}: {e}", path.display()) })?;
                labels.push(label(m, c.classifier.label()));
                keys.push((m.sequence.clone(), m.model.clone(), c.classifier));
                scored.push(proto::ScoredModel {
                    design: Some(proto::ModelDesign {
                        features: Some(proto::FeatureColumns {
                            sequence: file.sequence.clone(),
                            catalogue_sha256: file.catalogue_sha256.clone(),
                            columns: file.feature_columns.clone(),
                        }),
                        variables: file.clinical_variables.iter().map(variable_to_proto).collect(),
                        clinical_columns: file.clinical_columns.clone(),
                    }),
                    standardiser: Some(file.standardiser.to_proto()),
                    scorer: Some(file.scorer.to_proto()),
                });
            }
        }
        if scored.len() < 2 {
            return Err(StudyError::Algorithm { step: step.into(), detail: "fewer than two fitted models to compare".into() });
        }
        let grid = metrics::DEFAULT_GRID;
        let first = proto::PairedScoresTask { models: scored.clone(), grid, negatives: Vec::new(), positives: Vec::new(), previous: Vec::new() };
        // Round 1's signed answers go with round 2: each site checks that the merged
        // histograms are their sum (`paired_auc::ComparisonReplica`).
        let (answers, signed) = self.round_signed(step, 1, self.all_sites(task::Kind::PairedScores(first))).await?;
        let mut negatives = Vec::new();
        let mut positives = Vec::new();
        for k in 0..scored.len() {
            let nested: Vec<_> = answers.iter().map(|a| a.nested(&format!("m{k}."))).collect();
            let (total, _) = metrics::combine(&nested, grid).map_err(|source| StudyError::Combine { step: step.into(), source })?;
            let v = &total[&CohortRole::Validation];
            let sparse = |h: &std::collections::BTreeMap<u32, u64>| proto::SparseHistogram { cells: h.keys().copied().collect(), counts: h.values().copied().collect() };
            negatives.push(sparse(&v.negative));
            positives.push(sparse(&v.positive));
        }
        let second = proto::PairedScoresTask { models: scored, grid, negatives, positives, previous: signed };
        let answers = self.round(step, 2, self.all_sites(task::Kind::PairedScores(second))).await?;
        let paired = paired_auc::combine_placements(&answers, labels.len()).map_err(|source| StudyError::Combine { step: step.into(), source })?;

        let pair =
            |a: usize, b: usize| PairedComparison { a: labels[a].clone(), b: labels[b].clone(), auc_a: paired.auc[a], auc_b: paired.auc[b], test: paired.compare(a, b) };
        // The best on these patients (the earliest on ties, as in the main table).
        let best = (0..labels.len()).fold(0, |b, k| if paired.auc[k] > paired.auc[b] { k } else { b });
        let best_versus_others = (0..labels.len()).filter(|&k| k != best).map(|k| pair(best, k)).collect();
        // Model III adds the clinical variables to Model II (to Model I without deep features);
        // Model II adds the deep features to Model I.
        let mut clinical_added = Vec::new();
        let mut deep_added = Vec::new();
        let find = |seq: &str, model: &str, classifier| keys.iter().position(|(s, m, c)| s == seq && m == model && c == classifier);
        for (k, (seq, model, classifier)) in keys.iter().enumerate() {
            if model == "III"
                && let Some(base) = find(seq, "II", classifier).or_else(|| find(seq, "I", classifier))
            {
                clinical_added.push(pair(k, base));
            }
            if model == "II"
                && let Some(base) = find(seq, "I", classifier)
            {
                deep_added.push(pair(k, base));
            }
        }
        let comparison = ModelComparison {
            models: labels,
            validation_negatives: paired.negatives,
            validation_positives: paired.positives,
            auc: paired.auc.clone(),
            best_versus_others,
            clinical_added,
            deep_added,
        };
        crate::study::write_json(&self.study.output_dir.join("model_comparison.json"), &comparison)?;
        Ok((comparison, 2))
    }
}
