//! OpenAI's Responses API shapes, and how they map onto `llm.generate` jobs: a request becomes the job's
//! input, the job becomes a `response` object, and the job's event log becomes the response's stream of
//! events, numbered by `sequence_number`.
//!
//! The numbering is a pure function of the log: the events are translated from the log's first, so a stream
//! read again (to resume after `starting_after`, or from the start as OpenAI's SDK does) numbers each event as
//! before. A response's id is its job's (`resp_` and the job id's 32 hex digits), so `GET /v1/jobs/{id}`
//! shows the same work.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nova_core::{ChatMessage, ChatRole, DocumentId, Job, JobEvent, JobId, JobStatus, LlmGenerateInput, Temperature};
use serde::Deserialize;
use serde_json::{json, Value};

/// The prefix of a response's id.
pub const RESPONSE_PREFIX: &str = "resp_";

/// A response's id for job `id`.
pub fn response_id(id: JobId) -> String {
    format!("{RESPONSE_PREFIX}{}", id.as_uuid().simple())
}

/// The job of response id `text`; `None` when it is no response id.
pub fn job_of(text: &str) -> Option<JobId> {
    let rest = text.strip_prefix(RESPONSE_PREFIX)?;
    format!("{}{rest}", JobId::PREFIX).parse().ok()
}

/// `POST /v1/responses`'s body: the fields NOVA reads, and the ones it refuses rather than ignore (tools,
/// conversations). Other fields of OpenAI's are accepted and have no effect: `model` (NOVA answers with the
/// model it is configured with, `NOVA_LLM_MODEL`), `top_p`, `store`, `user`, ...
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateResponse {
    /// A prompt, or a list of messages (`{"role", "content"}`, content as text or `input_text` parts;
    /// `input_file` parts name NOVA documents by `file_id`).
    #[schema(value_type = Object)]
    pub input: Value,
    /// A system message put first.
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    /// `{"format": {"type": "json_schema", "schema": {...}}}` for an answer checked against a JSON Schema,
    /// `{"format": {"type": "json_object"}}` for any JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub text: Option<Value>,
    /// Run as a job and answer at once (`queued`); without it the request waits for the answer.
    #[serde(default)]
    pub background: Option<bool>,
    /// Answer with the response's events as Server-Sent Events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Up to 16 string pairs, returned with the response.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Refused unless empty: NOVA's responses call no tools.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    /// Refused: NOVA keeps no conversation state between responses.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Refused, as `previous_response_id`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub conversation: Option<Value>,
}

/// `CreateResponse` as an `llm.generate` input, or what is wrong with it.
pub fn to_input(request: &CreateResponse) -> Result<LlmGenerateInput, String> {
    if request.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err("tools are not supported: NOVA's responses call no tools".into());
    }
    if request.previous_response_id.is_some() || request.conversation.is_some() {
        return Err(
            "previous_response_id and conversation are not supported: send the whole conversation as input".into()
        );
    }
    if request.metadata.as_ref().is_some_and(|m| m.len() > 16) {
        return Err("metadata holds at most 16 pairs".into());
    }
    let mut document_ids = Vec::new();
    let (prompt, messages) = match &request.input {
        Value::String(text) => (Some(text.clone()), Vec::new()),
        Value::Array(items) => {
            let mut messages = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                messages.push(message(item, &mut document_ids).map_err(|e| format!("input[{i}]: {e}"))?);
            }
            // A conversation of documents only is a question about them with no words: ask for a summary.
            messages.retain(|m: &ChatMessage| !m.content.is_empty() || m.role != ChatRole::User);
            if messages.is_empty() && !document_ids.is_empty() {
                messages.push(ChatMessage { role: ChatRole::User, content: "Summarise these documents.".into() });
            }
            (None, messages)
        }
        _ => return Err("input must be a string or a list of messages".into()),
    };
    let json_schema = match request.text.as_ref().and_then(|t| t.get("format")) {
        None => None,
        Some(format) => match format.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(json!({"type": "object"})),
            Some("json_schema") => Some(format.get("schema").cloned().ok_or("text.format.schema is missing")?),
            _ => return Err("text.format.type must be text, json_object or json_schema".into()),
        },
    };
    Ok(LlmGenerateInput {
        prompt,
        messages,
        instructions: request.instructions.clone(),
        document_ids,
        max_output_tokens: request.max_output_tokens,
        temperature: request.temperature.map(Temperature),
        json_schema,
        metadata: request.metadata.clone().unwrap_or_default(),
    })
}

/// One input item as a message; the documents its `input_file` parts name are added to `documents`.
fn message(item: &Value, documents: &mut Vec<DocumentId>) -> Result<ChatMessage, String> {
    if item.get("type").and_then(Value::as_str).is_some_and(|t| t != "message") {
        return Err("only message items are supported".into());
    }
    let role = match item.get("role").and_then(Value::as_str) {
        Some("user") => ChatRole::User,
        Some("system") => ChatRole::System,
        Some("developer") => ChatRole::Developer,
        Some("assistant") => ChatRole::Assistant,
        _ => return Err("role must be user, system, developer or assistant".into()),
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).ok_or("a text part has no text")?);
                    }
                    Some("input_file") => {
                        let id = part.get("file_id").and_then(Value::as_str).ok_or("an input_file needs a file_id")?;
                        let id = id.parse().map_err(|_| format!("file_id `{id}` is no NOVA document id (doc_...)"))?;
                        documents.push(id);
                    }
                    _ => return Err("content parts must be input_text or input_file".into()),
                }
            }
            text
        }
        _ => return Err("content must be text or a list of parts".into()),
    };
    Ok(ChatMessage { role, content })
}

/// What a job's response needs besides the job: its result when it succeeded, its text so far while it
/// runs, and the output item its answer is written to.
#[derive(Debug, Default)]
pub struct Known {
    pub result: Option<Value>,
    pub partial: Option<String>,
    /// The index of the answer's output item, as the response's stream numbers it: 0, or more when the log
    /// started the answer again (`output_reset`) after writing some of an earlier one (see [`Answers`]).
    pub item: u32,
}

/// The answers a job's log holds, read event by event: each `output` after a reset (or the first) opens the
/// next output item, so that a stream never takes back text it sent; the last opened holds the answer.
#[derive(Debug, Default)]
pub struct Answers {
    /// Output items opened so far.
    opened: u32,
    /// An item is open: its text is growing.
    open: bool,
    /// The current answer's text: the open item's, empty after a reset.
    text: String,
}

impl Answers {
    /// Reads log event `event`; says whether it opened an output item, and the text it added.
    pub fn read<'a>(&mut self, event: &'a JobEvent) -> Option<(bool, &'a str)> {
        match event.kind.as_str() {
            "output" => {
                let delta = event.data.as_ref().and_then(|d| d.get("text")).and_then(Value::as_str).unwrap_or("");
                let opens = !self.open;
                if opens {
                    self.opened += 1;
                    self.open = true;
                }
                self.text.push_str(delta);
                Some((opens, delta))
            }
            "output_reset" => {
                self.open = false;
                self.text.clear();
                None
            }
            _ => None,
        }
    }

    /// The output item of the current answer: the open one, or else the next to open (0 before any).
    pub fn item(&self) -> u32 {
        if self.open {
            self.opened - 1
        } else {
            self.opened
        }
    }

    /// The current answer's text so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Job `job` as a `response` object.
pub fn response(job: &Job, known: &Known) -> Value {
    // Stored after the same parse; an input that no longer reads shows the response without its echoes.
    let input: LlmGenerateInput = serde_json::from_value(job.input.clone()).unwrap_or_default();
    let result = known.result.as_ref();
    let finish = result.and_then(|r| r.get("finish_reason")).and_then(Value::as_str);
    let status = match job.status {
        JobStatus::Queued | JobStatus::Retrying => "queued",
        JobStatus::Running => "in_progress",
        JobStatus::Succeeded if finish == Some("length") => "incomplete",
        JobStatus::Succeeded => "completed",
        JobStatus::Failed => "failed",
        JobStatus::Canceled => "cancelled",
    };
    let text = result.and_then(|r| r.get("text")).and_then(Value::as_str).map(str::to_string).or(known.partial.clone());
    let item_status = if job.status == JobStatus::Running { "in_progress" } else { "completed" };
    let output: Vec<Value> = text.map(|t| vec![output_item(job.id, known.item, item_status, &t)]).unwrap_or_default();
    let usage = result.and_then(|r| r.get("llm_usage")).map(|u| {
        let (input_tokens, output_tokens) =
            (u["input_tokens"].as_u64().unwrap_or(0), u["output_tokens"].as_u64().unwrap_or(0));
        json!({
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        })
    });
    let error = match job.status {
        JobStatus::Failed => job.error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
        JobStatus::Canceled => Some(json!({"code": "cancelled", "message": "the response was cancelled"})),
        _ => None,
    };
    let format = match &input.json_schema {
        Some(schema) => json!({"type": "json_schema", "name": "answer", "schema": schema, "strict": false}),
        None => json!({"type": "text"}),
    };
    json!({
        "id": response_id(job.id),
        "object": "response",
        "created_at": seconds(job.created_at),
        "completed_at": job.finished_at.filter(|_| status == "completed").map(seconds),
        "status": status,
        "background": true,
        "error": error,
        "incomplete_details": (status == "incomplete").then(|| json!({"reason": "max_output_tokens"})),
        "instructions": input.instructions,
        "max_output_tokens": input.max_output_tokens,
        "metadata": input.metadata,
        "model": result.and_then(|r| r.get("model")).and_then(Value::as_str).unwrap_or("nova"),
        "output": output,
        "parallel_tool_calls": false,
        "previous_response_id": null,
        "temperature": input.temperature.map(|t| t.0),
        "text": {"format": format},
        "tool_choice": "none",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": usage,
    })
}

/// An assistant message holding `text`, the `index`th output item of job `job`'s response.
fn output_item(job: JobId, index: u32, status: &str, text: &str) -> Value {
    json!({
        "id": format!("msg_{}_{index}", job.as_uuid().simple()),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    })
}

fn seconds(at: DateTime<Utc>) -> i64 {
    at.timestamp()
}

/// Translates a job's log, from its first event, into the response's stream of events. Feed it every
/// event of the log in order; it numbers what it returns from 0.
pub struct Translator {
    job: JobId,
    next: u64,
    started: bool,
    answers: Answers,
    /// The stream has an output item open (added, not yet done).
    streaming: bool,
}

impl Translator {
    pub fn new(job: JobId) -> Translator {
        Translator { job, next: 0, started: false, answers: Answers::default(), streaming: false }
    }

    /// The stream's events for log event `event`; `snapshot` makes the response object as it stands, given
    /// its answer's output item (the final events carry the finished response).
    pub fn translate(&mut self, event: &JobEvent, snapshot: &dyn Fn(u32) -> Value) -> Vec<Value> {
        let mut out = Vec::new();
        match event.kind.as_str() {
            "queued" => {
                let response = snapshot_with_status(snapshot(0), "queued");
                out.push(json!({"type": "response.created", "response": response}));
                out.push(json!({"type": "response.queued", "response": response}));
            }
            "started" if !self.started => {
                self.started = true;
                let response = snapshot_with_status(snapshot(self.answers.item()), "in_progress");
                out.push(json!({"type": "response.in_progress", "response": response}));
            }
            "output" => {
                let Some((opens, delta)) = self.answers.read(event) else { return out };
                let index = self.answers.item();
                let id = self.item_id(index);
                if opens {
                    self.streaming = true;
                    let item = json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
                    out.push(json!({"type": "response.output_item.added", "output_index": index, "item": item}));
                    out.push(json!({
                        "type": "response.content_part.added", "output_index": index, "content_index": 0,
                        "item_id": id, "part": {"type": "output_text", "text": "", "annotations": []},
                    }));
                }
                out.push(json!({
                    "type": "response.output_text.delta", "output_index": index, "content_index": 0,
                    "item_id": id, "delta": delta, "logprobs": [],
                }));
            }
            "output_reset" => {
                self.close("incomplete", &mut out);
                self.answers.read(event);
            }
            "succeeded" => {
                self.close("completed", &mut out);
                let response = snapshot(self.answers.item());
                let kind =
                    if response["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
                out.push(json!({"type": kind, "response": response}));
            }
            "failed" | "canceled" => {
                self.close("incomplete", &mut out);
                out.push(json!({"type": "response.failed", "response": snapshot(self.answers.item())}));
            }
            _ => {}
        }
        for event in &mut out {
            event["sequence_number"] = json!(self.next);
            self.next += 1;
        }
        out
    }

    fn item_id(&self, index: u32) -> String {
        format!("msg_{}_{index}", self.job.as_uuid().simple())
    }

    /// Ends the output item the stream has open, if there is one, with `status`.
    fn close(&mut self, status: &str, out: &mut Vec<Value>) {
        if !std::mem::take(&mut self.streaming) {
            return;
        }
        let index = self.answers.item();
        let text = self.answers.text();
        let id = self.item_id(index);
        out.push(json!({
            "type": "response.output_text.done", "output_index": index, "content_index": 0, "item_id": id,
            "text": text, "logprobs": [],
        }));
        out.push(json!({
            "type": "response.content_part.done", "output_index": index, "content_index": 0, "item_id": id,
            "part": {"type": "output_text", "text": text, "annotations": []},
        }));
        out.push(json!({"type": "response.output_item.done", "output_index": index, "item": output_item(self.job, index, status, text)}));
    }
}

/// `response` with its `status` set: the snapshot at the time of a past event, where the job has moved on.
fn snapshot_with_status(mut response: Value, status: &str) -> Value {
    response["status"] = json!(status);
    response["output"] = json!([]);
    response["usage"] = Value::Null;
    response["error"] = Value::Null;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, kind: &str, data: Option<Value>) -> JobEvent {
        JobEvent { seq, at: Utc::now(), kind: kind.into(), data }
    }

    #[test]
    fn ids_map_both_ways() {
        let job = JobId::new();
        assert_eq!(job_of(&response_id(job)), Some(job));
        assert_eq!(job_of(&job.to_string()), None);
        assert_eq!(job_of("resp_xyz"), None);
    }

    #[test]
    fn messages_and_files_become_the_input() {
        let doc = DocumentId::new();
        let request: CreateResponse = serde_json::from_value(json!({
            "model": "gpt-x",
            "input": [
                {"role": "developer", "content": "Be brief"},
                {"role": "user", "content": [{"type": "input_text", "text": "Total?"}, {"type": "input_file", "file_id": doc.to_string()}]},
            ],
            "text": {"format": {"type": "json_schema", "name": "t", "schema": {"type": "object"}}},
            "top_p": 0.5,
        }))
        .unwrap();
        let input = to_input(&request).unwrap();
        assert_eq!(input.document_ids, [doc]);
        assert_eq!(input.messages[1].content, "Total?");
        assert_eq!(input.json_schema, Some(json!({"type": "object"})));
        for bad in [
            json!({"input": 3}),
            json!({"input": "x", "tools": [{"type": "web_search"}]}),
            json!({"input": "x", "previous_response_id": "resp_1"}),
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
            json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-abc"}]}]}),
            json!({"input": "x", "text": {"format": {"type": "xml"}}}),
        ] {
            let request: CreateResponse = serde_json::from_value(bad.clone()).unwrap();
            assert!(to_input(&request).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_log_translates_to_numbered_events_the_same_way_every_time() {
        let job = JobId::new();
        let log = [
            event(1, "queued", None),
            event(2, "started", None),
            event(3, "output", Some(json!({"text": "Hel"}))),
            event(4, "output_reset", Some(json!({"round": 2}))),
            event(5, "retrying", None),
            event(6, "started", None),
            event(7, "output", Some(json!({"text": "Hello"}))),
            event(8, "output", Some(json!({"text": ", world"}))),
            event(9, "succeeded", None),
        ];
        let snapshot = |item: u32| json!({"status": "completed", "output": [{"id": format!("msg_{}_{item}", job.as_uuid().simple())}]});
        let run = || {
            let mut translator = Translator::new(job);
            log.iter().flat_map(|e| translator.translate(e, &snapshot)).collect::<Vec<_>>()
        };
        let events = run();
        assert_eq!(events, run());
        let numbers: Vec<u64> = events.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds[..3], ["response.created", "response.queued", "response.in_progress"]);
        assert_eq!(kinds.last(), Some(&"response.completed"));
        // The first answer's item is closed as incomplete; the second holds the whole new text.
        let done: Vec<&Value> = events.iter().filter(|e| e["type"] == "response.output_item.done").collect();
        assert_eq!(done.len(), 2);
        assert_eq!(done[0]["item"]["status"], "incomplete");
        assert_eq!(done[1]["output_index"], 1);
        assert_eq!(done[1]["item"]["content"][0]["text"], "Hello, world");
        let deltas: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta" && e["output_index"] == 1)
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, "Hello, world");
        // The finished response names the item the stream wrote the answer to.
        assert_eq!(events.last().unwrap()["response"]["output"][0]["id"], done[1]["item"]["id"]);
    }

    #[test]
    fn a_response_names_the_item_its_answer_was_streamed_to() {
        let job = JobId::new();
        let log = [
            event(1, "output", Some(json!({"text": "Hel"}))),
            event(2, "output_reset", None),
            event(3, "output", Some(json!({"text": "Hello"}))),
        ];
        let mut answers = Answers::default();
        assert_eq!(answers.item(), 0);
        answers.read(&log[0]);
        assert_eq!((answers.item(), answers.text()), (0, "Hel"));
        answers.read(&log[1]);
        // After a reset the answer goes to the next item, before any of its text comes.
        assert_eq!((answers.item(), answers.text()), (1, ""));
        answers.read(&log[2]);
        assert_eq!((answers.item(), answers.text()), (1, "Hello"));
        let now = Utc::now();
        let done: Job = serde_json::from_value(json!({
            "id": job, "workflow": "llm.generate", "input": {"prompt": "hi"}, "status": "succeeded", "priority": 0,
            "run_at": now, "timeout_seconds": 60, "start_by": null, "attempts": [], "max_attempts": 1,
            "idempotency_key": null, "cancel_requested_at": null, "error": null, "created_at": now,
            "started_at": now, "finished_at": now, "updated_at": now,
        }))
        .unwrap();
        let known = Known { result: Some(json!({"text": "Hello"})), partial: None, item: answers.item() };
        assert_eq!(response(&done, &known)["output"][0]["id"], format!("msg_{}_1", job.as_uuid().simple()));
    }
}
