"""OpenAI's own Python SDK (`openai` from PyPI, pinned) against NOVA's /v1/responses.

Run by `tests/cli/responses.rs` with NOVA_BASE_URL (NOVA's /v1), NOVA_API_KEY, MODEL_URL (the scripted model
server, whose `POST /release` lets a held answer go on) and NOVA_OTHER_KEY (another tenant's key). The model
server answers, in order: a held stream ("Hel", "lo" | ", world", "!"), a held stream that is never let go
("Work" | ...), and a JSON answer.
"""

import os
import sys
import time
import urllib.request

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["NOVA_BASE_URL"], api_key=os.environ["NOVA_API_KEY"], max_retries=0)
other = OpenAI(base_url=os.environ["NOVA_BASE_URL"], api_key=os.environ["NOVA_OTHER_KEY"], max_retries=0)


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def release_the_model():
    urllib.request.urlopen(urllib.request.Request(os.environ["MODEL_URL"] + "/release", method="POST")).read()


def wait_for(response_id, statuses, what):
    deadline = time.monotonic() + 60
    while True:
        response = client.responses.retrieve(response_id)
        if response.status in statuses:
            return response
        if time.monotonic() > deadline:
            check(False, f"{what} (status {response.status})")
        time.sleep(0.05)


# 1. Created in the background and streamed; the stream dropped mid-answer and resumed after its last
#    sequence number, losing nothing.
stream = client.responses.create(model="any", input="Say hello", background=True, stream=True)
seen = []
response_id = None
for event in stream:
    seen.append(event)
    if event.type == "response.created":
        response_id = event.response.id
        check(event.response.status == "queued", "the created response is queued")
    if event.type == "response.output_text.delta":
        break
stream.close()
check(response_id and response_id.startswith("resp_"), "the response has an id")
check([e.type for e in seen[:3]] == ["response.created", "response.queued", "response.in_progress"],
      "the stream opens with created, queued, in_progress")
numbers = [e.sequence_number for e in seen]
check(numbers == list(range(len(numbers))), "events are numbered from 0 without gaps")
before = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
last = seen[-1].sequence_number
check(client.responses.retrieve(response_id).status == "in_progress", "the dropped stream's response runs on")

release_the_model()
resumed = list(client.responses.retrieve(response_id, stream=True, starting_after=last))
check(resumed[0].sequence_number == last + 1, "the resumed stream starts right after the last event seen")
after = "".join(e.delta for e in resumed if e.type == "response.output_text.delta")
check(before + after == "Hello, world!", f"no text lost across the reconnection ({before!r} + {after!r})")
check(resumed[-1].type == "response.completed", "the stream ends with response.completed")
check(resumed[-1].response.output_text == "Hello, world!", "the completed response holds the whole text")

# The SDK's own stream helper, which reads from the start and skips to `starting_after`.
with client.responses.stream(response_id=response_id, starting_after=last) as helper:
    final = helper.get_final_response()
check(final.output_text == "Hello, world!", "responses.stream(starting_after=...) gives the final response")

polled = client.responses.retrieve(response_id)
check(polled.status == "completed" and polled.output_text == "Hello, world!", "polling gives the completed response")
check(polled.usage.output_tokens > 0 and polled.usage.input_tokens > 0, "usage counts the model's tokens")

# 2. Another tenant's key sees no such response.
try:
    other.responses.retrieve(response_id)
    check(False, "another tenant reads the response")
except openai.NotFoundError:
    check(True, "another tenant's key gets 404")
try:
    other.responses.cancel(response_id)
    check(False, "another tenant cancels the response")
except openai.NotFoundError:
    check(True, "another tenant cannot cancel it")

# 3. Cancelled while the model writes: the response ends cancelled.
held = client.responses.create(model="any", input="Write at length", background=True)
check(held.status == "queued", "a background response answers at once, queued")
running = wait_for(held.id, {"in_progress"}, "the held response starts")
cancelled = client.responses.cancel(held.id)
check(cancelled.id == held.id, "cancel answers with the response")
ended = wait_for(held.id, {"cancelled", "failed", "completed"}, "the cancelled response ends")
check(ended.status == "cancelled", f"the response is cancelled (status {ended.status})")

# 4. A JSON answer checked against a schema, created without `background`: the request waits for it.
schema = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"],
          "additionalProperties": False}
answer = client.responses.create(
    model="any",
    input=[{"role": "user", "content": [{"type": "input_text", "text": "The total?"}]}],
    text={"format": {"type": "json_schema", "name": "total", "schema": schema, "strict": True}},
)
check(answer.status == "completed" and answer.output_text == '{"total": 12}', "a JSON answer waits and completes")

# 5. What NOVA cannot serve is refused with the error the SDK raises.
try:
    client.responses.create(model="any", input="x", tools=[{"type": "web_search"}])
    check(False, "tools accepted")
except openai.UnprocessableEntityError:
    check(True, "tools are refused with 422")

print("openai sdk: all checks passed", flush=True)
