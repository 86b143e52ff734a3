//! The FedRad site agent: it runs inside a hospital, loads the hospital's own images, masks
//! and clinical table, and answers the coordinator's tasks with aggregates only.

pub mod acceptance;
pub mod approval;
pub mod audit;
pub mod client;
pub mod config;
pub mod deep;
pub mod engine;
pub mod export_mapping;
pub mod features;
pub mod ledger;
pub mod manifest;
pub mod onnx;
pub mod predict;
pub mod replay;
pub mod selection;

use std::sync::Arc;

use anyhow::Context;

/// Loads config and manifest and builds the engine, logging every excluded row.
pub fn load_engine(cfg: config::SiteConfig) -> anyhow::Result<Arc<engine::SiteEngine>> {
    if cfg.insecure_plaintext {
        tracing::warn!("INSECURE: insecure_plaintext = true — no TLS, no site authentication. Development only.");
    }
    let schema = cfg.table_schema().map_err(|e| anyhow::anyhow!("site {}: {e}", cfg.site_id))?;
    let cohort = manifest::load_mapped(&cfg.manifest, &schema, &cfg.export, manifest::ImageCheck::Full)
        .with_context(|| format!("loading the manifest of site {}", cfg.site_id))?;
    for e in &cohort.excluded {
        tracing::warn!(line = e.line, patient = e.patient_id.as_deref().unwrap_or("?"), reason = e.reason.as_str(), detail = %e.detail, "manifest row excluded");
    }
    tracing::info!(site = %cfg.site_id, loaded = cohort.records.len(), excluded = cohort.excluded.len(), "manifest loaded");
    Ok(Arc::new(engine::SiteEngine::new(cfg, cohort)?))
}
