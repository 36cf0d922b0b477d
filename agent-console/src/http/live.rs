//! Server-sent event streams that start from a snapshot: a reader first
//! gets a `snapshot` event (what it needs to draw its page now), then the
//! live `update`s it may see. A reader that falls behind the broadcast
//! channel (`RecvError::Lagged`) gets a fresh snapshot instead of a silent gap,
//! and so does every reader when the node's routing state was rebuilt
//! ([`Update::Resync`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::error::Result;
use crate::center::Update;

/// One reader's view of the updates.
pub(super) trait Reader: Send + 'static {
    /// The events that bring the reader up to date (a `snapshot` event
    /// first, then any updates it needs with it); it also resets what
    /// [`Reader::pass`] knows to that state.
    fn snapshot(&mut self) -> impl Future<Output = Result<Vec<SseEvent>>> + Send;

    /// Whether the reader sees `update`.
    fn pass(&mut self, update: &Update) -> bool;
}

/// A named event with `data` as JSON.
pub(super) fn json_event(name: &str, data: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().event(name).json_data(data).expect("the stream's JSON serializes")
}

pub(super) fn update_event(update: &Update) -> SseEvent {
    json_event("update", update)
}

/// The stream of `reader`: its snapshot, then the updates of `rx` it passes,
/// until `shutdown`. `rx` is subscribed before the first snapshot is read,
/// so nothing between the two is missed (an update may come twice: readers
/// apply them idempotently). A snapshot that fails at the start is the
/// request's error; one that fails after a lag ends the stream (logged), and
/// the client reconnects to a fresh one.
pub(super) async fn live<R: Reader>(
    mut reader: R,
    rx: Receiver<Update>,
    shutdown: CancellationToken,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let first: VecDeque<SseEvent> = reader.snapshot().await?.into();
    let stream = futures_util::stream::unfold(
        (reader, rx, shutdown, first),
        |(mut reader, mut rx, shutdown, mut pending)| async move {
            loop {
                if let Some(e) = pending.pop_front() {
                    return Some((Ok(e), (reader, rx, shutdown, pending)));
                }
                let got = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    got = rx.recv() => got,
                };
                let resync = match got {
                    Ok(Update::Resync) => "the node's routing state was rebuilt",
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a stream fell behind; it gets a fresh snapshot");
                        "the stream fell behind"
                    }
                    Err(RecvError::Closed) => return None,
                    Ok(update) => {
                        if reader.pass(&update) {
                            return Some((Ok(update_event(&update)), (reader, rx, shutdown, pending)));
                        }
                        continue;
                    }
                };
                match reader.snapshot().await {
                    Ok(events) => pending.extend(events),
                    Err(e) => {
                        tracing::error!(error = %e, why = resync, "a stream's snapshot failed; the stream ends, its reader reconnects");
                        return None;
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
