//! Server-rendered pages (askama templates, compiled into the binary) and
//! their small ES modules. No Node toolchain is needed to build or run them.
//!
//! The language comes from `?lang=hi|en`, then the `careline_lang` cookie,
//! then Hindi, the helpline's first language.

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::{AppState, AuthUser, home_of};
use crate::i18n::{Lang, Words};
use crate::store::{Role, Seat, Staff, Store};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(login_page))
        .route("/call", get(call_page))
        .route("/operator", get(console_page))
        .route("/doctor", get(console_page))
        .route("/supervisor", get(console_page))
        .route("/admin", get(console_page))
        .route("/static/{file}", get(static_file))
}

/// The page language, remembered in a cookie when chosen with `?lang=`.
pub struct PageLang(pub Lang, Option<Cookie<'static>>);

impl<S: Send + Sync> FromRequestParts<S> for PageLang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let asked =
            parts.uri.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang="))).and_then(Lang::parse);
        if let Some(lang) = asked {
            let cookie = Cookie::build(("careline_lang", lang.code())).path("/").same_site(SameSite::Lax).build();
            return Ok(PageLang(lang, Some(cookie)));
        }
        let saved = CookieJar::from_headers(&parts.headers).get("careline_lang").and_then(|c| Lang::parse(c.value()));
        Ok(PageLang(saved.unwrap_or_default(), None))
    }
}

fn render(lang: PageLang, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let jar = CookieJar::new();
            let jar = match lang.1 {
                Some(c) => jar.add(c),
                None => jar,
            };
            (jar, Html(html)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    lang: Lang,
    t: &'static Words,
}

async fn login_page(lang: PageLang) -> Response {
    let page = LoginPage { lang: lang.0, t: lang.0.words() };
    render(lang, page)
}

#[derive(Template)]
#[template(path = "call.html")]
struct CallPage {
    lang: Lang,
    t: &'static Words,
}

/// The patient's page: no login.
async fn call_page(lang: PageLang) -> Response {
    let page = CallPage { lang: lang.0, t: lang.0.words() };
    render(lang, page)
}

#[derive(Template)]
#[template(path = "console.html")]
struct ConsolePage {
    lang: Lang,
    t: &'static Words,
    staff: Staff,
    title: &'static str,
    shifts_today: Vec<String>,
    seats: Vec<Seat>,
    /// Whether live captions run on this server (a speech model is loaded).
    captions: bool,
}

/// A role's landing page. Without a session it sends the browser to the
/// login page; with another role's session it sends it to that role's page.
async fn console_page(
    State(store): State<Store>,
    State(settings): State<std::sync::Arc<super::Settings>>,
    lang: PageLang,
    user: Result<AuthUser, super::error::ApiError>,
    uri: axum::http::Uri,
) -> Result<Response, super::error::ApiError> {
    let Ok(user) = user else {
        return Ok(Redirect::to("/").into_response());
    };
    let home = home_of(user.staff.role);
    if uri.path() != home {
        return Ok(Redirect::to(home).into_response());
    }
    let t = lang.0.words();
    let title = match user.staff.role {
        Role::Operator => t.operator_console,
        Role::Doctor => t.doctor_console,
        Role::Supervisor => t.supervisor_console,
        Role::Admin => t.admin_console,
    };
    let today = crate::time::local_today();
    let shifts = store.shifts().await?;
    let shifts_today = store
        .roster_for(today)
        .await?
        .into_iter()
        .filter(|r| r.staff_id == user.staff.staff_id)
        .filter_map(|r| shifts.iter().find(|s| s.shift_id == r.shift_id))
        .map(|s| {
            let end = s.ends_minute % 1440;
            format!(
                "{} {:02}:{:02}–{:02}:{:02}",
                s.name,
                s.starts_minute / 60,
                s.starts_minute % 60,
                end / 60,
                end % 60
            )
        })
        .collect();
    let seats = if user.staff.role == Role::Supervisor { store.seats().await? } else { Vec::new() };
    let page =
        ConsolePage { lang: lang.0, t, staff: user.staff, title, shifts_today, seats, captions: settings.captions };
    Ok(render(lang, page))
}

/// The consoles' static files, compiled into the binary.
async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, mime): (&'static str, &str) = match file.as_str() {
        "careline.css" => (include_str!("../../static/careline.css"), "text/css; charset=utf-8"),
        "login.js" => (include_str!("../../static/login.js"), "text/javascript; charset=utf-8"),
        "call.js" => (include_str!("../../static/call.js"), "text/javascript; charset=utf-8"),
        "media.js" => (include_str!("../../static/media.js"), "text/javascript; charset=utf-8"),
        "doctor.js" => (include_str!("../../static/doctor.js"), "text/javascript; charset=utf-8"),
        "agent.js" => (include_str!("../../static/agent.js"), "text/javascript; charset=utf-8"),
        "wallboard.js" => (include_str!("../../static/wallboard.js"), "text/javascript; charset=utf-8"),
        "operator.js" => (include_str!("../../static/operator.js"), "text/javascript; charset=utf-8"),
        "console.js" => (include_str!("../../static/console.js"), "text/javascript; charset=utf-8"),
        "rx.js" => (include_str!("../../static/rx.js"), "text/javascript; charset=utf-8"),
        "rx.css" => (include_str!("../../static/rx.css"), "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The Content-Security-Policy of every HTML page: scripts and styles only
/// from this origin as files (no inline script, so an injected `<script>` or
/// `onclick` does not run), no plugins, no framing (clickjacking), forms and
/// `<base>` pinned. `connect-src 'self'` covers the same-origin WebSocket
/// (CSP Level 3); images may be `data:`/`blob:` (QR codes, camera frames).
/// OWASP Secure Headers Project; CSP Level 3 (W3C).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to every response that is an HTML page, and
/// `nosniff` to every response (so a JSON or text body is never sniffed into HTML).
pub async fn security_headers(mut response: Response) -> Response {
    use axum::http::HeaderValue;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let html =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if html {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    response
}
