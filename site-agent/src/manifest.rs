//! The site's manifest: one row per patient with image paths, clinical values and outcome.
//!
//! Loading checks every row and never stops at the first problem: a row with a missing
//! file, an unreadable volume, a mask that does not match its image, an unparsable or
//! missing value, a duplicate id or an outcome other than 0/1 is excluded with a reason that
//! the site logs (with the row number and patient id, locally) and counts (the only thing
//! that leaves: counts per reason). Only a manifest that cannot be read at all, or lacks
//! required columns, is an error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use fedrad_shared::clinical::{ExclusionReason, PatientRecord, VariableSpec};

use crate::export_mapping::{ColumnSummary, ExportMapping, summarise};
use rayon::prelude::*;

/// Columns with a fixed meaning; every other column must be declared in the schema.
pub const RESERVED_COLUMNS: [&str; 6] = ["patient_id", "t1c_image", "t1c_mask", "t2_image", "t2_mask", "recurrence"];

/// Optional columns: the site's own name of the tumour region in a DICOM mask (an RTSTRUCT's
/// ROI name or a SEG's segment label, e.g. `GTVnx` at one hospital and `GTV_P` at another).
/// An image column may name a folder holding one DICOM series, and a mask column an RTSTRUCT or
/// SEG file drawn on it.
pub const OPTIONAL_COLUMNS: [&str; 2] = ["t1c_roi", "t2_roi"];

/// The MR sequences of the study.
pub const SEQUENCES: [&str; 2] = ["t1c", "t2"];

#[derive(Debug, Clone, PartialEq)]
pub struct PatientImages {
    pub t1c: ImagePair,
    pub t2: ImagePair,
}

/// One sequence's image and mask, as the manifest names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImagePair {
    /// A NIfTI/NRRD file or a folder holding one DICOM series.
    pub image: PathBuf,
    /// A NIfTI/NRRD label file, or an RTSTRUCT or SEG file drawn on the series.
    pub mask: PathBuf,
    /// The region's name in a DICOM mask.
    pub roi: Option<String>,
}

impl ImagePair {
    pub fn read(&self) -> Result<(fedrad_imaging::Volume, fedrad_imaging::Volume), fedrad_imaging::ImagingError> {
        fedrad_imaging::read_image_and_mask(&self.image, &self.mask, self.roi.as_deref())
    }
}

impl PatientImages {
    pub fn sequence(&self, seq: &str) -> &ImagePair {
        if seq == "t1c" { &self.t1c } else { &self.t2 }
    }

    fn pairs(&self) -> [(&'static str, &ImagePair); 2] {
        [("t1c", &self.t1c), ("t2", &self.t2)]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExcludedRow {
    /// 1-based line in the manifest (the header is line 1).
    pub line: usize,
    pub patient_id: Option<String>,
    pub reason: ExclusionReason,
    pub detail: String,
}

/// What a careful analyst would want to know about a loaded row before a study starts: none
/// of these excludes the row (each can be legitimate), but each changes what the features
/// mean, so `site-agent check` lists them at the site. They never leave the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// The mask holds labels besides the study's (a necrotic core labelled 2, a node labelled
    /// 3): those voxels are not analysed, which may not be what the contouring meant.
    OtherMaskLabels,
    /// The region reaches the first or last voxel of an image axis: the tumour may continue
    /// beyond the field of view, so shape and texture describe a cut tumour.
    RegionAtImageEdge,
    /// The longest voxel side is more than [`ANISOTROPY_LIMIT`] times the shortest: 3D texture
    /// matrices then mix neighbours at very different distances.
    AnisotropicVoxels,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::OtherMaskLabels => "other_mask_labels",
            FindingKind::RegionAtImageEdge => "region_at_image_edge",
            FindingKind::AnisotropicVoxels => "anisotropic_voxels",
        }
    }
}

/// The mask label the study analyses (PyRadiomics' `label`, the study default's 1).
pub const STUDY_MASK_LABEL: u32 = 1;

/// Longest over shortest voxel side above which voxels count as strongly anisotropic (a
/// 0.5 × 0.5 × 3 mm MR voxel is 6×; the IBSI recommends isotropic resampling well below that).
pub const ANISOTROPY_LIMIT: f64 = 5.0;

#[derive(Debug, Clone, PartialEq)]
pub struct DataFinding {
    /// 1-based manifest line.
    pub line: usize,
    pub patient_id: String,
    pub sequence: &'static str,
    pub kind: FindingKind,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct LoadedCohort {
    pub records: Vec<PatientRecord>,
    pub images: Vec<PatientImages>,
    pub excluded: Vec<ExcludedRow>,
    /// What was found for each loaded row (line, and per sequence a description: format, grid,
    /// region, voxels), for `site-agent check`; empty when images were not opened.
    pub found: Vec<(usize, String)>,
    /// Data-quality findings on loaded rows (see [`FindingKind`]); empty when images were not opened.
    pub findings: Vec<DataFinding>,
}

impl LoadedCohort {
    pub fn excluded_counts(&self) -> BTreeMap<ExclusionReason, u64> {
        let mut m = BTreeMap::new();
        for e in &self.excluded {
            *m.entry(e.reason).or_default() += 1;
        }
        m
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read { path: PathBuf, source: csv::Error },
    #[error("manifest {path} lacks required column(s): {missing}")]
    MissingColumns { path: PathBuf, missing: String },
    #[error("manifest {path}: column `{column}` is neither a built-in column nor declared in [clinical.extra]")]
    UndeclaredColumn { path: PathBuf, column: String },
}

/// Whether to open every volume while loading (the agent does; a quick `check` may not).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageCheck {
    Full,
    ExistenceOnly,
}

/// Loads a manifest that uses the study's column names and codes.
pub fn load(path: &Path, schema: &[VariableSpec], check: ImageCheck) -> Result<LoadedCohort, ManifestError> {
    load_mapped(path, schema, &ExportMapping::default(), check)
}

/// The study's columns: fixed, then the schema's, then the optional ones.
fn study_columns(schema: &[VariableSpec]) -> Vec<&str> {
    RESERVED_COLUMNS.iter().copied().chain(schema.iter().map(|v| v.name.as_str())).chain(OPTIONAL_COLUMNS).collect()
}

/// Loads a hospital's export through the site's [`ExportMapping`] (its column names, codes,
/// missing markers and units).
pub fn load_mapped(path: &Path, schema: &[VariableSpec], mapping: &ExportMapping, check: ImageCheck) -> Result<LoadedCohort, ManifestError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_path(path).map_err(|source| ManifestError::Read { path: path.into(), source })?;
    let headers = reader.headers().map_err(|source| ManifestError::Read { path: path.into(), source })?.clone();
    let by_export: HashMap<&str, usize> = headers.iter().enumerate().map(|(i, h)| (h, i)).collect();
    let study = study_columns(schema);
    // Study column → position, through the export's names.
    let col: HashMap<&str, usize> = study.iter().filter_map(|&c| by_export.get(mapping.column(c)).map(|&i| (c, i))).collect();
    let required = &study[..study.len() - OPTIONAL_COLUMNS.len()];
    let missing: Vec<String> = required
        .iter()
        .filter(|c| !col.contains_key(*c))
        .map(|c| if mapping.column(c) == *c { c.to_string() } else { format!("{} (the study's {c})", mapping.column(c)) })
        .collect();
    if !missing.is_empty() {
        return Err(ManifestError::MissingColumns { path: path.into(), missing: missing.join(", ") });
    }
    let used: Vec<&str> = study.iter().map(|c| mapping.column(c)).collect();
    if let Some(extra) = headers.iter().find(|h| !used.contains(h) && !mapping.ignore.iter().any(|i| i == h)) {
        return Err(ManifestError::UndeclaredColumn { path: path.into(), column: extra.to_string() });
    }

    let mut out = LoadedCohort::default();
    let mut candidates: Vec<(usize, PatientRecord, PatientImages)> = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                out.excluded.push(ExcludedRow { line, patient_id: None, reason: ExclusionReason::MalformedRow, detail: e.to_string() });
                continue;
            }
        };
        if row.len() != headers.len() {
            out.excluded.push(ExcludedRow {
                line,
                patient_id: row.get(0).map(str::to_string),
                reason: ExclusionReason::MalformedRow,
                detail: format!("{} fields, the header has {}", row.len(), headers.len()),
            });
            continue;
        }
        match parse_row(&row, &col, schema, mapping, base) {
            Ok((rec, img)) => candidates.push((line, rec, img)),
            Err((reason, detail)) => {
                let pid = row.get(col["patient_id"]).filter(|s| !s.is_empty()).map(str::to_string);
                out.excluded.push(ExcludedRow { line, patient_id: pid, reason, detail });
            }
        }
    }

    // Duplicate ids: every row with that id is ambiguous, so all are excluded.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, r, _) in &candidates {
        *seen.entry(r.patient_id.clone()).or_default() += 1;
    }
    let mut lines_of: HashMap<String, Vec<usize>> = HashMap::new();
    for (line, r, _) in &candidates {
        lines_of.entry(r.patient_id.clone()).or_default().push(*line);
    }
    let (dups, unique): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|(_, r, _)| seen[&r.patient_id] > 1);
    for (line, r, _) in dups {
        let lines: Vec<String> = lines_of[&r.patient_id].iter().map(usize::to_string).collect();
        let detail = format!(
            "patient id appears on lines {}: none of them is kept, since which row is this patient's cannot be told from the manifest (fix the export and check again)",
            lines.join(", ")
        );
        out.excluded.push(ExcludedRow { line, patient_id: Some(r.patient_id), reason: ExclusionReason::DuplicateId, detail });
    }

    let checked: Vec<_> = unique
        .into_par_iter()
        .map(|(line, rec, img)| {
            let verdict = check_images(&img, check);
            (line, rec, img, verdict)
        })
        .collect();
    for (line, rec, img, verdict) in checked {
        match verdict {
            Ok((found, findings)) => {
                if !found.is_empty() {
                    out.found.push((line, format!("{} {found}", rec.patient_id)));
                }
                out.findings.extend(findings.into_iter().map(|(sequence, kind, detail)| DataFinding {
                    line,
                    patient_id: rec.patient_id.clone(),
                    sequence,
                    kind,
                    detail,
                }));
                out.records.push(rec);
                out.images.push(img);
            }
            Err((reason, detail)) => out.excluded.push(ExcludedRow { line, patient_id: Some(rec.patient_id), reason, detail }),
        }
    }
    out.excluded.sort_by_key(|e| e.line);
    Ok(out)
}

type RowError = (ExclusionReason, String);

fn parse_row(
    row: &csv::StringRecord,
    col: &HashMap<&str, usize>,
    schema: &[VariableSpec],
    mapping: &ExportMapping,
    base: &Path,
) -> Result<(PatientRecord, PatientImages), RowError> {
    let get = |name: &str| row.get(col[name]).unwrap_or("");
    let pid = get("patient_id");
    if pid.is_empty() {
        return Err((ExclusionReason::MissingValue, "missing patient_id".into()));
    }
    let outcome = mapping.outcome(get("recurrence"))?;
    let mut clinical = BTreeMap::new();
    for spec in schema {
        clinical.insert(spec.name.clone(), mapping.parse(spec, get(&spec.name))?);
    }
    let path = |name: &str| -> Result<PathBuf, RowError> {
        let v = get(name);
        if v.is_empty() { Err((ExclusionReason::MissingValue, format!("missing {name}"))) } else { Ok(base.join(v)) }
    };
    let roi = |name: &str| col.get(name).and_then(|&c| row.get(c)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let images = PatientImages {
        t1c: ImagePair { image: path("t1c_image")?, mask: path("t1c_mask")?, roi: roi("t1c_roi") },
        t2: ImagePair { image: path("t2_image")?, mask: path("t2_mask")?, roi: roi("t2_roi") },
    };
    Ok((PatientRecord { patient_id: pid.to_string(), outcome, clinical }, images))
}

/// Image and mask must exist, be readable, share a grid, and the mask must mark a region.
/// What `check` says of one sequence: where the image and mask came from, the grid and the
/// region's size.
fn describe(seq: &str, pair: &ImagePair, image: &fedrad_imaging::Volume, mask: &fedrad_imaging::Volume) -> String {
    let g = &image.geometry;
    let source = if pair.image.is_dir() { format!("DICOM series ({} slices)", g.dims[2]) } else { "volume file".to_string() };
    let region = match &pair.roi {
        Some(roi) if fedrad_imaging::is_dicom_file(&pair.mask) => format!("region {roi:?}"),
        _ => "mask file".to_string(),
    };
    let voxels = mask.data.iter().filter(|v| **v >= 0.5).count();
    format!(
        "{seq}: {source}, {}×{}×{} voxels of {:.3}×{:.3}×{:.3} mm, {region}: {voxels} voxels",
        g.dims[0], g.dims[1], g.dims[2], g.spacing[0], g.spacing[1], g.spacing[2]
    )
}

/// The findings of one sequence's image and mask (already checked to share a grid).
pub fn findings_of(image: &fedrad_imaging::Volume, mask: &fedrad_imaging::Volume) -> Vec<(FindingKind, String)> {
    let mut out = Vec::new();
    let mut labels: BTreeMap<i64, usize> = BTreeMap::new();
    for &v in &mask.data {
        let l = v.round() as i64;
        if l != 0 {
            *labels.entry(l).or_default() += 1;
        }
    }
    let study = i64::from(STUDY_MASK_LABEL);
    if labels.keys().any(|&l| l != study) {
        let listed: Vec<String> = labels.iter().map(|(l, n)| format!("{l} ({n} voxels)")).collect();
        let analysed = if labels.contains_key(&study) { format!("only label {study} is analysed") } else { format!("label {study}, the one analysed, is absent") };
        out.push((FindingKind::OtherMaskLabels, format!("the mask holds labels {}: {analysed}", listed.join(", "))));
    }
    // The region's extent, of the analysed label (or of any label when it is absent).
    let [nx, ny, nz] = mask.geometry.dims;
    let in_region = |v: f32| if labels.contains_key(&study) { v.round() as i64 == study } else { v >= 0.5 };
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if in_region(mask.data[i + nx * (j + ny * k)]) {
                    for (a, x) in [i, j, k].into_iter().enumerate() {
                        lo[a] = lo[a].min(x);
                        hi[a] = hi[a].max(x);
                    }
                }
            }
        }
    }
    let mut edges = Vec::new();
    for (a, name) in ["i (columns)", "j (rows)", "k (slices)"].into_iter().enumerate() {
        if lo[a] == 0 {
            edges.push(format!("the first voxel along {name}"));
        }
        if hi[a] + 1 == mask.geometry.dims[a] && lo[a] != usize::MAX {
            edges.push(format!("the last voxel along {name}"));
        }
    }
    if !edges.is_empty() {
        out.push((FindingKind::RegionAtImageEdge, format!("the region reaches {}: the tumour may continue beyond the field of view", edges.join(" and "))));
    }
    let sp = image.geometry.spacing;
    let (short, long) = sp.iter().fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
    if long > ANISOTROPY_LIMIT * short {
        out.push((
            FindingKind::AnisotropicVoxels,
            format!(
                "voxels of {:.3} × {:.3} × {:.3} mm ({:.1}× longer in one direction): 3D texture mixes neighbours at different distances; consider 2D texture or resampling",
                sp[0],
                sp[1],
                sp[2],
                long / short
            ),
        ));
    }
    out
}

type Found = (String, Vec<(&'static str, FindingKind, String)>);

fn check_images(img: &PatientImages, check: ImageCheck) -> Result<Found, RowError> {
    let mut found = Vec::new();
    let mut findings = Vec::new();
    for (seq, pair) in img.pairs() {
        if !(pair.image.is_file() || pair.image.is_dir()) {
            return Err((ExclusionReason::MissingFile, format!("{seq}: {} does not exist", pair.image.display())));
        }
        if !pair.mask.is_file() {
            return Err((ExclusionReason::MissingFile, format!("{seq}: {} does not exist", pair.mask.display())));
        }
        if check == ImageCheck::ExistenceOnly {
            continue;
        }
        let unreadable = |e: fedrad_imaging::ImagingError| (ExclusionReason::UnreadableVolume, format!("{seq}: {e}"));
        let (iv, mv) = pair.read().map_err(unreadable)?;
        if let Some(diff) = iv.geometry.mismatch(&mv.geometry, 1e-3) {
            return Err((ExclusionReason::GeometryMismatch, format!("{seq}: mask and image differ in {diff}")));
        }
        if iv.data.iter().any(|v| !v.is_finite()) {
            return Err((ExclusionReason::UnreadableVolume, format!("{seq}: image has non-finite voxels")));
        }
        if !mv.data.iter().any(|v| *v >= 0.5) {
            return Err((ExclusionReason::EmptyMask, format!("{seq}: the mask marks no voxel")));
        }
        found.push(describe(seq, pair, &iv, &mv));
        findings.extend(findings_of(&iv, &mv).into_iter().map(|(kind, detail)| (seq, kind, detail)));
    }
    Ok((found.join("; "), findings))
}

/// The manifest's column names as exported (its header row).
pub fn headers(path: &Path) -> Result<Vec<String>, ManifestError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_path(path).map_err(|source| ManifestError::Read { path: path.into(), source })?;
    Ok(reader.headers().map_err(|source| ManifestError::Read { path: path.into(), source })?.iter().map(str::to_string).collect())
}

/// Per clinical column of the export, what it holds after mapping (levels with counts,
/// missing and unreadable cells, numeric range): `site-agent check` prints it before a study
/// starts. Reads the manifest only; a manifest that cannot be read is an error as in [`load_mapped`].
pub fn column_summaries(path: &Path, schema: &[VariableSpec], mapping: &ExportMapping) -> Result<Vec<ColumnSummary>, ManifestError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_path(path).map_err(|source| ManifestError::Read { path: path.into(), source })?;
    let headers = reader.headers().map_err(|source| ManifestError::Read { path: path.into(), source })?.clone();
    let rows: Vec<csv::StringRecord> = reader.records().filter_map(Result::ok).collect();
    let outcome = VariableSpec::categorical("recurrence", "Recurrence", &["0", "1"]);
    let mut out = Vec::new();
    for spec in schema.iter().chain(std::iter::once(&outcome)) {
        let Some(c) = headers.iter().position(|h| h == mapping.column(&spec.name)) else { continue };
        let cells: Vec<&str> = rows.iter().map(|r| r.get(c).unwrap_or("")).collect();
        out.push(summarise(mapping, spec, &cells));
    }
    Ok(out)
}
