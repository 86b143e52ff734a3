//! NIfTI reader on arbitrary bytes, as `.nii` and as `.nii.gz`: a volume or a typed error,
//! never a panic or an allocation beyond the voxel limit.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("fedrad-fuzz-nifti-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let plain = dir.join("v.nii");
    if std::fs::write(&plain, data).is_ok() {
        let _ = fedrad_imaging::nifti::read_with_limit(&plain, 1 << 22);
    }
    // The same bytes as a gzip stream's payload.
    let mut gz = flate2_write(data);
    let packed = dir.join("v.nii.gz");
    if std::fs::write(&packed, &mut gz).is_ok() {
        let _ = fedrad_imaging::nifti::read_with_limit(&packed, 1 << 22);
    }
});

/// A stored (uncompressed) gzip member around `data`, so the fuzzer reaches the parser
/// behind the decompressor without a compression dependency here.
fn flate2_write(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for (k, chunk) in data.chunks(65_535).enumerate() {
        let last = (k + 1) * 65_535 >= data.len();
        out.push(last as u8);
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    if data.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 };
        }
    }
    !c
}
