//! Writing what a scanner and a planning system export: an image series (one file per slice,
//! Explicit VR Little Endian) and an RT structure set of closed planar contours drawn on it.
//!
//! FedRad's synthetic generator uses these so that a simulated hospital holds the same kind of
//! files a real one does, and the tests use them to build series with gaps, duplicates and
//! shuffled instance numbers.
//!
//! Contours are traced along voxel edges (each loop separates ROI voxels from the others), so
//! rasterising them by the centre-in-polygon, even–odd rule of [`super::read_rtstruct_mask`]
//! gives back exactly the voxels they were traced from, holes included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use super::lps_to_ras;
use crate::{ImagingError, Volume};

pub const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
pub const ENHANCED_MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4.1";
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const RT_STRUCTURE_SET_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.3";

/// A deterministic UID (the 2.25 root: a 128-bit number) derived from `text`, so that a
/// generated cohort is the same files every time.
pub fn uid_from(text: &str) -> String {
    // Two FNV-1a 64-bit hashes with different offsets make 128 bits.
    let hash = |offset: u64| text.bytes().fold(offset, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let n = (u128::from(hash(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(hash(0x8422_2325_cbf2_9ce4));
    format!("2.25.{n}")
}

/// Who and what a series is: the identifiers a scanner writes into every file.
#[derive(Debug, Clone)]
pub struct SeriesIdentity {
    pub patient_id: String,
    pub study_uid: String,
    pub series_uid: String,
    pub frame_of_reference_uid: String,
    /// "MR" or "CT".
    pub modality: String,
    pub series_description: String,
    pub series_number: i32,
}

impl SeriesIdentity {
    /// Identifiers derived from a patient id and a series name (deterministic).
    pub fn derived(patient_id: &str, series: &str, modality: &str) -> Self {
        SeriesIdentity {
            patient_id: patient_id.to_string(),
            study_uid: uid_from(&format!("{patient_id}/study")),
            series_uid: uid_from(&format!("{patient_id}/{series}/series")),
            frame_of_reference_uid: uid_from(&format!("{patient_id}/{series}/frame")),
            modality: modality.to_string(),
            series_description: series.to_string(),
            series_number: 1,
        }
    }
}

fn el<T: Into<PrimitiveValue>>(tag: dicom_core::Tag, vr: VR, value: T) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, value.into())
}

/// A decimal string value (DS holds at most 16 characters).
fn ds(x: f64) -> String {
    for digits in (0..=10).rev() {
        let s = format!("{x:.digits$}");
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
        if s.len() <= 16 {
            return if s == "-0" { "0".into() } else { s };
        }
    }
    format!("{x:.6e}")
}

fn ds_multi(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|v| ds(*v)).collect())
}

fn sequence(tag: dicom_core::Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn write(obj: InMemDicomObject, path: &Path) -> Result<(), ImagingError> {
    let err = |d: String| ImagingError::Dicom { path: path.display().to_string(), detail: d };
    let file = obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)).map_err(|e| err(format!("file meta: {e}")))?;
    file.write_to_file(path).map_err(|e| err(format!("cannot write: {e}")))
}

/// The LPS directions of the volume's i, j, k axes and its origin.
fn lps_axes(v: &Volume) -> ([[f64; 3]; 3], [f64; 3]) {
    let g = &v.geometry;
    let axis = |c: usize| lps_to_ras([g.direction[0][c], g.direction[1][c], g.direction[2][c]]);
    ([axis(0), axis(1), axis(2)], lps_to_ras(g.origin))
}

/// How stored integers map to values: integral values that fit int16 (or uint16) are stored
/// as they are; anything else through a Rescale Slope/Intercept over uint16 (quantised, as a
/// scanner's export is).
fn storage(data: &[f32]) -> (bool, f64, f64) {
    let (lo, hi) = data.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(f64::from(v)), b.max(f64::from(v))));
    let integral = data.iter().all(|v| v.fract() == 0.0);
    if integral && lo >= f64::from(i16::MIN) && hi <= f64::from(i16::MAX) {
        (true, 1.0, 0.0)
    } else if integral && lo >= 0.0 && hi <= f64::from(u16::MAX) {
        (false, 1.0, 0.0)
    } else {
        let slope = if hi > lo { (hi - lo) / f64::from(u16::MAX) } else { 1.0 };
        (false, slope, lo)
    }
}

/// The stored 16-bit values of `values` under [`storage`]'s choice.
fn stored(values: &[f32], signed: bool, slope: f64, intercept: f64) -> PrimitiveValue {
    if signed {
        PrimitiveValue::I16(values.iter().map(|&v| v as i16).collect())
    } else {
        PrimitiveValue::U16(values.iter().map(|&v| ((f64::from(v) - intercept) / slope).round().clamp(0.0, 65535.0) as u16).collect())
    }
}

/// What every image object here carries: its identity (SOP class and instance, study, series,
/// frame of reference, patient) and a 16-bit greyscale pixel module of `columns × rows`.
fn image_object(id: &SeriesIdentity, sop_class: &str, sop_instance: &str, instance: usize, [columns, rows]: [usize; 2], signed: bool) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(el(tags::SOP_CLASS_UID, VR::UI, sop_class));
    obj.put(el(tags::SOP_INSTANCE_UID, VR::UI, sop_instance));
    obj.put(el(tags::STUDY_INSTANCE_UID, VR::UI, id.study_uid.as_str()));
    obj.put(el(tags::SERIES_INSTANCE_UID, VR::UI, id.series_uid.as_str()));
    obj.put(el(tags::FRAME_OF_REFERENCE_UID, VR::UI, id.frame_of_reference_uid.as_str()));
    obj.put(el(tags::MODALITY, VR::CS, id.modality.as_str()));
    obj.put(el(tags::PATIENT_ID, VR::LO, id.patient_id.as_str()));
    obj.put(el(tags::PATIENT_NAME, VR::PN, id.patient_id.as_str()));
    obj.put(el(tags::SERIES_DESCRIPTION, VR::LO, id.series_description.as_str()));
    obj.put(el(tags::SERIES_NUMBER, VR::IS, id.series_number.to_string()));
    obj.put(el(tags::INSTANCE_NUMBER, VR::IS, instance.to_string()));
    obj.put(el(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)));
    obj.put(el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"));
    obj.put(el(tags::ROWS, VR::US, PrimitiveValue::from(rows as u16)));
    obj.put(el(tags::COLUMNS, VR::US, PrimitiveValue::from(columns as u16)));
    obj.put(el(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)));
    obj.put(el(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16)));
    obj.put(el(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16)));
    obj.put(el(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(u16::from(signed))));
    obj
}

/// Writes `volume` as one file per slice into `dir` (created), named `IM{k:04}.dcm`, and
/// returns the paths. Slice k is at the volume's k-th plane; instance numbers follow k.
pub fn write_series(dir: &Path, volume: &Volume, id: &SeriesIdentity) -> Result<Vec<PathBuf>, ImagingError> {
    std::fs::create_dir_all(dir).map_err(|source| ImagingError::Io { path: dir.display().to_string(), source })?;
    let [nx, ny, nz] = volume.geometry.dims;
    let spacing = volume.geometry.spacing;
    let ([row_dir, col_dir, slice_dir], origin) = lps_axes(volume);
    let (signed, slope, intercept) = storage(&volume.data);
    let sop_class = if id.modality == "CT" { CT_IMAGE_STORAGE } else { MR_IMAGE_STORAGE };
    let mut paths = Vec::with_capacity(nz);
    for k in 0..nz {
        let position: Vec<f64> = (0..3).map(|r| origin[r] + slice_dir[r] * spacing[2] * k as f64).collect();
        let mut obj = image_object(id, sop_class, &uid_from(&format!("{}/{k}", id.series_uid)), k + 1, [nx, ny], signed);
        obj.put(el(tags::IMAGE_POSITION_PATIENT, VR::DS, ds_multi(&position)));
        obj.put(el(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds_multi(&[row_dir, col_dir].concat())));
        obj.put(el(tags::PIXEL_SPACING, VR::DS, ds_multi(&[spacing[1], spacing[0]])));
        obj.put(el(tags::SLICE_THICKNESS, VR::DS, ds(spacing[2])));
        obj.put(el(tags::RESCALE_INTERCEPT, VR::DS, ds(intercept)));
        obj.put(el(tags::RESCALE_SLOPE, VR::DS, ds(slope)));
        obj.put(el(tags::PIXEL_DATA, VR::OW, stored(&volume.data[k * nx * ny..(k + 1) * nx * ny], signed, slope, intercept)));
        let path = dir.join(format!("IM{k:04}.dcm"));
        write(obj, &path)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Writes `volume` as one enhanced MR image object (a multi-frame file) at `path`, as newer
/// scanners export: orientation and pixel spacing in the shared functional groups, each
/// frame's position and rescale in its own. Frames are stored in `frame_order` (slice indices,
/// each once): scanners store frames in acquisition order, which need not be spatial, so a
/// reader must order them by position as it does a classic series' files.
pub fn write_enhanced_series(path: &Path, volume: &Volume, id: &SeriesIdentity, frame_order: &[usize]) -> Result<(), ImagingError> {
    let [nx, ny, nz] = volume.geometry.dims;
    let mut sorted = frame_order.to_vec();
    sorted.sort_unstable();
    if sorted != (0..nz).collect::<Vec<_>>() {
        return Err(ImagingError::Dicom { path: path.display().to_string(), detail: format!("frame order {frame_order:?} is not a permutation of the {nz} slices") });
    }
    let spacing = volume.geometry.spacing;
    let ([row_dir, col_dir, slice_dir], origin) = lps_axes(volume);
    let (signed, _, _) = storage(&volume.data);
    let mut obj = image_object(id, ENHANCED_MR_IMAGE_STORAGE, &uid_from(&format!("{}/enhanced", id.series_uid)), 1, [nx, ny], signed);
    obj.put(el(tags::NUMBER_OF_FRAMES, VR::IS, nz.to_string()));
    let item = |tag, value: DataElement<InMemDicomObject>| {
        let mut inner = InMemDicomObject::new_empty();
        inner.put(value);
        sequence(tag, vec![inner])
    };
    let mut shared = InMemDicomObject::new_empty();
    shared.put(item(tags::PLANE_ORIENTATION_SEQUENCE, el(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds_multi(&[row_dir, col_dir].concat()))));
    let mut measures = InMemDicomObject::new_empty();
    measures.put(el(tags::PIXEL_SPACING, VR::DS, ds_multi(&[spacing[1], spacing[0]])));
    measures.put(el(tags::SLICE_THICKNESS, VR::DS, ds(spacing[2])));
    shared.put(sequence(tags::PIXEL_MEASURES_SEQUENCE, vec![measures]));
    obj.put(sequence(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]));
    let mut frames = Vec::with_capacity(nz);
    let (mut signed_pixels, mut unsigned_pixels) = (Vec::new(), Vec::new());
    for &k in frame_order {
        let position: Vec<f64> = (0..3).map(|r| origin[r] + slice_dir[r] * spacing[2] * k as f64).collect();
        let mut groups = InMemDicomObject::new_empty();
        groups.put(item(tags::PLANE_POSITION_SEQUENCE, el(tags::IMAGE_POSITION_PATIENT, VR::DS, ds_multi(&position))));
        // Each frame gets its own rescale when values go through one (as scanners that scale
        // per slice do), so a reader must apply the frame's, not the first's.
        let plane = &volume.data[k * nx * ny..(k + 1) * nx * ny];
        let (slope, intercept) = match storage(plane) {
            _ if signed => (1.0, 0.0),
            (true, _, _) => (1.0, plane.iter().fold(f64::INFINITY, |a, &v| a.min(f64::from(v)))),
            (false, slope, intercept) => (slope, intercept),
        };
        let mut transform = InMemDicomObject::new_empty();
        transform.put(el(tags::RESCALE_INTERCEPT, VR::DS, ds(intercept)));
        transform.put(el(tags::RESCALE_SLOPE, VR::DS, ds(slope)));
        transform.put(el(tags::RESCALE_TYPE, VR::LO, "US"));
        groups.put(sequence(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, vec![transform]));
        groups.put(item(tags::FRAME_CONTENT_SEQUENCE, el(tags::IN_STACK_POSITION_NUMBER, VR::UL, PrimitiveValue::from((k + 1) as u32))));
        frames.push(groups);
        match stored(plane, signed, slope, intercept) {
            PrimitiveValue::I16(v) => signed_pixels.extend_from_slice(&v),
            PrimitiveValue::U16(v) => unsigned_pixels.extend_from_slice(&v),
            _ => unreachable!("stored() makes 16-bit values"),
        }
    }
    obj.put(sequence(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frames));
    let pixels = if signed { PrimitiveValue::I16(signed_pixels.into()) } else { PrimitiveValue::U16(unsigned_pixels.into()) };
    obj.put(el(tags::PIXEL_DATA, VR::OW, pixels));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ImagingError::Io { path: parent.display().to_string(), source })?;
    }
    write(obj, path)
}

/// The closed loops (in voxel index coordinates of one slice; corners at half-integers) that
/// bound the set voxels of a 2D mask `nx` × `ny`: the edges between a set voxel and an unset
/// one, linked end to end. Any linking works for the even–odd rule, which counts edges.
pub fn trace_loops(mask: &[bool], nx: usize, ny: usize) -> Vec<Vec<[f64; 2]>> {
    let on = |i: isize, j: isize| i >= 0 && j >= 0 && (i as usize) < nx && (j as usize) < ny && mask[i as usize + nx * j as usize];
    // Directed edges on the corner lattice (corner (a, b) is at (a − ½, b − ½)), ROI on the left.
    let mut next: BTreeMap<(isize, isize), Vec<(isize, isize)>> = BTreeMap::new();
    for j in 0..ny as isize {
        for i in 0..nx as isize {
            if !on(i, j) {
                continue;
            }
            if !on(i, j - 1) {
                next.entry((i + 1, j)).or_default().push((i, j));
            }
            if !on(i, j + 1) {
                next.entry((i, j + 1)).or_default().push((i + 1, j + 1));
            }
            if !on(i - 1, j) {
                next.entry((i, j)).or_default().push((i, j + 1));
            }
            if !on(i + 1, j) {
                next.entry((i + 1, j + 1)).or_default().push((i + 1, j));
            }
        }
    }
    let mut loops = Vec::new();
    while let Some((&start, _)) = next.iter().find(|(_, v)| !v.is_empty()) {
        let mut corners = vec![start];
        let mut at = start;
        loop {
            let outs = next.get_mut(&at).expect("every corner on a boundary has an outgoing edge");
            let to = outs.pop().expect("edges balance at every corner");
            if to == start {
                break;
            }
            corners.push(to);
            at = to;
        }
        // Drop corners where the loop goes straight on.
        let n = corners.len();
        let kept: Vec<[f64; 2]> = (0..n)
            .filter(|&c| {
                let (p, q, r) = (corners[(c + n - 1) % n], corners[c], corners[(c + 1) % n]);
                (q.0 - p.0) * (r.1 - q.1) != (q.1 - p.1) * (r.0 - q.0)
            })
            .map(|c| [corners[c].0 as f64 - 0.5, corners[c].1 as f64 - 0.5])
            .collect();
        loops.push(kept);
    }
    loops
}

/// Writes an RT structure set at `path` with one ROI per `(name, mask)` (masks on `image`'s
/// grid, voxels > 0.5 inside), drawn on the series `id`.
pub fn write_rtstruct(path: &Path, image: &Volume, id: &SeriesIdentity, rois: &[(&str, &Volume)]) -> Result<(), ImagingError> {
    let [nx, ny, nz] = image.geometry.dims;
    let spacing = image.geometry.spacing;
    let ([row_dir, col_dir, slice_dir], origin) = lps_axes(image);
    let to_lps =
        |i: f64, j: f64, k: f64| -> [f64; 3] { [0, 1, 2].map(|r| origin[r] + row_dir[r] * spacing[0] * i + col_dir[r] * spacing[1] * j + slice_dir[r] * spacing[2] * k) };
    let mut obj = InMemDicomObject::new_empty();
    obj.put(el(tags::SOP_CLASS_UID, VR::UI, RT_STRUCTURE_SET_STORAGE));
    obj.put(el(tags::SOP_INSTANCE_UID, VR::UI, uid_from(&format!("{}/rtstruct", id.series_uid)).as_str()));
    obj.put(el(tags::STUDY_INSTANCE_UID, VR::UI, id.study_uid.as_str()));
    obj.put(el(tags::SERIES_INSTANCE_UID, VR::UI, uid_from(&format!("{}/rtstruct-series", id.series_uid)).as_str()));
    obj.put(el(tags::MODALITY, VR::CS, "RTSTRUCT"));
    obj.put(el(tags::PATIENT_ID, VR::LO, id.patient_id.as_str()));
    obj.put(el(tags::PATIENT_NAME, VR::PN, id.patient_id.as_str()));
    obj.put(el(tags::STRUCTURE_SET_LABEL, VR::SH, "GTV"));
    let mut series_ref = InMemDicomObject::new_empty();
    series_ref.put(el(tags::SERIES_INSTANCE_UID, VR::UI, id.series_uid.as_str()));
    let mut study_ref = InMemDicomObject::new_empty();
    study_ref.put(el(tags::REFERENCED_SOP_CLASS_UID, VR::UI, "1.2.840.10008.3.1.2.3.1"));
    study_ref.put(el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, id.study_uid.as_str()));
    study_ref.put(sequence(tags::RT_REFERENCED_SERIES_SEQUENCE, vec![series_ref]));
    let mut frame = InMemDicomObject::new_empty();
    frame.put(el(tags::FRAME_OF_REFERENCE_UID, VR::UI, id.frame_of_reference_uid.as_str()));
    frame.put(sequence(tags::RT_REFERENCED_STUDY_SEQUENCE, vec![study_ref]));
    obj.put(sequence(tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE, vec![frame]));

    let (mut set_rois, mut contours, mut observations) = (Vec::new(), Vec::new(), Vec::new());
    for (r, (name, mask)) in rois.iter().enumerate() {
        if mask.geometry.dims != image.geometry.dims {
            return Err(ImagingError::Dicom { path: path.display().to_string(), detail: format!("mask {name:?} is not on the image grid") });
        }
        let number = (r + 1) as i32;
        let mut item = InMemDicomObject::new_empty();
        item.put(el(tags::ROI_NUMBER, VR::IS, number.to_string()));
        item.put(el(tags::REFERENCED_FRAME_OF_REFERENCE_UID, VR::UI, id.frame_of_reference_uid.as_str()));
        item.put(el(tags::ROI_NAME, VR::LO, *name));
        item.put(el(tags::ROI_GENERATION_ALGORITHM, VR::CS, "MANUAL"));
        set_rois.push(item);
        let mut slices = Vec::new();
        for k in 0..nz {
            let plane: Vec<bool> = mask.data[k * nx * ny..(k + 1) * nx * ny].iter().map(|v| *v > 0.5).collect();
            for lp in trace_loops(&plane, nx, ny) {
                let points: Vec<f64> = lp.iter().flat_map(|p| to_lps(p[0], p[1], k as f64)).collect();
                let mut c = InMemDicomObject::new_empty();
                c.put(el(tags::CONTOUR_GEOMETRIC_TYPE, VR::CS, "CLOSED_PLANAR"));
                c.put(el(tags::NUMBER_OF_CONTOUR_POINTS, VR::IS, lp.len().to_string()));
                c.put(el(tags::CONTOUR_DATA, VR::DS, ds_multi(&points)));
                slices.push(c);
            }
        }
        let mut roi_contour = InMemDicomObject::new_empty();
        roi_contour.put(el(tags::REFERENCED_ROI_NUMBER, VR::IS, number.to_string()));
        roi_contour.put(el(tags::ROI_DISPLAY_COLOR, VR::IS, PrimitiveValue::Strs(["255", "0", "0"].iter().map(|s| s.to_string()).collect())));
        roi_contour.put(sequence(tags::CONTOUR_SEQUENCE, slices));
        contours.push(roi_contour);
        let mut obs = InMemDicomObject::new_empty();
        obs.put(el(tags::OBSERVATION_NUMBER, VR::IS, number.to_string()));
        obs.put(el(tags::REFERENCED_ROI_NUMBER, VR::IS, number.to_string()));
        obs.put(el(tags::RTROI_INTERPRETED_TYPE, VR::CS, "GTV"));
        obs.put(el(tags::ROI_INTERPRETER, VR::PN, ""));
        observations.push(obs);
    }
    obj.put(sequence(tags::STRUCTURE_SET_ROI_SEQUENCE, set_rois));
    obj.put(sequence(tags::ROI_CONTOUR_SEQUENCE, contours));
    obj.put(sequence(tags::RTROI_OBSERVATIONS_SEQUENCE, observations));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ImagingError::Io { path: parent.display().to_string(), source })?;
    }
    write(obj, path)
}
