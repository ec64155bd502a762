//! `portwarden serve --config FILE [--data-dir DIR] [--listen ADDR] [--store URL]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use portwarden_server::{ServeError, ServeOptions, serve};

use crate::EXIT_USAGE;

#[derive(Args)]
pub struct ServeArgs {
    /// The config file (reloaded on SIGHUP and when it changes).
    #[arg(long, short, default_value = "portwarden.yaml")]
    pub config: PathBuf,
    /// Where the embedded database lives (default: `server.data_dir`, else ./portwarden-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP API and /metrics (default: `server.listen`, else 127.0.0.1:9797).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub store: StoreArg,
}

/// `--store postgres://…` (or `PORTWARDEN_STORE`): the commands that open the daemon's store.
#[derive(Args)]
pub struct StoreArg {
    /// PostgreSQL (several replicas share one database; default: `store` in the config, else
    /// SQLite in the data directory). Prefer the environment variable: a password given as an
    /// argument is visible to every user of the machine.
    #[arg(
        long,
        env = "PORTWARDEN_STORE",
        value_name = "postgres://…",
        hide_env_values = true
    )]
    pub store: Option<String>,
}

impl StoreArg {
    pub fn url(&self) -> Option<portwarden_core::Secret> {
        self.store.clone().map(portwarden_core::Secret::new)
    }
}

pub async fn run(a: ServeArgs) -> anyhow::Result<u8> {
    let opts = ServeOptions {
        config: a.config,
        data_dir: a.data_dir,
        listen: a.listen,
        store: a.store.url(),
    };
    match serve(opts).await {
        Ok(()) => Ok(0),
        Err(ServeError::Config(diags)) => {
            eprintln!("{diags}");
            Ok(EXIT_USAGE)
        }
        Err(e) => Err(e.into()),
    }
}
