//! The HTTP edge: the only part of Careline that knows HTTP and JSON.
//!
//! Each module has its own `router()`; [`router`] merges them with the
//! OpenAPI document that utoipa builds from the handlers' annotations.

mod access;
mod agent;
mod ambulance;
mod auth;
pub mod client;
mod consult;
mod contacts;
mod desk;
pub mod error;
mod health;
pub mod json;
mod live;
mod media;
mod pages;
pub(crate) mod patient_side;
pub(crate) mod patients;
mod qr;
mod reports;
mod roster;
mod rx;
mod staff;
mod wallboard;
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::{Admin, AuthUser, Doctor, Management, Operator, SESSION_COOKIE, StaffOnDuty, Supervisor, home_of};

use crate::auth::LoginThrottle;
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a handler may need. Cheap to clone.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
    pub settings: Arc<Settings>,
    /// Growing delays after failed sign-ins, by device, (user, address) and user.
    /// A `std` mutex: nothing awaits while it is held.
    #[from_ref(skip)]
    pub login_delays: Arc<std::sync::Mutex<crate::throttle::LoginDelays>>,
    /// Failed logins per client address, looser: a helpline's operators share a NAT.
    #[from_ref(skip)]
    pub addr_throttle: Arc<LoginThrottle>,
    /// Trusted proxies, the limits on starting contacts, the metrics token.
    #[from_ref(skip)]
    pub edge: Arc<client::Edge>,
    /// Cancelled at shutdown; long-lived handlers (streams, sockets) stop on it.
    pub shutdown: CancellationToken,
    /// WhatsApp and SMS accounts (each off unless configured) and their tasks' wake-ups.
    #[from_ref(skip)]
    pub channels: crate::channels::Channels,
    /// Mail to patients, when SMTP is configured.
    #[from_ref(skip)]
    pub mailer: Option<crate::mail::Mailer>,
    /// The contact centre: routing, and updates to consoles and patients.
    pub center: crate::center::Center,
    /// The HIMS: the built-in records, or a FHIR R4 server (`--hims-fhir-url`).
    pub hims: crate::hims::HimsLink,
    /// The media plane: the server's peer connections for every call.
    #[from_ref(skip)]
    pub sfu: telemed::sfu::Sfu,
    /// Which agents have a console listening here; pauses those who have none.
    #[from_ref(skip)]
    pub presence: crate::center::Presence,
    /// This node's claim id: the outbox workers (and the ambulance handler)
    /// claim a row before sending it, so nodes sharing the database send it once.
    #[from_ref(skip)]
    pub claimant: crate::store::Claimant,
}

/// Settings the handlers read.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Whether live captions run (a whisper model is loaded): the doctor's
    /// console says so when they do not.
    pub captions: bool,
    pub secure_cookies: bool,
    pub session_ttl: chrono::Duration,
    /// Redis, when several nodes share one queue: routing state and updates
    /// go through it (and `/readyz` checks it).
    pub redis_url: Option<String>,
    /// The prefix of this deployment's Redis keys (one per database).
    pub redis_prefix: String,
    /// With Redis: how long this node's lease lasts (see `center`).
    pub node_lease: Duration,
    /// The ambulance dispatch service's webhook, when configured.
    pub dispatch_webhook: Option<String>,
    /// How undelivered ambulance requests are retried, and when the wallboard raises the alarm.
    pub dispatch: crate::dispatch::DispatchPolicy,
    /// Where the media plane listens, the ICE servers clients get, the rejoin grace.
    pub media: telemed::sfu::SfuConfig,
    /// How long an agent may have no console listening before the engine
    /// pauses them (`console gone`) and their offer moves on.
    pub presence_grace: Duration,
}

impl AppState {
    /// The state of a node: starts its contact centre (restoring routing
    /// state from the store's log) with its tasks on `tasks`.
    pub async fn new(
        store: Store,
        settings: Settings,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> anyhow::Result<Self> {
        let redis = settings.redis_url.clone().map(|url| crate::center::RedisRouting {
            url,
            prefix: settings.redis_prefix.clone(),
            lease: settings.node_lease,
        });
        let local = redis.is_none();
        // With Redis, node names must differ across machines too (every container's careline may be pid 1).
        let node = match &redis {
            None => format!("node-{}", std::process::id()),
            Some(_) => format!("node-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]),
        };
        let center = crate::center::Center::start(
            store.clone(),
            node,
            routing::RoutingConfig::default(),
            redis,
            shutdown.clone(),
            tasks,
        )
        .await?;
        let presence = crate::center::Presence::new(settings.presence_grace, local);
        tasks.spawn(presence.clone().run(center.clone(), shutdown.clone()));
        Ok(AppState {
            presence,
            hims: Arc::new(crate::hims::Builtin::new(store.clone())),
            store,
            metrics: Metrics::new(),
            sfu: telemed::sfu::Sfu::new(settings.media.clone()),
            settings: Arc::new(settings),
            // Delays by device cookie, (user, address) and user (OWASP device
            // cookies, `throttle::LoginDelays`); an address spraying many
            // usernames gets 20 failures in 15 minutes.
            login_delays: Arc::new(std::sync::Mutex::new(crate::throttle::LoginDelays::default())),
            addr_throttle: Arc::new(LoginThrottle::new(20, Duration::from_secs(15 * 60))),
            edge: Arc::new(client::Edge::default()),
            shutdown,
            mailer: None,
            channels: crate::channels::Channels::default(),
            center,
            claimant: crate::store::Claimant::of_process(),
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Careline", description = "Helpline call-centre and telemedicine platform."),
    tags(
        (name = "auth", description = "Staff login, logout and API tokens"),
        (name = "staff", description = "Staff accounts"),
        (name = "patients", description = "Patients as the helpline knows them; every read is audited"),
        (name = "roster", description = "Seats, shifts and the roster"),
        (name = "contacts", description = "Calls and chats: patients start and follow them; agents take, escalate, end and wrap up"),
        (name = "reports", description = "The day's figures and the contacts export"),
        (name = "desk", description = "Information desk: facilities, beds, stock, answers, schemes, complaints, appointments"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
struct ApiDoc;

/// The whole application: API, pages, health and the OpenAPI document.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(staff::router())
        .merge(patients::router())
        .merge(access::router())
        .merge(roster::router())
        .merge(desk::router())
        .merge(patient_side::router())
        .merge(agent::router())
        .merge(contacts::router())
        .merge(consult::router())
        .merge(ambulance::router())
        .merge(media::router())
        .merge(qr::router())
        .merge(reports::router())
        .merge(wallboard::router())
        .merge(health::router())
        .split_for_parts();
    let openapi = Arc::new(document_common_responses(openapi));
    api.route(
        "/api/openapi.json",
        axum::routing::get(move || {
            let doc = openapi.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .merge(pages::router())
    .merge(rx::router())
    .merge(webhooks::router())
    .route_layer(middleware::from_fn_with_state(state.clone(), track))
    .layer(middleware::map_response(error::problem_for_plain_errors))
    .layer(middleware::map_response(pages::security_headers))
    .layer(tower_http::trace::TraceLayer::new_for_http())
    .with_state(state)
}

/// Adds to each operation the answers that come from the request's shape
/// rather than from its handler, so the document lists every status a
/// client can get (checked by the API fuzzing in `.ci/run`):
/// - with a JSON body: 400 (not JSON), 422 (JSON, but not of the documented
///   shape: a field missing, unknown or of the wrong type), 413 (over the
///   body limit), 415 (no `Content-Type: application/json`);
/// - with query parameters, or a path parameter that is a number: 400 (a
///   parameter that does not parse, e.g. a number out of range);
/// - everywhere but the liveness probe: 503 (the database is unreachable,
///   or the routing state is being rebuilt from its log: retry).
fn document_common_responses(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{RefOr, Response};
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            let mut add = |code: &str, why: &str| {
                op.responses.responses.entry(code.to_owned()).or_insert_with(|| RefOr::T(Response::new(why)));
            };
            let parsed = op.parameters.iter().flatten().any(|p| match p.parameter_in {
                ParameterIn::Query => true,
                // A path id of a number: `/api/facilities/x` does not parse.
                ParameterIn::Path => serde_json::to_value(&p.schema).is_ok_and(|s| s["type"] != "string"),
                _ => false,
            });
            if op.request_body.is_some() {
                add("400", "The body is not JSON.");
                add("413", "The body is over the size limit.");
                add("415", "The body is not sent as `Content-Type: application/json`.");
                add(
                    "422",
                    "The body is not of the documented shape, or a value is out of its domain (the detail names the field).",
                );
            }
            if parsed {
                add("400", "A path or query parameter does not parse (the detail says which and why).");
            }
            if path != "/healthz" {
                add("503", "The database is unreachable or the routing state is being rebuilt: retry shortly.");
            }
        }
    }
    doc
}

/// Counts and times every request for `/metrics`.
async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    metrics.observe_http(&route, &method, response.status().as_u16(), started.elapsed());
    response
}
