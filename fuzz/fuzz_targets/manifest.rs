//! The site's manifest parser on arbitrary CSV bytes: a cohort (with excluded rows and
//! reasons) or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("fedrad-fuzz-manifest-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("manifest.csv");
    if std::fs::write(&path, data).is_ok() {
        let schema = fedrad_shared::clinical::npc_dictionary();
        let _ = site_agent::manifest::load(&path, &schema, site_agent::manifest::ImageCheck::ExistenceOnly);
    }
});
