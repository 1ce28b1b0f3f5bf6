//! The admin HTTP endpoint, off unless `--admin-addr` is given.
//!
//! `POST /reload` starts a plugin swap like SIGHUP and responds once the
//! candidate is checked: 200 when it is swapped in before the next batch
//! or when the file contains the running plugin, 422 with the reason when
//! it is rejected. The endpoint has no authentication, so it binds only to
//! loopback addresses.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::swap::{ReloadReply, ReloadRequest};

/// Binds `addr` and serves reload requests on it until `shutdown` is
/// cancelled. Fails at once when `addr` is not a loopback address or
/// cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    requests: mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "invalid --admin-addr {addr}: the admin endpoint has no authentication, \
         so use a loopback address such as 127.0.0.1:{}",
        addr.port()
    );
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind admin address {addr}"))?;
    tracing::info!(addr = %addr, "admin endpoint listening");
    tokio::spawn(accept(listener, requests, shutdown));
    Ok(())
}

async fn accept(
    listener: TcpListener,
    requests: mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(error = %error, "failed to accept admin connection");
                continue;
            }
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, requests.clone()));
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(peer = %peer, error = %error, "admin connection failed");
            }
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    requests: mpsc::Sender<ReloadRequest>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/reload" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "not found; use POST /reload\n",
        ));
    }
    if request.method() != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "use POST /reload\n"));
    }
    let (sender, receiver) = oneshot::channel();
    if requests.send(sender).await.is_err() {
        return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, "host is stopping\n"));
    }
    let response = match receiver.await {
        Ok(ReloadReply::Swapping(identity)) => reply(
            StatusCode::OK,
            &format!(
                "swapping in {} {} {} before the next batch\n",
                identity.name, identity.version, identity.digest
            ),
        ),
        Ok(ReloadReply::Unchanged) => reply(
            StatusCode::OK,
            "the plugin file contains the running plugin\n",
        ),
        Ok(ReloadReply::Rejected(reason)) => reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("swap rejected: {reason}\n"),
        ),
        Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, "host is stopping\n"),
    };
    Ok(response)
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}
