//! The demo: a synthetic four-hospital cohort, a study CA, four `site-agent` processes and
//! this coordinator talking mutual-TLS gRPC on loopback, and every study step that exists.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

use crate::config::{CoordinatorConfig, FeatureSettings, SplitSettings, StudyConfig, Table1Settings, Timeouts};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the cohort, certificates, site work folders and results.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 328)]
    pub patients: usize,
    /// Patients per hospital instead, in order a,b,c,d (e.g. 95,85,80,68: a study team's
    /// hospitals, to see how the study fits them); overrides --patients.
    #[arg(long, value_delimiter = ',')]
    pub hospital_sizes: Option<Vec<usize>>,
    #[arg(long, default_value_t = 20260101)]
    pub seed: u64,
    /// Multiply voxel sizes (2 = 8× fewer voxels, for a quick run).
    #[arg(long, default_value_t = 1.0)]
    pub coarsen: f64,
    /// Cross-validation folds for LASSO, at most: the study lowers them until every site's
    /// folds reach its min_count (3 in the demo).
    #[arg(long, default_value_t = 10)]
    pub folds: u32,
    /// Select features at λ_1se (sparser models) instead of λ_min. (Models too large for a
    /// site's parameter limit are sized down either way.)
    #[arg(long)]
    pub lambda_1se: bool,
    /// Choose C of logistic regression and the SVMs by cross-validated AUC over
    /// 0.01, 0.1, 1, 10, 100 (the study file's `[models.search]`).
    #[arg(long)]
    pub search: bool,
    /// Skip the deep features (the federated encoder): no Model II.
    #[arg(long)]
    pub no_deep: bool,
    /// Run without secure aggregation (the results are the same; the coordinator then sees
    /// each site's answers). The plan then pins no site keys, so the sites cannot check the
    /// signed answers that recomputation forwards: the demo's sites are configured to answer
    /// such rounds anyway (`policy.unverified_rounds = true`), which a hospital should not do.
    #[arg(long)]
    pub no_secure_aggregation: bool,
    /// Harmonise site effects with ComBat (parametric, protecting the outcome and age) before
    /// selection: the study file's `[combat]`.
    #[arg(long)]
    pub combat: bool,
    /// Also validate leave-one-hospital-out: selection and models again without each hospital,
    /// validated on that hospital's patients (the study file's `[validation]`).
    #[arg(long)]
    pub leave_one_hospital_out: bool,
    /// Publish each model's AUC and Table 1 per hospital: the plan's `[validation]
    /// per_site_results`, and each demo site's `policy.per_site_results`.
    #[arg(long)]
    pub per_site_results: bool,
    /// Also select and model on both sequences together (T1WI+C and T2WI features in one
    /// table, the study file's `[selection] both_sequences`), beside each sequence's own.
    #[arg(long)]
    pub both_sequences: bool,
    /// Federated rounds of the encoder per sequence.
    #[arg(long, default_value_t = 20)]
    pub deep_rounds: u32,
    /// Put a delay line of this round-trip time (milliseconds) between the site agents and the
    /// coordinator, to measure the study over a wide-area link on one machine (0: none).
    #[arg(long, default_value_t = 0)]
    pub rtt_ms: u64,
    /// Path of the site-agent binary (default: next to this one).
    #[arg(long)]
    pub site_agent: Option<PathBuf>,
}

/// Kills the agents however the demo ends.
struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn site_agent_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name(format!("site-agent{}", std::env::consts::EXE_SUFFIX));
    if !p.is_file() {
        bail!("site-agent binary not found at {}; build it with `cargo build --release --bins` or pass --site-agent", p.display());
    }
    Ok(p)
}

/// Writes a site's config as hospital IT would.
pub fn write_site_config(path: &Path, site: &str, coordinator: &str, manifest: &Path, work: &Path, bundle: &Path) -> anyhow::Result<()> {
    let text = format!(
        "site_id = \"{site}\"\ncoordinator = \"{coordinator}\"\nmanifest = \"{}\"\nwork_dir = \"{}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n[policy]\n# Below the default 5: the smallest hospital's validation cohort has few patients of each\n# outcome class, and each class's score histogram must reach min_count (DataSHIELD's default is 3)\nmin_count = 3\n# The default (DataSHIELD's nfilter.glm): the study sizes its models to what the smallest\n# hospital fits (README: model size every site accepts)\nmax_parameter_ratio = 0.33\n# Publish this hospital's own logistic fit (a per-site result) when a secure-summed study asks\nsite_alone_baselines = true\n",
        manifest.display(),
        work.display(),
        bundle.join("ca.pem").display(),
        bundle.join("cert.pem").display(),
        bundle.join("key.pem").display()
    );
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let agent_bin = site_agent_binary(args.site_agent.clone())?;
    std::fs::create_dir_all(&args.out)?;
    let out = std::fs::canonicalize(&args.out)?;

    // 1. The cohort, as four hospitals' folders.
    // One hospital exports DICOM (series + RT structure sets), as a radiotherapy department does.
    let mut spec = fedrad_synth::default_cohort(args.seed, args.patients);
    if let Some(sizes) = &args.hospital_sizes {
        spec = spec.with_hospital_sizes(sizes).map_err(|e| anyhow::anyhow!("--hospital-sizes: {e}"))?;
    }
    let mut spec = spec.with_dicom_export("hospital-d");
    spec.coarsen = args.coarsen;
    let bar = indicatif::ProgressBar::new(spec.patients() as u64)
        .with_style(indicatif::ProgressStyle::with_template("{spinner} synthetic cohort [{bar:30}] {pos}/{len} patients ({eta})").unwrap());
    let cohort_dir = out.join("cohort");
    let cohort = fedrad_synth::generate_or_reuse(&spec, &cohort_dir, &|| bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "cohort: {} patients in {} hospitals under {} (oracle AUC {:.3})",
        cohort.truth.patients,
        cohort.manifests.len(),
        cohort_dir.display(),
        cohort.truth.oracle_auc
    );

    // 2. Certificates.
    let pki_dir = out.join("pki");
    let sites: Vec<String> = cohort.manifests.iter().map(|(s, _)| s.clone()).collect();
    let pki = if pki_dir.join("ca.key").exists() {
        let pki = fedrad_shared::pki::StudyPki::open(&pki_dir);
        pki.ensure_revocation_list()?;
        pki
    } else {
        fedrad_shared::pki::StudyPki::init(&pki_dir, "FedRad demo", &["localhost".into(), "127.0.0.1".into()])?
    };
    // Each hospital makes its own key (`site-agent enroll`, in its own folder) and the
    // coordinator signs its request: no site key is ever in the coordinator's pki/ folder.
    for site in &sites {
        let tls = out.join("sites").join(site).join("tls");
        if !tls.join("key.pem").exists() {
            let enrolled = Command::new(&agent_bin).args(["enroll", "--site-id", site, "--out"]).arg(&tls).stdout(Stdio::null()).status()?;
            anyhow::ensure!(enrolled.success(), "site {site} could not enrol");
        }
        let request = std::fs::read_to_string(tls.join("request.pem"))?;
        let signed = pki.sign_site_request(site, &request, fedrad_shared::pki::SITE_VALIDITY_DAYS)?;
        for f in ["cert.pem", "ca.pem"] {
            std::fs::copy(signed.join(f), tls.join(f))?;
        }
    }

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // 3. The coordinator, on a free loopback port.
        let cfg = CoordinatorConfig {
            listen: "127.0.0.1:0".into(),
            tls: Some(fedrad_shared::tls::TlsFiles::bundle(&pki.coordinator_bundle())),
            insecure_plaintext: false,
            max_message_bytes: fedrad_shared::DEFAULT_MAX_MESSAGE_BYTES,
            revoked: Some(pki.revocation_list()),
            issued: Some(pki_dir.join("issued.txt")),
        };
        let server = crate::start_server(&cfg).await?;
        // The agents dial the coordinator directly, or through a delay line of the given RTT.
        let delay_line = match args.rtt_ms {
            0 => None,
            ms => Some(crate::delay_line::start(server.addr, std::time::Duration::from_millis(ms)).await?),
        };
        let url = format!("https://localhost:{}", delay_line.as_ref().map_or(server.addr.port(), |l| l.addr.port()));

        let sizes = match &args.hospital_sizes {
            Some(s) => s.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("-"),
            None => args.patients.to_string(),
        };
        let study_id = format!("demo-{}-{sizes}-{}", args.seed, (args.coarsen * 100.0).round() as u64);
        // 4. The study, and its plan, which every hospital's operator approves first.
        let study = StudyConfig {
            study_id: study_id.clone(),
            output_dir: out.join("study"),
            seed: args.seed,
            sites: sites.clone(),
            timeouts: Timeouts { site_wait_secs: 120, task_secs: 600 },
            variables: fedrad_shared::clinical::npc_dictionary(),
            split: SplitSettings::default(),
            table1: Table1Settings::default(),
            features: FeatureSettings::default(),
            selection: crate::config::SelectionSettings {
                lasso: fedrad_shared::algorithms::lasso::LassoSettings { folds: args.folds, ..Default::default() },
                select_at: if args.lambda_1se { crate::config::SelectAt::Lambda1se } else { crate::config::SelectAt::LambdaMin },
                both_sequences: args.both_sequences,
                ..Default::default()
            },
            clinical_model: Default::default(),
            models: crate::config::ModelSettings { search: crate::config::SearchSettings { enabled: args.search, ..Default::default() }, ..Default::default() },
            deep: crate::config::DeepSettings { enabled: !args.no_deep, rounds: args.deep_rounds, ..Default::default() },
            limits: Default::default(),
            // Secure aggregation with the keys just signed pinned in the plan; the site-alone
            // baselines (per-site results) are opted in, and labelled so in the report.
            secure_aggregation: fedrad_shared::plan::SecureAggregationSettings {
                enabled: Some(!args.no_secure_aggregation),
                site_keys: if args.no_secure_aggregation { Default::default() } else { pki.current_pins()?.into_iter().filter(|(s, _)| sites.contains(s)).collect() },
                site_alone_baselines: true,
            },
            combat: fedrad_shared::algorithms::combat::CombatSettings { enabled: args.combat, ..Default::default() },
            validation: fedrad_shared::plan::ValidationSettings { leave_one_hospital_out: args.leave_one_hospital_out, per_site_results: args.per_site_results },
        };
        let plan_file = out.join("plan.json");
        std::fs::write(&plan_file, study.plan()?.canonical_json() + "\n")?;

        // 5. Four site agents, as separate processes with their own config and work folder,
        // each approving the study's plan first (`site-agent approve`).
        let mut agents = Agents(Vec::new());
        for (site, manifest) in &cohort.manifests {
            let dir = out.join("sites").join(site);
            let config = dir.join("site.toml");
            // A rerun starts the study afresh at every site (its split, folds and cached
            // replies are fixed per study, and the settings may have changed); the feature
            // cache, keyed by settings and file contents, stays and keeps reruns fast.
            let studies = dir.join("work").join("studies");
            for previous in std::iter::once(study_id.clone()).chain(sites.iter().map(|s| fedrad_shared::plan::held_out_study_id(&study_id, s))) {
                let previous = studies.join(previous);
                if previous.exists() {
                    std::fs::remove_dir_all(&previous)?;
                }
            }
            write_site_config(&config, site, &url, manifest, &dir.join("work"), &dir.join("tls"))?;
            if args.no_secure_aggregation {
                let mut text = std::fs::read_to_string(&config)?;
                text.push_str(
                    "# --no-secure-aggregation: no pinned keys, so recomputed rounds cannot be checked
unverified_rounds = true
",
                );
                std::fs::write(&config, text)?;
            }
            if args.leave_one_hospital_out {
                // Each hospital's consent: the study's sums minus an analysis's are its own.
                let mut text = std::fs::read_to_string(&config)?;
                text.push_str("# --leave-one-hospital-out: this hospital's aggregates become derivable\nleave_one_hospital_out = true\n");
                std::fs::write(&config, text)?;
            }
            if args.per_site_results {
                let mut text = std::fs::read_to_string(&config)?;
                text.push_str("# --per-site-results: this hospital's own AUC and Table 1 are published\nper_site_results = true\n");
                std::fs::write(&config, text)?;
            }
            let approved = Command::new(&agent_bin).args(["approve", "--config"]).arg(&config).arg("--plan").arg(&plan_file).stdout(Stdio::null()).status()?;
            anyhow::ensure!(approved.success(), "site {site} could not approve the study plan {}", plan_file.display());
            let log = std::fs::File::create(dir.join("agent.log"))?;
            let child = Command::new(&agent_bin)
                .args(["run", "--config"])
                .arg(&config)
                .env("RUST_LOG", std::env::var("FEDRAD_AGENT_LOG").unwrap_or_else(|_| "info".into()))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", agent_bin.display()))?;
            agents.0.push(child);
        }
        println!("coordinator on {url}; the study's plan approved at every site; site agents started (logs in {}/sites/*/agent.log)", out.display());
        if delay_line.is_some() {
            println!("every byte between the agents and the coordinator is delayed by {} ms each way (--rtt-ms {})", args.rtt_ms / 2, args.rtt_ms);
        }

        let progress = crate::TerminalProgress::default();
        let results = crate::study::StudyRunner::new(server.hub.clone(), study, &progress).run().await?;
        server.stop().await;
        drop(agents);

        let t = &results.split.total;
        println!();
        println!(
            "cohort: {} patients loaded, {} recurrences, {} manifest rows excluded",
            results.cohort.loaded,
            results.cohort.positives,
            results.table1.all_sites().excluded.values().sum::<u64>()
        );
        println!("split:  training {} ({} recurrences), validation {} ({} recurrences)", t.training(), t.training_positive, t.validation(), t.validation_positive);
        println!();
        let all = fedrad_shared::algorithms::table1::Table1 { scopes: results.table1.scopes[..1].to_vec() };
        println!("{}", fedrad_shared::algorithms::table1::to_markdown(&all));
        for (seq, o) in &results.extraction.total {
            let failed: u64 = o.failed.values().sum();
            println!("features {seq}: {} features per case, {} cases extracted, {} failed", o.features, o.succeeded, failed);
        }
        for d in results.deep.iter().filter(|d| !d.rounds.is_empty()) {
            let (first, last) = (d.rounds.first().map_or(f64::NAN, |r| r.loss_at_start), d.rounds.last().map_or(f64::NAN, |r| r.loss_at_start));
            println!(
                "deep {}: encoder of {} parameters trained over {} FedAvg rounds (reconstruction loss {first:.3} -> {last:.3}), {} deep features for {} patients",
                d.sequence,
                d.parameters.unwrap_or(0),
                d.rounds.len(),
                d.dimension,
                d.embedded
            );
        }
        for (seq, note) in &results.deep_notes {
            println!("deep {seq}: none: {note}");
        }
        if let Some(sel) = &results.selection {
            for q in &sel.sequences {
                let names: Vec<&str> = q.selected.iter().map(|f| f.name.trim_start_matches("original_")).collect();
                println!(
                    "selection {} ({}): {} features -> {} after filters -> {} selected by LASSO at {:?} (CV deviance {}): {}",
                    q.sequence,
                    q.group,
                    q.features,
                    q.lasso_candidates,
                    q.selected.len(),
                    q.select_at,
                    q.cv_deviance_at_selected.map_or("-".into(), |d| format!("{d:.3}")),
                    names.join(", ")
                );
            }
        }
        if let Some(c) = &results.clinical_model {
            println!("clinical model: {}", if c.selected.is_empty() { "no variable entered".to_string() } else { c.selected.join(", ") });
        }
        println!();
        for p in &results.protocol {
            println!("{:<20} {:>4} round(s), {} B to sites, {} B from sites, {:.2} s", p.step, p.rounds, p.bytes_to_sites, p.bytes_from_sites, p.seconds);
        }
        if !results.models.is_empty() {
            println!();
            print!("{}", crate::report::main_table_markdown(&results));
        }
        println!("report: {} (also report.md, results.json, models.csv)", out.join("study/report.html").display());
        println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
        anyhow::Ok(())
    })
}
