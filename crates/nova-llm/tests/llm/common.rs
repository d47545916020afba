//! The scripted model server ([`nova_llm::testing`]), a sandbox and a fresh store, for the loop's tests.
//!
//! The sandbox is the scripted one ([`ScriptedSandbox`], which runs nothing and works on any machine) for the
//! tests of the AI path's logic, and the real jail for those of what a program can do in it. The scripted
//! sandbox answers for each program with what [`Programs`] says it would print: stand-ins written after the
//! programs (`GOOD`'s regular expressions, `TOTALS_PER_SELLER`'s sums), which the real-jail tests compare with
//! the programs themselves.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

pub use nova_llm::testing::*;
use nova_llm::{ChatClient, LlmConfig, LlmExtractor};
use nova_sandbox::jail::{JailConfig, JailSandbox};
use nova_sandbox::testing::{self, input_text, ScriptedSandbox};
use nova_sandbox::{ExecRequest, Outcome, Sandbox, Status};
use nova_store::testing::{Backend, TestStore};
use regex::Regex;
use rust_decimal::Decimal;
use serde_json::{json, Value};

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
    /// The scripted sandbox behind `sandbox`, when it is the scripted one: what it was sent.
    pub scripted: Option<Arc<ScriptedSandbox>>,
    /// What the scripted sandbox answers for each program; a test adds the programs it writes itself.
    pub programs: Programs,
}

impl Harness {
    /// The model server, a store and the scripted sandbox: for the AI path's logic, on any machine.
    pub async fn scripted() -> Harness {
        let programs = Programs::known();
        let answers = programs.clone();
        let scripted = Arc::new(ScriptedSandbox::new(move |request: &ExecRequest| answers.answer(request)));
        Harness::with(scripted.clone(), Some(scripted), programs).await
    }

    /// The model server, a store and the real jail: for what a program can do in it. `None` (the test skips)
    /// where no jail can be built, except under CI.
    pub async fn jailed() -> Option<Harness> {
        let sandbox = tokio::task::spawn_blocking(sandbox).await.expect("the sandbox check")?;
        Some(Harness::with(sandbox, None, Programs::known()).await)
    }

    async fn with(sandbox: Arc<dyn Sandbox>, scripted: Option<Arc<ScriptedSandbox>>, programs: Programs) -> Harness {
        let server = ModelServer::start().await;
        let store = TestStore::new(Backend::Sqlite).await.expect("a SQLite store");
        Harness { server, store, sandbox, scripted, programs }
    }

    pub fn extractor(&self, config: LlmConfig) -> LlmExtractor {
        LlmExtractor::new(ChatClient::new(config).expect("a client"), self.sandbox.clone(), self.store.store.clone())
    }

    /// The requests the scripted sandbox was sent, in order.
    pub fn requests(&self) -> Vec<ExecRequest> {
        self.scripted.as_ref().expect("a scripted sandbox").requests()
    }

    /// The programs (`program.py`) the scripted sandbox was sent, in order, trimmed as the model's fence
    /// leaves them.
    pub fn programs_run(&self) -> Vec<String> {
        self.requests().iter().map(|r| input_text(r, "program.py").unwrap_or_default().trim().to_string()).collect()
    }
}

type StandIn = dyn Fn(&ExecRequest) -> Outcome + Send + Sync;

/// What each program would print, by its text: the scripted sandbox's answers. A program it does not know is
/// a `sandbox_error` naming it.
#[derive(Clone, Default)]
pub struct Programs(Arc<Mutex<HashMap<String, Arc<StandIn>>>>);

impl Programs {
    /// The programs of `nova_llm::testing` and of this module.
    pub fn known() -> Programs {
        let programs = Programs::default();
        programs.define(GOOD, |request| testing::ok(good(&document(request)).to_string()));
        programs.define(RAISES, |_| raised("extract", "ZeroDivisionError: division by zero"));
        programs.define(LOOPS, |_| testing::ended(Status::Timeout));
        // The program's bytes, then the harness's JSON of the `{}` it returned.
        programs.define(GARBAGE, |_| testing::ok(b"\x00not json at all{}".to_vec()));
        programs.define(TOTALS_PER_SELLER, totals_per_seller);
        programs
    }

    /// Answers `stand_in` for `code` (compared without the whitespace around it).
    pub fn define(&self, code: &str, stand_in: impl Fn(&ExecRequest) -> Outcome + Send + Sync + 'static) {
        self.0.lock().unwrap().insert(code.trim().to_string(), Arc::new(stand_in));
    }

    /// The answer to `request`, by its `program.py`.
    pub fn answer(&self, request: &ExecRequest) -> Outcome {
        let code = input_text(request, "program.py").unwrap_or_default();
        let stand_in = self.0.lock().unwrap().get(code.trim()).cloned();
        match stand_in {
            Some(stand_in) => stand_in(request),
            None => Outcome::sandbox_error(format!("the scripted sandbox knows no program {code:?}")),
        }
    }
}

/// The document an extraction program was given.
pub fn document(request: &ExecRequest) -> String {
    input_text(request, "document.txt").expect("a document")
}

/// A program that raised: its traceback, ending with `exception`, as Python prints it.
pub fn raised(function: &str, exception: &str) -> Outcome {
    let traceback =
        format!("Traceback (most recent call last):\n  File \"program.py\", line 2, in {function}\n{exception}\n");
    testing::nonzero_exit(1, traceback)
}

/// What `GOOD` prints for `text`: the same regular expressions, the same sums.
pub fn good(text: &str) -> Value {
    let find = |pattern: &str| Regex::new(pattern).expect("a pattern").captures(text);
    let group = |pattern: &str, i: usize| find(pattern).map(|c| c[i].to_string());
    let amount =
        |label: &str| group(&format!(r"{}\s*([\d.,]+)\s*€", regex::escape(label)), 1).map(|a| a.replace(',', ""));
    let number = r"Invoice #\s*(\S+)\s+issued at\s+(\d{4}-\d{2}-\d{2})";
    let (net, tax) = (amount("Net total:"), amount("VAT total:"));
    let grand = match (&net, &tax) {
        (Some(net), Some(tax)) => Some((Decimal::from_str(net).unwrap() + Decimal::from_str(tax).unwrap()).to_string()),
        _ => None,
    };
    let rows: Vec<Value> = Regex::new(r"(?m)^(\d+)%\s+([\d.]+) €\s+([\d.]+) €\s*$")
        .unwrap()
        .captures_iter(text)
        .map(|c| json!({"category": "S", "rate": &c[1], "basis": &c[2], "amount": &c[3]}))
        .collect();
    json!({
        "invoice_number": group(number, 1),
        "issue_date": group(number, 2),
        "due_date": group(r"Please remit until (\d{4}-\d{2}-\d{2})", 1),
        "type_code": "380",
        "currency": text.contains('€').then_some("EUR"),
        "buyer_reference": group(r"Your order\s+(\S+)", 1),
        "payment_iban": group(r"IBAN\s+([A-Z]{2}[0-9A-Z ]+)", 1).map(|iban| iban.trim().to_string()),
        "seller": {
            "name": group(r"(?m)^(.+?)\s+●", 1).map(|name| name.trim().to_string()),
            "vat_id": group(r"VAT-ID:\s*(\S+)", 1),
        },
        "totals": {"line_total": net, "tax_basis_total": net, "tax_total": tax,
                   "grand_total": grand, "due_payable": amount("Due payable:")},
        "tax_breakdown": rows,
    })
}

/// What `TOTALS_PER_SELLER` prints and writes for the documents a task request holds.
pub fn totals_per_seller(request: &ExecRequest) -> Outcome {
    let docs: Vec<Value> = serde_json::from_str(&input_text(request, "documents/index.json").expect("the index"))
        .expect("the index is JSON");
    let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
    for doc in &docs {
        let invoice = &doc["invoice"];
        let seller = invoice["seller"]["name"].as_str().filter(|name| !name.is_empty()).unwrap_or("unknown");
        if let Some(grand) = invoice["totals"]["grand_total"].as_str() {
            *totals.entry(seller.to_string()).or_default() += Decimal::from_str(grand).expect("an amount");
        }
    }
    // Python's csv module: CRLF after each row, a field quoted when it holds a comma, a quote or a line break.
    let field = |s: &str| {
        if s.contains([',', '"', '\r', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut csv = String::from("seller,total\r\n");
    for (seller, total) in &totals {
        csv.push_str(&format!("{},{total}\r\n", field(seller)));
    }
    let texts = docs
        .iter()
        .filter_map(|doc| doc["text_file"].as_str())
        .filter(|path| input_text(request, path).is_some_and(|text| !text.is_empty()))
        .count();
    let summary = format!("{} sellers, {} documents, {texts} texts\n", totals.len(), docs.len());
    testing::with_files(summary, [("totals.csv".to_string(), csv.into_bytes())])
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
