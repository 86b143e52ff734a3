//! NIfTI-1 reading and writing (`.nii`, `.nii.gz`; single-file `n+1`).
//!
//! The reader trusts nothing in the header: it checks the magic, dimensions, data type and
//! voxel offset, and refuses a volume larger than a limit *before* allocating, so a hostile
//! or corrupt header cannot exhaust memory. Geometry comes from the sform when
//! `sform_code > 0`, else from the qform (quaternion) when `qform_code > 0`, else from the
//! voxel sizes alone (NIfTI "method 1"). Stored values are scaled by `scl_slope`/`scl_inter`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::{DEFAULT_MAX_VOXELS, Geometry, ImagingError, SampleType, Volume};

const HEADER_SIZE: usize = 348;

/// On-disk sample types this reader understands (NIfTI `datatype` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    U8 = 2,
    I16 = 4,
    I32 = 8,
    F32 = 16,
    F64 = 64,
    I8 = 256,
    U16 = 512,
    U32 = 768,
    I64 = 1024,
    U64 = 1280,
}

impl DataType {
    fn from_code(code: i16) -> Option<DataType> {
        Some(match code {
            2 => DataType::U8,
            4 => DataType::I16,
            8 => DataType::I32,
            16 => DataType::F32,
            64 => DataType::F64,
            256 => DataType::I8,
            512 => DataType::U16,
            768 => DataType::U32,
            1024 => DataType::I64,
            1280 => DataType::U64,
            _ => return None,
        })
    }

    /// The pixel type ITK loads these samples as.
    pub fn sample_type(self) -> SampleType {
        let int = |min: f64, max: f64| SampleType::Integer { min, max };
        match self {
            DataType::U8 => int(0.0, u8::MAX as f64),
            DataType::I8 => int(i8::MIN as f64, i8::MAX as f64),
            DataType::I16 => int(i16::MIN as f64, i16::MAX as f64),
            DataType::U16 => int(0.0, u16::MAX as f64),
            DataType::I32 => int(i32::MIN as f64, i32::MAX as f64),
            DataType::U32 => int(0.0, u32::MAX as f64),
            DataType::I64 => int(i64::MIN as f64, i64::MAX as f64),
            DataType::U64 => int(0.0, u64::MAX as f64),
            DataType::F32 => SampleType::Float32,
            DataType::F64 => SampleType::Float64,
        }
    }

    pub fn size(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::I16 | DataType::U16 => 2,
            DataType::I32 | DataType::U32 | DataType::F32 => 4,
            DataType::F64 | DataType::I64 | DataType::U64 => 8,
        }
    }
}

/// The parts of a NIfTI-1 header FedRad uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub geometry: Geometry,
    pub datatype: DataType,
    pub vox_offset: usize,
    pub scl_slope: f32,
    pub scl_inter: f32,
    big_endian: bool,
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn open(path: &Path) -> Result<Box<dyn Read>, ImagingError> {
    let f = File::open(path).map_err(|source| ImagingError::Io { path: path_str(path), source })?;
    let r = BufReader::new(f);
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz")) { Ok(Box::new(GzDecoder::new(r))) } else { Ok(Box::new(r)) }
}

fn read_exact_or(r: &mut dyn Read, buf: &mut [u8], path: &Path, what: &str) -> Result<usize, ImagingError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ImagingError::NotNifti { path: path_str(path), detail: format!("cannot read {what}: {e}") });
            }
        }
    }
    Ok(filled)
}

/// Reads and checks the header only.
pub fn read_header(path: &Path) -> Result<Header, ImagingError> {
    let mut r = open(path)?;
    let mut buf = [0u8; HEADER_SIZE];
    let n = read_exact_or(&mut *r, &mut buf, path, "header")?;
    if n < HEADER_SIZE {
        return Err(ImagingError::NotNifti { path: path_str(path), detail: format!("only {n} bytes, a header has 348") });
    }
    parse_header(&buf, path)
}

pub fn parse_header(buf: &[u8; HEADER_SIZE], path: &Path) -> Result<Header, ImagingError> {
    let le = i32::from_le_bytes(buf[0..4].try_into().unwrap());
    let be = i32::from_be_bytes(buf[0..4].try_into().unwrap());
    let big_endian = match (le, be) {
        (348, _) => false,
        (_, 348) => true,
        _ => return Err(ImagingError::NotNifti { path: path_str(path), detail: "sizeof_hdr is not 348".into() }),
    };
    if &buf[344..347] != b"n+1" {
        let detail =
            if &buf[344..347] == b"ni1" { "two-file NIfTI (.hdr/.img) is not supported; convert to .nii".to_string() } else { "missing the n+1 magic".to_string() };
        return Err(ImagingError::NotNifti { path: path_str(path), detail });
    }
    let i16_at = |o: usize| {
        let b = [buf[o], buf[o + 1]];
        if big_endian { i16::from_be_bytes(b) } else { i16::from_le_bytes(b) }
    };
    let f32_at = |o: usize| {
        let b = [buf[o], buf[o + 1], buf[o + 2], buf[o + 3]];
        if big_endian { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) }
    };
    let invalid = |detail: String| ImagingError::InvalidHeader { path: path_str(path), detail };

    let ndim = i16_at(40);
    if !(1..=7).contains(&ndim) {
        return Err(invalid(format!("dim[0] = {ndim}")));
    }
    let mut dims = [1usize; 3];
    for d in 1..=ndim as usize {
        let v = i16_at(40 + 2 * d);
        if v < 1 {
            return Err(invalid(format!("dim[{d}] = {v}")));
        }
        if d <= 3 {
            dims[d - 1] = v as usize;
        } else if v != 1 {
            return Err(ImagingError::Unsupported { path: path_str(path), what: "dimensionality", value: format!("dim[{d}] = {v} (4D or more)") });
        }
    }
    let code = i16_at(70);
    let datatype = DataType::from_code(code).ok_or_else(|| ImagingError::Unsupported { path: path_str(path), what: "datatype", value: code.to_string() })?;
    let pixdim: Vec<f64> = (0..8).map(|i| f32_at(76 + 4 * i) as f64).collect();
    let vox_offset = f32_at(108);
    if !(vox_offset.is_finite() && vox_offset >= HEADER_SIZE as f32 && vox_offset < 1.0e9) {
        return Err(invalid(format!("vox_offset = {vox_offset}")));
    }
    let mut scl_slope = f32_at(112);
    let mut scl_inter = f32_at(116);
    if !scl_slope.is_finite() || scl_slope == 0.0 {
        // NIfTI: a zero slope means "no scaling".
        scl_slope = 1.0;
        scl_inter = 0.0;
    }
    if !scl_inter.is_finite() {
        scl_inter = 0.0;
    }
    let spacing_raw = [pixdim[1], pixdim[2], pixdim[3]];
    let qform_code = i16_at(252);
    let sform_code = i16_at(254);
    let mut geometry;
    if sform_code > 0 {
        let row = |o: usize| [f32_at(o) as f64, f32_at(o + 4) as f64, f32_at(o + 8) as f64, f32_at(o + 12) as f64];
        let rows = [row(280), row(296), row(312)];
        let mut spacing = [0.0; 3];
        let mut direction = [[0.0; 3]; 3];
        for c in 0..3 {
            let norm = (0..3).map(|r| rows[r][c] * rows[r][c]).sum::<f64>().sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                return Err(invalid("sform has a zero or non-finite column".into()));
            }
            spacing[c] = norm;
            for r in 0..3 {
                direction[r][c] = rows[r][c] / norm;
            }
        }
        geometry = Geometry { dims, spacing, origin: [rows[0][3], rows[1][3], rows[2][3]], direction };
    } else {
        let spacing = spacing_raw.map(|s| if s.is_finite() && s != 0.0 { s.abs() } else { 1.0 });
        geometry = Geometry::axis_aligned(dims, spacing);
        if qform_code > 0 {
            let (b, c, d) = (f32_at(256) as f64, f32_at(260) as f64, f32_at(264) as f64);
            let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
            let qfac = if pixdim[0] < 0.0 { -1.0 } else { 1.0 };
            let r = [
                [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
                [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
                [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
            ];
            for row in 0..3 {
                for col in 0..3 {
                    geometry.direction[row][col] = r[row][col] * if col == 2 { qfac } else { 1.0 };
                }
            }
            geometry.origin = [f32_at(268) as f64, f32_at(272) as f64, f32_at(276) as f64];
        }
    }
    for s in geometry.spacing {
        if !(s.is_finite() && s > 0.0) {
            return Err(invalid(format!("voxel spacing {:?}", geometry.spacing)));
        }
    }
    Ok(Header { geometry, datatype, vox_offset: vox_offset as usize, scl_slope, scl_inter, big_endian })
}

/// Reads a volume, refusing more than [`DEFAULT_MAX_VOXELS`] voxels.
pub fn read(path: &Path) -> Result<Volume, ImagingError> {
    read_with_limit(path, DEFAULT_MAX_VOXELS)
}

pub fn read_with_limit(path: &Path, max_voxels: u128) -> Result<Volume, ImagingError> {
    let mut r = open(path)?;
    let mut hbuf = [0u8; HEADER_SIZE];
    let n = read_exact_or(&mut *r, &mut hbuf, path, "header")?;
    if n < HEADER_SIZE {
        return Err(ImagingError::NotNifti { path: path_str(path), detail: format!("only {n} bytes, a header has 348") });
    }
    let h = parse_header(&hbuf, path)?;
    let voxels: u128 = h.geometry.dims.iter().map(|d| *d as u128).product();
    if voxels > max_voxels {
        return Err(ImagingError::TooLarge { path: path_str(path), voxels, limit: max_voxels });
    }
    // Skip extensions up to vox_offset.
    let mut skip = vec![0u8; h.vox_offset - HEADER_SIZE];
    let got = read_exact_or(&mut *r, &mut skip, path, "extensions")?;
    if got < skip.len() {
        return Err(ImagingError::Truncated { path: path_str(path), expected: skip.len(), found: got });
    }
    let nbytes = voxels as usize * h.datatype.size();
    let mut raw = vec![0u8; nbytes];
    let got = read_exact_or(&mut *r, &mut raw, path, "voxel data")?;
    if got < nbytes {
        return Err(ImagingError::Truncated { path: path_str(path), expected: nbytes, found: got });
    }
    let data = decode(&raw, h.datatype, h.big_endian, h.scl_slope, h.scl_inter);
    // ITK reads scaled samples as float (double stays double).
    let sample = match h.datatype.sample_type() {
        SampleType::Integer { .. } if h.scl_slope != 1.0 || h.scl_inter != 0.0 => SampleType::Float32,
        t => t,
    };
    Ok(Volume::new(h.geometry, data).with_sample(sample))
}

/// Decodes raw samples to f32 (after `v · slope + inter`).
pub(crate) fn decode(raw: &[u8], dt: DataType, be: bool, slope: f32, inter: f32) -> Vec<f32> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            raw.chunks_exact($n)
                .map(|c| {
                    let b: [u8; $n] = c.try_into().unwrap();
                    let v = if be { <$t>::from_be_bytes(b) } else { <$t>::from_le_bytes(b) };
                    v as f64
                })
                .map(|v| (v * slope as f64 + inter as f64) as f32)
                .collect()
        };
    }
    match dt {
        DataType::U8 => conv!(u8, 1),
        DataType::I8 => conv!(i8, 1),
        DataType::I16 => conv!(i16, 2),
        DataType::U16 => conv!(u16, 2),
        DataType::I32 => conv!(i32, 4),
        DataType::U32 => conv!(u32, 4),
        DataType::F32 => conv!(f32, 4),
        DataType::F64 => conv!(f64, 8),
        DataType::I64 => conv!(i64, 8),
        DataType::U64 => conv!(u64, 8),
    }
}

/// How to store samples when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredType {
    /// Rounded to the nearest integer and clamped, as scanners export MR magnitude.
    I16,
    U8,
    F32,
}

/// Writes a single-file NIfTI-1 (gzip-compressed when the path ends in `.gz`), with sform and
/// qform both set (code 1, scanner anatomical) from the volume's geometry.
pub fn write(path: &Path, vol: &Volume, stored: StoredType) -> Result<(), ImagingError> {
    let g = &vol.geometry;
    for d in g.dims {
        if d > i16::MAX as usize {
            return Err(ImagingError::Unsupported { path: path_str(path), what: "dimension", value: d.to_string() });
        }
    }
    let mut h = [0u8; 352];
    let put_i16 = |h: &mut [u8], o: usize, v: i16| h[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |h: &mut [u8], o: usize, v: f32| h[o..o + 4].copy_from_slice(&v.to_le_bytes());
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    put_i16(&mut h, 40, 3);
    for i in 0..3 {
        put_i16(&mut h, 42 + 2 * i, g.dims[i] as i16);
    }
    for i in 3..7 {
        put_i16(&mut h, 42 + 2 * i, 1);
    }
    let (code, bitpix) = match stored {
        StoredType::I16 => (4, 16),
        StoredType::U8 => (2, 8),
        StoredType::F32 => (16, 32),
    };
    put_i16(&mut h, 70, code);
    put_i16(&mut h, 72, bitpix);
    // qform from the direction matrix (proper rotation, possibly with qfac = -1).
    let mut r = g.direction;
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0]) + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 { -1.0 } else { 1.0 };
    if det < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    let a = 0.5 * (1.0 + r[0][0] + r[1][1] + r[2][2]).max(0.0).sqrt();
    let (b, c, d) = if a > 1e-4 {
        ((r[2][1] - r[1][2]) / (4.0 * a), (r[0][2] - r[2][0]) / (4.0 * a), (r[1][0] - r[0][1]) / (4.0 * a))
    } else {
        // 180° rotations: recover the axis from the diagonal.
        let b = 0.5 * (1.0 + r[0][0] - r[1][1] - r[2][2]).max(0.0).sqrt();
        let c = 0.5 * (1.0 - r[0][0] + r[1][1] - r[2][2]).max(0.0).sqrt();
        let d = 0.5 * (1.0 - r[0][0] - r[1][1] + r[2][2]).max(0.0).sqrt();
        (b, c.copysign(r[0][1] + r[1][0]), d.copysign(r[0][2] + r[2][0]))
    };
    put_f32(&mut h, 76, qfac as f32);
    for i in 0..3 {
        put_f32(&mut h, 80 + 4 * i, g.spacing[i] as f32);
    }
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, 1.0);
    h[123] = 2; // xyzt_units: millimetres
    put_i16(&mut h, 252, 1);
    put_i16(&mut h, 254, 1);
    put_f32(&mut h, 256, b as f32);
    put_f32(&mut h, 260, c as f32);
    put_f32(&mut h, 264, d as f32);
    for i in 0..3 {
        put_f32(&mut h, 268 + 4 * i, g.origin[i] as f32);
    }
    let aff = g.affine();
    for (row, off) in [(0, 280), (1, 296), (2, 312)] {
        for col in 0..4 {
            put_f32(&mut h, off + 4 * col, aff[row][col] as f32);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    let mut body = Vec::with_capacity(vol.data.len() * 4);
    match stored {
        StoredType::I16 => vol.data.iter().for_each(|v| body.extend_from_slice(&(v.round().clamp(-32768.0, 32767.0) as i16).to_le_bytes())),
        StoredType::U8 => vol.data.iter().for_each(|v| body.push(v.round().clamp(0.0, 255.0) as u8)),
        StoredType::F32 => vol.data.iter().for_each(|v| body.extend_from_slice(&v.to_le_bytes())),
    }
    let io = |source| ImagingError::Io { path: path_str(path), source };
    let f = File::create(path).map_err(io)?;
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz")) {
        let mut w = GzEncoder::new(BufWriter::new(f), Compression::fast());
        w.write_all(&h).map_err(io)?;
        w.write_all(&body).map_err(io)?;
        w.finish().map_err(io)?.flush().map_err(io)
    } else {
        let mut w = BufWriter::new(f);
        w.write_all(&h).map_err(io)?;
        w.write_all(&body).map_err(io)?;
        w.flush().map_err(io)
    }
}

/// Decodes raw samples without scaling.
pub(crate) fn decode_samples(raw: &[u8], dt: DataType, be: bool) -> Vec<f32> {
    decode(raw, dt, be, 1.0, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fedrad-nifti-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    fn sample() -> Volume {
        let mut g = Geometry::axis_aligned([5, 4, 3], [0.8, 0.9, 4.0]);
        g.origin = [-10.0, 20.5, 3.0];
        // A rotation about z by 30° composed with a flip of the k axis (qfac = -1).
        let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
        g.direction = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]];
        Volume::new(g, (0..60).map(|v| v as f32 * 3.0 - 50.0).collect())
    }

    #[test]
    fn round_trips_values_and_geometry_gz_and_plain() {
        for name in ["a.nii", "a.nii.gz"] {
            let v = sample();
            let p = tmp(name);
            write(&p, &v, StoredType::I16).unwrap();
            let r = read(&p).unwrap();
            assert_eq!(r.data, v.data);
            assert!(r.geometry.mismatch(&v.geometry, 1e-5).is_none(), "{:?}", r.geometry);
        }
    }

    #[test]
    fn qform_only_file_gives_same_geometry() {
        let v = sample();
        let p = tmp("q.nii");
        write(&p, &v, StoredType::F32).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code = 0
        std::fs::write(&p, &bytes).unwrap();
        let r = read(&p).unwrap();
        assert!(r.geometry.mismatch(&v.geometry, 1e-5).is_none(), "{:?}", r.geometry);
    }

    #[test]
    fn refuses_absurd_sizes_before_allocating_and_reports_truncation() {
        let p = tmp("big.nii");
        write(&p, &sample(), StoredType::I16).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        for i in 0..3 {
            bytes[42 + 2 * i..44 + 2 * i].copy_from_slice(&30000i16.to_le_bytes());
        }
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(read(&p), Err(ImagingError::TooLarge { .. })));
        let p = tmp("trunc.nii");
        write(&p, &sample(), StoredType::I16).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        assert!(matches!(read(&p), Err(ImagingError::Truncated { .. })));
        let p = tmp("junk.nii");
        std::fs::write(&p, b"hello").unwrap();
        assert!(matches!(read(&p), Err(ImagingError::NotNifti { .. })));
    }
}
