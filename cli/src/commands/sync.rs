//! Exchanging changes: offline (`heads`, `export`, `import`) and with a sync server
//! (`join`, `sync`).

use std::path::Path;
use std::time::Duration;

use fieldsync_core::remote::{self, SyncReport};

use super::{read_file, write_file, Ctx, Result};

/// `heads --out FILE`.
pub fn heads(ctx: &Ctx, out: &Path) -> Result {
    let r = ctx.open()?;
    let bytes = r.heads()?;
    write_file(out, &bytes)?;
    if !ctx.json {
        println!("heads written to {}", out.display());
    }
    Ok(())
}

/// `export --out FILE [--have HEADS]`.
pub fn export(ctx: &Ctx, out: &Path, have: Option<&Path>) -> Result {
    let r = ctx.open()?;
    let have = have.map(read_file).transpose()?;
    let bytes = r.export(have.as_deref())?;
    write_file(out, &bytes)?;
    if !ctx.json {
        println!(
            "bundle written to {} ({} bytes)",
            out.display(),
            bytes.len()
        );
    }
    Ok(())
}

/// `import FILE`.
pub fn import(ctx: &Ctx, file: &Path) -> Result {
    let mut r = ctx.open()?;
    let bytes = read_file(file)?;
    let summary = r.import(&bytes)?;
    ctx.print(&summary, || {
        format!(
            "imported {}: {} document(s), {} changed, {} new client(s)\n",
            file.display(),
            summary.documents,
            summary.changed,
            summary.new_clients
        )
    })
}

/// `join --server URL --token T`.
pub fn join(ctx: &Ctx, server: &str, token: &str) -> Result {
    let r = remote::join(&ctx.db, server, token, ctx.clock.clone())?;
    let me = r.identity();
    ctx.print(&me, || {
        format!(
            "joined {} as {} ({}); {} client(s) on this device\n",
            me.team_name,
            me.user_name,
            me.role.as_str(),
            r.list(&Default::default()).map(|l| l.len()).unwrap_or(0)
        )
    })
}

fn report_line(r: &SyncReport) -> String {
    format!(
        "synced: {} request(s), {} B up, {} B down, {} document(s) sent, {} received, {} pending\n",
        r.requests, r.bytes_sent, r.bytes_received, r.uploaded, r.downloaded, r.pending
    )
}

/// `sync [--watch]`.
pub fn sync(ctx: &Ctx, watch: bool, max_syncs: Option<usize>, wait_seconds: u64) -> Result {
    let mut r = ctx.open()?;
    let Some((server, token)) = r.server()? else {
        return super::fail("this replica has not joined a server; run `fieldsync join`");
    };
    let report = remote::sync(&mut r, &server, &token)?;
    ctx.print(&report, || report_line(&report))?;
    if !watch {
        return Ok(());
    }
    let mut syncs = 1;
    while max_syncs.is_none_or(|m| syncs < m) {
        let cursor = r.sync_cursor()?;
        let changed = remote::wait_for_changes(
            &server,
            &token,
            cursor,
            Duration::from_secs(wait_seconds.max(1)),
        )?;
        let pending = !r.outbox()?.is_empty();
        if changed || pending {
            let report = remote::sync(&mut r, &server, &token)?;
            ctx.print(&report, || report_line(&report))?;
            syncs += 1;
        }
    }
    Ok(())
}
