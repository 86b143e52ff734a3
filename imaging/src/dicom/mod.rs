//! DICOM in: the image series a scanner exports, and the tumour contours a planning system
//! exports on it (an RT structure set) or a segmentation object (SEG).
//!
//! Every reader names the file and the reason when it refuses, and nothing is guessed: a
//! folder of several series, a gap in a stack, a structure set drawn on another frame of
//! reference or a transfer syntax without a decoder here are errors, because each silent
//! choice would change the features of a multicentre study differently at each hospital.

mod rtstruct;
mod seg;
mod series;
pub mod write;

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

pub use rtstruct::{RoiSummary, read_rtstruct_mask, rtstruct_rois};
pub use seg::{SegmentSummary, read_seg_mask, seg_segments};
pub use series::{DicomSeries, read_series};

use crate::{ImagingError, Volume};

type Obj = InMemDicomObject;

fn dicom_error(path: &Path, detail: String) -> ImagingError {
    ImagingError::Dicom { path: path.display().to_string(), detail }
}

fn string_of(obj: &Obj, tag: dicom_core::Tag) -> Option<String> {
    obj.get(tag).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string())
}

fn floats(obj: &Obj, tag: dicom_core::Tag) -> Option<Vec<f64>> {
    obj.get(tag).and_then(|e| e.to_multi_float64().ok())
}

/// DICOM's LPS patient frame to the RAS frame volumes use here (and back: it is its own inverse).
pub fn lps_to_ras(p: [f64; 3]) -> [f64; 3] {
    [-p[0], -p[1], p[2]]
}

/// What a mask file is, by its Modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskObject {
    RtStruct,
    Seg,
}

/// Tells an RTSTRUCT from a SEG (or neither) without reading its bulk data.
pub fn mask_object(path: &Path) -> Result<MaskObject, ImagingError> {
    let obj =
        dicom_object::OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path).map_err(|e| dicom_error(path, format!("not a readable DICOM file: {e}")))?;
    match string_of(&obj, tags::MODALITY).as_deref() {
        Some("RTSTRUCT") => Ok(MaskObject::RtStruct),
        Some("SEG") => Ok(MaskObject::Seg),
        other => Err(dicom_error(path, format!("a mask must be an RT structure set (RTSTRUCT) or a segmentation (SEG); this file's Modality is {other:?}"))),
    }
}

/// The mask of region `roi` from an RTSTRUCT or SEG file, on the series' grid. `threshold`
/// applies to fractional segmentations only.
pub fn read_mask(path: &Path, roi: &str, series: &DicomSeries, threshold: f64) -> Result<Volume, ImagingError> {
    match mask_object(path)? {
        MaskObject::RtStruct => read_rtstruct_mask(path, roi, series),
        MaskObject::Seg => read_seg_mask(path, roi, series, threshold),
    }
}
