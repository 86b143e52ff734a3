#!/usr/bin/env python3
"""Writes the resampling reference fixture: a small int16 MR-like volume and its mask, saved by
SimpleITK as NIfTI, and the features PyRadiomics 3.1 (pip install pyradiomics-bhklab) computes
on them after resampling with each interpolator, and with PyRadiomics' texture settings
(distances, symmetricalGLCM, weightingNorm, gldm_a, voxelArrayShift, force2D) and with the
LBP2D and LBP3D image types. The Rust test
radiomics/tests/pyradiomics_settings.rs reads the files and checks FedRad's values against these, so
the test needs no Python. Re-run only to regenerate. PyRadiomics' LBP3D needs scipy's
`sph_harm` (removed in scipy 1.17) and trimesh:

    python3 -m venv --system-site-packages /tmp/lbp3venv && /tmp/lbp3venv/bin/pip install "scipy<1.17" trimesh
    /tmp/lbp3venv/bin/python radiomics/scripts/make_pyradiomics_settings_fixture.py radiomics/tests/data/pyradiomics_settings
"""
import json, logging, os, sys

import numpy as np
import SimpleITK as sitk
from radiomics import featureextractor

out = sys.argv[1] if len(sys.argv) > 1 else "radiomics/tests/data/pyradiomics_settings"
os.makedirs(out, exist_ok=True)

# 40 x 36 x 10 voxels of 0.8 x 0.8 x 3 mm, an oblique-free scanner frame with a non-zero origin.
nz, ny, nx = 10, 36, 40
z, y, x = np.indices((nz, ny, nx))
rng = np.random.default_rng(20261130)
smooth = 400 + 120 * np.sin(x / 5.0) + 80 * np.cos(y / 7.0) + 30 * z
texture = rng.integers(-60, 61, size=(nz, ny, nx))
image = np.clip(smooth + texture, 0, 4000).astype(np.int16)
inside = ((x - 19.5) / 11.0) ** 2 + ((y - 17.0) / 9.0) ** 2 + ((z - 4.5) / 3.2) ** 2 <= 1.0
mask = inside.astype(np.uint8)

img = sitk.GetImageFromArray(image)
msk = sitk.GetImageFromArray(mask)
for im in (img, msk):
    im.SetSpacing((0.8, 0.8, 3.0))
    im.SetOrigin((12.5, -30.25, 4.0))
sitk.WriteImage(img, os.path.join(out, "image.nii.gz"))
sitk.WriteImage(msk, os.path.join(out, "mask.nii.gz"))
# One sagittal slice of the same ROI, for the shape2D class.
one = np.zeros_like(mask)
one[:, :, 19] = mask[:, :, 19]
one_slice = sitk.GetImageFromArray(one)
one_slice.CopyInformation(msk)
sitk.WriteImage(one_slice, os.path.join(out, "mask_one_sagittal_slice.nii.gz"))

# (name, settings, image types and mask where not Original and mask.nii.gz). PyRadiomics
# names map to FedRad columns below.
CONFIGS = [
    ("bspline_1mm", {"resampledPixelSpacing": [1, 1, 1], "interpolator": "sitkBSpline"}),
    ("linear_anisotropic", {"resampledPixelSpacing": [0.6, 0.6, 2], "interpolator": "sitkLinear"}),
    ("nearest_in_plane", {"resampledPixelSpacing": [1.6, 1.6, 0], "interpolator": "sitkNearestNeighbor", "padDistance": 2}),
    ("bspline_normalized", {"resampledPixelSpacing": [1.2, 1.2, 2.5], "interpolator": "sitkBSpline", "normalize": True, "normalizeScale": 100}),
    # Texture settings, without resampling.
    ("distances_1_2", {"distances": [1, 2]}),
    ("asymmetric_glcm_gldm_a", {"symmetricalGLCM": False, "gldm_a": 1}),
    ("weighting_euclidean_shift", {"weightingNorm": "euclidean", "voxelArrayShift": 300}),
    # force2D: texture in slices, merged over the volume (IBSI 2.5D), across z and across x.
    ("force2d_axial", {"force2D": True}),
    ("force2d_sagittal_weighted", {"force2D": True, "force2Ddimension": 2, "weightingNorm": "infinity"}),
    # The LBP2D image type (scikit-image's local binary patterns), in coronal slices.
    ("lbp2d_coronal", {"lbp2DMethod": "default", "lbp2DRadius": 1.5, "force2Ddimension": 1, "binWidth": 8}, {"imageType": ["Original", "LBP2D"]}),
    # PyRadiomics' shape2D class on a one-slice ROI (sagittal: force2Ddimension 2).
    ("shape2d_sagittal", {"force2D": True, "force2Ddimension": 2}, {"mask": "mask_one_sagittal_slice.nii.gz"}),
    # LBP3D (spherical harmonics on an icosphere) with non-default options.
    ("lbp3d_levels_3", {"binWidth": 2, "lbp3DLevels": 3, "lbp3DIcosphereRadius": 1.5}, {"imageType": ["LBP3D"]}),
]
# Feature-name prefixes of each image type.
PREFIXES = {"Original": ["original"], "LBP2D": ["lbp-2D"], "LBP3D": ["lbp-3D-m1", "lbp-3D-m2", "lbp-3D-m3", "lbp-3D-k"]}
FEATURES = {
    "firstorder": {"Mean": "Mean", "Variance": "Variance", "Minimum": "Minimum", "Maximum": "Maximum", "Median": "Median",
                   "Energy": "Energy", "TotalEnergy": "TotalEnergy", "RootMeanSquared": "RootMeanSquare", "Entropy": "Entropy"},
    "glcm": {"Contrast": "Contrast", "JointEntropy": "JointEntropy", "Correlation": "Correlation", "JointAverage": "JointAverage"},
    "glrlm": {"RunPercentage": "RunPercentage", "LongRunEmphasis": "LongRunsEmphasis"},
    "gldm": {"DependenceEntropy": "DependenceCountEntropy", "LargeDependenceEmphasis": "HighDependenceEmphasis"},
    "ngtdm": {"Coarseness": "Coarseness", "Busyness": "Busyness"},
    "shape2D": {k: k for k in ["MeshSurface", "PixelSurface", "Perimeter", "PerimeterSurfaceRatio", "Sphericity",
                               "MaximumDiameter", "MajorAxisLength", "MinorAxisLength", "Elongation"]},
    "glszm": {"SmallAreaEmphasis": "SmallZoneEmphasis", "ZonePercentage": "ZonePercentage"},
    "shape": {"VoxelVolume": "VolumeVoxelCounting", "MeshVolume": "VolumeMesh", "SurfaceArea": "SurfaceArea",
              "SurfaceVolumeRatio": "SurfaceToVolumeRatio", "Sphericity": "Sphericity", "Maximum3DDiameter": "Maximum3DDiameter",
              "MajorAxisLength": "MajorAxisLength", "MinorAxisLength": "MinorAxisLength", "LeastAxisLength": "LeastAxisLength",
              "Elongation": "Elongation", "Flatness": "Flatness"},
}
SUFFIX = {"shape2D": "", "firstorder": "", "glcm": "_3Davg", "glrlm": "_3Davg", "glszm": "_3D", "gldm": "_3D", "ngtdm": "_3D", "shape": ""}

logging.getLogger("radiomics").setLevel(logging.ERROR)
reference = {}
for name, extra, *more in CONFIGS:
    more = more[0] if more else {}
    setting = {"binWidth": 25 if not extra.get("normalize") else 5, "label": 1}
    setting.update(extra)
    types = more.get("imageType", ["Original"])
    mask_file = more.get("mask", "mask.nii.gz")
    # shape2D only on the one-slice mask (PyRadiomics leaves it out for a 3D ROI).
    classes = [c for c in FEATURES if c != "shape2D" or "mask" in more]
    ex = featureextractor.RadiomicsFeatureExtractor({"setting": setting, "imageType": {t: {} for t in types},
                                                     "featureClass": {c: None for c in classes}})
    values = ex.execute(os.path.join(out, "image.nii.gz"), os.path.join(out, mask_file))
    feats = {}
    for prefix in [p for t in types for p in PREFIXES[t]]:
      for cls, table in FEATURES.items():
        if cls not in classes or (cls in ("shape", "shape2D") and prefix != "original"):
            continue
        for py, ours in table.items():
            fam = cls
            # FedRad's aggregation for what PyRadiomics computes: weighted directions are
            # merged, force2D is 2.5D.
            suffix = SUFFIX[cls]
            if suffix == "_3Davg":
                suffix = {(False, False): "_3Davg", (True, False): "_3Dmrg", (False, True): "_25Ddmrg", (True, True): "_25Dmrg"}[
                    (bool(extra.get("weightingNorm")), bool(extra.get("force2D")))]
            elif suffix == "_3D" and extra.get("force2D"):
                suffix = "_25D"
            feats[f"{prefix}_{fam}_{ours}{suffix}"] = float(values[f"{prefix}_{cls}_{py}"])
    reference[name] = {"setting": setting, "imageType": types, "mask": mask_file, "classes": classes, "features": feats}
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump({"generator": "radiomics/scripts/make_pyradiomics_settings_fixture.py", "pyradiomics": __import__("radiomics").__version__,
               "simpleitk": sitk.Version_VersionString(), "configs": reference}, f, indent=1, sort_keys=True)
print(f"wrote {out}")
