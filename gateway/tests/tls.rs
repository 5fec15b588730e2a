//! TLS and mTLS on the gateway port: HTTPS ingest with a CA-signed server certificate, a client
//! certificate mapped to a tenant instead of an API key, and clients without one refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::path::Path;

use common::{TestGateway, header};
use headwater_gateway::GatewayConfig;
use headwater_gateway::config::{ApiKey, AuthConfig, TlsConfig};
use headwater_testing::Pki;

/// The common name of the client certificate, mapped to tenant `fleet`.
const DEVICE: &str = "device-7";

fn tls_config(dir: &Path, require: bool) -> GatewayConfig {
    let file = |name: &str| Some(dir.join(name).to_string_lossy().into_owned());
    GatewayConfig {
        tls: TlsConfig {
            cert_file: file("server.pem"),
            key_file: file("server.key"),
            client_ca_file: file("ca.pem"),
            require_client_cert: require,
            client_tenants: [(DEVICE.to_owned(), "fleet".to_owned())].into(),
        },
        auth: AuthConfig {
            keys: vec![ApiKey {
                tenant: "acme".into(),
                sha256: headwater_gateway::auth::hash_key("k"),
                disabled: false,
            }],
            ..AuthConfig::default()
        },
        ..GatewayConfig::default()
    }
}

fn client(pki: &Pki, with_cert: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap());
    if with_cert {
        let identity = pki.client.identity_pem();
        builder = builder.identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

const BODY: &str = r#"[{"type":"ok.a","source":"s","payload":{}}]"#;

#[tokio::test]
async fn a_client_certificate_maps_to_a_tenant_and_keys_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), DEVICE).unwrap();
    let gw = TestGateway::start(tls_config(dir.path(), false)).await;
    let url = format!("https://127.0.0.1:{}/v1/events", gw.addr.port());

    let with_cert = client(&pki, true)
        .post(&url)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(with_cert.status(), 200);
    let without = client(&pki, false)
        .post(&url)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 401, "no certificate and no key");
    let keyed = client(&pki, false)
        .post(&url)
        .header("x-api-key", "k")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/events", gw.addr.port()))
        .body(BODY)
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP is not served"
    );

    let tenants: Vec<String> = gw
        .records("events")
        .await
        .iter()
        .filter_map(|r| header(r, "hw.tenant"))
        .collect();
    assert_eq!(tenants.len(), 2);
    assert!(
        tenants.contains(&"fleet".to_owned()) && tenants.contains(&"acme".to_owned()),
        "{tenants:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_required_client_certificate_refuses_clients_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), DEVICE).unwrap();
    let gw = TestGateway::start(tls_config(dir.path(), true)).await;
    let url = format!("https://127.0.0.1:{}/v1/events", gw.addr.port());
    let refused = client(&pki, false)
        .post(&url)
        .header("x-api-key", "k")
        .body(BODY)
        .send()
        .await;
    assert!(
        refused.is_err(),
        "the handshake fails without a client certificate"
    );
    let accepted = client(&pki, true)
        .post(&url)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    assert!(
        reqwest::get(gw.url("/healthz")).await.is_err(),
        "plain HTTP is refused"
    );
    gw.stop().await;
}
