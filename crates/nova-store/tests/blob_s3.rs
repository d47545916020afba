//! The blob store on S3, against a real S3-compatible server: moto's server mode (`pip install
//! "moto[server]"`, which `scripts/test` does). Without it the test is skipped, except under `CI=true`,
//! where it fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nova_store::{BlobError, BlobStore};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

/// A moto server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
    let spawn = |program: &str, first: &[&str]| {
        Command::new(program).args(first).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
    };
    // The script pip installs, or the module where the script's directory is not on PATH.
    let child = spawn("moto_server", &[]).or_else(|_| {
        let has_moto =
            Command::new("python3").args(["-c", "import moto.server"]).output().is_ok_and(|o| o.status.success());
        if has_moto {
            spawn("python3", &["-m", "moto.server"])
        } else {
            Err(std::io::Error::other("neither moto_server nor python3 -m moto.server"))
        }
    });
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "moto_server is needed under CI (pip install \"moto[server]\"): {e}"
            );
            eprintln!("skipping: moto_server not found ({e}); pip install \"moto[server]\"");
            return None;
        }
    };
    let mut moto = Moto { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
    // Ready when it answers HTTP; it takes a second or two to import.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(moto.addr, "GET", "/", b"").is_err() {
        if let Ok(Some(status)) = moto.child.try_wait() {
            panic!("moto_server exited: {status}");
        }
        assert!(Instant::now() < deadline, "moto_server did not answer within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(moto)
}

/// One plain HTTP/1.1 request; the status code. moto takes an unsigned request to create a bucket.
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = String::new();
    stream.take(64 * 1024).read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))
}

fn s3_store(moto: &Moto, url: &str) -> BlobStore {
    let endpoint = format!("http://{}", moto.addr);
    BlobStore::from_url_with(
        url,
        [
            ("aws_endpoint", endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_virtual_hosted_style_request", "false"),
        ],
    )
    .expect("an S3 store")
}

#[tokio::test]
async fn blobs_live_in_an_s3_bucket_under_a_prefix() {
    let Some(moto) = start_moto() else { return };
    assert_eq!(http(moto.addr, "PUT", "/nova-blobs", b"").expect("create the bucket"), 200);
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
    let Some(moto) = start_moto() else { return };
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
