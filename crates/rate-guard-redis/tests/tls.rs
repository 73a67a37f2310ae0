//! TLS against real `redis-server` processes with certificates of a private CA made by the
//! test (`openssl`): the CA trusted from a file (URL parameter or builder), a wrong CA refused,
//! mutual TLS, the hostname opt-out, and settings that cannot work refused before connecting.

use rate_guard_core::{Limiter, Quota, Rule};
use rate_guard_redis::connection::{Connection, ConnectionError, RedisConfig};
use rate_guard_redis::test_support::eval_script;
use rate_guard_redis::RedisStore;
use rate_guard_testkit::{RedisServer, TestCertificates};

mod common;
use common::{config, param};

const INCR: &str = "return redis.call('INCR', KEYS[1])";

fn tls_server(
    certs: &TestCertificates,
    elsewhere: bool,
    require_client_certs: bool,
) -> RedisServer {
    let (cert, key) = if elsewhere {
        certs.elsewhere()
    } else {
        certs.server()
    };
    RedisServer::builder()
        .tls(cert, key, certs.ca(), require_client_certs)
        .start()
        .unwrap()
}

async fn works(config: &RedisConfig) {
    let conn = Connection::connect(config).await.unwrap();
    let sha = conn.load_script(INCR).await.unwrap();
    let reply = eval_script(&conn, &sha, INCR, &["tls-hits"], &[] as &[&str])
        .await
        .unwrap();
    assert!(matches!(reply, redis::Value::Int(n) if n >= 1), "{reply:?}");
}

async fn fails(config: &RedisConfig) -> ConnectionError {
    Connection::connect(config).await.unwrap_err()
}

#[tokio::test]
async fn a_private_ca_is_trusted_from_a_file_and_only_then() {
    let certs = TestCertificates::generate().unwrap();
    let server = tls_server(&certs, false, false);
    let url = server.tls_url().unwrap();

    works(&config(&format!(
        "{url}?{}",
        param("ssl_ca_certs", &certs.ca())
    )))
    .await;
    works(&config(&url).tls_ca_file(certs.ca())).await;

    // The web roots do not know the private CA; neither does an unrelated CA.
    for config in [config(&url), config(&url).tls_ca_file(certs.other_ca())] {
        let err = fails(&config).await;
        assert!(matches!(err, ConnectionError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    // A limiter decides over it.
    let store = RedisStore::connect(&config(&url).tls_ca_file(certs.ca()))
        .await
        .unwrap();
    let limiter = Limiter::builder()
        .rule(
            Rule::builder("2/minute".parse::<Quota>().unwrap())
                .build()
                .unwrap(),
        )
        .store(store)
        .build()
        .unwrap();
    assert!(limiter.hit("a").await.unwrap().allowed());
    assert!(limiter.hit("a").await.unwrap().allowed());
    let third = limiter.hit("a").await.unwrap();
    assert!(!third.allowed() && !third.is_degraded());
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = TestCertificates::generate().unwrap();
    let server = tls_server(&certs, false, true);
    let url = server.tls_url().unwrap();
    let (cert, key) = certs.client();

    works(
        &config(&url)
            .tls_ca_file(certs.ca())
            .tls_client_cert(&cert, &key),
    )
    .await;
    let query = format!(
        "{url}?{}&{}&{}",
        param("ssl_ca_certs", &certs.ca()),
        param("ssl_certfile", &cert),
        param("ssl_keyfile", &key)
    );
    works(&config(&query)).await;

    let err = fails(&config(&url).tls_ca_file(certs.ca())).await;
    assert!(
        matches!(
            err,
            ConnectionError::Unavailable(_) | ConnectionError::Timeout(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_hostname_check_can_be_turned_off_and_verification_too() {
    let certs = TestCertificates::generate().unwrap();
    // Its certificate names elsewhere.invalid, not 127.0.0.1.
    let server = tls_server(&certs, true, false);
    let url = server.tls_url().unwrap();

    let err = fails(&config(&url).tls_ca_file(certs.ca())).await;
    assert!(err.to_string().contains("certificate"), "{err}");

    works(
        &config(&url)
            .tls_ca_file(certs.ca())
            .tls_verify_hostname(false),
    )
    .await;
    works(&config(&format!(
        "{url}?{}&ssl_check_hostname=false",
        param("ssl_ca_certs", &certs.ca())
    )))
    .await;
    // The CA is still checked without the hostname.
    let err = fails(
        &config(&url)
            .tls_ca_file(certs.other_ca())
            .tls_verify_hostname(false),
    )
    .await;
    assert!(err.to_string().contains("certificate"), "{err}");

    // No verification at all, as asked.
    works(&config(&format!("{url}?ssl_cert_reqs=none"))).await;
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_before_connecting() {
    let certs = TestCertificates::generate().unwrap();
    let missing = certs.dir().join("missing.pem");
    let (cert, key) = certs.client();
    // Nothing listens there: every error below comes before connecting.
    let url = "rediss://127.0.0.1:1/";

    let err = fails(&config(url).tls_ca_file(&missing)).await;
    assert!(
        matches!(&err, ConnectionError::Tls(m) if m.contains("cannot read the CA bundle") && m.contains("missing.pem")),
        "{err:?}"
    );
    let err = fails(&config(url).tls_ca_file(&key)).await;
    assert!(
        matches!(&err, ConnectionError::Tls(m) if m.contains("holds no PEM CERTIFICATE")),
        "{err:?}"
    );
    let err = fails(&config(&format!("{url}?{}", param("ssl_certfile", &cert)))).await;
    assert!(
        matches!(&err, ConnectionError::Tls(m) if m.contains("needs its key")),
        "{err:?}"
    );
    let err = fails(&config(url).tls_client_cert(&cert, certs.ca())).await;
    assert!(
        matches!(&err, ConnectionError::Tls(m) if m.contains("holds no PEM PRIVATE KEY")),
        "{err:?}"
    );
    let err = fails(&config("redis://127.0.0.1:1/").tls_ca_file(certs.ca())).await;
    assert!(
        matches!(&err, ConnectionError::Tls(m) if m.contains("need a rediss:// URL")),
        "{err:?}"
    );

    for (url, expected) in [
        (
            "rediss://h?ssl_ciphers=x",
            "unknown query parameter `ssl_ciphers`",
        ),
        ("redis://h?ssl_ca_certs=/x", "`ssl_ca_certs` needs TLS"),
        (
            "rediss://h?ssl_cert_reqs=optional",
            "bad value `optional` for `ssl_cert_reqs`",
        ),
        (
            "rediss://h?ssl_check_hostname=maybe",
            "expected true or false",
        ),
        (
            "rediss://h?ssl_ca_certs=",
            "`ssl_ca_certs` needs a file path",
        ),
        ("rediss://h/0#frag", "a fragment"),
    ] {
        let err = RedisConfig::from_url(url).unwrap_err();
        assert!(
            matches!(&err, ConnectionError::InvalidUrl { reason, .. } if reason.contains(expected)),
            "{url}: {err}"
        );
    }
    let ok = RedisConfig::from_url(
        "rediss://:pw@h:7000/2?ssl_cert_reqs=required&ssl_check_hostname=TRUE",
    )
    .unwrap();
    assert_eq!(ok.db(), 2);
    assert!(!format!("{ok:?}").contains("pw"));
}
