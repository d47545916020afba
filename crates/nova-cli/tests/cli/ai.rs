//! The AI path through the real binary: `nova serve` with a model configured (a scripted OpenAI-compatible
//! server) runs `invoice.extract` with `strategy: llm` and `task.run` end to end, in its own jail.

use std::sync::atomic::Ordering;

use nova_llm::testing::{ModelServer, Reply, GOOD, LAYOUT_A, LAYOUT_A2, TOTALS_PER_SELLER};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::common::{self, dev_dir, start_serve, wait_succeeded};

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn upload(&self, stem: &str) -> String {
        let bytes = std::fs::read(dev_dir().join("facturx").join(format!("{stem}.noxml.pdf"))).unwrap();
        let r = self.client.post(format!("{}/v1/documents", self.base)).body(bytes).send().await.unwrap();
        let doc: Value = r.json().await.unwrap();
        doc["id"].as_str().unwrap_or_else(|| panic!("{doc}")).to_string()
    }

    async fn submit(&self, body: Value) -> (u16, Value) {
        let r = self.client.post(format!("{}/v1/jobs", self.base)).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    async fn run(&self, body: Value) -> Value {
        let (status, job) = self.submit(body).await;
        assert_eq!(status, 202, "{job}");
        let id = job["id"].as_str().unwrap().to_string();
        wait_succeeded(|| self.client.get(format!("{}/v1/jobs/{id}", self.base))).await;
        self.get(&format!("/v1/jobs/{id}/result")).await.json().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_model_written_programs_of_extraction_and_tasks() {
    let model = ModelServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base_url = model.base_url();
    let env = [
        ("NOVA_LLM_BASE_URL", base_url.as_str()),
        ("NOVA_LLM_MODEL", "scripted-model"),
        ("NOVA_LLM_PRICES", "scripted-model=2/8"),
        ("NOVA_LLM_PROGRAM_TIMEOUT_MS", "5000"),
    ];
    let (_server, base) = start_serve(dir.path(), &["--workers", "1", "--sandbox-pool", "1"], &env);
    let api = Api { client: reqwest::Client::new(), base };
    let calls = || model.script.calls.load(Ordering::SeqCst);
    let probe =
        api.client.post(format!("{}/v1/executions", api.base)).json(&json!({"language": "python", "code": "pass"}));
    if probe.send().await.unwrap().status() == 503 {
        assert!(!nova_core::testing::in_ci(), "the jail does not work on this CI machine");
        eprintln!("skipping: the jail does not work here");
        return;
    }
    let first = api.upload(LAYOUT_A).await;
    let second = api.upload(LAYOUT_A2).await;

    // Extraction: the first invoice of a layout costs one model call, the second none.
    model.script.push(Reply::Program(GOOD.into()));
    let invoice =
        api.run(json!({"workflow": "invoice.extract", "input": {"document_id": first, "strategy": "llm"}})).await;
    assert_eq!((invoice["source"].as_str(), invoice["totals"]["grand_total"].as_str()), (Some("llm"), Some("571.04")));
    assert_eq!(invoice["llm_usage"]["model_calls"], 1, "{invoice}");
    let again =
        api.run(json!({"workflow": "invoice.extract", "input": {"document_id": second, "strategy": "llm"}})).await;
    assert_eq!(again["source"], "llm_cache", "{again}");
    assert_eq!(again["llm_usage"]["model_calls"], 0);
    assert_eq!(calls(), 1, "the stored program answered the second invoice");

    // A task over both: its program's CSV is the job's artifact.
    model.script.push(Reply::Program(TOTALS_PER_SELLER.into()));
    let prompt = "Total these invoices per seller into a CSV";
    let result =
        api.run(json!({"workflow": "task.run", "input": {"prompt": prompt, "document_ids": [first, second]}})).await;
    assert_eq!(calls(), 2);
    assert_eq!(result["summary"].as_str().map(str::trim), Some("1 sellers, 2 documents, 2 texts"), "{result}");
    assert_eq!(result["artifacts"][0]["name"], "totals.csv", "{result}");
    assert_eq!(result["rounds"], 1);
    let job_id = result_job(&api).await;
    let listed: Value = api.get(&format!("/v1/jobs/{job_id}/artifacts")).await.json().await.unwrap();
    assert_eq!(listed["data"][0]["name"], "totals.csv", "{listed}");
    let csv = api.get(&format!("/v1/jobs/{job_id}/artifacts/totals.csv")).await;
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(csv.headers()["content-disposition"], "attachment; filename=\"totals.csv\"");
    let body = csv.text().await.unwrap().replace("\r\n", "\n");
    // The program read what the rules extracted: its one row is their seller and the sum of their totals.
    let mut expected = Decimal::ZERO;
    let mut seller = String::new();
    for doc in [&first, &second] {
        let rules =
            api.run(json!({"workflow": "invoice.extract", "input": {"document_id": doc, "strategy": "rules"}})).await;
        expected += rules["totals"]["grand_total"].as_str().unwrap().parse::<Decimal>().unwrap();
        seller = rules["seller"]["name"].as_str().unwrap().to_string();
    }
    assert_eq!(body, format!("seller,total\n{seller},{expected}\n"));
    let missing = api.get(&format!("/v1/jobs/{job_id}/artifacts/nothing.csv")).await;
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], "artifact_not_found");

    // Input is checked when submitted.
    for (input, code) in [
        (json!({"prompt": "", "document_ids": [first]}), "invalid_input"),
        (json!({"prompt": "x", "document_ids": [first, first]}), "invalid_input"),
        (json!({"prompt": "x", "document_ids": ["doc_00000000000000000000000000000000"]}), "document_not_found"),
    ] {
        let (status, err) = api.submit(json!({"workflow": "task.run", "input": input})).await;
        assert_eq!((status, err["error"]["code"].as_str()), (422, Some(code)), "{input}: {err}");
    }

    // Model calls, tokens and their cost are in the usage, per workflow.
    let usage: Value = api.get("/v1/usage").await.json().await.unwrap();
    let row = |workflow: &str| {
        usage["data"].as_array().unwrap().iter().find(|r| r["workflow"] == workflow).cloned().unwrap_or_default()
    };
    assert_eq!(row("task.run")["model_calls"], 1, "{usage}");
    assert_eq!(row("task.run")["sandbox_runs"], 1, "{usage}");
    // 1,000 tokens in at 2 and 200 out at 8 per million.
    let cost: Decimal = row("task.run")["cost"].as_str().unwrap().parse().unwrap();
    assert_eq!(cost, "0.0036".parse::<Decimal>().unwrap(), "{usage}");
    assert_eq!(row("invoice.extract")["model_calls"], 1, "{usage}");
}

/// The id of the newest `task.run` job.
async fn result_job(api: &Api) -> String {
    let page: Value = api.get("/v1/jobs?workflow=task.run").await.json().await.unwrap();
    page["data"][0]["id"].as_str().unwrap_or_else(|| panic!("{page}")).to_string()
}

/// `nova extract --strategy llm` over two invoices of one layout: one model call for the batch, the second
/// answered by the program the first stored in the data directory; the totals go to stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_extract_asks_the_model_once_per_layout() {
    let model = ModelServer::start().await;
    model.script.push(Reply::Program(GOOD.into()));
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> =
        [LAYOUT_A, LAYOUT_A2].iter().map(|s| dev_dir().join("facturx").join(format!("{s}.noxml.pdf"))).collect();
    let mut command = common::nova();
    command
        .args(["extract", "--strategy", "llm", "-j", "1", "--data-dir"])
        .arg(dir.path())
        .args(&files)
        .env("NOVA_LLM_BASE_URL", model.base_url())
        .env("NOVA_LLM_MODEL", "scripted-model")
        .env("NOVA_LLM_PROGRAM_TIMEOUT_MS", "5000")
        .env_remove("NOVA_DATABASE_URL");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("the sandbox does not work here") {
        assert!(!nova_core::testing::in_ci(), "the jail does not work on this CI machine: {stderr}");
        eprintln!("skipping: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let records: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sources: Vec<&str> = records.iter().map(|r| r["invoice"]["source"].as_str().unwrap_or("")).collect();
    assert_eq!(sources, ["llm", "llm_cache"], "{records:?}");
    assert_eq!(model.script.calls.load(Ordering::SeqCst), 1);
    assert!(stderr.contains("model calls: 1,"), "{stderr}");
}
