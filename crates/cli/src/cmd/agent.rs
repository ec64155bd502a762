//! `portwarden agent`: probe from another place and ship the results to the server;
//! `portwarden agent-token`: make a token for a new agent.

use std::path::PathBuf;

use clap::Args;

#[derive(Args)]
pub struct AgentArgs {
    /// The server's base URL, e.g. `https://portwarden.example:9797`.
    #[arg(long, env = "PORTWARDEN_SERVER")]
    pub server: String,
    /// This agent's token (its SHA-256 is enrolled under `agents:` on the server). Prefer the
    /// environment variable: command lines are visible to other local users.
    #[arg(long, env = "PORTWARDEN_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The location this agent probes from (must match its entry on the server).
    #[arg(long)]
    pub location: String,
    /// Where the upload queue and the stream id live.
    #[arg(long, default_value = "portwarden-agent-data")]
    pub data_dir: PathBuf,
    /// Extra CA bundle (PEM) to trust for the server's certificate.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (with --client-key).
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Largest on-disk queue while the server is unreachable (MiB); the oldest batches go first.
    #[arg(long, default_value_t = 512)]
    pub queue_limit_mb: u64,
    /// Most probes at once (default: from the file descriptor limit).
    #[arg(long)]
    pub concurrency: Option<usize>,
}

pub async fn run(a: AgentArgs) -> anyhow::Result<u8> {
    let mut opts =
        portwarden_agent::AgentOptions::new(&a.server, &a.token, &a.location, a.data_dir);
    opts.ca_file = a.ca_file;
    opts.client_cert = a.client_cert.zip(a.client_key);
    opts.queue_limit_bytes = a
        .queue_limit_mb
        .saturating_mul(1024 * 1024)
        .max(1024 * 1024);
    opts.concurrency = a.concurrency;
    match portwarden_agent::run(opts).await {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("portwarden agent: {e}");
            Ok(crate::EXIT_USAGE)
        }
    }
}

#[derive(Args)]
pub struct AgentTokenArgs {
    /// The agent's name, for the printed `agents:` entry.
    #[arg(long, default_value = "my-agent")]
    pub name: String,
    /// The agent's location, for the printed `agents:` entry.
    #[arg(long, default_value = "my-location")]
    pub location: String,
}

/// Prints a new random token (for the agent) and the config entry with its hash (for the
/// server). The server never needs the token itself.
pub fn token(a: AgentTokenArgs) -> anyhow::Result<u8> {
    let token = portwarden_server::auth::random_token(32);
    let hash = portwarden_server::auth::sha256_hex(&token);
    println!("# give the agent:  PORTWARDEN_AGENT_TOKEN={token}");
    println!("# add to the server's config:");
    println!("agents:");
    println!("  - name: {}", a.name);
    println!("    location: {}", a.location);
    println!("    token_sha256: {hash}");
    Ok(0)
}
