//! `fedrad-radiomics`: FedRad's feature extraction on its own, for one image and mask at a time.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Handcrafted radiomic features (IBSI-coded; PyRadiomics parameter files) from an image and a mask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Extract(fedrad_radiomics::cli::ExtractArgs),
}

fn main() -> anyhow::Result<()> {
    // Before any thread starts: extraction reuses freed image buffers (see `memory`).
    fedrad_radiomics::memory::keep_freed_buffers();
    match Cli::parse().command {
        Command::Extract(args) => {
            let n = fedrad_radiomics::cli::extract_command(&args)?;
            println!("{n} features written to {}", args.out.display());
            Ok(())
        }
    }
}
