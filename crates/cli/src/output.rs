//! Human tables and machine JSON for the command line.

use clap::ValueEnum;
use portwarden_core::Observation;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Prints rows as aligned columns; the last column is not padded.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        println!("{}", s.trim_end());
    };
    line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

pub fn print_observations(obs: &[Observation], format: Format) {
    match format {
        Format::Json => {
            for o in obs {
                match serde_json::to_string(o) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("portwarden: cannot encode an observation: {e}"),
                }
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = obs
                .iter()
                .map(|o| {
                    let mut name = o.monitor.clone();
                    if name == o.target {
                        name = "-".into();
                    }
                    vec![
                        o.outcome.as_str().to_uppercase(),
                        name,
                        o.target.clone(),
                        o.address
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "-".into()),
                        ms(o.phases.dns_ms),
                        ms(o.phases.connect_ms),
                        ms(o.phases.tls_ms),
                        ms(o.phases.protocol_ms),
                        o.error
                            .as_ref()
                            .map(|e| e.kind.to_string())
                            .unwrap_or_else(|| "-".into()),
                        o.message().unwrap_or("").to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "STATE",
                    "MONITOR",
                    "TARGET",
                    "ADDRESS",
                    "DNS_MS",
                    "CONNECT_MS",
                    "TLS_MS",
                    "PROTO_MS",
                    "ERROR",
                    "MESSAGE",
                ],
                &rows,
            );
        }
    }
}

pub fn print_catalogue(format: Format) {
    let cat = portwarden_probe::CATALOGUE;
    match format {
        Format::Json => {
            for info in cat {
                let v = serde_json::json!({
                    "name": info.name,
                    "transport": info.transport,
                    "default_port": info.default_port,
                    "summary": info.summary,
                    "options": info.options.iter().map(|(k, d)| serde_json::json!({"name": k, "description": d})).collect::<Vec<_>>(),
                });
                println!("{v}");
            }
        }
        Format::Table => {
            for info in cat {
                let port = info
                    .default_port
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into());
                println!("{} ({}, default port {port})", info.name, info.transport);
                println!("    {}", info.summary);
                for (k, d) in info.options {
                    println!("    {k:<22} {d}");
                }
                println!();
            }
        }
    }
}
