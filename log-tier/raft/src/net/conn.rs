//! One open client connection to a peer: a writer task draining a bounded queue, a reader task
//! handing each answer to the request with its correlation id, and the table of waiting
//! requests, all failed at once when the connection breaks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::BufReader;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::error::TransportError;
use super::frame::{Frame, FrameReader, Kind, Outgoing, write_loop};
use super::metrics::{self, ConnectionGauge, Side};
use super::{GroupId, ReadHalf, WriteHalf};
use crate::types::NodeId;

/// One open connection: the writer's queue and the table of requests waiting for an answer.
pub(super) struct Conn {
    pub(super) addr: String,
    tx: mpsc::Sender<Outgoing>,
    pub(super) pending: Arc<Pending>,
    next_correlation: AtomicU64,
    max_frame_bytes: usize,
    /// When the connection started, and milliseconds after it that the last frame arrived.
    started: Instant,
    last_received_ms: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Conn {
    pub(super) fn start(
        addr: String,
        peer: NodeId,
        mut reader: FrameReader<BufReader<ReadHalf>>,
        write: WriteHalf,
        queue: usize,
    ) -> Arc<Conn> {
        let max_frame_bytes = reader.max_frame_bytes();
        let pending = Arc::new(Pending::default());
        let started = Instant::now();
        let last_received_ms = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(queue);
        let span = tracing::debug_span!("raft_link", peer, %addr);
        let writer = {
            let pending = Arc::clone(&pending);
            tokio::spawn(
                async move {
                    if let Err(e) = write_loop(write, rx).await {
                        metrics::error(&TransportError::Io(e));
                    }
                    pending.close();
                }
                .instrument(span.clone()),
            )
        };
        let reading = {
            let pending = Arc::clone(&pending);
            let last = Arc::clone(&last_received_ms);
            tokio::spawn(
                async move {
                    let _gauge = ConnectionGauge::open(Side::Client);
                    loop {
                        match reader.next().await {
                            Ok(Some(frame)) => {
                                last.store(elapsed_ms(started), Ordering::Relaxed);
                                pending.complete(frame);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                metrics::error(&e);
                                tracing::debug!(error = %e, "connection failed");
                                break;
                            }
                        }
                    }
                    pending.close();
                }
                .instrument(span),
            )
        };
        Arc::new(Conn {
            addr,
            tx,
            pending,
            next_correlation: AtomicU64::new(1),
            max_frame_bytes,
            started,
            last_received_ms,
            tasks: vec![writer, reading],
        })
    }

    /// Sends one request and waits for the frame answering it.
    pub(super) async fn call(
        &self,
        kind: Kind,
        group: GroupId,
        parts: Vec<Bytes>,
    ) -> Result<Frame, TransportError> {
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = Outgoing::new(kind, correlation, group, parts, self.max_frame_bytes)?;
        let answer = self
            .pending
            .register(correlation)
            .ok_or(TransportError::ConnectionClosed)?;
        let _forget = Forget {
            pending: &self.pending,
            correlation,
        };
        self.tx
            .send(frame)
            .await
            .map_err(|_| TransportError::ConnectionClosed)?;
        answer.await.map_err(|_| TransportError::ConnectionClosed)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.pending.is_closed()
    }

    /// Fails every waiting request and stops the connection's tasks.
    pub(super) fn close(&self) {
        self.pending.close();
        for task in &self.tasks {
            task.abort();
        }
    }

    /// How long since the last frame arrived (or since the connection opened).
    pub(super) fn silent_for(&self) -> Duration {
        let now = elapsed_ms(self.started);
        let last = self.last_received_ms.load(Ordering::Relaxed);
        Duration::from_millis(now.saturating_sub(last))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Requests waiting for their answers, by correlation id; `None` once the connection closed.
#[derive(Default)]
pub(super) struct Pending {
    table: Mutex<Option<HashMap<u64, oneshot::Sender<Frame>>>>,
    closed: AtomicBool,
}

impl Pending {
    pub(super) fn lock(&self) -> MutexGuard<'_, Option<HashMap<u64, oneshot::Sender<Frame>>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for the answer to `correlation`; `None` when the connection is closed.
    fn register(&self, correlation: u64) -> Option<oneshot::Receiver<Frame>> {
        let mut table = self.lock();
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        table
            .get_or_insert_with(HashMap::new)
            .insert(correlation, tx);
        Some(rx)
    }

    /// Hands an answer to its request (a late answer, after a timeout, is dropped).
    fn complete(&self, frame: Frame) {
        let waiting = self
            .lock()
            .as_mut()
            .and_then(|t| t.remove(&frame.correlation));
        match waiting {
            Some(tx) => {
                let _ = tx.send(frame);
            }
            None => metrics::error_reason("late_answer"),
        }
    }

    fn forget(&self, correlation: u64) {
        if let Some(table) = self.lock().as_mut() {
            table.remove(&correlation);
        }
    }

    /// Fails every waiting request at once (their receivers see the senders dropped).
    fn close(&self) {
        let mut table = self.lock();
        self.closed.store(true, Ordering::Release);
        table.take();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Removes a request's slot when it stops waiting (answered, timed out or dropped).
struct Forget<'a> {
    pending: &'a Pending,
    correlation: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.pending.forget(self.correlation);
    }
}
