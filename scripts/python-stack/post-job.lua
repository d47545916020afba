-- wrk's request for POST /v1/jobs, the same for both stacks: a no-op job.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"workflow": "noop", "input": {}}'
