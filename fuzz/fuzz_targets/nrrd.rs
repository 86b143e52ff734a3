//! NRRD reader (text header, raw or gzip payload) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("fedrad-fuzz-nrrd-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("v.nrrd");
    if std::fs::write(&path, data).is_ok() {
        let _ = fedrad_imaging::nrrd::read_with_limit(&path, 1 << 22);
    }
});
