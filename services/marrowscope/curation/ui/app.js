// Marrowscope curation workbench. It talks only to the curation HTTP API (/api/v1), the
// same API other UI clients use. Every decision gets a client decision id, goes to an outbox
// in localStorage first, and is shown as saved only once the service acknowledged it; the
// outbox is retried with backoff and re-sent after a reload (the ids make retries harmless).

const $ = (selector, root = document) => root.querySelector(selector);
const view = $("#view");
const session = { me: null, taxonomies: new Map(), history: [], keyHandler: null, paceTimer: null };

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, { method = "GET", body } = {}) {
  const response = await fetch(path, {
    method, credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail
      : JSON.stringify((data && data.detail) || response.statusText);
    throw new ApiError(response.status, detail);
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    // Styles go through the CSSOM: the Content-Security-Policy refuses style attributes.
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function say(text) {
  const status = $("#status");
  status.textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { status.textContent = ""; }, 4000);
}

function newId() {
  return crypto.randomUUID ? crypto.randomUUID()
    : `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}-${Math.random().toString(16).slice(2)}`;
}

// --- the outbox: decisions not yet acknowledged ------------------------------------------
const listeners = new Set(); // (event, item, result) => void, for the page on screen

const outbox = {
  key() { return `ms_outbox_${session.me.name}`; },
  load() { return JSON.parse(localStorage.getItem(this.key()) || "[]"); },
  save(items) { localStorage.setItem(this.key(), JSON.stringify(items)); renderSync(); },
  add(items) { this.save([...this.load(), ...items]); flush(); },
  remove(ids) { const gone = new Set(ids); this.save(this.load().filter((i) => !gone.has(i.client_decision_id))); },
  pendingFor(taskId) { return this.load().find((i) => i.task_id === taskId) || null; },
};

const sync = { busy: false, timer: null, backoff: 1000, error: "" };

function renderSync() {
  if (!session.me) return;
  const pending = outbox.load().length;
  const badge = $("#sync");
  badge.dataset.state = sync.error ? "error" : pending ? "pending" : "idle";
  badge.textContent = sync.error ? `not saved: ${sync.error} (retrying)` : pending ? `saving ${pending}…` : "all saved";
}

async function flush() {
  if (sync.busy || !session.me) return;
  const items = outbox.load().slice(0, 200);
  if (!items.length) { renderSync(); return; }
  sync.busy = true;
  clearTimeout(sync.timer);
  sync.timer = null;
  let again = false;
  try {
    const reply = await api("/api/v1/decisions", {
      method: "POST",
      body: { decisions: items.map(({ client_decision_id, task_id, action, class_code }) =>
        ({ client_decision_id, task_id, action, class_code })) },
    });
    outbox.remove(reply.results.map((r) => r.client_decision_id));
    for (const result of reply.results) {
      const item = items.find((i) => i.client_decision_id === result.client_decision_id);
      if (!result.ok) say(`Not saved: ${result.detail}`);
      listeners.forEach((fn) => fn(result.ok ? "saved" : "failed", item, result));
    }
    sync.error = "";
    sync.backoff = 1000;
    again = outbox.load().length > 0;
    refreshPace();
  } catch (error) {
    if (error.status === 401) { sync.error = "signed out"; showSignIn(); }
    else {
      sync.error = error.status ? `server said ${error.status}` : "offline";
      sync.timer = setTimeout(flush, sync.backoff);
      sync.backoff = Math.min(sync.backoff * 2, 15000);
    }
  } finally {
    sync.busy = false;
    renderSync();
    if (again) flush();
  }
}
window.addEventListener("online", flush);

/** Record a decision (outbox first) and remember it for undo. */
function decide(task, action, classCode = "") {
  const item = { client_decision_id: newId(), task_id: task.id, action, class_code: classCode,
                 cell_id: task.cell_id, queued_at: Date.now() };
  session.history.push(item);
  outbox.add([item]);
  return item;
}

function decideMany(tasks, action) {
  const items = tasks.map((task) => ({ client_decision_id: newId(), task_id: task.id, action,
                                        class_code: "", cell_id: task.cell_id, queued_at: Date.now() }));
  session.history.push(...items);
  outbox.add(items);
  return items;
}

/** Wait until no outbox request is in flight (its answer decides whether an item was stored). */
async function syncIdle() {
  while (sync.busy) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** Take a decision back: drop it if it never reached the service, else ask the service to
 *  undo it. Waits for a request in flight first, so an item is never both dropped and stored. */
async function takeBack(item) {
  await syncIdle();
  const at = session.history.findIndex((h) => h.client_decision_id === item.client_decision_id);
  if (at >= 0) session.history.splice(at, 1);
  if (outbox.load().some((i) => i.client_decision_id === item.client_decision_id)) {
    outbox.remove([item.client_decision_id]);
  } else {
    try {
      await api(`/api/v1/decisions/${encodeURIComponent(item.client_decision_id)}/undo`,
                { method: "POST", body: { reason: "undo in workbench" } });
    } catch (error) {
      if (at >= 0) session.history.push(item);
      say(`Undo failed: ${error.message}`);
      return false;
    }
  }
  refreshPace();
  return true;
}

/** Undo the newest decision of this session. */
async function undoLast() {
  const item = session.history[session.history.length - 1];
  if (!item) { say("Nothing to undo"); return null; }
  if (!(await takeBack(item))) return null;
  say("Undone");
  return item;
}

// --- ids in API paths ----------------------------------------------------------------------
// Queue (campaign) ids are UUIDs as the server writes them. An id from the URL fragment is
// checked before it goes into a request, and every path segment is encoded.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

class BadLink extends Error {}

/** The id from the URL fragment, URL-encoded for an API path; BadLink if it is not a UUID. */
function queueId(id) {
  if (typeof id !== "string" || !UUID.test(id)) throw new BadLink(`This link does not name a queue (${String(id).slice(0, 40)}).`);
  return encodeURIComponent(id.toLowerCase());
}

const seg = encodeURIComponent;

// --- session and chrome --------------------------------------------------------------------
async function refreshPace() {
  try {
    const me = await api("/api/v1/me");
    $("#pace").textContent = `${me.pace.per_minute}/min · ${me.pace.last_60_min} in the last hour`;
  } catch { /* the next call will say it */ }
}

function setKeys(handler) {
  if (session.keyHandler) document.removeEventListener("keydown", session.keyHandler);
  session.keyHandler = handler;
  if (handler) document.addEventListener("keydown", handler);
}

function inField(event) {
  return ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName) || event.metaKey || event.ctrlKey || event.altKey;
}

document.addEventListener("keydown", (event) => {
  if (event.key === "?" && !inField(event)) { $("#help").showModal(); event.preventDefault(); }
});

function showSignIn(message = "") {
  setKeys(null);
  listeners.clear();
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#who").textContent = "";
  const error = el("p", { class: "error", role: "alert", text: message });
  const input = el("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const form = el("form", { class: "card signin", "aria-labelledby": "signin-title",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api("/api/v1/session", { method: "POST", body: { token: input.value.trim() } });
        await start();
      } catch (e) { error.textContent = e.status === 401 ? "Unknown token: ask an admin for yours." : e.message; }
    } },
    el("h1", { id: "signin-title", text: "Sign in" }),
    el("label", { for: "token", text: "Your access token" }), input,
    el("button", { class: "primary", type: "submit", text: "Sign in" }), error);
  view.replaceChildren(form);
  input.focus();
}

$("#signout").addEventListener("click", async () => {
  await api("/api/v1/session", { method: "DELETE" }).catch(() => null);
  session.me = null;
  showSignIn("Signed out.");
});

async function taxonomy(name) {
  if (!session.taxonomies.has(name)) session.taxonomies.set(name, await api(`/api/v1/taxonomies/${seg(name)}`));
  return session.taxonomies.get(name);
}

function palette(tax, onPick) {
  return el("div", { class: "palette", role: "group", "aria-label": "Classes" },
    tax.classes.map((c) => el("button", { type: "button", "data-code": c.code, title: c.name,
      "aria-keyshortcuts": c.hotkey, onclick: () => onPick(c.code) }, el("kbd", { text: c.hotkey }), c.code)));
}

function classByKey(tax, key) { return tax.classes.find((c) => c.hotkey === key.toLowerCase()) || null; }

// --- queues --------------------------------------------------------------------------------
async function queuesPage() {
  setKeys(null);
  listeners.clear();
  const { campaigns } = await api("/api/v1/campaigns");
  const rows = campaigns.map((c) => el("tr", {},
    el("td", {}, c.name), el("td", { text: c.method }), el("td", { text: c.state }),
    el("td", { class: "num", text: c.open_cst }), el("td", { class: "num", text: c.open_al }),
    el("td", { class: "num", text: c.decided }),
    el("td", {},
      el("a", { href: `#/cst/${seg(c.id)}`, "aria-disabled": c.open_cst ? "false" : "true" }, `Review CST (${c.open_cst})`), " · ",
      el("a", { href: `#/al/${seg(c.id)}` }, `Label AL (${c.open_al})`), " · ",
      el("a", { href: `#/progress/${seg(c.id)}` }, "Progress"))));
  view.replaceChildren(el("h1", { text: "Your queues" }),
    campaigns.length ? el("table", {}, el("thead", {}, el("tr", {},
      ["Campaign", "Method", "State"].map((t) => el("th", { text: t })),
      ["Open CST", "Open AL", "Decided"].map((t) => el("th", { class: "num", text: t })), el("th", { text: "Work" }))),
      el("tbody", {}, rows))
      : el("p", { text: "No campaign is assigned to you yet." }));
  view.focus();
}

async function progressPage(campaignId) {
  setKeys(null);
  const { rows } = await api(`/api/v1/campaigns/${queueId(campaignId)}/progress`);
  const body = rows.map((r) => {
    const total = r.open + r.claimed + r.decided;
    const done = total ? Math.round((100 * r.decided) / total) : 0;
    return el("tr", {}, el("td", { text: r.round_id.slice(0, 8) }), el("td", { text: r.kind }),
      el("td", { text: r.class_code || "—" }), el("td", { class: "num", text: r.open }),
      el("td", { class: "num", text: r.claimed }), el("td", { class: "num", text: r.decided }),
      el("td", {}, el("div", { class: "bar-fill", role: "img", "aria-label": `${done}% decided` },
        el("span", { style: { width: `${done}%` } }))));
  });
  view.replaceChildren(el("h1", { text: "Progress per round and class" }),
    el("p", {}, el("a", { href: "#/queues", text: "← queues" })),
    el("table", {}, el("thead", {}, el("tr", {}, ["Round", "Kind", "Class"].map((t) => el("th", { text: t })),
      ["Open", "Claimed", "Decided"].map((t) => el("th", { class: "num", text: t })), el("th", { text: "Done" }))),
      el("tbody", {}, body)));
}

// --- CST review: a page of cells the model put in one class --------------------------------
async function cstPage(campaignId) {
  const claim = await api(`/api/v1/campaigns/${queueId(campaignId)}/claims`, { method: "POST", body: { kind: "CST", limit: 50 } });
  const tax = await taxonomy(claim.taxonomy);
  if (!claim.tasks.length) {
    setKeys(null);
    view.replaceChildren(el("h1", { text: "CST review" }), el("p", { text: "No CST task is open in this campaign right now." }),
      el("a", { href: "#/queues", text: "← queues" }));
    return;
  }
  const proposed = tax.classes.find((c) => c.code === claim.proposed_class);
  const tiles = new Map(); // task id -> {task, node, decision, saved}
  let focus = 0;

  function paint(entry) {
    const decision = entry.decision;
    entry.node.dataset.state = decision ? decision.action : "open";
    $(".badge", entry.node).textContent = !decision ? "" : decision.action === "confirm" ? `✓ ${proposed.code}`
      : decision.action === "too_difficult" ? "✗ rejected" : `→ ${decision.class_code}`;
    const saved = $(".saved", entry.node);
    saved.dataset.saved = !decision ? "" : entry.saved ? "saved" : "pending";
    saved.textContent = !decision ? "" : entry.saved ? "saved" : "saving…";
    entry.node.setAttribute("aria-label", `cell ${[...tiles.values()].indexOf(entry) + 1}, ` +
      `${decision ? $(".badge", entry.node).textContent + (entry.saved ? ", saved" : ", not saved yet") : "not decided"}`);
  }

  const grid = el("div", { class: "grid", role: "grid", "aria-label": `cells predicted ${proposed.name}` });
  for (const task of claim.tasks) {
    const pending = outbox.pendingFor(task.id);
    const probability = task.top_classes.length ? task.top_classes[0].probability : 0;
    const node = el("div", { class: "tile", role: "gridcell", tabindex: "-1", "data-task": task.id },
      el("img", { src: `${task.image_url}?size=128`, alt: "", loading: "lazy", width: "128", height: "128" }),
      el("span", { class: "badge" }), el("span", { class: "saved" }),
      el("div", { class: "meta" }, el("span", { text: `${(probability * 100).toFixed(1)} %` }), el("span", { text: `r${task.round_number}` })));
    const entry = { task, node, decision: pending, saved: false };
    node.addEventListener("click", () => { focus = [...tiles.keys()].indexOf(task.id); moveFocus(0); });
    tiles.set(task.id, entry);
    grid.append(node);
    paint(entry);
  }
  const entries = () => [...tiles.values()];
  const undecided = () => entries().filter((e) => !e.decision);
  const counter = el("span", { "aria-live": "polite" });
  const confirmButton = el("button", { class: "primary", type: "button", onclick: () => confirmPage() });
  const nextButton = el("button", { type: "button", text: "Next page", onclick: () => cstPage(campaignId) });

  function updateCounts() {
    const left = undecided().length;
    const unsaved = entries().filter((e) => e.decision && !e.saved).length;
    counter.textContent = `${entries().length - left} of ${entries().length} decided, ${unsaved} not saved yet`;
    confirmButton.textContent = `Confirm the ${left} remaining as ${proposed.code} (Enter)`;
    confirmButton.disabled = left === 0;
    nextButton.disabled = left > 0 || unsaved > 0;
  }

  function moveFocus(delta) {
    const list = entries();
    focus = Math.max(0, Math.min(list.length - 1, focus + delta));
    list[focus].node.focus();
  }

  function columns() {
    const width = grid.getBoundingClientRect().width;
    return Math.max(1, Math.floor((width + 10) / 150));
  }

  async function apply(entry, action, classCode) {
    // A new answer for a decided cell (also one decided before a reload): the old one first.
    if (entry.decision && !(await takeBack(entry.decision))) return;
    entry.decision = decide(entry.task, action, classCode);
    entry.saved = false;
    paint(entry);
    updateCounts();
  }

  function confirmPage() {
    const open = undecided();
    if (!open.length) return;
    const items = decideMany(open.map((e) => e.task), "confirm");
    open.forEach((entry, i) => { entry.decision = items[i]; entry.saved = false; paint(entry); });
    updateCounts();
    say(`Confirmed ${open.length} cells as ${proposed.code}`);
  }

  listeners.clear();
  listeners.add((event, item) => {
    const entry = tiles.get(item.task_id);
    if (!entry || !entry.decision || entry.decision.client_decision_id !== item.client_decision_id) return;
    if (event === "saved") entry.saved = true;
    else entry.decision = null;
    paint(entry);
    updateCounts();
    if (!undecided().length && entries().every((e) => e.saved)) say("Page saved — Next page (n) or Enter on it");
  });

  setKeys(async (event) => {
    if (inField(event) || $("#help").open) return;
    const list = entries();
    const entry = list[focus];
    const key = event.key;
    if (key === "ArrowRight" || key === "l") moveFocus(1);
    else if (key === "ArrowLeft" || key === "h") moveFocus(-1);
    else if (key === "ArrowDown" || key === "j") moveFocus(columns());
    else if (key === "ArrowUp" || key === "k") moveFocus(-columns());
    else if (key === "Enter") { if (undecided().length) confirmPage(); else if (!nextButton.disabled) cstPage(campaignId); }
    else if (key === "n" && !nextButton.disabled) cstPage(campaignId);
    else if (key === "u") {
      const item = await undoLast();
      const undone = item && tiles.get(item.task_id);
      if (undone) { undone.decision = null; undone.saved = false; paint(undone); updateCounts(); }
    } else if (key === "x" || key === "0") { await apply(entry, "too_difficult", ""); moveFocus(1); }
    else {
      const picked = classByKey(tax, key);
      if (!picked) return;
      if (picked.code === proposed.code) await apply(entry, "confirm", "");
      else await apply(entry, "correct", picked.code);
      moveFocus(1);
    }
    event.preventDefault();
  });

  const heading = el("h1", { text: `CST review: predicted ${proposed.name} (${proposed.code})` });
  view.replaceChildren(heading,
    el("div", { class: "toolbar" }, confirmButton, nextButton, counter, el("a", { href: "#/queues", text: "← queues" })),
    el("p", { class: "hint", text: "Correct the exceptions first: focus a cell (arrows) and press its class key; x rejects, u undoes, ? shows every key. Then Enter confirms the rest of the page." }),
    palette(tax, (code) => { const e = entries()[focus]; apply(e, code === proposed.code ? "confirm" : "correct", code === proposed.code ? "" : code); }),
    grid);
  updateCounts();
  moveFocus(0);
}

// --- AL labelling: one cell at a time ------------------------------------------------------
async function alPage(campaignId) {
  const claim = await api(`/api/v1/campaigns/${queueId(campaignId)}/claims`, { method: "POST", body: { kind: "AL", limit: 20 } });
  const tax = await taxonomy(claim.taxonomy);
  const queue = claim.tasks.filter((t) => !outbox.pendingFor(t.id));
  const done = []; // tasks decided on this page, for undo
  let current = null;

  async function show() {
    current = queue.shift() || null;
    if (!current) {
      const more = await api(`/api/v1/campaigns/${queueId(campaignId)}/claims`, { method: "POST", body: { kind: "AL", limit: 20 } });
      queue.push(...more.tasks.filter((t) => !outbox.pendingFor(t.id) && !done.some((d) => d.id === t.id)));
      current = queue.shift() || null;
    }
    if (!current) {
      setKeys(null);
      view.replaceChildren(el("h1", { text: "AL labelling" }), el("p", { text: "No AL task is open in this campaign right now." }),
        el("a", { href: "#/queues", text: "← queues" }));
      return;
    }
    const top3 = current.top_classes.slice(0, 3);
    const guessKeys = ["a", "s", "d"];
    const refs = el("div", { "aria-label": "reference cells" });
    const choices = el("div", { class: "choices", role: "group", "aria-label": "the model's top guesses" },
      top3.map((g, i) => el("button", { type: "button", "aria-keyshortcuts": guessKeys[i], "data-code": g.class_code,
        onclick: () => answer("label", g.class_code) },
        el("kbd", { text: guessKeys[i] }), `${g.class_code} — ${(tax.classes.find((c) => c.code === g.class_code) || {}).name || ""} (${(g.probability * 100).toFixed(1)} %)`)),
      el("button", { type: "button", "aria-keyshortcuts": "0", onclick: () => answer("too_difficult", "") },
        el("kbd", { text: "0" }), "Too difficult"));
    view.replaceChildren(
      el("h1", { text: "AL labelling" }),
      el("div", { class: "toolbar" }, el("span", { text: `${queue.length} more claimed · round ${current.round_number}` }),
        el("a", { href: "#/queues", text: "← queues" })),
      el("div", { class: "al" },
        el("div", { class: "cell" }, el("img", { src: `${current.image_url}?size=320`, alt: "the cell to label", width: "320", height: "320" })),
        el("div", {}, choices, el("h2", { text: "All classes" }), palette(tax, (code) => answer("label", code)),
          el("h2", { text: "Confirmed cells of the top guesses" }), refs)));
    choices.querySelector("button").focus();
    api(`/api/v1/campaigns/${queueId(campaignId)}/references?classes=${seg(top3.map((g) => g.class_code).join(","))}`).then((r) => {
      refs.replaceChildren(...Object.entries(r.references).map(([code, urls]) => el("div", {},
        el("strong", { text: code }), el("div", { class: "refs" }, urls.map((u) => el("img", { src: `${u}?size=72`, alt: `confirmed ${code}`, loading: "lazy" }))))));
    }).catch(() => refs.replaceChildren(el("p", { text: "(no reference cells)" })));
  }

  function answer(action, code) {
    if (!current) return;
    decide(current, action, code);
    done.push(current);
    say(action === "too_difficult" ? "Marked too difficult" : `Labelled ${code}`);
    show();
  }

  listeners.clear();
  setKeys(async (event) => {
    if (inField(event) || $("#help").open || !current) return;
    const key = event.key;
    const guess = ["a", "s", "d"].indexOf(key);
    if (guess >= 0 && current.top_classes[guess]) answer("label", current.top_classes[guess].class_code);
    else if (key === "0" || key === "x") answer("too_difficult", "");
    else if (key === "u") {
      const item = await undoLast();
      if (item) {
        const task = done.find((t) => t.id === item.task_id);
        if (task) { done.splice(done.indexOf(task), 1); queue.unshift(current); queue.unshift(task); await show(); }
      }
    } else {
      const picked = classByKey(tax, key);
      if (!picked) return;
      answer("label", picked.code);
    }
    event.preventDefault();
  });
  await show();
}

// --- admin ---------------------------------------------------------------------------------
async function adminPage() {
  setKeys(null);
  listeners.clear();
  const { campaigns } = await api("/api/v1/admin/campaigns");
  const cards = campaigns.map((c) => {
    const rounds = (c.rounds || []).map((r) => el("tr", {},
      el("td", { class: "num", text: r.number }), el("td", { text: String(r.state).replace("ROUND_STATE_", "").toLowerCase() }),
      ["teacherCount", "sampled", "cstCandidates", "alCandidates", "decided", "added"].map((k) => el("td", { class: "num", text: r[k] ?? 0 })),
      el("td", { class: "num", text: r.testAccuracy ? Number(r.testAccuracy).toFixed(3) : "—" }),
      el("td", { class: "num", text: r.testMeanRecall ? Number(r.testMeanRecall).toFixed(3) : "—" }),
      el("td", { text: r.modelVersion || "—" })));
    const state = String(c.state).replace("CAMPAIGN_STATE_", "").toLowerCase();
    const steer = (action) => async () => {
      try { await api(`/api/v1/admin/campaigns/${seg(c.id)}/${action}`, { method: "POST" }); say(`Campaign ${action}ed`); adminPage(); }
      catch (e) { say(e.message); }
    };
    const assignInput = el("input", { "aria-label": `expert to assign to ${c.name}`, placeholder: "expert name" });
    return el("section", { class: "card", "aria-label": c.name },
      el("h2", { text: `${c.name} — ${String(c.method).replace("CAMPAIGN_METHOD_", "")}, ${state}` }),
      el("div", { class: "toolbar" },
        el("button", { type: "button", text: "Start", disabled: state === "running" || state === "completed", onclick: steer("start") }),
        el("button", { type: "button", text: "Pause", disabled: state !== "running", onclick: steer("pause") }),
        el("span", { text: `pool ${c.poolSize ?? 0} · labelled ${c.labelledCount ?? 0} · experts: ${(c.assigned || []).join(", ") || "any"}` }),
        assignInput,
        el("button", { type: "button", text: "Assign", onclick: async () => {
          try { await api(`/api/v1/admin/campaigns/${seg(c.id)}/assignments`, { method: "POST", body: { user: assignInput.value.trim(), assigned: true } }); adminPage(); }
          catch (e) { say(e.message); } } })),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", { class: "num", text: "Round" }), el("th", { text: "State" }),
        ["Teacher", "Sampled", "CST", "AL", "Decided", "Added", "Accuracy", "Mean recall"].map((t) => el("th", { class: "num", text: t })),
        el("th", { text: "Model" }))), el("tbody", {}, rounds)),
      el("img", { src: `/api/v1/admin/campaigns/${seg(c.id)}/plot.png?t=${Date.now()}`, alt: `test metrics and teacher set per round for ${c.name}`, loading: "lazy", width: "800", height: "300" }));
  });
  const nameInput = el("input", { id: "new-user", "aria-label": "new user name", placeholder: "name" });
  const roleSelect = el("select", { "aria-label": "role" }, el("option", { value: "expert", text: "expert" }), el("option", { value: "admin", text: "admin" }));
  const tokenOut = el("p", { class: "token", role: "status" });
  view.replaceChildren(el("h1", { text: "Campaigns" }), ...cards,
    el("section", { class: "card", "aria-labelledby": "users-title" }, el("h2", { id: "users-title", text: "Add a user" }),
      el("div", { class: "toolbar" }, nameInput, roleSelect, el("button", { type: "button", text: "Create", onclick: async () => {
        try {
          const user = await api("/api/v1/admin/users", { method: "POST", body: { name: nameInput.value.trim(), role: roleSelect.value } });
          tokenOut.textContent = `Token for ${user.name} (shown once): ${user.token}`;
        } catch (e) { tokenOut.textContent = e.message; } } })), tokenOut),
    usersCard());
}

/** Disable or enable a user, or give them a new token (the old one stops working). */
function usersCard() {
  const nameInput = el("input", { id: "manage-user", "aria-label": "user name", placeholder: "name" });
  const out = el("p", { class: "token", role: "status" });
  const act = (action) => async () => {
    const name = nameInput.value.trim();
    if (!/^[A-Za-z0-9._@-]{1,80}$/.test(name)) { out.textContent = "Give a user name (letters, digits, . _ @ -)."; return; }
    try {
      const reply = await api(`/api/v1/admin/users/${seg(name)}/${action}`, { method: "POST" });
      out.textContent = action === "rotate-token" ? `New token for ${reply.name} (shown once; the old one no longer works): ${reply.token}`
        : `${reply.name} is ${reply.disabled ? "disabled; their sessions are ended" : "enabled"}.`;
    } catch (e) { out.textContent = e.message; }
  };
  return el("section", { class: "card", "aria-labelledby": "manage-title" }, el("h2", { id: "manage-title", text: "Manage a user" }),
    el("div", { class: "toolbar" }, nameInput,
      el("button", { type: "button", text: "Disable", onclick: act("disable") }),
      el("button", { type: "button", text: "Enable", onclick: act("enable") }),
      el("button", { type: "button", text: "New token", onclick: act("rotate-token") })), out);
}

// --- routing -------------------------------------------------------------------------------
async function route() {
  if (!session.me) return;
  const [, page, id] = (location.hash || "#/queues").split("/");
  try {
    if (page === "cst" && id) await cstPage(id);
    else if (page === "al" && id) await alPage(id);
    else if (page === "progress" && id) await progressPage(id);
    else if (page === "admin") await adminPage();
    else await queuesPage();
  } catch (error) {
    if (error instanceof BadLink) { setKeys(null); view.replaceChildren(el("p", { class: "error", role: "alert", text: error.message }),
      el("a", { href: "#/queues", text: "← queues" })); }
    else if (error.status === 401) showSignIn("Your session ended; sign in again.");
    else view.replaceChildren(el("p", { class: "error", role: "alert", text: `Could not load this page: ${error.message}` }),
      el("a", { href: "#/queues", text: "← queues" }));
  }
}
window.addEventListener("hashchange", route);

async function start() {
  try {
    session.me = await api("/api/v1/me");
  } catch (error) {
    if (error.status === 401) { showSignIn(); return; }
    view.replaceChildren(el("p", { class: "error", text: `The curation service is not reachable: ${error.message}` }));
    return;
  }
  $("#who").textContent = `${session.me.name} (${session.me.role})`;
  $("#nav").hidden = false;
  $("#nav-admin").hidden = session.me.role !== "admin";
  $("#signout").hidden = false;
  renderSync();
  refreshPace();
  if (!session.paceTimer) session.paceTimer = setInterval(refreshPace, 30000);
  flush(); // decisions left from before a reload or a lost connection
  await route();
}

start();
