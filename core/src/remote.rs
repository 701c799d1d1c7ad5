//! A blocking HTTP transport that drives the sans-IO sync against a FieldSync server
//! (feature `http`). Used by the `fieldsync` CLI and the mobile SDK; the loop is bounded.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{SyncResponse, CONTENT_TYPE};
use crate::{Clock, Error, Replica, Result};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Rounds one [`sync`] makes at most before it reports what is still pending.
pub const MAX_ROUNDS: usize = 64;

/// What a whole sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Requests sent.
    pub requests: usize,
    /// Request bytes.
    pub bytes_sent: usize,
    /// Response bytes.
    pub bytes_received: usize,
    /// Documents uploaded.
    pub uploaded: usize,
    /// Documents received with changes.
    pub downloaded: usize,
    /// Clients that changed here.
    pub changed_clients: Vec<String>,
    /// Documents still in the outbox (0 when fully in sync).
    pub pending: usize,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

fn network(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Network(format!("{url}: {e}"))
}

/// Sends `body` to `path`; a 4xx/5xx answer becomes an error with the server's message.
/// Returns the response, whose body is still to be read.
fn send(
    agent: &ureq::Agent,
    server: &str,
    token: &str,
    path: &str,
    body: &[u8],
) -> Result<(String, ureq::http::Response<ureq::Body>)> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", CONTENT_TYPE)
        .send(body)
        .map_err(|e| network(&url, e))?;
    let status = response.status().as_u16();
    if status >= 400 {
        let bytes = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| network(&url, e))?;
        let text = String::from_utf8_lossy(&bytes);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| text.into_owned());
        return Err(if status == 401 || status == 403 || status == 409 {
            Error::NotPermitted(format!("server: {message}"))
        } else if status == 422 {
            Error::Incomplete(message)
        } else {
            Error::Network(format!("server answered {status}: {message}"))
        });
    }
    Ok((url, response))
}

/// Sends `body` to `path` and returns the response bytes (see [`send`]).
fn post(
    agent: &ureq::Agent,
    server: &str,
    token: &str,
    path: &str,
    body: &[u8],
) -> Result<Vec<u8>> {
    let (url, mut response) = send(agent, server, token, path, body)?;
    response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .map_err(|e| network(&url, e))
}

/// Creates a replica at `path` for the device `token` was issued for (the new-phone fast
/// path: one provisioning bundle, read from the connection one document at a time and
/// written in one transaction), and remembers the server.
pub fn join(path: &Path, server: &str, token: &str, clock: Arc<dyn Clock>) -> Result<Replica> {
    let (_, mut response) = send(&agent(REQUEST_TIMEOUT), server, token, "/v1/join", &[])?;
    let body = response
        .body_mut()
        .with_config()
        .limit(crate::bundle::MAX_BUNDLE_BYTES as u64)
        .reader();
    let mut replica = Replica::join_from(path, std::io::BufReader::new(body), clock)?;
    replica.set_server(server, token)?;
    Ok(replica)
}

/// How [`sync`] reaches the replica: directly, or through a mutex that it holds only while
/// building a request and applying a response, never during network I/O (so an app's
/// other calls go on while a sync waits for the server).
pub trait ReplicaAccess {
    /// Runs `f` with the replica.
    fn with<T>(&mut self, f: impl FnOnce(&mut Replica) -> Result<T>) -> Result<T>;
}

impl ReplicaAccess for &mut Replica {
    fn with<T>(&mut self, f: impl FnOnce(&mut Replica) -> Result<T>) -> Result<T> {
        f(self)
    }
}

impl ReplicaAccess for &std::sync::Mutex<Replica> {
    fn with<T>(&mut self, f: impl FnOnce(&mut Replica) -> Result<T>) -> Result<T> {
        // Every change is one SQLite transaction and in-memory state is swapped only after
        // it committed, so a replica whose lock holder panicked is still consistent.
        let mut guard = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

/// Syncs until quiet: uploads the outbox, applies the server's answers and every change
/// since the cursor, and repeats while the server has more (at most [`MAX_ROUNDS`]).
/// Local edits made while a request is under way are kept: their documents stay in the
/// outbox and go up in the next round.
pub fn sync(mut replica: impl ReplicaAccess, server: &str, token: &str) -> Result<SyncReport> {
    // One agent for the whole sync: its connection is reused between rounds.
    let agent = agent(REQUEST_TIMEOUT);
    let mut report = SyncReport::default();
    let mut resent = false;
    for _ in 0..MAX_ROUNDS {
        let request = replica.with(|r| r.sync_request())?;
        let body = request.encode();
        let answer = match post(&agent, server, token, "/v1/sync", &body) {
            // The server lacks changes it once acknowledged (e.g. restored from a backup):
            // forget what it acknowledged and send these documents whole next round.
            Err(Error::Incomplete(_)) if !resent => {
                resent = true;
                replica.with(|r| r.forget_acknowledged(&request))?;
                report.requests += 1;
                continue;
            }
            other => other?,
        };
        report.requests += 1;
        report.bytes_sent += body.len();
        report.bytes_received += answer.len();
        let response = SyncResponse::decode(&answer)?;
        let progress = replica.with(|r| r.apply_sync_response(&request, response))?;
        report.uploaded += request
            .docs
            .iter()
            .filter(|d| !d.changes.is_empty())
            .count();
        report.downloaded += progress.received;
        for c in progress.changed_clients.iter() {
            if !report.changed_clients.contains(c) {
                report.changed_clients.push(c.clone());
            }
        }
        report.pending = progress.pending;
        if progress.is_quiet() {
            break;
        }
    }
    Ok(report)
}

/// Waits (long-poll) until the server's change sequence passes `cursor` or `timeout`
/// elapses; true if something changed.
pub fn wait_for_changes(server: &str, token: &str, cursor: u64, timeout: Duration) -> Result<bool> {
    let url = format!(
        "{}/v1/wait?cursor={cursor}&timeout={}",
        server.trim_end_matches('/'),
        timeout.as_secs().max(1)
    );
    let response = agent(timeout + Duration::from_secs(10))
        .get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .map_err(|e| network(&url, e))?;
    match response.status().as_u16() {
        200 => Ok(true),
        204 => Ok(false),
        401 | 403 => Err(Error::NotPermitted("server: access revoked".into())),
        other => Err(Error::Network(format!("{url}: server answered {other}"))),
    }
}
