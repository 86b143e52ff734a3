//! Only holders of a certificate from the study CA, for the site they claim, get a session.

use std::time::Duration;

use fedrad_shared::pki::StudyPki;
use fedrad_shared::proto::federation_client::FederationClient;
use fedrad_shared::proto::{SiteHello, SiteMessage, site_message};
use fedrad_shared::tls::TlsFiles;
use fedrad_tests::*;
use site_agent::client::{SessionError, session};

async fn engine_for(cfg: site_agent::config::SiteConfig) -> std::sync::Arc<site_agent::engine::SiteEngine> {
    tokio::task::spawn_blocking(move || site_agent::load_engine(cfg)).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_ca_missing_certificate_and_wrong_identity_are_refused() {
    fedrad_shared::tls::install_crypto_provider();
    let dir = TempDir::new("mtls");
    let cohort = small_cohort(&dir.path().join("cohort"), 40, 2);
    let (site, manifest) = cohort.manifests[0].clone();
    let study = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "study", &["localhost".into()], &[site.clone(), "hospital-b".into()]).unwrap();
    let foreign = StudyPki::init_with_enrolled_sites(&dir.path().join("foreign"), "other", &["localhost".into()], std::slice::from_ref(&site)).unwrap();
    let server = coordinator::start_server(&coordinator_config(&study)).await.unwrap();
    let port = server.addr.port();
    let work = dir.path().join("work");

    // 1. A certificate for the right name, but issued by another CA.
    let forged = TlsFiles { ca: study.site_bundle(&site).join("ca.pem"), ..TlsFiles::bundle(&foreign.site_bundle(&site)) };
    let engine = engine_for(site_config(&site, port, &manifest, &work, forged)).await;
    let err = tokio::time::timeout(Duration::from_secs(20), session(engine)).await.expect("fails fast").unwrap_err();
    assert!(matches!(err, SessionError::Connect(_) | SessionError::Status(_)), "{err}");

    // 2. No client certificate at all (TLS 1.3 may only fail at the first RPC).
    let ca = tonic::transport::Certificate::from_pem(std::fs::read(study.site_bundle(&site).join("ca.pem")).unwrap());
    let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost");
    let outcome = async {
        let ch = tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))?.tls_config(tls)?.connect().await?;
        let hello = SiteMessage {
            body: Some(site_message::Body::Hello(SiteHello {
                protocol: fedrad_shared::PROTOCOL.into(),
                site_id: site.clone(),
                agent_version: "x".into(),
                policy: None,
                masking_key: None,
            })),
        };
        let mut s = FederationClient::new(ch).session(tokio_stream_once(hello)).await?.into_inner();
        s.message().await?;
        anyhow::Ok(())
    };
    assert!(tokio::time::timeout(Duration::from_secs(20), outcome).await.expect("fails fast").is_err(), "a client without certificate got a session");

    // 3. A valid study certificate for hospital-b claiming to be hospital-a.
    let engine = engine_for(site_config(&site, port, &manifest, &work, TlsFiles::bundle(&study.site_bundle("hospital-b")))).await;
    match tokio::time::timeout(Duration::from_secs(20), session(engine)).await.expect("fails fast") {
        Err(SessionError::Status(s)) => assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s}"),
        other => panic!("expected permission denied, got {other:?}"),
    }
    assert!(server.hub.connected_sites().is_empty());

    // 4. The genuine site gets in.
    let engine = engine_for(site_config(&site, port, &manifest, &work, TlsFiles::bundle(&study.site_bundle(&site)))).await;
    let running = tokio::spawn(session(engine));
    let hub = server.hub.clone();
    hub.wait_for_sites(std::slice::from_ref(&site), Duration::from_secs(20), &|_| {}).await.expect("genuine site connects");
    running.abort();
    server.stop().await;
}

fn tokio_stream_once(m: SiteMessage) -> impl tokio_stream::Stream<Item = SiteMessage> {
    // Keep the stream open after the hello so the server answers rather than seeing EOF.
    tokio_stream::StreamExt::chain(tokio_stream::iter(vec![m]), tokio_stream::pending())
}

/// A 2000×2000 Gram matrix is 32 MB; gRPC's default limit is 4 MB. A site's 40 MB aggregate
/// must reach the coordinator intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aggregates_far_above_grpc_default_limit_arrive_intact() {
    use fedrad_shared::proto::{Aggregate, Task, TaskReply, Tensor, coordinator_message, task, task_reply};
    fedrad_shared::tls::install_crypto_provider();
    let dir = TempDir::new("large");
    let pki = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "large", &["localhost".into()], &["hospital-a".into()]).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let port = server.addr.port();
    let tls = fedrad_shared::tls::client_config(&TlsFiles::bundle(&pki.site_bundle("hospital-a")), "localhost").unwrap();
    let ch = tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}")).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    let mut client = FederationClient::new(ch).max_decoding_message_size(1 << 28).max_encoding_message_size(1 << 28);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let hello = SiteHello { protocol: fedrad_shared::PROTOCOL.into(), site_id: "hospital-a".into(), agent_version: "t".into(), policy: None, masking_key: None };
    tx.send(SiteMessage { body: Some(site_message::Body::Hello(hello)) }).await.unwrap();
    let mut inbound = client.session(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    // A minimal site: answer the one task with a 2000×2500 matrix.
    let site = tokio::spawn(async move {
        while let Some(m) = inbound.message().await.unwrap() {
            if let Some(coordinator_message::Body::Task(t)) = m.body {
                let values: Vec<f64> = (0..5_000_000).map(|i| i as f64 * 0.5).collect();
                let agg = Aggregate { patient_count: 100, tensors: vec![Tensor { name: "gram".into(), shape: vec![2000, 2500], values }], masked: vec![] };
                let reply = TaskReply { task_id: t.task_id, outcome: Some(task_reply::Outcome::Aggregate(agg)), ..Default::default() };
                tx.send(SiteMessage { body: Some(site_message::Body::Reply(reply)) }).await.unwrap();
            }
        }
    });
    server.hub.wait_for_sites(&["hospital-a".into()], Duration::from_secs(20), &|_| {}).await.unwrap();
    let task = Task { task_id: "big-1".into(), study_id: "s".into(), kind: Some(task::Kind::CohortSummary(Default::default())), ..Default::default() };
    let reply = server.hub.run_task("hospital-a", task, Duration::from_secs(60)).await.unwrap();
    let Some(task_reply::Outcome::Aggregate(a)) = reply.outcome else { panic!("no aggregate") };
    assert_eq!(a.tensors[0].values.len(), 5_000_000);
    assert_eq!(a.tensors[0].values[4_999_999], 4_999_999.0 * 0.5);
    assert!(server.hub.traffic()["hospital-a"].bytes_from_site > 40_000_000);
    site.abort();
    server.stop().await;
}

/// A site enrols with its own key; the agent reads how long its certificate has left (it warns
/// from 30 days before the end and refuses an expired one).
#[test]
fn an_enrolled_sites_certificate_lifetime_is_read_at_start() {
    let dir = TempDir::new("lifetime");
    let pki = StudyPki::init(&dir.path().join("pki"), "t", &["localhost".into()]).unwrap();
    let tls = dir.path().join("site-tls");
    let request = fedrad_shared::pki::enroll_site(&tls, "hospital-a").unwrap();
    for days in [20u32, 200] {
        let signed = pki.sign_site_request("hospital-a", &std::fs::read_to_string(&request).unwrap(), days).unwrap();
        for f in ["cert.pem", "ca.pem"] {
            std::fs::copy(signed.join(f), tls.join(f)).unwrap();
        }
        let cfg = site_config("hospital-a", 1, &dir.path().join("manifest.csv"), &dir.path().join("work"), TlsFiles::bundle(&tls));
        let left = site_agent::client::check_certificate_lifetime(&cfg).unwrap().unwrap();
        assert!((i64::from(days) - 2..=i64::from(days)).contains(&left), "{days} days issued, {left} left");
    }
    fedrad_shared::tls::client_config(&TlsFiles::bundle(&tls), "localhost").unwrap();
}

/// A revoked site is refused at its next session, the others are not, and the same site
/// enrolled again with a new key gets back in; no restart of the coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_site_certificate_is_refused_until_the_site_enrols_again() {
    fedrad_shared::tls::install_crypto_provider();
    let dir = TempDir::new("revoke");
    let cohort = small_cohort(&dir.path().join("cohort"), 40, 2);
    let sites: Vec<String> = cohort.manifests.iter().map(|(s, _)| s.clone()).collect();
    let pki = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "study", &["localhost".into()], &sites).unwrap();
    let mut cfg = coordinator_config(&pki);
    cfg.revoked = Some(pki.revocation_list());
    let server = coordinator::start_server(&cfg).await.unwrap();
    let port = server.addr.port();
    let connect = |site: &str, manifest: &std::path::Path, tls: TlsFiles| {
        let cfg = site_config(site, port, manifest, &dir.path().join("work").join(site), tls);
        async move { tokio::time::timeout(Duration::from_secs(20), session(engine_for(cfg).await)).await.expect("answers fast") }
    };
    let (a, a_manifest) = cohort.manifests[0].clone();
    let (b, b_manifest) = cohort.manifests[1].clone();

    assert_eq!(pki.revoke_site(&a, "left the study").unwrap().len(), 1);
    assert_eq!(pki.revoke_site(&a, "again").unwrap().len(), 0, "revoking twice adds nothing");
    match connect(&a, &a_manifest, TlsFiles::bundle(&pki.site_bundle(&a))).await {
        Err(SessionError::Status(s)) => assert!(s.code() == tonic::Code::PermissionDenied && s.message().contains("revoked"), "{s}"),
        other => panic!("a revoked site got {other:?}"),
    }
    let running_b = tokio::spawn(connect(&b, &b_manifest, TlsFiles::bundle(&pki.site_bundle(&b))));
    server.hub.wait_for_sites(std::slice::from_ref(&b), Duration::from_secs(20), &|_| {}).await.expect("an unrevoked site connects");

    // Revoking a site with an open session ends it within the watcher's period, with the reason.
    assert_eq!(pki.revoke_site(&b, "key leaked").unwrap().len(), 1);
    let ended = tokio::time::timeout(Duration::from_secs(10), running_b).await.expect("the revoked session ends").unwrap();
    match ended {
        Err(SessionError::Status(s)) => assert!(s.code() == tonic::Code::PermissionDenied && s.message().contains("revoked"), "{s}"),
        other => panic!("the revoked session ended with {other:?}"),
    }
    assert!(!server.hub.connected_sites().contains(&b));

    // Re-admitted: a new key, a new certificate.
    let fresh = dir.path().join("a-again");
    let request = fedrad_shared::pki::enroll_site(&fresh, &a).unwrap();
    let signed = pki.sign_site_request(&a, &std::fs::read_to_string(request).unwrap(), 30).unwrap();
    for f in ["cert.pem", "ca.pem"] {
        std::fs::copy(signed.join(f), fresh.join(f)).unwrap();
    }
    let running_a = tokio::spawn(connect(&a, &a_manifest, TlsFiles::bundle(&fresh)));
    server.hub.wait_for_sites(std::slice::from_ref(&a), Duration::from_secs(20), &|_| {}).await.expect("the re-enrolled site connects");
    // A list that cannot be parsed refuses new sessions rather than readmitting the revoked,
    // and leaves open ones as they are (a half-written line must not stop a study).
    std::fs::write(pki.revocation_list(), "not-a-fingerprint hospital-a\n").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(server.hub.connected_sites().contains(&a), "an unreadable list ended an open session");
    running_a.abort();
    let c = cohort.manifests[2].clone();
    assert!(matches!(connect(&c.0, &c.1, TlsFiles::bundle(&pki.site_bundle(&c.0))).await, Err(SessionError::Status(_))));
    server.stop().await;
}

/// With `issued` set, the coordinator admits only keys `certs sign` issued to that site: a
/// certificate the CA key signed outside it (here: signed, then struck from `issued.txt`, as a
/// copied CA key would mint one) is refused, the listed sites are not; an unreadable list
/// refuses everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_keys_the_coordinator_issued_are_admitted() {
    fedrad_shared::tls::install_crypto_provider();
    let dir = TempDir::new("issued");
    let cohort = small_cohort(&dir.path().join("cohort"), 40, 3);
    let sites: Vec<String> = cohort.manifests.iter().map(|(s, _)| s.clone()).collect();
    let pki_dir = dir.path().join("pki");
    let pki = StudyPki::init_with_enrolled_sites(&pki_dir, "study", &["localhost".into()], &sites).unwrap();
    let mut cfg = coordinator_config(&pki);
    cfg.issued = Some(pki_dir.join("issued.txt"));
    let server = coordinator::start_server(&cfg).await.unwrap();
    let port = server.addr.port();
    let connect = |site: &str, manifest: &std::path::Path, tls: TlsFiles| {
        let cfg = site_config(site, port, manifest, &dir.path().join("work").join(site), tls);
        async move { tokio::time::timeout(Duration::from_secs(20), session(engine_for(cfg).await)).await.expect("answers fast") }
    };
    let (a, a_manifest) = cohort.manifests[0].clone();
    let (b, b_manifest) = cohort.manifests[1].clone();
    let issued_before = std::fs::read_to_string(pki_dir.join("issued.txt")).unwrap();

    // A second key for hospital-b, signed by the CA but not on the list.
    let minted = dir.path().join("minted");
    let request = fedrad_shared::pki::enroll_site(&minted, &b).unwrap();
    let signed = pki.sign_site_request(&b, &std::fs::read_to_string(request).unwrap(), 30).unwrap();
    for f in ["cert.pem", "ca.pem"] {
        std::fs::copy(signed.join(f), minted.join(f)).unwrap();
    }
    std::fs::write(pki_dir.join("issued.txt"), &issued_before).unwrap();
    match connect(&b, &b_manifest, TlsFiles::bundle(&minted)).await {
        Err(SessionError::Status(s)) => assert!(s.code() == tonic::Code::PermissionDenied && s.message().contains("did not issue"), "{s}"),
        other => panic!("a key the coordinator did not issue got {other:?}"),
    }
    // hospital-a's listed key is admitted; hospital-a's key presented as another site is not
    // possible (the certificate names the site), so the pair (key, site) is what is checked.
    let running_a = tokio::spawn(connect(&a, &a_manifest, TlsFiles::bundle(&pki.site_bundle(&a))));
    server.hub.wait_for_sites(std::slice::from_ref(&a), Duration::from_secs(20), &|_| {}).await.expect("an issued key connects");
    running_a.abort();
    // An unreadable list refuses new sessions.
    std::fs::write(pki_dir.join("issued.txt"), "not a fingerprint\n").unwrap();
    let c = cohort.manifests[2].clone();
    assert!(matches!(connect(&c.0, &c.1, TlsFiles::bundle(&pki.site_bundle(&c.0))).await, Err(SessionError::Status(_))));
    server.stop().await;
}

/// Neither end speaks TLS 1.2: a client that offers only TLS 1.2, with a valid study
/// certificate, gets no handshake; the same client offering TLS 1.3 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_accepts_tls_1_3_only() {
    use rustls_pki_types::pem::PemObject;
    use std::io::{Read, Write};
    fedrad_shared::tls::install_crypto_provider();
    let dir = TempDir::new("tls13");
    let pki = StudyPki::init_with_enrolled_sites(&dir.path().join("pki"), "study", &["localhost".into()], &["hospital-a".into()]).unwrap();
    let server = coordinator::start_server(&coordinator_config(&pki)).await.unwrap();
    let port = server.addr.port();
    let bundle = pki.site_bundle("hospital-a");
    let handshake = move |version: &'static rustls::SupportedProtocolVersion| -> Result<(), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pki_types::CertificateDer::from_pem_file(bundle.join("ca.pem")).unwrap()).unwrap();
        let certs = vec![rustls_pki_types::CertificateDer::from_pem_file(bundle.join("cert.pem")).unwrap()];
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(bundle.join("key.pem")).unwrap();
        // ring's full provider, TLS 1.2 suites included: the refusal must come from the server.
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), "localhost".try_into().unwrap()).unwrap();
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        let mut first = [0u8; 9];
        tls.read_exact(&mut first).map_err(|e| e.to_string())?;
        Ok(())
    };
    let tls12 = tokio::task::spawn_blocking({
        let h = handshake.clone();
        move || h(&rustls::version::TLS12)
    })
    .await
    .unwrap();
    let e = tls12.expect_err("a TLS 1.2 handshake succeeded");
    assert!(e.to_lowercase().contains("alert") || e.contains("HandshakeFailure") || e.contains("ProtocolVersion"), "{e}");
    tokio::task::spawn_blocking(move || handshake(&rustls::version::TLS13)).await.unwrap().expect("TLS 1.3 with the same certificate works");
    server.stop().await;
}
