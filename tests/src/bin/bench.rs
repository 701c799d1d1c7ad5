//! The FieldSync benchmark (docs/benchmarks.md):
//!
//! ```text
//! cargo run --release -p fieldsync-tests --bin bench -- <scenario|all> [--clients N]
//!     [--devices N] [--json] [--smoke]
//! ```
//!
//! Sizes also from `FIELDSYNC_BENCH_SCALE` (a factor on the full size) and
//! `FIELDSYNC_BENCH_CLIENTS`. `--smoke` runs every scenario at a tiny size and checks only
//! that each runs and converges (CI).

use fieldsync_tests::bench::{self, Config, Harness, SCENARIOS};

fn usage() -> String {
    format!(
        "usage: bench <{}|all> [--clients N] [--devices N] [--json] [--smoke]",
        SCENARIOS.join("|")
    )
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        println!("{}", bench::child(&args[1..])?);
        return Ok(());
    }
    let mut scenario = None;
    let mut json = false;
    let mut smoke = false;
    let mut clients: Option<usize> = std::env::var("FIELDSYNC_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut devices: Option<usize> = std::env::var("FIELDSYNC_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok());
    let scale: f64 = std::env::var("FIELDSYNC_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |what: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{what} needs a number\n{}", usage()))
        };
        match a.as_str() {
            "--json" => json = true,
            "--smoke" => smoke = true,
            "--clients" => clients = Some(number("--clients")?),
            "--devices" => devices = Some(number("--devices")?),
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            s if !s.starts_with('-') && scenario.is_none() => scenario = Some(s.to_string()),
            other => return Err(format!("unexpected argument {other:?}\n{}", usage())),
        }
    }
    let scenario = scenario.ok_or_else(usage)?;
    let mut cfg = if smoke {
        Config::smoke()
    } else {
        Config::full(scale)
    };
    if let Some(n) = clients {
        let base = Config::full(n as f64 / 10_000.0);
        cfg.clients = n;
        cfg.small_clients = base.small_clients;
        cfg.changed = base.changed;
    }
    if let Some(d) = devices {
        cfg.devices = d.max(1);
    }
    let names: Vec<&str> = if scenario == "all" {
        SCENARIOS.to_vec()
    } else {
        vec![scenario.as_str()]
    };
    let mut harness = Harness::new(cfg.clone())?;
    let mut outcomes = Vec::new();
    for name in names {
        outcomes.push(harness.run(name)?);
    }
    println!("{}", bench::table(&outcomes));
    let line = serde_json::json!({
        "bench": "fieldsync",
        "machine": bench::machine(),
        "clients": cfg.clients,
        "small_clients": cfg.small_clients,
        "devices": cfg.devices,
        "smoke": cfg.smoke,
        "results": outcomes,
    });
    if json || !smoke {
        println!("{line}");
    }
    if smoke {
        println!("smoke: every scenario ran and converged");
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}
