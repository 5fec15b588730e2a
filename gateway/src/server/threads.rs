//! Connection threads (`gateway.connections.io_threads`, by default one a core): each runs a
//! single-threaded tokio runtime of its own, and an accepted connection lives on one of them,
//! with everything it spawns (HTTP/2 streams, the append of its batches, an fsync's blocking
//! call), until it closes.
//!
//! On the process's shared (work-stealing) runtime, a request that arrives while the workers
//! are parked wakes one of them, which then wakes another to steal work it does not have: a
//! pair of `futex` calls and a context switch per request, at low load most of the kernel's
//! share of a small request. A thread that owns its connections waits in its own `epoll` and
//! wakes no one. The price: a connection never moves, so one busy connection (many HTTP/2
//! streams) is served by one core.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The running connection threads.
pub(super) struct ConnectionThreads {
    threads: Vec<ConnectionThread>,
}

struct ConnectionThread {
    handle: Handle,
    /// Connections served on this thread now.
    open: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    joined: JoinHandle<()>,
}

impl ConnectionThreads {
    /// Starts `count` (at least one) threads.
    pub(super) fn start(count: usize) -> std::io::Result<Self> {
        let threads = (0..count.max(1))
            .map(ConnectionThread::start)
            .collect::<std::io::Result<_>>()?;
        Ok(Self { threads })
    }

    /// Serves `stream` with `serve` on the thread with the fewest connections. The socket moves
    /// to that thread's event loop, so its readiness wakes that thread alone.
    pub(super) fn spawn<S, F>(&self, stream: TcpStream, serve: S)
    where
        S: FnOnce(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(thread) = self
            .threads
            .iter()
            .min_by_key(|thread| thread.open.load(Ordering::Relaxed))
        else {
            return;
        };
        let socket = match stream.into_std() {
            Ok(socket) => socket,
            Err(error) => {
                tracing::debug!(%error, "accepted socket could not be moved to a connection thread");
                return;
            }
        };
        let counted = Counted::new(&thread.open);
        thread.handle.spawn(async move {
            let _counted = counted;
            match TcpStream::from_std(socket) {
                Ok(stream) => serve(stream).await,
                Err(error) => tracing::debug!(%error, "accepted socket not registered"),
            }
        });
    }

    /// Stops every thread: the connections still served are dropped (closed), and each
    /// thread's blocking work in progress finishes first.
    pub(super) async fn stop(self) {
        let joined: Vec<_> = self
            .threads
            .into_iter()
            .map(|thread| {
                let _ = thread.stop.send(());
                thread.joined
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for thread in joined {
                if thread.join().is_err() {
                    tracing::error!("a connection thread panicked");
                }
            }
        })
        .await;
    }
}

impl ConnectionThread {
    fn start(index: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("hw-conn-{index}-bl"))
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let joined = std::thread::Builder::new()
            .name(format!("hw-conn-{index}"))
            .spawn(move || {
                // The spawned connections run while this waits; a dropped sender stops too.
                let _ = runtime.block_on(stopped);
                drop(runtime);
            })?;
        Ok(Self {
            handle,
            open: Arc::new(AtomicUsize::new(0)),
            stop,
            joined,
        })
    }
}

/// One connection counted on its thread until dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn thread_names() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                    .map(|name| name.trim().to_owned())
                    .filter(|name| {
                        name.strip_prefix("hw-conn-")
                            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_go_to_the_least_busy_thread_and_stop_closes_them() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let threads = ConnectionThreads::start(2).unwrap();
        let (served_on, mut names) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let client = TcpStream::connect(addr).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let served_on = served_on.clone();
            threads.spawn(stream, move |mut stream| async move {
                let name = std::thread::current().name().map(str::to_owned);
                // Echo one byte, from this thread's own event loop, then hold the connection.
                let mut byte = [0u8];
                if stream.read_exact(&mut byte).await.is_ok() {
                    let _ = stream.write_all(&byte).await;
                }
                let _ = served_on.send(name);
                let _ = stream.read(&mut byte).await;
            });
            clients.push(client);
        }
        let mut seen = Vec::new();
        for (i, client) in clients.iter_mut().enumerate() {
            let byte = u8::try_from(i).unwrap();
            client.write_all(&[byte]).await.unwrap();
            let mut echo = [0u8];
            client.read_exact(&mut echo).await.unwrap();
            assert_eq!(echo, [byte]);
            seen.push(names.recv().await.unwrap().unwrap());
        }
        // Each went to the thread serving the fewest at the time: 0, 1, 0, 1.
        assert_eq!(seen, ["hw-conn-0", "hw-conn-1", "hw-conn-0", "hw-conn-1"]);
        // (A thread names itself once it runs: both have served a connection by now.)
        if cfg!(target_os = "linux") {
            assert_eq!(thread_names(), ["hw-conn-0", "hw-conn-1"]);
        }
        threads.stop().await;
        for client in &mut clients {
            let mut rest = Vec::new();
            // Closed by the stop: the read ends (EOF or a reset) instead of waiting.
            let _ = client.read_to_end(&mut rest).await;
            assert!(rest.is_empty());
        }
        if cfg!(target_os = "linux") {
            assert!(thread_names().is_empty(), "{:?}", thread_names());
        }
    }
}
