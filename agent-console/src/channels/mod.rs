//! Messaging channels: WhatsApp (and, in time, SMS) in the same queue as
//! calls and web chats.
//!
//! ## Layout
//! - [`ChannelConfig`]: one block of flags per account; an account not
//!   configured is off, and its webhook answers 404.
//! - [`Channels`]: the accounts that are on ([`Account`], one variant per
//!   provider, one module each: [`whatsapp`]), the HTTP client of the sends,
//!   and the wake-ups of the two tasks below.
//! - The journal: a webhook stores its events (`store::channel`) in one
//!   transaction, keyed by the provider's unique key, and answers 200; then
//!   [`run_journal`] processes them: a patient's message joins the live
//!   contact of their thread, or opens a new `Media::Chat` contact through
//!   the same routing path as web chats; a status moves its reply's
//!   delivery forward. An event Careline cannot handle (a media message) is
//!   kept, marked unprocessable for staff.
//! - The outbox: a staff reply on a messaging contact is queued with its
//!   chat message ([`queue_reply`]); [`run_sender`] posts it, retries clear
//!   failures with backoff, and marks a send with no answer `unknown`,
//!   never resending it: a later status callback carrying its
//!   `biz_opaque_callback_data` settles it.
//!
//! Durability: an acknowledged webhook is committed before the 200. On
//! SQLite (WAL, `synchronous=NORMAL`) that survives `kill -9` of the server
//! but not a power cut (the last commits may be lost, SQLite docs); on
//! PostgreSQL with its default `synchronous_commit=on` the commit is flushed
//! to the WAL before it returns, so it survives both.

pub mod twilio;
pub mod whatsapp;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::http::AppState;
use crate::store::{
    Channel, ChannelEvent, ChannelSend, ChatMessage, ContactStatus, DeliveryStatus, EventOutcome, InboundMessage,
    NewChannelSend, NewContact, PatientKey, Provider, SendOutcome, SendState, StaffId, StoreError,
};

/// The messaging accounts, from flags or environment. Secrets are better
/// given by environment than on the command line (`ps` shows arguments).
#[derive(Clone, Args, Default)]
pub struct ChannelConfig {
    /// The Meta app's secret: it signs WhatsApp webhooks (`X-Hub-Signature-256`).
    #[arg(long = "whatsapp-app-secret", env = "CARELINE_WHATSAPP_APP_SECRET")]
    pub whatsapp_app_secret: Option<String>,
    /// The token Careline answers Meta's webhook verification with (chosen when subscribing).
    #[arg(long = "whatsapp-verify-token", env = "CARELINE_WHATSAPP_VERIFY_TOKEN")]
    pub whatsapp_verify_token: Option<String>,
    /// The Cloud API access token replies are sent with.
    #[arg(long = "whatsapp-token", env = "CARELINE_WHATSAPP_TOKEN")]
    pub whatsapp_token: Option<String>,
    /// The WhatsApp Business phone number's id.
    #[arg(long = "whatsapp-phone-number-id", env = "CARELINE_WHATSAPP_PHONE_NUMBER_ID")]
    pub whatsapp_phone_number_id: Option<String>,
    /// The Graph API base URL.
    #[arg(
        long = "whatsapp-api-url",
        env = "CARELINE_WHATSAPP_API_URL",
        default_value = "https://graph.facebook.com/v21.0"
    )]
    pub whatsapp_api_url: String,
    /// Approved WhatsApp templates operators may send, `name` or
    /// `name:language` (default language `en`), comma-separated.
    #[arg(long = "whatsapp-templates", env = "CARELINE_WHATSAPP_TEMPLATES", value_delimiter = ',')]
    pub whatsapp_templates: Vec<String>,
    /// The Twilio account (`AC…`) of SMS: webhooks must name it, sends authenticate as it.
    #[arg(long = "twilio-account-sid", env = "CARELINE_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// The Twilio auth token: it signs Twilio's webhooks (`X-Twilio-Signature`) and is the sends' password.
    #[arg(long = "twilio-auth-token", env = "CARELINE_TWILIO_AUTH_TOKEN")]
    pub twilio_auth_token: Option<String>,
    /// The Twilio number replies come from (E.164), or give `--twilio-messaging-service-sid`.
    #[arg(long = "twilio-from", env = "CARELINE_TWILIO_FROM")]
    pub twilio_from: Option<String>,
    /// A Twilio messaging service (`MG…`) replies are sent through, instead of `--twilio-from`.
    #[arg(long = "twilio-messaging-service-sid", env = "CARELINE_TWILIO_MESSAGING_SERVICE_SID")]
    pub twilio_messaging_service_sid: Option<String>,
    /// Twilio's REST API base URL.
    #[arg(long = "twilio-api-url", env = "CARELINE_TWILIO_API_URL", default_value = "https://api.twilio.com")]
    pub twilio_api_url: String,
    /// The helpline's public base URL as providers reach it (behind a proxy,
    /// not the Host Careline sees): Twilio signs the URL it requested, and
    /// status callbacks are asked for under it. Needed for Twilio.
    #[arg(long = "public-url", env = "CARELINE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds before the first retry of a reply the provider failed
    /// clearly (5xx, refused connection); each later wait doubles, to at most 10 minutes.
    #[arg(long = "channel-retry-seconds", env = "CARELINE_CHANNEL_RETRY_SECONDS", default_value_t = 5)]
    pub channel_retry_seconds: u64,
    /// Seconds a reply's send may wait for the provider's answer; after it,
    /// the send is `unknown` and is never resent automatically.
    #[arg(long = "channel-send-timeout-seconds", env = "CARELINE_CHANNEL_SEND_TIMEOUT_SECONDS", default_value_t = 15)]
    pub channel_send_timeout_seconds: u64,
}

/// Secrets never reach the logs.
impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("ChannelConfig")
            .field("whatsapp_app_secret", &hidden(&self.whatsapp_app_secret))
            .field("whatsapp_verify_token", &hidden(&self.whatsapp_verify_token))
            .field("whatsapp_token", &hidden(&self.whatsapp_token))
            .field("whatsapp_phone_number_id", &self.whatsapp_phone_number_id)
            .field("whatsapp_api_url", &self.whatsapp_api_url)
            .field("whatsapp_templates", &self.whatsapp_templates)
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("twilio_auth_token", &hidden(&self.twilio_auth_token))
            .field("twilio_from", &self.twilio_from)
            .field("twilio_messaging_service_sid", &self.twilio_messaging_service_sid)
            .field("twilio_api_url", &self.twilio_api_url)
            .field("public_url", &self.public_url)
            .field("channel_retry_seconds", &self.channel_retry_seconds)
            .field("channel_send_timeout_seconds", &self.channel_send_timeout_seconds)
            .finish()
    }
}

impl ChannelConfig {
    /// The accounts that are on, their counters registered on `registry`.
    /// An account given in part is an error naming the missing flags.
    pub fn accounts(&self, registry: Option<&prometheus::Registry>) -> anyhow::Result<Channels> {
        let wa = [
            ("--whatsapp-app-secret", &self.whatsapp_app_secret),
            ("--whatsapp-verify-token", &self.whatsapp_verify_token),
            ("--whatsapp-token", &self.whatsapp_token),
            ("--whatsapp-phone-number-id", &self.whatsapp_phone_number_id),
        ];
        let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let missing: Vec<&str> = wa.iter().filter(|(_, v)| !given(v)).map(|(f, _)| *f).collect();
        let whatsapp = match missing.len() {
            4 => None,
            0 => Some(Arc::new(whatsapp::WhatsApp {
                app_secret: self.whatsapp_app_secret.clone().unwrap_or_default(),
                verify_token: self.whatsapp_verify_token.clone().unwrap_or_default(),
                token: self.whatsapp_token.clone().unwrap_or_default(),
                phone_number_id: self.whatsapp_phone_number_id.clone().unwrap_or_default(),
                api_url: self.whatsapp_api_url.clone(),
                templates: self
                    .whatsapp_templates
                    .iter()
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect(),
            })),
            _ => anyhow::bail!("WhatsApp is configured in part: give {} too", missing.join(", ")),
        };
        let tw = [
            ("--twilio-account-sid", &self.twilio_account_sid),
            ("--twilio-auth-token", &self.twilio_auth_token),
            ("--public-url", &self.public_url),
        ];
        let missing: Vec<&str> = tw.iter().filter(|(_, v)| !given(v)).map(|(f, _)| *f).collect();
        let sender = match (&self.twilio_from, &self.twilio_messaging_service_sid) {
            (Some(n), None) if given(&self.twilio_from) => Some(twilio::Sender::Number(n.trim().to_owned())),
            (None, Some(s)) if given(&self.twilio_messaging_service_sid) => {
                Some(twilio::Sender::Service(s.trim().to_owned()))
            }
            (Some(_), Some(_)) => {
                anyhow::bail!("give --twilio-from or --twilio-messaging-service-sid, not both")
            }
            _ => None,
        };
        let twilio = match (missing.len(), sender) {
            (3, None) => None,
            (0, Some(sender)) => Some(Arc::new(twilio::Twilio {
                account_sid: self.twilio_account_sid.clone().unwrap_or_default().trim().to_owned(),
                auth_token: self.twilio_auth_token.clone().unwrap_or_default(),
                sender,
                api_url: self.twilio_api_url.clone(),
                public_url: self.public_url.clone().unwrap_or_default().trim().trim_end_matches('/').to_owned(),
            })),
            (_, sender) => {
                let mut missing = missing;
                if sender.is_none() {
                    missing.push("--twilio-from (or --twilio-messaging-service-sid)");
                }
                anyhow::bail!("Twilio is configured in part: give {} too", missing.join(", "))
            }
        };
        let timeout = self.channel_send_timeout_seconds.max(1);
        let http = reqwest::Client::builder().timeout(StdDuration::from_secs(timeout)).build()?;
        Ok(Channels {
            whatsapp,
            twilio,
            http,
            send_lease: Duration::seconds(timeout as i64 + SEND_LEASE_MARGIN_SECONDS),
            retry: RetryPolicy {
                first_backoff: Duration::seconds(self.channel_retry_seconds.max(1) as i64),
                ..RetryPolicy::replies()
            },
            journal: Arc::new(Notify::new()),
            outbox: Arc::new(Notify::new()),
            metrics: ChannelMetrics::new(registry)?,
        })
    }
}

/// One provider's account. A new provider is one more variant and module.
#[derive(Clone, Debug)]
pub enum Account {
    WhatsApp(Arc<whatsapp::WhatsApp>),
    Twilio(Arc<twilio::Twilio>),
}

impl Account {
    pub fn provider(&self) -> Provider {
        match self {
            Account::WhatsApp(_) => Provider::Whatsapp,
            Account::Twilio(_) => Provider::Twilio,
        }
    }

    /// The request body of a text reply to `to`.
    fn text_request(&self, to: &str, body: &str, opaque: &str) -> String {
        match self {
            Account::WhatsApp(w) => w.text_request(to, body, opaque).to_string(),
            Account::Twilio(t) => t.text_request(to, body, opaque),
        }
    }

    /// Posts a queued request and says what came of it.
    async fn send(&self, http: &reqwest::Client, request: &str) -> (Posted, Option<String>) {
        match self {
            Account::WhatsApp(w) => {
                let posted = w.post(http, request).await;
                let id = match &posted {
                    Posted::Answered { body, .. } => whatsapp::WhatsApp::message_id(body),
                    _ => None,
                };
                (posted, id)
            }
            Account::Twilio(t) => {
                let posted = t.post(http, request).await;
                let id = match &posted {
                    Posted::Answered { status, body } if (200..300).contains(status) => {
                        twilio::Twilio::message_id(body)
                    }
                    _ => None,
                };
                (posted, id)
            }
        }
    }

    /// Did the provider refuse a send because the recipient opted out
    /// (Twilio's 21610)? Then the opt-out is recorded, so the console says so.
    fn refused_as_opted_out(&self, posted: &Posted) -> bool {
        match (self, posted) {
            (Account::Twilio(_), Posted::Answered { status, body }) if (400..500).contains(status) => {
                twilio::Twilio::error_code(body) == Some(twilio::UNSUBSCRIBED)
            }
            _ => false,
        }
    }
}

/// What a reply's claim lasts beyond the provider request's timeout: the
/// store writes around the request, and a busy node.
pub const SEND_LEASE_MARGIN_SECONDS: i64 = 60;

/// The accounts that are on, and what their tasks share.
#[derive(Clone, Debug)]
pub struct Channels {
    pub whatsapp: Option<Arc<whatsapp::WhatsApp>>,
    pub twilio: Option<Arc<twilio::Twilio>>,
    /// The sends' client: its timeout is the line between a failure and an unknown outcome.
    http: reqwest::Client,
    /// How long a reply's `sending` claim lasts: the client's timeout and
    /// [`SEND_LEASE_MARGIN_SECONDS`], so a live node always records its
    /// answer before the claim runs out and the sweep calls it `unknown`.
    send_lease: Duration,
    retry: RetryPolicy,
    /// Wakes the journal task when a webhook stored events.
    journal: Arc<Notify>,
    /// Wakes the sender when a reply was queued.
    outbox: Arc<Notify>,
    pub metrics: ChannelMetrics,
}

/// The channels' counters on `/metrics`.
#[derive(Clone, Debug)]
pub struct ChannelMetrics {
    /// Journal entries processed, by provider and what they were
    /// (`message`, `status`, `unprocessable`).
    pub events: prometheus::IntCounterVec,
    /// Send attempts by provider and outcome (`sent`, `retry`, `unknown`, `failed`).
    pub sends: prometheus::IntCounterVec,
    /// Rounds of the journal or the sender a store error stopped (retried a second later).
    pub errors: prometheus::IntCounter,
}

impl ChannelMetrics {
    fn new(registry: Option<&prometheus::Registry>) -> anyhow::Result<Self> {
        let events = prometheus::IntCounterVec::new(
            prometheus::Opts::new("channel_events_total", "Messaging channel journal entries processed."),
            &["provider", "kind"],
        )?;
        let sends = prometheus::IntCounterVec::new(
            prometheus::Opts::new("channel_sends_total", "Messaging channel send attempts by outcome."),
            &["provider", "outcome"],
        )?;
        let errors = prometheus::IntCounter::new("channel_errors_total", "Channel task rounds stopped by an error.")?;
        if let Some(r) = registry {
            r.register(Box::new(events.clone()))?;
            r.register(Box::new(sends.clone()))?;
            r.register(Box::new(errors.clone()))?;
        }
        Ok(ChannelMetrics { events, sends, errors })
    }
}

impl Default for Channels {
    /// All channels off.
    fn default() -> Self {
        ChannelConfig {
            whatsapp_api_url: String::new(),
            twilio_api_url: String::new(),
            channel_send_timeout_seconds: 15,
            ..Default::default()
        }
        .accounts(None)
        .expect("no account configured is a valid configuration")
    }
}

impl Channels {
    /// The account a provider's messages go out through, if it is on.
    pub fn account(&self, provider: Provider) -> Option<Account> {
        match provider {
            Provider::Whatsapp => self.whatsapp.clone().map(Account::WhatsApp),
            Provider::Twilio => self.twilio.clone().map(Account::Twilio),
            Provider::Exotel => None,
        }
    }

    pub fn any(&self) -> bool {
        self.whatsapp.is_some() || self.twilio.is_some()
    }

    /// A webhook stored events: process them now.
    pub fn journal_written(&self) {
        self.journal.notify_one();
    }
}

/// How replies that failed clearly are retried (the same backoff as mail's, its own defaults).
pub use crate::retry::RetryPolicy;

/// What a provider's send API did with a request, before it is judged.
#[derive(Clone, Debug, PartialEq)]
pub enum Posted {
    /// An HTTP answer and its body.
    Answered { status: u16, body: String },
    /// The connection was refused or failed before the request went out: it is safe to resend.
    NotConnected(String),
    /// No answer in time, or the connection broke after the request went
    /// out: the provider may have it.
    NoAnswer(String),
}

impl Posted {
    async fn from_reqwest(sent: reqwest::Result<reqwest::Response>) -> Posted {
        match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                match res.text().await {
                    Ok(body) => Posted::Answered { status, body },
                    // The status line came: a 2xx was taken even if its body broke off.
                    Err(e) if (200..300).contains(&status) => Posted::Answered { status, body: format!("({e})") },
                    Err(e) => Posted::NoAnswer(format!("answer {status} broke off: {e}")),
                }
            }
            Err(e) if e.is_connect() => Posted::NotConnected(e.to_string()),
            Err(e) => Posted::NoAnswer(e.to_string()),
        }
    }
}

/// Judges an attempt: `attempts_before` earlier tries failed; `message_id`
/// is the id the answer gave, if any.
pub fn judge(
    posted: &Posted,
    message_id: Option<String>,
    attempts_before: i64,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
) -> SendOutcome {
    let retry = |error: String| {
        let tries = attempts_before + 1;
        match policy.wait_after(tries) {
            Some(wait) => SendOutcome::Retry { error, at: now + wait },
            None => SendOutcome::Failed { error: format!("{error} (gave up after {tries} tries)") },
        }
    };
    match posted {
        Posted::Answered { status, body } if (200..300).contains(status) => match message_id {
            Some(provider_message_id) => SendOutcome::Sent { provider_message_id },
            // Taken, but we cannot tell under which id: a status callback with our opaque key settles it.
            None => SendOutcome::Unknown { error: format!("answer {status} named no message: {}", clip(body)) },
        },
        // 5xx and 429 are the provider's passing trouble (Meta's and Twilio's docs: retry with backoff).
        Posted::Answered { status, body } if *status >= 500 || *status == 429 => {
            retry(format!("the provider answered {status}: {}", clip(body)))
        }
        Posted::Answered { status, body } => {
            SendOutcome::Failed { error: format!("the provider refused it ({status}): {}", clip(body)) }
        }
        Posted::NotConnected(e) => retry(format!("the provider could not be reached: {e}")),
        Posted::NoAnswer(e) => SendOutcome::Unknown { error: format!("no answer from the provider: {e}") },
    }
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

/// A journal entry as parsed from a webhook, the same for every provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inbound {
    /// A patient's message.
    Message {
        /// Their WhatsApp id or phone number.
        from: String,
        /// Their profile name, if the provider sent one.
        name: Option<String>,
        message_id: String,
        sent_at: DateTime<Utc>,
        /// `text`, `image`, `audio`, …
        message_type: String,
        /// The text of a text message; `None` for the types Careline does not handle yet.
        text: Option<String>,
        /// The provider's item as it came, for staff.
        raw: serde_json::Value,
        /// The channel, where the provider carries more than one (Twilio:
        /// SMS, or WhatsApp for `whatsapp:` addresses); else the provider's.
        #[serde(default)]
        channel: Option<Channel>,
        /// An opt-out (`true`: STOP…) or opt-in (`false`: START…) keyword message.
        #[serde(default)]
        opt: Option<bool>,
    },
    /// A status of one of our messages.
    Status {
        message_id: String,
        /// `sent`, `delivered`, `read`, `failed` (or another the provider adds).
        status: String,
        /// Our key, `biz_opaque_callback_data`.
        opaque: Option<String>,
        at: DateTime<Utc>,
        error: Option<String>,
        raw: serde_json::Value,
    },
}

/// The language of a message from its script: Devanagari is Hindi, else
/// English (routing needs one; the operator can correct it).
pub fn detect_language(text: &str) -> &'static str {
    let devanagari = text.chars().filter(|c| ('\u{0900}'..='\u{097F}').contains(c)).count();
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    if devanagari > 0 && devanagari * 2 >= letters { "hi" } else { "en" }
}

/// The channel of a provider's messages when they do not name one.
fn channel_of(provider: Provider) -> Channel {
    match provider {
        Provider::Whatsapp => Channel::Whatsapp,
        Provider::Twilio | Provider::Exotel => Channel::Sms,
    }
}

/// Statuses a provider reports before `sent` (Twilio's `accepted`,
/// `scheduled`, `queued`, `sending`): nothing to show, processed as they come.
pub const INTERIM_STATUSES: &[&str] = &["accepted", "scheduled", "queued", "sending"];

/// The contact id a message opens: derived from its journal entry, so
/// processing it again after a crash finds the contact it opened.
fn contact_id_for(event: &ChannelEvent) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("channel-event:{}:{}", event.provider, event.event_key));
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid().to_string()
}

/// Processes the journal until `shutdown`: woken by each webhook, and every
/// second for what a store error left (an entry stays pending until it is
/// processed, so nothing is lost by waiting).
pub async fn run_journal(state: AppState, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(StdDuration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wake = state.channels.journal.clone();
    if let Err(e) = requeue_waiting(&state).await {
        state.channels.metrics.errors.inc();
        // Logged and counted; the contacts stay waiting in the store and are requeued at the next start.
        tracing::error!(error = %e, "waiting messaging contacts could not be requeued");
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
            _ = wake.notified() => {}
        }
        if let Err(e) = process_journal(&state).await {
            state.channels.metrics.errors.inc();
            tracing::error!(error = %e, "the channel journal could not be processed; retrying");
        }
    }
}

/// Processes the pending journal entries, in order, each claimed first
/// (nodes share the journal); returns how many. An entry another node holds
/// ends the round: the entries after it may be the same patient's, and
/// wait for it, so a patient's messages keep their order.
pub async fn process_journal(state: &AppState) -> anyhow::Result<usize> {
    let mut done = 0;
    loop {
        let events = state.store.pending_channel_events(50).await?;
        if events.is_empty() {
            return Ok(done);
        }
        for event in events {
            let id = event.channel_event_id;
            if !state.store.claim_channel_event(id, &state.claimant, Utc::now()).await? {
                return Ok(done);
            }
            // One entry's failure stops the round: its claim is given back
            // and the next rounds try it again, and the order of a patient's
            // messages is kept.
            if let Err(e) = process_event(state, &event).await {
                if let Err(release) = state.store.release_channel_event(id, &state.claimant).await {
                    // Its claim then runs out by itself (seconds): only the retry waits.
                    tracing::warn!(event = id, error = %release, "channel event's claim not given back");
                }
                return Err(anyhow::anyhow!("channel event {id}: {e:#}"));
            }
            done += 1;
        }
    }
}

async fn process_event(state: &AppState, event: &ChannelEvent) -> anyhow::Result<()> {
    let now = Utc::now();
    let inbound: Inbound = match serde_json::from_str(&event.payload) {
        Ok(i) => i,
        Err(e) => {
            let why = format!("the stored event does not parse: {e}");
            state
                .store
                .finish_channel_event(event.channel_event_id, EventOutcome::Unprocessable, Some(&why), now)
                .await?;
            return Ok(());
        }
    };
    match inbound {
        Inbound::Message { from, name, sent_at, message_type, text, channel, opt, .. } => {
            let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
                let why = format!(
                    "a `{message_type}` message: Careline shows text messages only; open it in the provider's console"
                );
                state
                    .store
                    .finish_channel_event(event.channel_event_id, EventOutcome::Unprocessable, Some(&why), now)
                    .await?;
                state.channels.metrics.events.with_label_values(&[event.provider.as_str(), "unprocessable"]).inc();
                tracing::warn!(event = event.channel_event_id, provider = %event.provider, %message_type, "channel message kept as unprocessable");
                return Ok(());
            };
            let channel = channel.unwrap_or_else(|| channel_of(event.provider));
            let thread = state.store.channel_thread(channel, &from).await?;
            if let Some(opted_out) = opt {
                // Recorded before anything else: a STOP is honoured even if what follows fails (it is then retried).
                state.store.set_channel_opt_out(channel, &from, opted_out, text.trim(), now).await?;
                tracing::info!(%channel, opted_out, "a patient's opt-out keyword recorded");
            }
            let live = match thread.as_ref().and_then(|t| t.contact_id.clone()) {
                Some(id) => {
                    let c = state.store.contact(&id).await?;
                    matches!(c.status, ContactStatus::Waiting | ContactStatus::Connected | ContactStatus::Callback)
                        .then_some(id)
                }
                None => None,
            };
            let phone = crate::http::patients::normalise_phone(&from).ok();
            let patient_id = match (&thread, &phone) {
                (Some(t), _) if t.patient_id.is_some() => t.patient_id,
                (_, Some(p)) => {
                    // Linked only when the number names one patient: a family's shared phone is left to the operator.
                    let found = state.store.find_patients(&PatientKey::Phone(p.clone())).await?;
                    (found.len() == 1).then(|| found[0].patient_id)
                }
                _ => None,
            };
            let contact_id = match live {
                Some(id) => id,
                // A bare STOP or START asks for nothing from an operator: recorded, no contact opened.
                None if opt.is_some() => {
                    state
                        .store
                        .finish_channel_event(event.channel_event_id, EventOutcome::Processed, None, now)
                        .await?;
                    state.channels.metrics.events.with_label_values(&[event.provider.as_str(), "opt_keyword"]).inc();
                    return Ok(());
                }
                None => open_messaging_contact(state, event, channel, phone, patient_id, &text).await?,
            };
            let m = InboundMessage {
                event_id: event.channel_event_id,
                channel,
                provider: event.provider,
                address: from,
                display_name: name,
                patient_id,
                contact_id,
                body: text,
                sent_at,
            };
            let message = state.store.add_inbound_message(&m, now).await?;
            publish_message(state, &message);
            state.channels.metrics.events.with_label_values(&[event.provider.as_str(), "message"]).inc();
        }
        Inbound::Status { message_id, status, opaque, error, .. } => {
            if INTERIM_STATUSES.contains(&status.as_str()) {
                state.store.finish_channel_event(event.channel_event_id, EventOutcome::Processed, None, now).await?;
                state.channels.metrics.events.with_label_values(&[event.provider.as_str(), "status"]).inc();
                return Ok(());
            }
            let Ok(status) = status.parse::<DeliveryStatus>() else {
                let why = format!("status `{status}` is not one Careline tracks");
                state
                    .store
                    .finish_channel_event(event.channel_event_id, EventOutcome::Unprocessable, Some(&why), now)
                    .await?;
                return Ok(());
            };
            let outcome = match state.store.apply_channel_status(&message_id, opaque.as_deref(), status, now).await? {
                Some(send) => {
                    tracing::info!(reply = send.channel_outbox_id, %status, delivery = ?send.delivery, ?error, "reply status");
                    EventOutcome::Processed
                }
                // Kept: the send's own answer has not named this message yet, and matches it when it does.
                None => EventOutcome::Unmatched,
            };
            state.store.finish_channel_event(event.channel_event_id, outcome, error.as_deref(), now).await?;
            state.channels.metrics.events.with_label_values(&[event.provider.as_str(), "status"]).inc();
        }
    }
    Ok(())
}

/// Opens the contact a thread's new message starts (recorded, then routed
/// like a web chat), or finds the one an interrupted earlier try opened.
async fn open_messaging_contact(
    state: &AppState,
    event: &ChannelEvent,
    channel: Channel,
    phone: Option<String>,
    patient_id: Option<crate::store::PatientId>,
    text: &str,
) -> anyhow::Result<String> {
    let id = contact_id_for(event);
    let new = NewContact {
        channel: Some(channel),
        language: detect_language(text).to_owned(),
        emergency: false,
        caller_phone: phone,
        patient_id,
        ..Default::default()
    };
    match state.store.contact(&id).await {
        Ok(c) if c.status != ContactStatus::Waiting => return Ok(id),
        Ok(_) => {}
        Err(StoreError::NotFound) => {
            // No patient token is handed out: the patient is on WhatsApp, not on `/call`.
            let unused = crate::auth::token_hash(&crate::auth::new_token());
            state.store.create_contact(&id, &new, &unused, Utc::now()).await?;
        }
        Err(e) => return Err(e.into()),
    }
    if arrive(state, &id, &new.language).await? {
        tracing::info!(contact = %id, %channel, language = %new.language, "contact started");
    }
    Ok(id)
}

/// Queues a recorded messaging contact in the routing engine, like a web
/// chat (`Media::Chat`); false when the engine has it already (an
/// interrupted earlier try, or the replayed log).
async fn arrive(state: &AppState, id: &str, language: &str) -> anyhow::Result<bool> {
    let event = routing::Event::ContactArrived(routing::NewContact {
        id: routing::ContactId(id.to_owned()),
        media: routing::Media::Chat,
        language: language.to_owned(),
        emergency: false,
        specialty: None,
    });
    match state.center.handle(event).await {
        Ok(_) => Ok(true),
        Err(crate::center::CenterError::Routing(routing::RoutingError::DuplicateContact(_))) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("routing contact {id}: {e}")),
    }
}

/// Waiting messaging contacts go back into the queue at start however long
/// they have waited: the engine replays only the last day of its log, and a
/// patient on WhatsApp may wait longer (overnight, a holiday). Those the
/// replay restored are left as they are.
pub async fn requeue_waiting(state: &AppState) -> anyhow::Result<usize> {
    let mut requeued = 0;
    for c in state.store.waiting_messaging_contacts().await? {
        if arrive(state, &c.contact_id, &c.language).await? {
            requeued += 1;
        }
    }
    if requeued > 0 {
        tracing::info!(contacts = requeued, "waiting messaging contacts older than the routing log's day requeued");
    }
    Ok(requeued)
}

fn publish_message(state: &AppState, m: &ChatMessage) {
    state.center.publish(crate::center::Update::Message {
        contact: m.contact_id.clone(),
        id: m.chat_message_id,
        sender: m.sender.clone(),
        body: m.body.clone(),
        at: m.created_at,
    });
}

/// Why a reply cannot go out on a messaging contact: answered 422 before anything is stored.
#[derive(Debug, PartialEq)]
pub enum ReplyRefused {
    /// The channel's account is not configured (any more).
    ChannelOff(Channel),
    /// No thread: the contact was not opened by a patient's message.
    NoThread,
    /// The patient opted out of SMS (STOP) and has not opted in again (START).
    OptedOut { at: DateTime<Utc>, keyword: String },
    /// The SMS would take more than [`twilio::MAX_SEGMENTS`] segments.
    TooLong(twilio::Segments),
    /// WhatsApp's customer service window is over: only templates may go.
    WindowClosed { last_inbound_at: DateTime<Utc>, templates: Vec<String> },
}

impl std::fmt::Display for ReplyRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyRefused::ChannelOff(c) => write!(f, "the {c} channel is not configured, so no reply can be sent"),
            ReplyRefused::NoThread => f.write_str("this contact has no conversation to reply on"),
            ReplyRefused::OptedOut { at, keyword } => write!(
                f,
                "the patient opted out of SMS (`{keyword}` at {} UTC): no SMS can go to this number until they send \
                 START; phone them on their number instead (in an emergency, phone them or 112/108)",
                at.format("%Y-%m-%d %H:%M")
            ),
            ReplyRefused::TooLong(s) => write!(
                f,
                "this SMS would be {} segments ({}); at most {} are sent: shorten it or split it",
                s.segments,
                match s.encoding {
                    twilio::Encoding::Gsm7 => "GSM-7, 153 characters each",
                    twilio::Encoding::Ucs2 => "UCS-2 for Hindi or other scripts, 67 characters each",
                },
                twilio::MAX_SEGMENTS
            ),
            ReplyRefused::WindowClosed { last_inbound_at, templates } => write!(
                f,
                "the patient last wrote at {} UTC, over 24 hours ago: WhatsApp allows only an approved template \
                 now (configured: {})",
                last_inbound_at.format("%Y-%m-%d %H:%M"),
                if templates.is_empty() { "none".to_owned() } else { templates.join(", ") }
            ),
        }
    }
}

/// WhatsApp's customer service window: free text within 24 hours of the
/// patient's last message (Meta, "Customer service windows"; error 131047 otherwise).
pub const REPLY_WINDOW: Duration = Duration::hours(24);

/// A messaging contact's conversation as its operator needs it beside the
/// messages: the channel, whether free text may go (WhatsApp's window,
/// SMS's STOP), and how far each reply got.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    pub channel: Channel,
    pub provider: Provider,
    /// The patient's address on the channel, as the provider gives it.
    pub address: String,
    pub last_inbound_at: DateTime<Utc>,
    /// WhatsApp: free text may be sent until then (24 hours after the
    /// patient's last message); after it only an approved template.
    pub window_closes_at: Option<DateTime<Utc>>,
    /// The approved templates, named when the window is closed.
    pub templates: Vec<String>,
    /// SMS: the patient's STOP, while it stands (until START).
    pub opted_out: Option<crate::store::ChannelOptOut>,
    /// Each reply's progress with the provider, in the order sent.
    pub replies: Vec<ReplyProgress>,
}

/// How far one reply got: the outbox's state, then the provider's statuses.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReplyProgress {
    pub chat_message_id: i64,
    /// `queued` (waiting, or waiting for a retry at `next_attempt_at`),
    /// `sending`, `sent` (the provider took it), `unknown` (no answer in
    /// time: settled by a status callback), `failed`.
    pub state: SendState,
    /// The furthest status the provider reported: `sent`, `delivered`, `read`, `failed`.
    pub delivery: Option<DeliveryStatus>,
    pub delivery_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last try failed, as the provider said it.
    pub last_error: Option<String>,
}

/// The conversation of a messaging contact; `None` for a contact no
/// patient's message opened (a call, a web chat).
pub async fn conversation(
    state: &AppState,
    contact: &str,
    now: DateTime<Utc>,
) -> Result<Option<Conversation>, StoreError> {
    let Some(thread) = state.store.thread_of_contact(contact).await? else { return Ok(None) };
    let whatsapp = thread.channel == Channel::Whatsapp;
    let opted_out = match thread.channel {
        Channel::Sms => state.store.channel_opt_out(Channel::Sms, &thread.address).await?.filter(|o| o.opted_out),
        _ => None,
    };
    let window_closes_at = whatsapp.then(|| thread.last_inbound_at + REPLY_WINDOW);
    let templates = match (window_closes_at, &state.channels.whatsapp) {
        (Some(closes), Some(w)) if closes <= now => w.templates.clone(),
        _ => Vec::new(),
    };
    let replies = state
        .store
        .channel_sends_of_contact(contact)
        .await?
        .into_iter()
        .map(|s| ReplyProgress {
            chat_message_id: s.chat_message_id,
            state: s.state,
            delivery: s.delivery,
            delivery_at: s.delivery_at,
            attempts: s.attempts,
            next_attempt_at: s.next_attempt_at,
            last_error: s.last_error,
        })
        .collect();
    Ok(Some(Conversation {
        channel: thread.channel,
        provider: thread.provider,
        address: thread.address,
        last_inbound_at: thread.last_inbound_at,
        window_closes_at,
        templates,
        opted_out,
        replies,
    }))
}

/// Queues a staff reply on a messaging contact: its chat message and its
/// outbox row in one transaction, then wakes the sender. Free text after
/// the 24-hour window is refused before anything is stored.
pub async fn queue_reply(
    state: &AppState,
    contact: &str,
    channel: Channel,
    staff: StaffId,
    body: &str,
    now: DateTime<Utc>,
) -> crate::http::error::Result<(ChatMessage, ChannelSend)> {
    use crate::http::error::ApiError;
    let thread = state
        .store
        .thread_of_contact(contact)
        .await?
        .ok_or_else(|| ApiError::invalid("body", ReplyRefused::NoThread.to_string()))?;
    let account = state
        .channels
        .account(thread.provider)
        .ok_or_else(|| ApiError::invalid("body", ReplyRefused::ChannelOff(channel).to_string()))?;
    if thread.channel == Channel::Sms {
        sms_allowed(state, &thread.address, body).await?;
    }
    if thread.channel == Channel::Whatsapp && now - thread.last_inbound_at > REPLY_WINDOW {
        let templates = state.channels.whatsapp.as_ref().map(|w| w.templates.clone()).unwrap_or_default();
        return Err(ApiError::invalid(
            "body",
            ReplyRefused::WindowClosed { last_inbound_at: thread.last_inbound_at, templates }.to_string(),
        ));
    }
    let opaque = uuid::Uuid::new_v4().to_string();
    let request = account.text_request(&thread.address, body, &opaque);
    let send = NewChannelSend { provider: account.provider(), recipient: thread.address.clone(), request, opaque };
    let queued = state.store.add_reply_with_send(contact, staff, body, &send, now).await?;
    state.channels.outbox.notify_one();
    Ok(queued)
}

/// An SMS reply is refused (422, before anything is stored) to a number
/// that opted out, and when it would take over [`twilio::MAX_SEGMENTS`].
///
/// No exception for emergency advice: Twilio and the carriers block every
/// SMS to a number that sent STOP (error 21610), so an "exception" would
/// only fail later and silently; an emergency is handled by phoning the
/// patient (the number is on the contact) or by 112/108, which the refusal says.
async fn sms_allowed(state: &AppState, address: &str, body: &str) -> crate::http::error::Result<()> {
    use crate::http::error::ApiError;
    if let Some(o) = state.store.channel_opt_out(Channel::Sms, address).await?.filter(|o| o.opted_out) {
        return Err(ApiError::invalid(
            "body",
            ReplyRefused::OptedOut { at: o.changed_at, keyword: o.keyword }.to_string(),
        ));
    }
    let size = twilio::segments(body);
    if size.segments > twilio::MAX_SEGMENTS {
        return Err(ApiError::invalid("body", ReplyRefused::TooLong(size).to_string()));
    }
    Ok(())
}

/// Posts queued replies until `shutdown`: woken by each reply, and every
/// second for retries falling due. At start and every round, replies left
/// mid-send by a node that stopped (still `sending` when their claim ran
/// out, on any node) become `unknown` (they may have gone out).
pub async fn run_sender(state: AppState, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(StdDuration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wake = state.channels.outbox.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
            _ = wake.notified() => {}
        }
        sweep_interrupted(&state).await;
        if let Err(e) = send_due(&state).await {
            state.channels.metrics.errors.inc();
            tracing::error!(error = %e, "channel replies could not be sent; retrying");
        }
    }
}

/// Replies whose node stopped mid-send become `unknown`, never resent.
async fn sweep_interrupted(state: &AppState) {
    match state.store.interrupted_channel_sends(Utc::now()).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(replies = n, "replies interrupted mid-send are marked unknown, not resent"),
        // Counted and logged, and tried again next round: such replies stay `sending`, never picked again, so
        // none is resent meanwhile.
        Err(e) => {
            state.channels.metrics.errors.inc();
            tracing::error!(error = %e, "interrupted replies could not be marked unknown");
        }
    }
}

async fn send_due(state: &AppState) -> anyhow::Result<()> {
    for send in state.store.due_channel_sends(Utc::now(), 20).await? {
        let Some(account) = state.channels.account(send.provider) else {
            // Left queued: the account may be configured again; nothing is lost.
            tracing::warn!(reply = send.channel_outbox_id, provider = %send.provider, "reply queued for a channel that is off");
            continue;
        };
        let lease = state.channels.send_lease;
        if !state.store.start_channel_send(send.channel_outbox_id, &state.claimant, Utc::now(), lease).await? {
            // Another node took it since it was read.
            continue;
        }
        let (posted, message_id) = account.send(&state.channels.http, &send.request).await;
        let outcome = judge(&posted, message_id, send.attempts, &state.channels.retry, Utc::now());
        match &outcome {
            SendOutcome::Sent { provider_message_id } => {
                tracing::info!(reply = send.channel_outbox_id, %provider_message_id, "reply sent")
            }
            SendOutcome::Retry { error, at } => {
                tracing::warn!(reply = send.channel_outbox_id, %error, %at, "reply not sent; retrying")
            }
            SendOutcome::Unknown { error } => {
                tracing::error!(reply = send.channel_outbox_id, %error, "reply outcome unknown; not resent, a status callback settles it")
            }
            SendOutcome::Failed { error } => tracing::error!(reply = send.channel_outbox_id, %error, "reply failed"),
        }
        state.channels.metrics.sends.with_label_values(&[send.provider.as_str(), outcome_label(&outcome)]).inc();
        if account.refused_as_opted_out(&posted) {
            let channel = state.store.contact(&send.contact_id).await?.channel;
            state
                .store
                .set_channel_opt_out(channel, &send.recipient, true, "provider: 21610 unsubscribed", Utc::now())
                .await?;
        }
        state.store.record_channel_send(send.channel_outbox_id, &outcome, Utc::now()).await?;
    }
    Ok(())
}

fn outcome_label(o: &SendOutcome) -> &'static str {
    match o {
        SendOutcome::Sent { .. } => "sent",
        SendOutcome::Retry { .. } => "retry",
        SendOutcome::Unknown { .. } => "unknown",
        SendOutcome::Failed { .. } => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_from_the_script() {
        assert_eq!(detect_language("मुझे बुखार है"), "hi");
        assert_eq!(detect_language("I have fever"), "en");
        assert_eq!(detect_language("fever hai, दवा chahiye"), "en", "mostly Latin letters");
        assert_eq!(detect_language("बुखार 3 din से"), "hi");
        assert_eq!(detect_language("123"), "en");
    }

    #[test]
    fn sends_are_judged_retry_unknown_or_failed() {
        let p =
            RetryPolicy { first_backoff: Duration::seconds(5), max_backoff: Duration::seconds(60), max_attempts: 4 };
        let now = Utc::now();
        let ok = Posted::Answered { status: 200, body: r#"{"messages":[{"id":"wamid.1"}]}"#.into() };
        assert_eq!(
            judge(&ok, Some("wamid.1".into()), 0, &p, now),
            SendOutcome::Sent { provider_message_id: "wamid.1".into() }
        );
        assert!(matches!(judge(&ok, None, 0, &p, now), SendOutcome::Unknown { .. }), "taken under no id we know");
        let at = |o: SendOutcome| match o {
            SendOutcome::Retry { at, .. } => Some((at - now).num_seconds()),
            _ => None,
        };
        let busy = Posted::Answered { status: 503, body: "busy".into() };
        assert_eq!([0, 1, 2].map(|n| at(judge(&busy, None, n, &p, now))), [Some(5), Some(10), Some(20)]);
        assert!(matches!(judge(&busy, None, 3, &p, now), SendOutcome::Failed { error } if error.contains("4 tries")));
        assert_eq!(at(judge(&Posted::Answered { status: 429, body: String::new() }, None, 0, &p, now)), Some(5));
        assert_eq!(at(judge(&Posted::NotConnected("refused".into()), None, 0, &p, now)), Some(5));
        let long = RetryPolicy { max_attempts: 100, ..p };
        assert_eq!(at(judge(&busy, None, 30, &long, now)), Some(60), "capped");
        assert!(matches!(
            judge(&Posted::NoAnswer("timed out".into()), None, 0, &p, now),
            SendOutcome::Unknown { error } if error.contains("timed out")
        ));
        assert!(matches!(
            judge(&Posted::Answered { status: 400, body: "131047".into() }, None, 0, &p, now),
            SendOutcome::Failed { error } if error.contains("400") && error.contains("131047")
        ));
    }

    #[test]
    fn partial_configuration_names_the_missing_flags() {
        let c = ChannelConfig {
            whatsapp_app_secret: Some("s".into()),
            whatsapp_token: Some("t".into()),
            whatsapp_api_url: "http://x".into(),
            channel_send_timeout_seconds: 1,
            ..Default::default()
        };
        let e = c.accounts(None).unwrap_err().to_string();
        assert!(e.contains("--whatsapp-verify-token") && e.contains("--whatsapp-phone-number-id"), "{e}");
        assert!(!format!("{c:?}").contains("\"s\""), "secrets hidden");
        assert!(ChannelConfig::default().accounts(None).unwrap().whatsapp.is_none());
    }
}
