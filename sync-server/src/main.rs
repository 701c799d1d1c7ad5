//! `fieldsync-server`: parses configuration, sets up logging, binds, and serves. Also the
//! `init` command and the `admin` commands, which call the running server's admin API.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fieldsync_server::hub::{Hub, InitOptions, Limits};
use fieldsync_server::AppState;

mod admin;

/// FieldSync sync server.
#[derive(Parser)]
#[command(name = "fieldsync-server", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the team in DATA (created on the first start, which prints the admin token).
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Address to listen on.
        #[arg(long, env = "FIELDSYNC_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Largest request body, bytes.
        #[arg(long, env = "FIELDSYNC_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024)]
        max_request_bytes: usize,
        /// Most documents in one request.
        #[arg(long, env = "FIELDSYNC_MAX_DOCS_PER_REQUEST", default_value_t = 1000)]
        max_docs_per_request: usize,
        /// Most changed documents in one response.
        #[arg(long, env = "FIELDSYNC_DOCS_PER_RESPONSE", default_value_t = 500)]
        docs_per_response: usize,
    },
    /// Create the team in DATA without serving; prints the admin token once.
    Init {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Administration through a running server's admin API.
    Admin(admin::AdminArgs),
}

#[derive(clap::Args)]
struct DataArgs {
    /// Data folder (team.db and server.db).
    #[arg(long, env = "FIELDSYNC_DATA", default_value = "fieldsync-data")]
    data: PathBuf,
    /// Team name, used when the folder is new.
    #[arg(long, env = "FIELDSYNC_TEAM", default_value = "FieldSync team")]
    team: String,
    /// The first admin's name, used when the folder is new.
    #[arg(long, env = "FIELDSYNC_ADMIN", default_value = "admin")]
    admin: String,
    /// Pipeline template for a new team: seven or five.
    #[arg(long, env = "FIELDSYNC_TEMPLATE", default_value = "seven")]
    template: String,
}

fn open(data: &DataArgs, limits: Limits) -> Result<Hub, String> {
    let template = data.template.parse().map_err(|e| format!("{e}"))?;
    let init = InitOptions {
        team: data.team.clone(),
        admin: data.admin.clone(),
        template,
    };
    let (hub, token) = Hub::open(&data.data, &init, limits).map_err(|e| match e {
        fieldsync_server::error::AppError::Internal(d) => d,
        other => other.to_string(),
    })?;
    if let Some(token) = token {
        // Shown once: only its hash is stored.
        println!("created team {:?} in {}", init.team, data.data.display());
        println!("admin device token (shown once): {token}");
    }
    Ok(hub)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIELDSYNC_LOG")
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            data,
            listen,
            max_request_bytes,
            max_docs_per_request,
            docs_per_response,
        } => {
            serve(
                data,
                listen,
                Limits {
                    max_request_bytes,
                    max_docs_per_request,
                    docs_per_response,
                },
            )
            .await
        }
        Command::Init { data } => open(&data, Limits::default()).map(|_| ()),
        Command::Admin(args) => admin::run(args).await,
    };
    if let Err(e) = result {
        eprintln!("fieldsync-server: {e}");
        std::process::exit(1);
    }
}

async fn serve(data: DataArgs, listen: String, limits: Limits) -> Result<(), String> {
    let hub = open(&data, limits)?;
    let state = AppState::new(hub).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read this line to find the port when listening on :0.
    println!("listening on http://{addr}");
    tracing::info!(%addr, data = %data.data.display(), "serving");
    fieldsync_server::run(listener, state, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
