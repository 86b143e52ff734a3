#!/usr/bin/env python3
"""Write the DICOM SEG fixtures of imaging/tests/data/ibsi-ct/seg/: the IBSI CT phantom's GTV-1
(from the IBSI's NIfTI mask) as a BINARY and a FRACTIONAL segmentation of the phantom's DICOM
series, by highdicom (an independent SEG writer), so the Rust reader is checked against files it
did not write. Python is needed only to remake them:

    pip install highdicom nibabel && python3 scripts/make_seg_fixture.py
"""
import os, glob
import numpy as np
import nibabel as nib
import pydicom
import highdicom as hd
from highdicom.sr.coding import CodedConcept

root = os.path.join(os.path.dirname(__file__), "..", "imaging", "tests", "data", "ibsi-ct")
series = [pydicom.dcmread(p) for p in glob.glob(os.path.join(root, "dicom", "image", "*.dcm"))]
normal = np.cross(np.array(series[0].ImageOrientationPatient[:3], float), np.array(series[0].ImageOrientationPatient[3:], float))
series.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, float), normal)))

# The NIfTI mask on the DICOM grid: NIfTI voxel (i, j, k) at RAS affine · (i, j, k); DICOM
# pixel (row r, column c) of slice s at IPP_s + c·Δc·row_dir + r·Δr·col_dir (LPS).
img = nib.load(os.path.join(root, "nifti", "mask", "mask.nii.gz"))
mask = np.asarray(img.dataobj) > 0.5
inv = np.linalg.inv(img.affine)
rows, cols = series[0].Rows, series[0].Columns
row_dir = np.array(series[0].ImageOrientationPatient[:3], float)
col_dir = np.array(series[0].ImageOrientationPatient[3:], float)
dr, dc = (float(x) for x in series[0].PixelSpacing)
pixels = np.zeros((len(series), rows, cols), dtype=bool)
rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
for s, d in enumerate(series):
    ipp = np.array(d.ImagePositionPatient, float)
    lps = ipp[None, None, :] + cc[..., None] * dc * row_dir + rr[..., None] * dr * col_dir
    ras = lps * np.array([-1, -1, 1])
    ijk = np.rint(ras @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    pixels[s] = mask[ijk[..., 0], ijk[..., 1], ijk[..., 2]]

description = hd.seg.SegmentDescription(
    segment_number=1,
    segment_label="GTV-1",
    segmented_property_category=CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
    segmented_property_type=CodedConcept("108369006", "SCT", "Neoplasm"),
    algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
)
os.makedirs(os.path.join(root, "seg"), exist_ok=True)
for kind, array in [("BINARY", pixels.astype(np.uint8)), ("FRACTIONAL", pixels.astype(np.float32) * 0.8)]:
    seg = hd.seg.Segmentation(
        source_images=series,
        pixel_array=array,
        segmentation_type=hd.seg.SegmentationTypeValues[kind],
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="FedRad fixture",
        manufacturer_model_name="highdicom " + hd.__version__,
        software_versions="make_seg_fixture.py",
        device_serial_number="0",
        max_fractional_value=255,
        omit_empty_frames=True,
    )
    path = os.path.join(root, "seg", f"gtv1_{kind.lower()}.dcm")
    seg.save_as(path)
    print(kind, int(pixels.sum()), "voxels ->", os.path.normpath(path), os.path.getsize(path), "bytes")
