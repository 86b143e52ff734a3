//! The voxel mask of one region of an RT structure set, on its image series' grid.
//!
//! **The rasterisation rule** (it changes feature values, so it is fixed and documented, and
//! it is the rule of plastimatch and MIRP):
//! - each closed planar contour belongs to the slice its points lie on (every point within
//!   0.1 of a slice spacing of that slice's plane; a contour between slices is an error);
//! - a voxel is inside when its **centre** is inside the polygon (crossing-number test, with a
//!   ray along +i and half-open edges, so a centre on an edge is decided the same way
//!   everywhere);
//! - the contours on one slice are combined by the **even–odd** rule: a centre inside two
//!   nested contours is outside (a hole), so planning systems' holes and islands come out as
//!   drawn;
//! - POINT contours are ignored; open contours cannot enclose anything and are an error.
//!
//! A contour drawn along voxel edges (as FedRad's synthetic generator writes them) therefore
//! gives back exactly the voxels it was traced from.

use std::collections::BTreeMap;
use std::path::Path;

use dicom_dictionary_std::tags;

use super::{DicomSeries, Obj, dicom_error, floats, string_of};
use crate::{ImagingError, Volume};

/// A polygon edge in continuous (i, j) voxel coordinates of one slice.
type Edge = ([f64; 2], [f64; 2]);

/// One region of interest of a structure set, as `site-agent check` lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct RoiSummary {
    pub number: i64,
    pub name: String,
    pub frame_of_reference: String,
    pub contours: usize,
}

fn open(path: &Path) -> Result<dicom_object::DefaultDicomObject, ImagingError> {
    let obj = dicom_object::open_file(path).map_err(|e| dicom_error(path, format!("not a readable DICOM file: {e}")))?;
    match string_of(&obj, tags::MODALITY).as_deref() {
        Some("RTSTRUCT") => Ok(obj),
        other => Err(dicom_error(path, format!("not an RT structure set (Modality {other:?})"))),
    }
}

fn number_of(item: &Obj, tag: dicom_core::Tag) -> Option<i64> {
    item.get(tag).and_then(|e| e.to_int::<i64>().ok())
}

fn contours_of(obj: &Obj, number: i64) -> &[Obj] {
    obj.get(tags::ROI_CONTOUR_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.iter().find(|i| number_of(i, tags::REFERENCED_ROI_NUMBER) == Some(number)))
        .and_then(|i| i.get(tags::CONTOUR_SEQUENCE))
        .and_then(|e| e.items())
        .unwrap_or(&[])
}

/// The regions a structure set holds.
pub fn rtstruct_rois(path: &Path) -> Result<Vec<RoiSummary>, ImagingError> {
    let obj = open(path)?;
    Ok(rois(&obj))
}

fn rois(obj: &Obj) -> Vec<RoiSummary> {
    obj.get(tags::STRUCTURE_SET_ROI_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or(&[])
        .iter()
        .filter_map(|item| {
            let number = number_of(item, tags::ROI_NUMBER)?;
            Some(RoiSummary {
                number,
                name: string_of(item, tags::ROI_NAME).unwrap_or_default(),
                frame_of_reference: string_of(item, tags::REFERENCED_FRAME_OF_REFERENCE_UID).unwrap_or_default(),
                contours: contours_of(obj, number).len(),
            })
        })
        .collect()
}

/// The region named `roi` (exactly, or else the one name equal ignoring case), or an error
/// that lists the names there are.
pub(super) fn choose<'a, T>(path: &Path, what: &str, roi: &str, items: &'a [T], name: impl Fn(&T) -> &str) -> Result<&'a T, ImagingError> {
    if let Some(r) = items.iter().find(|r| name(r) == roi) {
        return Ok(r);
    }
    let folded: Vec<&T> = items.iter().filter(|r| name(r).eq_ignore_ascii_case(roi)).collect();
    match folded.as_slice() {
        [one] => Ok(one),
        [] => {
            let names: Vec<&str> = items.iter().map(&name).collect();
            Err(dicom_error(path, format!("no {what} named {roi:?}; the file holds {names:?} (map the site's name to the study's in the manifest)")))
        }
        _ => Err(dicom_error(path, format!("several {what}s are named {roi:?} ignoring case; name one exactly"))),
    }
}

/// Rasterises region `roi` of the structure set at `path` on `series`' grid by the rule in the
/// module documentation. The mask holds 1 inside and 0 outside.
pub fn read_rtstruct_mask(path: &Path, roi: &str, series: &DicomSeries) -> Result<Volume, ImagingError> {
    let obj = open(path)?;
    let all = rois(&obj);
    let chosen = choose(path, "ROI", roi, &all, |r| r.name.as_str())?;
    if !chosen.frame_of_reference.is_empty() && !series.frame_of_reference.is_empty() && chosen.frame_of_reference != series.frame_of_reference {
        return Err(dicom_error(
            path,
            format!(
                "ROI {:?} is drawn in frame of reference {}, the image series {} is in {}: the contours do not belong to this image",
                chosen.name, chosen.frame_of_reference, series.series_uid, series.frame_of_reference
            ),
        ));
    }
    let [nx, ny, nz] = series.volume.geometry.dims;
    // Edges per slice, in continuous (i, j) voxel coordinates.
    let mut edges: BTreeMap<usize, Vec<Edge>> = BTreeMap::new();
    let mut closed = 0;
    for (c, contour) in contours_of(&obj, chosen.number).iter().enumerate() {
        let kind = string_of(contour, tags::CONTOUR_GEOMETRIC_TYPE).unwrap_or_default();
        match kind.as_str() {
            "POINT" => continue,
            "CLOSED_PLANAR" => {}
            other => {
                return Err(dicom_error(path, format!("ROI {:?} contour {}: geometric type {other:?} encloses no area (only CLOSED_PLANAR can)", chosen.name, c + 1)));
            }
        }
        let data = floats(contour, tags::CONTOUR_DATA).unwrap_or_default();
        if data.len() < 9 || !data.len().is_multiple_of(3) {
            return Err(dicom_error(path, format!("ROI {:?} contour {}: {} coordinates, not a polygon of at least 3 points", chosen.name, c + 1, data.len())));
        }
        let points: Vec<[f64; 3]> = data.chunks_exact(3).map(|p| series.lps_to_index([p[0], p[1], p[2]])).collect();
        let k_mean = points.iter().map(|p| p[2]).sum::<f64>() / points.len() as f64;
        let k = k_mean.round();
        if let Some(off) = points.iter().map(|p| (p[2] - k).abs()).find(|d| *d > 0.1) {
            return Err(dicom_error(
                path,
                format!("ROI {:?} contour {}: its points do not lie on one slice of the image (off by {off:.2} of a slice spacing)", chosen.name, c + 1),
            ));
        }
        if k < 0.0 || k >= nz as f64 {
            return Err(dicom_error(path, format!("ROI {:?} contour {}: on slice {k} of an image of {nz} slices", chosen.name, c + 1)));
        }
        let e = edges.entry(k as usize).or_default();
        for (a, b) in points.iter().zip(points.iter().cycle().skip(1)) {
            e.push(([a[0], a[1]], [b[0], b[1]]));
        }
        closed += 1;
    }
    if closed == 0 {
        return Err(dicom_error(path, format!("ROI {:?} has no closed contour", chosen.name)));
    }
    let mut data = vec![0.0f32; nx * ny * nz];
    let mut crossings = Vec::new();
    for (&k, slice_edges) in &edges {
        for j in 0..ny {
            let y = j as f64;
            crossings.clear();
            for (a, b) in slice_edges {
                // Half-open in y: an edge counts when exactly one end is above the line.
                if (a[1] > y) != (b[1] > y) {
                    crossings.push(a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]));
                }
            }
            crossings.sort_by(f64::total_cmp);
            // Even–odd: centres between crossing 2m and 2m + 1 are inside.
            for pair in crossings.chunks_exact(2) {
                let first = pair[0].ceil().max(0.0) as usize;
                let end = (pair[1].ceil().max(0.0) as usize).min(nx);
                let row = nx * (j + ny * k);
                data[row + first.min(end)..row + end].fill(1.0);
            }
        }
    }
    Ok(Volume::new(series.volume.geometry.clone(), data).with_sample(crate::SampleType::Integer { min: 0.0, max: 255.0 }))
}
