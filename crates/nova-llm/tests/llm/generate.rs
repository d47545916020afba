//! Streamed generation (`llm.generate`) against the scripted model server: the text handed over as it comes,
//! retries only before the first text, and answers checked against a JSON Schema with repair rounds.

use std::sync::Mutex;

use nova_llm::{generate, ChatClient, ChatOptions, GenerateError, GenerateEvent, LlmError, Message};
use serde_json::json;

use crate::common::*;

fn pieces(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

/// Runs a generation, returning its outcome, the events it reported and its usage.
async fn run(
    server: &ModelServer,
    options: ChatOptions,
) -> (Result<nova_llm::Generation, GenerateError>, Vec<GenerateEvent>, nova_llm::Usage) {
    let client = ChatClient::new(server.config()).unwrap();
    let events = Mutex::new(Vec::new());
    let mut usage = nova_llm::Usage::default();
    let on_event = |event| events.lock().unwrap().push(event);
    let outcome = generate(&client, vec![Message::user("Write")], &options, &mut usage, &on_event).await;
    (outcome, events.into_inner().unwrap(), usage)
}

#[tokio::test]
async fn text_is_handed_over_piece_by_piece_and_the_whole_is_returned() {
    let server = ModelServer::start().await;
    server.script.push(Reply::Stream(pieces(&["Once ", "upon ", "a time"])));
    let options = ChatOptions { max_tokens: Some(50), temperature: Some(0.7), json_schema: None };
    let (outcome, events, usage) = run(&server, options).await;
    let generation = outcome.unwrap();
    assert_eq!(generation.text, "Once upon a time");
    assert_eq!(generation.finish_reason, "stop");
    let texts: Vec<GenerateEvent> =
        ["Once ", "upon ", "a time"].iter().map(|t| GenerateEvent::Text(t.to_string())).collect();
    assert_eq!(events, texts);
    assert_eq!((usage.model_calls, usage.input_tokens, usage.output_tokens), (1, INPUT_TOKENS, OUTPUT_TOKENS));
    let request = server.script.requests.lock().unwrap()[0].clone();
    assert_eq!(request["stream"], true);
    assert_eq!(request["stream_options"]["include_usage"], true);
    assert_eq!(request["max_tokens"], 50);
    assert!(request.get("response_format").is_none());
}

#[tokio::test]
async fn a_failure_before_the_first_text_is_retried() {
    let server = ModelServer::start().await;
    server.script.push(Reply::Status(503, None));
    server.script.push(Reply::Stream(pieces(&["ok"])));
    let (outcome, _, usage) = run(&server, ChatOptions::default()).await;
    assert_eq!(outcome.unwrap().text, "ok");
    assert_eq!(server.script.calls(), 2);
    assert_eq!(usage.requests, 2);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let server = ModelServer::start().await;
    server.script.push(Reply::Status(400, None));
    let (outcome, events, _) = run(&server, ChatOptions::default()).await;
    let error = outcome.unwrap_err();
    assert!(matches!(error, GenerateError::Model(LlmError::Status { status: 400, .. })), "{error:?}");
    assert!(!error.is_transient());
    assert!(events.is_empty());
}

#[tokio::test]
async fn a_stream_ended_by_an_error_is_retried_only_when_the_error_is_the_provider_s() {
    // A request the provider refuses (here, too long) would be refused again: one call, and the message.
    let server = ModelServer::start().await;
    let refused = json!({"message": "context_length_exceeded: too long", "type": "invalid_request_error"});
    server.script.push(Reply::StreamError(Vec::new(), refused));
    server.script.push(Reply::Stream(pieces(&["never read"])));
    let (outcome, _, _) = run(&server, ChatOptions::default()).await;
    let error = outcome.unwrap_err();
    assert!(
        matches!(&error, GenerateError::Model(LlmError::StreamError { retryable: false, message }) if message.contains("too long")),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(server.script.calls(), 1);

    // An overloaded server is worth another try.
    let server = ModelServer::start().await;
    server.script.push(Reply::StreamError(Vec::new(), json!({"message": "busy", "type": "server_error"})));
    server.script.push(Reply::Stream(pieces(&["ok"])));
    let (outcome, _, _) = run(&server, ChatOptions::default()).await;
    assert_eq!(outcome.unwrap().text, "ok");
    assert_eq!(server.script.calls(), 2);
}

#[tokio::test]
async fn an_answer_that_breaks_the_schema_goes_back_with_the_errors() {
    let server = ModelServer::start().await;
    server.script.push(Reply::Stream(pieces(&["{\"total\": ", "\"twelve\"}"])));
    server.script.push(Reply::Stream(pieces(&["```json\n{\"total\": 12}\n```"])));
    let schema = json!({"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]});
    let options = ChatOptions { json_schema: Some(schema.clone()), ..ChatOptions::default() };
    let (outcome, events, usage) = run(&server, options).await;
    let generation = outcome.unwrap();
    assert_eq!(generation.json, Some(json!({"total": 12})));
    assert_eq!(generation.rounds, 2);
    assert_eq!(usage.model_calls, 2);
    let restart = events.iter().position(|e| matches!(e, GenerateEvent::Restart { round: 2, .. })).expect("a restart");
    assert_eq!(restart, 2, "the restart comes between the two answers: {events:?}");
    let requests = server.script.requests.lock().unwrap().clone();
    assert_eq!(requests[0]["response_format"]["json_schema"]["schema"], schema);
    assert!(server.script.last_user_message(1).contains("/total"), "{}", server.script.last_user_message(1));
}

#[tokio::test]
async fn a_model_that_never_meets_the_schema_fails_after_the_repair_rounds() {
    let server = ModelServer::start().await;
    let rounds = 1 + server.config().max_repair_rounds;
    for _ in 0..rounds {
        server.script.push(Reply::Stream(pieces(&["not json"])));
    }
    let options = ChatOptions { json_schema: Some(json!({"type": "object"})), ..ChatOptions::default() };
    let (outcome, _, usage) = run(&server, options).await;
    let error = outcome.unwrap_err();
    assert!(matches!(&error, GenerateError::SchemaNotMet { rounds: r, .. } if *r == rounds), "{error:?}");
    assert_eq!(error.code(), "schema_not_met");
    assert_eq!(usage.model_calls, rounds);
}
