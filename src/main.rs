//! The `bark-wgpu` command line: argument parsing and printing, nothing else.

use anyhow::Result;
use bark_wgpu::{Context, ContextOptions};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bark-wgpu", version, about = "Bark text-to-speech on any GPU through wgpu")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu can see (WGPU_BACKEND limits the backends searched), and the
    /// one bark-wgpu would pick.
    Devices,
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn devices() -> Result<()> {
    let opts = ContextOptions::default();
    let adapters = Context::list_adapters(&opts);
    if adapters.is_empty() {
        anyhow::bail!("no GPU adapter found; install a Vulkan driver (on Debian/Ubuntu: mesa-vulkan-drivers)");
    }
    println!(
        "{:<40} {:<8} {:<14} {:<4} {:<9} {:<10} driver",
        "name", "backend", "type", "f16", "subgroup", "timestamp"
    );
    for a in &adapters {
        println!(
            "{:<40} {:<8} {:<14} {:<4} {:<9} {:<10} {}",
            a.name,
            a.backend,
            a.device_type,
            yes(a.shader_f16),
            yes(a.subgroup),
            yes(a.timestamp_query),
            a.driver
        );
    }
    let chosen = Context::new(&opts)?;
    println!("\nchosen: {} ({})", chosen.summary().name, chosen.summary().backend);
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices => devices(),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
