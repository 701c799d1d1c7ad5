//! Loopback plumbing of the benchmark: a byte-counting TCP proxy in front of every server
//! (so "bytes on the wire" include HTTP headers), the in-process FieldSync server, and the
//! admin API calls.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fieldsync_core::pipeline::Template;
use fieldsync_server::hub::{Hub, InitOptions, Limits};
use fieldsync_server::AppState;
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// Bytes that crossed a proxy, both ways.
#[derive(Debug, Default)]
pub struct Counter {
    /// Client to server.
    pub up: AtomicU64,
    /// Server to client.
    pub down: AtomicU64,
}

impl Counter {
    /// `(up, down)` so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Arc<Counter>, up: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let c = if up { &count.up } else { &count.down };
                c.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Starts a counting proxy to `upstream` on a loopback port; returns its base URL.
pub fn proxy(upstream: SocketAddr) -> Result<(String, Arc<Counter>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("proxy bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("proxy addr: {e}"))?;
    let counter = Arc::new(Counter::default());
    let c = counter.clone();
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { continue };
            let Ok(outbound) = TcpStream::connect(upstream) else {
                continue;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (Ok(i2), Ok(o2)) = (inbound.try_clone(), outbound.try_clone()) else {
                continue;
            };
            let (c1, c2) = (c.clone(), c.clone());
            std::thread::spawn(move || pump(inbound, outbound, c1, true));
            std::thread::spawn(move || pump(o2, i2, c2, false));
        }
    });
    Ok((format!("http://{addr}"), counter))
}

/// A server running on the benchmark's runtime, behind a counting proxy.
pub struct Running {
    /// Base URL (the proxy's).
    pub url: String,
    /// Bytes through the proxy.
    pub counter: Arc<Counter>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `router` on a loopback port of `rt`, behind a counting proxy.
pub fn serve_router(rt: &Runtime, router: axum::Router) -> Result<Running, String> {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("addr: {e}"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    rt.spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let (url, counter) = proxy(addr)?;
    Ok(Running {
        url,
        counter,
        stop: Some(stop),
    })
}

/// Options of the benchmark team's server.
pub fn init_options() -> InitOptions {
    InitOptions {
        team: "华东销售部 East Sales".into(),
        admin: "Admin 管理员".into(),
        template: Template::SevenStage,
    }
}

/// Creates the server's data folder (team replica and server store) and returns the
/// admin's device token. The hub is closed again so the caller can seed `team.db`.
pub fn create_server_data(data: &Path) -> Result<String, String> {
    let (hub, token) =
        Hub::open(data, &init_options(), Limits::default()).map_err(|e| format!("hub: {e:?}"))?;
    drop(hub);
    token.ok_or_else(|| "the hub did not create an admin token".to_string())
}

/// Path of the server's team replica.
pub fn team_db(data: &Path) -> PathBuf {
    data.join("team.db")
}

/// Opens the (seeded) data folder and serves the FieldSync server with
/// `fieldsync_server::run` on a loopback port, behind a counting proxy.
pub fn start_fieldsync(rt: &Runtime, data: &Path) -> Result<Running, String> {
    let (hub, _) =
        Hub::open(data, &init_options(), Limits::default()).map_err(|e| format!("hub: {e:?}"))?;
    let state = AppState::new(hub).map_err(|e| format!("state: {e:?}"))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("addr: {e}"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    rt.spawn(async move {
        let _ = fieldsync_server::run(listener, state, async move {
            let _ = stopped.await;
        })
        .await;
    });
    let (url, counter) = proxy(addr)?;
    Ok(Running {
        url,
        counter,
        stop: Some(stop),
    })
}

/// A ureq agent that keeps connections alive and returns 4xx/5xx as responses.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .into()
}

/// POSTs JSON with a bearer token; the answer's JSON.
pub fn post_json(url: &str, token: &str, path: &str, body: &Value) -> Result<Value, String> {
    let full = format!("{url}{path}");
    let mut response = agent()
        .post(&full)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(body)
        .map_err(|e| format!("{full}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| format!("{full}: {e}"))?;
    if status >= 400 {
        return Err(format!("{full}: {status} {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{full}: {e}: {text}"))
}

/// Issues a device token for `user` with the admin API.
pub fn issue_device(url: &str, admin_token: &str, user: &str) -> Result<String, String> {
    let v = post_json(
        url,
        admin_token,
        "/v1/admin/devices",
        &serde_json::json!({ "user": user }),
    )?;
    v.get("token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("no token in {v}"))
}
