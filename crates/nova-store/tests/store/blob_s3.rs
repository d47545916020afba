//! The blob store on S3, against a real S3-compatible server: moto's server mode (`pip install
//! "moto[server]"`, which `scripts/test` does). Without it the test is skipped, except under `CI=true`,
//! where it fails.

use bytes::Bytes;
use nova_store::testing::Moto;
use nova_store::{BlobError, BlobStore};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

fn s3_store(moto: &Moto, url: &str) -> BlobStore {
    let settings: Vec<(String, String)> = moto.s3_settings().into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
    BlobStore::from_url_with(url, settings.iter().map(|(k, v)| (k.as_str(), v.as_str()))).expect("an S3 store")
}

#[tokio::test]
async fn blobs_live_in_an_s3_bucket_under_a_prefix() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("nova-blobs");
    let store = s3_store(&moto, "s3://nova-blobs/tenant-data");
    store.ping().await.expect("the bucket is reachable");

    let digest = store.put(Bytes::from_static(b"%PDF-1.7 an invoice")).await.expect("put");
    assert_eq!(store.put(Bytes::from_static(b"%PDF-1.7 an invoice")).await.expect("put again"), digest);
    assert_eq!(&store.get(&digest).await.expect("get")[..], b"%PDF-1.7 an invoice");
    let absent = BlobStore::digest(b"never stored");
    assert!(matches!(store.get(&absent).await, Err(BlobError::Missing(_))));

    // The object sits under the prefix, named by its digest; altered there, it is refused, not served.
    let h = digest.as_str();
    let key = format!("tenant-data/sha256/{}/{}/{h}", &h[..2], &h[2..4]);
    let raw = AmazonS3Builder::new()
        .with_bucket_name("nova-blobs")
        .with_endpoint(format!("http://{}", moto.addr))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .expect("a raw S3 client");
    raw.put(&ObjectPath::from(key), PutPayload::from_static(b"tampered")).await.expect("overwrite the object");
    let tampered = store.get(&digest).await;
    assert!(matches!(tampered, Err(BlobError::DigestMismatch(_))), "{tampered:?}");

    // Another prefix of the same bucket is another store.
    let other = s3_store(&moto, "s3://nova-blobs/other");
    assert!(matches!(other.get(&digest).await, Err(BlobError::Missing(_))));
}

#[tokio::test]
async fn a_missing_bucket_fails_the_readiness_check() {
    let Some(moto) = Moto::start() else { return };
    let store = s3_store(&moto, "s3://no-such-bucket");
    assert!(store.ping().await.is_err());
    assert!(store.put(Bytes::from_static(b"x")).await.is_err());
}

#[test]
fn blob_urls_are_checked() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let local = dir.path().join("blobs");
    BlobStore::from_url(&format!("file://{}", local.display())).expect("a file URL");
    assert!(local.is_dir());
    BlobStore::from_url(dir.path().join("plain").to_str().expect("utf-8")).expect("a plain path");
    for (url, says) in
        [("s3://", "no bucket"), ("gs://bucket/x", "only file://"), ("https://example.com/x", "only file://")]
    {
        let err = BlobStore::from_url(url).err().unwrap_or_else(|| panic!("{url} was accepted"));
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
    let err = BlobStore::from_url_with("s3://bucket", [("aws_no_such_setting", "1")]).err().expect("refused");
    assert!(err.to_string().contains("unknown S3 setting"), "{err}");
}
