//! Configuration: one struct from flags and environment, with defaults that
//! run a whole helpline on one machine with nothing installed.

use std::net::SocketAddr;

use clap::Args;

/// How `careline serve` runs.
#[derive(Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port and logs it.
    #[arg(long = "listen", env = "CARELINE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database: a `postgres://` URL, or a SQLite file path or `sqlite:` URL.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = "careline.db")]
    pub database_url: String,

    /// Redis for routing state shared by several nodes (one queue; updates
    /// reach consoles on any node); in-process when unset.
    #[arg(long = "redis-url", env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// The prefix of the Redis keys: the nodes of one deployment (one
    /// database) share it; another deployment on the same Redis needs its own.
    #[arg(long = "redis-prefix", env = "CARELINE_REDIS_PREFIX", default_value = "careline")]
    pub redis_prefix: String,

    /// With Redis: milliseconds a node's lease lasts. A node renews it six
    /// times per lease; when one runs out, a live node declares that node
    /// lost, its agents' offers move on at once, and it rejoins under a new id.
    #[arg(long = "node-lease-ms", env = "CARELINE_NODE_LEASE_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(300..=60_000))]
    pub node_lease_ms: u64,

    /// On an empty database, create a demo roster (operators, doctors, a
    /// supervisor and an admin) and print their passwords once.
    #[arg(long, env = "CARELINE_DEMO")]
    pub demo: bool,

    /// Mark the session cookie `Secure`. Set it when a TLS proxy fronts Careline.
    #[arg(long = "secure-cookies", env = "CARELINE_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// How long a console login lasts, in hours.
    #[arg(long = "session-hours", env = "CARELINE_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: i64,

    /// SMTP server for mail to patients: `smtp://[user:pass@]host[:port]`
    /// (`?tls=required` for STARTTLS) or `smtps://…`. No mail is sent when unset.
    #[arg(long = "smtp-url", env = "CARELINE_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// The sender of mail to patients.
    #[arg(
        long = "mail-from",
        env = "CARELINE_MAIL_FROM",
        default_value = "Careline Helpline <helpline@careline.invalid>"
    )]
    pub mail_from: String,

    /// Seconds before the first retry of a failed send; each later wait doubles (at most an hour).
    #[arg(long = "mail-retry-seconds", env = "CARELINE_MAIL_RETRY_SECONDS", default_value_t = 30)]
    pub mail_retry_seconds: i64,

    /// Where ambulance requests are sent (the dispatch service's webhook; JSON POST).
    #[arg(long = "dispatch-webhook", env = "CARELINE_DISPATCH_WEBHOOK")]
    pub dispatch_webhook: Option<String>,

    /// Seconds before the first resend of an ambulance request the webhook
    /// has not taken; each later wait doubles, to at most 30 s. It is never given up.
    #[arg(long = "dispatch-retry-seconds", env = "CARELINE_DISPATCH_RETRY_SECONDS", default_value_t = 2)]
    pub dispatch_retry_seconds: u64,

    /// Seconds an ambulance request may stay undelivered before the
    /// supervisors' wallboard raises the alarm to phone 102/108.
    #[arg(long = "dispatch-alarm-seconds", env = "CARELINE_DISPATCH_ALARM_SECONDS", default_value_t = 60)]
    pub dispatch_alarm_seconds: u64,

    /// The HIMS as a FHIR R4 server: its service base URL, e.g.
    /// `https://hims.example.org/fhir`. Patients, facilities, slots and
    /// appointments are read and booked there, and finished consults are
    /// written there. The built-in records are used when unset.
    #[arg(long = "hims-fhir-url", env = "CARELINE_HIMS_FHIR_URL")]
    pub hims_fhir_url: Option<String>,

    /// Take phone calls from a SIP trunk on this address (UDP and TCP on one
    /// port; port 0 picks one and prints it). No SIP when unset.
    #[arg(long = "sip-listen", env = "CARELINE_SIP_LISTEN")]
    pub sip_listen: Option<std::net::SocketAddr>,

    /// The trunk's addresses (the carrier's or the state PBX's), as
    /// CIDRs: `10.1.2.0/24,10.1.3.7`. INVITEs from anywhere else get 403.
    #[arg(long = "sip-trunk", env = "CARELINE_SIP_TRUNK", value_delimiter = ',', default_value = "127.0.0.1/32")]
    pub sip_trunk: Vec<String>,

    /// Calls at once on the trunk; one more gets 503 (an E1 carries 30).
    #[arg(long = "sip-channels", env = "CARELINE_SIP_CHANNELS", default_value_t = 30)]
    pub sip_channels: u32,

    /// Local UDP ports for the phone calls' RTP, `FIRST-LAST`.
    #[arg(long = "rtp-ports", env = "CARELINE_RTP_PORTS", default_value = "20000-29999")]
    pub rtp_ports: String,

    /// The address put in SDP answers and bound for RTP (needed when
    /// `--sip-listen` is 0.0.0.0).
    #[arg(long = "sip-media-address", env = "CARELINE_SIP_MEDIA_ADDRESS")]
    pub sip_media_address: Option<std::net::IpAddr>,

    /// The IVR's recorded prompts: `hi/NAME.wav` and `en/NAME.wav` (8 kHz
    /// mono, A-law or 16-bit PCM), as made by `telemed/scripts/make-prompts.sh`;
    /// a human recording replaces a file of the same name.
    #[arg(long = "ivr-prompts", env = "CARELINE_IVR_PROMPTS", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../telemed/prompts"))]
    pub ivr_prompts: std::path::PathBuf,

    /// IP addresses the media plane (WebRTC) listens on, one UDP port each per
    /// connection; they are the host candidates browsers connect to. Give the
    /// address browsers can reach.
    #[arg(long = "media-address", env = "CARELINE_MEDIA_ADDRESS", value_delimiter = ',', default_value = "127.0.0.1")]
    pub media_addresses: Vec<std::net::IpAddr>,

    /// STUN/TURN servers handed to browsers, e.g. `turn:turn.example.org:3478?transport=udp`.
    #[arg(long = "ice-server", env = "CARELINE_ICE_SERVERS", value_delimiter = ',')]
    pub ice_servers: Vec<String>,

    /// The TURN username handed to browsers with the TURN servers.
    #[arg(long = "turn-username", env = "CARELINE_TURN_USERNAME")]
    pub turn_username: Option<String>,

    /// The TURN credential handed to browsers with the TURN servers.
    #[arg(long = "turn-credential", env = "CARELINE_TURN_CREDENTIAL")]
    pub turn_credential: Option<String>,

    /// Where calls are recorded, one OGG/Opus file per speaker, when the
    /// patient consented to recording. Nothing is recorded when unset.
    #[arg(long = "recordings-dir", env = "CARELINE_RECORDINGS_DIR")]
    pub recordings_dir: Option<std::path::PathBuf>,

    /// A ggml whisper model (`careline model import-ct2`) for live captions
    /// of calls whose patient consented to recording and transcription. No
    /// captions when unset.
    #[arg(long = "whisper-model", env = "CARELINE_WHISPER_MODEL")]
    pub whisper_model: Option<std::path::PathBuf>,

    /// The language spoken in calls: `en`, `hi`, or `auto` (detected per
    /// utterance; needs a multilingual model).
    #[arg(long = "whisper-language", env = "CARELINE_WHISPER_LANGUAGE", default_value = "en")]
    pub whisper_language: transcription::Language,

    /// CPU threads whisper uses per utterance.
    #[arg(long = "whisper-threads", env = "CARELINE_WHISPER_THREADS", default_value_t = 2)]
    pub whisper_threads: usize,

    /// An initial prompt for captions: text whisper reads as if it came
    /// before each utterance (for instance `transcription::engine::CLINICAL_PROMPT`).
    /// Unset: none (Hindi keeps its Devanagari prompt).
    #[arg(long = "whisper-prompt", env = "CARELINE_WHISPER_PROMPT")]
    pub whisper_prompt: Option<String>,

    /// Beam width of final captions, decoded over a window fitted to the
    /// utterance. 5 (the default): the most accurate measured on tiny.en
    /// that keeps captions within 1.5 s of the end of speech on 2 cores
    /// (docs/benchmarks.md); 1: greedy, faster and less accurate, for
    /// slower machines or larger models. Partial captions are always greedy.
    #[arg(long = "whisper-beam", env = "CARELINE_WHISPER_BEAM", default_value_t = transcription::engine::LIVE_BEAM)]
    pub whisper_beam: usize,

    /// Seconds a caller whose connection dropped keeps their place in the call.
    #[arg(long = "media-grace-seconds", env = "CARELINE_MEDIA_GRACE_SECONDS", default_value_t = 30)]
    pub media_grace_seconds: u64,

    /// Seconds an agent may have no console listening (no open agent stream)
    /// before they are paused (`console gone`) and their offer moves on; a
    /// console that opens again makes them ready again.
    #[arg(long = "presence-grace-seconds", env = "CARELINE_PRESENCE_GRACE_SECONDS", default_value_t = 5)]
    pub presence_grace_seconds: u64,

    /// WhatsApp (and SMS) accounts.
    #[command(flatten)]
    pub channels: crate::channels::ChannelConfig,
    /// Seconds a client has to send a request's head (slow clients, slowloris).
    #[arg(long = "header-read-timeout-seconds", env = "CARELINE_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10)]
    pub header_read_timeout_seconds: u64,

    /// Seconds a connection with no request in flight may stay silent before
    /// it is closed; event streams and WebSockets are exempt.
    #[arg(long = "idle-timeout-seconds", env = "CARELINE_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    pub idle_timeout_seconds: u64,

    /// Connections at once in all; one more is answered 503 and closed. Lowered
    /// at start to fit the open-file limit.
    #[arg(long = "max-connections", env = "CARELINE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Connections at once from one client address (IPv6: one /64). High
    /// enough for a carrier NAT; trusted proxies count only in the total.
    #[arg(long = "max-connections-per-address", env = "CARELINE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,

    /// A proxy in front of Careline whose `X-Forwarded-For` is believed, as a
    /// CIDR (repeatable, or comma-separated). Without one, `X-Forwarded-For`
    /// is ignored.
    #[arg(long = "trusted-proxy", env = "CARELINE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Contact starts per phone number: `BURST:SECONDS` (BURST at once, then
    /// one more every SECONDS). An emergency is never refused.
    #[arg(long = "contact-limit-phone", env = "CARELINE_CONTACT_LIMIT_PHONE", default_value = "5:120")]
    pub contact_limit_phone: crate::throttle::Rate,

    /// Contact starts per client address (IPv6: one /64), which may be a
    /// whole carrier NAT: `BURST:SECONDS`.
    #[arg(long = "contact-limit-address", env = "CARELINE_CONTACT_LIMIT_ADDRESS", default_value = "100:5")]
    pub contact_limit_address: crate::throttle::Rate,

    /// Contact starts of the whole helpline, past which it sheds load (503
    /// with the helpline's number): `BURST:SECONDS`.
    #[arg(long = "contact-limit-overall", env = "CARELINE_CONTACT_LIMIT_OVERALL", default_value = "500:0.1")]
    pub contact_limit_overall: crate::throttle::Rate,

    /// The helpline's phone number, told to web callers when the web cannot take them.
    #[arg(long = "helpline-phone", env = "CARELINE_HELPLINE_PHONE", default_value = "104")]
    pub helpline_phone: String,

    /// A token `/metrics` asks for (`Authorization: Bearer <token>`). Unset:
    /// `/metrics` answers 404 on the public listener; scrape it on `--metrics-listen`.
    #[arg(long = "metrics-token", env = "CARELINE_METRICS_TOKEN")]
    pub metrics_token: Option<String>,

    /// A separate address that serves only `/metrics` (without a token), e.g. `127.0.0.1:9100`.
    #[arg(long = "metrics-listen", env = "CARELINE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeConfig {
    /// The connection rules of the HTTP listener.
    pub fn connection_limits(&self) -> crate::server::ConnectionLimits {
        crate::server::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_seconds.max(1)),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_seconds.max(1)),
            max_connections: self.max_connections.max(1),
            max_per_address: self.max_connections_per_address.max(1),
        }
    }

    /// The limits on starting contacts.
    pub fn contact_limits(&self) -> crate::throttle::ContactLimits {
        crate::throttle::ContactLimits {
            per_phone: self.contact_limit_phone,
            per_address: self.contact_limit_address,
            overall: self.contact_limit_overall,
        }
    }

    /// The trusted proxies; an error names the bad CIDR.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<crate::net::Cidr>> {
        self.trusted_proxies
            .iter()
            .map(|c| c.trim().parse().map_err(|e| anyhow::anyhow!("--trusted-proxy {c:?}: {e}")))
            .collect()
    }

    /// How live captions decode: [`transcription::Options::live`] with the
    /// beam and the prompt given.
    pub fn whisper_options(&self) -> transcription::Options {
        transcription::Options {
            beam_size: (self.whisper_beam > 1).then_some(self.whisper_beam),
            prompt: self.whisper_prompt.clone().filter(|p| !p.trim().is_empty()),
            ..transcription::Options::live(self.whisper_language, self.whisper_threads.max(1))
        }
    }

    /// The SIP trunk's settings, when `--sip-listen` is set; an error names the bad flag.
    pub fn sip(&self) -> anyhow::Result<Option<telemed::sip::SipConfig>> {
        let Some(listen) = self.sip_listen else { return Ok(None) };
        let cidrs = self
            .sip_trunk
            .iter()
            .map(|c| c.trim().parse::<telemed::sip::Cidr>().map_err(|e| anyhow::anyhow!("--sip-trunk {c:?}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (first, last) = self
            .rtp_ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
            .filter(|(a, b)| a <= b)
            .ok_or_else(|| anyhow::anyhow!("--rtp-ports {:?}: FIRST-LAST, e.g. 20000-29999", self.rtp_ports))?;
        let trunk = telemed::sip::Trunk { name: "trunk".into(), cidrs, max_channels: self.sip_channels };
        let mut sip = telemed::sip::SipConfig::new(listen, vec![trunk]);
        sip.rtp_ports = first..=last;
        sip.media_ip = self.sip_media_address;
        Ok(Some(sip))
    }

    /// The media plane's settings.
    pub fn media(&self) -> telemed::sfu::SfuConfig {
        let ice_servers = self
            .ice_servers
            .iter()
            .map(|url| {
                let turn = url.starts_with("turn:") || url.starts_with("turns:");
                telemed::media::IceServer {
                    urls: vec![url.clone()],
                    username: if turn { self.turn_username.clone() } else { None },
                    credential: if turn { self.turn_credential.clone() } else { None },
                }
            })
            .collect();
        telemed::sfu::SfuConfig {
            udp_addrs: self.media_addresses.iter().map(|ip| std::net::SocketAddr::new(*ip, 0)).collect(),
            ice_servers,
            grace: std::time::Duration::from_secs(self.media_grace_seconds),
            recordings: self.recordings_dir.clone(),
        }
    }
}

/// Passwords and tokens inside URLs never reach the logs.
impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("node_lease_ms", &self.node_lease_ms)
            .field("demo", &self.demo)
            .field("contact_limit_phone", &self.contact_limit_phone)
            .field("contact_limit_address", &self.contact_limit_address)
            .field("contact_limit_overall", &self.contact_limit_overall)
            .field("secure_cookies", &self.secure_cookies)
            .field("session_hours", &self.session_hours)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field("dispatch_webhook", &self.dispatch_webhook.as_deref().map(redact_url))
            .field("dispatch_retry_seconds", &self.dispatch_retry_seconds)
            .field("dispatch_alarm_seconds", &self.dispatch_alarm_seconds)
            .field("hims_fhir_url", &self.hims_fhir_url.as_deref().map(redact_url))
            .field("media_addresses", &self.media_addresses)
            .field("ice_servers", &self.ice_servers)
            .field("media_grace_seconds", &self.media_grace_seconds)
            .field("presence_grace_seconds", &self.presence_grace_seconds)
            .field("whisper_model", &self.whisper_model)
            .field("whisper_language", &self.whisper_language)
            .field("whisper_prompt", &self.whisper_prompt)
            .field("whisper_beam", &self.whisper_beam)
            .field("channels", &self.channels)
            .field("header_read_timeout_seconds", &self.header_read_timeout_seconds)
            .field("idle_timeout_seconds", &self.idle_timeout_seconds)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_address", &self.max_connections_per_address)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("helpline_phone", &self.helpline_phone)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .field("metrics_listen", &self.metrics_listen)
            .finish()
    }
}

/// `postgres://user:secret@host/db` becomes `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn the_contact_limit_flags_default_to_the_documented_limits_and_name_a_bad_value() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: super::ServeConfig,
        }
        let cli = Cli::try_parse_from(["careline"]).expect("the defaults parse");
        assert_eq!(cli.serve.contact_limits(), crate::throttle::ContactLimits::default());
        let cli = Cli::try_parse_from(["careline", "--contact-limit-address", "2000:0.5"]).unwrap();
        assert_eq!(cli.serve.contact_limits().per_address.burst, 2000);
        let e = Cli::try_parse_from(["careline", "--contact-limit-phone", "5"]).err().expect("refused").to_string();
        assert!(e.contains("--contact-limit-phone") && e.contains("BURST:SECONDS"), "{e}");
    }

    #[test]
    fn hides_passwords() {
        assert_eq!(redact_url("postgres://care:s3cret@db:5432/x"), "postgres://care:***@db:5432/x");
        assert_eq!(redact_url("postgres://care@db/x"), "postgres://care@db/x");
        assert_eq!(redact_url("careline.db"), "careline.db");
        assert_eq!(redact_url("redis://:pw@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
    }
}
