//! The process's tokio runtime, for Redis I/O: built on first use in each process (see
//! [`fork`](crate::fork)), with `RATE_GUARD_WORKER_THREADS` worker threads (default 1, which
//! beats more on small machines that share their cores with Redis).

use tokio::runtime::{Builder, Runtime};

use crate::errors::Failure;
use crate::fork::ForkLocal;

static RUNTIME: ForkLocal<Runtime> = ForkLocal::new();

/// The environment variable that sets the number of worker threads.
const WORKER_THREADS_VAR: &str = "RATE_GUARD_WORKER_THREADS";

/// This process's runtime, built on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, Failure> {
    RUNTIME.get_or_try_init(|| {
        let threads = worker_threads()?;
        Ok(Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("rate-guard-io")
            .enable_all()
            .build()?)
    })
}

fn worker_threads() -> Result<usize, Failure> {
    match std::env::var(WORKER_THREADS_VAR) {
        Err(_) => Ok(1),
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(n) if (1..=256).contains(&n) => Ok(n),
            _ => Err(Failure::Config(format!(
                "{WORKER_THREADS_VAR}={value:?}: expected a number of threads from 1 to 256"
            ))),
        },
    }
}
