//! Clinical variables and patient records as both sides understand them.
//!
//! The schema is shared so that every site types its table the same way and the
//! coordinator can ask for, say, T-stage counts without knowing any row. A study declares its
//! data dictionary in its study file (`[[variables]]`, sent to the sites in the plan they
//! approve); a site's table holds the NPC study's variables ([`npc_dictionary`]) and any extra
//! columns its config declares with the same [`VariableSpec`], and a site approves only a
//! study whose variables its table describes the same way ([`dictionary_mismatch`]).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VariableKind {
    /// One of a fixed list of levels (matched case-insensitively, stored as listed).
    Categorical { levels: Vec<String> },
    /// A number. `resolution` is the grid on which rank statistics are counted
    /// (1 year for age): medians, quartiles and Mann-Whitney are exact for values on it.
    Continuous {
        resolution: f64,
        #[serde(default)]
        unit: String,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VariableSpec {
    /// Column name in the manifest.
    pub name: String,
    /// Human-readable label for tables.
    #[serde(default)]
    pub label: String,
    #[serde(flatten)]
    pub kind: VariableKind,
}

impl VariableSpec {
    pub fn categorical(name: &str, label: &str, levels: &[&str]) -> Self {
        VariableSpec { name: name.into(), label: label.into(), kind: VariableKind::Categorical { levels: levels.iter().map(|s| s.to_string()).collect() } }
    }

    pub fn continuous(name: &str, label: &str, resolution: f64, unit: &str) -> Self {
        VariableSpec { name: name.into(), label: label.into(), kind: VariableKind::Continuous { resolution, unit: unit.into() } }
    }

    pub fn display_label(&self) -> &str {
        if self.label.is_empty() { &self.name } else { &self.label }
    }

    /// Parses one manifest cell. `Err` carries a reason fit for the site's log.
    pub fn parse(&self, raw: &str) -> Result<ClinicalValue, String> {
        let raw = raw.trim();
        if raw.is_empty() || raw.eq_ignore_ascii_case("na") || raw.eq_ignore_ascii_case("nan") {
            return Err(format!("missing value for `{}`", self.name));
        }
        match &self.kind {
            VariableKind::Categorical { levels } => levels
                .iter()
                .position(|l| l.eq_ignore_ascii_case(raw))
                .map(ClinicalValue::Level)
                .ok_or_else(|| format!("`{}` = {raw:?} is not one of {}", self.name, levels.join(", "))),
            VariableKind::Continuous { .. } => match raw.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(ClinicalValue::Number(v)),
                _ => Err(format!("`{}` = {raw:?} is not a finite number", self.name)),
            },
        }
    }
}

/// The NPC study's data dictionary (AJCC/UICC 8th edition staging; WHO histological type;
/// plasma EBV DNA before treatment): what a study file that declares no `[[variables]]` uses
/// (`deploy/study.example.toml` spells it out), and the clinical table a site's manifest
/// holds unless its config declares more under `[[clinical.extra]]`.
pub fn npc_dictionary() -> Vec<VariableSpec> {
    vec![
        VariableSpec::continuous("age", "Age (years)", 1.0, "years"),
        VariableSpec::categorical("sex", "Sex", &["male", "female"]),
        VariableSpec::categorical("t_stage", "T stage", &["T1", "T2", "T3", "T4"]),
        VariableSpec::categorical("n_stage", "N stage", &["N0", "N1", "N2", "N3"]),
        VariableSpec::categorical("overall_stage", "Overall stage", &["III", "IVA"]),
        VariableSpec::continuous("ebv_dna", "EBV DNA (copies/mL)", 1.0, "copies/mL"),
        VariableSpec::categorical("histology", "WHO histology", &["WHO-I", "WHO-II", "WHO-III"]),
    ]
}

/// Why a site's table cannot serve a study's variable `wanted`, if it cannot: absent, of
/// another kind, with other levels (names and order: counts are kept by level index) or in
/// another unit.
pub fn dictionary_mismatch(site: &[VariableSpec], wanted: &VariableSpec) -> Option<String> {
    let Some(have) = site.iter().find(|v| v.name == wanted.name) else {
        return Some(format!("the study's variable `{}` is not a column of this site's table (declare it under [[clinical.extra]] and map the export)", wanted.name));
    };
    match (&have.kind, &wanted.kind) {
        (VariableKind::Categorical { levels: a }, VariableKind::Categorical { levels: b }) if a != b => {
            Some(format!("`{}`: the study's levels are {}, this site's table has {}", wanted.name, b.join(", "), a.join(", ")))
        }
        // A unit the study fixes must be the site's; a site that states none is asked to.
        (VariableKind::Continuous { unit: a, .. }, VariableKind::Continuous { unit: b, .. }) if !b.is_empty() && a != b => Some(if a.is_empty() {
            format!("`{}`: the study measures it in {b}, this site's table states no unit (give `unit` in its [[clinical.extra]])", wanted.name)
        } else {
            format!("`{}`: the study measures it in {b}, this site's table in {a} (convert with [export.scale])", wanted.name)
        }),
        (VariableKind::Categorical { .. }, VariableKind::Continuous { .. }) => {
            Some(format!("`{}`: the study wants a number, this site's table holds levels", wanted.name))
        }
        (VariableKind::Continuous { .. }, VariableKind::Categorical { .. }) => {
            Some(format!("`{}`: the study wants levels, this site's table holds a number", wanted.name))
        }
        _ => None,
    }
}

/// Checks a study's data dictionary: names usable as columns and unique, two or more distinct
/// levels per categorical variable, a positive grid for each continuous one.
pub fn validate_dictionary(variables: &[VariableSpec]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for v in variables {
        if v.name.is_empty() || v.name.len() > 64 || !v.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("variable {:?}: use 1-64 characters A-Z a-z 0-9 _", v.name));
        }
        if ["patient_id", "recurrence"].contains(&v.name.as_str()) || v.name.ends_with("_image") || v.name.ends_with("_mask") || v.name.ends_with("_roi") {
            return Err(format!("variable `{}`: the name of a fixed manifest column", v.name));
        }
        if !seen.insert(v.name.to_ascii_lowercase()) {
            return Err(format!("variable `{}` is declared twice", v.name));
        }
        match &v.kind {
            VariableKind::Categorical { levels } => {
                let distinct: std::collections::BTreeSet<String> = levels.iter().map(|l| l.to_ascii_lowercase()).collect();
                if levels.len() < 2 || distinct.len() != levels.len() || levels.iter().any(|l| l.trim().is_empty()) {
                    return Err(format!("variable `{}`: list two or more distinct, non-empty levels", v.name));
                }
            }
            VariableKind::Continuous { resolution, .. } => {
                if !(*resolution > 0.0 && resolution.is_finite()) {
                    return Err(format!("variable `{}`: resolution must be positive", v.name));
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClinicalValue {
    /// Index into the variable's levels.
    Level(usize),
    Number(f64),
}

/// One patient as the site holds it after loading. Never leaves the site.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientRecord {
    pub patient_id: String,
    /// Recurrence (the study outcome).
    pub outcome: bool,
    pub clinical: BTreeMap<String, ClinicalValue>,
}

/// Training or validation membership, decided by the split step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CohortRole {
    Training,
    Validation,
}

impl CohortRole {
    pub const ALL: [CohortRole; 2] = [CohortRole::Training, CohortRole::Validation];

    pub fn as_str(self) -> &'static str {
        match self {
            CohortRole::Training => "training",
            CohortRole::Validation => "validation",
        }
    }
}

/// Why a manifest row was excluded. Sites report counts per reason, never which rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionReason {
    MalformedRow,
    DuplicateId,
    BadOutcome,
    MissingValue,
    UnparsableValue,
    MissingFile,
    UnreadableVolume,
    GeometryMismatch,
    EmptyMask,
}

impl ExclusionReason {
    pub const ALL: [ExclusionReason; 9] = [
        ExclusionReason::MalformedRow,
        ExclusionReason::DuplicateId,
        ExclusionReason::BadOutcome,
        ExclusionReason::MissingValue,
        ExclusionReason::UnparsableValue,
        ExclusionReason::MissingFile,
        ExclusionReason::UnreadableVolume,
        ExclusionReason::GeometryMismatch,
        ExclusionReason::EmptyMask,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionReason::MalformedRow => "malformed_row",
            ExclusionReason::DuplicateId => "duplicate_id",
            ExclusionReason::BadOutcome => "bad_outcome",
            ExclusionReason::MissingValue => "missing_value",
            ExclusionReason::UnparsableValue => "unparsable_value",
            ExclusionReason::MissingFile => "missing_file",
            ExclusionReason::UnreadableVolume => "unreadable_volume",
            ExclusionReason::GeometryMismatch => "geometry_mismatch",
            ExclusionReason::EmptyMask => "empty_mask",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_the_study_fixes_must_be_the_sites() {
        let site = |unit: &str| vec![VariableSpec::continuous("ebv_dna", "EBV", 1.0, unit)];
        let study = |unit: &str| VariableSpec::continuous("ebv_dna", "EBV", 1.0, unit);
        assert_eq!(dictionary_mismatch(&site("copies/mL"), &study("copies/mL")), None);
        assert_eq!(dictionary_mismatch(&site("copies/mL"), &study("")), None, "a study that fixes no unit takes the site's");
        assert!(dictionary_mismatch(&site(""), &study("copies/mL")).unwrap().contains("states no unit"));
        assert!(dictionary_mismatch(&site("IU/mL"), &study("copies/mL")).unwrap().contains("in IU/mL"));
        assert!(dictionary_mismatch(&[], &study("x")).unwrap().contains("not a column"));
    }

    #[test]
    fn parses_levels_case_insensitively_and_rejects_others() {
        let t = VariableSpec::categorical("t_stage", "T", &["T1", "T2", "T3", "T4"]);
        assert_eq!(t.parse("t3"), Ok(ClinicalValue::Level(2)));
        assert!(t.parse("T5").unwrap_err().contains("not one of"));
        assert!(t.parse(" ").unwrap_err().contains("missing"));
        let age = VariableSpec::continuous("age", "Age", 1.0, "years");
        assert_eq!(age.parse("47"), Ok(ClinicalValue::Number(47.0)));
        assert!(age.parse("forty").is_err());
        assert!(age.parse("inf").is_err());
        assert!(age.parse("NA").unwrap_err().contains("missing"));
    }
}
