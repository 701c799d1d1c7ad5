//! FieldSync sync server: an axum application over the team replica.
//!
//! - [`hub`]: the state and the operations (sync, join, administration), without HTTP.
//! - [`store`]: devices, token hashes, hints and quarantine, behind a trait.
//! - this module: the routes, authentication, limits, live push, and `run`.
//!
//! The protocol is in docs/protocol.md.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use fieldsync_core::team::{Member, Role};
use serde::Deserialize;
use tokio::sync::watch;

pub mod error;
pub mod hub;
pub mod metrics;
pub mod store;

use error::{AppError, AppResult};
use futures_util::StreamExt;
use hub::Hub;
use metrics::Metrics;
use store::Device;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    hub: Arc<Mutex<Hub>>,
    metrics: Arc<Metrics>,
    changes: watch::Sender<u64>,
    max_request_bytes: usize,
}

impl AppState {
    /// Wraps a hub.
    pub fn new(hub: Hub) -> AppResult<Self> {
        let seq = hub.change_seq()?;
        let max_request_bytes = hub.limits().max_request_bytes;
        Ok(AppState {
            hub: Arc::new(Mutex::new(hub)),
            metrics: Arc::new(Metrics::default()),
            changes: watch::channel(seq).0,
            max_request_bytes,
        })
    }

    /// Runs `f` on the hub on a blocking thread (SQLite and automerge work).
    async fn with_hub<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Hub) -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let hub = self.hub.clone();
        let changes = self.changes.clone();
        tokio::task::spawn_blocking(move || {
            let mut hub = hub
                .lock()
                .map_err(|_| AppError::Internal("hub lock poisoned".into()))?;
            let out = f(&mut hub);
            // Announce new changes to long-polling devices.
            if let Ok(seq) = hub.change_seq() {
                changes.send_if_modified(|current| {
                    let newer = seq > *current;
                    if newer {
                        *current = seq;
                    }
                    newer
                });
            }
            out
        })
        .await
        .map_err(|e| AppError::Internal(format!("worker failed: {e}")))?
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> AppResult<(Device, Member)> {
    let token = bearer(headers);
    state
        .with_hub(move |hub| hub.authenticate(token.as_deref()))
        .await
}

/// The application's routes.
pub fn app(state: AppState) -> Router {
    let limit = state.max_request_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/join", post(join))
        .route("/v1/sync", post(sync))
        .route("/v1/wait", get(wait))
        .route("/v1/admin/users", post(add_user))
        .route("/v1/admin/users/{user}/depart", post(depart))
        .route("/v1/admin/devices", post(issue_device).get(devices))
        .route("/v1/admin/devices/{device}", delete(revoke_device))
        .route("/v1/admin/quarantine", get(quarantined))
        .route("/v1/admin/quarantine/{id}", post(decide))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests
/// under way.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

fn binary(body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, fieldsync_core::sync::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// The provisioning bundle goes out while the hub is still writing it: the device starts
/// on the first chunk instead of waiting for the whole bundle. An error before the first
/// chunk is answered as an error; after it, the body ends short of the bundle's checksum
/// and the device writes nothing.
async fn join(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let (device, member) = authenticate(&state, &headers).await?;
    Hub::require_active(&member)?;
    let (sender, mut chunks) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let worker = {
        let state = state.clone();
        tokio::spawn(async move {
            let out = ChunkSender::new(sender);
            state.with_hub(move |hub| hub.join_into(&device, out)).await
        })
    };
    let Some(first) = chunks.recv().await else {
        return match worker.await {
            Ok(Ok(())) => Err(AppError::Internal("the bundle was empty".into())),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(AppError::Internal(format!("worker failed: {e}"))),
        };
    };
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        match worker.await {
            Ok(Ok(())) => metrics.join(),
            Ok(Err(e)) => tracing::warn!("join failed while its bundle was sent: {e}"),
            Err(e) => tracing::warn!("join worker failed: {e}"),
        }
    });
    let rest = futures_util::stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (chunk, chunks))
    });
    let body = futures_util::stream::once(async { first })
        .chain(rest)
        .map(Ok::<_, std::convert::Infallible>);
    Ok((
        [(header::CONTENT_TYPE, fieldsync_core::sync::CONTENT_TYPE)],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// Bytes written to it go to a response body in chunks of [`ChunkSender::CHUNK`]; bytes
/// not yet sent when it is dropped are never sent.
struct ChunkSender {
    sender: tokio::sync::mpsc::UnboundedSender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkSender {
    const CHUNK: usize = 256 * 1024;

    fn new(sender: tokio::sync::mpsc::UnboundedSender<Bytes>) -> Self {
        ChunkSender {
            sender,
            buf: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::CHUNK));
        self.sender.send(Bytes::from(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the device closed the connection",
            )
        })
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Response> {
    let started = Instant::now();
    let (device, member) = authenticate(&state, &headers).await?;
    let body = body.map_err(|e| {
        state.metrics.sync_error();
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::TooLarge(format!(
                "request body over the limit of {} bytes; send fewer documents per request",
                state.max_request_bytes
            ))
        } else {
            AppError::BadRequest(e.body_text())
        }
    })?;
    let body_len = body.len();
    if member.departed {
        // Access ends at once; what the phone still uploads is held for review.
        let held = state
            .with_hub(move |hub| hub.quarantine(&device, &body))
            .await?;
        if held.0.is_some() {
            state.metrics.quarantined();
        }
        let note = match held.0 {
            Some(id) => format!("; your upload is held for review as #{id}"),
            None => String::new(),
        };
        return Err(AppError::Unauthorized(format!(
            "this device's user has left the team; access is revoked{note}"
        )));
    }
    let result = state.with_hub(move |hub| hub.sync(&device, &body)).await;
    match result {
        Ok((response, stats)) => {
            state.metrics.sync(
                body_len,
                response.len(),
                stats.merged,
                stats.sent,
                started.elapsed(),
            );
            Ok(binary(response))
        }
        Err(e) => {
            state.metrics.sync_error();
            Err(e)
        }
    }
}

/// Query of `/v1/wait`.
#[derive(Deserialize)]
struct WaitQuery {
    cursor: u64,
    /// Seconds to wait at most (capped at 60).
    timeout: Option<u64>,
}

/// Long-poll live push: answers as soon as the team's change sequence passes `cursor`,
/// or after the timeout with 204.
async fn wait(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WaitQuery>,
) -> AppResult<Response> {
    let (_, member) = authenticate(&state, &headers).await?;
    Hub::require_active(&member)?;
    let mut rx = state.changes.subscribe();
    let timeout = Duration::from_secs(q.timeout.unwrap_or(25).min(60));
    let passed = tokio::time::timeout(timeout, rx.wait_for(|seq| *seq > q.cursor)).await;
    Ok(match passed {
        Ok(Ok(seq)) => Json(serde_json::json!({ "seq": *seq })).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Body of `POST /v1/admin/users`.
#[derive(Deserialize)]
struct NewUser {
    name: String,
    role: String,
    manager: Option<String>,
    #[serde(default)]
    approves: Vec<String>,
}

async fn add_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(u): Json<NewUser>,
) -> AppResult<Response> {
    let (_, member) = authenticate(&state, &headers).await?;
    let role: Role = u.role.parse()?;
    let id = state
        .with_hub(move |hub| hub.add_user(&member, &u.name, role, u.manager.as_deref(), u.approves))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "user_id": id })),
    )
        .into_response())
}

/// Body of `POST /v1/admin/devices`.
#[derive(Deserialize)]
struct NewDevice {
    user: String,
}

async fn issue_device(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(d): Json<NewDevice>,
) -> AppResult<Response> {
    let (_, member) = authenticate(&state, &headers).await?;
    let (device, token) = state
        .with_hub(move |hub| hub.issue_device(&member, &d.user))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "device_id": device, "token": token })),
    )
        .into_response())
}

async fn devices(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let (_, member) = authenticate(&state, &headers).await?;
    let list = state.with_hub(move |hub| hub.devices(&member)).await?;
    Ok(Json(list).into_response())
}

async fn revoke_device(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(device): Path<String>,
) -> AppResult<StatusCode> {
    let (_, member) = authenticate(&state, &headers).await?;
    state
        .with_hub(move |hub| hub.revoke_device(&member, &device))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/admin/users/{user}/depart`.
#[derive(Deserialize)]
struct Departure {
    handover_to: Vec<String>,
    reason: Option<String>,
}

async fn depart(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    Json(d): Json<Departure>,
) -> AppResult<Response> {
    let (device, member) = authenticate(&state, &headers).await?;
    let outcome = state
        .with_hub(move |hub| {
            hub.depart(&device, &member, &user, &d.handover_to, d.reason.as_deref())
        })
        .await?;
    Ok(Json(outcome).into_response())
}

async fn quarantined(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let (_, member) = authenticate(&state, &headers).await?;
    let list = state.with_hub(move |hub| hub.quarantined(&member)).await?;
    Ok(Json(list).into_response())
}

/// Body of `POST /v1/admin/quarantine/{id}`.
#[derive(Deserialize)]
struct Decision {
    /// `accept` or `reject`.
    decision: String,
}

async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(d): Json<Decision>,
) -> AppResult<StatusCode> {
    let (device, member) = authenticate(&state, &headers).await?;
    let accept = match d.decision.as_str() {
        "accept" => true,
        "reject" => false,
        other => {
            return Err(AppError::BadRequest(format!(
                "decision {other:?}: use accept or reject"
            )))
        }
    };
    state
        .with_hub(move |hub| hub.decide(&device, &member, id, accept))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
