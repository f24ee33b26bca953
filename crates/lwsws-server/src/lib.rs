//! The worker's serving side: accept connections on the listening sockets it
//! is given, speak HTTP on them, and answer each request through the one-way
//! pipeline of `pipeline.rs` (vhost → mount → handler → response).
//!
//! [`run`] is a function of (listeners, config, shutdown) and never binds a
//! socket or installs a signal handler: whoever starts a worker (today the
//! binary, later the supervisor) owns those.

mod conn;
mod error_page;
mod pipeline;

use lwsws_config::{Config, Listen};
use lwsws_router::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A listening socket already bound, and the address the config gave it.
#[derive(Debug)]
pub struct BoundListener {
    pub listen: Listen,
    pub socket: Socket,
}

/// The kinds of listening socket a vhost can have.
#[derive(Debug)]
pub enum Socket {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening socket for {listen} cannot be used: {source}")]
    Listener {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no vhost uses the listening socket for {0}")]
    UnusedListener(String),
}

/// Everything a request needs, shared by every connection of this worker.
pub(crate) struct State {
    pub config: Arc<Config>,
    pub router: Router,
}

/// Serves on `listeners` until `shutdown` is cancelled, then stops accepting
/// and waits for the connections in flight to finish.
pub async fn run(
    listeners: Vec<BoundListener>,
    config: Arc<Config>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let router = Router::new(&config);
    let state = Arc::new(State { config, router });
    let tracker = TaskTracker::new();
    let mut accept_loops = Vec::new();
    for l in listeners {
        let shown = lwsws_config::describe_listen(&l.listen);
        let index = state
            .router
            .listener_index(&l.listen)
            .ok_or_else(|| ServerError::UnusedListener(shown.clone()))?;
        let listener =
            conn::Listener::from_socket(l.socket).map_err(|source| ServerError::Listener {
                listen: shown.clone(),
                source,
            })?;
        accept_loops.push(tokio::spawn(conn::accept_loop(
            listener,
            index,
            state.clone(),
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    shutdown.cancelled().await;
    for a in accept_loops {
        let _ = a.await;
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
