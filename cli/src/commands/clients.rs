//! Client commands: `client …`, `search`, `note`, `stage`, `approval`, `task`, `handover`.

use std::collections::BTreeMap;

use fieldsync_core::client::NoteKind;
use fieldsync_core::fold::ClientView;
use fieldsync_core::store::read_model::ClientFilter;
use fieldsync_core::{ClientId, MoveOptions, NewClient, Replica, UserId};

use super::{fail, Ctx, Result};
use crate::args::{
    ApprovalCommand, ClientAddArgs, ClientCommand, ClientEditArgs, HandoverArgs, NoteCommand,
    StageCommand, TaskCommand,
};
use crate::output;

/// Splits `key=value`.
pub fn key_value(raw: &str) -> Result<(String, String)> {
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => fail(format!("invalid field: {raw:?} is not key=value")),
    }
}

/// Parses an amount like `12000.50` into cents exactly (no floating point).
pub fn parse_cents(raw: &str) -> Result<i64> {
    let s = raw.trim();
    let bad = || {
        fail(format!(
            "invalid amount: {raw:?} is not an amount like 12000.50 (digits, at most two decimals)"
        ))
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || (s.contains('.') && frac.is_empty())
    {
        return bad();
    }
    let Ok(whole) = whole.parse::<i64>() else {
        return bad();
    };
    let frac_cents = match frac.len() {
        0 => 0,
        1 => i64::from(frac.as_bytes()[0] - b'0') * 10,
        _ => frac.parse::<i64>().unwrap_or(0),
    };
    match whole
        .checked_mul(100)
        .and_then(|c| c.checked_add(frac_cents))
    {
        Some(c) => Ok(c),
        None => bad(),
    }
}

fn show_view(ctx: &Ctx, r: &Replica, view: &ClientView, what: &str) -> Result {
    ctx.print(view, || {
        format!(
            "{what}: {} ({}) — {} [{}], owner {}\n",
            view.name(),
            output::short(&view.id),
            view.stage_name,
            view.sla.as_str(),
            output::user_name(r.team(), &view.owner)
        )
    })
}

fn resolve_users(r: &Replica, names: &[String]) -> Result<Vec<UserId>> {
    Ok(names
        .iter()
        .map(|n| r.resolve_user(n))
        .collect::<fieldsync_core::Result<_>>()?)
}

/// `client add | edit | show | list`.
pub fn client(ctx: &Ctx, cmd: ClientCommand) -> Result {
    let mut r = ctx.open()?;
    match cmd {
        ClientCommand::Add(args) => add(ctx, &mut r, args),
        ClientCommand::Edit(args) => edit(ctx, &mut r, args),
        ClientCommand::Show { id } => {
            let id = r.resolve_client(&id)?;
            let view = r.client(&id)?;
            ctx.print(&view, || output::client(r.team(), &view))
        }
        ClientCommand::List {
            stage,
            owner,
            overdue,
        } => {
            let filter = ClientFilter {
                stage: stage
                    .map(|s| r.team().pipeline.require(&s).map(|s| s.key.clone()))
                    .transpose()?,
                owner: owner
                    .map(|o| r.resolve_user(&o).map(|u| u.to_string()))
                    .transpose()?,
                overdue_at: overdue.then(|| r.now()),
            };
            let rows = r.list(&filter)?;
            ctx.print(&rows, || output::client_rows(r.team(), &rows, r.now()))
        }
    }
}

fn add(ctx: &Ctx, r: &mut Replica, a: ClientAddArgs) -> Result {
    let mut profile = BTreeMap::new();
    for raw in &a.fields {
        let (k, v) = key_value(raw)?;
        profile.insert(k, v);
    }
    let named = [
        ("name", Some(a.name)),
        ("company", a.company),
        ("phone", a.phone),
        ("email", a.email),
        ("company_size", a.company_size),
        ("budget_range", a.budget_range),
        ("decision_maker", a.decision_maker),
        ("source", a.source),
        ("grade", a.grade),
    ];
    for (k, v) in named {
        if let Some(v) = v {
            profile.insert(k.to_string(), v);
        }
    }
    let owner = a.owner.map(|o| r.resolve_user(&o)).transpose()?;
    let id = r.create_client(NewClient {
        profile,
        tags: a.tags,
        owner,
        allow_duplicate: a.allow_duplicate,
    })?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "id": id.to_string() }))
    } else {
        println!("{id}");
        Ok(())
    }
}

fn edit(ctx: &Ctx, r: &mut Replica, a: ClientEditArgs) -> Result {
    let id = r.resolve_client(&a.id)?;
    // Check every argument before the first change is written.
    let mut fields: Vec<(String, Option<String>)> = Vec::new();
    for raw in &a.set {
        let (k, v) = key_value(raw)?;
        fields.push((k, Some(v)));
    }
    for k in &a.unset {
        fields.push((k.trim().to_string(), None));
    }
    let add = resolve_users(r, &a.collaborator_add)?;
    let remove = resolve_users(r, &a.collaborator_remove)?;
    let supervisor = a.supervisor.map(|s| r.resolve_user(&s)).transpose()?;
    let nothing = fields.is_empty()
        && a.tag_add.is_empty()
        && a.tag_remove.is_empty()
        && add.is_empty()
        && remove.is_empty()
        && supervisor.is_none();
    if nothing {
        return fail("nothing to edit: give --set, --unset, --tag-add, --tag-remove, --collaborator-add, --collaborator-remove or --supervisor");
    }
    let mut view = r.client(&id)?;
    if !fields.is_empty() {
        view = r.edit_client(&id, &fields)?;
    }
    if !a.tag_add.is_empty() || !a.tag_remove.is_empty() {
        view = r.tag_client(&id, &a.tag_add, &a.tag_remove)?;
    }
    for u in add {
        view = r.set_collaborator(&id, u, true)?;
    }
    for u in remove {
        view = r.set_collaborator(&id, u, false)?;
    }
    if let Some(s) = supervisor {
        view = r.set_supervisor(&id, Some(s))?;
    }
    show_view(ctx, r, &view, "edited")
}

/// `search QUERY`.
pub fn search(ctx: &Ctx, query: &str) -> Result {
    let r = ctx.open()?;
    let rows = r.search(query)?;
    ctx.print(&rows, || output::client_rows(r.team(), &rows, r.now()))
}

/// `note add`.
pub fn note(ctx: &Ctx, cmd: NoteCommand) -> Result {
    let mut r = ctx.open()?;
    match cmd {
        NoteCommand::Add { id, kind, text } => {
            let id = r.resolve_client(&id)?;
            let kind: NoteKind = kind.parse()?;
            let view = r.add_note(&id, kind, &text)?;
            show_view(ctx, &r, &view, &format!("{} logged", kind.as_str()))
        }
    }
}

/// `stage move`.
pub fn stage(ctx: &Ctx, cmd: StageCommand) -> Result {
    let mut r = ctx.open()?;
    match cmd {
        StageCommand::Move {
            id,
            stage,
            reason,
            skip,
            loss_reason,
        } => {
            let id = r.resolve_client(&id)?;
            let view = r.move_stage(
                &id,
                &stage,
                MoveOptions {
                    reason,
                    skip,
                    loss_reason,
                },
            )?;
            let mut what = "moved".to_string();
            if !view.onboarding.is_empty() && view.onboarding.iter().all(|t| t.done_at.is_none()) {
                what = format!(
                    "moved (onboarding tasks: {})",
                    view.onboarding
                        .iter()
                        .map(|t| t.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            show_view(ctx, &r, &view, &what)
        }
    }
}

fn resolve_quote(view: &ClientView, wanted: &str) -> Result<String> {
    let wanted = wanted.trim();
    let matches: Vec<&str> = view
        .quotes
        .iter()
        .map(|q| q.quote.id.as_str())
        .filter(|q| !wanted.is_empty() && q.starts_with(wanted))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.to_string()),
        [] => fail(format!("unknown quote {wanted}")),
        _ => fail(format!("quote {wanted:?} matches several quotes")),
    }
}

/// `approval request | decide`.
pub fn approval(ctx: &Ctx, cmd: ApprovalCommand) -> Result {
    let mut r = ctx.open()?;
    match cmd {
        ApprovalCommand::Request {
            id,
            amount,
            discount,
        } => {
            let id = r.resolve_client(&id)?;
            let cents = parse_cents(&amount)?;
            if !discount.is_finite() {
                return fail("invalid discount: must be a number between 0 and 100");
            }
            let (quote_id, view) = r.request_quote(&id, cents, discount)?;
            let quote = view.quotes.iter().find(|q| q.quote.id == quote_id);
            if ctx.json {
                ctx.print_json(&quote)
            } else {
                let needs = quote
                    .map(|q| q.quote.required_roles.join(", "))
                    .unwrap_or_default();
                println!(
                    "{quote_id}\nquote {} at {discount}% discount: {}",
                    output::cents(cents),
                    if needs.is_empty() {
                        "within the band, no approval needed".to_string()
                    } else {
                        format!("needs approval by {needs}")
                    }
                );
                Ok(())
            }
        }
        ApprovalCommand::Decide {
            id,
            quote_id,
            role,
            approve,
            reject,
            comment,
        } => {
            let id = r.resolve_client(&id)?;
            if approve == reject {
                return fail("give exactly one of --approve and --reject");
            }
            let quote_id = resolve_quote(&r.client(&id)?, &quote_id)?;
            let view = r.decide_quote(&id, &quote_id, &role, approve, comment.as_deref())?;
            let quote = view.quotes.iter().find(|q| q.quote.id == quote_id);
            ctx.print(&quote, || {
                format!(
                    "{} for {role}; quote is now {}\n",
                    if approve { "approved" } else { "rejected" },
                    quote
                        .map(|q| serde_json::to_value(&q.approval)
                            .ok()
                            .and_then(|v| v
                                .get("status")
                                .and_then(|s| s.as_str())
                                .map(str::to_string))
                            .unwrap_or_default())
                        .unwrap_or_default()
                )
            })
        }
    }
}

/// `task done`.
pub fn task(ctx: &Ctx, cmd: TaskCommand) -> Result {
    let mut r = ctx.open()?;
    match cmd {
        TaskCommand::Done { id, key } => {
            let id = r.resolve_client(&id)?;
            let view = r.complete_task(&id, &key)?;
            show_view(ctx, &r, &view, &format!("task {key} done"))
        }
    }
}

/// `handover --to (--client … | --all-of)`.
pub fn handover(ctx: &Ctx, a: HandoverArgs) -> Result {
    let mut r = ctx.open()?;
    let to = r.resolve_user(&a.to)?;
    let views = match (&a.all_of, a.clients.is_empty()) {
        (Some(from), true) => {
            let from = r.resolve_user(from)?;
            r.handover_all(from, to, a.reason.as_deref())?
        }
        (None, false) => {
            let ids: Vec<ClientId> = a
                .clients
                .iter()
                .map(|c| r.resolve_client(c))
                .collect::<fieldsync_core::Result<_>>()?;
            r.handover(&ids, to, a.reason.as_deref())?
        }
        _ => return fail("give either --client ID (repeatable) or --all-of USER"),
    };
    ctx.print(&views, || {
        let mut out = format!(
            "{} client(s) handed over to {}\n",
            views.len(),
            output::user_name(r.team(), &to.to_string())
        );
        for v in &views {
            out.push_str(&format!("  {}  {}\n", output::short(&v.id), v.name()));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_parsed_to_cents_exactly() {
        assert_eq!(parse_cents("12000.50").ok(), Some(1_200_050));
        assert_eq!(parse_cents("0.07").ok(), Some(7));
        assert_eq!(parse_cents("19.9").ok(), Some(1990));
        assert_eq!(parse_cents("42").ok(), Some(4200));
        assert_eq!(parse_cents("1.005").ok(), None);
        assert_eq!(parse_cents("-3").ok(), None);
        assert_eq!(parse_cents("1e3").ok(), None);
        assert_eq!(parse_cents("12.").ok(), None);
        assert_eq!(parse_cents("99999999999999999999").ok(), None);
    }

    #[test]
    fn fields_are_key_value() {
        assert_eq!(
            key_value("industry=制造业").ok(),
            Some(("industry".into(), "制造业".into()))
        );
        assert!(key_value("novalue").is_err());
    }
}
