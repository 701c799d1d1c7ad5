//! Team commands: `init`, `whoami`, `user …` and `device …`.

use std::path::Path;

use fieldsync_core::pipeline::Template;
use fieldsync_core::team::Role;
use fieldsync_core::Replica;

use super::{fail, read_file, write_file, Ctx, Failure, Result};
use crate::args::{DeviceCommand, InitArgs, UserCommand};
use crate::output;

/// Removes a replica file (and SQLite's side files) that a failed `init` left behind.
fn remove_partial(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(Path::new(&p));
    }
}

/// `init --team --user [--template]` or `init --from BUNDLE`.
pub fn init(ctx: &Ctx, args: InitArgs) -> Result {
    let existed = ctx.db.exists();
    let created = match (&args.from, &args.team, &args.user) {
        (Some(from), _, _) => {
            let bytes = read_file(from)?;
            Replica::join(&ctx.db, &bytes, ctx.clock.clone())
        }
        (None, Some(team), Some(user)) => {
            let template: Template = args.template.parse()?;
            Replica::create(&ctx.db, team, user, template, ctx.clock.clone())
        }
        _ => return fail("init needs --team and --user, or --from BUNDLE"),
    };
    let replica = match created {
        Ok(r) => r,
        Err(e) => {
            // The core may have created the file before refusing (e.g. a bad client
            // document in a provisioning bundle): leave no half-made replica behind.
            if !existed {
                remove_partial(&ctx.db);
            }
            return Err(e.into());
        }
    };
    let id = replica.identity();
    ctx.print(&id, || {
        format!(
            "created {} for {} ({}) of team {}\n",
            ctx.db.display(),
            id.user_name,
            id.role.as_str(),
            id.team_name
        )
    })
}

/// `whoami`.
pub fn whoami(ctx: &Ctx) -> Result {
    let r = ctx.open()?;
    let id = r.identity();
    ctx.print(&id, || {
        format!(
            "{} ({}, {}) of team {} ({})\nuser id {}\nreplica {}\n",
            id.user_name,
            id.role.as_str(),
            if r.team()
                .members
                .get(&id.user_id)
                .is_some_and(|m| m.departed)
            {
                "departed"
            } else {
                "active"
            },
            id.team_name,
            id.team_id,
            id.user_id,
            ctx.db.display()
        )
    })
}

/// `user add | list | depart`.
pub fn user(ctx: &Ctx, cmd: UserCommand) -> Result {
    let mut r = ctx.open()?;
    match cmd {
        UserCommand::Add {
            name,
            role,
            manager,
            approves,
        } => {
            let role: Role = role.parse()?;
            let manager = manager.map(|m| r.resolve_user(&m)).transpose()?;
            let approves: Vec<String> = approves
                .into_iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect();
            let allowed = &r.team().rules.approval_roles;
            if let Some(bad) = approves.iter().find(|a| !allowed.contains(a)) {
                return fail(format!(
                    "invalid approves: {bad:?} is not an approval role; configured: {}",
                    allowed.join(", ")
                ));
            }
            if r.team().members.values().any(|m| m.name == name.trim()) {
                return fail(format!(
                    "a member named {:?} already exists; names must stay unique to be usable",
                    name.trim()
                ));
            }
            let id = r.add_user(&name, role, manager, approves)?;
            if ctx.json {
                ctx.print_json(&serde_json::json!({ "id": id.to_string() }))
            } else {
                println!("{id}");
                Ok(())
            }
        }
        UserCommand::List => ctx.print(&r.team().members, || output::members(r.team())),
        UserCommand::Depart { user } => {
            let id = r.resolve_user(&user)?;
            r.mark_departed(id)?;
            if !ctx.json {
                println!(
                    "{} marked departed; hand their clients over with `fieldsync handover --all-of {} --to USER`",
                    output::user_name(r.team(), &id.to_string()),
                    id
                );
            }
            Ok(())
        }
    }
}

/// `device add`.
pub fn device(ctx: &Ctx, cmd: DeviceCommand) -> Result {
    let mut r = ctx.open()?;
    match cmd {
        DeviceCommand::Add { user, out } => {
            let id = r.resolve_user(&user)?;
            // Make sure the bundle can be written before a device is registered.
            std::fs::File::create(&out)
                .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
            let bundle = match r.provision_device(id) {
                Ok(b) => b,
                Err(e) => {
                    let _ = std::fs::remove_file(&out);
                    return Err(e.into());
                }
            };
            write_file(&out, &bundle)?;
            if !ctx.json {
                println!(
                    "device for {} registered; on the device run `fieldsync --db FILE init --from {}`",
                    output::user_name(r.team(), &id.to_string()),
                    out.display()
                );
            }
            Ok(())
        }
    }
}
