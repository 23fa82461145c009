//! The client over https: a server with a certificate of a private CA, trusted with
//! `Client::with_urls_trusting`; without that CA the same server is not trusted.

use std::sync::Arc;
use strata_client::Client;
use strata_core::{EventType, ExpectedRevision, NewEvent, StreamId};
use strata_server::ServeOptions;
use strata_server::testing::TestAuthority;
use strata_server::tls::Tls;
use strata_storage::{ReadFrom, ReadOptions};
use strata_toolkit::{EventStore, StoreError};

#[tokio::test]
async fn appends_and_reads_over_https_trusting_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestAuthority::new("Strata test CA");
    let files = ca.server_files(dir.path());
    let options = ServeOptions { tls: Some(Arc::new(Tls::load(files).unwrap())), ..ServeOptions::default() };
    let store = strata_storage::Store::open(dir.path().join("data")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(strata_server::serve(store, listener, options, async move {
        let _ = stopped.await;
    }));

    let stream = StreamId::new("order-1").unwrap();
    let event = NewEvent::new(EventType::new("Placed").unwrap(), "{\"n\":1}");
    let client = Client::with_urls_trusting(&[&url], Some(ca.pem().as_bytes())).unwrap();
    let outcome = client.append(stream.clone(), ExpectedRevision::NoStream, vec![event.clone()]).await.unwrap();
    assert!(outcome.clone().committed().is_some(), "{outcome:?}");
    let page = client.read_stream(&stream, ReadFrom::Start, ReadOptions::forward(100)).await.unwrap();
    assert_eq!(page.events.len(), 1);

    let untrusting = Client::new(&url).unwrap();
    let refused = untrusting.append(stream.clone(), ExpectedRevision::Any, vec![event]).await.unwrap_err();
    assert!(matches!(&refused, StoreError::Transport(reason) if reason.contains("certificate")), "{refused:?}");
    let error = Client::with_urls_trusting(&[&url], Some(b"not PEM")).unwrap_err();
    assert!(error.to_string().contains("no PEM certificate"), "{error}");
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
