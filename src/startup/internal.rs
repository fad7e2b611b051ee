//! The internal listener (`METRICS_PORT`, default 9090): `/metrics` and the
//! readiness details, for Prometheus and the operator. Deployments never
//! expose it through the Ingress or the load balancer; the public listener
//! answers `/metrics` with 404 and `/health/ready` with the summary only.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::AppState;

/// Binds the internal listener on every interface (Prometheus scrapes it
/// from another pod); `0` picks a free port.
pub(super) fn bind(port: u16) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Serves the internal routes until `stop` is cancelled.
pub(super) fn serve(listener: TcpListener, state: AppState, stop: CancellationToken) -> JoinHandle<()> {
    let router = crate::http::internal_router(state);
    tokio::spawn(async move {
        let server = axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "internal HTTP server (METRICS_PORT) failed");
        }
    })
}
