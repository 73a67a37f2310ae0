//! TLS over a real Redis Cluster (3 masters, 3 replicas; cluster bus and replication over TLS
//! too) with certificates of a private CA made by the test: the CA trusted from a URL parameter
//! or the builder, decisions (one key up to its limit; a two-slot request all-or-nothing through
//! the refund path), a wrong CA refused, the hostname opt-out (the nodes switched to a
//! certificate for another name) and mutual TLS. One cluster, started once: the phases
//! run in order in a single test, changing the nodes' TLS settings with `CONFIG SET`, the last
//! one turning `tls-auth-clients` on at every node.

use std::num::NonZeroU32;

use rate_guard_core::{Check, KeyBuilder, Quota, Request, Rule, Store};
use rate_guard_redis::connection::{ConnectionError, RedisConfig};
use rate_guard_redis::RedisStore;
use rate_guard_testkit::{RedisCluster, TestCertificates};

mod common;
use common::{config, param};

fn rule(rate: &str, name: &str) -> Rule {
    Rule::builder(rate.parse::<Quota>().unwrap())
        .name(name)
        .build()
        .unwrap()
}

/// One key is admitted up to its limit, then denied; `tag` keeps the keys of each call apart.
async fn decides(store: &RedisStore, tag: &str) {
    let keys = KeyBuilder::default();
    let limit = rule("3/hour", &format!("single-{tag}"));
    let key = keys.key(&limit, "client");
    let check = [Check {
        rule: &limit,
        key: &key,
        cost: NonZeroU32::MIN,
    }];
    for n in 0..3 {
        let verdict = store.decide(Request::hit(&check)).await.unwrap();
        assert!(verdict.allowed(), "{tag}: hit {n}");
    }
    let fourth = store.decide(Request::hit(&check)).await.unwrap();
    assert!(!fourth.allowed() && !fourth.is_degraded(), "{tag}");
}

/// A request of two rules whose keys live in different slots is all-or-nothing: once the route
/// rule denies, the global rule loses nothing.
async fn two_slots_all_or_nothing(store: &RedisStore, cluster: &RedisCluster) {
    let keys = KeyBuilder::default();
    let global = rule("100/hour", "global");
    let route = rule("2/hour", "route");
    let global_key = keys.key(&global, "global");
    let route_key = keys.key(&route, "ip:203.0.113.7");
    let slot = |key: &str| {
        tokio::task::block_in_place(|| cluster.cmd(&["CLUSTER", "KEYSLOT", key])).unwrap()
    };
    assert_ne!(
        slot(&global_key),
        slot(&route_key),
        "the two keys must span two slots"
    );
    let both = [
        Check {
            rule: &global,
            key: &global_key,
            cost: NonZeroU32::MIN,
        },
        Check {
            rule: &route,
            key: &route_key,
            cost: NonZeroU32::MIN,
        },
    ];
    for _ in 0..2 {
        assert!(store.decide(Request::hit(&both)).await.unwrap().allowed());
    }
    for _ in 0..5 {
        let verdict = store.decide(Request::hit(&both)).await.unwrap();
        assert!(!verdict.allowed());
        assert_eq!(verdict.deciding_rule(), 1, "the route rule denies");
    }
    let only_global = [both[0]];
    let after = store
        .decide(Request::peek(&only_global))
        .await
        .unwrap()
        .decision();
    assert_eq!(after.remaining, 98, "denied requests consumed global quota");
}

/// `CONFIG SET` on every node, through its plain port; new TLS connections see the change.
fn set_everywhere(cluster: &RedisCluster, settings: &[&str]) {
    tokio::task::block_in_place(|| {
        for node in cluster.nodes() {
            let args: Vec<&str> = ["CONFIG", "SET"]
                .into_iter()
                .chain(settings.iter().copied())
                .collect();
            assert_eq!(node.cmd(&args).unwrap(), "OK", "{}", node.addr());
        }
    });
}

async fn connect(config: &RedisConfig) -> Result<RedisStore, ConnectionError> {
    RedisStore::connect(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_with_a_private_ca_and_client_certificates() {
    let certs = TestCertificates::generate().unwrap();
    let cluster = tokio::task::block_in_place(|| RedisCluster::start_tls(&certs, false)).unwrap();
    let url = cluster.tls_url().unwrap();
    assert!(url.starts_with("rediss+cluster://"), "{url}");

    // The private CA, from the URL and from the builder.
    let store = connect(&config(&format!(
        "{url}?{}",
        param("ssl_ca_certs", &certs.ca())
    )))
    .await
    .unwrap();
    decides(&store, "url").await;
    two_slots_all_or_nothing(&store, &cluster).await;
    let store = connect(&config(&url).tls_ca_file(certs.ca()))
        .await
        .unwrap();
    decides(&store, "builder").await;

    // The web roots do not know the private CA; neither does an unrelated CA.
    for config in [config(&url), config(&url).tls_ca_file(certs.other_ca())] {
        let err = connect(&config).await.unwrap_err();
        assert!(matches!(err, ConnectionError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    // The hostname opt-out: every node now serves a certificate of the CA for elsewhere.invalid
    // only, which matches neither the seeds nor the 127.0.0.1 the nodes announce.
    let (elsewhere_cert, elsewhere_key) = certs.elsewhere();
    set_everywhere(
        &cluster,
        &[
            "tls-cert-file",
            &elsewhere_cert.display().to_string(),
            "tls-key-file",
            &elsewhere_key.display().to_string(),
        ],
    );
    let err = connect(&config(&url).tls_ca_file(certs.ca()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectionError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    let store = connect(
        &config(&url)
            .tls_ca_file(certs.ca())
            .tls_verify_hostname(false),
    )
    .await
    .unwrap();
    decides(&store, "no-hostname-builder").await;
    let store = connect(&config(&format!(
        "{url}?{}&ssl_check_hostname=false",
        param("ssl_ca_certs", &certs.ca())
    )))
    .await
    .unwrap();
    decides(&store, "no-hostname-url").await;
    // The CA is still checked without the hostname.
    let err = connect(
        &config(&url)
            .tls_ca_file(certs.other_ca())
            .tls_verify_hostname(false),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    let (server_cert, server_key) = certs.server();
    set_everywhere(
        &cluster,
        &[
            "tls-cert-file",
            &server_cert.display().to_string(),
            "tls-key-file",
            &server_key.display().to_string(),
        ],
    );

    // Mutual TLS: every node now requires a client certificate of the CA.
    set_everywhere(&cluster, &["tls-auth-clients", "yes"]);
    let (cert, key) = certs.client();
    let store = connect(
        &config(&url)
            .tls_ca_file(certs.ca())
            .tls_client_cert(&cert, &key),
    )
    .await
    .unwrap();
    decides(&store, "mutual-builder").await;
    let store = connect(&config(&format!(
        "{url}?{}&{}&{}",
        param("ssl_ca_certs", &certs.ca()),
        param("ssl_certfile", &cert),
        param("ssl_keyfile", &key)
    )))
    .await
    .unwrap();
    decides(&store, "mutual-url").await;
    let err = connect(&config(&url).tls_ca_file(certs.ca()))
        .await
        .unwrap_err();
    match &err {
        ConnectionError::Unavailable(_) => {
            assert!(err.to_string().contains("Certificate"), "{err}");
        }
        ConnectionError::Timeout(_) => {}
        _ => panic!("{err:?}"),
    }
}
