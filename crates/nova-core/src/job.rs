//! Jobs: the units of background work, their states and their attempts.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BatchId, DocumentId, JobId, ProgramSpec, WorkerId};

/// Declares the workflows once: each one's name on the wire, its variant in [`Workflow`] and the type of its
/// input in [`JobInput`]. The API parses a job's input into a [`JobInput`] at the edge; the store keeps the
/// JSON as sent; the worker gets the typed value back with [`JobInput::parse`] (how each workflow runs is the
/// application layer's, `nova_app::workflows`).
macro_rules! workflows {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, input $input:ty, takes $shape:literal;)+) => {
        /// The workflows a job can run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Workflow {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)+
        }

        impl Workflow {
            pub const ALL: &'static [Workflow] = &[$(Workflow::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Workflow::$variant => $name,)+
                }
            }

            /// What the workflow's input looks like, for error messages.
            fn takes(self) -> &'static str {
                match self {
                    $(Workflow::$variant => $shape,)+
                }
            }
        }

        /// A job's input, typed by its workflow. On the wire it is the bare input object (the workflow is
        /// the job's `workflow` field beside it).
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
        #[serde(untagged)]
        pub enum JobInput {
            $($(#[$doc])* $variant($input),)+
        }

        impl JobInput {
            /// The checks beyond the input's shape ([`WorkflowInput::check`]).
            fn check(&self) -> Result<(), InputError> {
                match self {
                    $(JobInput::$variant(input) => input.check(),)+
                }
            }

            /// The documents the input names, which must be the submitting tenant's.
            pub fn document_ids(&self) -> Vec<DocumentId> {
                match self {
                    $(JobInput::$variant(input) => input.document_ids(),)+
                }
            }

            /// Parses and checks `input` as `workflow`'s; an absent input (`null`) is an empty object.
            pub fn parse(workflow: Workflow, input: &serde_json::Value) -> Result<JobInput, InputError> {
                let empty = serde_json::Value::Object(serde_json::Map::new());
                let input = if input.is_null() { &empty } else { input };
                let bad = |e: String| InputError {
                    code: "invalid_input",
                    message: format!("{workflow} takes {}: {e}", workflow.takes()),
                };
                let parsed = match workflow {
                    $(Workflow::$variant => {
                        JobInput::$variant(<$input>::deserialize(input).map_err(|e| bad(e.to_string()))?)
                    })+
                };
                parsed.check().map_err(|e| if e.code == "invalid_input" { bad(e.message) } else { e })?;
                Ok(parsed)
            }
        }
    };
}

workflows! {
    /// Extract one invoice from one document.
    InvoiceExtract = "invoice.extract", input InvoiceExtractInput, takes "{\"document_id\": \"doc_...\"}";
    /// Does nothing, optionally for a while. For benchmarks and tests of the queue.
    Noop = "noop", input NoopInput, takes "{\"sleep_ms\": N}";
    /// Runs a program in the sandbox.
    CodeRun = "code.run", input ProgramSpec, takes "{\"language\": \"python\", \"code\": \"...\", ...}";
    /// A free-form task over documents: a model writes a program over their extracted data and text, the
    /// sandbox runs it, and the files it writes become the job's artifacts.
    TaskRun = "task.run", input TaskRunInput, takes "{\"prompt\": \"...\", \"document_ids\": [\"doc_...\"]}";
    /// A model's answer to a prompt or a conversation, streamed into the job's event log as it is written.
    LlmGenerate = "llm.generate", input crate::LlmGenerateInput, takes "{\"prompt\": \"...\"} or {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}]}";
}

impl Workflow {
    /// `input` with document `id` put where this workflow names its document (`invoice.extract`'s
    /// `document_id`, `task.run`'s and `llm.generate`'s `document_ids` as a list of one), for a batch of documents that share
    /// one input; `None` for a workflow that takes no document, or an input that is not an object. The
    /// result is still to be parsed with [`JobInput::parse`].
    pub fn input_for_document(self, input: &serde_json::Value, id: DocumentId) -> Option<serde_json::Value> {
        let mut object = match input {
            serde_json::Value::Null => serde_json::Map::new(),
            serde_json::Value::Object(object) => object.clone(),
            _ => return None,
        };
        let (field, value) = match self {
            Workflow::InvoiceExtract => ("document_id", serde_json::json!(id)),
            Workflow::TaskRun | Workflow::LlmGenerate => ("document_ids", serde_json::json!([id])),
            Workflow::Noop | Workflow::CodeRun => return None,
        };
        object.insert(field.to_string(), value);
        Some(serde_json::Value::Object(object))
    }
}

/// What a workflow's input type says of itself beyond its shape: the checks its values must pass, and the
/// documents it names (which the API checks are the caller's). Each input type of the `workflows!` table
/// implements it; the defaults are "no further checks" and "no documents".
pub trait WorkflowInput {
    /// The checks beyond the input's shape: `invalid_input` (the API prefixes what the workflow takes), or a
    /// more precise code.
    fn check(&self) -> Result<(), InputError> {
        Ok(())
    }

    /// The documents the input names, which must be the submitting tenant's.
    fn document_ids(&self) -> Vec<DocumentId> {
        Vec::new()
    }
}

/// Why a job's (or an execution's) input was refused, with a stable code: `invalid_input`, or one more
/// precise (`unsupported_language`, `invalid_request` for a program's limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub code: &'static str,
    pub message: String,
}

/// Written by hand: the derive does not see the names the `workflows!` table passes to `serde(rename)`.
impl utoipa::PartialSchema for Workflow {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Workflow::ALL.iter().map(|w| w.as_str())))
            .description(Some("The workflows a job can run."))
            .into()
    }
}

impl utoipa::ToSchema for Workflow {}

impl Workflow {
    /// The hard deadline of one attempt when the job gives none: a model writing a long answer takes many
    /// minutes, where an extraction that runs past 15 has hung.
    pub fn default_timeout_seconds(self) -> u64 {
        match self {
            Workflow::LlmGenerate => 3600,
            _ => 900,
        }
    }
}

impl fmt::Display for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workflow name that NOVA does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown workflow `{0}` (known: {known})", known = Workflow::ALL.iter().map(|w| w.as_str()).collect::<Vec<_>>().join(", "))]
pub struct UnknownWorkflow(pub String);

impl FromStr for Workflow {
    type Err = UnknownWorkflow;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workflow::ALL
            .iter()
            .copied()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| UnknownWorkflow(s.chars().take(80).collect()))
    }
}

/// The input of an `invoice.extract` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceExtractInput {
    pub document_id: DocumentId,
    /// Rules, the model, or the model only when the rules are unsure. Absent: `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Read the document even though it crashed extraction before (its `extraction_failure`); without it,
    /// such a job fails at once with that failure's code.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

impl WorkflowInput for InvoiceExtractInput {
    fn document_ids(&self) -> Vec<DocumentId> {
        vec![self.document_id]
    }
}

/// How an invoice is extracted when it carries no e-invoice XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The generic rules only.
    Rules,
    /// A model-written program (cached per layout), whatever the rules found.
    Llm,
    /// The rules, and the model when the rules' confidence is below a threshold; the rules alone when no
    /// model is configured.
    #[default]
    Auto,
}

/// The input of a `task.run` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRunInput {
    /// What to do, in the user's words ("total these invoices per vendor into a CSV").
    pub prompt: String,
    /// The documents the task works on, each at most once.
    #[serde(default)]
    pub document_ids: Vec<DocumentId>,
}

impl TaskRunInput {
    /// Characters of a prompt, at most.
    pub const MAX_PROMPT_CHARS: usize = 8_000;
    /// Documents of one task, at most.
    pub const MAX_DOCUMENTS: usize = 50;
}

impl WorkflowInput for TaskRunInput {
    fn document_ids(&self) -> Vec<DocumentId> {
        self.document_ids.clone()
    }

    fn check(&self) -> Result<(), InputError> {
        let invalid = |message: String| InputError { code: "invalid_input", message };
        let parsed = self;
        if parsed.prompt.trim().is_empty() {
            return Err(invalid("prompt is empty".into()));
        }
        if parsed.prompt.chars().count() > Self::MAX_PROMPT_CHARS {
            return Err(invalid(format!("prompt must be at most {} characters", Self::MAX_PROMPT_CHARS)));
        }
        if parsed.document_ids.len() > Self::MAX_DOCUMENTS {
            return Err(invalid(format!("a task takes at most {} documents", Self::MAX_DOCUMENTS)));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = parsed.document_ids.iter().find(|id| !seen.insert(**id)) {
            return Err(invalid(format!("document {twice} is named twice")));
        }
        Ok(())
    }
}

/// A file a job's program wrote (a `task.run`'s CSV, say), downloadable at
/// `GET /v1/jobs/{id}/artifacts/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Artifact {
    /// The file's path in the program's output folder, `/`-separated (`totals.csv`, `by_vendor/acme.csv`).
    pub name: String,
    /// Guessed from the name's extension; `application/octet-stream` when unknown.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    pub sha256: crate::Sha256Hex,
    pub created_at: DateTime<Utc>,
}

/// The input of a `noop` job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoopInput {
    /// How long the job takes, at most [`NoopInput::MAX_SLEEP_MS`].
    #[serde(default)]
    pub sleep_ms: u64,
}

impl NoopInput {
    pub const MAX_SLEEP_MS: u64 = 600_000;
}

impl WorkflowInput for NoopInput {
    fn check(&self) -> Result<(), InputError> {
        if self.sleep_ms > Self::MAX_SLEEP_MS {
            let message = format!("sleep_ms must be at most {}", Self::MAX_SLEEP_MS);
            return Err(InputError { code: "invalid_input", message });
        }
        Ok(())
    }
}

/// Where a job stands. `succeeded`, `failed` and `canceled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    /// An attempt failed in a way worth retrying; the next one starts at `run_at`.
    Retrying,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    /// Every status, as the `jobs` table's CHECK constraint lists them.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Retrying,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Retrying => "retrying",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown job status `{s}`"))
    }
}

/// Where a job's result stands with the people who check it. A result that says `review.needed` (an
/// invoice the rules were unsure of) waits for review until someone stores a corrected or confirmed version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// The result asks for a person's look and has had none.
    Needed,
    /// A person stored a version of the result (see `POST /v1/jobs/{id}/result/versions`).
    Reviewed,
}

impl ReviewState {
    pub const ALL: [ReviewState; 2] = [ReviewState::Needed, ReviewState::Reviewed];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Needed => "needed",
            ReviewState::Reviewed => "reviewed",
        }
    }

    /// The state a fresh result starts in: `needed` when it says so (`{"review": {"needed": true}}`).
    pub fn of_result(result: &serde_json::Value) -> Option<ReviewState> {
        (result.pointer("/review/needed") == Some(&serde_json::Value::Bool(true))).then_some(ReviewState::Needed)
    }
}

impl FromStr for ReviewState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReviewState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown review state `{s}` (known: needed, reviewed)"))
    }
}

/// Why a job or an attempt failed, with a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
    /// The worker gave the job back (shutdown); the job was queued again.
    Released,
    /// The job was canceled while this attempt ran.
    Canceled,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Canceled => "canceled",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [AttemptOutcome::Succeeded, AttemptOutcome::Failed, AttemptOutcome::Released, AttemptOutcome::Canceled]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown attempt outcome `{s}`"))
    }
}

/// One entry of a job's durable event log: a state change or a progress report, numbered from 1 per job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobEvent {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// `queued`, `started`, `progress`, `retrying`, `lease_expired`, `released`, `cancel_requested`, or the
    /// final `succeeded`, `failed`, `canceled`.
    pub kind: String,
    pub data: Option<serde_json::Value>,
}

impl JobEvent {
    /// Whether this event ends the job's log.
    pub fn is_final(&self) -> bool {
        matches!(self.kind.as_str(), "succeeded" | "failed" | "canceled")
    }
}

/// One run of a job by one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub number: u32,
    pub worker_id: WorkerId,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `None` while the attempt runs.
    pub outcome: Option<AttemptOutcome>,
    pub error: Option<JobError>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: JobId,
    pub workflow: Workflow,
    pub input: serde_json::Value,
    pub status: JobStatus,
    /// Higher runs first; ties go to the earliest `run_at`.
    pub priority: i64,
    /// Not started before this time (a delayed job, or the next attempt of a retrying one).
    pub run_at: DateTime<Utc>,
    /// The hard deadline of one attempt.
    pub timeout_seconds: u64,
    /// Set while the job waits for its first start with a queue-wait timeout: not started by then, it fails
    /// with `queue_timeout` without running.
    pub start_by: Option<DateTime<Utc>>,
    pub attempts: Vec<Attempt>,
    pub max_attempts: u32,
    /// The client's `Idempotency-Key`, if the job was submitted with one.
    pub idempotency_key: Option<String>,
    /// The id of the HTTP request that submitted the job (its `X-Request-Id`), which the job's logs carry
    /// too; absent for jobs enqueued otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Set when a cancellation was asked of the running job; the worker stops it at its next heartbeat.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub error: Option<JobError>,
    /// The batch the job was submitted in, if any (`POST /v1/batches`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<BatchId>,
    /// Set on a succeeded job whose result waits for review (`needed`) or has had one (`reviewed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewState>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_input_takes_each_document_where_its_workflow_names_one() {
        let doc = DocumentId::new();
        let shared = serde_json::json!({"strategy": "rules"});
        let input = Workflow::InvoiceExtract.input_for_document(&shared, doc).unwrap();
        let parsed = JobInput::parse(Workflow::InvoiceExtract, &input).unwrap();
        assert_eq!(parsed.document_ids(), vec![doc]);
        assert_eq!(input["strategy"], "rules");
        let task = Workflow::TaskRun.input_for_document(&serde_json::json!({"prompt": "sum"}), doc).unwrap();
        assert_eq!(JobInput::parse(Workflow::TaskRun, &task).unwrap().document_ids(), vec![doc]);
        assert_eq!(Workflow::Noop.input_for_document(&serde_json::Value::Null, doc), None);
        assert_eq!(Workflow::InvoiceExtract.input_for_document(&serde_json::json!([1]), doc), None);
    }

    #[test]
    fn the_workflow_schema_lists_the_names_on_the_wire() {
        let schema = serde_json::to_value(<Workflow as utoipa::PartialSchema>::schema()).unwrap();
        let names: Vec<serde_json::Value> = Workflow::ALL.iter().map(|w| serde_json::to_value(w).unwrap()).collect();
        assert_eq!(schema["enum"], serde_json::Value::Array(names), "{schema}");
    }

    #[test]
    fn workflow_names_parse_and_unknown_ones_are_refused() {
        assert_eq!("invoice.extract".parse::<Workflow>().unwrap(), Workflow::InvoiceExtract);
        assert_eq!(serde_json::to_value(Workflow::InvoiceExtract).unwrap(), "invoice.extract");
        assert!("invoice.extrac".parse::<Workflow>().is_err());
        assert!("".parse::<Workflow>().is_err());
    }

    #[test]
    fn inputs_parse_once_into_their_workflows_types_with_stable_codes() {
        use serde_json::json;
        let doc = "doc_01890a5dac96774bbcceb302099a8057";
        let parsed = JobInput::parse(Workflow::InvoiceExtract, &json!({"document_id": doc})).unwrap();
        assert!(matches!(&parsed, JobInput::InvoiceExtract(input) if input.document_id.to_string() == doc));
        assert_eq!(parsed.document_ids().len(), 1);
        // An absent input is an empty one.
        assert_eq!(JobInput::parse(Workflow::Noop, &json!(null)).unwrap(), JobInput::Noop(NoopInput { sleep_ms: 0 }));
        let cases = [
            (Workflow::InvoiceExtract, json!({"document_id": "nope"}), "invalid_input"),
            (Workflow::InvoiceExtract, json!({"document_id": doc, "extra": 1}), "invalid_input"),
            (Workflow::Noop, json!({"sleep_ms": NoopInput::MAX_SLEEP_MS + 1}), "invalid_input"),
            (Workflow::TaskRun, json!({"prompt": " "}), "invalid_input"),
            (Workflow::TaskRun, json!({"prompt": "x", "document_ids": [doc, doc]}), "invalid_input"),
            (Workflow::CodeRun, json!({"language": "cobol", "code": "1"}), "unsupported_language"),
            (
                Workflow::CodeRun,
                json!({"language": "python", "code": "1", "limits": {"processes": 0}}),
                "invalid_request",
            ),
        ];
        for (workflow, input, code) in cases {
            let e = JobInput::parse(workflow, &input).unwrap_err();
            assert_eq!(e.code, code, "{workflow} {input}: {}", e.message);
        }
        let e = JobInput::parse(Workflow::TaskRun, &json!({"prompt": " "})).unwrap_err();
        assert!(e.message.starts_with("task.run takes {\"prompt\""), "{}", e.message);
    }

    #[test]
    fn a_result_that_asks_for_review_waits_for_one() {
        let asks = serde_json::json!({"invoice_number": "1", "review": {"needed": true, "reasons": []}});
        assert_eq!(ReviewState::of_result(&asks), Some(ReviewState::Needed));
        for other in [
            serde_json::json!({"review": {"needed": false}}),
            serde_json::json!({"review": "yes"}),
            serde_json::json!(42),
        ] {
            assert_eq!(ReviewState::of_result(&other), None, "{other}");
        }
        assert_eq!("reviewed".parse::<ReviewState>().unwrap(), ReviewState::Reviewed);
        assert!("done".parse::<ReviewState>().is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["queued", "running", "retrying", "succeeded", "failed", "canceled"] {
            assert_eq!(s.parse::<JobStatus>().unwrap().as_str(), s);
        }
    }
}
