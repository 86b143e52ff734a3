//! An image series from a folder of DICOM files (classic single-frame MR/CT, or one enhanced
//! multi-frame object), assembled into a [`Volume`] in the crate's RAS world frame.
//!
//! The rules, and why:
//! - **One series.** Files are grouped by SeriesInstanceUID; a folder holding several image
//!   series is an error that lists them (taking "the largest" would silently pick the wrong
//!   sequence). Files that are not images (an RTSTRUCT, a SEG, a DICOMDIR) are skipped.
//! - **Slice order from geometry.** Slices are sorted by ImagePositionPatient projected on the
//!   slice normal (row direction × column direction), never by InstanceNumber or
//!   SliceLocation, which scanners fill inconsistently.
//! - **A regular grid or nothing.** Every slice must share orientation, size and pixel
//!   spacing, lie on the same in-plane position (no gantry tilt), and follow its neighbour at
//!   the same distance: a duplicate position or a missing slice is an error naming where.
//!   Resampling an irregular stack would change every texture feature.
//! - **Stored values through the modality LUT.** Rescale Slope/Intercept (per frame for
//!   enhanced objects) are applied: intensities are in the modality's units (HU for CT).
//! - **LPS to RAS.** DICOM's patient frame is LPS; volumes here are RAS (NIfTI's frame), so a
//!   series and its NIfTI conversion describe the same voxels with the same geometry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};

use super::{Obj, dicom_error, floats, lps_to_ras, string_of};
use crate::{Geometry, ImagingError, SampleType, Volume};

/// A series read from DICOM, with what a site's `check` reports about it.
#[derive(Debug, Clone)]
pub struct DicomSeries {
    pub volume: Volume,
    pub series_uid: String,
    pub frame_of_reference: String,
    pub modality: String,
    /// Files (classic) or frames (enhanced) that became slices.
    pub slices: usize,
    pub transfer_syntax: String,
    /// The slice normal in LPS (row direction × column direction).
    pub(crate) normal_lps: [f64; 3],
}

impl DicomSeries {
    /// The continuous voxel index (i, j, k) of a point given in DICOM's LPS frame.
    pub fn lps_to_index(&self, p: [f64; 3]) -> [f64; 3] {
        let g = &self.volume.geometry;
        let ras = lps_to_ras(p);
        let d = [ras[0] - g.origin[0], ras[1] - g.origin[1], ras[2] - g.origin[2]];
        let mut out = [0.0; 3];
        for (axis, o) in out.iter_mut().enumerate() {
            // Directions are orthonormal (checked on reading): the inverse is the transpose.
            let dot: f64 = (0..3).map(|r| g.direction[r][axis] * d[r]).sum();
            *o = dot / g.spacing[axis];
        }
        out
    }
}

/// One slice before assembly: a file of a classic series or a frame of an enhanced one.
struct Slice {
    source: String,
    position: [f64; 3],
    orientation: [f64; 6],
    /// (between rows, between columns), DICOM's PixelSpacing order.
    pixel_spacing: [f64; 2],
    rows: usize,
    columns: usize,
    rescale: (f64, f64),
    pixels: Vec<f32>,
}

/// Reads the one image series in `dir` (files directly in it or below it).
pub fn read_series(dir: &Path) -> Result<DicomSeries, ImagingError> {
    let err = |detail: String| dicom_error(dir, detail);
    let mut files = Vec::new();
    collect_files(dir, &mut files).map_err(|source| ImagingError::Io { path: dir.display().to_string(), source })?;
    files.sort();
    // Headers first (up to the pixel data): grouping must not decode what it then skips.
    let mut series: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for f in &files {
        match OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(f) {
            Ok(obj) => {
                if is_image(&obj) {
                    series.entry(string_of(&obj, tags::SERIES_INSTANCE_UID).unwrap_or_default()).or_default().push(f.clone());
                }
            }
            Err(e) => unreadable.push(format!("{}: {e}", f.display())),
        }
    }
    if series.is_empty() {
        let why = if unreadable.is_empty() { String::new() } else { format!(" ({} unreadable file(s), first: {})", unreadable.len(), unreadable[0]) };
        return Err(err(format!("no DICOM image series in the folder ({} file(s)){why}", files.len())));
    }
    if series.len() > 1 {
        let list: Vec<String> = series.iter().map(|(uid, f)| format!("{uid} ({} file(s))", f.len())).collect();
        return Err(err(format!("the folder holds {} image series: {}; give one series per folder", series.len(), list.join(", "))));
    }
    let (series_uid, paths) = series.into_iter().next().expect("one series");
    let mut slices = Vec::new();
    let (mut modality, mut frame_of_reference, mut transfer_syntax) = (String::new(), String::new(), String::new());
    for p in &paths {
        let obj = dicom_object::open_file(p).map_err(|e| err(format!("{}: {e}", p.display())))?;
        modality = string_of(&obj, tags::MODALITY).unwrap_or_default();
        frame_of_reference = string_of(&obj, tags::FRAME_OF_REFERENCE_UID).unwrap_or_default();
        transfer_syntax = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
        slices.extend(slices_of(&obj, p).map_err(err)?);
    }
    let n = slices.len();
    let (volume, normal_lps) = assemble(slices).map_err(err)?;
    Ok(DicomSeries { volume, series_uid, frame_of_reference, modality, slices: n, transfer_syntax, normal_lps })
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_image(obj: &Obj) -> bool {
    let modality = string_of(obj, tags::MODALITY).unwrap_or_default();
    obj.get(tags::ROWS).is_some() && !matches!(modality.as_str(), "RTSTRUCT" | "SEG" | "RTPLAN" | "RTDOSE" | "SR" | "PR")
}

/// Names of transfer syntaxes whose pixel data the pure-Rust decoders here cannot read.
fn undecodable(uid: &str) -> Option<&'static str> {
    match uid {
        "1.2.840.10008.1.2.4.90" => Some("JPEG 2000 lossless"),
        "1.2.840.10008.1.2.4.91" => Some("JPEG 2000"),
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => Some("JPEG 2000 Part 2"),
        "1.2.840.10008.1.2.4.80" => Some("JPEG-LS lossless"),
        "1.2.840.10008.1.2.4.81" => Some("JPEG-LS near-lossless"),
        "1.2.840.10008.1.2.4.100" | "1.2.840.10008.1.2.4.101" | "1.2.840.10008.1.2.4.102" | "1.2.840.10008.1.2.4.103" => Some("MPEG video"),
        _ => None,
    }
}

/// The decoded stored values of every frame, without any LUT (rescale is applied per slice).
pub(super) fn stored_values(obj: &DefaultDicomObject, path: &Path) -> Result<Vec<f32>, String> {
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    if let Some(name) = undecodable(&ts) {
        return Err(format!("{}: pixel data in {name} ({ts}), which FedRad cannot decode; export the series uncompressed or as JPEG lossless", path.display()));
    }
    let decoded = obj.decode_pixel_data().map_err(|e| format!("{}: cannot decode the pixel data (transfer syntax {ts}): {e}", path.display()))?;
    if decoded.samples_per_pixel() != 1 {
        return Err(format!("{}: {} samples per pixel; only greyscale images can be analysed", path.display(), decoded.samples_per_pixel()));
    }
    decoded
        .to_vec_with_options::<f32>(&ConvertOptions::new().with_modality_lut(ModalityLutOption::None))
        .map_err(|e| format!("{}: cannot convert the pixel data: {e}", path.display()))
}

fn required_floats(obj: &InMemDicomObject, tag: dicom_core::Tag, name: &str, n: usize, source: &str) -> Result<Vec<f64>, String> {
    match floats(obj, tag) {
        Some(v) if v.len() == n && v.iter().all(|x| x.is_finite()) => Ok(v),
        Some(v) => Err(format!("{source}: {name} has {} value(s), expected {n}", v.len())),
        None => Err(format!("{source}: no {name}")),
    }
}

fn rescale_of(obj: &InMemDicomObject) -> (f64, f64) {
    let slope = floats(obj, tags::RESCALE_SLOPE).and_then(|v| v.first().copied()).filter(|s| *s != 0.0).unwrap_or(1.0);
    let intercept = floats(obj, tags::RESCALE_INTERCEPT).and_then(|v| v.first().copied()).unwrap_or(0.0);
    (slope, intercept)
}

/// The first item of a sequence, if present.
pub(super) fn first_item(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<&InMemDicomObject> {
    obj.get(tag).and_then(|e| e.items()).and_then(|items| items.first())
}

/// Looks a functional-group macro up in a frame's own groups, then in the shared ones.
pub(super) fn functional<'a>(frame: Option<&'a InMemDicomObject>, shared: Option<&'a InMemDicomObject>, seq: dicom_core::Tag) -> Option<&'a InMemDicomObject> {
    frame.and_then(|f| first_item(f, seq)).or_else(|| shared.and_then(|s| first_item(s, seq)))
}

fn slices_of(obj: &DefaultDicomObject, path: &Path) -> Result<Vec<Slice>, String> {
    let source = path.display().to_string();
    let rows = obj.get(tags::ROWS).and_then(|e| e.to_int::<usize>().ok()).ok_or(format!("{source}: no Rows"))?;
    let columns = obj.get(tags::COLUMNS).and_then(|e| e.to_int::<usize>().ok()).ok_or(format!("{source}: no Columns"))?;
    let frames = obj.get(tags::NUMBER_OF_FRAMES).and_then(|e| e.to_int::<usize>().ok()).unwrap_or(1);
    let pixels = stored_values(obj, path)?;
    if pixels.len() != rows * columns * frames {
        return Err(format!("{source}: {} decoded samples for {frames} frame(s) of {rows} × {columns}", pixels.len()));
    }
    let per_frame: Option<&[InMemDicomObject]> = obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items());
    let Some(per_frame) = per_frame else {
        if frames != 1 {
            return Err(format!("{source}: {frames} frames without per-frame functional groups (a cine or legacy multi-frame object is not a volume)"));
        }
        return Ok(vec![Slice {
            position: required_floats(obj, tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", 3, &source)?.try_into().expect("3"),
            orientation: required_floats(obj, tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient", 6, &source)?.try_into().expect("6"),
            pixel_spacing: required_floats(obj, tags::PIXEL_SPACING, "PixelSpacing", 2, &source)?.try_into().expect("2"),
            rows,
            columns,
            rescale: rescale_of(obj),
            pixels,
            source,
        }]);
    };
    // Enhanced multi-frame: geometry and rescale per frame, from its functional groups.
    if per_frame.len() != frames {
        return Err(format!("{source}: {} per-frame functional groups for {frames} frames", per_frame.len()));
    }
    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let mut out = Vec::with_capacity(frames);
    for (f, groups) in per_frame.iter().enumerate() {
        let fsource = format!("{source} frame {}", f + 1);
        let position = functional(Some(groups), shared, tags::PLANE_POSITION_SEQUENCE).ok_or(format!("{fsource}: no PlanePositionSequence"))?;
        let orientation = functional(Some(groups), shared, tags::PLANE_ORIENTATION_SEQUENCE).ok_or(format!("{fsource}: no PlaneOrientationSequence"))?;
        let measures = functional(Some(groups), shared, tags::PIXEL_MEASURES_SEQUENCE).ok_or(format!("{fsource}: no PixelMeasuresSequence"))?;
        let rescale = functional(Some(groups), shared, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE).map(rescale_of).unwrap_or_else(|| rescale_of(obj));
        out.push(Slice {
            position: required_floats(position, tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", 3, &fsource)?.try_into().expect("3"),
            orientation: required_floats(orientation, tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient", 6, &fsource)?.try_into().expect("6"),
            pixel_spacing: required_floats(measures, tags::PIXEL_SPACING, "PixelSpacing", 2, &fsource)?.try_into().expect("2"),
            rows,
            columns,
            rescale,
            pixels: pixels[f * rows * columns..(f + 1) * rows * columns].to_vec(),
            source: fsource,
        });
    }
    Ok(out)
}

pub(super) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

pub(super) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Orders slices along the normal, checks that they make a regular grid and builds the
/// volume; returns it with the slice normal (LPS).
fn assemble(mut slices: Vec<Slice>) -> Result<(Volume, [f64; 3]), String> {
    let first = Slice { pixels: Vec::new(), source: slices[0].source.clone(), ..slices[0] };
    let first = &first;
    let (row_dir, col_dir) = ([first.orientation[0], first.orientation[1], first.orientation[2]], [first.orientation[3], first.orientation[4], first.orientation[5]]);
    if (dot(row_dir, row_dir) - 1.0).abs() > 1e-3 || (dot(col_dir, col_dir) - 1.0).abs() > 1e-3 || dot(row_dir, col_dir).abs() > 1e-3 {
        return Err(format!("{}: ImageOrientationPatient {:?} is not two orthonormal directions", first.source, first.orientation));
    }
    let normal = cross(row_dir, col_dir);
    for s in &slices[1..] {
        if s.orientation.iter().zip(&first.orientation).any(|(a, b)| (a - b).abs() > 1e-4) {
            return Err(format!("{}: orientation {:?} differs from {}'s {:?}", s.source, s.orientation, first.source, first.orientation));
        }
        if (s.rows, s.columns) != (first.rows, first.columns) {
            return Err(format!("{}: {} × {} pixels, {} has {} × {}", s.source, s.rows, s.columns, first.source, first.rows, first.columns));
        }
        if s.pixel_spacing.iter().zip(&first.pixel_spacing).any(|(a, b)| (a - b).abs() > 1e-4 * b.abs().max(1.0)) {
            return Err(format!("{}: pixel spacing {:?} differs from {}'s {:?}", s.source, s.pixel_spacing, first.source, first.pixel_spacing));
        }
    }
    slices.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)).then_with(|| a.source.cmp(&b.source)));
    let depth: Vec<f64> = slices.iter().map(|s| dot(s.position, normal)).collect();
    let origin_lps = slices[0].position;
    // Every slice on the same in-plane position as the first (no tilt, no shifted stack).
    for s in &slices[1..] {
        let d = [s.position[0] - origin_lps[0], s.position[1] - origin_lps[1], s.position[2] - origin_lps[2]];
        if dot(d, row_dir).abs() > 0.01 || dot(d, col_dir).abs() > 0.01 {
            return Err(format!(
                "{}: the slice is shifted in-plane by ({:.3}, {:.3}) mm from the first (a tilted or shifted stack is not a regular grid)",
                s.source,
                dot(d, row_dir),
                dot(d, col_dir)
            ));
        }
    }
    let nz = slices.len();
    let spacing_z = if nz > 1 {
        for w in slices.windows(2) {
            let gap = dot(w[1].position, normal) - dot(w[0].position, normal);
            if gap < 0.01 {
                return Err(format!(
                    "{} and {} are at the same position ({:.3} mm along the normal): a duplicate slice",
                    w[0].source,
                    w[1].source,
                    dot(w[0].position, normal)
                ));
            }
        }
        let mean = (depth[nz - 1] - depth[0]) / (nz - 1) as f64;
        // The smallest gap is the grid's step; a larger one is a missing slice.
        let step = depth.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
        for (k, w) in depth.windows(2).enumerate() {
            let gap = w[1] - w[0];
            if (gap - step).abs() > 0.01f64.max(0.01 * step) {
                return Err(format!(
                    "slice spacing is not constant: {} and {} are {gap:.3} mm apart, other slices {step:.3} mm (a missing slice?)",
                    slices[k].source,
                    slices[k + 1].source
                ));
            }
        }
        mean
    } else {
        return Err(format!("{}: a single slice is not a volume", slices[0].source));
    };
    let (nx, ny) = (first.columns, first.rows);
    let pixel_spacing = first.pixel_spacing;
    let mut data = Vec::with_capacity(nx * ny * nz);
    let mut integral = true;
    for s in &slices {
        let (slope, intercept) = s.rescale;
        for &v in &s.pixels {
            let x = f64::from(v) * slope + intercept;
            integral &= x.fract() == 0.0;
            data.push(x as f32);
        }
    }
    // Voxel (i, j, k): i along the row direction (columns), j along the column direction.
    let axes = [row_dir, col_dir, normal];
    let mut direction = [[0.0; 3]; 3];
    for (c, axis) in axes.iter().enumerate() {
        let ras = lps_to_ras(*axis);
        for r in 0..3 {
            direction[r][c] = ras[r];
        }
    }
    let geometry = Geometry { dims: [nx, ny, nz], spacing: [pixel_spacing[1], pixel_spacing[0], spacing_z], origin: lps_to_ras(origin_lps), direction };
    let sample = if integral { SampleType::Integer { min: f64::from(i32::MIN), max: f64::from(i32::MAX) } } else { SampleType::Float32 };
    Ok((Volume::new(geometry, data).with_sample(sample), normal))
}
