//! An HTTP service with axum over SQLite: `GET /users/{id}` serves a user
//! as JSON through a `#[cache]` function that queries the database, so
//! repeated requests do not reach it. Prometheus scrapes `GET /metrics`
//! (cachekit's counters among them) and a readiness probe calls
//! `GET /health`.
//!
//! ```text
//! cargo run --example axum_service --features metrics
//! curl -i http://127.0.0.1:3000/users/1      # x-db-queries: 1
//! curl -i http://127.0.0.1:3000/users/1      # from the cache: still 1
//! curl -s http://127.0.0.1:3000/metrics | grep cachekit_
//! curl -s http://127.0.0.1:3000/health
//! ```
//!
//! The cache is in process by default; any backend configuration works
//! with its feature, e.g. memcached with `--features metrics,memcached` and
//! `CACHEKIT_MEMCACHED_SERVERS=127.0.0.1:11211`. A broken configuration
//! stops the service at startup with the error. `AXUM_SERVICE_ADDR`
//! changes the listen address (default `127.0.0.1:3000`); the first line
//! printed is `listening on http://ADDR`. Ctrl-C stops it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cachekit::cache;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// The listen address when `AXUM_SERVICE_ADDR` is not set.
const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// The users the database starts with.
const SEED: &[(i64, &str, &str)] = &[
    (1, "Ada Lovelace", "ada@example.com"),
    (2, "Grace Hopper", "grace@example.com"),
    (3, "Alan Turing", "alan@example.com"),
];

/// A row of the `users` table, as stored in the cache and served as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: i64,
    name: String,
    email: String,
}

/// What a failed query returns: not cached, answered with a 500.
type DbError = Box<dyn std::error::Error + Send + Sync>;

/// The database: one SQLite connection, and how many queries reached it.
#[derive(Clone)]
struct Db {
    /// SQLite calls block: they run on tokio's blocking threads, one at a
    /// time on this connection (a pool would give several).
    connection: Arc<Mutex<Connection>>,
    /// Queries run since startup, served as `x-db-queries`.
    queries: Arc<AtomicU64>,
}

impl Db {
    /// An in-memory database with the `users` table and its seed rows.
    fn open() -> rusqlite::Result<Self> {
        let connection = Connection::open_in_memory()?;
        connection.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)",
        )?;
        for (id, name, email) in SEED {
            connection.execute(
                "INSERT INTO users (id, name, email) VALUES (?1, ?2, ?3)",
                (id, name, email),
            )?;
        }
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            queries: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The user `id`, or `None`: the query runs on a blocking thread, so it
    /// never stalls the async workers that serve other requests.
    async fn user(&self, id: i64) -> Result<Option<User>, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            db.queries.fetch_add(1, Ordering::Relaxed);
            let connection = db
                .connection
                .lock()
                .map_err(|_| "the connection is poisoned")?;
            let user = connection
                .query_row(
                    "SELECT id, name, email FROM users WHERE id = ?1",
                    [id],
                    |row| {
                        Ok(User {
                            id: row.get(0)?,
                            name: row.get(1)?,
                            email: row.get(2)?,
                        })
                    },
                )
                .optional()?;
            Ok(user)
        })
        .await?
    }
}

/// The user `id` for 30 seconds: `Ok` results are cached (`None` too, so an
/// unknown id does not query the database at every request), errors are not.
/// The database handle is not part of the key.
#[cache(ttl = "30s", namespace = "users", skip(db))]
async fn find_user(db: &Db, id: i64) -> Result<Option<User>, DbError> {
    db.user(id).await
}

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    /// The users' database.
    db: Db,
    /// Renders what the installed recorder holds.
    metrics: PrometheusHandle,
}

/// `GET /users/{id}`: the user as JSON, or 404; `x-db-queries` says how many
/// queries the database has run so far.
async fn get_user(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    let found = find_user(&state.db, id).await;
    let queries = state.db.queries.load(Ordering::Relaxed).to_string();
    let header = [("x-db-queries", queries)];
    match found {
        Ok(Some(user)) => (header, Json(user)).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, header, "no such user\n").into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            header,
            format!("{error}\n"),
        )
            .into_response(),
    }
}

/// `GET /metrics`: every metric recorded so far, in Prometheus text format.
async fn metrics_page(State(state): State<AppState>) -> String {
    state.metrics.render()
}

/// `GET /health`: 200 when every cache backend in use answers, else 503;
/// one line per backend either way.
async fn readiness() -> (StatusCode, String) {
    let report = cachekit::health().await;
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let lines: String = report
        .backends
        .iter()
        .map(|entry| match &entry.health {
            Ok(_) => format!("{}: up\n", entry.backend),
            Err(error) => format!("{}: {error}\n", entry.backend),
        })
        .collect();
    (status, lines)
}

#[tokio::main]
async fn main() -> ExitCode {
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("axum_service: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up metrics, the cache and the database, then serves until Ctrl-C.
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("AXUM_SERVICE_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_owned());

    // First: cachekit registers its metrics when a cache is built, and the
    // recorder sees only those registered after it is installed. No
    // listener of its own: /metrics is a route of this service.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    // Histograms and summaries grow until upkeep drains them.
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });

    // A broken configuration stops the service here, not at the first request.
    cachekit::init()?;

    let db = Db::open()?;
    let app = Router::new()
        .route("/users/{id}", get(get_user))
        .route("/metrics", get(metrics_page))
        .route("/health", get(readiness))
        .with_state(AppState { db, metrics });

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("AXUM_SERVICE_ADDR {addr}: {error}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // An error here means no signal handler: then run until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await?;
    println!("stopped");
    Ok(())
}
