//! [`Pipe`]: a lean pipelined connection for the request path of a standalone or Sentinel
//! master over plain TCP.
//!
//! The redis crate's multiplexed connection costs, per call, a channel hop to its driver task
//! and, from a thread outside the runtime (the asyncio loop), a wake-up of that task: an
//! eventfd write per call; its general reply parser is the rest. Here a caller writes its
//! command's bytes into a shared buffer under a short lock and queues where its reply goes;
//! the writer task is woken only when it sleeps (idle → armed, as the async bridge does), so a
//! burst of calls costs one wake-up and one `write`. The reader task frames replies and hands
//! them out in order; a flat array of integers (the request script's reply) is read without the
//! general parser.
//!
//! A thread that makes many calls in a row (the asyncio loop thread, in one loop iteration) can
//! defer even that wake-up: calls made inside [`defer_wakeups`] only queue their bytes, and
//! [`wake_deferred`] wakes each pipe they used once, after the batch.
//!
//! Everything else (connecting and probing, `FUNCTION LOAD`, `SCRIPT LOAD`, `DEL`, TLS,
//! Cluster) stays on the redis crate. A pipe that breaks fails its calls at once and every
//! later one, which the [`Node`](super::node::Node) answers by replacing its pool (and the
//! pipe with it), as for a broken multiplexed connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;
use redis::{RedisError, RedisResult, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

use crate::resp;

type Reply = oneshot::Sender<RedisResult<Value>>;

/// A pipelined connection: see the module docs.
pub(crate) struct Pipe {
    shared: Mutex<Shared>,
    wake: Notify,
}

struct Shared {
    /// Commands written and not yet taken by the writer.
    out: Vec<u8>,
    /// Where the replies go, in the order of the commands.
    waiting: VecDeque<Reply>,
    /// Whether the writer was told there is work.
    armed: Armed,
    /// Why the connection is gone, once it is.
    broken: Option<String>,
}

/// The writer's state, as callers see it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Armed {
    /// Asleep or about to sleep: the next command must wake it.
    Idle,
    /// Commands wait for a deferred wake-up ([`wake_deferred`]).
    Deferred,
    /// Woken: it will write whatever is queued before it sleeps again.
    Notified,
}

thread_local! {
    /// Set while this thread defers its wake-ups ([`defer_wakeups`]).
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// The pipes this thread owes a wake-up.
    static DEFERRED: RefCell<Vec<Arc<Pipe>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f`; the pipes that calls made in `f` write to are not woken now but by the next
/// [`wake_deferred`] on this thread, which the caller must make soon (their calls wait for it).
pub fn defer_wakeups<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            DEFERRING.set(self.0);
        }
    }
    let _reset = Reset(DEFERRING.replace(true));
    f()
}

/// Wakes the pipes that calls deferred on this thread wrote to ([`defer_wakeups`]).
pub fn wake_deferred() {
    let pipes = DEFERRED.take();
    for pipe in &pipes {
        let wake = {
            let mut shared = pipe.shared.lock();
            std::mem::replace(&mut shared.armed, Armed::Notified) == Armed::Deferred
        };
        if wake {
            pipe.wake.notify_one();
        }
    }
    // Keep the vector's buffer for the next batch.
    let mut pipes = pipes;
    pipes.clear();
    DEFERRED.with_borrow_mut(|deferred| {
        if deferred.is_empty() {
            *deferred = pipes;
        }
    });
}

impl Pipe {
    /// A pipe over `stream`, its reader and writer spawned on the current runtime.
    pub(crate) fn start(stream: TcpStream) -> Arc<Self> {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let pipe = Arc::new(Pipe {
            shared: Mutex::new(Shared {
                out: Vec::with_capacity(4096),
                waiting: VecDeque::new(),
                armed: Armed::Idle,
                broken: None,
            }),
            wake: Notify::new(),
        });
        tokio::spawn(write_loop(Arc::clone(&pipe), write));
        tokio::spawn(read_loop(Arc::clone(&pipe), read));
        pipe
    }

    /// Sends `command` (one RESP command) and waits for its reply. Dropping the future gives
    /// the reply up without harming the connection.
    pub(crate) async fn call(self: &Arc<Self>, command: &[u8]) -> RedisResult<Value> {
        let (tx, rx) = oneshot::channel();
        let deferring = DEFERRING.get();
        let wake = {
            let mut shared = self.shared.lock();
            if let Some(why) = &shared.broken {
                return Err(closed(why));
            }
            shared.out.extend_from_slice(command);
            shared.waiting.push_back(tx);
            match (shared.armed, deferring) {
                (Armed::Notified, _) | (Armed::Deferred, true) => false,
                (Armed::Idle, true) => {
                    shared.armed = Armed::Deferred;
                    DEFERRED.with_borrow_mut(|d| d.push(Arc::clone(self)));
                    false
                }
                (Armed::Idle | Armed::Deferred, false) => {
                    shared.armed = Armed::Notified;
                    true
                }
            }
        };
        if wake {
            self.wake.notify_one();
        }
        match rx.await {
            Ok(reply) => reply,
            Err(_) => Err(closed(
                self.shared
                    .lock()
                    .broken
                    .as_deref()
                    .unwrap_or("connection closed"),
            )),
        }
    }

    /// Closes the connection: calls waiting fail, later ones fail at once.
    pub(crate) fn close(&self, why: &str) {
        let waiting = {
            let mut shared = self.shared.lock();
            if shared.broken.is_none() {
                shared.broken = Some(why.to_owned());
            }
            shared.out.clear();
            std::mem::take(&mut shared.waiting)
        };
        // Dropped senders fail their calls, outside the lock.
        drop(waiting);
        self.wake.notify_one();
    }

    fn next_reply(&self) -> Option<Reply> {
        self.shared.lock().waiting.pop_front()
    }
}

fn closed(why: &str) -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::ConnectionReset,
        why.to_owned(),
    ))
}

async fn write_loop(pipe: Arc<Pipe>, mut write: OwnedWriteHalf) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        {
            let mut shared = pipe.shared.lock();
            if shared.broken.is_some() {
                break;
            }
            if shared.out.is_empty() {
                // A deferred wake-up still owed stays owed.
                if shared.armed == Armed::Notified {
                    shared.armed = Armed::Idle;
                }
            } else {
                std::mem::swap(&mut shared.out, &mut buf);
            }
        }
        if buf.is_empty() {
            pipe.wake.notified().await;
            continue;
        }
        if let Err(e) = write.write_all(&buf).await {
            pipe.close(&format!("write failed: {e}"));
            break;
        }
        buf.clear();
    }
    // Dropping the write half shuts the socket down for writing; the server then closes it,
    // which ends the reader.
}

async fn read_loop(pipe: Arc<Pipe>, mut read: OwnedReadHalf) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut start = 0;
    let why = loop {
        if start > 0 && start == buf.len() {
            buf.clear();
            start = 0;
        } else if start > 8 * 1024 {
            buf.drain(..start);
            start = 0;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.capacity().max(16 * 1024));
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => break "connection closed by the server".to_owned(),
            Ok(_) => {}
            Err(e) => break format!("read failed: {e}"),
        }
        let mut failed = None;
        loop {
            let Ok(len) = resp::frame_len(&buf[start..]) else {
                failed = Some("the server sent something that is not RESP2".to_owned());
                break;
            };
            let Some(len) = len else { break };
            let frame = &buf[start..start + len];
            start += len;
            let Some(reply) = pipe.next_reply() else {
                failed = Some("a reply came that no command asked for".to_owned());
                break;
            };
            // A caller that gave up (timeout, cancellation) dropped its receiver.
            let _ = reply.send(resp::parse(frame));
        }
        if let Some(why) = failed {
            break why;
        }
    };
    pipe.close(&why);
}
