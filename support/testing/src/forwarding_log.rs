//! [`ForwardingLog`]: a [`Log`] that forwards every call to another one, with a fault hook and
//! a delay per method and a count of calls, so a test fake states only what differs instead of
//! forwarding every method by hand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use headwater_log::{
    Appended, GroupMembership, Log, LogError, PartitionOffsets, Record, StoredRecord,
};

/// A method of [`Log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogOp {
    /// [`Log::append`].
    Append,
    /// [`Log::read`].
    Read,
    /// [`Log::offsets`].
    Offsets,
    /// [`Log::commit`].
    Commit,
    /// [`Log::committed`].
    Committed,
    /// [`Log::create_topic`].
    CreateTopic,
    /// [`Log::delete_topic`].
    DeleteTopic,
    /// [`Log::partitions`].
    Partitions,
    /// [`Log::list_topics`].
    ListTopics,
    /// [`Log::flush`].
    Flush,
    /// [`Log::join_group`].
    JoinGroup,
    /// [`Log::check_writable`].
    CheckWritable,
}

/// One call, as a fault hook sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The method.
    pub op: LogOp,
    /// The topic, for the methods that take one.
    pub topic: Option<&'a str>,
    /// The partition, for the methods that take one.
    pub partition: Option<i32>,
    /// The consumer group, for the methods that take one.
    pub group: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn new(op: LogOp) -> Self {
        Self {
            op,
            topic: None,
            partition: None,
            group: None,
        }
    }

    fn topic(self, topic: &'a str) -> Self {
        Self {
            topic: Some(topic),
            ..self
        }
    }

    fn partition(self, partition: i32) -> Self {
        Self {
            partition: Some(partition),
            ..self
        }
    }

    fn group(self, group: &'a str) -> Self {
        Self {
            group: Some(group),
            ..self
        }
    }
}

/// Decides whether a call fails: `Some(error)` fails it with that error, `None` forwards it.
type Fault = Arc<dyn Fn(&Call<'_>) -> Option<LogError> + Send + Sync>;

/// What a method does besides forwarding.
#[derive(Default, Clone)]
struct Behaviour {
    delay: Duration,
    fault: Option<Fault>,
}

/// A [`Log`] forwarding to `inner`. Per method, a test can set a delay (slept before the call)
/// and a fault hook (asked after the delay; an error it returns is the call's result, and the
/// inner log is not called). Both can change while the log is in use, e.g. a disk that fills
/// and then has space again:
///
/// ```
/// # use std::sync::Arc;
/// # use headwater_log::{LogError, MemoryLog};
/// # use headwater_testing::{ForwardingLog, LogOp};
/// let log = Arc::new(ForwardingLog::new(Arc::new(MemoryLog::default())));
/// log.set_fault(LogOp::Append, |call| {
///     let topic = call.topic.unwrap_or_default();
///     Some(LogError::io(format!("appending to {topic}"), std::io::Error::from_raw_os_error(28)))
/// });
/// // ... requests fail with "disk full" ...
/// log.clear_fault(LogOp::Append);
/// ```
pub struct ForwardingLog {
    inner: Arc<dyn Log>,
    behaviour: Mutex<HashMap<LogOp, Behaviour>>,
    calls: Mutex<HashMap<LogOp, Arc<AtomicUsize>>>,
}

impl ForwardingLog {
    /// Forwards to `inner`, with no delay and no fault.
    pub fn new(inner: Arc<dyn Log>) -> Self {
        Self {
            inner,
            behaviour: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// The log calls go to.
    pub fn inner(&self) -> &Arc<dyn Log> {
        &self.inner
    }

    /// From now on, `op` asks `fault` first and fails with the error it returns, if any.
    pub fn set_fault(
        &self,
        op: LogOp,
        fault: impl Fn(&Call<'_>) -> Option<LogError> + Send + Sync + 'static,
    ) {
        self.behaviour().entry(op).or_default().fault = Some(Arc::new(fault));
    }

    /// From now on, `op` no longer fails on its own.
    pub fn clear_fault(&self, op: LogOp) {
        if let Some(b) = self.behaviour().get_mut(&op) {
            b.fault = None;
        }
    }

    /// From now on, each `op` call first sleeps `delay` (tokio's clock).
    pub fn set_delay(&self, op: LogOp, delay: Duration) {
        self.behaviour().entry(op).or_default().delay = delay;
    }

    /// How many `op` calls were made, failed ones included.
    pub fn calls(&self, op: LogOp) -> usize {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&op)
            .map_or(0, |n| n.load(Ordering::SeqCst))
    }

    fn behaviour(&self) -> std::sync::MutexGuard<'_, HashMap<LogOp, Behaviour>> {
        self.behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the call, sleeps its delay, then asks its fault hook.
    async fn before(&self, call: Call<'_>) -> Result<(), LogError> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(call.op)
            .or_default()
            .fetch_add(1, Ordering::SeqCst);
        let b = self.behaviour().get(&call.op).cloned().unwrap_or_default();
        if !b.delay.is_zero() {
            tokio::time::sleep(b.delay).await;
        }
        match b.fault.and_then(|fault| fault(&call)) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Log for ForwardingLog {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        self.before(Call::new(LogOp::Append).topic(topic)).await?;
        self.inner.append(topic, records).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let call = Call::new(LogOp::Read).topic(topic).partition(partition);
        self.before(call).await?;
        self.inner
            .read(topic, partition, offset, max_bytes, max_wait)
            .await
    }

    async fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets, LogError> {
        let call = Call::new(LogOp::Offsets).topic(topic).partition(partition);
        self.before(call).await?;
        self.inner.offsets(topic, partition).await
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), LogError> {
        let call = Call::new(LogOp::Commit)
            .group(group)
            .topic(topic)
            .partition(partition);
        self.before(call).await?;
        self.inner.commit(group, topic, partition, offset).await
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LogError> {
        let call = Call::new(LogOp::Committed)
            .group(group)
            .topic(topic)
            .partition(partition);
        self.before(call).await?;
        self.inner.committed(group, topic, partition).await
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        self.before(Call::new(LogOp::CreateTopic).topic(topic))
            .await?;
        self.inner.create_topic(topic, partitions).await
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        self.before(Call::new(LogOp::DeleteTopic).topic(topic))
            .await?;
        self.inner.delete_topic(topic).await
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.before(Call::new(LogOp::Partitions).topic(topic))
            .await?;
        self.inner.partitions(topic).await
    }

    async fn list_topics(&self) -> Result<Vec<String>, LogError> {
        self.before(Call::new(LogOp::ListTopics)).await?;
        self.inner.list_topics().await
    }

    async fn flush(&self) -> Result<(), LogError> {
        self.before(Call::new(LogOp::Flush)).await?;
        self.inner.flush().await
    }

    async fn join_group(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Option<Box<dyn GroupMembership>>, LogError> {
        self.before(Call::new(LogOp::JoinGroup).group(group))
            .await?;
        self.inner.join_group(group, topics).await
    }

    async fn check_writable(&self) -> Result<(), LogError> {
        self.before(Call::new(LogOp::CheckWritable)).await?;
        self.inner.check_writable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headwater_log::MemoryLog;

    fn refused(call: &Call<'_>) -> Option<LogError> {
        Some(LogError::Refused {
            context: format!("appending to `{}`", call.topic.unwrap_or_default()),
            source: "TOPIC_AUTHORIZATION_FAILED".into(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn forwards_fails_and_delays_as_told() {
        let memory = Arc::new(MemoryLog::default());
        let log = ForwardingLog::new(memory.clone());
        log.append("t", vec![Record::default()]).await.unwrap();
        assert_eq!(memory.offsets("t", 0).await.unwrap().high_watermark, 1);

        log.set_fault(LogOp::Append, refused);
        let err = log.append("t", vec![Record::default()]).await.unwrap_err();
        assert!(err.to_string().contains("appending to `t`"), "{err}");
        assert_eq!(memory.offsets("t", 0).await.unwrap().high_watermark, 1);
        assert_eq!(log.offsets("t", 0).await.unwrap().high_watermark, 1);

        log.clear_fault(LogOp::Append);
        log.set_delay(LogOp::Append, Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        log.append("t", vec![Record::default()]).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(log.calls(LogOp::Append), 3);
        assert_eq!(log.calls(LogOp::Offsets), 1);
        assert_eq!(log.calls(LogOp::Flush), 0);
    }
}
