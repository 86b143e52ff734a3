//! ComBat harmonisation of site effects before selection (the study file's `[combat]`): per
//! feature table — each sequence's radiomic features, and its deep features — one round of
//! sums, the pooled regression, and one round in which every site harmonises its own rows
//! and answers with the same sums over the harmonised values. The method, and why it equals
//! neuroCombat on the pooled rows, is in [`fedrad_shared::algorithms::combat`].

use fedrad_shared::algorithms::combat::{self, CombatSettings, SiteEffectShare};
use fedrad_shared::proto::{self, task};

use crate::study::{StudyError, StudyRunner, algorithm_error};

/// Significance level of the site-effect test in the report.
pub const SITE_EFFECT_ALPHA: f64 = 0.05;

/// The harmonisation of one feature table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TableHarmonisation {
    pub sequence: String,
    /// The sequence's deep features, else its radiomic ones.
    pub deep: bool,
    pub features: usize,
    /// Features ComBat adjusted; the others (a non-finite or constant training column) pass
    /// through unchanged.
    pub harmonised: usize,
    /// Training patients with features and every protected covariate, over all sites.
    pub estimation_patients: u64,
    /// SHA-256 of the estimates sent to the sites ([`combat::estimates_sha256`]); model files
    /// name it, and `site-agent predict` checks a site's record against it.
    pub estimates_sha256: String,
    /// Features with a site effect (one-way ANOVA over the sites, p < 0.05) before and after.
    pub site_effect_before: SiteEffectShare,
    pub site_effect_after: SiteEffectShare,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Harmonisation {
    pub settings: CombatSettings,
    pub tables: Vec<TableHarmonisation>,
}

impl StudyRunner<'_> {
    /// ComBat over every table selection will use. `deep_names` holds, per sequence with deep
    /// features, the names of its deep columns.
    pub(crate) async fn run_combat(&mut self, catalogue: &[String], deep_names: &std::collections::BTreeMap<String, Vec<String>>) -> Result<Harmonisation, StudyError> {
        let settings = self.study.combat.clone();
        let covariates = settings.resolve(&self.study.dictionary()).map_err(algorithm_error("combat"))?;
        let q = combat::covariate_columns(&covariates);
        let mut tables = Vec::new();
        for seq in self.study.selection.sequences.clone() {
            let mut parts = vec![(false, catalogue.to_vec())];
            if let Some(names) = deep_names.get(&seq) {
                parts.push((true, names.clone()));
            }
            for (deep, names) in parts {
                let step = format!("combat_{seq}{}", if deep { "_deep" } else { "" });
                let table = proto::CombatTable { sequence: seq.clone(), deep, catalogue_sha256: fedrad_shared::algorithms::extraction::catalogue_sha256(&names) };
                let p = names.len();
                let t = self
                    .step(&step.clone(), async |s: &mut Self| {
                        let combine_error = |source| StudyError::Combine { step: step.clone(), source };
                        let answers = s.round(&step, 1, s.all_sites(task::Kind::CombatSums(proto::CombatSumsTask { table: Some(table.clone()) }))).await?;
                        let before = combat::combine(&answers, p, q).map_err(combine_error)?;
                        let est = before.estimates().map_err(|e| algorithm_error(&step)(e.to_string()))?;
                        let apply = proto::CombatApplyTask {
                            table: Some(table.clone()),
                            alpha: est.alpha.clone(),
                            beta: est.beta.clone(),
                            var_pooled: est.var_pooled.clone(),
                            covariate_mean: est.covariate_mean.clone(),
                            harmonised: est.harmonised.clone(),
                        };
                        let answers = s.round(&step, 2, s.all_sites(task::Kind::CombatApply(apply))).await?;
                        let after = combat::combine(&answers, p, q).map_err(combine_error)?;
                        let t = TableHarmonisation {
                            sequence: seq.clone(),
                            deep,
                            features: p,
                            harmonised: est.harmonised.len(),
                            estimation_patients: before.n,
                            estimates_sha256: combat::estimates_sha256(&est),
                            site_effect_before: combat::site_effect_share(&before.site_effect(), SITE_EFFECT_ALPHA),
                            site_effect_after: combat::site_effect_share(&after.site_effect(), SITE_EFFECT_ALPHA),
                        };
                        Ok((t, 2))
                    })
                    .await?;
                tracing::info!(
                    sequence = %seq, deep, harmonised = t.harmonised,
                    before = t.site_effect_before.significant, after = t.site_effect_after.significant,
                    "ComBat: features with a site effect before and after"
                );
                tables.push(t);
            }
        }
        Ok(Harmonisation { settings, tables })
    }
}
