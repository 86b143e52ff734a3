"""FedRad's radiomics engine for Python: PyRadiomics' features, names and parameter files.

    import fedrad_radiomics
    features = fedrad_radiomics.extract("image.nrrd", "label.nrrd", "params.yaml")
    features["original_glcm_MaximumProbability"]

`extract` returns what PyRadiomics' `RadiomicsFeatureExtractor(params).execute(image, mask)`
returns, without the `diagnostics_*` entries: a dict of feature name to value, in PyRadiomics'
names and order. The work is done by the Rust crate `fedrad-radiomics` (IBSI digital and CT
phantoms, PyRadiomics' own test baseline), not by PyRadiomics.
"""
import json
import numbers
import os

from . import _native

__all__ = ["extract", "read_volume", "__version__"]
__version__ = _native.__version__


def _params_yaml(params):
    """A parameter file's text: a path to a YAML file, a dict as PyRadiomics takes it (JSON is
    YAML), or None for PyRadiomics' defaults."""
    if params is None:
        return ""
    if isinstance(params, dict):
        # numpy scalars (np.float64(25.0), np.int64(1)) as the plain numbers they hold.
        return json.dumps(params, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    if isinstance(params, (str, os.PathLike)):
        with open(params, encoding="utf-8") as f:
            return f.read()
    raise TypeError(f"params must be a path to a YAML file, a dict or None, not {type(params).__name__}")


def _is_path(x):
    return isinstance(x, (str, os.PathLike))


def extract(image, mask, params=None, *, label=None, roi=None, spacing=None):
    """Features of one image and mask.

    image, mask: file paths (NIfTI, NRRD; or a DICOM series folder and an RTSTRUCT or SEG file,
        with `roi` naming the region), or numpy arrays in (z, y, x) order as SimpleITK's
        `GetArrayFromImage` gives them, with `spacing` = (x, y, z) in mm as `GetSpacing` gives.
        Samples are held as float32, as FedRad's file readers hold them (a float64 image loses
        precision beyond 24 bits); integer images keep their type's range for resampling.
    params: a PyRadiomics parameter file (path), the same as a dict, or None for PyRadiomics'
        defaults. `setting: {featureNaming: ibsi}` gives FedRad's IBSI names instead.
    label: the mask's label of the region (overrides the parameters' `label`).

    Raises ValueError naming the bad parameter, file or case.
    """
    if label is not None:
        if not isinstance(label, numbers.Integral) or label < 0:
            raise ValueError(f"label must be a whole number ≥ 0, not {label!r}")
        label = int(label)
    text = _params_yaml(params)
    if _is_path(image) and _is_path(mask):
        if spacing is not None:
            raise ValueError("spacing is read from the files; give it only with arrays")
        pairs = _native.extract_files_native(os.fspath(image), os.fspath(mask), text, label, roi)
        return dict(pairs)
    if _is_path(image) or _is_path(mask):
        raise TypeError("give image and mask both as paths or both as arrays")
    import numpy as np

    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim != 3 or image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be 3D arrays of the same shape (z, y, x)")
    if spacing is None:
        raise ValueError("arrays need spacing=(x, y, z) in mm")
    if roi is not None:
        raise ValueError("roi names a region of an RTSTRUCT or SEG file; with arrays, use label")
    samples = np.ascontiguousarray(image, dtype=np.float32).tobytes()
    labels = np.ascontiguousarray(mask, dtype=np.float32).tobytes()
    pairs = _native.extract_arrays_native(samples, image.dtype.name, labels, tuple(image.shape),
                                          tuple(float(s) for s in spacing), text, label)
    return dict(pairs)


def read_volume(path):
    """A NIfTI or NRRD file (or DICOM series folder) as (numpy float32 array in (z, y, x) order,
    spacing (x, y, z) in mm), read by FedRad's own readers."""
    import numpy as np

    samples, shape, spacing = _native.read_volume_native(os.fspath(path))
    return np.frombuffer(samples, dtype=np.float32).reshape(shape).copy(), tuple(spacing)
