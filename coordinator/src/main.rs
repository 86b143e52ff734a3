use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coordinator::config::{CoordinatorConfig, StudyConfig};

#[derive(Parser)]
#[command(version, about = "FedRad coordinator: runs a federated radiomics study over site agents that dial in.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or extend the study's certificates.
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
    /// Listen for sites and run the study in STUDY; exits when the study is done.
    Serve {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        study: PathBuf,
        /// Continue an interrupted run of this study: rounds already answered (recorded in
        /// the output folder's journal) are not asked again.
        #[arg(long)]
        resume: bool,
    },
    /// The whole federated study on a synthetic four-hospital cohort, on this machine.
    Demo(coordinator::demo::DemoArgs),
}

#[derive(Subcommand)]
enum CertsAction {
    /// New study CA, coordinator certificate and one bundle per site.
    Init {
        #[arg(long)]
        out: PathBuf,
        /// Comma-separated site ids, e.g. hospital-a,hospital-b.
        #[arg(long, value_delimiter = ',')]
        sites: Vec<String>,
        /// Names or IP addresses the coordinator is reached at.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        hosts: Vec<String>,
        #[arg(long, default_value = "FedRad study")]
        study_name: String,
    },
    /// Issue a bundle for one more site with an existing CA.
    AddSite {
        #[arg(long)]
        pki: PathBuf,
        #[arg(long)]
        site: String,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Certs { action: CertsAction::Init { out, sites, hosts, study_name } } => {
            fedrad_shared::pki::StudyPki::init(&out, &study_name, &hosts, &sites)?;
            println!("study CA and certificates written to {}", out.display());
            println!("  coordinator: {}", out.join("coordinator").display());
            for s in &sites {
                println!("  {s}: {} (hand this folder to the site's IT)", out.join("sites").join(s).display());
            }
            println!("keep {} offline once every site has its bundle", out.join("ca.key").display());
            Ok(())
        }
        Command::Certs { action: CertsAction::AddSite { pki, site } } => {
            let dir = fedrad_shared::pki::StudyPki::open(&pki).issue_site(&site)?;
            println!("{site}: {}", dir.display());
            Ok(())
        }
        Command::Serve { config, study, resume } => {
            let cfg = CoordinatorConfig::load(&config)?;
            let study = StudyConfig::load(&study)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let server = coordinator::start_server(&cfg).await?;
                let progress = coordinator::TerminalProgress::default();
                let out = study.output_dir.clone();
                let results = coordinator::study::StudyRunner::new(server.hub.clone(), study, &progress).resume(resume).run().await.context("the study failed")?;
                server.stop().await;
                println!("{}", coordinator::report::markdown(&results));
                println!("results written to {}", out.display());
                Ok(())
            })
        }
        Command::Demo(args) => coordinator::demo::run(args),
    }
}
