//! Read-only team views: `conflicts`, `duplicates`, `board`, `report`, `overdue`.

use std::fmt::Write as _;

use super::{Ctx, Result};
use crate::output::{self, Align};

/// `conflicts`.
pub fn conflicts(ctx: &Ctx) -> Result {
    let r = ctx.open()?;
    let list = r.conflicts()?;
    ctx.print(&list, || {
        if list.is_empty() {
            return "no conflicts\n".into();
        }
        let mut out = String::new();
        for c in &list {
            let _ = writeln!(out, "{}  {}", output::short(&c.client_id), c.name);
            for f in &c.fields {
                let _ = writeln!(
                    out,
                    "  field {}: shows {:?}; concurrent value(s) {}",
                    f.field,
                    f.value,
                    output::quoted_list(&f.other_values)
                );
            }
            if c.concurrent_moves {
                out.push_str("  concurrent stage moves: review with `client show`\n");
            }
            if c.concurrent_handovers {
                out.push_str("  concurrent handovers: review with `client show`\n");
            }
        }
        out.push_str(
            "resolve a field by setting it again: `fieldsync client edit ID --set key=value`\n",
        );
        out
    })
}

/// `duplicates`.
pub fn duplicates(ctx: &Ctx) -> Result {
    let r = ctx.open()?;
    let groups = r.duplicates()?;
    ctx.print(&groups, || {
        if groups.is_empty() {
            return "no duplicates\n".into();
        }
        let mut out = String::new();
        for (i, g) in groups.iter().enumerate() {
            let rows: Vec<Vec<String>> = g
                .iter()
                .map(|m| {
                    vec![
                        output::short(&m.client_id).to_string(),
                        m.name.clone(),
                        output::user_name(r.team(), &m.owner),
                        m.matched_on.clone(),
                    ]
                })
                .collect();
            let _ = writeln!(out, "group {}:", i + 1);
            out.push_str(&output::table(
                &["id", "name", "owner", "same"],
                &[Align::Left; 4],
                &rows,
            ));
        }
        out
    })
}

/// `board`.
pub fn board(ctx: &Ctx) -> Result {
    let r = ctx.open()?;
    let b = r.board()?;
    ctx.print(&b, || output::board(&b))
}

/// `report`.
pub fn report(ctx: &Ctx) -> Result {
    let r = ctx.open()?;
    let rep = r.report()?;
    ctx.print(&rep, || output::report(r.team(), &rep))
}

/// `overdue`.
pub fn overdue(ctx: &Ctx) -> Result {
    let r = ctx.open()?;
    let groups = r.overdue()?;
    ctx.print(&groups, || {
        if groups.is_empty() {
            return "nothing is overdue\n".into();
        }
        let mut out = String::new();
        for g in &groups {
            let who = g
                .supervisor
                .as_deref()
                .map(|s| output::user_name(r.team(), s))
                .unwrap_or_else(|| "(no supervisor)".into());
            let _ = writeln!(out, "escalated to {who}:");
            out.push_str(&output::client_rows(r.team(), &g.clients, r.now()));
        }
        out
    })
}
