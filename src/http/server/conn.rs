//! One HTTP/1.1 connection under watch: where it is in its request cycle
//! (`Phase`) decides how long it may stay silent or slow before it is closed.
//!
//! The socket is wrapped (`Watched`) to see the first byte of each request;
//! the request body is wrapped to see its end; the response body is wrapped
//! to see the response finished (the connection is then idle). Closing is
//! dropping hyper's connection future, which drops the socket and cancels
//! the handler of a request that is still arriving.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{Permit, ServerLimits, declared_length, too_large};

/// Largest body any route accepts (`http::WEBHOOK_BODY_LIMIT`): a request
/// declaring more is refused before routing.
const LARGEST_BODY: u64 = crate::http::WEBHOOK_BODY_LIMIT as u64;

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request: since `since`; `started` once its first byte
    /// arrived. `fresh` for the connection's first request.
    Waiting { since: Instant, started: Option<Instant>, fresh: bool },
    /// A request's head arrived at `since`; its body is still arriving.
    ReadingBody { since: Instant },
    /// The body is in (or there was none): the handler and the response run.
    Handling,
}

/// Why a connection was closed by its watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Header,
    Body,
    Idle,
}

impl Expired {
    fn reason(self) -> &'static str {
        match self {
            Expired::Header => "header_timeout",
            Expired::Body => "body_timeout",
            Expired::Idle => "idle_timeout",
        }
    }
}

struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Waiting { since: Instant::now(), started: None, fresh: true }),
            changed: Notify::new(),
        }
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived from the client.
    fn bytes_read(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if let Phase::Waiting { started: started @ None, .. } = &mut *phase {
            *started = Some(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// When the current phase runs out, and what then.
    fn deadline(&self, limits: &ServerLimits) -> Option<(Instant, Expired)> {
        match *self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Waiting { started: Some(at), .. } => Some((at + limits.header_timeout, Expired::Header)),
            // A new connection owes its first request head at once.
            Phase::Waiting { since, started: None, fresh: true } => {
                Some((since + limits.header_timeout, Expired::Header))
            }
            Phase::Waiting { since, started: None, fresh: false } => Some((since + limits.idle_timeout, Expired::Idle)),
            Phase::ReadingBody { since } => Some((since + limits.body_timeout, Expired::Body)),
            Phase::Handling => None,
        }
    }

    /// Resolves when the connection has overstayed its current phase.
    async fn expired(&self, limits: &ServerLimits) -> Expired {
        loop {
            let changed = self.changed.notified();
            match self.deadline(limits) {
                None => changed.await,
                Some((at, why)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            // Still the same deadline (nothing moved on meanwhile)?
                            if self.deadline(limits).is_some_and(|(now_at, _)| now_at <= Instant::now()) {
                                return why;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

pub(super) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    router: Router,
    limits: Arc<ServerLimits>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { inner: stream, activity: Arc::clone(&activity), _permit: permit });
    let on_request = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (router, activity) = (router.clone(), Arc::clone(&on_request));
        async move { Ok::<_, std::convert::Infallible>(handle(router, activity, peer, request).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            why = activity.expired(&limits) => {
                tracing::debug!(reason = why.reason(), "HTTP connection closed");
                return;
            }
            () = stop.cancelled(), if !stopping => {
                // Idle: closes now. Mid-request: after the response.
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn handle(
    router: Router,
    activity: Arc<Activity>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    if declared_length(&request).is_some_and(|length| length > LARGEST_BODY) {
        activity.set(Phase::Handling);
        return finish(too_large(), activity);
    }
    let phase =
        if request.body().is_end_stream() { Phase::Handling } else { Phase::ReadingBody { since: Instant::now() } };
    activity.set(phase);
    let mut request = request.map(|body| Body::new(RequestBody { inner: body, activity: Arc::clone(&activity) }));
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    // A handler that answered without reading the body: nothing more is
    // read from this request.
    activity.set(Phase::Handling);
    finish(response, activity)
}

/// The response, which marks the connection idle once it is sent.
fn finish(response: Response<Body>, activity: Arc<Activity>) -> Response<Body> {
    response.map(|body| Body::new(ResponseBody { inner: body, activity: Some(activity) }))
}

/// The socket, reporting each read to the connection's watch. It holds the
/// connection's permit: the place is freed when the socket closes, also
/// after an upgrade.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _permit: Permit,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that tells the watch when it has all arrived.
struct RequestBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.activity.set(Phase::Handling);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks the connection idle once it is sent (or
/// abandoned).
struct ResponseBody {
    inner: Body,
    activity: Option<Arc<Activity>>,
}

impl ResponseBody {
    fn done(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.set(Phase::Waiting { since: Instant::now(), started: None, fresh: false });
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.done();
    }
}
