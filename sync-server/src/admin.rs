//! `fieldsync-server admin ...`: the admin API from a terminal. Each command is one HTTP
//! call to a running server with an admin's (or, for departures and quarantine, a
//! manager's) device token.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Where the server is and who asks.
#[derive(Args)]
pub struct AdminArgs {
    /// Server base URL.
    #[arg(
        long,
        env = "FIELDSYNC_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// An admin's (or manager's) device token.
    #[arg(long, env = "FIELDSYNC_TOKEN")]
    token: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Add a user.
    UserAdd {
        /// Display name (unique).
        #[arg(long)]
        name: String,
        /// rep, manager or admin.
        #[arg(long)]
        role: String,
        /// Their manager (name or id).
        #[arg(long)]
        manager: Option<String>,
        /// Approval roles they sign for, comma-separated.
        #[arg(long, value_delimiter = ',')]
        approves: Vec<String>,
    },
    /// Issue a device token for a user (shown once).
    DeviceAdd {
        /// User name or id.
        #[arg(long)]
        user: String,
    },
    /// List devices.
    Devices,
    /// Revoke a device token.
    DeviceRevoke {
        /// Device id.
        device: String,
    },
    /// Mark a user departed and hand their clients to one or more new owners.
    Depart {
        /// User name or id.
        user: String,
        /// New owners (names or ids); clients are dealt round-robin.
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// Reason recorded on each handover.
        #[arg(long)]
        reason: Option<String>,
    },
    /// List uploads held for review.
    Quarantine,
    /// Accept (merge) or reject (keep unmerged) a held upload.
    Decide {
        /// Upload id.
        id: i64,
        /// Merge it.
        #[arg(long, conflicts_with = "reject")]
        accept: bool,
        /// Keep it unmerged.
        #[arg(long)]
        reject: bool,
    },
}

fn call(args: &AdminArgs, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let url = format!("{}{path}", args.server.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let auth = format!("Bearer {}", args.token);
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
        (_, Some(body)) => agent
            .post(&url)
            .header("Authorization", &auth)
            .send_json(body),
        (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
    };
    let mut response = response.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    let value: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status >= 400 {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        return Err(format!("{status}: {msg}"));
    }
    Ok(value)
}

/// Runs one admin command and prints its JSON answer.
pub async fn run(args: AdminArgs) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let out = match &args.command {
            AdminCommand::UserAdd {
                name,
                role,
                manager,
                approves,
            } => call(
                &args,
                "POST",
                "/v1/admin/users",
                Some(json!({"name": name, "role": role, "manager": manager, "approves": approves})),
            )?,
            AdminCommand::DeviceAdd { user } => call(
                &args,
                "POST",
                "/v1/admin/devices",
                Some(json!({ "user": user })),
            )?,
            AdminCommand::Devices => call(&args, "GET", "/v1/admin/devices", None)?,
            AdminCommand::DeviceRevoke { device } => call(
                &args,
                "DELETE",
                &format!("/v1/admin/devices/{device}"),
                None,
            )?,
            AdminCommand::Depart { user, to, reason } => call(
                &args,
                "POST",
                &format!("/v1/admin/users/{user}/depart"),
                Some(json!({"handover_to": to, "reason": reason})),
            )?,
            AdminCommand::Quarantine => call(&args, "GET", "/v1/admin/quarantine", None)?,
            AdminCommand::Decide { id, accept, reject } => {
                if accept == reject {
                    return Err("say --accept or --reject".to_string());
                }
                let decision = if *accept { "accept" } else { "reject" };
                call(
                    &args,
                    "POST",
                    &format!("/v1/admin/quarantine/{id}"),
                    Some(json!({ "decision": decision })),
                )?
            }
        };
        if !out.is_null() {
            println!(
                "{}",
                serde_json::to_string_pretty(&out).unwrap_or_else(|_| out.to_string())
            );
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}
