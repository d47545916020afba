"""E2B's own SDKs against NOVA's E2B listener (run by crates/nova-cli/tests/cli/e2b.rs).

Environment: E2B_API_URL and E2B_SANDBOX_URL (the listener), E2B_API_KEY (tenant A's NOVA key), NOVA_OTHER_KEY
(tenant B's). Every check raises on failure; the last line printed is `e2b sdk: all checks passed`.
"""
import os
import time

import httpx
from e2b import CommandExitException, NotFoundException, SandboxException
from e2b import Sandbox as BaseSandbox
from e2b_code_interpreter import Sandbox

other_key = os.environ["NOVA_OTHER_KEY"]
sandbox_url = os.environ["E2B_SANDBOX_URL"]


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok:", what, flush=True)


sbx = Sandbox.create(timeout=120, metadata={"suite": "e2b"})
check(sbx.sandbox_id.startswith("sbx_"), "Sandbox.create() gives a NOVA sandbox")

# State survives from one run to the next.
sbx.run_code("x = 41")
execution = sbx.run_code("x + 1")
check(execution.text == "42", f"run_code('x + 1') after run_code('x = 41') is 42 (got {execution.text!r})")

# Output is streamed line by line through on_stdout.
lines = []
execution = sbx.run_code("print('hello')\nprint('world')", on_stdout=lambda m: lines.append(m.line))
check(lines == ["hello\n", "world\n"], f"print streamed through on_stdout (got {lines!r})")
check(execution.logs.stdout == ["hello\n", "world\n"], "the execution keeps its stdout")

# An exception comes with its name, value and traceback.
execution = sbx.run_code("def f():\n    return 1 / 0\nf()")
error = execution.error
check(error is not None and error.name == "ZeroDivisionError", f"the exception's name (got {error!r})")
check(error.value == "division by zero" and "in f" in error.traceback, "the exception's value and traceback")

# A file written through the SDK is read by a command.
sbx.files.write("/home/user/data.csv", "a,b\n1,2\n")
result = sbx.commands.run("cat /home/user/data.csv")
check(result.stdout == "a,b\n1,2\n" and result.exit_code == 0, f"files.write then commands.run('cat ...') (got {result!r})")
check(sbx.files.read("data.csv") == "a,b\n1,2\n", "files.read of a relative path reads the home directory")
check(sbx.run_code("open('/home/user/data.csv').read().count('\\n')").text == "2", "the code sees the file too")
try:
    sbx.commands.run("exit 3")
    raise AssertionError("a failing command raises")
except CommandExitException as e:
    check(e.exit_code == 3, "a command's exit code")

# A background process is listed, then killed.
handle = sbx.commands.run("sleep 300", background=True, timeout=0)
listed = [p.pid for p in sbx.commands.list()]
check(handle.pid in listed, f"the background process is listed (pid {handle.pid} in {listed})")
check(sbx.commands.kill(handle.pid), "commands.kill")
try:
    handle.wait()
    raise AssertionError("a killed command's wait raises")
except CommandExitException:
    pass
deadline = time.monotonic() + 10
while handle.pid in [p.pid for p in sbx.commands.list()]:
    if time.monotonic() > deadline:
        raise AssertionError("the killed process is still listed")
    time.sleep(0.02)
check(True, "the killed process is gone from the list")

# Timeout and listing.
sbx.set_timeout(600)
info = sbx.get_info()
check((info.end_at - info.started_at).total_seconds() > 500, "set_timeout moves the sandbox's end")
check(any(s.sandbox_id == sbx.sandbox_id for s in Sandbox.list().next_items()), "Sandbox.list shows the sandbox")

# Another tenant sees nothing of it and cannot touch it.
check(Sandbox.list(api_key=other_key).next_items() == [], "another tenant's list is empty")
try:
    Sandbox.connect(sbx.sandbox_id, api_key=other_key)
    raise AssertionError("another tenant connected")
except SandboxException:
    check(True, "another tenant cannot connect")
check(BaseSandbox.kill(sbx.sandbox_id, api_key=other_key) is False, "another tenant cannot kill it")
try:
    BaseSandbox.set_timeout(sbx.sandbox_id, 5, api_key=other_key)
    raise AssertionError("another tenant changed its timeout")
except NotFoundException:
    check(True, "another tenant cannot change its timeout")
forged = httpx.post(
    f"{sandbox_url}/execute",
    json={"code": "x"},
    headers={"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": "not-the-token", "E2b-Sandbox-Port": "49999"},
)
check(forged.status_code in (401, 502) and '"type"' not in forged.text, f"a forged token runs nothing ({forged.status_code})")
check(sbx.run_code("x").text == "41", "the sandbox is untouched")

# Kill: the sandbox is gone.
check(sbx.kill(), "kill")
check(not sbx.is_running(), "a killed sandbox is not running")
check(BaseSandbox.kill(sbx.sandbox_id) is False, "killing it again finds nothing")
print("e2b sdk: all checks passed", flush=True)
