//! `nova extract --server URL FILE...`: the files extracted by a running NOVA instead of this process. They
//! are uploaded, submitted as one batch of `invoice.extract` jobs, followed with the same progress bar as a
//! local run, and written in the same formats, in the order given. The API key is the usual setting
//! (`NOVA_API_KEY`, its `_FILE`, or the configuration file's `api_key`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use nova_core::{BatchItem, Invoice, JobError};
use serde_json::{json, Value};

use super::{progress_bar, read_file, Format, Output, Record};

/// Uploads in flight at once.
const UPLOADS: usize = 4;
/// How often the batch's progress is read.
const POLL: Duration = Duration::from_millis(500);

/// Runs the extraction of `files` on the server at `base`.
pub(super) fn run(
    base: &str,
    files: &[PathBuf],
    format: Format,
    limit: u64,
    strategy: nova_core::Strategy,
    api_key: Option<&str>,
) -> ExitCode {
    let runtime = match crate::serve::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("nova extract: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(extract(base.trim_end_matches('/'), files, format, limit, strategy, api_key)) {
        Ok(failed) if failed == files.len() => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nova extract: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Extracts `files` on the server and writes their records in the order given; returns how many failed.
async fn extract(
    base: &str,
    files: &[PathBuf],
    format: Format,
    limit: u64,
    strategy: nova_core::Strategy,
    api_key: Option<&str>,
) -> anyhow::Result<usize> {
    let client = client(api_key)?;
    let progress = progress_bar(files.len());

    // Each file uploaded (a file that cannot be read or is refused is a record with its error at once).
    let uploads = futures::stream::iter(files.iter().map(|path| upload(&client, base, path, limit)))
        .buffered(UPLOADS)
        .collect::<Vec<_>>()
        .await;
    let mut documents = Vec::new();
    let mut records: Vec<Option<Record>> = Vec::with_capacity(files.len());
    for (path, uploaded) in files.iter().zip(uploads) {
        match uploaded? {
            Ok(id) => {
                documents.push((records.len(), id));
                records.push(None);
            }
            Err(error) => {
                progress.suspend(|| eprintln!("{}: {} ({})", path.display(), error.message, error.code));
                progress.inc(1);
                records.push(Some(Record { file: path.display().to_string(), invoice: None, error: Some(error) }));
            }
        }
    }

    if !documents.is_empty() {
        let ids: Vec<&str> = documents.iter().map(|(_, id)| id.as_str()).collect();
        let batch: Value = answer(
            client
                .post(format!("{base}/v1/batches"))
                .json(&json!({"workflow": "invoice.extract", "document_ids": ids, "input": {"strategy": strategy}}))
                .send()
                .await,
            "submitting the batch",
        )
        .await?;
        let id = batch["id"].as_str().context("the server's batch has no id")?.to_string();
        let local = progress.position();
        loop {
            let batch: Value =
                answer(client.get(format!("{base}/v1/batches/{id}")).send().await, "reading the batch").await?;
            progress.set_position(local + batch["done"].as_u64().unwrap_or(0));
            if batch["finished"] == true {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        for item in results(&client, base, &id).await? {
            let Some(&(slot, _)) = documents.get(item.index as usize) else {
                bail!("the server's results name job {} of a batch of {}", item.index, documents.len())
            };
            let file = files[slot].display().to_string();
            let record = record(file, item);
            if let Some(e) = &record.error {
                progress.suspend(|| eprintln!("{}: {} ({})", record.file, e.message, e.code));
            }
            records[slot] = Some(record);
        }
    }
    progress.finish_and_clear();
    let records: Vec<Record> = records
        .into_iter()
        .zip(files)
        .map(|(record, path)| {
            record.unwrap_or_else(|| Record {
                file: path.display().to_string(),
                invoice: None,
                error: Some(JobError { code: "missing_result".into(), message: "the server sent no result".into() }),
            })
        })
        .collect();
    let failed = records.iter().filter(|r| r.error.is_some()).count();
    let mut out = Output::new(format);
    for record in records {
        out.write(record);
    }
    out.finish();
    Ok(failed)
}

/// The HTTP client, sending the API key when there is one.
fn client(api_key: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = api_key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .context("the API key (NOVA_API_KEY) is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(300))
        .build()
        .context("building the HTTP client")
}

/// Uploads one file; its document id, or why it was not taken (`Err` only when the server cannot be
/// reached or answers what no server of ours would).
async fn upload(
    client: &reqwest::Client,
    base: &str,
    path: &PathBuf,
    limit: u64,
) -> anyhow::Result<Result<String, JobError>> {
    let bytes = match read_file(path, limit) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Err(e)),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
    let sent = client
        .post(format!("{base}/v1/documents"))
        .multipart(form)
        .send()
        .await
        .with_context(|| format!("uploading {} to {base}", path.display()))?;
    let status = sent.status();
    let body: Value =
        sent.json().await.with_context(|| format!("reading the answer to the upload of {}", path.display()))?;
    if status.is_success() {
        return body["id"].as_str().map(|id| Ok(id.to_string())).context("the server's document has no id");
    }
    // A refused document (not an invoice format, too large) is this file's error; a refused key is everyone's.
    if matches!(status.as_u16(), 401 | 403) {
        bail!("the server refused the request ({status}): {}", body["error"]["message"]);
    }
    Ok(Err(JobError {
        code: body["error"]["code"].as_str().unwrap_or("upload_refused").to_string(),
        message: body["error"]["message"].as_str().unwrap_or("the server refused the upload").to_string(),
    }))
}

/// The JSON of a successful answer, or an error that says what the server answered.
async fn answer(sent: reqwest::Result<reqwest::Response>, what: &str) -> anyhow::Result<Value> {
    let sent = sent.with_context(|| format!("{what}: the server cannot be reached"))?;
    let status = sent.status();
    let body: Value = sent.json().await.with_context(|| format!("{what}: reading the answer"))?;
    if !status.is_success() {
        bail!("{what}: the server answered {status}: {}", body["error"]["message"].as_str().unwrap_or_default());
    }
    Ok(body)
}

/// The batch's results, read as JSON lines as they arrive.
async fn results(client: &reqwest::Client, base: &str, id: &str) -> anyhow::Result<Vec<BatchItem>> {
    let mut sent = client
        .get(format!("{base}/v1/batches/{id}/results"))
        .send()
        .await
        .context("reading the results")?
        .error_for_status()
        .context("reading the results")?;
    let (mut items, mut pending) = (Vec::new(), Vec::new());
    while let Some(chunk) = sent.chunk().await.context("reading the results")? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            items.push(serde_json::from_slice(&line).context("a line of the results is not a job's result")?);
        }
    }
    if !pending.iter().all(u8::is_ascii_whitespace) {
        bail!("the results ended in the middle of a line");
    }
    Ok(items)
}

/// A job's result as `nova extract` writes it: the invoice, or the job's error.
fn record(file: String, item: BatchItem) -> Record {
    match (item.result, item.error) {
        (Some(result), _) => match serde_json::from_value::<Invoice>(result) {
            Ok(invoice) => Record { file, invoice: Some(invoice), error: None },
            Err(e) => Record {
                file,
                invoice: None,
                error: Some(JobError { code: "unreadable_result".into(), message: format!("not an invoice: {e}") }),
            },
        },
        (None, Some(error)) => Record { file, invoice: None, error: Some(error) },
        (None, None) => Record {
            file,
            invoice: None,
            error: Some(JobError {
                code: format!("job_{}", item.status.as_str()),
                message: format!("the job ended {}", item.status.as_str()),
            }),
        },
    }
}
