//! The host's admin HTTP endpoint, off unless `--admin-addr` is given: the
//! routes every binary serves (see [`weblog_common::admin`]) plus
//! `POST /reload`.
//!
//! `POST /reload` starts a plugin swap like SIGHUP and responds once the
//! candidate is checked: 200 when it is swapped in before the next batch
//! or when the file contains the running plugin, 422 with the reason when
//! it is refused. The endpoint has no authentication, so it binds only to
//! loopback addresses unless `--admin-allow-remote` is given, and even then
//! `POST /reload` rejects clients that are not on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weblog_common::admin::{reply, AdminResponse, AdminServer};

use crate::swap::{ReloadReply, ReloadRequest};

/// Binds `addr` and serves the admin routes and reload requests on it
/// until `shutdown` is cancelled. Reload requests from clients that are not
/// on loopback get 403. Fails at once when `addr` cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    requests: mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let handler = Arc::new(move |request: Request<Incoming>| {
        let requests = requests.clone();
        Box::pin(handle(request, requests)) as weblog_common::admin::ResponseFuture
    });
    AdminServer::new(Some(crate::metrics::install()?))
        .route(Method::POST, "/reload", handler)
        .serve(addr, shutdown)
        .await?;
    Ok(())
}

async fn handle(
    _request: Request<Incoming>,
    requests: mpsc::Sender<ReloadRequest>,
) -> AdminResponse {
    let (sender, receiver) = oneshot::channel();
    if requests.send(sender).await.is_err() {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "host is stopping\n");
    }
    match receiver.await {
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
        Ok(ReloadReply::Refused(reason)) => reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("swap refused: {reason}\n"),
        ),
        Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, "host is stopping\n"),
    }
}
