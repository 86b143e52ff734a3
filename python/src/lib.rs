//! `fedrad_radiomics._native`: the engine behind the Python package's `extract` and
//! `read_volume` (`python/fedrad_radiomics/__init__.py` turns parameter dicts into YAML and
//! numpy arrays into bytes, so this side needs no numpy).
//!
//! Errors come back as `ValueError` carrying FedRad's message, which names the bad key, file
//! or case; nothing is printed.

use std::path::Path;

use fedrad_imaging::{Geometry, SampleType, Volume};
use fedrad_radiomics::extract::{extract, extract_files};
use fedrad_radiomics::settings::Settings;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

fn settings(params_yaml: &str, label: Option<u32>) -> PyResult<Settings> {
    let mut s = Settings::from_pyradiomics_yaml(params_yaml).map_err(|e| PyValueError::new_err(format!("parameters: {e}")))?;
    if let Some(l) = label {
        s.label = l;
    }
    Ok(s)
}

fn named(features: Vec<fedrad_radiomics::Feature>) -> Vec<(String, f64)> {
    features.into_iter().map(|f| (f.column(), f.value)).collect()
}

/// Features of an image and mask given as files (NIfTI, NRRD, or a DICOM series folder with
/// an RTSTRUCT or SEG file and the region's name `roi`), in output order.
#[pyfunction]
#[pyo3(signature = (image, mask, params_yaml, label=None, roi=None))]
fn extract_files_native(py: Python<'_>, image: &str, mask: &str, params_yaml: &str, label: Option<u32>, roi: Option<&str>) -> PyResult<Vec<(String, f64)>> {
    let s = settings(params_yaml, label)?;
    let features = py
        .detach(|| extract_files(Path::new(image), Path::new(mask), roi, &s))
        .map_err(|e| PyValueError::new_err(format!("extracting {image} with mask {mask}: {e}")))?;
    Ok(named(features))
}

/// The numpy dtypes an image may have, as FedRad's sample types (which decide how resampled
/// values are written back, as ITK does for the file's type).
fn sample_type(dtype: &str) -> PyResult<SampleType> {
    let integer = |min: f64, max: f64| Ok(SampleType::Integer { min, max });
    match dtype {
        "uint8" => integer(0.0, 255.0),
        "int8" => integer(-128.0, 127.0),
        "uint16" => integer(0.0, 65535.0),
        "int16" => integer(-32768.0, 32767.0),
        "uint32" => integer(0.0, 4294967295.0),
        "int32" => integer(-2147483648.0, 2147483647.0),
        "uint64" => integer(0.0, u64::MAX as f64),
        "int64" => integer(i64::MIN as f64, i64::MAX as f64),
        "float32" => Ok(SampleType::Float32),
        "float64" => Ok(SampleType::Float64),
        other => Err(PyValueError::new_err(format!("image dtype {other} is not supported (use an integer type, float32 or float64; bool images as uint8)"))),
    }
}

fn volume(samples: &[u8], shape: [usize; 3], spacing: [f64; 3], what: &str) -> PyResult<Volume> {
    let [nz, ny, nx] = shape;
    if samples.len() != nx * ny * nz * 4 {
        return Err(PyValueError::new_err(format!("{what}: {} bytes for a {nz}×{ny}×{nx} array of float32", samples.len())));
    }
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(PyValueError::new_err(format!("spacing {spacing:?} must be three positive lengths in mm (x, y, z)")));
    }
    let data = samples.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok(Volume::new(Geometry::axis_aligned([nx, ny, nz], spacing), data))
}

/// Features of an image and mask given as C-ordered float32 samples of (z, y, x) arrays of
/// `shape`, with voxel `spacing` in mm as (x, y, z), as SimpleITK's `GetArrayFromImage` and
/// `GetSpacing` give them. `image_dtype` is the array's original numpy dtype.
#[pyfunction]
#[pyo3(signature = (image, image_dtype, mask, shape, spacing, params_yaml, label=None))]
#[allow(clippy::too_many_arguments)]
fn extract_arrays_native(
    py: Python<'_>,
    image: &Bound<'_, PyBytes>,
    image_dtype: &str,
    mask: &Bound<'_, PyBytes>,
    shape: [usize; 3],
    spacing: [f64; 3],
    params_yaml: &str,
    label: Option<u32>,
) -> PyResult<Vec<(String, f64)>> {
    let s = settings(params_yaml, label)?;
    let image = volume(image.as_bytes(), shape, spacing, "image")?.with_sample(sample_type(image_dtype)?);
    let mask = volume(mask.as_bytes(), shape, spacing, "mask")?;
    let features = py.detach(|| extract(&image, &mask, &s)).map_err(|e| PyValueError::new_err(format!("extracting: {e}")))?;
    Ok(named(features))
}

/// A NIfTI or NRRD file (or DICOM series folder) as (float32 samples of the (z, y, x) array,
/// its shape, spacing (x, y, z) in mm).
#[pyfunction]
fn read_volume_native<'py>(py: Python<'py>, path: &str) -> PyResult<(Bound<'py, PyBytes>, [usize; 3], [f64; 3])> {
    let v = py.detach(|| fedrad_imaging::read_volume(Path::new(path))).map_err(|e| PyValueError::new_err(format!("reading {path}: {e}")))?;
    let bytes: Vec<u8> = v.data.iter().flat_map(|x| x.to_ne_bytes()).collect();
    let [nx, ny, nz] = v.geometry.dims;
    Ok((PyBytes::new(py, &bytes), [nz, ny, nx], v.geometry.spacing))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(extract_files_native, m)?)?;
    m.add_function(wrap_pyfunction!(extract_arrays_native, m)?)?;
    m.add_function(wrap_pyfunction!(read_volume_native, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
