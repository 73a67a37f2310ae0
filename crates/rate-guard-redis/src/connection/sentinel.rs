//! Sentinel: finding the master ([`discover`]) and hearing when it moves ([`spawn_watcher`]).
//!
//! A sentinel may lag behind a failover, and a demoted master goes on accepting writes until
//! the sentinels reconfigure it, several seconds later. So the master is what most sentinels
//! say (and what the server itself confirms with `ROLE`), and every sentinel is listened to on
//! `+switch-master`, which moves the pool as soon as a failover completes.

use std::sync::Weak;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use redis::{Client, RedisError};
use tokio::sync::watch;

use super::config::{Credentials, HostPort};
use super::error::{classify, ConnectionError};
use super::node::{connect_pool, connection_info, open, Inner, Pool, Probe, Settings};

/// How long a watcher waits before subscribing again after losing its sentinel.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Asks every sentinel at once where `master` is, and once a majority has answered, connects
/// to the most named server that confirms it is the master.
pub(crate) async fn discover(
    sentinels: &[HostPort],
    master: &str,
    settings: &Settings,
) -> Result<Pool, ConnectionError> {
    let majority = sentinels.len() / 2 + 1;
    let mut answers: FuturesUnordered<_> = sentinels
        .iter()
        .map(|sentinel| ask_sentinel(sentinel, master, settings).map(move |a| (sentinel, a)))
        .collect();
    // Candidates with their votes, in the order they were first named.
    let mut votes: Vec<(HostPort, usize)> = Vec::new();
    let mut answered = 0;
    let mut failures: Vec<ConnectionError> = Vec::new();
    while let Some((sentinel, answer)) = answers.next().await {
        match answer {
            Ok(Some(addr)) => {
                answered += 1;
                match votes.iter_mut().find(|(a, _)| *a == addr) {
                    Some((_, n)) => *n += 1,
                    None => votes.push((addr, 1)),
                }
                if answered >= majority {
                    break;
                }
            }
            Ok(None) => failures.push(ConnectionError::Unavailable(format!(
                "sentinel {sentinel} knows no master named `{master}`"
            ))),
            Err(e) => failures.push(e),
        }
    }
    votes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (addr, _) in votes {
        match connect_pool(&addr, settings, Probe::Master).await {
            Ok(pool) => return Ok(pool),
            Err(e) => failures.push(e),
        }
    }
    // A refused password says more than the unreachable sentinels around it.
    if let Some(refused) = failures
        .iter()
        .find(|e| matches!(e, ConnectionError::Refused(_)))
    {
        return Err(refused.clone());
    }
    let reasons: Vec<String> = failures.iter().map(ToString::to_string).collect();
    Err(ConnectionError::Unavailable(format!(
        "no master `{master}` found through the sentinels: {}",
        reasons.join("; ")
    )))
}

/// `SENTINEL get-master-addr-by-name`, without credentials first, then with the URL's if the
/// sentinel asks for them.
async fn ask_sentinel(
    sentinel: &HostPort,
    master: &str,
    settings: &Settings,
) -> Result<Option<HostPort>, ConnectionError> {
    let fail = |e: &RedisError| {
        classify(
            e,
            &format!("sentinel {sentinel}"),
            settings.connect_timeout,
            settings.secret(),
        )
    };
    let mut query = redis::cmd("SENTINEL");
    query.arg("get-master-addr-by-name").arg(master);
    let mut credentials = None;
    loop {
        let info = connection_info(sentinel, settings.tls.as_ref(), credentials, 0)
            .map_err(|e| fail(&e))?;
        let mut conn = open(info, settings).await.map_err(|e| fail(&e))?;
        match query.query_async::<Option<(String, u16)>>(&mut conn).await {
            Ok(reply) => return Ok(reply.map(|(host, port)| HostPort { host, port })),
            Err(e) if wants_credentials(&e, credentials, settings) => {
                credentials = Some(&settings.credentials);
            }
            Err(e) => return Err(fail(&e)),
        }
    }
}

/// The sentinel asked for a password that we have and did not give yet.
fn wants_credentials(e: &RedisError, given: Option<&Credentials>, settings: &Settings) -> bool {
    e.code() == Some("NOAUTH") && given.is_none() && settings.credentials.password.is_some()
}

/// Listens to `sentinel` for `+switch-master` of `master` and moves `node` to the new master,
/// until `stop` closes (the node was dropped). A lost subscription is made again after a
/// short delay.
pub(crate) fn spawn_watcher(
    sentinel: HostPort,
    master: String,
    settings: Settings,
    node: Weak<Inner>,
    mut stop: watch::Receiver<()>,
) {
    tokio::spawn(async move {
        let mut credentials = None;
        loop {
            let outcome = tokio::select! {
                _ = stop.changed() => return,
                outcome = watch(&sentinel, &master, &settings, credentials, &node) => outcome,
            };
            if let Err(e) = outcome {
                if wants_credentials(&e, credentials, &settings) {
                    credentials = Some(&settings.credentials);
                    continue;
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
            }
        }
    });
}

/// One subscription, until the sentinel goes away.
async fn watch(
    sentinel: &HostPort,
    master: &str,
    settings: &Settings,
    credentials: Option<&Credentials>,
    node: &Weak<Inner>,
) -> Result<(), RedisError> {
    let info = connection_info(sentinel, settings.tls.as_ref(), credentials, 0)?;
    let client = Client::open(info)?;
    let mut pubsub = tokio::time::timeout(settings.connect_timeout, client.get_async_pubsub())
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    pubsub.subscribe("+switch-master").await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        // "<master name> <old ip> <old port> <new ip> <new port>"
        let payload: String = message.get_payload()?;
        let fields: Vec<&str> = payload.split(' ').collect();
        if let [name, _, _, host, port] = fields.as_slice() {
            if *name == master {
                if let (Some(inner), Ok(port)) = (node.upgrade(), port.parse()) {
                    inner.switch_to(HostPort {
                        host: (*host).to_owned(),
                        port,
                    });
                }
            }
        }
    }
    Ok(())
}
