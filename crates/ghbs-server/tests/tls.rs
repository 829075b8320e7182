//! HTTPS on a real listener with certificates the test makes (a private CA), and a renewal
//! picked up without a restart.

mod common;

use std::sync::Arc;

use common::TestApp;
use ghbs_testkit::tls::TestCa;

fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

struct Served {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn serve(app: &TestApp) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ghbs_server::launch(
        app.state.clone(),
        Arc::new(ghbs_server::backup::BackupExecutor),
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    Served {
        url,
        stop: Some(tx),
        task,
    }
}

impl Served {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn https_with_a_private_ca_and_security_headers() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("first");
    let (_, cert, key) = ca.write(certs.path());
    let app = TestApp::with(|c| c.tls = Some((cert.clone(), key.clone()))).await;
    let served = serve(&app).await;

    let resp = client(&ca.ca_pem)
        .get(format!("{}/healthz", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");

    // A client that does not trust the CA is refused at the handshake.
    let other = TestCa::new("stranger");
    let err = client(&other.ca_pem)
        .get(format!("{}/healthz", served.url))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // Plain HTTP on the TLS port gets no API answer.
    let plain = reqwest::get(format!(
        "{}/healthz",
        served.url.replace("https://", "http://")
    ))
    .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    served.stop().await;
}

/// Replacing the certificate files (a renewal) is picked up by new connections without a
/// restart. Waits by polling new connections, bounded; asserts no timing.
#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let certs = tempfile::tempdir().unwrap();
    let old = TestCa::new("old");
    let (_, cert, key) = old.write(certs.path());
    let app = TestApp::with(|c| {
        c.tls = Some((cert.clone(), key.clone()));
        c.tls_reload_interval = std::time::Duration::from_millis(50);
    })
    .await;
    let served = serve(&app).await;
    let url = format!("{}/healthz", served.url);
    assert_eq!(
        client(&old.ca_pem).get(&url).send().await.unwrap().status(),
        200
    );

    // A half-written renewal (garbage) is not loaded: the old certificate stays in service.
    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        client(&old.ca_pem).get(&url).send().await.unwrap().status(),
        200
    );

    let new = TestCa::new("new");
    new.write(certs.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // A fresh client per try: a new connection, a new handshake.
        if let Ok(resp) = client(&new.ca_pem).get(&url).send().await {
            assert_eq!(resp.status(), 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The old CA no longer verifies new connections.
    assert!(client(&old.ca_pem).get(&url).send().await.is_err());
    served.stop().await;
}

#[tokio::test]
async fn unusable_certificate_files_stop_the_start_with_a_clear_message() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("x");
    let (_, cert, _) = ca.write(certs.path());
    let missing = certs.path().join("missing-key.pem");
    let err = ghbs_server::tls::load(&cert, &missing).await.err().unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("missing-key.pem") && text.contains("TLS"),
        "{text}"
    );
    let garbage = certs.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN NOTHING-----\n").unwrap();
    let err = ghbs_server::tls::load(&garbage, &garbage)
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("garbage.pem"));
    // A key that is not the certificate's is refused too.
    let other = TestCa::new("y");
    let other_key = certs.path().join("other-key.pem");
    std::fs::write(&other_key, &other.key_pem).unwrap();
    assert!(ghbs_server::tls::load(&cert, &other_key).await.is_err());
}
