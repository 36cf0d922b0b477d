//! The client behind a request, and the edge's settings: trusted proxies,
//! the limits on starting contacts, the helpline's phone number, the
//! metrics token.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::net::Cidr;
use crate::throttle::{ContactLimiter, ContactLimits, Refusal};

/// What the edge of the server knows beyond the routes.
#[derive(Debug)]
pub struct Edge {
    /// Proxies whose `X-Forwarded-For` is believed (`--trusted-proxy`); none by default.
    pub trusted_proxies: Vec<Cidr>,
    /// The helpline's phone number, told to callers the web cannot take now.
    pub helpline_phone: String,
    /// When set, `/metrics` wants `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// A `std` mutex: nothing awaits while it is held.
    contacts: Mutex<ContactLimiter>,
}

impl Edge {
    pub fn new(
        trusted_proxies: Vec<Cidr>,
        helpline_phone: String,
        metrics_token: Option<String>,
        limits: ContactLimits,
    ) -> Self {
        Edge {
            trusted_proxies,
            helpline_phone,
            metrics_token,
            contacts: Mutex::new(ContactLimiter::new(limits, Instant::now())),
        }
    }

    /// Admits one contact start, or the problem that refuses it: a 429
    /// (this number or address) or a 503 (the helpline sheds load), each
    /// with `Retry-After` and the phone number to call instead, in the
    /// patient's language (Hindi, else English).
    pub fn admit_contact(
        &self,
        client: Option<IpAddr>,
        phone: Option<&str>,
        emergency: bool,
        language: &str,
    ) -> Result<(), (Refusal, ApiError)> {
        let hindi = crate::i18n::Lang::parse(language) == Some(crate::i18n::Lang::Hi);
        let address = client.map(crate::net::group);
        let verdict = self.contacts.lock().expect("limiter lock").admit(Instant::now(), address, phone, emergency);
        verdict.map_err(|refusal| {
            let call = &self.helpline_phone;
            let error = match refusal {
                Refusal::Phone { retry_after } => ApiError::RateLimited {
                    retry_after,
                    detail: if hindi {
                        format!(
                            "इस फ़ोन नंबर से बहुत से संपर्क शुरू हुए हैं; {retry_after} सेकंड बाद फिर कोशिश करें, \
                             या हेल्पलाइन {call} पर कॉल करें"
                        )
                    } else {
                        format!(
                            "this phone number started too many contacts; try again in {retry_after} s, or call the helpline on {call}"
                        )
                    },
                },
                Refusal::Address { retry_after } => ApiError::RateLimited {
                    retry_after,
                    detail: if hindi {
                        format!(
                            "इस नेटवर्क से बहुत से संपर्क आए हैं; {retry_after} सेकंड बाद फिर कोशिश करें, \
                             या हेल्पलाइन {call} पर कॉल करें"
                        )
                    } else {
                        format!(
                            "too many contacts from this network; try again in {retry_after} s, or call the helpline on {call}"
                        )
                    },
                },
                Refusal::Overall { retry_after } => ApiError::Overloaded {
                    retry_after,
                    detail: if hindi {
                        format!(
                            "हेल्पलाइन अभी बहुत व्यस्त है; कृपया {call} पर कॉल करें, या {retry_after} सेकंड बाद फिर \
                             कोशिश करें। आपातकाल हो तो बताएं: आपातकालीन संपर्क हमेशा लिए जाते हैं"
                        )
                    } else {
                        format!(
                            "the helpline is very busy; please call {call}, or try again in {retry_after} s. \
                             In an emergency, say so: emergencies are always taken"
                        )
                    },
                },
            };
            (refusal, error)
        })
    }
}

impl Default for Edge {
    fn default() -> Self {
        Edge::new(Vec::new(), "104".into(), None, ContactLimits::default())
    }
}

/// The client's address: the peer, or behind a trusted proxy the address it
/// forwarded ([`crate::net::client_ip`]). `None` when the server recorded no
/// peer (in-process tests).
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(ClientAddr(None));
        };
        let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        Ok(ClientAddr(Some(crate::net::client_ip(peer.ip(), forwarded, &state.edge.trusted_proxies))))
    }
}
