//! What every example shares: flags and the connection to a `cairn dev` cluster.
#![allow(dead_code)] // each example uses part of it

use std::path::PathBuf;
use std::time::Duration;

use cairn_client::Client;

/// Flags: `--dir DIR` (the `cairn dev` directory, default `./cairn-dev`), `--node ADDR`
/// (repeatable; default `127.0.0.1:7000`), `--short` (a quick run, for CI).
pub(crate) struct Args {
    pub(crate) dir: PathBuf,
    pub(crate) nodes: Vec<String>,
    pub(crate) short: bool,
}

impl Args {
    pub(crate) fn parse() -> Args {
        let mut args = Args {
            dir: PathBuf::from("./cairn-dev"),
            nodes: Vec::new(),
            short: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--dir" => args.dir = it.next().map(PathBuf::from).unwrap_or(args.dir),
                "--node" => args.nodes.extend(it.next()),
                "--short" => args.short = true,
                other => {
                    eprintln!("unknown argument {other}; flags: --dir DIR --node ADDR --short");
                    std::process::exit(2);
                }
            }
        }
        if args.nodes.is_empty() {
            args.nodes.push("127.0.0.1:7000".into());
        }
        args
    }

    /// A client that talks first to node `index` of `--node` (wrapping around).
    pub(crate) async fn client(&self, index: usize) -> Result<Client, cairn_client::Error> {
        let first = &self.nodes[index % self.nodes.len()];
        Client::builder()
            .nodes([first])
            .ca_cert(self.dir.join("ca/ca.pem"))
            .client_cert(
                self.dir.join("client/client.pem"),
                self.dir.join("client/client-key.pem"),
            )
            .options(cairn_client::Options::new().timeout(Duration::from_secs(5)))
            .build()
            .await
    }
}

/// Prints the claim and exits non-zero when it does not hold.
pub(crate) fn check(claim: &str, holds: bool) {
    if holds {
        println!("OK    {claim}");
    } else {
        println!("FAIL  {claim}");
        std::process::exit(1);
    }
}
