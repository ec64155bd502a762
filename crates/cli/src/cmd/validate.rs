//! `portwarden validate --config FILE`.

use std::path::PathBuf;

use clap::Args;

use crate::EXIT_USAGE;

#[derive(Args)]
pub struct ValidateArgs {
    /// The config file to check.
    #[arg(long, short)]
    pub config: PathBuf,
}

pub fn run(a: ValidateArgs) -> anyhow::Result<u8> {
    match portwarden_discovery::load_file(&a.config) {
        Ok(loaded) => {
            // What only building the channels finds: URLs, templates, e-mail addresses.
            if let Err(e) = portwarden_notify::build(&loaded.config.receivers) {
                eprintln!("{e}");
                eprintln!(
                    "{}: {} receiver error{} found",
                    loaded.file,
                    e.problems.len(),
                    if e.problems.len() == 1 { "" } else { "s" }
                );
                return Ok(EXIT_USAGE);
            }
            if !loaded.warnings.is_empty() {
                eprintln!("{}", loaded.render_warnings());
            }
            let n = loaded.config.monitors.len();
            let d = loaded.discover.len();
            let discover = if d == 0 {
                String::new()
            } else {
                format!(
                    ", {d} discovery source{} (templates checked; `portwarden inventory` asks them)",
                    if d == 1 { "" } else { "s" }
                )
            };
            println!(
                "{}: OK, {n} monitor{}{discover} ({} warning{})",
                loaded.file,
                if n == 1 { "" } else { "s" },
                loaded.warnings.len(),
                if loaded.warnings.len() == 1 { "" } else { "s" }
            );
            Ok(0)
        }
        Err(diags) => {
            eprintln!("{diags}");
            let n = diags.errors().count();
            eprintln!(
                "{}: {n} error{} found",
                diags.file,
                if n == 1 { "" } else { "s" }
            );
            Ok(EXIT_USAGE)
        }
    }
}
