//! Key lookups answered together (`Store::with_grouped_key_lookups`): each request still gets its own key's
//! owner, and a key made or revoked elsewhere counts from the next lookup. On both backends.

use nova_store::testing::{Backend, TestStore};

nova_store::conformance!(concurrent_lookups_each_get_their_own_key_and_see_changes_made_elsewhere);

async fn concurrent_lookups_each_get_their_own_key_and_see_changes_made_elsewhere(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let grouped = f.store.clone().with_grouped_key_lookups();
    assert!(!grouped.keys_exist().await.unwrap());
    // Made through another store, as by `nova keys create` in another process.
    let acme = f.store.create_key("acme").await.unwrap();
    let globex = f.store.create_key("globex").await.unwrap();
    let revoked = f.store.create_key("initech").await.unwrap();
    assert!(f.store.revoke_key(revoked.id).await.unwrap());
    assert!(grouped.keys_exist().await.unwrap(), "a key made elsewhere counts from the next lookup");

    let unknown = format!("nova_{}", "0".repeat(64));
    let secrets = [&acme.secret, &globex.secret, &revoked.secret, &unknown];
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..10 {
        for (i, secret) in secrets.iter().enumerate() {
            let (store, secret) = (grouped.clone(), secret.to_string());
            tasks.spawn(async move { (round, i, store.authenticate(&secret).await.unwrap()) });
        }
    }
    while let Some(done) = tasks.join_next().await {
        let (round, i, owner) = done.unwrap();
        let expected = match i {
            0 => Some((acme.id, acme.tenant)),
            1 => Some((globex.id, globex.tenant)),
            _ => None,
        };
        assert_eq!(owner.map(|o| (o.key, o.tenant)), expected, "round {round}, key {i}");
    }
    assert!(f.store.revoke_key(acme.id).await.unwrap());
    assert!(grouped.authenticate(&acme.secret).await.unwrap().is_none(), "revoked elsewhere: refused at once");
}
