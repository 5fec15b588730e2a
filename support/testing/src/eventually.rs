//! A bounded poll of a condition, for the one case a test has no signal to wait on: a state
//! that only a real external process (a broker, a child `headwater`, a search engine) changes.
//! Anything in-process should be awaited on a channel, a `Notify` or a paused clock instead.

use std::time::Duration;

/// How long [`eventually`] waits.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between two checks.
const POLL: Duration = Duration::from_millis(20);

/// Checks `cond` every 20 ms until it holds; panics with "timed out after 10 s waiting for
/// {what}" when it has not within 10 s. Uses tokio's clock, so under a paused clock the bound
/// is virtual time.
pub async fn eventually(what: &str, cond: impl AsyncFnMut() -> bool) {
    eventually_within(what, DEFAULT_TIMEOUT, cond).await;
}

/// [`eventually`] with another bound.
pub async fn eventually_within(what: &str, timeout: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond().await {
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_once_the_condition_holds() {
        let started = tokio::time::Instant::now();
        let mut checks = 0;
        eventually("the third check", async || {
            checks += 1;
            checks == 3
        })
        .await;
        assert_eq!(checks, 3);
        assert_eq!(started.elapsed(), POLL * 2);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 1s waiting for never")]
    async fn fails_with_its_message_at_the_bound() {
        eventually_within("never", Duration::from_secs(1), async || false).await;
    }
}
