//! Live captions: the media plane's decoded audio of calls whose patient
//! consented to recording and transcription, through the transcriber (one
//! stream per speaker, so the transcript knows who spoke), to the consoles
//! of the staff on the contact and into the store (final captions).
//!
//! Consent is checked on every frame: before it, and after it is withdrawn,
//! no audio reaches the transcriber.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use telemed::media::Role as MediaRole;
use telemed::sfu::Sfu;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use transcription::{AudioTap, Caption, Role, Transcriber};

use crate::center::{Center, Update};
use crate::store::{NewCaption, Store};

/// A speaker whose audio has stopped this long is closed: their last
/// utterance is transcribed and a later one opens a new stream.
const IDLE: Duration = Duration::from_secs(3);

/// How long a stopping server waits for the utterances still queued: a
/// transcriber that fell behind busy calls must not hold the stop up for
/// minutes. Those not started by then are dropped, with a warning.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Separates the contact from the participant in a stream's name.
const SEP: char = '\u{1f}';

/// Starts feeding consented calls to `transcriber` and publishing its captions.
pub fn start(
    transcriber: Transcriber,
    captions: UnboundedReceiver<Caption>,
    sfu: Sfu,
    store: Store,
    center: Center,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(feed(transcriber, sfu, shutdown));
    tasks.spawn(publish(captions, store, center));
}

fn role(role: MediaRole) -> Role {
    match role {
        MediaRole::Patient => Role::Patient,
        MediaRole::Operator => Role::Operator,
        MediaRole::Doctor => Role::Doctor,
        MediaRole::Supervisor => Role::Other,
    }
}

async fn feed(transcriber: Transcriber, sfu: Sfu, shutdown: CancellationToken) {
    let mut taps = sfu.taps();
    let mut open: HashMap<(String, String), (AudioTap, Instant)> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sweep.tick() => {
                open.retain(|_, (_, last)| last.elapsed() < IDLE);
            }
            frame = taps.recv() => {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(frames = n, "transcription fell behind the calls; audio skipped");
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                };
                let key = (frame.session.clone(), frame.participant.clone());
                if !sfu.recording_allowed(&frame.session) {
                    open.remove(&key);
                    continue;
                }
                let (tap, last) = open.entry(key).or_insert_with(|| {
                    let name = format!("{}{SEP}{}", frame.session, frame.participant);
                    (transcriber.tap(name, role(frame.role)), Instant::now())
                });
                tap.push(&frame.pcm);
                *last = Instant::now();
            }
        }
    }
    drop(open);
    // Transcribe what is queued (for a while), off the executor.
    let _ = tokio::task::spawn_blocking(move || transcriber.shutdown_within(SHUTDOWN_GRACE)).await;
}

async fn publish(mut captions: UnboundedReceiver<Caption>, store: Store, center: Center) {
    while let Some(c) = captions.recv().await {
        let Some((contact, participant)) = c.participant.split_once(SEP) else { continue };
        let text = c.text.trim();
        if text.is_empty() {
            continue;
        }
        let role = c.role.as_str().to_owned();
        if c.is_final {
            let new = NewCaption {
                contact_id: contact,
                participant,
                role: &role,
                text,
                start_ms: c.start_ms as i64,
                end_ms: c.end_ms as i64,
                language: &c.language,
            };
            if let Err(e) = store.add_caption(&new, Utc::now()).await {
                tracing::error!(%contact, error = %e, "caption not stored");
            }
        }
        center.publish(Update::Caption {
            contact: contact.to_owned(),
            participant: participant.to_owned(),
            role,
            text: text.to_owned(),
            start_ms: c.start_ms,
            end_ms: c.end_ms,
            is_final: c.is_final,
        });
    }
}
