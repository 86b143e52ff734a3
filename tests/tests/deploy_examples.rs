//! The example configs in deploy/ are what the README tells people to copy: they must parse.

use std::path::Path;

#[test]
fn deploy_examples_parse_with_the_real_loaders() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let site = site_agent::config::SiteConfig::load(&root.join("site.example.toml")).unwrap();
    assert_eq!(site.site_id, "hospital-a");
    assert_eq!(site.policy.min_count, 5);
    assert_eq!(site.server_name(), "coordinator.example.org");
    coordinator::config::CoordinatorConfig::load(&root.join("coordinator.example.toml")).unwrap();
    let study = coordinator::config::StudyConfig::load(&root.join("study.example.toml")).unwrap();
    assert_eq!(study.table1_variables().unwrap().len(), 7);
}

#[test]
fn config_mistakes_are_errors_that_name_the_problem() {
    let dir = std::env::temp_dir().join(format!("fedrad-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("site.toml");
    let base = "site_id = \"hospital-a\"\nmanifest = \"m.csv\"\nwork_dir = \"w\"\n";
    for (extra, needle) in [
        ("coordinator = \"http://x:1\"\n", "insecure_plaintext"),
        ("coordinator = \"https://x:1\"\n", "[tls]"),
        ("coordinator = \"https://x:1\"\nmin_count = 3\n", "unknown field"),
        ("coordinator = \"https://x:1\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n[policy]\nmin_count = 0\n", "min_count"),
    ] {
        std::fs::write(&p, format!("{base}{extra}")).unwrap();
        let err = site_agent::config::SiteConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    let s = dir.join("study.toml");
    std::fs::write(&s, "study_id = \"x\"\noutput_dir = \"o\"\nseed = 1\nsites = [\"a\"]\n[split]\ntraining_fraction = 1.5\n").unwrap();
    assert!(coordinator::config::StudyConfig::load(&s).unwrap_err().to_string().contains("training_fraction"));
    std::fs::write(&s, "study_id = \"x\"\noutput_dir = \"o\"\nseed = 1\nsites = [\"a\"]\n[table1]\nvariables = [\"shoe_size\"]\n").unwrap();
    assert!(coordinator::config::StudyConfig::load(&s).unwrap_err().to_string().contains("shoe_size"));
    let _ = std::fs::remove_dir_all(&dir);
}
