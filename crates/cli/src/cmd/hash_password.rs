//! `portwarden hash-password`: reads a password from stdin (first line) and prints its argon2id
//! PHC string for `auth.users[].password_hash`.

use std::io::BufRead;

use clap::Args;

use crate::EXIT_USAGE;

#[derive(Args)]
pub struct HashPasswordArgs {}

pub fn run(_: HashPasswordArgs) -> anyhow::Result<u8> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 8 {
        eprintln!(
            "the password must have at least 8 characters (give it on stdin: `echo -n ... | portwarden hash-password`)"
        );
        return Ok(EXIT_USAGE);
    }
    let hash = portwarden_server::auth::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(0)
}
