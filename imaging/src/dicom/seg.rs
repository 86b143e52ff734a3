//! The voxel mask of one segment of a DICOM Segmentation (SEG), on its image series' grid.
//!
//! A SEG stores each segment as frames with their own ImagePositionPatient (per-frame
//! functional groups), often only the frames where the segment is present. Each frame is
//! placed on the series slice at its position; the frame grid must be the series' in-plane
//! grid (same orientation, pixel spacing, size and in-plane origin). A SEG drawn on another
//! grid would need resampling, which changes the mask, so it is refused with the reason rather
//! than resampled silently. BINARY segments are inside where the bit is set; FRACTIONAL ones
//! where value / MaximumFractionalValue ≥ `threshold` (the site's choice, 0.5 by default).

use std::path::Path;

use dicom_dictionary_std::tags;

use super::rtstruct::choose;
use super::series::{cross, dot, first_item, functional, stored_values};
use super::{DicomSeries, dicom_error, floats, string_of};
use crate::{ImagingError, Volume};

/// One segment of a SEG, as `site-agent check` lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSummary {
    pub number: i64,
    pub label: String,
    pub frames: usize,
}

fn open(path: &Path) -> Result<dicom_object::DefaultDicomObject, ImagingError> {
    let obj = dicom_object::open_file(path).map_err(|e| dicom_error(path, format!("not a readable DICOM file: {e}")))?;
    match string_of(&obj, tags::MODALITY).as_deref() {
        Some("SEG") => Ok(obj),
        other => Err(dicom_error(path, format!("not a segmentation (Modality {other:?})"))),
    }
}

fn frame_segments(obj: &dicom_object::InMemDicomObject) -> Vec<Option<i64>> {
    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or(&[])
        .iter()
        .map(|f| functional(Some(f), shared, tags::SEGMENT_IDENTIFICATION_SEQUENCE).and_then(|s| s.get(tags::REFERENCED_SEGMENT_NUMBER)?.to_int::<i64>().ok()))
        .collect()
}

/// The segments a SEG holds.
pub fn seg_segments(path: &Path) -> Result<Vec<SegmentSummary>, ImagingError> {
    let obj = open(path)?;
    Ok(segments(&obj))
}

fn segments(obj: &dicom_object::InMemDicomObject) -> Vec<SegmentSummary> {
    let per_frame = frame_segments(obj);
    obj.get(tags::SEGMENT_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or(&[])
        .iter()
        .filter_map(|item| {
            let number = item.get(tags::SEGMENT_NUMBER)?.to_int::<i64>().ok()?;
            Some(SegmentSummary {
                number,
                label: string_of(item, tags::SEGMENT_LABEL).unwrap_or_default(),
                frames: per_frame.iter().filter(|s| **s == Some(number)).count(),
            })
        })
        .collect()
}

/// The frames' stored values: 1-bit BINARY frames are unpacked here as one bit stream over
/// all frames (frames need not start on a byte), other depths through the pixel decoder.
fn frame_values(obj: &dicom_object::DefaultDicomObject, path: &Path, pixels: usize, frames: usize) -> Result<Vec<f32>, ImagingError> {
    let bits = obj.get(tags::BITS_ALLOCATED).and_then(|e| e.to_int::<u16>().ok()).unwrap_or(8);
    if bits != 1 {
        return stored_values(obj, path).map_err(|d| dicom_error(path, d));
    }
    let bytes = obj.get(tags::PIXEL_DATA).and_then(|e| e.to_bytes().ok()).ok_or_else(|| dicom_error(path, "no readable pixel data".into()))?;
    let n = pixels * frames;
    if bytes.len() * 8 < n {
        return Err(dicom_error(path, format!("{} bytes of 1-bit pixel data for {frames} frame(s) of {pixels} pixels", bytes.len())));
    }
    Ok((0..n).map(|b| f32::from((bytes[b / 8] >> (b % 8)) & 1)).collect())
}

/// Places segment `label` of the SEG at `path` on `series`' grid (see the module documentation).
pub fn read_seg_mask(path: &Path, label: &str, series: &DicomSeries, threshold: f64) -> Result<Volume, ImagingError> {
    let obj = open(path)?;
    let err = |d: String| dicom_error(path, d);
    let all = segments(&obj);
    let chosen = choose(path, "segment", label, &all, |s| s.label.as_str())?;
    let frame_of_reference = string_of(&obj, tags::FRAME_OF_REFERENCE_UID).unwrap_or_default();
    if !frame_of_reference.is_empty() && !series.frame_of_reference.is_empty() && frame_of_reference != series.frame_of_reference {
        return Err(err(format!(
            "the segmentation is in frame of reference {frame_of_reference}, the image series {} in {}",
            series.series_uid, series.frame_of_reference
        )));
    }
    let kind = string_of(&obj, tags::SEGMENTATION_TYPE).unwrap_or_default();
    let max_fraction = match kind.as_str() {
        "BINARY" => None,
        "FRACTIONAL" => Some(obj.get(tags::MAXIMUM_FRACTIONAL_VALUE).and_then(|e| e.to_float64().ok()).filter(|m| *m > 0.0).unwrap_or(255.0)),
        other => return Err(err(format!("SegmentationType {other:?}: expected BINARY or FRACTIONAL"))),
    };
    let g = &series.volume.geometry;
    let [nx, ny, nz] = g.dims;
    let rows = obj.get(tags::ROWS).and_then(|e| e.to_int::<usize>().ok()).unwrap_or(0);
    let columns = obj.get(tags::COLUMNS).and_then(|e| e.to_int::<usize>().ok()).unwrap_or(0);
    if (columns, rows) != (nx, ny) {
        return Err(err(format!(
            "frames of {columns} × {rows} pixels on an image of {nx} × {ny}: a SEG on another grid would need resampling, which FedRad does not do"
        )));
    }
    let per_frame_segments = frame_segments(&obj);
    let frames = per_frame_segments.len();
    let values = frame_values(&obj, path, nx * ny, frames)?;
    let shared = first_item(&obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items()).unwrap_or(&[]);
    let normal = series.normal_lps;
    let mut data = vec![0.0f32; nx * ny * nz];
    for (f, groups) in per_frame.iter().enumerate() {
        if per_frame_segments[f] != Some(chosen.number) {
            continue;
        }
        let at = |d: String| err(format!("frame {}: {d}", f + 1));
        let position = functional(Some(groups), shared, tags::PLANE_POSITION_SEQUENCE)
            .and_then(|p| floats(p, tags::IMAGE_POSITION_PATIENT))
            .filter(|p| p.len() == 3)
            .ok_or_else(|| at("no ImagePositionPatient".into()))?;
        let orientation = functional(Some(groups), shared, tags::PLANE_ORIENTATION_SEQUENCE)
            .and_then(|p| floats(p, tags::IMAGE_ORIENTATION_PATIENT))
            .filter(|o| o.len() == 6)
            .ok_or_else(|| at("no ImageOrientationPatient".into()))?;
        let spacing = functional(Some(groups), shared, tags::PIXEL_MEASURES_SEQUENCE)
            .and_then(|p| floats(p, tags::PIXEL_SPACING))
            .filter(|s| s.len() == 2)
            .ok_or_else(|| at("no PixelSpacing".into()))?;
        let frame_normal = cross([orientation[0], orientation[1], orientation[2]], [orientation[3], orientation[4], orientation[5]]);
        if dot(frame_normal, normal) < 1.0 - 1e-4 || (spacing[1] - g.spacing[0]).abs() > 1e-3 || (spacing[0] - g.spacing[1]).abs() > 1e-3 {
            return Err(at(format!("orientation {orientation:?} or pixel spacing {spacing:?} differ from the image's: a SEG on another grid would need resampling")));
        }
        let index = series.lps_to_index([position[0], position[1], position[2]]);
        let k = index[2].round();
        if index[0].abs() > 0.01 || index[1].abs() > 0.01 || (index[2] - k).abs() > 0.1 || k < 0.0 || k >= nz as f64 {
            return Err(at(format!("its position {position:?} is not on a slice of the image (voxel index {index:.2?})")));
        }
        let k = k as usize;
        let frame = &values[f * nx * ny..(f + 1) * nx * ny];
        for (p, &v) in frame.iter().enumerate() {
            let inside = match max_fraction {
                None => v > 0.0,
                Some(m) => f64::from(v) / m >= threshold,
            };
            if inside {
                data[p + nx * ny * k] = 1.0;
            }
        }
    }
    Ok(Volume::new(g.clone(), data).with_sample(crate::SampleType::Integer { min: 0.0, max: 255.0 }))
}
