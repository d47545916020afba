//! The scripted model server ([`nova_llm::testing`]), the real jail sandbox and a fresh store, for the loop's tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

pub use nova_llm::testing::*;
use nova_llm::{ChatClient, LlmConfig, LlmExtractor};
use nova_sandbox::jail::{JailConfig, JailSandbox};
use nova_sandbox::Sandbox;
use nova_store::testing::{Backend, TestStore};

/// The real jail. A host that cannot build one skips the test, except under CI, where that fails.
pub fn sandbox() -> Option<Arc<dyn Sandbox>> {
    let mut config = JailConfig::detect(env!("CARGO_BIN_EXE_nova-llm-sandbox-helper"), &[]).expect("python3 on PATH");
    config.pool_size = 1;
    let jail = JailSandbox::new(config);
    match jail.check() {
        Ok(()) => Some(Arc::new(jail)),
        Err(e) if nova_core::testing::in_ci() => panic!("the jail does not work here: {e}"),
        Err(e) => {
            eprintln!("skipping: the jail does not work here: {e}");
            None
        }
    }
}

pub struct Harness {
    pub server: ModelServer,
    pub store: TestStore,
    pub sandbox: Arc<dyn Sandbox>,
}

impl Harness {
    pub async fn start() -> Option<Harness> {
        let sandbox = tokio::task::spawn_blocking(sandbox).await.expect("the sandbox check")?;
        let server = ModelServer::start().await;
        let store = TestStore::new(Backend::Sqlite).await.expect("a SQLite store");
        Some(Harness { server, store, sandbox })
    }

    pub fn extractor(&self, config: LlmConfig) -> LlmExtractor {
        LlmExtractor::new(ChatClient::new(config).expect("a client"), self.sandbox.clone(), self.store.store.clone())
    }
}

/// A dev invoice of `../shared/invoices/dev/facturx` (without its XML): its text and what the rules found.
pub fn dev_invoice(stem: &str) -> (String, nova_core::Invoice) {
    let path = dev_dir().join("facturx").join(format!("{stem}.noxml.pdf"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let text = nova_extract::text(&bytes).expect("the text layer");
    let rules = nova_extract::extract(&bytes).expect("the rules");
    (text, rules)
}

pub fn dev_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices/dev")
}

/// Raises on every document.
pub const RAISES: &str = "def extract(text):\n    total = 1 / 0\n    return {}\n";

/// Never returns.
pub const LOOPS: &str = "def extract(text):\n    while True:\n        pass\n";

/// Writes bytes that are not JSON where the result goes.
pub const GARBAGE: &str = "import os\n\ndef extract(text):\n    os.write(1, b'\\x00not json at all')\n    return {}\n";

/// Python that defines `_probe()`: it tries the network (the model server's `/leak`), a host file and a
/// write to `marker` on the host, and returns what each attempt met, joined by `; `.
pub fn escape_probe(addr: std::net::SocketAddr, marker: &std::path::Path) -> String {
    format!(
        r#"import os, urllib.request

def _probe():
    seen = []
    try:
        seen.append(urllib.request.urlopen("http://{addr}/leak", timeout=2).read())
    except Exception as e:
        seen.append("network: " + type(e).__name__)
    try:
        seen.append(open("/etc/shadow").read()[:10])
    except Exception as e:
        seen.append("host file: " + type(e).__name__)
    try:
        with open("{marker}", "w") as f:
            f.write("escaped")
    except Exception as e:
        seen.append("host dir: " + type(e).__name__)
    return "; ".join(map(str, seen))
"#,
        marker = marker.display()
    )
}
