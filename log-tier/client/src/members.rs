//! Consumer-group membership for [`super::KafkaLog`]: a consumer subscribed to the topics under
//! the group id, polled on its own thread, whose assignment is published on a watch channel.
//! Its partitions are paused at once: it only takes part in the group; records are read with
//! [`headwater_log::Log::read`] and offsets committed with [`headwater_log::Log::commit`] under another id.
//! When a rebalance revokes partitions, the callback publishes the smaller assignment and
//! waits (up to [`RELEASE_WAIT`]) for [`GroupMembership::released`] before the group goes on,
//! so the partitions move only after their old owner has committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use tokio::sync::watch;

use super::errors::refused;
use headwater_log::error::Result;
use headwater_log::{Assignment, GroupMembership};

/// How long a member may go silent before the coordinator gives its partitions to the others.
const SESSION_TIMEOUT_MS: &str = "10000";
/// How often the member thread polls (serves rebalances) and checks for leaving.
const POLL: Duration = Duration::from_millis(100);
/// Longest a revocation waits for the owner to release its partitions.
pub(super) const RELEASE_WAIT: Duration = Duration::from_secs(60);

/// A revocation waiting for [`GroupMembership::released`]; also set when leaving.
#[derive(Default)]
struct Release {
    pending: Mutex<bool>,
    done: Condvar,
}

impl Release {
    fn begin(&self) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    fn finish(&self) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.done.notify_all();
    }

    /// Waits until released or `RELEASE_WAIT` passes.
    fn wait(&self) {
        let guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, timeout) = self
            .done
            .wait_timeout_while(guard, RELEASE_WAIT, |pending| *pending)
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() && *guard {
            tracing::warn!("revoked partitions not released in time; the group goes on");
        }
    }
}

/// Publishes every new assignment; holds revocations until released.
struct Context {
    tx: watch::Sender<Assignment>,
    release: Arc<Release>,
    leaving: Arc<AtomicBool>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if tpl.count() == 0 || self.leaving.load(Ordering::Relaxed) {
                self.tx.send_replace(Arc::from([]));
                return;
            }
            self.release.begin();
            self.tx.send_replace(Arc::from([]));
            self.release.wait();
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Err(error) = consumer.pause(tpl) {
                    tracing::warn!(%error, "cannot pause the membership consumer's partitions");
                }
                let mut owned: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                owned.sort();
                tracing::info!(partitions = owned.len(), "group assignment received");
                self.tx.send_replace(owned.into());
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(%error, "group rebalance failed");
            }
        }
    }
}

/// A live member of a group (see the module docs). Dropping it leaves the group.
pub(super) struct Member {
    rx: watch::Receiver<Assignment>,
    stop: Arc<AtomicBool>,
    release: Arc<Release>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    /// Subscribes under `group` and starts the polling thread.
    pub(super) fn join(base: &ClientConfig, group: &str, topics: &[String]) -> Result<Self> {
        let (tx, rx) = watch::channel::<Assignment>(Arc::from([]));
        let stop = Arc::new(AtomicBool::new(false));
        let release = Arc::new(Release::default());
        let mut config = base.clone();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("partition.assignment.strategy", "roundrobin")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .set("heartbeat.interval.ms", "1000")
            .set("allow.auto.create.topics", "false");
        let consumer: BaseConsumer<Context> = config
            .create_with_context(Context {
                tx,
                release: release.clone(),
                leaving: stop.clone(),
            })
            .map_err(|e| refused(format!("creating a member of group `{group}`"), e))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| refused(format!("joining group `{group}`"), e))?;
        let flag = stop.clone();
        let name = group.to_owned();
        let thread = std::thread::Builder::new()
            .name("hw-group-member".to_owned())
            .spawn(move || member_loop(consumer, &flag, &name))
            .map_err(|e| headwater_log::LogError::io("starting a group member thread", e))?;
        Ok(Self {
            rx,
            stop,
            release,
            thread: Some(thread),
        })
    }
}

fn member_loop(consumer: BaseConsumer<Context>, stop: &AtomicBool, group: &str) {
    while !stop.load(Ordering::Relaxed) {
        if let Some(Err(error)) = consumer.poll(POLL) {
            tracing::debug!(group, %error, "group member poll");
        }
    }
    consumer.unsubscribe();
    // Dropping the consumer closes it: LeaveGroup, so the partitions move at once.
    drop(consumer);
    tracing::info!(group, "left the group");
}

impl GroupMembership for Member {
    fn assignment(&self) -> watch::Receiver<Assignment> {
        self.rx.clone()
    }

    fn released(&self) {
        self.release.finish();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A revocation waiting on us must not hold up leaving.
        self.release.finish();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
