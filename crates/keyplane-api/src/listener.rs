//! The accept loop, in place of `axum::serve`, which sets no timer: hyper's header read timeout
//! never applied there, so a client that opened connections and never finished a request line held
//! each one forever, until the process ran out of file descriptors (issue 13, slowloris).
//!
//! Here every connection is bounded:
//! - at most `max_connections` are open at once. The next one is not accepted until one closes:
//!   it waits in the kernel's listen backlog, so the process keeps the descriptors it needs for its
//!   store and never spins on `EMFILE`;
//! - a TLS handshake must finish within `tls_handshake_timeout`;
//! - a request's headers must arrive within `header_read_timeout`. In hyper 1.x that timer also
//!   runs while a keep-alive connection sits idle waiting for its next request (hyper restarts it
//!   when a response is done), so the same bound closes idle connections; a test pins this;
//! - a write that makes no progress for `write_timeout` closes the connection: a client that
//!   pipelines requests and never reads the answers would otherwise park the connection on a full
//!   socket buffer forever (found by the attacker pass of issue 13);
//! - a body and the handler are bounded by the router's request timeout.
//!
//! On shutdown the loop stops accepting, asks every connection to close after its in-flight
//! request, and waits for them (hyper_util's graceful shutdown).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::ServerConfig;

/// Serves `app` on `listener` (over TLS when `config.tls` is set) until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = config.tls.as_ref().map(|t| t.acceptor()).transpose()?;
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let handshake_timeout = config.tls_handshake_timeout;
    let write_timeout = config.write_timeout;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            // The semaphore is never closed.
            p = slots.clone().acquire_owned() => p?,
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let conn = Conn {
            peer,
            app: app.clone(),
            http: http.clone(),
            watcher: graceful.watcher(),
            _permit: permit,
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
            stream.set_write_timeout(Some(write_timeout));
            let stream = Box::pin(stream);
            match acceptor {
                None => conn.serve(stream).await,
                // Boxed: a TLS session is kilobytes, and inline it would size every connection's
                // task, plain HTTP ones included (docs/BENCHMARKS.md, run 13).
                Some(a) => {
                    Box::pin(async move {
                        match tokio::time::timeout(handshake_timeout, a.accept(stream)).await {
                            Ok(Ok(tls)) => conn.serve(tls).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    })
                    .await
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed accept: a client that gave up before we took its connection costs nothing; anything
/// else (out of descriptors, most likely) is logged and retried after a pause instead of in a
/// busy loop.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One accepted connection and what it holds: its slot under the limit is freed when it is
/// dropped, whichever way the connection ends.
struct Conn {
    peer: SocketAddr,
    app: Router,
    http: http1::Builder,
    watcher: Watcher,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (peer, app) = (self.peer, self.app);
        // Handlers read the peer address from `ConnectInfo`, as with axum::serve.
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let conn = self.http.serve_connection(TokioIo::new(io), svc);
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "connection closed");
        }
    }
}
