//! NRRD reading (`.nrrd` with attached data, `.nhdr` with a detached data file) and
//! writing, for scalar 3D volumes with raw or gzip encoding.
//!
//! Geometry comes from `space directions` and `space origin` (or `spacings`). NRRD files
//! from ITK/Slicer are usually in LPS; FedRad's world frame is NIfTI's RAS, so LPS
//! coordinates are converted (x and y negated) and an image in one format can be checked
//! against a mask in the other. As in the NIfTI reader, sizes are checked against a limit
//! before any allocation.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;

use crate::nifti::DataType;
use crate::{DEFAULT_MAX_VOXELS, Geometry, ImagingError, Volume};

fn invalid(path: &Path, detail: impl Into<String>) -> ImagingError {
    ImagingError::InvalidHeader { path: path.display().to_string(), detail: detail.into() }
}

fn data_type(path: &Path, t: &str) -> Result<DataType, ImagingError> {
    Ok(match t.trim() {
        "signed char" | "int8" | "int8_t" => DataType::I8,
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => DataType::U8,
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => DataType::I16,
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => DataType::U16,
        "int" | "signed int" | "int32" | "int32_t" => DataType::I32,
        "uint" | "unsigned int" | "uint32" | "uint32_t" => DataType::U32,
        "longlong" | "long long" | "long long int" | "signed long long" | "signed long long int" | "int64" | "int64_t" => DataType::I64,
        "ulonglong" | "unsigned long long" | "unsigned long long int" | "uint64" | "uint64_t" => DataType::U64,
        "float" => DataType::F32,
        "double" => DataType::F64,
        other => return Err(ImagingError::Unsupported { path: path.display().to_string(), what: "NRRD type", value: other.into() }),
    })
}

fn vector(path: &Path, s: &str) -> Result<[f64; 3], ImagingError> {
    let inner = s.trim().trim_start_matches('(').trim_end_matches(')');
    let v: Vec<f64> = inner.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| invalid(path, format!("bad vector {s:?}")))?;
    if v.len() != 3 || v.iter().any(|x| !x.is_finite()) {
        return Err(invalid(path, format!("expected a 3-vector, got {s:?}")));
    }
    Ok([v[0], v[1], v[2]])
}

pub fn read(path: &Path) -> Result<Volume, ImagingError> {
    read_with_limit(path, DEFAULT_MAX_VOXELS)
}

pub fn read_with_limit(path: &Path, max_voxels: u128) -> Result<Volume, ImagingError> {
    let io = |source| ImagingError::Io { path: path.display().to_string(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut r = BufReader::new(f);
    let mut magic = String::new();
    r.by_ref().take(64).read_line(&mut magic).map_err(io)?;
    if !magic.starts_with("NRRD000") {
        return Err(ImagingError::NotNifti { path: path.display().to_string(), detail: "not a NRRD file (no NRRD000x magic)".into() });
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut header_bytes = magic.len();
    loop {
        let mut line = String::new();
        let n = r.by_ref().take(64 * 1024).read_line(&mut line).map_err(io)?;
        header_bytes += n;
        if n == 0 || header_bytes > 1 << 20 {
            return Err(invalid(path, "header does not end (no blank line within 1 MiB)"));
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            break;
        }
        if line.starts_with('#') || line.contains(":=") {
            continue;
        }
        if let Some((k, v)) = line.split_once(": ") {
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let get = |k: &str| fields.get(k).map(String::as_str);
    let dt = data_type(path, get("type").ok_or_else(|| invalid(path, "missing `type`"))?)?;
    let dim: usize = get("dimension").and_then(|d| d.parse().ok()).ok_or_else(|| invalid(path, "missing or bad `dimension`"))?;
    if dim != 3 {
        return Err(ImagingError::Unsupported { path: path.display().to_string(), what: "NRRD dimension", value: dim.to_string() });
    }
    let sizes: Vec<usize> = get("sizes")
        .ok_or_else(|| invalid(path, "missing `sizes`"))?
        .split_whitespace()
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| invalid(path, "bad `sizes`"))?;
    if sizes.len() != 3 || sizes.contains(&0) {
        return Err(invalid(path, format!("`sizes` must be three positive numbers, got {sizes:?}")));
    }
    let voxels: u128 = sizes.iter().map(|s| *s as u128).product();
    if voxels > max_voxels {
        return Err(ImagingError::TooLarge { path: path.display().to_string(), voxels, limit: max_voxels });
    }
    let dims = [sizes[0], sizes[1], sizes[2]];
    let mut geometry = Geometry::axis_aligned(dims, [1.0; 3]);
    if let Some(sd) = get("space directions") {
        let parts: Vec<&str> = sd.split(')').map(str::trim).filter(|p| !p.is_empty()).collect();
        if parts.len() != 3 {
            return Err(invalid(path, "`space directions` needs three vectors"));
        }
        for (c, p) in parts.iter().enumerate() {
            let v = vector(path, &format!("{p})"))?;
            let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            if n <= 0.0 {
                return Err(invalid(path, "zero space direction"));
            }
            geometry.spacing[c] = n;
            for row in 0..3 {
                geometry.direction[row][c] = v[row] / n;
            }
        }
    } else if let Some(sp) = get("spacings") {
        let v: Vec<f64> = sp.split_whitespace().map(|x| x.parse::<f64>()).collect::<Result<_, _>>().map_err(|_| invalid(path, "bad `spacings`"))?;
        if v.len() != 3 || v.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(invalid(path, "`spacings` must be three positive numbers"));
        }
        geometry.spacing = [v[0], v[1], v[2]];
    }
    if let Some(o) = get("space origin") {
        geometry.origin = vector(path, o)?;
    }
    let space = get("space").unwrap_or("").to_ascii_lowercase();
    if space == "left-posterior-superior" || space == "lps" {
        for c in 0..3 {
            geometry.direction[0][c] = -geometry.direction[0][c];
            geometry.direction[1][c] = -geometry.direction[1][c];
        }
        geometry.origin[0] = -geometry.origin[0];
        geometry.origin[1] = -geometry.origin[1];
    }
    let big_endian = get("endian") == Some("big");
    let nbytes = voxels as usize * dt.size();
    let encoding = get("encoding").unwrap_or("raw");
    let mut payload: Box<dyn Read> = match get("data file").or(get("datafile")) {
        Some(file) => {
            let p = path.parent().unwrap_or(Path::new(".")).join(file);
            Box::new(BufReader::new(std::fs::File::open(&p).map_err(|source| ImagingError::Io { path: p.display().to_string(), source })?))
        }
        None => Box::new(r),
    };
    if let Some(skip) = get("byte skip").and_then(|s| s.parse::<u64>().ok()) {
        std::io::copy(&mut payload.by_ref().take(skip), &mut std::io::sink()).map_err(io)?;
    }
    let mut reader: Box<dyn Read> = match encoding {
        "raw" => payload,
        "gzip" | "gz" => Box::new(GzDecoder::new(payload)),
        other => return Err(ImagingError::Unsupported { path: path.display().to_string(), what: "NRRD encoding", value: other.into() }),
    };
    let mut raw = vec![0u8; nbytes];
    let mut filled = 0;
    while filled < nbytes {
        match reader.read(&mut raw[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(invalid(path, format!("cannot read voxel data: {e}"))),
        }
    }
    if filled < nbytes {
        return Err(ImagingError::Truncated { path: path.display().to_string(), expected: nbytes, found: filled });
    }
    Ok(Volume::new(geometry, crate::nifti::decode_samples(&raw, dt, big_endian)).with_sample(dt.sample_type()))
}

/// Writes an attached, gzip-encoded NRRD of float samples in LPS space.
pub fn write(path: &Path, vol: &Volume) -> Result<(), ImagingError> {
    let g = &vol.geometry;
    let lps = |row: usize, v: f64| if row < 2 { -v } else { v };
    let dirs: Vec<String> = (0..3)
        .map(|c| format!("({},{},{})", lps(0, g.direction[0][c] * g.spacing[c]), lps(1, g.direction[1][c] * g.spacing[c]), g.direction[2][c] * g.spacing[c]))
        .collect();
    let header = format!(
        "NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: {} {} {}\nspace directions: {}\nkinds: domain domain domain\nendian: little\nencoding: gzip\nspace origin: ({},{},{})\n\n",
        g.dims[0],
        g.dims[1],
        g.dims[2],
        dirs.join(" "),
        lps(0, g.origin[0]),
        lps(1, g.origin[1]),
        g.origin[2]
    );
    let io = |source| ImagingError::Io { path: path.display().to_string(), source };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    f.write_all(header.as_bytes()).map_err(io)?;
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    for v in &vol.data {
        gz.write_all(&v.to_le_bytes()).map_err(io)?;
    }
    gz.finish().map_err(io)?.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fedrad-nrrd-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn round_trip_and_same_geometry_as_nifti() {
        let mut g = Geometry::axis_aligned([4, 3, 2], [0.7, 0.8, 3.0]);
        g.origin = [10.0, -5.0, 2.0];
        let v = Volume::new(g, (0..24).map(|i| i as f32 * 1.5).collect());
        let p = tmp("a.nrrd");
        write(&p, &v).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(r.data, v.data);
        assert!(r.geometry.mismatch(&v.geometry, 1e-9).is_none(), "{:?}", r.geometry);
        // The same volume as NIfTI reads to the same grid: formats can be mixed.
        let q = tmp("a.nii");
        crate::nifti::write(&q, &v, crate::nifti::StoredType::F32).unwrap();
        assert!(crate::read_volume(&q).unwrap().geometry.mismatch(&r.geometry, 1e-5).is_none());
    }

    #[test]
    fn raw_detached_big_endian_short() {
        let hdr = tmp("b.nhdr");
        let raw = tmp("b.raw");
        let values: Vec<i16> = (0..8).map(|i| i * 100 - 300).collect();
        std::fs::write(&raw, values.iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>()).unwrap();
        std::fs::write(&hdr, "NRRD0004\n# comment\ntype: short\ndimension: 3\nsizes: 2 2 2\nspacings: 1 2 3\nendian: big\nencoding: raw\ndata file: b.raw\n\n").unwrap();
        let r = read(&hdr).unwrap();
        assert_eq!(r.data, values.iter().map(|v| *v as f32).collect::<Vec<_>>());
        assert_eq!(r.geometry.spacing, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn hostile_headers_are_refused() {
        let p = tmp("c.nrrd");
        std::fs::write(&p, "NRRD0004\ntype: float\ndimension: 3\nsizes: 60000 60000 60000\nencoding: raw\n\n").unwrap();
        assert!(matches!(read(&p), Err(ImagingError::TooLarge { .. })));
        std::fs::write(&p, "NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\nabc").unwrap();
        assert!(matches!(read(&p), Err(ImagingError::Truncated { .. })));
        std::fs::write(&p, "NRRD0004\ntype: quaternion\ndimension: 3\nsizes: 2 2 2\n\n").unwrap();
        assert!(matches!(read(&p), Err(ImagingError::Unsupported { .. })));
        std::fs::write(&p, "P5 2 2 255\n").unwrap();
        assert!(read(&p).is_err());
    }
}
