//! The API's OpenAPI 3.1 document (`GET /openapi.json`) and a page that renders it (`GET /docs`).
//!
//! Paths come from the handlers' `#[utoipa::path]` annotations and schemas from the types they send, so
//! the document changes with the code. What every `/v1` operation shares is added once here, by
//! [`V1Conventions`]: the bearer key, the answers of the layers in front of the handlers (`401`/`403` from
//! `auth`, `429` from `ratelimit`, `500`), and on `POST` the `Idempotency-Key` header with its answers.
//! Every schema is a type the handlers send or take (the few that are only schemas, such as bytes and the
//! upload form, are in `schemas.rs`); the schemathesis suite (`crates/nova-cli/tests/cli/schemathesis.rs`) checks every
//! answer of a live server against the document.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::ErrorBody;
use crate::routes::{
    artifacts, batch_results, batches, documents, executions, exports, health, jobs, page_images, programs, queue,
    responses, sandboxes, schedules, usage, versions, webhooks,
};
use crate::AppState;

/// The document: every route the router serves, `/v1` paths as served (no `servers`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "NOVA",
        description = "Upload documents, queue jobs (invoice extraction, sandboxed code), read their results. \
                       Every `/v1` request needs `Authorization: Bearer nova_...` once an API key exists; before \
                       that, only loopback clients are answered. Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        health::healthz,
        health::readyz,
        openapi_json,
        docs,
        documents::upload,
        documents::list,
        documents::show,
        documents::content,
        page_images::page,
        page_images::words,
        jobs::create,
        jobs::list,
        jobs::show,
        versions::result,
        versions::list,
        versions::create,
        jobs::cancel,
        jobs::events,
        batches::create,
        batches::list,
        batches::show,
        batches::cancel,
        batches::events,
        batch_results::results,
        artifacts::list,
        artifacts::download,
        executions::create,
        sandboxes::create,
        sandboxes::list,
        sandboxes::show,
        sandboxes::kill,
        sandboxes::set_timeout,
        sandboxes::run_code,
        sandboxes::create_context,
        sandboxes::list_contexts,
        sandboxes::remove_context,
        sandboxes::run_command,
        sandboxes::list_commands,
        sandboxes::kill_command,
        sandboxes::send_stdin,
        sandboxes::download,
        sandboxes::upload,
        sandboxes::remove_file,
        sandboxes::list_files,
        programs::list,
        programs::show,
        programs::delete,
        programs::retire,
        webhooks::secret,
        webhooks::list,
        webhooks::show,
        webhooks::resend,
        usage::usage,
        exports::invoices,
        queue::queue,
        responses::create,
        responses::retrieve,
        responses::cancel,
        schedules::create,
        schedules::list,
        schedules::show,
        schedules::pause,
        schedules::resume,
        schedules::delete,
    ),
    components(schemas(
        ErrorBody,
        nova_core::BatchItem,
        nova_core::InvoiceExtractInput,
        nova_core::TaskRunInput,
        nova_core::NoopInput,
        nova_core::LlmGenerateInput
    )),
    modifiers(&V1Conventions, &MetricsPath),
    tags(
        (name = "meta", description = "Health and this document."),
        (name = "documents", description = "Uploaded documents, stored once per content."),
        (name = "jobs", description = "The queue: submit, follow, read results, cancel."),
        (name = "batches", description = "Many jobs of one workflow submitted at once, with their progress and \
                                          one result file."),
        (name = "executions", description = "Short programs run synchronously in the sandbox."),
        (name = "sandboxes", description = "Sandboxes that keep their files, processes and Python variables \
                                            across calls, until killed or their timeout passes."),
        (name = "programs", description = "Extraction programs a model wrote, one per document layout."),
        (name = "webhooks", description = "Signed job events sent to the URL a job names."),
        (name = "usage", description = "What the tenant's work used: model calls, tokens, cost, sandbox time."),
        (name = "schedules", description = "Cron schedules that enqueue a job at each of their times."),
        (name = "responses", description = "OpenAI's Responses API over `llm.generate` jobs: create in the \
                                            background, poll, stream and resume, cancel."),
    )
)]
struct ApiDoc;

/// The document as a value.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json` and `GET /docs`, outside `/v1`: no key, like `/healthz`.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json)).route("/docs", get(docs))
}

/// The document, built once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object))
)]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document_json()).into_response()
}

/// A page that renders this document (self-contained: it loads nothing but `/openapi.json`).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "meta",
    responses((status = 200, description = "An HTML page.", content_type = "text/html", body = String))
)]
async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

/// `GET /metrics` (`crate::metrics`), written here: its handler lives outside the route modules.
struct MetricsPath;

impl Modify for MetricsPath {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let text = ContentBuilder::new().schema(Some(String::schema())).build();
        let operation = utoipa::openapi::path::OperationBuilder::new()
            .tag("meta")
            .summary(Some("Prometheus metrics"))
            .description(Some(
                "The process's metrics in Prometheus' text format, for loopback peers and for callers with an \
                 API key (`401`/`403` as for `/v1` otherwise).",
            ))
            .operation_id(Some("metrics"))
            .response("200", ResponseBuilder::new().description("The metrics.").content("text/plain", text))
            .response("401", Ref::from_response_name("Unauthorized"))
            .response("403", Ref::from_response_name("LoopbackOnly"))
            .response("500", Ref::from_response_name("Internal"))
            .response(
                "503",
                ResponseBuilder::new()
                    .description("This process records its metrics elsewhere (`metrics_unavailable`).")
                    .content("application/json", error()),
            )
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .build();
        doc.paths.paths.insert("/metrics".into(), utoipa::openapi::PathItem::new(HttpMethod::Get, operation));
    }
}

/// What every `/v1` operation shares, added to each: the bearer key and the layers' answers.
struct V1Conventions;

/// A header of a shared answer: its name and what it says.
type HeaderDoc = Option<(&'static str, &'static str)>;

/// The reusable answers of the layers, by component name: status, description, extra header.
const LAYER_RESPONSES: [(&str, &str, &str, HeaderDoc); 4] = [
    (
        "401",
        "Unauthorized",
        "No API key, a malformed `Authorization` header, or a key that is unknown or revoked \
         (`missing_api_key`, `invalid_authorization`, `invalid_api_key`).",
        Some(("WWW-Authenticate", "`Bearer realm=\"nova\"`, with `error=\"invalid_token\"` for a bad key.")),
    ),
    (
        "403",
        "LoopbackOnly",
        "This server has no API key yet and answers loopback clients only (`loopback_only`).",
        None,
    ),
    (
        "429",
        "RateLimited",
        "The key's request rate is spent (`rate_limited`), or a quota of the tenant is used up.",
        Some(("Retry-After", "Whole seconds to wait, at least 1 (for `rate_limited`).")),
    ),
    ("500", "Internal", "An internal failure; the details are in the server's log (`internal`).", None),
];

/// The answers of the `Idempotency-Key` layer on `POST`.
const IDEMPOTENCY_RESPONSES: [(&str, &str, &str); 3] = [
    ("400", "BadRequest", "A malformed request (`invalid_idempotency_key`, and the operation's own)."),
    (
        "409",
        "Conflict",
        "The `Idempotency-Key` was used for another request (`idempotency_key_reused`) or its first request \
         still runs (`idempotency_request_in_flight`), or the operation's own conflict.",
    ),
    ("413", "PayloadTooLarge", "The body is larger than the server's upload limit (`payload_too_large`)."),
];

impl Modify for V1Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("nova_...")
                    .description(Some("An API key made by `nova keys create`."))
                    .build(),
            ),
        );
        for (_, name, description, header) in LAYER_RESPONSES {
            let mut response = ResponseBuilder::new().description(description).content("application/json", error());
            if let Some((header, about)) = header {
                response = response
                    .header(header, HeaderBuilder::new().schema(String::schema()).description(Some(about)).build());
            }
            components.responses.insert(name.to_string(), RefOr::T(response.build()));
        }
        for (_, name, description) in IDEMPOTENCY_RESPONSES {
            let response = ResponseBuilder::new().description(description).content("application/json", error());
            components.responses.insert(name.to_string(), RefOr::T(response.build()));
        }

        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for method in [HttpMethod::Get, HttpMethod::Post, HttpMethod::Put, HttpMethod::Delete] {
                let operation = match method {
                    HttpMethod::Get => item.get.as_mut(),
                    HttpMethod::Post => item.post.as_mut(),
                    HttpMethod::Put => item.put.as_mut(),
                    HttpMethod::Delete => item.delete.as_mut(),
                    _ => None,
                };
                let Some(operation) = operation else { continue };
                operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                for (status, name, _, _) in LAYER_RESPONSES {
                    add_response(operation, status, name);
                }
                if method == HttpMethod::Post {
                    add_idempotency(operation);
                }
            }
        }
    }
}

/// The schema of the error body, by reference.
fn error() -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build()
}

/// Adds the shared answer `name` for `status` unless the operation documents its own.
fn add_response(operation: &mut Operation, status: &str, name: &str) {
    operation.responses.responses.entry(status.to_string()).or_insert_with(|| Ref::from_response_name(name).into());
}

/// The `Idempotency-Key` header and the answers of its layer.
fn add_idempotency(operation: &mut Operation) {
    let header = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes a retried POST safe: the same key with the same request replays the first answer \
             (`Idempotent-Replayed: true`) for 24 hours. 1 to 255 visible ASCII characters.",
        ))
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[!-~]+$")),
        ))
        .build();
    operation.parameters.get_or_insert_with(Vec::new).push(header);
    for (status, name, _) in IDEMPOTENCY_RESPONSES {
        add_response(operation, status, name);
    }
}
