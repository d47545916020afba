//! The content-addressed blob store: bytes named by their SHA-256, through the `object_store` crate so the
//! local directory of the embedded default and S3-like stores of a scaled-out deployment share one seam.
//!
//! [`BlobStore::from_url`] picks the store: a path or `file://` URL for a local directory, `s3://bucket/prefix`
//! for S3 or any S3-compatible server (MinIO, Ceph, R2...), configured by the usual `AWS_*` environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use nova_core::Sha256Hex;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("creating the blob directory {0}")]
    CreateDir(String, #[source] std::io::Error),
    #[error("blob store URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("object store")]
    Store(#[from] object_store::Error),
    #[error("blob {0} is missing from the blob store")]
    Missing(Sha256Hex),
    #[error("blob {0} does not match its digest (corrupted on disk?)")]
    DigestMismatch(Sha256Hex),
}

/// Content-addressed storage of document bytes.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
}

impl BlobStore {
    /// Blobs as files under `dir`. Writes go to a temporary file that is renamed into place, so a crash
    /// never leaves a half-written blob under its final name.
    pub fn local(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir).map_err(|e| BlobError::CreateDir(dir.display().to_string(), e))?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(BlobError::Store)?;
        Ok(Self { inner: Arc::new(fs) })
    }

    /// The store a URL names: a path or `file:///path` (a local directory, created if missing), or
    /// `s3://bucket[/prefix]` with no S3 settings but the bucket (see [`BlobStore::from_url_with`]).
    pub fn from_url(url: &str) -> Result<Self, BlobError> {
        Self::from_url_with(url, std::iter::empty::<(&str, &str)>())
    }

    /// [`BlobStore::from_url`] with S3 settings given as `aws_*` keys (`aws_endpoint`, `aws_allow_http`,
    /// `aws_access_key_id`, ...; the binary passes the `AWS_*` variables of its environment, see
    /// [`BlobStore::s3_settings`]). An unknown key is an error.
    pub fn from_url_with<'a>(
        url: &str,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, BlobError> {
        let bad = |reason: &str| BlobError::Url { url: url.to_string(), reason: reason.to_string() };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket named (s3://bucket/prefix)"));
            }
            let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
            for (key, value) in options {
                let key: AmazonS3ConfigKey = key.parse().map_err(|_| bad(&format!("unknown S3 setting {key}")))?;
                builder = builder.with_config(key, value);
            }
            let s3 = builder.build().map_err(|e| bad(&e.to_string()))?;
            let prefix = prefix.trim_matches('/');
            let inner: Arc<dyn ObjectStore> =
                if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) };
            return Ok(Self { inner });
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Self::local(Path::new(path));
        }
        if url.contains("://") {
            return Err(bad("only file:// (or a plain path) and s3:// are supported"));
        }
        Self::local(Path::new(url))
    }

    /// The S3 settings among environment variables, as `object_store`'s `from_env` takes them: each `AWS_*`
    /// variable that names a setting, as its key (`AWS_REGION` as `aws_region`); the others are left out.
    pub fn s3_settings(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
        vars.into_iter()
            .filter(|(name, _)| name.starts_with("AWS_"))
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .filter(|(key, _)| key.parse::<AmazonS3ConfigKey>().is_ok())
            .collect()
    }

    /// The SHA-256 of `bytes`.
    pub fn digest(bytes: &[u8]) -> Sha256Hex {
        Sha256Hex::from_digest(&Sha256::digest(bytes).into())
    }

    /// Stores `bytes` under their digest (a no-op when they are already there) and returns the digest.
    pub async fn put(&self, bytes: Bytes) -> Result<Sha256Hex, BlobError> {
        let digest = Self::digest(&bytes);
        let path = Self::path(&digest);
        match self.inner.head(&path).await {
            Ok(_) => return Ok(digest),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.put(&path, PutPayload::from(bytes)).await?;
        Ok(digest)
    }

    /// Deletes the blob named `digest`; one that is not there is no error.
    pub async fn delete(&self, digest: &Sha256Hex) -> Result<(), BlobError> {
        match self.inner.delete(&Self::path(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the blob named `digest`, checking that its bytes still hash to it.
    pub async fn get(&self, digest: &Sha256Hex) -> Result<Bytes, BlobError> {
        let bytes = match self.inner.get(&Self::path(digest)).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(BlobError::Missing(digest.clone())),
            Err(e) => return Err(e.into()),
        };
        if &Self::digest(&bytes) != digest {
            return Err(BlobError::DigestMismatch(digest.clone()));
        }
        Ok(bytes)
    }

    /// Checks that the store can be listed (`/readyz`).
    pub async fn ping(&self) -> Result<(), BlobError> {
        let mut listing = self.inner.list(Some(&ObjectPath::from("sha256")));
        if let Some(Err(e)) = listing.next().await {
            return Err(e.into());
        }
        Ok(())
    }

    /// `sha256/ab/cd/abcd...`: two levels of fan-out keep directories small.
    fn path(digest: &Sha256Hex) -> ObjectPath {
        let h = digest.as_str();
        ObjectPath::from(format!("sha256/{}/{}/{}", &h[..2], &h[2..4], h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_settings_are_the_aws_variables_that_name_one() {
        let vars = [("AWS_REGION", "eu-central-1"), ("AWS_PROFILE_NOT_A_SETTING", "x"), ("HOME", "/root")];
        let settings = BlobStore::s3_settings(vars.map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(settings, vec![("aws_region".to_string(), "eu-central-1".to_string())]);
    }

    #[tokio::test]
    async fn the_same_bytes_are_stored_once_and_read_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let a = store.put(Bytes::from_static(b"hello")).await.unwrap();
        let b = store.put(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(&store.get(&a).await.unwrap()[..], b"hello");
        let files: Vec<_> = crate::testing::files_under(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");

        // A blob altered on disk is detected, not served.
        std::fs::write(&files[0], b"tampered").unwrap();
        assert!(matches!(store.get(&a).await, Err(BlobError::DigestMismatch(_))));
        let missing = BlobStore::digest(b"absent");
        assert!(matches!(store.get(&missing).await, Err(BlobError::Missing(_))));
        store.ping().await.unwrap();
    }
}
