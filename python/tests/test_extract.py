"""The Python package against PyRadiomics' values, through files, dicts and numpy arrays.

The reference is radiomics/tests/data/pyradiomics_baseline/reference.json: PyRadiomics'
own test cases with the values PyRadiomics 3.1.4 computes (see that folder's README).
"""
import json
import math
import pathlib

import numpy as np
import pytest

import fedrad_radiomics

DATA = pathlib.Path(__file__).resolve().parents[2] / "radiomics" / "tests" / "data" / "pyradiomics_baseline"
REFERENCE = json.loads((DATA / "reference.json").read_text())["tests"]


def agree(ours, theirs, tolerance=1e-9):
    """Names identical, values within `tolerance` relative (absolute near zero)."""
    assert set(ours) == set(theirs), (sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours)))
    for name, expected in theirs.items():
        got = ours[name]
        scale = abs(expected) if abs(expected) > 1e-12 else 1.0
        assert math.isclose(got, expected, abs_tol=tolerance * scale), f"{name}: {got} vs PyRadiomics {expected}"


@pytest.mark.parametrize("test", ["brain1", "breast1_resampling", "brain2_2d", "breast1_FBN"])
def test_a_parameter_file_gives_pyradiomics_names_and_values(test, tmp_path):
    t = REFERENCE[test]
    params = tmp_path / "params.yaml"
    params.write_text(t["params"])
    ours = fedrad_radiomics.extract(DATA / f"{t['case']}_image.nrrd", DATA / f"{t['case']}_label.nrrd", params)
    agree(ours, t["pyradiomics"])


def test_no_parameters_is_pyradiomics_defaults():
    ours = fedrad_radiomics.extract(str(DATA / "breast1_image.nrrd"), str(DATA / "breast1_label.nrrd"))
    assert len(ours) == 107
    assert list(ours)[0].startswith("original_shape_")


def test_a_dict_of_parameters_is_the_same_as_the_file():
    t = REFERENCE["brain1_FBN"]
    setting = {"binCount": 64, "label": 1, "minimumROIDimensions": 2, "interpolator": "sitkBSpline", "resampledPixelSpacing": None}
    ours = fedrad_radiomics.extract(DATA / "brain1_image.nrrd", DATA / "brain1_label.nrrd",
                                    {"setting": setting, "imageType": {"Original": {}}, "featureClass": {c: None for c in t["classes"]}})
    agree(ours, t["pyradiomics"])


def test_numpy_arrays_with_spacing_equal_the_files():
    image, spacing = fedrad_radiomics.read_volume(DATA / "brain2_image.nrrd")
    mask, mask_spacing = fedrad_radiomics.read_volume(DATA / "brain2_label.nrrd")
    assert image.shape == mask.shape and image.ndim == 3 and spacing == mask_spacing
    from_arrays = fedrad_radiomics.extract(image.astype(np.int16), mask.astype(np.uint8), spacing=spacing)
    from_files = fedrad_radiomics.extract(DATA / "brain2_image.nrrd", DATA / "brain2_label.nrrd")
    assert from_arrays == from_files
    # A z, y, x array: shrinking the z spacing changes volumes by that factor.
    thin = fedrad_radiomics.extract(image, mask, spacing=(spacing[0], spacing[1], spacing[2] / 2))
    assert math.isclose(thin["original_shape_VoxelVolume"], from_files["original_shape_VoxelVolume"] / 2, rel_tol=1e-12)


def test_numpy_scalars_in_a_dict_of_parameters():
    ours = fedrad_radiomics.extract(DATA / "breast1_image.nrrd", DATA / "breast1_label.nrrd",
                                    {"setting": {"binWidth": np.float64(25.0), "label": np.int64(1)}})
    assert len(ours) == 107


def test_ibsi_naming_by_the_switch():
    ours = fedrad_radiomics.extract(DATA / "breast1_image.nrrd", DATA / "breast1_label.nrrd",
                                    {"setting": {"featureNaming": "ibsi"}, "featureClass": {"glcm": None}})
    assert "original_glcm_JointMaximum_3Davg" in ours and "original_glcm_MaximumProbability" not in ours


def test_errors_name_what_is_wrong(tmp_path):
    image, mask = DATA / "breast1_image.nrrd", DATA / "breast1_label.nrrd"
    with pytest.raises(ValueError, match="binWdth"):
        fedrad_radiomics.extract(image, mask, {"setting": {"binWdth": 5}})
    with pytest.raises(ValueError, match="label 7 is not in the mask"):
        fedrad_radiomics.extract(image, mask, label=7)
    with pytest.raises(ValueError, match="spacing"):
        fedrad_radiomics.extract(np.zeros((4, 4, 4)), np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="same shape"):
        fedrad_radiomics.extract(np.zeros((4, 4, 4)), np.ones((4, 4, 3)), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="missing.nrrd"):
        fedrad_radiomics.extract(tmp_path / "missing.nrrd", mask)
    with pytest.raises(ValueError, match="label"):
        fedrad_radiomics.extract(image, mask, label=-1)
    with pytest.raises(FileNotFoundError):
        fedrad_radiomics.extract(image, mask, tmp_path / "no-such-params.yaml")
