//! Connections to PostgreSQL over TLS, as managed databases require: `sslmode=require` in the URL encrypts the
//! session (so does the default, `prefer`, when the server offers TLS), `sslmode=disable` does not.

use nova_store::testing::{Backend, TestStore};
use nova_store::Store;

#[tokio::test]
async fn sslmode_require_encrypts_the_connection() {
    let Some(t) = TestStore::new(Backend::Postgres).await else { return };
    let with = |mode: &str| format!("{}{}sslmode={mode}", t.url, if t.url.contains('?') { '&' } else { '?' });
    let plain = Store::connect(&with("disable"), &t.dir.path().join("blobs")).await.unwrap();
    assert!(!TestStore::uses_tls(&plain).await, "sslmode=disable is plain text");
    plain.close().await;
    let store = match Store::connect(&with("require"), &t.dir.path().join("blobs")).await {
        Ok(store) => store,
        // A PostgreSQL built or configured without TLS (`ssl = off`): the machines CI runs on have it on.
        Err(e) if !nova_core::testing::in_ci() => {
            eprintln!("skipping: this PostgreSQL does not take TLS: {e:?}");
            return;
        }
        Err(e) => panic!("connecting with sslmode=require: {e:?}"),
    };
    assert!(TestStore::uses_tls(&store).await, "sslmode=require gives an encrypted session");
    // The store works over it: a key made through one connection opens through the other.
    let key = store.create_key("tls").await.unwrap();
    assert!(t.store.authenticate(&key.secret).await.unwrap().is_some());
    store.close().await;
}
