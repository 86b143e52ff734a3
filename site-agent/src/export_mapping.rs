//! How a hospital's own export maps to the study's names and codes (`[export]` in `site.toml`).
//!
//! Hospitals export their clinical tables with their own column names (`MRN`, `gender`), codes
//! (`M`/`F`, `WHO III`, `yes`/`no`), missing-value markers (`-99`, `unknown`) and units. Each
//! site maps its export to the study once, in its config, instead of writing a conversion
//! script whose choices nobody reviews:
//!
//! ```toml
//! [export]
//! missing = ["", "NA", "unknown", "-99"]   # cells meaning "not recorded" (default: "", NA, NaN)
//! ignore = ["name", "date_of_birth"]       # export columns the study does not use
//! [export.columns]                         # the study's column = the export's column
//! patient_id = "MRN"
//! sex = "gender"
//! recurrence = "relapse_2y"
//! [export.codes.sex]                       # the export's code = the study's level
//! M = "male"
//! F = "female"
//! [export.codes.histology]
//! "WHO III" = "WHO-III"
//! [export.codes.recurrence]
//! yes = "1"
//! no = "0"
//! [export.scale]                           # numeric columns × factor = the study's unit
//! ebv_dna = 1000.0                         # exported per µL, the study counts per mL
//! ```
//!
//! A code the mapping does not know is a per-row error naming the value and the table to
//! extend; a mapping onto a level the study does not have is a config error at start.

use std::collections::BTreeMap;

use fedrad_shared::clinical::{ClinicalValue, ExclusionReason, VariableKind, VariableSpec};

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportMapping {
    /// Cells that mean "not recorded" (compared ignoring case and surrounding spaces).
    #[serde(default = "default_missing")]
    pub missing: Vec<String>,
    /// Export columns that the study does not use (any other unknown column is an error, so
    /// that a renamed study column is not silently dropped).
    #[serde(default)]
    pub ignore: Vec<String>,
    /// The study's column name → the export's.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Per study column: the export's code → the study's level (or 0/1 for `recurrence`).
    #[serde(default)]
    pub codes: BTreeMap<String, BTreeMap<String, String>>,
    /// Per numeric study column: the factor from the export's unit to the study's.
    #[serde(default)]
    pub scale: BTreeMap<String, f64>,
}

fn default_missing() -> Vec<String> {
    vec![String::new(), "NA".into(), "NaN".into()]
}

/// The mapping of an export that already uses the study's names and codes.
impl Default for ExportMapping {
    fn default() -> Self {
        ExportMapping { missing: default_missing(), ignore: Vec::new(), columns: BTreeMap::new(), codes: BTreeMap::new(), scale: BTreeMap::new() }
    }
}

impl ExportMapping {
    /// The export's name of study column `study`.
    pub fn column<'a>(&'a self, study: &'a str) -> &'a str {
        self.columns.get(study).map(String::as_str).unwrap_or(study)
    }

    pub fn is_missing(&self, raw: &str) -> bool {
        let raw = raw.trim();
        self.missing.iter().any(|m| m.trim().eq_ignore_ascii_case(raw))
    }

    /// The study's code for an export cell of `study` column: mapped if the mapping has the
    /// code (exactly, else ignoring case), else the cell itself.
    pub fn code<'a>(&'a self, study: &str, raw: &'a str) -> &'a str {
        let raw = raw.trim();
        match self.codes.get(study) {
            Some(table) => table.get(raw).or_else(|| table.iter().find(|(k, _)| k.eq_ignore_ascii_case(raw)).map(|(_, v)| v)).map(String::as_str).unwrap_or(raw),
            None => raw,
        }
    }

    /// One clinical cell as the study's value, or why not (reason and detail for the log).
    pub fn parse(&self, spec: &VariableSpec, raw: &str) -> Result<ClinicalValue, (ExclusionReason, String)> {
        let export_column = self.column(&spec.name);
        if self.is_missing(raw) {
            return Err((ExclusionReason::MissingValue, format!("missing value for `{}` (export column `{export_column}`)", spec.name)));
        }
        let code = self.code(&spec.name, raw);
        match &spec.kind {
            VariableKind::Categorical { levels } => levels.iter().position(|l| l.eq_ignore_ascii_case(code)).map(ClinicalValue::Level).ok_or_else(|| {
                (
                    ExclusionReason::UnparsableValue,
                    format!("`{}` = {:?} is not one of {}: map the code under [export.codes.{}] in the site config", spec.name, raw.trim(), levels.join(", "), spec.name),
                )
            }),
            VariableKind::Continuous { .. } => match code.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(ClinicalValue::Number(v * self.scale.get(&spec.name).copied().unwrap_or(1.0))),
                _ => Err((
                    ExclusionReason::UnparsableValue,
                    format!("`{}` = {:?} is not a finite number (add it to [export] missing if it means \"not recorded\")", spec.name, raw.trim()),
                )),
            },
        }
    }

    /// The outcome cell as recurrence yes/no.
    pub fn outcome(&self, raw: &str) -> Result<bool, (ExclusionReason, String)> {
        if self.is_missing(raw) {
            return Err((ExclusionReason::BadOutcome, format!("missing recurrence (export column `{}`)", self.column("recurrence"))));
        }
        match self.code("recurrence", raw) {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err((ExclusionReason::BadOutcome, format!("recurrence = {:?}, expected 0 or 1: map the code under [export.codes.recurrence]", raw.trim()))),
        }
    }

    /// Checks the mapping against the study's columns: every mapped name and code must exist.
    pub fn validate(&self, study_columns: &[&str], schema: &[VariableSpec]) -> Result<(), String> {
        for name in self.columns.keys() {
            if !study_columns.contains(&name.as_str()) {
                return Err(format!("[export.columns] maps `{name}`, which is not a study column ({})", study_columns.join(", ")));
            }
        }
        let mut seen = BTreeMap::new();
        for (study, export) in &self.columns {
            if let Some(other) = seen.insert(export.as_str(), study.as_str()) {
                return Err(format!("[export.columns]: export column `{export}` is mapped to both `{other}` and `{study}`"));
            }
        }
        for (name, table) in &self.codes {
            if name == "recurrence" {
                if let Some((code, to)) = table.iter().find(|(_, to)| !matches!(to.as_str(), "0" | "1")) {
                    return Err(format!("[export.codes.recurrence] maps {code:?} to {to:?}; the outcome is 0 or 1"));
                }
                continue;
            }
            let spec = schema.iter().find(|s| &s.name == name).ok_or_else(|| format!("[export.codes.{name}]: `{name}` is not a clinical variable of the study"))?;
            match &spec.kind {
                VariableKind::Categorical { levels } => {
                    if let Some((code, to)) = table.iter().find(|(_, to)| !levels.iter().any(|l| l.eq_ignore_ascii_case(to))) {
                        return Err(format!("[export.codes.{name}] maps {code:?} to {to:?}, which is not a level of `{name}` ({})", levels.join(", ")));
                    }
                }
                VariableKind::Continuous { .. } => {
                    if let Some((code, to)) = table.iter().find(|(_, to)| to.parse::<f64>().map_or(true, |v| !v.is_finite())) {
                        return Err(format!("[export.codes.{name}] maps {code:?} to {to:?}, which is not a number"));
                    }
                }
            }
        }
        for (name, factor) in &self.scale {
            let continuous = schema.iter().any(|s| &s.name == name && matches!(s.kind, VariableKind::Continuous { .. }));
            if !continuous {
                return Err(format!("[export.scale]: `{name}` is not a numeric clinical variable of the study"));
            }
            if !(factor.is_finite() && *factor > 0.0) {
                return Err(format!("[export.scale] {name} = {factor}: a factor must be a positive number"));
            }
        }
        Ok(())
    }
}

/// What one study column of an export holds, for `site-agent check`: the study's levels seen
/// (after mapping) with counts, missing cells, and cells the mapping cannot read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnSummary {
    pub study_column: String,
    pub export_column: String,
    pub levels: BTreeMap<String, usize>,
    pub missing: usize,
    /// Unreadable cells (unmapped codes, non-numbers) with their counts.
    pub unreadable: BTreeMap<String, usize>,
    /// Smallest and largest value of a numeric column (in the study's unit).
    pub range: Option<(f64, f64)>,
}

impl std::fmt::Display for ColumnSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.study_column == self.export_column { self.study_column.clone() } else { format!("{} (export `{}`)", self.study_column, self.export_column) };
        write!(f, "{name}:")?;
        if let Some((lo, hi)) = self.range {
            write!(f, " {lo} to {hi};")?;
        }
        for (level, n) in &self.levels {
            write!(f, " {level} {n};")?;
        }
        write!(f, " missing {}", self.missing)?;
        if !self.unreadable.is_empty() {
            let list: Vec<String> = self.unreadable.iter().map(|(v, n)| format!("{v:?} ×{n}")).collect();
            write!(f, "; UNREADABLE {}", list.join(", "))?;
        }
        Ok(())
    }
}

/// Tallies one clinical column over the export's cells.
pub fn summarise(mapping: &ExportMapping, spec: &VariableSpec, cells: &[&str]) -> ColumnSummary {
    let mut s = ColumnSummary { study_column: spec.name.clone(), export_column: mapping.column(&spec.name).to_string(), ..Default::default() };
    for raw in cells {
        match mapping.parse(spec, raw) {
            Ok(ClinicalValue::Level(l)) => {
                if let VariableKind::Categorical { levels } = &spec.kind {
                    *s.levels.entry(levels[l].clone()).or_default() += 1;
                }
            }
            Ok(ClinicalValue::Number(v)) => {
                let (lo, hi) = s.range.unwrap_or((v, v));
                s.range = Some((lo.min(v), hi.max(v)));
            }
            Err((ExclusionReason::MissingValue, _)) => s.missing += 1,
            Err(_) => *s.unreadable.entry(raw.trim().to_string()).or_default() += 1,
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedrad_shared::clinical::npc_dictionary;

    fn mapping() -> ExportMapping {
        toml::from_str(
            r#"
            missing = ["", "unknown", "-99"]
            [columns]
            patient_id = "MRN"
            sex = "gender"
            [codes.sex]
            M = "male"
            F = "female"
            [codes.histology]
            "WHO III" = "WHO-III"
            [codes.recurrence]
            yes = "1"
            no = "0"
            [scale]
            ebv_dna = 1000.0
            "#,
        )
        .unwrap()
    }

    fn spec(name: &str) -> VariableSpec {
        npc_dictionary().into_iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn codes_units_and_missing_markers_map_to_the_study() {
        let m = mapping();
        m.validate(&["patient_id", "recurrence", "sex"], &npc_dictionary()).unwrap();
        assert_eq!(m.column("sex"), "gender");
        assert_eq!(m.parse(&spec("sex"), " m "), Ok(ClinicalValue::Level(0)));
        assert_eq!(m.parse(&spec("sex"), "female"), Ok(ClinicalValue::Level(1)), "study codes still read");
        assert_eq!(m.parse(&spec("histology"), "WHO III"), Ok(ClinicalValue::Level(2)));
        assert_eq!(m.parse(&spec("ebv_dna"), "2.5"), Ok(ClinicalValue::Number(2500.0)));
        assert_eq!(m.parse(&spec("age"), "-99").unwrap_err().0, ExclusionReason::MissingValue);
        let (reason, detail) = m.parse(&spec("sex"), "X").unwrap_err();
        assert_eq!(reason, ExclusionReason::UnparsableValue);
        assert!(detail.contains("\"X\"") && detail.contains("[export.codes.sex]"), "{detail}");
        assert_eq!(m.outcome("Yes"), Ok(true));
        assert_eq!(m.outcome("no"), Ok(false));
        assert!(m.outcome("maybe").unwrap_err().1.contains("[export.codes.recurrence]"));
        let s = summarise(&m, &spec("sex"), &["M", "F", "m", "", "X", "X"]);
        assert_eq!(s.levels, [("female".to_string(), 1), ("male".to_string(), 2)].into_iter().collect());
        assert_eq!((s.missing, s.unreadable.get("X").copied()), (1, Some(2)));
        assert!(s.to_string().contains("sex (export `gender`)"), "{s}");
    }

    #[test]
    fn a_mapping_onto_what_the_study_does_not_have_is_a_config_error() {
        let cols = ["patient_id", "recurrence", "sex"];
        let bad = |text: &str| toml::from_str::<ExportMapping>(text).unwrap().validate(&cols, &npc_dictionary()).unwrap_err();
        assert!(bad("[codes.sex]\nM = \"man\"").contains("not a level of `sex`"));
        assert!(bad("[codes.recurrence]\nyes = \"true\"").contains("0 or 1"));
        assert!(bad("[columns]\nsmoker = \"SMK\"").contains("not a study column"));
        assert!(bad("[columns]\nsex = \"g\"\npatient_id = \"g\"").contains("mapped to both"));
        assert!(bad("[scale]\nsex = 2.0").contains("not a numeric"));
        assert!(bad("[codes.blood_type]\nA = \"a\"").contains("not a clinical variable"));
    }
}
