// The audit log viewer: reads GET /history/ and GET /history/state/ beside this page.
// Every recorded value is put in the page as text (textContent), never as markup.
"use strict";

const API = new URL("../", document.baseURI);
const TOKEN = "auditlog.token";
const FILTERS = ["user_id", "ip_address", "action_type", "content_type", "object_id",
  "transaction_id", "since", "until", "page_size"];
const main = document.getElementById("main");
const signOut = document.getElementById("sign-out");
const bearer = document.body.dataset.auth === "bearer";

class SignInNeeded extends Error {}

// --- building the page ------------------------------------------------------------------------

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
  main.focus({ preventScroll: true });
}

function text(value) {
  if (value === null || value === undefined) return "null";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function link(label, hash, attributes) {
  return el("a", { href: hash, ...attributes }, label);
}

function hashFor(params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) query.set(name, value);
  const encoded = query.toString();
  return encoded ? `#/?${encoded}` : "#/";
}

function when(timestamp) {
  const moment = new Date(timestamp);
  return el("time", { datetime: timestamp, title: timestamp }, moment.toLocaleString());
}

// --- reading the log --------------------------------------------------------------------------

async function api(path, params) {
  const url = new URL(path, API);
  for (const [name, value] of Object.entries(params || {})) if (value) url.searchParams.set(name, value);
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN);
  if (bearer) {
    if (!token) throw new SignInNeeded("");
    headers.Authorization = `Bearer ${token}`;
  }
  const response = await fetch(url, { headers, credentials: "same-origin" });
  if (response.status === 401) {
    if (bearer) sessionStorage.removeItem(TOKEN);
    throw new SignInNeeded(bearer ? "That token was not accepted." : "You are not signed in.");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || `The server answered ${response.status}.`);
  return body;
}

/** The entry `id` about one object: read along its history page by page until found (its
 * transaction, when known, narrows that to one request). */
async function findEntry(contentType, objectId, id, transactionId) {
  const filters = { content_type: contentType, object_id: objectId, transaction_id: transactionId };
  let page = await api("", { ...filters, page_size: 1000 });
  for (;;) {
    const entry = page.results.find((each) => each.id === id);
    if (entry) return entry;
    if (!page.next_cursor) return null;
    page = await api("", { ...filters, page_size: 1000, cursor: page.next_cursor });
  }
}

function entryHash(entry) {
  const where = `#/entry/${entry.content_type}/${encodeURIComponent(entry.object_id)}/${entry.id}`;
  return entry.transaction_id ? `${where}?transaction_id=${encodeURIComponent(entry.transaction_id)}` : where;
}

function objectHash(contentType, objectId, query) {
  const where = `#/object/${contentType}/${encodeURIComponent(objectId)}`;
  const search = new URLSearchParams(query || {}).toString();
  return search ? `${where}?${search}` : where;
}

// --- views ------------------------------------------------------------------------------------

function signInForm(problem) {
  signOut.hidden = true;
  const input = el("input", { id: "token", type: "password", name: "token", autocomplete: "off",
    required: true });
  const form = el("form", { class: "sign-in", on: { submit: (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, input.value.trim());
    route();
  } } },
  el("h1", { text: "Sign in" }),
  problem ? el("p", { class: "error", role: "alert", text: problem }) : null,
  el("label", { for: "token" }, "Bearer token"), input,
  el("button", { type: "submit" }, "Sign in"));
  show(form);
  input.focus();
}

function filtersForm(params) {
  const labelled = (name, label, control) =>
    el("div", { class: "field" }, el("label", { for: `f-${name}` }, label), control);
  const field = (name, label, type) => labelled(name, label,
    el("input", { id: `f-${name}`, name, type: type || "text", value: params[name] || "" }));
  const action = el("select", { id: "f-action_type", name: "action_type" },
    ["", "create", "update", "delete", "access"].map((value) =>
      el("option", { value, selected: (params.action_type || "") === value }, value || "any")));
  const size = el("select", { id: "f-page_size", name: "page_size" }, ["20", "50", "100"].map((value) =>
    el("option", { value, selected: (params.page_size || "20") === value }, value)));
  const form = el("form", { class: "filters", role: "search", on: { submit: (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    for (const name of ["since", "until"]) if (data[name]) data[name] = new Date(data[name]).toISOString();
    if (data.page_size === "20") delete data.page_size;
    location.hash = hashFor(data);
  } } },
  field("user_id", "User"), field("ip_address", "Address"),
  labelled("action_type", "Action", action), field("content_type", "Model"),
  field("object_id", "Object"), field("transaction_id", "Transaction"),
  field("since", "Since", "datetime-local"), field("until", "Until", "datetime-local"),
  labelled("page_size", "Per page", size),
  el("div", { class: "actions" }, el("button", { type: "submit" }, "Filter"),
    link("Clear", "#/")));
  for (const name of ["since", "until"]) {
    if (params[name]) {
      const local = new Date(params[name]);
      const input = form.elements[name];
      input.value = new Date(local.getTime() - local.getTimezoneOffset() * 60000)
        .toISOString().slice(0, 16);
    }
  }
  return form;
}

function entryRow(entry) {
  return el("tr", {},
    el("td", { "data-label": "When" }, when(entry.timestamp)),
    el("td", { "data-label": "Action" }, entry.action_type),
    el("td", { "data-label": "Model" }, entry.model_label || String(entry.content_type)),
    el("td", { "data-label": "Object" },
      link(entry.object_id, objectHash(entry.content_type, entry.object_id))),
    el("td", { "data-label": "User" },
      entry.user_id ? link(entry.user_id, hashFor({ user_id: entry.user_id })) : el("span", { class: "muted" }, "system")),
    el("td", { "data-label": "Address" },
      entry.ip_address ? link(entry.ip_address, hashFor({ ip_address: entry.ip_address })) : ""),
    el("td", { "data-label": "Changed" }, (entry.changed_fields || []).join(", ")),
    el("td", {}, link("View", entryHash(entry),
      { "aria-label": `View entry ${entry.id}` })));
}

function entriesTable(results) {
  if (!results.length) return el("p", { class: "muted", text: "No entries." });
  return el("table", { class: "entries" },
    el("thead", {}, el("tr", {}, ["When", "Action", "Model", "Object", "User", "Address",
      "Changed", ""].map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, results.map(entryRow)));
}

function pager(page, params) {
  const nav = el("nav", { class: "pages", "aria-label": "Pages" });
  if ("count" in page) {
    nav.append(el("span", { class: "muted" }, `${page.count} entries, page ${page.current_page} of ${page.total_pages}`));
    const first = Math.max(1, page.current_page - 3);
    const last = Math.min(page.total_pages, page.current_page + 3);
    if (page.previous_page) nav.append(link("Previous", hashFor({ ...params, page: page.previous_page, cursor: "" })));
    for (let number = first; number <= last; number += 1) {
      nav.append(link(String(number), hashFor({ ...params, page: number, cursor: "" }),
        { "aria-current": number === page.current_page ? "page" : null }));
    }
    if (page.next_page) nav.append(link("Next", hashFor({ ...params, page: page.next_page, cursor: "" })));
    if (page.next_cursor) nav.append(link("Read on (fast)", hashFor({ ...params, page: "", cursor: page.next_cursor })));
  } else {
    if (page.previous_cursor) nav.append(link("Newer", hashFor({ ...params, cursor: page.previous_cursor })));
    if (page.next_cursor) nav.append(link("Older", hashFor({ ...params, cursor: page.next_cursor })));
    nav.append(link("Back to page 1", hashFor({ ...params, cursor: "" })));
  }
  return nav;
}

async function listView(params) {
  const query = {};
  for (const name of [...FILTERS, "page", "cursor"]) if (params[name]) query[name] = params[name];
  const page = await api("", query);
  // Open on a wide screen or when filtering; on a phone the entries come first.
  const active = FILTERS.filter((name) => params[name]).length;
  const filters = el("details", { class: "filters",
    open: active > 0 || matchMedia("(min-width: 40rem)").matches },
  el("summary", {}, active ? `Filters (${active} in use)` : "Filters"), filtersForm(params));
  show(el("h1", { text: "Audit log" }), filters, entriesTable(page.results), pager(page, params));
}

function stateTable(before, after, changed) {
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])];
  const marked = new Set(changed || []);
  return el("table", { class: "states" },
    el("thead", {}, el("tr", {}, ["Attribute", "Before", "After", ""].map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, keys.map((key) => el("tr", { class: marked.has(key) ? "changed" : null },
      el("th", { scope: "row" }, key),
      el("td", { class: "value", "data-label": "Before" }, before ? text(before[key]) : ""),
      el("td", { class: "value", "data-label": "After" }, after ? text(after[key]) : ""),
      el("td", { class: "mark" }, marked.has(key) ? "changed" : "")))));
}

function stateAtStep(state) {
  return el("table", { class: "states" },
    el("thead", {}, el("tr", {}, ["Attribute", "Value"].map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, Object.keys(state).map((key) => el("tr", {},
      el("th", { scope: "row" }, key),
      el("td", { class: "value" }, text(state[key]))))));
}

async function entryView(contentType, objectId, id, params) {
  const entry = await findEntry(contentType, objectId, id, params.transaction_id);
  if (!entry) throw new Error(`No entry ${id} for this object.`);
  const fact = (name, ...value) => [el("dt", {}, name), el("dd", {}, ...value)];
  show(
    el("h1", {}, `${entry.action_type} of ${entry.model_label || "object"} ${entry.object_id}`),
    el("dl", { class: "facts card" },
      fact("When", when(entry.timestamp)),
      fact("Entry", entry.id),
      fact("Model", entry.model || String(entry.content_type)),
      fact("Object", link(entry.object_id, objectHash(contentType, objectId))),
      fact("User", entry.user_id ? link(entry.user_id, hashFor({ user_id: entry.user_id })) : "system"),
      fact("Address", entry.ip_address || ""),
      fact("User agent", entry.user_agent || ""),
      fact("Transaction", entry.transaction_id
        ? link(entry.transaction_id, hashFor({ transaction_id: entry.transaction_id })) : ""),
      fact("Extra", entry.extra ? text(entry.extra) : "")),
    el("h2", { text: "State" }),
    stateTable(entry.before_state, entry.after_state, entry.changed_fields));
}

const STEPS = 100;

async function objectView(contentType, objectId, params) {
  const filters = { content_type: contentType, object_id: objectId };
  const page = await api("", { ...filters, page_size: STEPS, cursor: params.cursor });
  const entries = page.results;
  const label = entries.length ? entries[0].model_label : "Object";
  const items = entries.map((entry) => {
    const holder = el("div");
    const button = el("button", { type: "button", on: { click: async () => {
      const found = await api("state/", { ...filters, at: entry.id });
      holder.replaceChildren(found.state ? stateAtStep(found.state)
        : el("p", { class: "muted", text: "The object did not exist after this step." }));
      button.hidden = true;
    } } }, "State after this step");
    return el("li", {},
      when(entry.timestamp), " ", el("strong", {}, entry.action_type), " by ",
      entry.user_id || "system",
      entry.changed_fields ? ` (${entry.changed_fields.join(", ")})` : "", " ",
      link("View", entryHash(entry)), " ", button, holder);
  });
  const nav = el("nav", { class: "pages", "aria-label": "Steps" });
  if (page.previous_cursor) nav.append(link("Newer steps", objectHash(contentType, objectId, { cursor: page.previous_cursor })));
  if (page.next_cursor) nav.append(link("Older steps", objectHash(contentType, objectId, { cursor: page.next_cursor })));
  if (params.cursor) nav.append(link("Newest steps", objectHash(contentType, objectId)));
  show(el("h1", {}, `${label} ${objectId}: timeline`),
    el("p", { class: "muted", text: "Newest step first." }),
    entries.length ? el("ol", { class: "timeline" }, items) : el("p", { class: "muted", text: "No entries." }),
    nav);
}

// --- routing ----------------------------------------------------------------------------------

async function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = (path || "/").split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  signOut.hidden = !bearer;
  try {
    if (parts[0] === "entry" && parts.length === 4) await entryView(parts[1], parts[2], parts[3], params);
    else if (parts[0] === "object" && parts.length === 3) await objectView(parts[1], parts[2], params);
    else await listView(params);
  } catch (error) {
    if (error instanceof SignInNeeded && bearer) signInForm(error.message);
    else show(el("p", { class: "error", role: "alert" }, error.message), link("Back to the list", "#/"));
  }
}

signOut.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN);
  signInForm("");
});
window.addEventListener("hashchange", route);
route();
