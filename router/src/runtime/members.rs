//! Router replicas: each route joins the consumer group `router.<route>.members` (when the log
//! is shared between processes, see [`Log::join_group`]) and runs only the partitions the
//! group gives it. Offsets stay in `router.<route>`, committed once a sink confirmed a batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use headwater_log::{GroupMembership, Log};
use tokio::sync::Notify;

use crate::error::RouterError;
use crate::rules::Route;

/// One route's membership and the topics it was joined with.
struct Member {
    topics: Vec<String>,
    membership: Box<dyn GroupMembership>,
    watcher: tokio::task::JoinHandle<()>,
    /// The share last handed to the route (what its tasks were then started for).
    applied: Vec<(Arc<str>, i32)>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// The memberships of every route, and whether the log needs them at all.
#[derive(Default)]
pub(super) struct Members {
    by_route: Mutex<HashMap<Arc<str>, Member>>,
    /// Set once the log said it is local to this process (no groups needed).
    local: std::sync::atomic::AtomicBool,
    changed: Arc<Notify>,
}

/// The consumer group whose members split a route's partitions.
pub(crate) fn members_group(route: &str) -> String {
    format!("router.{route}.members")
}

impl Members {
    /// The route's current share of its partitions, in route topic order, joining its group
    /// on first use; `None` when the log is local (the route reads every partition).
    pub(super) async fn owned(
        &self,
        log: &Arc<dyn Log>,
        route: &Route,
    ) -> Result<Option<Vec<(Arc<str>, i32)>>, RouterError> {
        use std::sync::atomic::Ordering;
        if self.local.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let topics = route.source.topics.clone();
        if let Some(owned) = self.current(&route.name, &topics) {
            return Ok(Some(owned));
        }
        let group = members_group(&route.name);
        let joined = log
            .join_group(&group, &topics)
            .await
            .map_err(|e| RouterError::log(format!("joining consumer group `{group}`"), e))?;
        let Some(membership) = joined else {
            self.local.store(true, Ordering::Relaxed);
            return Ok(None);
        };
        tracing::info!(route = %route.name, group, "joined the route's consumer group");
        let mut rx = membership.assignment();
        let changed = self.changed.clone();
        let watcher = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                changed.notify_one();
            }
        });
        let member = Member {
            topics: topics.clone(),
            membership,
            watcher,
            applied: Vec::new(),
        };
        self.lock().insert(Arc::clone(&route.name), member);
        Ok(self.current(&route.name, &topics))
    }

    /// The share of a route already joined with these topics (a route whose topics changed
    /// leaves its group and joins again).
    fn current(&self, route: &Arc<str>, topics: &[String]) -> Option<Vec<(Arc<str>, i32)>> {
        let mut map = self.lock();
        match map.get_mut(route) {
            Some(m) if m.topics == topics => {
                let assigned = m.membership.assignment().borrow().clone();
                m.applied = in_route_order(topics, &assigned);
                Some(m.applied.clone())
            }
            Some(_) => {
                map.remove(route);
                None
            }
            None => None,
        }
    }

    /// After the routes were (re)started with their shares: tells each group whose current
    /// assignment is the one its route now runs that revoked partitions are released (their
    /// tasks stopped, delivered and committed). A share that changed meanwhile waits for the
    /// next pass.
    pub(super) fn release_settled(&self) {
        let map = self.lock();
        for m in map.values() {
            let now = in_route_order(&m.topics, &m.membership.assignment().borrow());
            if now == m.applied {
                m.membership.released();
            }
        }
    }

    /// Keeps the memberships of the routes `keep` says yes to; the others leave their group.
    pub(super) fn retain(&self, keep: impl Fn(&Arc<str>) -> bool) {
        let gone: Vec<Member> = {
            let mut map = self.lock();
            let names: Vec<Arc<str>> = map.keys().filter(|n| !keep(n)).cloned().collect();
            names.iter().filter_map(|n| map.remove(n)).collect()
        };
        // Leaving blocks briefly (LeaveGroup); do it outside the lock.
        drop(gone);
    }

    /// Notified whenever any route's share changes.
    pub(super) fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Member>> {
        self.by_route.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An assignment in the order [`super::RouterHandle`] lists partitions: route topics in
/// order, partitions ascending.
fn in_route_order(topics: &[String], assigned: &[(String, i32)]) -> Vec<(Arc<str>, i32)> {
    let mut out = Vec::with_capacity(assigned.len());
    for topic in topics {
        let name: Arc<str> = Arc::from(topic.as_str());
        let mut ps: Vec<i32> = assigned
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| *p)
            .collect();
        ps.sort_unstable();
        ps.dedup();
        out.extend(ps.into_iter().map(|p| (Arc::clone(&name), p)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_list_in_route_topic_order() {
        let topics = vec!["b".to_owned(), "a".to_owned()];
        let assigned = vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 3),
            ("a".to_owned(), 0),
            ("b".to_owned(), 0),
            ("c".to_owned(), 0),
        ];
        let got: Vec<(String, i32)> = in_route_order(&topics, &assigned)
            .into_iter()
            .map(|(t, p)| (t.to_string(), p))
            .collect();
        let want = [("b", 0), ("b", 3), ("a", 0), ("a", 1)];
        let want: Vec<(String, i32)> = want.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect();
        assert_eq!(got, want);
    }
}
