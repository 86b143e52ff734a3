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
    /// New study CA and the coordinator's certificate. Sites make their own keys
    /// (`site-agent enroll`) and send their requests to be signed (`certs sign`).
    Init {
        #[arg(long)]
        out: PathBuf,
        /// Names or IP addresses the coordinator is reached at.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        hosts: Vec<String>,
        #[arg(long, default_value = "FedRad study")]
        study_name: String,
    },
    /// Sign a site's certificate request (request.pem from `site-agent enroll`); writes
    /// sites/<site>/cert.pem and ca.pem under the PKI folder, to send back to the site.
    Sign {
        #[arg(long)]
        pki: PathBuf,
        /// The site id the certificate is for; the request must name the same.
        #[arg(long)]
        site: String,
        #[arg(long)]
        request: PathBuf,
        /// Validity in days (renew by enrolling again before it ends).
        #[arg(long, default_value_t = fedrad_shared::pki::SITE_VALIDITY_DAYS)]
        days: u32,
    },
    /// Print the `[secure_aggregation]` section that pins each site's current key (the latest
    /// certificate signed for it and not revoked), to paste into the study file. Each
    /// hospital's operator sees these fingerprints when approving the plan and checks its own.
    Pins {
        #[arg(long)]
        pki: PathBuf,
    },
    /// Revoke every certificate issued to a site (pki/revoked.txt); a coordinator whose config
    /// names that list refuses the site from its next session on, without a restart.
    Revoke {
        #[arg(long)]
        pki: PathBuf,
        #[arg(long)]
        site: String,
        /// Why, kept in the list for whoever reads it later.
        #[arg(long, default_value = "revoked")]
        reason: String,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Certs { action: CertsAction::Init { out, hosts, study_name } } => {
            fedrad_shared::pki::StudyPki::init(&out, &study_name, &hosts)?;
            println!("study CA and the coordinator's certificate written to {}", out.display());
            println!("  coordinator: {}", out.join("coordinator").display());
            println!("each site runs `site-agent enroll --site-id SITE --out DIR` and sends you DIR/request.pem; sign it with");
            println!("  coordinator certs sign --pki {} --site SITE --request request.pem", out.display());
            println!("keep {} offline once every site has its certificate", out.join("ca.key").display());
            Ok(())
        }
        Command::Certs { action: CertsAction::Sign { pki, site, request, days } } => {
            let pem = std::fs::read_to_string(&request).with_context(|| format!("reading {}", request.display()))?;
            let dir = fedrad_shared::pki::StudyPki::open(&pki).sign_site_request(&site, &pem, days).with_context(|| format!("signing {}", request.display()))?;
            println!("{site}: certificate valid for {days} days in {}; send cert.pem and ca.pem back to the site (there is no key here)", dir.display());
            Ok(())
        }
        Command::Certs { action: CertsAction::Pins { pki } } => {
            let pins = fedrad_shared::pki::StudyPki::open(&pki).current_pins()?;
            anyhow::ensure!(!pins.is_empty(), "no site certificate issued from {} yet (`certs sign` first)", pki.display());
            println!("[secure_aggregation]");
            println!("site_keys = {{ {} }}", pins.iter().map(|(s, f)| format!("{s} = \"{f}\"")).collect::<Vec<_>>().join(", "));
            Ok(())
        }
        Command::Certs { action: CertsAction::Revoke { pki, site, reason } } => {
            let pki = fedrad_shared::pki::StudyPki::open(&pki);
            let revoked = pki.revoke_site(&site, &reason)?;
            println!("{site}: {} certificate(s) newly revoked in {}", revoked.len(), pki.revocation_list().display());
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
