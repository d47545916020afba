"""NOVA's web console in a real browser (Playwright for Python driving the system's Chromium).

Run by crates/nova-cli/tests/cli/console.rs against a live `nova serve` whose store has two tenants' keys:

    python3 console_test.py BASE_URL SCREENSHOT_DIR PDF PDF PDF

with NOVA_CONSOLE_KEY_A and NOVA_CONSOLE_KEY_B in the environment (tenant a's and tenant b's keys), and
NOVA_CHROMIUM naming the browser (default /usr/bin/chromium). It signs in, uploads the PDFs by drag and drop,
follows the live job list, corrects and saves one invoice, exports the reviewed ones, cancels a queued job,
checks that tenant b sees none of tenant a's work, and screenshots every page at 1280 and 390 pixels wide.
Any error the page throws or logs, any API error the flow did not expect, a control without a label or a page
wider than a phone's screen fails it. Waits are Playwright's (`expect`, `wait_for_*`), never fixed sleeps.
"""

import base64
import csv
import datetime
import io
import json
import os
import pathlib
import re
import sys
import time
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE, SHOTS, *PDFS = sys.argv[1:]
KEY_A = os.environ["NOVA_CONSOLE_KEY_A"]
KEY_B = os.environ["NOVA_CONSOLE_KEY_B"]
CHROMIUM = os.environ.get("NOVA_CHROMIUM", "/usr/bin/chromium")
WIDE, PHONE = 1280, 390
NEW_SELLER = "Konsole Prüfung GmbH"
NEW_LINE_TOTAL = "1987.65"
# As a person in a decimal-comma locale types it; saved as NEW_LINE_TOTAL.
TYPED_LINE_TOTAL = "1.987,65"

expect.set_options(timeout=20_000)


def call(method, path, key, body=None):
    """A call to the API outside the browser: (status, headers, parsed JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    text = raw.decode()
    is_json = (headers.get("Content-Type") or "").startswith("application/json")
    return status, headers, json.loads(text) if is_json and text else text


def step(name):
    print(f"console test: {name}", flush=True)


class Watch:
    """What the page must never do: throw, log an error, or meet an API error the flow did not expect."""

    def __init__(self, page):
        self.problems = []
        # Statuses the flow asks for: 401 while signed out, 404 when tenant b asks for tenant a's job.
        self.expected = {401}
        self.streams = []
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("console", self.console)
        page.on("response", self.response)
        page.on("request", self.request)

    def console(self, message):
        # Chromium logs each failed request as an error; `response` below judges those by their status.
        if message.type in ("error", "assert") and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console {message.type}: {message.text} ({message.location.get('url')})")
        elif message.type == "warning":
            print(f"console warning: {message.text}", flush=True)

    def response(self, response):
        if response.status >= 400 and response.status not in self.expected:
            self.problems.append(f"{response.request.method} {response.url}: HTTP {response.status}")

    def request(self, request):
        if "text/event-stream" in (request.headers.get("accept") or ""):
            self.streams.append(request.url)

    def check(self, where):
        assert not self.problems, f"{where}: the page went wrong:\n  " + "\n  ".join(self.problems)


# In the page: the controls a person cannot name (no label, aria-label or text), and whether the page is wider
# than the window (a layout that breaks on a phone).
UNLABELLED = """() => {
  const named = (el) => {
    if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.title) return true;
    if (el.labels && [...el.labels].some((l) => l.textContent.trim())) return true;
    if (el.tagName === 'BUTTON') return el.textContent.trim() !== '';
    return false;
  };
  const controls = 'input, select, textarea, button';
  // Anything else the keyboard stops at needs a role to say what it is, and a name.
  const focusable = [...document.querySelectorAll('[tabindex]')].filter((el) => el.tabIndex >= 0 && !el.matches(controls + ', a[href]'));
  return [...document.querySelectorAll(controls)].filter((el) => el.type !== 'hidden' && !named(el))
    .concat(focusable.filter((el) => !el.getAttribute('role') || !named(el)))
    .map((el) => el.outerHTML.slice(0, 120));
}"""
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter((el) => {
    if (el.parentElement.closest('.scroll, pre, .log, .pages, #toast')) return false; // scrolls within its box
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.right > width + 1;
  });
  return { page: document.documentElement.scrollWidth, width,
           wide: wide.slice(0, 5).map((el) => el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' ' + Math.round(el.getBoundingClientRect().right)) };
}"""


def check_page(page, name):
    """Every control labelled; at phone width, nothing wider than the screen."""
    unlabelled = page.evaluate(UNLABELLED)
    assert not unlabelled, f"{name}: controls without a label: {unlabelled}"
    overflow = page.evaluate(OVERFLOW)
    assert overflow["page"] <= overflow["width"] and not overflow["wide"], (
        f"{name} at {page.viewport_size['width']} px: the page is {overflow['page']} px wide; "
        f"past the edge: {overflow['wide']}"
    )


def shoot(page, name):
    path = os.path.join(SHOTS, f"{name}-{page.viewport_size['width']}.png")
    page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}", flush=True)


def go(page, hash_):
    page.evaluate("(h) => { location.hash = h; }", hash_)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        context = browser.new_context(viewport={"width": WIDE, "height": 900}, accept_downloads=True)
        page = context.new_page()
        watch = Watch(page)
        try:
            run(page, watch)
        finally:
            context.close()
            browser.close()
    watch.check("at the end")
    print(f"console test: passed in {time.monotonic() - started:.1f} s", flush=True)


def run(page, watch):
    # a. The console asks for a key; tenant a's opens it.
    step("sign in")
    page.goto(BASE + "/")
    key_input = page.get_by_label("API key")
    expect(key_input).to_be_visible()
    expect(page.locator("#sign-out")).to_be_hidden()
    # A first visit is asked for a key, not told of an error.
    expect(page.get_by_role("alert")).to_be_empty()
    for width in (WIDE, PHONE):
        page.set_viewport_size({"width": width, "height": 900})
        check_page(page, "sign-in")
        shoot(page, "sign-in")
    page.set_viewport_size({"width": WIDE, "height": 900})
    key_input.fill("nova_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).not_to_be_empty()
    page.get_by_label("API key").fill(KEY_A)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#sign-out")).to_be_visible()
    jobs_table = page.locator("table.jobs tbody")
    expect(jobs_table.locator("tr")).to_have_count(0)
    expect(page.get_by_role("button", name="Older jobs")).to_be_hidden()
    # The keyboard reaches the file chooser, and its focus shows.
    page.locator("#files").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "files"
    outline = page.evaluate("() => getComputedStyle(document.querySelector('label[for=files]')).outlineStyle")
    assert outline == "solid", f"the focused file chooser does not show its focus (outline {outline})"
    watch.check("sign in")

    # b. Three PDFs dropped at once: a progress bar and a job each, and the live list shows them succeed.
    step("drop three PDFs")
    page.evaluate("() => { window.__sameDocument = true; }")
    # When the first succeeded row appears, by the page's clock, from the moment of the drop.
    page.evaluate("""() => {
      const seen = () => document.querySelector('table.jobs tr[data-status=succeeded]');
      new MutationObserver((_, observer) => {
        if (seen() && window.__dropAt !== undefined) { window.__firstSucceeded = performance.now(); observer.disconnect(); }
      }).observe(document.getElementById('main'), { subtree: true, childList: true, attributes: true });
    }""")
    files = [{"name": os.path.basename(f), "b64": base64.b64encode(pathlib.Path(f).read_bytes()).decode()} for f in PDFS]
    transfer = page.evaluate_handle("""(files) => {
      const transfer = new DataTransfer();
      for (const f of files) {
        const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], f.name, { type: 'application/pdf' }));
      }
      return transfer;
    }""", files)
    zone = page.locator("[data-testid=drop-zone]")
    zone.dispatch_event("dragover", {"dataTransfer": transfer})
    expect(zone).to_have_class(re.compile(r"\bover\b"))
    page.evaluate("() => { window.__dropAt = performance.now(); }")
    zone.dispatch_event("drop", {"dataTransfer": transfer})
    expect(zone).not_to_have_class(re.compile(r"\bover\b"))

    uploads = page.locator(".uploads li")
    expect(uploads).to_have_count(len(PDFS))
    jobs = {}
    for f in files:
        item = uploads.filter(has_text=f["name"])
        expect(item.locator("progress")).to_have_attribute("aria-label", f"Upload of {f['name']}")
        link = item.get_by_role("link", name=re.compile(r"^job_"))
        expect(link).to_be_visible()
        expect(item.locator("progress")).to_have_js_property("value", 100)
        jobs[f["name"]] = link.get_attribute("href").removeprefix("#/jobs/")
    for name, job in jobs.items():
        row = jobs_table.locator(f'tr[data-job="{job}"]')
        expect(row).to_have_attribute("data-status", "succeeded")
        expect(row).to_contain_text("invoice.extract")
        expect(row).to_contain_text(name[:20])
    shown = [jobs_table.locator(f'tr[data-job="{job}"] td:first-child a').inner_text() for job in jobs.values()]
    assert len(set(shown)) == len(shown), f"the list shows the jobs' ids alike: {shown}"
    page.wait_for_function("() => window.__firstSucceeded !== undefined")
    elapsed = page.evaluate("() => window.__firstSucceeded - window.__dropAt")
    print(f"console test: drop to first succeeded row: {elapsed:.0f} ms", flush=True)
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
    assert any("/v1/jobs?" in url for url in watch.streams), f"the job list opened no event stream: {watch.streams}"
    watch.check("upload")

    # c. One invoice: its page images, its fields; the seller and a line corrected and saved as version 2.
    step("review one invoice")
    name = os.path.basename(PDFS[0])
    job = jobs[name]
    go(page, f"#/review/{job}")
    expect(page.get_by_role("heading", name=re.compile(re.escape(name)))).to_be_visible()
    images = page.locator(".pages img")
    expect(images.first).to_have_attribute("src", re.compile(r"^blob:"))
    page.wait_for_function("""() => {
      const all = [...document.querySelectorAll('.pages img')];
      return all.length > 0 && all.every((i) => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0);
    }""")
    seller = page.locator('[id="f-seller.name"]')
    expect(seller).not_to_have_value("")
    expect(page.get_by_label("Invoice number")).not_to_have_value("")
    # The field in focus is pointed at on the page: the invoice number where it is printed, in the top half.
    page.get_by_label("Invoice number").focus()
    mark = page.locator(".pages .mark").first
    expect(mark).to_be_visible()
    box, sheet = mark.bounding_box(), page.locator(".pages .sheet").first.bounding_box()
    assert sheet["y"] <= box["y"] < sheet["y"] + sheet["height"] / 2, (box, sheet)
    assert box["width"] > 0 and box["x"] >= sheet["x"], (box, sheet)
    line_total = page.locator(".lines tbody tr").first.get_by_label("Line total")
    expect(line_total).not_to_have_value("")
    seller.fill(NEW_SELLER)
    line_total.fill(TYPED_LINE_TOTAL)
    page.get_by_role("button", name="Save as reviewed").click()
    expect(page.locator("#toast")).to_contain_text("Saved as version 2")
    # On to the next invoice that waits for review, or to the reviewed list when none does.
    expect(page).not_to_have_url(re.compile(f"#/review/{job}$"))
    expect(page.locator("main h1")).not_to_have_text(re.compile(re.escape(name)))
    status, headers, result = call("GET", f"/v1/jobs/{job}/result", KEY_A)
    assert status == 200, (status, result)
    assert headers.get("Nova-Result-Version") == "2", headers.get("Nova-Result-Version")
    assert result["seller"]["name"] == NEW_SELLER, result["seller"]
    assert result["lines"][0]["line_total"] == NEW_LINE_TOTAL, result["lines"][0]
    watch.check("review")

    # d. The reviewed list's exports hold the corrections.
    step("export the reviewed invoices")
    go(page, "#/review?state=reviewed")
    expect(page.locator(f'a[href="#/review/{job}"]')).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("button", name="CSV, one row per invoice").click()
    download = info.value
    assert download.suggested_filename == "invoices.csv", download.suggested_filename
    rows = list(csv.DictReader(io.StringIO(download.path().read_text(encoding="utf-8"))))
    assert len(rows) == 1, rows
    assert NEW_SELLER in rows[0].values(), rows[0]
    with page.expect_download() as info:
        page.get_by_role("button", name="CSV, one row per line").click()
    download = info.value
    assert download.suggested_filename == "invoice-lines.csv", download.suggested_filename
    lines = list(csv.DictReader(io.StringIO(download.path().read_text(encoding="utf-8"))))
    assert lines and any(NEW_LINE_TOTAL in row.values() for row in lines), lines
    assert all(name in row.values() for row in lines), lines
    watch.check("export")

    # e. A job that waits an hour, canceled from its page.
    step("cancel a queued job")
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()
    status, _, queued = call("POST", "/v1/jobs", KEY_A, {"workflow": "noop", "input": {"sleep_ms": 1}, "run_at": later})
    assert status == 202, (status, queued)
    go(page, f"#/jobs/{queued['id']}")
    facts = page.locator("dl.facts")
    expect(facts.locator(".badge")).to_have_text("queued")
    for width in (WIDE, PHONE):
        page.set_viewport_size({"width": width, "height": 900})
        check_page(page, "job page")
        shoot(page, "job")
    page.set_viewport_size({"width": WIDE, "height": 900})
    page.get_by_role("button", name="Cancel").click()
    expect(facts.locator(".badge")).to_have_text("canceled")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    assert call("GET", f"/v1/jobs/{queued['id']}", KEY_A)[2]["status"] == "canceled"
    watch.check("cancel")

    # A page left before its data came back stays left: the job page's answer, held until the review list is
    # drawn, must not cover it.
    go(page, "#/ops")
    expect(page.get_by_role("heading", name="Operations")).to_be_visible()
    held = []
    # Which answers the page has read, each noted as its JSON is handed over, before the code awaiting it runs
    # on (in the same turn: the check below, a later turn, sees what that code did).
    page.evaluate("""() => {
      window.__read = [];
      const json = (window.__json = Response.prototype.json);
      Response.prototype.json = function () { return json.call(this).then((v) => { window.__read.push(this.url); return v; }); };
    }""")
    page.route(re.compile(rf"/v1/jobs/{queued['id']}$"), lambda route: held.append(route))
    with page.expect_request(re.compile(rf"/v1/jobs/{queued['id']}$")):
        go(page, f"#/jobs/{queued['id']}")
    go(page, "#/review?state=reviewed")
    expect(page.locator(f'a[href="#/review/{job}"]')).to_be_visible()
    assert len(held) == 1, held
    held[0].continue_()
    page.wait_for_function("(id) => window.__read.some((url) => url.endsWith('/v1/jobs/' + id))", arg=queued["id"])
    expect(page.get_by_role("heading", name="Review")).to_be_visible()
    expect(page.locator("dl.facts")).to_have_count(0)
    page.unroute(re.compile(rf"/v1/jobs/{queued['id']}$"))
    page.evaluate("() => { Response.prototype.json = window.__json; }")

    # The list's filters: the canceled job alone, then everything again.
    go(page, "#/jobs")
    page.get_by_label("Status").select_option("canceled")
    expect(page).to_have_url(re.compile(r"#/jobs\?status=canceled$"))
    expect(jobs_table.locator("tr")).to_have_count(1)
    expect(jobs_table.locator("tr")).to_have_attribute("data-job", queued["id"])
    page.get_by_label("Status").select_option("")
    expect(jobs_table.locator("tr")).to_have_count(len(PDFS) + 1)

    # g. Every page, wide and on a phone (the job page is above, the sign-in page at the start).
    step("screenshots")
    # The waiting list and an invoice that waits (the one read without its XML asks for a look today; the
    # corrected one stands in if none waits).
    needed = call("GET", "/v1/jobs?review=needed", KEY_A)[2]["data"]
    waiting = needed[0]["id"] if needed else job
    queue_ready = (lambda: expect(page.locator("td[data-doc]")).to_have_count(len(needed))) if needed else (
        lambda: expect(page.get_by_text("Nothing waits for review.")).to_be_visible())
    pages = [
        ("jobs", "#/jobs", lambda: expect(jobs_table.locator("tr")).to_have_count(len(PDFS) + 1)),
        ("review-queue", "#/review", queue_ready),
        ("invoice", f"#/review/{waiting}", lambda: page.wait_for_function(
            "() => { const i = document.querySelector('.pages img'); return i && i.complete && i.naturalWidth > 0; }")),
        ("ops", "#/ops", lambda: expect(page.get_by_role("heading", name="Webhook deliveries")).to_be_visible()),
    ]
    for width in (WIDE, PHONE):
        page.set_viewport_size({"width": width, "height": 900})
        for shot, hash_, ready in pages:
            go(page, "#/none")  # a hash change each time, so that the view is drawn anew at this width
            go(page, hash_)
            ready()
            check_page(page, shot)
            shoot(page, shot)
    page.set_viewport_size({"width": WIDE, "height": 900})
    watch.check("screenshots")

    # f. Tenant b sees none of tenant a's work.
    step("tenant b")
    status, _, own = call("POST", "/v1/jobs", KEY_B, {"workflow": "noop", "input": {"sleep_ms": 1}})
    assert status == 202, (status, own)
    page.locator("#sign-out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.locator("#sign-out")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0, "signing out left the key in the tab"
    # Signed out, a link followed keeps the form, and signing in opens that link's page.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    expect(page).to_have_url(re.compile(r"#/jobs$"))
    expect(page.get_by_label("API key")).to_be_visible()
    page.get_by_label("API key").fill(KEY_B)
    page.get_by_role("button", name="Sign in").click()
    expect(jobs_table.locator(f'tr[data-job="{own["id"]}"]')).to_be_visible()
    expect(jobs_table.locator("tr")).to_have_count(1)
    for a_job in [*jobs.values(), queued["id"]]:
        expect(page.locator(f'[data-job="{a_job}"]')).to_have_count(0)
    go(page, "#/review?state=reviewed")
    expect(page.get_by_text("Nothing reviewed yet.")).to_be_visible()
    go(page, "#/review")
    expect(page.get_by_text("Nothing waits for review.")).to_be_visible()
    watch.expected.add(404)
    go(page, f"#/review/{job}")
    expect(page.get_by_role("heading", name="Something went wrong")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text(f"no job with id `{job}`")
    expect(page.locator(".pages")).to_have_count(0)
    expect(page.locator('[id="f-seller.name"]')).to_have_count(0)
    expect(page.get_by_text(NEW_SELLER)).to_have_count(0)
    watch.expected.discard(404)
    watch.check("tenant b")


if __name__ == "__main__":
    main()
