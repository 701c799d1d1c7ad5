//! Offline exchange: `heads`, `export`, `import`.

use std::path::Path;

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
