use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use site_agent::{approval, audit, config::SiteConfig, manifest};

#[derive(Parser)]
#[command(version, about = "FedRad site agent: answers a study coordinator with aggregates only.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the coordinator and serve tasks until stopped (SIGINT/SIGTERM).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Make this site's private key (key.pem, readable by this user only; it never leaves the
    /// site) and a certificate request (request.pem) for the study coordinator to sign. Put the
    /// returned cert.pem and ca.pem beside the key and point [tls] at the folder.
    ///
    /// With --renew: a new request for the key already in OUT (its fingerprint, and so the
    /// secure-aggregation pins of the studies this site approved, stay the same), to renew the
    /// certificate before it expires.
    Enroll {
        #[arg(long)]
        site_id: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        renew: bool,
    },
    /// Load and check the manifest and every volume, print what would be excluded, and exit.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Extract radiomic features from one image and mask into a CSV
    /// (columns feature,value,ibsi_code,aggregation); the same as `fedrad-radiomics extract`.
    Extract(fedrad_radiomics::cli::ExtractArgs),
    /// Score new patients with a model the study saved (models/<sequence>/<model>/<classifier>.json):
    /// features are extracted from each patient's images with the study's settings; nothing leaves.
    Predict {
        #[arg(long)]
        model: PathBuf,
        /// CSV with patient_id, <sequence>_image, <sequence>_mask and the model's clinical columns.
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// For a model of a study that harmonised with ComBat: this site's adjustment,
        /// `<work_dir>/studies/<study>/harmonisation/<sequence>.json` (and
        /// `<sequence>.deep.json` for a model with deep features); repeat the flag.
        #[arg(long)]
        harmonisation: Vec<PathBuf>,
        /// For a model with deep features: the study's encoder weights,
        /// `<study output>/deep/<sequence>/weights.json` (checked against the model's hash);
        /// repeat the flag for a model on both sequences (one file per sequence).
        #[arg(long)]
        encoder: Vec<PathBuf>,
        /// For a model whose deep features come from the study's ONNX network: the folder
        /// that holds the approved file (this site's networks_dir; checked by SHA-256).
        #[arg(long)]
        networks: Option<PathBuf>,
    },
    /// Approve a study: its plan (every setting that shapes a task) is recorded, and from then
    /// on this site answers that study's tasks under exactly this plan and checks each task
    /// against it. Review the printed summary (and the plan itself) before approving.
    Approve {
        #[arg(long)]
        config: PathBuf,
        /// The study file the coordinator runs (its feature parameter file is read beside it).
        #[arg(long, conflicts_with = "plan")]
        study: Option<PathBuf>,
        /// Or the study's plan.json as the coordinator wrote it.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Print what approving would mean (the summary, the variables the study brings and
        /// the export columns they would be read from) and record nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the studies this site has approved.
    Studies {
        #[arg(long)]
        config: PathBuf,
    },
    /// Withdraw the approval of a study: its tasks are refused from then on.
    Withdraw {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        study_id: String,
    },
    /// Inspect the audit log of what left this site (`<work_dir>/audit.jsonl`, with the tasks as
    /// received in `<work_dir>/audit/tasks/`).
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Print a per-study summary of what was sent and refused.
    Show {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check the hash chain and the kept tasks; exits non-zero if any entry was edited, removed
    /// or inserted, or a kept task file was changed. With --receipts (the coordinator's
    /// `receipts/<site>.jsonl`), also checks that every answer the coordinator received is
    /// still in the log, which finds a log whose tail was deleted or that was rewritten.
    Verify {
        #[arg(long)]
        config: PathBuf,
        /// The coordinator's receipts for this site (may be given more than once).
        #[arg(long)]
        receipts: Vec<PathBuf>,
    },
    /// For the site's IT and data-protection officer: every aggregate a study was sent, over
    /// how many patients, how many bytes and when, every refusal with its reason, and totals.
    Report {
        #[arg(long)]
        config: PathBuf,
        /// The study's id.
        #[arg(long)]
        study: String,
    },
}

fn main() -> anyhow::Result<()> {
    // Before any thread starts: extraction reuses freed image buffers (see `memory`).
    fedrad_radiomics::memory::keep_freed_buffers();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    fedrad_shared::tls::install_crypto_provider();
    match Cli::parse().command {
        Command::Run { config } => {
            let cfg = SiteConfig::load(&config)?;
            site_agent::client::check_certificate_lifetime(&cfg)?;
            let engine = site_agent::load_engine(cfg)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(site_agent::client::run(engine, shutdown_signal()));
            Ok(())
        }
        Command::Enroll { site_id, out, renew: true } => {
            let request = fedrad_shared::pki::renewal_request(&out, &site_id)?;
            println!("{site_id}: renewal request for the key in {} (the same key, so the studies' pins stay valid)", out.join("key.pem").display());
            println!("send {} to the study coordinator; replace cert.pem in {} with the one you get back and restart the agent", request.display(), out.display());
            Ok(())
        }
        Command::Enroll { site_id, out, renew: false } => {
            let request = fedrad_shared::pki::enroll_site(&out, &site_id)?;
            println!("{site_id}: private key {} (mode 0600, stays here)", out.join("key.pem").display());
            println!("send {} to the study coordinator; put the cert.pem and ca.pem you get back into {}", request.display(), out.display());
            Ok(())
        }
        Command::Check { config } => {
            let cfg = SiteConfig::load(&config)?;
            let schema = cfg.table_schema().map_err(|e| anyhow::anyhow!(e))?;
            println!("columns of {} (after the site's [export] mapping):", cfg.manifest.display());
            for summary in manifest::column_summaries(&cfg.manifest, &schema, &cfg.export)? {
                println!("  {summary}");
            }
            let cohort = manifest::load_mapped(&cfg.manifest, &schema, &cfg.export, manifest::ImageCheck::Full)?;
            for (line, found) in &cohort.found {
                println!("line {line:>4}  {found}");
            }
            // A finding shared by many rows (one scanner protocol's voxels) is printed once.
            let mut same: std::collections::BTreeMap<(manifest::FindingKind, &str), Vec<&manifest::DataFinding>> = Default::default();
            for f in &cohort.findings {
                same.entry((f.kind, f.detail.as_str())).or_default().push(f);
            }
            for ((kind, detail), rows) in &same {
                if rows.len() > 3 {
                    let lines: Vec<String> = rows.iter().take(5).map(|f| format!("{} {}", f.line, f.sequence)).collect();
                    let more = if rows.len() > 5 { format!(", … {} more", rows.len() - 5) } else { String::new() };
                    println!("finding {:<20} on {} sequences (lines {}{more}): {detail}", kind.as_str(), rows.len(), lines.join(", "));
                } else {
                    for f in rows {
                        println!("line {:>4}  {:<12} finding {:<20} {}: {}", f.line, f.patient_id, f.kind.as_str(), f.sequence, f.detail);
                    }
                }
            }
            for e in &cohort.excluded {
                println!("line {:>4}  {:<12} {:<18} {}", e.line, e.patient_id.as_deref().unwrap_or("?"), e.reason.as_str(), e.detail);
            }
            let mut by_kind: std::collections::BTreeMap<manifest::FindingKind, usize> = Default::default();
            for f in &cohort.findings {
                *by_kind.entry(f.kind).or_default() += 1;
            }
            for (kind, n) in by_kind {
                println!("finding {}: {n} sequence(s) (the rows stay in; look at them before the study starts)", kind.as_str());
            }
            let pos = cohort.records.iter().filter(|r| r.outcome).count();
            println!("{}: {} patients loaded ({} recurrences), {} rows excluded", cfg.site_id, cohort.records.len(), pos, cohort.excluded.len());
            Ok(())
        }
        Command::Extract(args) => {
            let n = fedrad_radiomics::cli::extract_command(&args)?;
            println!("{n} features written to {}", args.out.display());
            Ok(())
        }
        Command::Predict { model, manifest, out, harmonisation, encoder, networks } => {
            let m = site_agent::predict::load_model(&model)?;
            let inputs = site_agent::predict::PredictInputs {
                harmonisation: harmonisation.iter().map(|p| site_agent::predict::load_harmonisation(p)).collect::<anyhow::Result<_>>()?,
                encoders: encoder.iter().map(|p| site_agent::predict::load_encoder(p)).collect::<anyhow::Result<_>>()?,
                networks_dir: networks,
            };
            let summary = site_agent::predict::predict(&m, &manifest, &out, &inputs)?;
            println!(
                "{} patient(s) scored with {} Model {} ({:?}), {} could not be scored; threshold {:.4}; written to {}",
                summary.scored,
                m.sequence,
                m.model,
                m.classifier,
                summary.failed,
                m.threshold,
                out.display()
            );
            if summary.scored == 0 {
                anyhow::bail!("no patient could be scored (reasons in {})", out.display());
            }
            Ok(())
        }
        Command::Approve { config, study, plan, dry_run } => {
            let cfg = SiteConfig::load_unchecked(&config)?;
            let plan = match (study, plan) {
                (Some(study), None) => fedrad_shared::plan::StudyConfig::load(&study)?.plan()?,
                (None, Some(p)) => {
                    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
                    let plan: fedrad_shared::plan::StudyPlan = serde_json::from_str(&text).with_context(|| format!("{}: not a FedRad study plan", p.display()))?;
                    plan.validate().map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                    plan
                }
                _ => anyhow::bail!("give the study file (--study study.toml) or its plan (--plan plan.json)"),
            };
            let replaced = approval::load(&cfg.work_dir, &plan.study_id).ok();
            // A variable the study brings that the site's table lacks is approved when the
            // manifest has its column (after [export.columns]) and the site lets studies read
            // it; the agent types it by the study's dictionary from its next start.
            let current = cfg.table_schema().map_err(|e| anyhow::anyhow!(e))?;
            let mut table = current.clone();
            let headers = manifest::headers(&cfg.manifest)?;
            let mut brought = Vec::new();
            for v in plan.used_variables().map_err(|e| anyhow::anyhow!(e))? {
                if !table.iter().any(|t| t.name == v.name) && headers.iter().any(|h| h == cfg.export.column(&v.name)) {
                    cfg.admissible_study_variable(&v.name).map_err(|e| anyhow::anyhow!("study {} cannot be approved here: {e}", plan.study_id))?;
                    brought.push(v.clone());
                    table.push(v);
                }
            }
            cfg.validate_against(&table).map_err(|e| anyhow::anyhow!("config {}: {e}", config.display()))?;
            // A brought variable must not take rows from the studies already approved here.
            if !brought.is_empty() {
                // Today's table, with the brought columns set aside as they are until approval.
                let mut today = cfg.export.clone();
                today.ignore.extend(brought.iter().map(|v| cfg.export.column(&v.name).to_string()));
                let before = manifest::load_mapped(&cfg.manifest, &current, &today, manifest::ImageCheck::ExistenceOnly)?;
                let after = manifest::load_mapped(&cfg.manifest, &table, &cfg.export, manifest::ImageCheck::ExistenceOnly)?;
                let lost: Vec<String> =
                    after.excluded.iter().filter(|e| !before.excluded.iter().any(|b| b.line == e.line)).map(|e| format!("line {}: {}", e.line, e.detail)).collect();
                if !lost.is_empty() {
                    anyhow::bail!(
                        "approving study {} would exclude {} row(s) from every study at this site (fix the export or its mapping first): {}",
                        plan.study_id,
                        lost.len(),
                        lost.join("; ")
                    );
                }
            }
            let describe = |v: &fedrad_shared::clinical::VariableSpec| {
                let kind = match &v.kind {
                    fedrad_shared::clinical::VariableKind::Categorical { levels } => format!("levels {}", levels.join(", ")),
                    fedrad_shared::clinical::VariableKind::Continuous { unit, .. } => format!("a number ({unit})"),
                };
                format!("{} ({kind}) from the export column `{}`", v.name, cfg.export.column(&v.name))
            };
            if dry_run {
                let preview =
                    approval::Approval { study_id: plan.study_id.clone(), plan_sha256: plan.sha256(), approved_unix_millis: 0, plan: plan.clone(), analysis_of: None };
                print!("{}", approval::summary(&preview));
                for v in &brought {
                    println!("the study brings {}", describe(v));
                }
                println!("dry run: nothing recorded");
                return Ok(());
            }
            if plan.leave_one_hospital_out && !cfg.policy.leave_one_hospital_out {
                anyhow::bail!(
                    "study {} has leave-one-hospital-out analyses, and this site's policy takes part in none (policy.leave_one_hospital_out = false): the study's sums minus those of the analysis without this site are this site's own aggregates; set it to true to approve",
                    plan.study_id
                );
            }
            if plan.per_site_results && !cfg.policy.per_site_results {
                // Refused here, not only task by task: a site that approved such a plan and
                // another version without it would answer the second's sums while the others
                // published their histograms in the first.
                anyhow::bail!(
                    "study {} publishes every site's score histograms and Table 1 (per_site_results), and this site's policy publishes none (policy.per_site_results = false): its share would be the sum minus the others'; set it to true to approve",
                    plan.study_id
                );
            }
            let own_key = cfg.key_fingerprint().map_err(|e| anyhow::anyhow!("the site's certificate: {e}"))?;
            let a = approval::approve(&cfg.work_dir, &cfg.site_id, &table, &plan, own_key.as_deref())?;
            print!("{}", approval::summary(&a));
            for v in &brought {
                println!("the study brings {}; read once the agent (re)starts", describe(v));
            }
            match replaced {
                Some(old) if old.plan_sha256 != a.plan_sha256 => {
                    println!("replaces the approval of plan {} (a split or folds already recorded for this study stay as they are)", &old.plan_sha256[..12])
                }
                _ => {}
            }
            println!("approved for {} in {}", cfg.site_id, cfg.work_dir.join("approved").display());
            Ok(())
        }
        Command::Studies { config } => {
            let cfg = SiteConfig::load(&config)?;
            let all = approval::list(&cfg.work_dir)?;
            if all.is_empty() {
                println!("no study is approved at {}", cfg.site_id);
            }
            for a in &all {
                print!("{}", approval::summary(a));
            }
            Ok(())
        }
        Command::Withdraw { config, study_id } => {
            let cfg = SiteConfig::load(&config)?;
            let a = approval::withdraw(&cfg.work_dir, &study_id)?;
            println!("withdrew the approval of study {} (plan {}); its tasks are refused from now on", a.study_id, &a.plan_sha256[..12]);
            Ok(())
        }
        Command::Audit { action } => {
            let config = match &action {
                AuditAction::Show { config } | AuditAction::Verify { config, .. } | AuditAction::Report { config, .. } => config,
            };
            let cfg = SiteConfig::load(config)?;
            let path = cfg.work_dir.join("audit.jsonl");
            let entries = audit::verify(&path).with_context(|| "the audit log failed verification")?;
            match action {
                AuditAction::Show { .. } => print_audit(&entries),
                AuditAction::Verify { receipts, .. } => {
                    let tasks = audit::verify_task_files(&path, &entries).with_context(|| "a kept task failed verification")?;
                    let start = match entries.first() {
                        Some(e) if e.genesis.is_empty() => ", starting at the all-zero genesis of an older agent",
                        _ => "",
                    };
                    println!("{}: {} entries, chain intact{start}", path.display(), entries.len());
                    println!(
                        "tasks kept in {}: {} files hash to their names; {} missing{}; {} entries without kept task bytes",
                        audit::tasks_dir(&path).display(),
                        tasks.checked,
                        tasks.missing.len(),
                        if tasks.missing.is_empty() { String::new() } else { format!(" (warning: {})", tasks.missing.join(", ")) },
                        tasks.not_kept
                    );
                    let mut problems = Vec::new();
                    for file in &receipts {
                        let rs = audit::read_receipts(file)?;
                        let found = audit::check_receipts(&entries, &rs);
                        println!("{}: {} receipts, {} not matched by the log", file.display(), rs.len(), found.len());
                        problems.extend(found.into_iter().map(|p| format!("{}: {p}", file.display())));
                    }
                    if !problems.is_empty() {
                        for p in &problems {
                            eprintln!("  {p}");
                        }
                        anyhow::bail!("{} receipt(s) name answers the audit log no longer holds: the log was truncated or rewritten", problems.len());
                    }
                }
                AuditAction::Report { study, .. } => print!("{}", audit::report(&cfg.site_id, &path, &entries, &study, cfg.policy.min_count)),
            }
            Ok(())
        }
    }
}

fn print_audit(entries: &[audit::AuditEntry]) {
    use std::collections::BTreeMap;
    let mut by_study: BTreeMap<&str, Vec<&audit::AuditEntry>> = BTreeMap::new();
    for e in entries {
        by_study.entry(&e.study_id).or_default().push(e);
    }
    for (study, es) in by_study {
        let sent: Vec<_> = es.iter().filter(|e| e.outcome.starts_with("sent")).collect();
        let bytes: u64 = sent.iter().map(|e| e.bytes_sent).sum();
        println!(
            "study {study}: {} answers sent ({bytes} bytes), {} refused, {} failed",
            sent.len(),
            es.iter().filter(|e| e.outcome == "refused").count(),
            es.iter().filter(|e| e.outcome == "failed").count()
        );
        for e in es {
            println!("  #{:<5} {:<16} {:<16} patients {:>5}  bytes {:>9}  {}", e.seq, e.kind, e.outcome, e.patient_count, e.bytes_sent, e.detail);
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
