//! A Redis Cluster through the redis crate's async cluster connection, which follows `MOVED`
//! and `ASK`, refreshes its slot map after a failover and multiplexes one socket per node.

use std::collections::HashMap;
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, Slot,
    SlotAddr,
};
use redis::{Cmd, RedisResult, TlsMode, Value};

use super::config::{Credentials, HostPort};
use super::error::{classify, ConnectionError};
use super::node::{connection_info, install_tls_provider};
use super::tls::Tls;

/// A connected cluster. Clones share the connection.
#[derive(Clone)]
pub(crate) struct Cluster {
    conn: ClusterConnection,
    seeds: String,
    timeout: Duration,
    secret: Option<String>,
}

impl Cluster {
    /// Connects to the cluster through `seeds` and reads its slot map, within `connect_timeout`.
    pub(crate) async fn connect(
        seeds: &[HostPort],
        credentials: &Credentials,
        tls: Option<&Tls>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, ConnectionError> {
        let names: Vec<String> = seeds.iter().map(ToString::to_string).collect();
        let described = format!("cluster seeds {}", names.join(","));
        let secret = credentials.password.clone();
        let fail =
            |e: &redis::RedisError| classify(e, &described, connect_timeout, secret.as_deref());
        let infos = seeds
            .iter()
            .map(|seed| connection_info(seed, tls, None, 0))
            .collect::<RedisResult<Vec<_>>>()
            .map_err(|e| fail(&e))?;
        let mut builder = ClusterClientBuilder::new(infos)
            .connection_timeout(connect_timeout)
            .response_timeout(timeout);
        if let Some(user) = &credentials.username {
            builder = builder.username(user);
        }
        if let Some(password) = &credentials.password {
            builder = builder.password(password);
        }
        if let Some(tls) = tls {
            install_tls_provider();
            builder = builder
                .tls(if tls.verify_peer() {
                    TlsMode::Secure
                } else {
                    TlsMode::Insecure
                })
                .danger_accept_invalid_hostnames(!tls.verify_hostname());
            if let Some(certificates) = tls.certificates() {
                builder = builder.certs(certificates);
            }
        }
        let client = builder.build().map_err(|e| fail(&e))?;
        let conn = tokio::time::timeout(connect_timeout, client.get_async_connection())
            .await
            .map_err(|_| ConnectionError::Timeout(connect_timeout))?
            .map_err(|e| fail(&e))?;
        Ok(Cluster {
            conn,
            seeds: described,
            timeout,
            secret,
        })
    }

    /// The seed nodes, for `Debug`.
    pub(crate) fn seeds(&self) -> &str {
        &self.seeds
    }

    /// Sends `cmd` along `routing` within the command timeout.
    pub(crate) async fn route(
        &self,
        cmd: Cmd,
        routing: RoutingInfo,
    ) -> Result<Value, ConnectionError> {
        self.bounded(self.route_raw(cmd, routing)).await
    }

    /// Sends `cmd` along `routing`; server errors become `Err`.
    pub(crate) async fn route_raw(&self, cmd: Cmd, routing: RoutingInfo) -> RedisResult<Value> {
        self.conn
            .clone()
            .route_command(cmd, routing)
            .await
            .and_then(Value::extract_error)
    }

    /// Bounds `call` by the command timeout and classifies its error.
    pub(crate) async fn bounded(
        &self,
        call: impl std::future::Future<Output = RedisResult<Value>>,
    ) -> Result<Value, ConnectionError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(
                &e,
                "cluster",
                self.timeout,
                self.secret.as_deref(),
            )),
            Err(_) => Err(ConnectionError::Timeout(self.timeout)),
        }
    }

    /// `DEL` of `keys`, one command per slot, all sent at once.
    pub(crate) async fn del(&self, keys: &[&str]) -> Result<(), ConnectionError> {
        let mut by_slot: HashMap<Slot, Vec<&str>> = HashMap::new();
        for key in keys {
            by_slot.entry(Slot::for_key(key)).or_default().push(key);
        }
        let dels = by_slot.into_values().map(|keys| {
            let routing = to_slot_master(keys[0]);
            let mut del = redis::cmd("DEL");
            del.arg(keys);
            self.route_raw(del, routing)
        });
        self.bounded(async {
            futures_util::future::try_join_all(dels).await?;
            Ok(Value::Nil)
        })
        .await
        .map(drop)
    }
}

/// Routes to the master that owns `key`'s slot.
pub(crate) fn to_slot_master(key: &str) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key,
        SlotAddr::Master,
    )))
}

/// Routes to any one master.
pub(crate) fn to_any_master() -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary)
}

/// Routes to every master; fails if any of them fails.
pub(crate) fn to_all_masters() -> RoutingInfo {
    RoutingInfo::MultiNode((
        MultipleNodeRoutingInfo::AllMasters,
        Some(ResponsePolicy::AllSucceeded),
    ))
}
