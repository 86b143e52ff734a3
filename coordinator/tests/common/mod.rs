//! What the coordinator's process tests share.

use std::path::PathBuf;
use std::process::Command;

/// The `site-agent` binary beside the coordinator's. The coordinator does not depend on the
/// site agent (it must build without it), so `cargo test -p coordinator` alone does not build
/// that binary: then it is built here, with the coordinator's profile. `cargo test --workspace`
/// (the test command) builds it before any test runs; with `-p coordinator` alone, a binary left
/// from an earlier build is used as it is.
pub fn site_agent_binary() -> PathBuf {
    let coordinator = PathBuf::from(env!("CARGO_BIN_EXE_coordinator"));
    let agent = coordinator.with_file_name(format!("site-agent{}", std::env::consts::EXE_SUFFIX));
    if !agent.exists() {
        let release = coordinator.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "release");
        let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo.args(["build", "--locked", "-p", "site-agent", "--bin", "site-agent"]);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success() && agent.exists(), "could not build {} ({status})", agent.display());
    }
    agent
}
