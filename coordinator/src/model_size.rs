//! The model size every site accepts: how many cross-validation folds, how many model
//! parameters, and so which λ of a LASSO path and how many random Fourier features, every
//! site's published policy admits.
//!
//! A site refuses a fold holding fewer than its `min_count` patients and a logistic or SVM
//! round with more parameters than its `max_parameter_ratio` times the patients the round
//! covers (DataSHIELD's `nfilter.glm`): a model with nearly as many parameters as patients
//! gives back their rows. Each site publishes both numbers in its hello and the split gives
//! its training count, so the coordinator can plan a study that every site answers instead of
//! one the small hospitals refuse, classifier after classifier:
//!
//! - **Folds.** K is the largest K ≤ the plan's `folds` (and ≥ 2) for which every site's
//!   smallest fold holds at least its `min_count`. Sites deal their training patients to
//!   folds in turn, so a site of n training patients has folds of ⌊n / K⌋ and ⌈n / K⌉. The
//!   plan's K is thus a maximum: a site accepts any K from 2 up to it, once per study. A
//!   held-out fold counts only patients with features, so a site's patients without a
//!   feature row (failed extraction or embedding, known as counts) are taken off its
//!   smallest fold: ⌊n / K⌋ − missing ≥ `min_count`.
//! - **Parameters.** P = min over sites of min(⌊r_s · m_s⌋, m_s − 1) (the sites' own rule,
//!   `fedrad_shared::algorithms::max_parameters`), where m_s is the fewest patients a
//!   site fits a model on: its training patients with features (n_s − missing_s), or, when
//!   the study searches C by cross-validation, those outside its largest fold
//!   (n_s − missing_s − ⌈n_s / K⌉). Model III's patients must also have complete clinical
//!   data, which the coordinator learns only when it fits the model: a site that has fewer
//!   refuses the linear classifiers there, and the report names it.
//! - **LASSO points.** The same rule over the patients outside a site's largest fold (every
//!   LASSO fits K fold models) bounds each point's Hessian block and model: the LASSO keeps
//!   every fit's columns within it and its path ends where a solution needs more.
//! - **λ.** Logistic regression and the linear SVM have p + c + 1 parameters (p selected
//!   features, c clinical design columns, an intercept). From the λ that cross-validation chose
//!   (λ_min or λ_1se, as the study file asks) the rule walks the path towards λ_max to the first
//!   λ whose model has p ≤ P − 1 − c non-zero coefficients; λ_max (no feature) always has one,
//!   so only c ≥ P leaves these two classifiers unfittable at any λ, and the report says so.
//!   Every classifier of a model uses the model's one feature set, so comparisons between
//!   them stay paired on the same design.
//! - **RBF SVM.** D random Fourier features have D + 1 parameters: D = min(the plan's D, P − 1),
//!   independent of λ. A site accepts any D from 1 up to the plan's.
//!
//! The trees and naive Bayes have no parameter rule at the sites (their populations are the
//! nodes and classes, which `min_count` guards), so they share the λ the linear models need.

use std::collections::BTreeMap;

/// One site's numbers the rule needs: its published policy and its training count.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteCapacity {
    pub site: String,
    pub training: u64,
    /// The most training patients that may lack a row in a feature table (failed extraction
    /// or embedding; the coordinator knows only counts over all the site's patients, so it
    /// assumes every one of them is a training patient of the smallest fold).
    pub missing: u64,
    /// The most training patients that may lack a clinical model variable (Table 1's missing
    /// counts per variable, summed): they are not in a design with clinical terms.
    pub clinical_missing: u64,
    pub min_count: u64,
    pub max_parameter_ratio: f64,
}

/// What the rule allows at one site.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiteLimit {
    pub site: String,
    pub training: u64,
    /// Training patients that may lack features (see [`SiteCapacity::missing`]).
    pub missing: u64,
    pub min_count: u64,
    pub max_parameter_ratio: f64,
    /// The most folds this site's `min_count` allows (capped at 50).
    pub max_folds: u32,
    /// The fewest patients this site fits a model on at the study's K.
    pub fit_patients: u64,
    /// The most parameters (intercept included) this site fits.
    pub max_parameters: usize,
    /// Training patients that may lack a clinical variable (see [`SiteCapacity::clinical_missing`]).
    pub clinical_missing: u64,
    /// The most parameters this site fits in a design with clinical terms (Model III).
    pub max_parameters_with_clinical: usize,
    /// The fewest patients of a LASSO fit here: training patients with features outside the
    /// largest cross-validation fold.
    #[serde(default)]
    pub lasso_fit_patients: u64,
    /// The most parameters (intercept included) of a LASSO point's Hessian block or model here.
    #[serde(default)]
    pub max_lasso_parameters: usize,
}

/// The study's folds and model size, and the sites that set them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSize {
    pub folds_planned: u32,
    pub folds: u32,
    /// The site whose `min_count` lowered K below the plan's (none when K is the plan's).
    pub folds_limited_by: Option<String>,
    /// P: the most parameters, intercept included, every site fits.
    pub max_parameters: usize,
    /// The site that sets P.
    pub parameters_limited_by: String,
    /// P for designs with clinical terms (Model III), whose patients need complete clinical
    /// data too, and the site that sets it.
    pub max_parameters_with_clinical: usize,
    pub clinical_limited_by: String,
    /// The most parameters of a LASSO point (its Hessian block, or its model) every site
    /// accepts, over the fits without one fold, and the site that sets it: each fit's column
    /// set stays within it and the path ends where a solution needs more
    /// (`fedrad_shared::algorithms::lasso::LassoPathSolver::with_max_block_columns`).
    #[serde(default)]
    pub max_lasso_parameters: usize,
    #[serde(default)]
    pub lasso_limited_by: String,
    pub per_site: Vec<SiteLimit>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelSizeError {
    #[error(
        "site {site} has {training} training patients (up to {missing} of them without features): two cross-validation folds would hold fewer than its min_count of {min_count}"
    )]
    TooFewForFolds { site: String, training: u64, missing: u64, min_count: u64 },
    #[error("no site to plan for")]
    NoSites,
}

/// The most folds a site of `training` patients accepts at `min_count` (0 if not even 2),
/// when up to `missing` of them may lack features (a held-out fold counts the patients of the
/// feature table).
fn max_folds(training: u64, missing: u64, min_count: u64) -> u32 {
    (2..=50u32).rev().find(|&k| (training / k as u64).saturating_sub(missing) >= min_count.max(1)).unwrap_or(0)
}

/// The most parameters a site fits on `patients` patients: the sites' own rule
/// ([`fedrad_shared::algorithms::max_parameters`]: at most ratio · patients, and fewer than
/// the patients).
pub use fedrad_shared::algorithms::max_parameters;

/// Folds and parameters every site accepts (see the module doc).
pub fn plan(sites: &[SiteCapacity], planned_folds: u32, search: bool) -> Result<ModelSize, ModelSizeError> {
    if sites.is_empty() {
        return Err(ModelSizeError::NoSites);
    }
    let mut folds = planned_folds;
    let mut folds_limited_by = None;
    for s in sites {
        let m = max_folds(s.training, s.missing, s.min_count);
        if m < 2 {
            return Err(ModelSizeError::TooFewForFolds { site: s.site.clone(), training: s.training, missing: s.missing, min_count: s.min_count });
        }
        if m < folds {
            folds = m;
            folds_limited_by = Some(s.site.clone());
        }
    }
    let per_site: Vec<SiteLimit> = sites
        .iter()
        .map(|s| {
            let with_rows = s.training.saturating_sub(s.missing);
            let fold = if search { s.training.div_ceil(folds as u64) } else { 0 };
            let fit_patients = with_rows.saturating_sub(fold);
            let with_clinical = fit_patients.saturating_sub(s.clinical_missing);
            // A LASSO path always fits K fold models beside the full one.
            let lasso_fit_patients = with_rows.saturating_sub(s.training.div_ceil(folds as u64));
            SiteLimit {
                site: s.site.clone(),
                training: s.training,
                missing: s.missing,
                min_count: s.min_count,
                max_parameter_ratio: s.max_parameter_ratio,
                max_folds: max_folds(s.training, s.missing, s.min_count),
                fit_patients,
                max_parameters: max_parameters(s.max_parameter_ratio, fit_patients),
                clinical_missing: s.clinical_missing,
                max_parameters_with_clinical: max_parameters(s.max_parameter_ratio, with_clinical),
                lasso_fit_patients,
                max_lasso_parameters: max_parameters(s.max_parameter_ratio, lasso_fit_patients),
            }
        })
        .collect();
    // The first site of the smallest limit (sites in the study's order).
    let binding = per_site.iter().min_by_key(|l| l.max_parameters).expect("not empty");
    let clinical = per_site.iter().min_by_key(|l| l.max_parameters_with_clinical).expect("not empty");
    let lasso = per_site.iter().min_by_key(|l| l.max_lasso_parameters).expect("not empty");
    Ok(ModelSize {
        folds_planned: planned_folds,
        folds,
        folds_limited_by,
        max_parameters: binding.max_parameters,
        parameters_limited_by: binding.site.clone(),
        max_parameters_with_clinical: clinical.max_parameters_with_clinical,
        clinical_limited_by: clinical.site.clone(),
        max_lasso_parameters: lasso.max_lasso_parameters,
        lasso_limited_by: lasso.site.clone(),
        per_site,
    })
}

impl ModelSize {
    /// P and the site that sets it, for a design with clinical terms or without.
    pub fn limit(&self, clinical: bool) -> (usize, &SiteLimit) {
        let (p, site) = if clinical { (self.max_parameters_with_clinical, &self.clinical_limited_by) } else { (self.max_parameters, &self.parameters_limited_by) };
        (p, self.per_site.iter().find(|l| &l.site == site).expect("the limiting site is listed"))
    }

    /// The fewest patients a site fits a design on, with clinical terms or without.
    pub fn fit_patients(l: &SiteLimit, clinical: bool) -> u64 {
        if clinical { l.fit_patients.saturating_sub(l.clinical_missing) } else { l.fit_patients }
    }

    /// The most selected features a logistic regression or linear SVM can have beside
    /// `clinical` clinical design columns and the intercept; `None` if even no feature is too
    /// many.
    pub fn max_features(&self, clinical: usize) -> Option<usize> {
        self.limit(clinical > 0).0.checked_sub(1 + clinical)
    }

    /// The RBF SVM's random features: the plan's, or fewer so that every site accepts the
    /// model (of a design with clinical terms or without); `None` if not even one fits.
    pub fn random_features(&self, planned: u32, clinical: bool) -> Option<u32> {
        let most = self.limit(clinical).0.checked_sub(1).filter(|m| *m >= 1)?;
        Some(planned.min(most.min(u32::MAX as usize) as u32))
    }

    /// Why a model of `parameters` parameters cannot be fitted, naming the site that limits it.
    pub fn refusal(&self, parameters: usize, clinical: bool) -> Option<String> {
        let (most, l) = self.limit(clinical);
        (parameters > most).then(|| {
            format!("{parameters} parameters; site {} fits at most {most} ({} per patient × {} patients)", l.site, l.max_parameter_ratio, Self::fit_patients(l, clinical))
        })
    }

    /// The most columns beside the intercept a LASSO fit's set may hold at every site.
    pub fn lasso_block_columns(&self) -> usize {
        self.max_lasso_parameters.saturating_sub(1)
    }

    /// Each site's limits by its id (the report lists `per_site` in the study's order).
    pub fn by_site(&self) -> BTreeMap<&str, &SiteLimit> {
        self.per_site.iter().map(|l| (l.site.as_str(), l)).collect()
    }
}

/// The λ index the rule keeps: from `chosen` towards λ_max (index 0; the path runs from λ_max
/// down), the first whose model has at most `max_features` non-zero coefficients.
pub fn lambda_within(active: &[usize], chosen: usize, max_features: usize) -> usize {
    (0..=chosen).rev().find(|&l| active[l] <= max_features).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, training: u64, min_count: u64, ratio: f64) -> SiteCapacity {
        SiteCapacity { site: name.into(), training, missing: 0, clinical_missing: 0, min_count, max_parameter_ratio: ratio }
    }

    /// The study team's hospitals of 95/85/80/68 patients, 70 % in training, every site at
    /// the default policy (min_count 5, ratio 0.33).
    fn team() -> Vec<SiteCapacity> {
        [("a", 66), ("b", 59), ("c", 56), ("d", 47)].iter().map(|(s, n)| site(s, *n, 5, 0.33)).collect()
    }

    #[test]
    fn the_smallest_site_sets_folds_and_parameters_as_its_own_checks_would() {
        let size = plan(&team(), 10, false).unwrap();
        // 47 / 9 = 5 per fold at the smallest site; 47 / 10 = 4 would be refused.
        assert_eq!((size.folds, size.folds_limited_by.as_deref()), (9, Some("d")));
        // 0.33 · 47 = 15.51.
        assert_eq!((size.max_parameters, size.parameters_limited_by.as_str()), (15, "d"));
        assert_eq!(size.max_features(0), Some(14));
        assert_eq!(size.max_features(6), Some(8));
        assert_eq!(size.max_features(15), None);
        assert_eq!(size.random_features(24, false), Some(14));
        assert_eq!(size.random_features(8, false), Some(8));
        assert!(size.refusal(15, false).is_none());
        let why = size.refusal(16, false).unwrap();
        assert!(why.contains("site d fits at most 15") && why.contains("47 patients"), "{why}");
        // Each limit is exactly the boundary of the sites' own tests.
        for l in &size.per_site {
            let n = l.fit_patients as f64;
            assert!(!(l.max_parameters as f64 > l.max_parameter_ratio * n) && (l.max_parameters + 1) as f64 > l.max_parameter_ratio * n, "{l:?}");
            assert!(l.training / l.max_folds as u64 >= l.min_count && l.training / (l.max_folds as u64 + 1) < l.min_count, "{l:?}");
            assert_eq!(l.missing, 0);
        }
    }

    #[test]
    fn a_search_over_folds_fits_on_fewer_patients() {
        let size = plan(&team(), 5, true).unwrap();
        assert_eq!((size.folds, size.folds_limited_by.as_deref()), (5, None));
        // d: 47 − ⌈47 / 5⌉ = 37 patients, 0.33 · 37 = 12.21.
        assert_eq!(size.by_site()["d"].fit_patients, 37);
        assert_eq!(size.max_parameters, 12);
    }

    #[test]
    fn patients_without_features_count_against_the_smallest_fold_and_the_fit() {
        let mut sites = team();
        sites[3].missing = 2;
        let size = plan(&sites, 10, false).unwrap();
        // d: ⌊47 / 9⌋ − 2 = 3 < 5, ⌊47 / 7⌋ − 2 = 4, ⌊47 / 6⌋ − 2 = 5; 0.33 · 45 = 14.85.
        assert_eq!((size.folds, size.max_parameters), (6, 14));
        let size = plan(&sites, 6, true).unwrap();
        // d: 47 − 2 − ⌈47 / 6⌉ = 37 patients, 0.33 · 37 = 12.21.
        assert_eq!((size.by_site()["d"].fit_patients, size.max_parameters), (37, 12));
    }

    #[test]
    fn patients_without_clinical_data_count_against_designs_with_clinical_terms() {
        let mut sites = team();
        // b: 59 training patients, 12 of them may lack a clinical variable: 0.33 · 47 = 15.51;
        // d: 0.33 · 46 = 15.18; feature-only designs stay limited by d (0.33 · 47).
        sites[1].clinical_missing = 12;
        sites[3].clinical_missing = 1;
        let size = plan(&sites, 10, false).unwrap();
        assert_eq!((size.max_parameters, size.parameters_limited_by.as_str()), (15, "d"));
        assert_eq!((size.max_parameters_with_clinical, size.clinical_limited_by.as_str()), (15, "b"));
        sites[1].clinical_missing = 20;
        let size = plan(&sites, 10, false).unwrap();
        // b: 0.33 · 39 = 12.87.
        assert_eq!((size.max_parameters_with_clinical, size.clinical_limited_by.as_str()), (12, "b"));
        assert_eq!((size.max_features(0), size.max_features(7)), (Some(14), Some(4)));
        assert_eq!((size.random_features(24, false), size.random_features(24, true)), (Some(14), Some(11)));
        let why = size.refusal(13, true).unwrap();
        assert!(why.contains("site b fits at most 12") && why.contains("39 patients"), "{why}");
        assert!(size.refusal(13, false).is_none());
    }

    #[test]
    fn a_site_too_small_for_two_folds_is_named() {
        let mut sites = team();
        sites.push(site("tiny", 9, 5, 0.33));
        assert_eq!(plan(&sites, 10, false), Err(ModelSizeError::TooFewForFolds { site: "tiny".into(), training: 9, missing: 0, min_count: 5 }));
        assert_eq!(plan(&[], 10, false), Err(ModelSizeError::NoSites));
        // A site without a ratio rule (1.0) does not bind.
        let size = plan(&[site("a", 40, 1, 1.0), site("b", 100, 1, 0.33)], 10, false).unwrap();
        assert_eq!((size.max_parameters, size.parameters_limited_by.as_str()), (33, "b"));
        assert_eq!(size.random_features(1, false), Some(1));
        let tiny = plan(&[site("a", 4, 1, 0.33)], 2, false).unwrap();
        assert_eq!((tiny.max_parameters, tiny.random_features(24, false), tiny.max_features(0)), (1, None, Some(0)));
    }

    #[test]
    fn lambda_moves_towards_lambda_max_to_the_first_model_small_enough() {
        // Active counts along a path from λ_max; not monotone (a feature leaves at index 6).
        let active = [0, 1, 3, 6, 9, 12, 11, 16, 18, 22];
        assert_eq!(lambda_within(&active, 9, 30), 9);
        assert_eq!(lambda_within(&active, 9, 14), 6);
        assert_eq!(lambda_within(&active, 9, 11), 6);
        assert_eq!(lambda_within(&active, 9, 10), 4);
        assert_eq!(lambda_within(&active, 5, 0), 0);
        assert_eq!(lambda_within(&active, 3, 14), 3);
    }
}
