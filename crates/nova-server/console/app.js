// NOVA's web console. Every call goes through the public /v1 API with the user's API key (kept in this
// browser tab's session storage only), so the console can do nothing the API would not allow. No framework:
// views are functions that build DOM nodes; live lists read the API's Server-Sent Events.

const KEY = "nova.apiKey";
const main = document.getElementById("main");
const LIVE = new Set(); // AbortControllers of the current view's streams and requests

// ---------- DOM ----------

/** An element: `h("a", {href: "#"}, "text", child)`. Text is always text, never HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  const item = h("p", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

/** An id as shown: its prefix and its last digits (`job_…29517d96`). Ids are UUIDv7, so their first digits are
 * a clock and the same for every id made within a minute; the last are random. */
const short = (id) => `${id.slice(0, id.indexOf("_") + 1)}…${id.slice(-8)}`;
const when = (t) => (t ? new Date(t).toLocaleString() : "");
function duration(job) {
  const start = job.started_at && Date.parse(job.started_at);
  const end = job.finished_at ? Date.parse(job.finished_at) : start && Date.now();
  if (!start) return "";
  const s = (end - start) / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/** A call to the API: the parsed JSON body (or the Response with `raw`), or an ApiError. */
async function api(path, { method = "GET", body, raw = false, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let code = "http_" + response.status, message = response.statusText;
    try {
      const err = (await response.json()).error;
      ({ code, message } = err);
    } catch (_) { /* not the API's error shape */ }
    // Without a key, the form is simply asked for; with one, it says why the key was refused.
    if (response.status === 401) signIn(init.headers.Authorization ? message : "");
    throw new ApiError(response.status, code, message);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

/** Reads a Server-Sent Events stream with the key in its header (EventSource cannot send one). */
async function stream(path, onEvent, { lastId } = {}) {
  const control = new AbortController();
  LIVE.add(control);
  let last = lastId;
  for (let delay = 500; !control.signal.aborted; delay = Math.min(delay * 2, 10000)) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (last) extra["Last-Event-ID"] = last;
      const response = await fetch(path, { headers: headers(extra), signal: control.signal });
      if (response.status === 204) return; // nothing more will come
      if (!response.ok) throw new Error(`stream ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      delay = 500;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = { event: "message", data: "" };
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const at = line.indexOf(":");
            const field = at < 0 ? line : line.slice(0, at);
            const text = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
            if (field === "data") event.data += (event.data ? "\n" : "") + text;
            else if (field === "event") event.event = text;
            else if (field === "id") event.id = text;
          }
          if (event.id) last = event.id;
          if (event.data) onEvent(event.event, JSON.parse(event.data));
        }
      }
      if (path.includes("/events")) return; // a job's stream ends with the job; a list's is reopened
    } catch (e) {
      if (control.signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

function leaveView() {
  for (const control of LIVE) control.abort();
  LIVE.clear();
}

// ---------- Sign in ----------

let signingIn = false;
function signIn(reason) {
  if (signingIn) return;
  signingIn = true;
  leaveView();
  sessionStorage.removeItem(KEY);
  document.getElementById("sign-out").hidden = true;
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const error = h("p", { class: "error", role: "alert" }, reason && reason !== "Unauthorized" ? reason : "");
  const form = h("form", { class: "card narrow", onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    try {
      signingIn = false;
      await api("/v1/jobs?limit=1");
      document.getElementById("sign-out").hidden = false;
      route();
    } catch (err) {
      error.textContent = err.message;
    }
  } },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API key (made with ", h("code", {}, "nova keys create"), "). It is kept in this tab only."),
    h("label", { for: "api-key" }, "API key"), input, error,
    h("button", { type: "submit" }, "Sign in"));
  show(form);
  input.focus();
}

document.getElementById("sign-out").addEventListener("click", () => signIn(""));

// ---------- Jobs ----------

const STATUSES = ["queued", "running", "retrying", "succeeded", "failed", "canceled"];
const WORKFLOWS = ["invoice.extract", "code.run", "task.run", "noop"];
const FINAL = new Set(["succeeded", "failed", "canceled"]);

function statusBadge(status) {
  return h("span", { class: `badge s-${status}` }, status);
}

function jobRow(job) {
  const doc = job.input && job.input.document_id;
  const review = job.review === "needed" ? h("a", { class: "badge s-review", href: `#/review/${job.id}` }, "review") :
    job.review === "reviewed" ? h("span", { class: "badge s-succeeded" }, "reviewed") : "";
  return h("tr", { "data-job": job.id, "data-status": job.status },
    h("td", {}, h("a", { href: `#/jobs/${job.id}` }, short(job.id))),
    h("td", {}, statusBadge(job.status), " ", review),
    h("td", {}, job.workflow),
    h("td", { class: "doc" }, doc ? (names.get(doc) || short(doc)) : ""),
    h("td", {}, duration(job)),
    h("td", {}, when(job.created_at)));
}

const names = new Map(); // document id → file name, as uploads and lists learn them

/** Learns the file names of the newest documents, in one request, for lists that show them. */
async function learnNames() {
  try {
    const page = await api("/v1/documents?limit=200");
    for (const d of page.data) if (d.filename) names.set(d.id, d.filename);
  } catch (_) { /* the ids stand in for the names */ }
}

async function jobsView(params, mine) {
  const status = params.get("status") || "", workflow = params.get("workflow") || "";
  const filters = h("form", { class: "filters", onchange: (e) => {
    const q = new URLSearchParams();
    const data = new FormData(e.currentTarget);
    for (const [k, v] of data) if (v) q.set(k, v);
    location.hash = "#/jobs" + (q.toString() ? "?" + q : "");
  } },
    h("label", {}, "Status ", h("select", { name: "status" }, h("option", { value: "" }, "any"),
      STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)))),
    h("label", {}, "Workflow ", h("select", { name: "workflow" }, h("option", { value: "" }, "any"),
      WORKFLOWS.map((w) => h("option", { value: w, selected: w === workflow }, w)))));
  const body = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older jobs");
  const table = h("table", { class: "jobs" },
    h("thead", {}, h("tr", {}, ["Job", "Status", "Workflow", "Document", "Duration", "Created"].map((t) => h("th", { scope: "col" }, t)))),
    body);
  show(h("h1", {}, "Jobs"), uploader(), h("section", { "aria-label": "Job list" }, filters, h("div", { class: "scroll" }, table), more));

  const query = new URLSearchParams({ limit: "50" });
  if (status) query.set("status", status);
  if (workflow) query.set("workflow", workflow);
  let cursor = null;
  const load = async () => {
    const q = new URLSearchParams(query);
    if (cursor) q.set("cursor", cursor);
    const page = await api(`/v1/jobs?${q}`);
    body.append(...page.data.map(jobRow));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", load);
  await load();
  if (mine !== routed) return; // another page was opened meanwhile
  // The newest page, live: each job as it changes; one that leaves the filter goes. (The stream sends the
  // page again first; the read above is what gives the cursor to older jobs.)
  stream(`/v1/jobs?${query}`, (kind, data) => {
    const old = body.querySelector(`[data-job="${data.id}"]`);
    if (kind === "left") {
      if (status || workflow) old?.remove();
      return;
    }
    const row = jobRow(data);
    if (old) old.replaceWith(row);
    else body.prepend(row);
  });
}

function uploader() {
  const list = h("ul", { class: "uploads", "aria-live": "polite" });
  const picker = h("input", { type: "file", id: "files", multiple: true, accept: ".pdf,.xml,application/pdf,text/xml" });
  // The keyboard reaches the file input itself (it opens the chooser); its label shows the focus.
  const zone = h("div", { class: "drop", "data-testid": "drop-zone" },
    h("p", {}, "Drop invoices here (PDF or XML, many at once), or "),
    picker, h("label", { for: "files", class: "button" }, "choose files"));
  const take = (files) => { for (const file of files) uploadOne(file, list); };
  picker.addEventListener("change", () => { take(picker.files); picker.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); take(e.dataTransfer.files); });
  return h("section", { "aria-label": "Upload" }, zone, list);
}

/** Uploads one file with its own progress bar, then queues its extraction. */
function uploadOne(file, list) {
  const bar = h("progress", { max: "100", value: "0", "aria-label": `Upload of ${file.name}` });
  const state = h("span", { class: "state" }, "uploading");
  list.prepend(h("li", {}, h("span", { class: "name" }, file.name), bar, state));
  const form = new FormData();
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/documents");
  const key = sessionStorage.getItem(KEY);
  if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total); };
  xhr.onerror = () => { state.textContent = "failed: the server could not be reached"; state.className = "state error"; };
  xhr.onload = async () => {
    let reply = {};
    try { reply = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status !== 200 && xhr.status !== 201) {
      state.textContent = `refused: ${reply.error ? reply.error.message : xhr.status}`;
      state.className = "state error";
      if (xhr.status === 401) signIn(reply.error && reply.error.message);
      return;
    }
    bar.value = 100;
    names.set(reply.id, file.name);
    const duplicate = xhr.status === 200;
    try {
      const job = await api("/v1/jobs", { method: "POST", body: { workflow: "invoice.extract", input: { document_id: reply.id } } });
      state.replaceChildren(duplicate ? h("span", { class: "badge s-duplicate" }, "duplicate") : "", " queued as ",
        h("a", { href: `#/jobs/${job.id}` }, short(job.id)));
    } catch (e) {
      state.textContent = `uploaded, not queued: ${e.message}`;
      state.className = "state error";
    }
  };
  xhr.send(form);
}

// ---------- One job ----------

async function jobView(id, mine) {
  let job = await api(`/v1/jobs/${id}`);
  const head = h("div");
  const log = h("ol", { class: "log", "aria-live": "polite" });
  const draw = () => {
    const buttons = [];
    if (!FINAL.has(job.status)) {
      buttons.push(h("button", { type: "button", class: "danger", onclick: async () => {
        try { await api(`/v1/jobs/${id}/cancel`, { method: "POST" }); toast("Cancel asked"); job = await api(`/v1/jobs/${id}`); draw(); }
        catch (e) { toast(e.message, "error"); }
      } }, "Cancel"));
    }
    if (FINAL.has(job.status)) {
      buttons.push(h("button", { type: "button", class: "secondary", onclick: async () => {
        try {
          const again = await api("/v1/jobs", { method: "POST", body: { workflow: job.workflow, input: job.input } });
          location.hash = `#/jobs/${again.id}`;
        } catch (e) { toast(e.message, "error"); }
      } }, "Run again"));
    }
    if (job.workflow === "invoice.extract" && job.status === "succeeded") {
      buttons.push(h("a", { class: "button", href: `#/review/${id}` }, job.review === "needed" ? "Review" : "Open invoice"));
    }
    head.replaceChildren(
      h("h1", {}, "Job ", h("code", {}, id)),
      h("dl", { class: "facts" },
        h("dt", {}, "Status"), h("dd", {}, statusBadge(job.status)),
        h("dt", {}, "Workflow"), h("dd", {}, job.workflow),
        h("dt", {}, "Created"), h("dd", {}, when(job.created_at)),
        h("dt", {}, "Duration"), h("dd", {}, duration(job)),
        job.error && [h("dt", {}, "Error"), h("dd", { class: "error" }, `${job.error.code}: ${job.error.message}`)]),
      h("div", { class: "actions" }, buttons),
      h("h2", {}, "Attempts"),
      job.attempts.length ? h("table", {}, h("thead", {}, h("tr", {}, ["#", "Started", "Finished", "Outcome", "Error"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, job.attempts.map((a) => h("tr", {}, h("td", {}, a.number), h("td", {}, when(a.started_at)), h("td", {}, when(a.finished_at)),
          h("td", {}, a.outcome || "running"), h("td", {}, a.error ? `${a.error.code}: ${a.error.message}` : "")))))
        : h("p", { class: "muted" }, "Not started yet."),
      h("h2", {}, "Input"), h("pre", {}, JSON.stringify(job.input, null, 2)));
  };
  if (mine !== routed) return; // another page was opened meanwhile
  draw();
  show(head, h("h2", {}, "Events"), log);
  stream(`/v1/jobs/${id}/events`, async (kind, event) => {
    const data = event.data ? " " + JSON.stringify(event.data) : "";
    log.append(h("li", {}, h("time", {}, when(event.at)), " ", h("strong", {}, kind), data));
    if (kind !== "progress") { job = await api(`/v1/jobs/${id}`); draw(); }
  });
}

// ---------- Review ----------

async function reviewQueue(params) {
  const which = params.get("state") === "reviewed" ? "reviewed" : "needed";
  const body = h("tbody");
  const chosen = new Set();
  const exportLink = (label, query) => h("button", { type: "button", class: "secondary", onclick: () => download(query) }, label);
  const selection = () => (chosen.size ? `jobs=${[...chosen].join(",")}` : `review=${which}`);
  show(
    h("h1", {}, "Review"),
    h("nav", { class: "tabs", "aria-label": "Review lists" },
      h("a", { href: "#/review", "aria-current": which === "needed" ? "page" : false }, "Waiting"),
      h("a", { href: "#/review?state=reviewed", "aria-current": which === "reviewed" ? "page" : false }, "Reviewed")),
    h("div", { class: "actions" },
      h("span", { class: "muted" }, "Export the selected invoices, or all in this list:"),
      exportLink("CSV, one row per invoice", () => `format=csv&${selection()}`),
      exportLink("CSV, one row per line", () => `format=csv&rows=line&${selection()}`),
      exportLink("JSON", () => `format=json&${selection()}`)),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["", "Job", "Document", "Finished"].map((t) => h("th", { scope: "col" }, t)))), body)));
  const page = await api(`/v1/jobs?review=${which}&limit=200`);
  if (!page.data.length) body.append(h("tr", {}, h("td", { colspan: "4", class: "muted" }, which === "needed" ? "Nothing waits for review." : "Nothing reviewed yet.")));
  for (const job of page.data) {
    const box = h("input", { type: "checkbox", "aria-label": `Select ${job.id}`, onchange: (e) => (e.target.checked ? chosen.add(job.id) : chosen.delete(job.id)) });
    const doc = job.input.document_id;
    body.append(h("tr", {}, h("td", {}, box), h("td", {}, h("a", { href: `#/review/${job.id}` }, short(job.id))),
      h("td", { class: "doc", "data-doc": doc }, names.get(doc) || doc), h("td", {}, when(job.finished_at))));
  }
  // File names, for the ones this tab has not seen: the newest documents' names, in one request.
  if ([...body.querySelectorAll("[data-doc]")].some((cell) => !names.has(cell.dataset.doc))) {
    await learnNames();
    for (const cell of body.querySelectorAll("[data-doc]")) {
      if (names.has(cell.dataset.doc)) cell.textContent = names.get(cell.dataset.doc);
    }
  }
}

async function download(query) {
  try {
    const response = await api(`/v1/exports/invoices?${query()}`, { raw: true });
    const name = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "")?.[1] || "invoices";
    const url = URL.createObjectURL(await response.blob());
    const a = h("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    toast(e.message, "error");
  }
}

// The fields of the form, in the schema's order: [path, label, kind].
const FIELDS = [
  ["invoice_number", "Invoice number", "text"], ["type_code", "Type code", "text"],
  ["issue_date", "Issue date", "date"], ["due_date", "Due date", "date"], ["currency", "Currency", "text"],
  ["seller.name", "Seller name", "text"], ["seller.vat_id", "Seller VAT id", "text"], ["seller.country", "Seller country", "text"],
  ["buyer.name", "Buyer name", "text"], ["buyer.vat_id", "Buyer VAT id", "text"],
  ["buyer_reference", "Buyer reference", "text"], ["order_reference", "Order reference", "text"], ["payment_iban", "IBAN", "text"],
  ["totals.line_total", "Sum of lines", "amount"], ["totals.tax_basis_total", "Total without VAT", "amount"],
  ["totals.tax_total", "VAT total", "amount"], ["totals.grand_total", "Total with VAT", "amount"],
  ["totals.due_payable", "Amount due", "amount"],
];
const LINE_FIELDS = [["name", "Item", "text"], ["quantity", "Qty", "amount"], ["unit", "Unit", "text"],
  ["net_price", "Net price", "amount"], ["tax_rate", "VAT %", "amount"], ["line_total", "Line total", "amount"]];

const get = (obj, path) => path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
function put(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] == null ? (o[k] = {}) : o[k];
  o[keys.at(-1)] = value;
}
/** An amount as typed ("1.234,56", "1 234.56", "-12,5") in the API's form ("1234.56", "-12.5"): the last of
 * `.` and `,` is the decimal mark, the other and spaces group thousands. Anything else is sent as typed, for
 * the API to refuse with its reason. */
function amount(text) {
  const t = text.replace(/[\s'\u00a0\u202f]/g, "");
  if (!/^-?[\d.,]+$/.test(t)) return text;
  const mark = Math.max(t.lastIndexOf("."), t.lastIndexOf(","));
  if (mark < 0) return t;
  return t.slice(0, mark).replace(/[.,]/g, "") + "." + t.slice(mark + 1);
}

const confidenceClass = (c) => (c === undefined ? "c-none" : c >= 0.8 ? "c-high" : c >= 0.6 ? "c-mid" : "c-low");

// How month names begin in English, German and French, accents dropped.
const MONTHS = [["jan"], ["feb", "fev"], ["mar"], ["apr", "avr"], ["may", "mai"], ["jun", "juin"], ["jul", "juil"],
  ["aug", "aou"], ["sep"], ["oct", "okt"], ["nov"], ["dec", "dez"]];
const bare = (t) => t.toLowerCase().normalize("NFKD").replace(/[^\p{L}\p{N}]/gu, "");
const digits = (t) => t.replace(/\D/g, "");

/** The words of a page that print `value`: an amount (with its decimals) or a numeric date by its digits in
 * one word, a date with a month name by its day, month and year in neighbouring words, text by its words in a
 * row. */
function find(words, value, kind) {
  value = (value || "").trim();
  if (!value || !words.length) return [];
  if (kind === "amount") {
    const want = digits(value);
    if (!want) return [];
    return words.filter((w) => digits(w.text) === want && /\d[.,]\d/.test(w.text));
  }
  if (kind === "date") {
    const [y, m, d] = value.split("-");
    if (!d) return [];
    const forms = [d + m + y, m + d + y, y + m + d, d + m + y.slice(2), m + d + y.slice(2)];
    const one = words.filter((w) => forms.includes(digits(w.text)) && /\d\D+\d/.test(w.text));
    if (one.length) return one;
    // "17 February 2026", "February 17, 2026", "17. Februar 2026"
    const month = MONTHS[Number(m) - 1] || [];
    for (let i = 0; i + 2 < words.length; i++) {
      const run = words.slice(i, i + 3), texts = run.map((w) => bare(w.text));
      const hasYear = texts.includes(y), hasDay = texts.some((t) => t === String(Number(d)) || t === d);
      const hasMonth = texts.some((t) => /^\p{L}{3,}$/u.test(t) && month.some((start) => t.startsWith(start)));
      if (hasYear && hasDay && hasMonth) return run;
    }
    return [];
  }
  const want = value.split(/\s+/).map(bare).filter(Boolean);
  if (!want.length) return [];
  for (let i = 0; i + want.length <= words.length; i++) {
    if (want.every((t, j) => bare(words[i + j].text) === t)) return words.slice(i, i + want.length);
  }
  // A value printed without its spaces (an IBAN in groups, or not).
  const joined = want.join("");
  for (let i = 0; i < words.length; i++) {
    let text = "";
    for (let j = i; j < words.length && text.length < joined.length; j++) {
      text += bare(words[j].text);
      if (text === joined) return words.slice(i, j + 1);
    }
  }
  return [];
}

async function invoiceView(id, mine) {
  const job = await api(`/v1/jobs/${id}`);
  const response = await api(`/v1/jobs/${id}/result`, { raw: true });
  const version = Number(response.headers.get("Nova-Result-Version") || "1");
  const invoice = await response.json();
  const docId = job.input.document_id;
  const doc = await api(`/v1/documents/${docId}`);
  if (doc.filename) names.set(docId, doc.filename);
  if (mine !== routed) return; // another page was opened meanwhile

  const pages = h("div", { class: "pages", "aria-label": "The document" });
  const sheets = []; // [{ n, marks, words }] for pointing at values
  let pointAgain = () => {}; // once the form is up: points at the focused field's value again
  if (doc.kind === "pdf") {
    for (let n = 1; n <= (doc.page_count || 0); n++) {
      const img = h("img", { alt: `Page ${n} of ${doc.filename || docId}`, width: "992", height: "1403" });
      const marks = h("div", { class: "marks", "aria-hidden": "true" });
      const sheet = { n, marks, words: null };
      sheets.push(sheet);
      pages.append(h("div", { class: "sheet" }, img, marks));
      api(`/v1/documents/${docId}/pages/${n}/words`).then((w) => { sheet.words = w.words; pointAgain(); }).catch(() => {});
      api(`/v1/documents/${docId}/pages/${n}`, { raw: true }).then(async (r) => { img.src = URL.createObjectURL(await r.blob()); })
        .catch((e) => img.replaceWith(h("p", { class: "error" }, `Page ${n}: ${e.message}`)));
    }
  } else {
    pages.append(h("p", { class: "muted" }, `This document is ${doc.kind}; it has no pages to show.`));
  }

  const reasons = new Map(((invoice.review && invoice.review.reasons) || []).map((r) => [r.field, r]));
  const confidence = invoice.confidence || {};
  const field = ([path, label, kind]) => {
    const value = get(invoice, path);
    const c = confidence[path];
    const reason = reasons.get(path);
    const input = h("input", { id: `f-${path}`, name: path, value: value ?? "", type: kind === "date" ? "date" : "text",
      inputmode: kind === "amount" ? "decimal" : false, "aria-describedby": reason ? `why-${path}` : false });
    return h("div", { class: `field ${confidenceClass(c)}${reason ? " flagged" : ""}` },
      h("label", { for: `f-${path}` }, label, c !== undefined ? h("span", { class: "conf" }, ` ${Math.round(c * 100)}%`) : ""),
      input, reason ? h("small", { id: `why-${path}` }, `${reason.why.replace("_", " ")}: ${reason.detail}`) : "");
  };
  // The fields the result marks for review first, then the rest.
  const flagged = FIELDS.filter((f) => reasons.has(f[0]));
  const rest = FIELDS.filter((f) => !reasons.has(f[0]));
  const linesBody = h("tbody");
  const lineRow = (line = {}) => h("tr", {},
    LINE_FIELDS.map(([k, label, kind]) => h("td", {}, h("input", { "aria-label": label, "data-line": k, "data-kind": kind, value: line[k] ?? "", inputmode: kind === "amount" ? "decimal" : false }))),
    h("td", {}, h("button", { type: "button", class: "link", "aria-label": "Remove line", onclick: (e) => e.target.closest("tr").remove() }, "Remove")));
  for (const line of invoice.lines || []) linesBody.append(lineRow(line));
  const otherReasons = [...reasons.values()].filter((r) => !FIELDS.some((f) => f[0] === r.field));

  const form = h("form", { class: "invoice", onsubmit: async (e) => {
    e.preventDefault();
    const corrected = structuredClone(invoice);
    for (const [path, , kind] of FIELDS) {
      const text = form.elements[path].value.trim();
      put(corrected, path, text === "" ? null : kind === "amount" ? amount(text) : text);
    }
    const old = invoice.lines || [];
    corrected.lines = [...linesBody.rows].map((tr, i) => {
      const line = { ...(old[i] || {}) };
      for (const input of tr.querySelectorAll("[data-line]")) {
        const v = input.value.trim(), kind = LINE_FIELDS.find((f) => f[0] === input.dataset.line)[2];
        line[input.dataset.line] = v === "" ? null : kind === "amount" ? amount(v) : v;
      }
      return line;
    });
    try {
      const saved = await api(`/v1/jobs/${id}/result/versions`, { method: "POST", body: { invoice: corrected, base_version: version } });
      toast(`Saved as version ${saved.version} (${saved.changes.length} field${saved.changes.length === 1 ? "" : "s"} changed)`);
      const next = (await api("/v1/jobs?review=needed&limit=1")).data[0];
      location.hash = next ? `#/review/${next.id}` : "#/review?state=reviewed";
    } catch (err) {
      toast(err.code === "version_conflict" ? "Someone saved this invoice meanwhile: reload to see their version." : err.message, "error");
    }
  } },
    h("h1", {}, doc.filename || "Invoice", " ", h("span", { class: "muted small" }, `version ${version}`)),
    job.review === "needed" ? h("p", { class: "notice" }, `${reasons.size} field${reasons.size === 1 ? "" : "s"} need a look; they come first.`) : "",
    otherReasons.length ? h("ul", { class: "notice" }, otherReasons.map((r) => h("li", {}, `${r.field}: ${r.why.replace("_", " ")}: ${r.detail}`))) : "",
    flagged.length ? h("fieldset", {}, h("legend", {}, "To check"), flagged.map(field)) : "",
    h("fieldset", {}, h("legend", {}, flagged.length ? "Other fields" : "Fields"), rest.map(field)),
    h("fieldset", {}, h("legend", {}, "Lines"),
      h("div", { class: "scroll" }, h("table", { class: "lines" }, h("thead", {}, h("tr", {}, LINE_FIELDS.map((f) => h("th", { scope: "col" }, f[1])), h("th", {}))), linesBody)),
      h("button", { type: "button", class: "secondary", onclick: () => linesBody.append(lineRow()) }, "Add line")),
    (invoice.tax_breakdown || []).length ? h("fieldset", {}, h("legend", {}, "VAT"), h("table", {},
      h("thead", {}, h("tr", {}, ["Category", "Rate %", "Basis", "VAT"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, invoice.tax_breakdown.map((t) => h("tr", {}, h("td", {}, t.category ?? ""), h("td", {}, t.rate ?? ""), h("td", {}, t.basis ?? ""), h("td", {}, t.amount ?? "")))))) : "",
    h("div", { class: "actions sticky" }, h("button", { type: "submit" }, "Save as reviewed"),
      h("a", { href: `#/jobs/${id}`, class: "button secondary" }, "Job")));
  show(h("div", { class: "review" }, pages, form));
  // A field in focus is pointed at on the page, where its value is printed in the text layer.
  const point = (e) => {
    const input = e.target;
    if (!(input instanceof HTMLInputElement) || input.type === "checkbox") return;
    const kind = input.dataset.kind || (FIELDS.find((f) => f[0] === input.name) || [])[2] || "text";
    let first = null;
    for (const sheet of sheets) {
      sheet.marks.replaceChildren();
      for (const w of find(sheet.words || [], input.value, kind)) {
        const mark = h("div", { class: "mark" });
        mark.style.cssText = `left:${w.x0 * 100}%;top:${w.y0 * 100}%;width:${(w.x1 - w.x0) * 100}%;height:${(w.y1 - w.y0) * 100}%`;
        sheet.marks.append(mark);
        first = first || mark;
      }
    }
    if (first) first.scrollIntoView({ block: "nearest", inline: "nearest" });
  };
  form.addEventListener("focusin", point);
  pointAgain = () => { if (form.contains(document.activeElement)) point({ target: document.activeElement }); };
  form.addEventListener("focusout", () => { for (const sheet of sheets) sheet.marks.replaceChildren(); });

  const first = form.querySelector(".flagged input") || form.querySelector("input");
  if (first) first.focus();
}

// ---------- Operations ----------

async function opsView() {
  const usage = h("tbody"), programs = h("tbody"), deliveries = h("tbody"), failures = h("tbody"), queue = h("tbody");
  show(h("h1", {}, "Operations"),
    h("h2", {}, "Queue"), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["Workflow", "Ready", "Scheduled", "Running", "Oldest ready waits"].map((t) => h("th", { scope: "col" }, t)))), queue)),
    h("h2", {}, "Recent failures"), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["Job", "Workflow", "Error", "Finished"].map((t) => h("th", { scope: "col" }, t)))), failures)),
    h("h2", {}, "Usage by day"), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["Day", "Workflow", "Runs", "Model calls", "Tokens in", "Tokens out", "Cost (USD)", "Sandbox s"].map((t) => h("th", { scope: "col" }, t)))), usage)),
    h("h2", {}, "Extraction programs"), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["Program", "Layout", "Runs", "State", ""].map((t) => h("th", { scope: "col" }, t)))), programs)),
    h("h2", {}, "Webhook deliveries"), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["Message", "Event", "Status", "Attempts", ""].map((t) => h("th", { scope: "col" }, t)))), deliveries)));
  const [failed, used, progs, sent, waiting] = await Promise.allSettled([
    api("/v1/jobs?status=failed&limit=20"), api("/v1/usage"), api("/v1/programs"), api("/v1/webhooks/deliveries?limit=20"), api("/v1/queue")]);
  if (waiting.value) for (const q of waiting.value.data) queue.append(h("tr", {}, h("td", {}, h("a", { href: `#/jobs?workflow=${q.workflow}` }, q.workflow)), h("td", {}, q.ready), h("td", {}, q.scheduled), h("td", {}, q.running), h("td", {}, q.ready ? `${q.oldest_ready_seconds.toFixed(1)} s` : "")));
  if (failed.value) for (const j of failed.value.data) failures.append(h("tr", {}, h("td", {}, h("a", { href: `#/jobs/${j.id}` }, short(j.id))), h("td", {}, j.workflow), h("td", {}, j.error ? `${j.error.code}: ${j.error.message}` : ""), h("td", {}, when(j.finished_at))));
  if (used.value) for (const d of used.value.data || []) usage.append(h("tr", {}, h("td", {}, d.day ?? ""), h("td", {}, d.workflow ?? ""), h("td", {}, d.runs), h("td", {}, d.model_calls), h("td", {}, d.input_tokens), h("td", {}, d.output_tokens), h("td", {}, d.cost), h("td", {}, (d.sandbox_wall_ms / 1000).toFixed(1))));
  if (progs.value) for (const p of progs.value.data || []) programs.append(h("tr", {}, h("td", {}, h("code", {}, short(p.id))), h("td", {}, p.layout_key), h("td", {}, `${p.successes} passed, ${p.failures} failed`), h("td", {}, p.status),
    h("td", {}, p.status === "active" ? h("button", { type: "button", class: "link", "aria-label": `Retire program ${short(p.id)}`, onclick: async (e) => { try { await api(`/v1/programs/${p.id}/retire`, { method: "POST" }); e.target.closest("tr").children[3].textContent = "retired"; e.target.remove(); } catch (err) { toast(err.message, "error"); } } }, "Retire") : "",
      h("button", { type: "button", class: "link danger", "aria-label": `Delete program ${short(p.id)}`, onclick: async (e) => { try { await api(`/v1/programs/${p.id}`, { method: "DELETE" }); e.target.closest("tr").remove(); } catch (err) { toast(err.message, "error"); } } }, "Delete"))));
  if (sent.value) for (const m of sent.value.data || []) deliveries.append(h("tr", {}, h("td", {}, h("code", {}, short(m.id))), h("td", {}, m.event_type), h("td", {}, m.status), h("td", {}, m.attempts),
    h("td", {}, h("button", { type: "button", class: "link", onclick: async () => { try { await api(`/v1/webhooks/deliveries/${m.id}/resend`, { method: "POST" }); toast("Queued again"); } catch (err) { toast(err.message, "error"); } } }, "Resend"))));
}

// ---------- Routing ----------

// Each route()'s number: a view whose page is no longer the latest one opened draws nothing when its
// requests come back (it would cover the page the person went on to).
let routed = 0;

async function route() {
  // Signed out, the sign-in form stays whatever link is followed; signing in then opens the page linked last.
  if (signingIn) return;
  leaveView();
  const mine = ++routed;
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const parts = (path || "/jobs").split("/").filter(Boolean);
  for (const a of document.querySelectorAll("[data-nav]")) a.toggleAttribute("aria-current", a.dataset.nav === parts[0]);
  try {
    if (parts[0] === "jobs" && parts[1]) await jobView(parts[1], mine);
    else if (parts[0] === "review" && parts[1]) await invoiceView(parts[1], mine);
    else if (parts[0] === "review") await reviewQueue(params);
    else if (parts[0] === "ops") await opsView();
    else await jobsView(params, mine);
  } catch (e) {
    if (mine !== routed) return;
    if (e.status !== 401) show(h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, e.message));
  }
  if (mine === routed) main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
// In with the key this tab holds, or straight in on a server without keys (loopback only).
api("/v1/jobs?limit=1").then(() => {
  document.getElementById("sign-out").hidden = !sessionStorage.getItem(KEY);
  route();
}).catch((e) => { if (e.status !== 401) show(h("p", { class: "error" }, e.message)); });
