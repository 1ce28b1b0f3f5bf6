//! The admin HTTP endpoint of every binary, off unless `--admin-addr` is
//! given, and the health state it reports.
//!
//! Routes:
//! - `GET /metrics`: the Prometheus text format of [`crate::metrics`].
//! - `GET /healthz`: 200 while the binary runs its main loop, 503 before
//!   and after.
//! - `GET /readyz`: 200 while the main loop runs and every readiness check
//!   passes, else 503 with one line per failing check.
//!
//! A binary adds routes of its own with [`AdminServer::route`], such as the
//! host's `POST /reload`. The endpoint has no authentication, so
//! [`AdminArgs`] accepts only loopback addresses unless
//! `--admin-allow-remote` is given, for a pod whose probes and Prometheus
//! connect to its IP. Even then the added routes, which act rather than
//! read, reject clients that are not on a loopback address (403).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::Context;
use clap::Args;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Admin flags shared by the binaries.
#[derive(Args, Clone, Debug, Default)]
pub struct AdminArgs {
    /// Loopback address of the admin HTTP endpoint, such as
    /// 127.0.0.1:9464, serving GET /metrics, /healthz and /readyz. Port 0
    /// picks a free port, logged at start. Off by default, so that several
    /// instances on one machine do not compete for a port.
    #[arg(long, env = "WEBLOG_ADMIN_ADDR", value_name = "ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Accept a non-loopback --admin-addr such as 0.0.0.0:9464. The
    /// endpoint has no authentication: use it only where the network is
    /// restricted, for example a pod behind a NetworkPolicy.
    #[arg(long, env = "WEBLOG_ADMIN_ALLOW_REMOTE")]
    pub admin_allow_remote: bool,
}

impl AdminArgs {
    /// Returns `--admin-addr`, or `None` when it is not given. Fails on a
    /// non-loopback address without `--admin-allow-remote`, and logs a
    /// warning for one with it.
    pub fn validated_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(addr) = self.admin_addr else {
            return Ok(None);
        };
        if addr.ip().is_loopback() {
            return Ok(Some(addr));
        }
        if !self.admin_allow_remote {
            return Err(crate::usage::usage_error(format!(
                "invalid --admin-addr {addr}: the admin endpoint has no authentication, \
                 so use a loopback address such as 127.0.0.1:{}, or add \
                 --admin-allow-remote where the network is restricted",
                addr.port()
            )));
        }
        tracing::warn!(
            addr = %addr,
            "admin endpoint accepts remote clients; it has no authentication"
        );
        Ok(Some(addr))
    }
}

/// Returns the health state of this process, shared by every component
/// that registers a readiness check.
pub fn health() -> &'static Health {
    static HEALTH: OnceLock<Health> = OnceLock::new();
    HEALTH.get_or_init(Health::default)
}

/// Liveness and readiness of the process.
#[derive(Debug, Default)]
pub struct Health {
    running: AtomicBool,
    checks: Mutex<Vec<Check>>,
}

impl Health {
    /// Marks the main loop as running or not; `/healthz` follows it.
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    /// Tells whether the main loop runs.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Registers a readiness check named `name` that fails with `reason`
    /// until [`Check::pass`] is called. Registering a name again returns
    /// the existing check.
    pub fn register(&self, name: &str, reason: &str) -> Check {
        let mut checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(check) = checks.iter().find(|check| check.state.name == name) {
            return check.clone();
        }
        let check = Check {
            state: Arc::new(CheckState {
                name: name.to_string(),
                failure: Mutex::new(Some(reason.to_string())),
            }),
        };
        checks.push(check.clone());
        check
    }

    /// Returns one line per failing check, empty when the process is
    /// ready.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if !self.is_running() {
            failures.push("main loop: not running".to_string());
        }
        let checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        for check in checks.iter() {
            if let Some(reason) = check.failure() {
                failures.push(format!("{}: {reason}", check.state.name));
            }
        }
        failures
    }
}

/// One readiness check, shared by the component that updates it and the
/// endpoint that reports it.
#[derive(Clone, Debug)]
pub struct Check {
    state: Arc<CheckState>,
}

#[derive(Debug)]
struct CheckState {
    name: String,
    /// Reason the check fails, or `None` when it passes.
    failure: Mutex<Option<String>>,
}

impl Check {
    /// Marks the check as passing.
    pub fn pass(&self) {
        *self.lock() = None;
    }

    /// Marks the check as failing for `reason`.
    pub fn fail(&self, reason: impl Into<String>) {
        *self.lock() = Some(reason.into());
    }

    /// Returns the reason the check fails, or `None` when it passes.
    pub fn failure(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.state
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Paths every binary serves with GET.
const STANDARD_ROUTES: &[&str] = &["/metrics", "/healthz", "/readyz"];

/// Response of an admin route.
pub type AdminResponse = Response<Full<Bytes>>;

/// Future of an admin route's response.
pub type ResponseFuture = Pin<Box<dyn Future<Output = AdminResponse> + Send>>;

/// Handler of a route added with [`AdminServer::route`].
pub type RouteHandler = Arc<dyn Fn(Request<Incoming>) -> ResponseFuture + Send + Sync>;

/// The admin endpoint: the standard routes plus those a binary adds.
#[derive(Clone, Default)]
pub struct AdminServer {
    metrics: Option<PrometheusHandle>,
    routes: Vec<(Method, &'static str, RouteHandler)>,
}

impl AdminServer {
    /// Returns a server whose `/metrics` renders `metrics`, or is empty
    /// when it is `None`.
    pub fn new(metrics: Option<PrometheusHandle>) -> Self {
        Self {
            metrics,
            routes: Vec::new(),
        }
    }

    /// Adds a route for `method` on `path`.
    pub fn route(mut self, method: Method, path: &'static str, handler: RouteHandler) -> Self {
        self.routes.push((method, path, handler));
        self
    }

    /// Binds `addr`, checked with [`AdminArgs::validated_addr`], and serves
    /// requests until `shutdown` is cancelled. Returns the bound address,
    /// which differs from `addr` for port 0. Fails at once when `addr`
    /// cannot be bound.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("failed to bind admin address {addr}"))?;
        let bound = listener
            .local_addr()
            .with_context(|| format!("failed to read the bound address of {addr}"))?;
        tracing::info!(addr = %bound, "admin endpoint listening");
        tokio::spawn(accept(listener, Arc::new(self), shutdown));
        Ok(bound)
    }

    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> AdminResponse {
        let path = request.uri().path().to_string();
        if let Some((method, _, handler)) = self.routes.iter().find(|(_, route, _)| *route == path)
        {
            if !peer.ip().is_loopback() {
                return reply(
                    StatusCode::FORBIDDEN,
                    &format!("{method} {path} is served only to loopback clients\n"),
                );
            }
            if request.method() != method {
                return reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("use {method} {path}\n"),
                );
            }
            return handler(request).await;
        }
        if !STANDARD_ROUTES.contains(&path.as_str()) {
            return reply(StatusCode::NOT_FOUND, &self.not_found());
        }
        if request.method() != Method::GET {
            return reply(StatusCode::METHOD_NOT_ALLOWED, &format!("use GET {path}\n"));
        }
        match path.as_str() {
            "/metrics" => self.render_metrics(),
            "/readyz" => readiness(),
            _ if health().is_running() => reply(StatusCode::OK, "ok\n"),
            _ => reply(StatusCode::SERVICE_UNAVAILABLE, "main loop: not running\n"),
        }
    }

    fn render_metrics(&self) -> AdminResponse {
        let text = self
            .metrics
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default();
        let mut response = reply(StatusCode::OK, &text);
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        response
    }

    fn not_found(&self) -> String {
        let mut routes: Vec<String> = STANDARD_ROUTES
            .iter()
            .map(|path| format!("GET {path}"))
            .collect();
        routes.extend(
            self.routes
                .iter()
                .map(|(method, path, _)| format!("{method} {path}")),
        );
        format!("not found; routes: {}\n", routes.join(", "))
    }
}

fn readiness() -> AdminResponse {
    let failures = health().failures();
    if failures.is_empty() {
        return reply(StatusCode::OK, "ready\n");
    }
    let mut text = String::from("not ready\n");
    for failure in failures {
        text.push_str(&failure);
        text.push('\n');
    }
    reply(StatusCode::SERVICE_UNAVAILABLE, &text)
}

async fn accept(listener: TcpListener, server: Arc<AdminServer>, shutdown: CancellationToken) {
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
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(request, peer).await) }
            });
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(peer = %peer, error = %error, "admin connection failed");
            }
        });
    }
}

/// Builds a plain-text response.
pub fn reply(status: StatusCode, text: &str) -> AdminResponse {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin_args(addr: &str, allow_remote: bool) -> AdminArgs {
        AdminArgs {
            admin_addr: Some(addr.parse().expect("valid address")),
            admin_allow_remote: allow_remote,
        }
    }

    #[test]
    fn non_loopback_address_is_rejected() {
        let error = admin_args("0.0.0.0:9464", false)
            .validated_addr()
            .expect_err("not loopback");
        let message = error.to_string();
        assert!(message.contains("0.0.0.0:9464"), "{message}");
        assert!(message.contains("127.0.0.1:9464"), "{message}");
        assert!(message.contains("--admin-allow-remote"), "{message}");
    }

    #[test]
    fn remote_address_needs_opt_in() {
        let addr = admin_args("0.0.0.0:9464", true)
            .validated_addr()
            .expect("allowed");
        assert_eq!(addr, Some("0.0.0.0:9464".parse().expect("valid address")));
    }

    #[test]
    fn loopback_addresses_are_accepted() {
        assert!(admin_args("127.0.0.1:0", false).validated_addr().is_ok());
        assert!(admin_args("[::1]:9464", false).validated_addr().is_ok());
        assert_eq!(AdminArgs::default().validated_addr().expect("off"), None);
    }

    #[test]
    fn failing_checks_are_listed() {
        let health = Health::default();
        let broker = health.register("broker", "no broker connection is up");
        let plugin = health.register("plugin", "not loaded");
        health.set_running(true);
        plugin.pass();
        assert_eq!(health.failures(), ["broker: no broker connection is up"]);
        broker.pass();
        assert!(health.failures().is_empty());
        broker.fail("all brokers down");
        assert_eq!(health.failures(), ["broker: all brokers down"]);
    }

    #[test]
    fn stopped_main_loop_is_not_ready() {
        let health = Health::default();
        assert_eq!(health.failures(), ["main loop: not running"]);
    }
}
