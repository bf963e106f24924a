// The audit log viewer: reads GET /history/ and GET /history/state/ beside this page.
// Every recorded value is put in the page as text (textContent), never as markup, and every
// link is a "#..." address built here: nothing recorded becomes a URL.
"use strict";

const LIST = new URL(document.body.dataset.list || "../", document.baseURI);
const STATE = new URL("../state/", document.baseURI);
const TOKEN = "auditlog.token";
const FILTERS = ["user_id", "ip_address", "action_type", "content_type", "object_id",
  "transaction_id", "since", "until", "page_size"];
const STEPS = 100; // timeline steps per page
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

/** Replace the view: its heading becomes the tab's title and takes the focus. */
function show(...nodes) {
  main.replaceChildren(...nodes);
  const heading = main.querySelector("h1");
  document.title = heading ? `${heading.textContent} - Audit log` : "Audit log";
  window.scrollTo(0, 0);
  (heading || main).focus({ preventScroll: true });
}

/** A recorded value: a string as it is, anything else as JSON; null and a missing key differ. */
function value(state, key) {
  if (!state || !Object.prototype.hasOwnProperty.call(state, key)) {
    return el("span", { class: "absent", title: "not recorded" }, "-");
  }
  const recorded = state[key];
  if (recorded === null) return el("span", { class: "null" }, "null");
  return typeof recorded === "string" ? recorded : JSON.stringify(recorded);
}

function link(label, hash, attributes) {
  return el("a", { href: hash, ...attributes }, label);
}

function address(route, params) {
  const query = new URLSearchParams();
  for (const [name, given] of Object.entries(params)) if (given) query.set(name, given);
  const encoded = query.toString();
  return encoded ? `#/${route}?${encoded}` : `#/${route}`;
}

const listAddress = (params) => address("", params);

function entryAddress(entry) {
  return address("entry", { id: entry.id, at: entry.timestamp, transaction_id: entry.transaction_id,
    content_type: entry.content_type, object_id: entry.object_id });
}

/** The timeline of an entry's object, or null when the entry names no object of a known model. */
function objectAddress(contentType, objectId, extra) {
  if (!contentType || !objectId) return null;
  return address("object", { content_type: contentType, object_id: objectId, ...extra });
}

function objectLink(entry) {
  const where = objectAddress(entry.content_type, entry.object_id);
  if (!where) return el("span", { class: "muted" }, entry.object_id || "no object id");
  return link(entry.object_id, where);
}

function when(timestamp) {
  const moment = new Date(timestamp);
  return el("time", { datetime: timestamp, title: timestamp }, moment.toLocaleString());
}

function problem(message) {
  return el("p", { class: "error", role: "alert" }, message);
}

// --- reading the log --------------------------------------------------------------------------

async function api(base, params) {
  const url = new URL(base);
  for (const [name, given] of Object.entries(params || {})) if (given) url.searchParams.set(name, given);
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
  const json = (response.headers.get("Content-Type") || "").startsWith("application/json");
  const body = json ? await response.json() : null;
  if (!response.ok || !body) {
    throw new Error((body && body.detail) || `The server answered ${response.status} ${response.statusText}.`);
  }
  return body;
}

/** One entry, by its id and what its address says about it: entries of the same millisecond
 * (and transaction, model and object when known), read on page by page until it is found. */
async function findEntry(params) {
  const filters = { transaction_id: params.transaction_id };
  if (params.content_type && params.content_type !== "0") filters.content_type = params.content_type;
  if (params.object_id) filters.object_id = params.object_id;
  const moment = Date.parse(params.at || "");
  if (!Number.isNaN(moment)) {
    filters.since = new Date(moment).toISOString();
    filters.until = new Date(moment + 1).toISOString();
  }
  // The viewer's own links narrow the search to the entry's millisecond and transaction, or to
  // one object's history; a link with none of them (typed or crafted) reads at most FIND_PAGES
  // pages, never the tenant's whole history.
  const narrowed = Boolean(params.transaction_id || params.object_id || filters.since);
  let page = await api(LIST, { ...filters, page_size: 100 });
  for (let read = 1; ; read++) {
    const entry = page.results.find((each) => each.id === params.id);
    if (entry) return entry;
    if (!page.next_cursor || (!narrowed && read >= FIND_PAGES)) return null;
    page = await api(LIST, { ...filters, page_size: 100, cursor: page.next_cursor });
  }
}

const FIND_PAGES = 10;

// --- views ------------------------------------------------------------------------------------

function signInForm(message) {
  signOut.hidden = true;
  const input = el("input", { id: "token", type: "password", autocomplete: "off", required: true });
  const form = el("form", { class: "sign-in", on: { submit: (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, input.value.trim());
    route();
  } } },
  el("h1", { text: "Sign in", tabindex: "-1" }),
  message ? problem(message) : null,
  el("label", { for: "token" }, "Bearer token"), input,
  el("button", { type: "submit" }, "Sign in"));
  show(form);
  input.focus();
}

/** A datetime-local control's value for an ISO time, in the browser's time zone. */
function localTime(iso) {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return "";
  return new Date(moment.getTime() - moment.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

function filtersForm(params) {
  const labelled = (name, label, control) =>
    el("div", { class: "field" }, el("label", { for: `f-${name}` }, label), control);
  const field = (name, label, attributes) => labelled(name, label,
    el("input", { id: `f-${name}`, name, type: "text", value: params[name] || "", ...attributes }));
  const action = el("select", { id: "f-action_type", name: "action_type" },
    ["", "create", "update", "delete", "access"].map((choice) =>
      el("option", { value: choice, selected: (params.action_type || "") === choice }, choice || "any")));
  const size = el("select", { id: "f-page_size", name: "page_size" }, ["20", "50", "100"].map((choice) =>
    el("option", { value: choice, selected: (params.page_size || "20") === choice }, choice)));
  const moment = { type: "datetime-local", step: "1" };
  const form = el("form", { class: "filters", role: "search", on: { submit: (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    for (const name of ["since", "until"]) if (data[name]) data[name] = new Date(data[name]).toISOString();
    if (data.page_size === "20") delete data.page_size;
    location.hash = listAddress(data);
  } } },
  field("user_id", "User"), field("ip_address", "Address"),
  labelled("action_type", "Action", action),
  field("content_type", "Model", { placeholder: "Loan or app.models.Loan" }),
  field("object_id", "Object"), field("transaction_id", "Transaction"),
  field("since", "Since", { ...moment, value: params.since ? localTime(params.since) : "" }),
  field("until", "Until", { ...moment, value: params.until ? localTime(params.until) : "" }),
  labelled("page_size", "Per page", size),
  el("div", { class: "actions" }, el("button", { type: "submit" }, "Filter"), link("Clear", "#/")));
  return form;
}

function entryRow(entry) {
  const model = entry.model_label || (entry.content_type ? `#${entry.content_type}` : "unknown");
  return el("tr", {},
    el("td", { "data-label": "When" }, when(entry.timestamp)),
    el("td", { "data-label": "Action" }, entry.action_type),
    el("td", { "data-label": "Model" },
      entry.model ? link(model, listAddress({ content_type: entry.model }), { title: entry.model }) : model),
    el("td", { "data-label": "Object" }, objectLink(entry)),
    el("td", { "data-label": "User" },
      entry.user_id ? link(entry.user_id, listAddress({ user_id: entry.user_id })) : el("span", { class: "muted" }, "system")),
    el("td", { "data-label": "Address" },
      entry.ip_address ? link(entry.ip_address, listAddress({ ip_address: entry.ip_address })) : ""),
    el("td", { "data-label": "Changed" }, (entry.changed_fields || []).join(", ")),
    el("td", {}, link("View", entryAddress(entry), { "aria-label": `View entry ${entry.id}` })));
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
    const about = page.count_exact === false ? "about " : ""; // past the count limit: an estimate
    nav.append(el("span", { class: "muted" },
      `${about}${page.count.toLocaleString()} entries, page ${page.current_page} of ${about}${page.total_pages}`));
    const first = Math.max(1, page.current_page - 3);
    const last = Math.min(page.total_pages, page.current_page + 3);
    if (page.previous_page) nav.append(link("Previous", listAddress({ ...params, page: page.previous_page, cursor: "" })));
    for (let number = first; number <= last; number += 1) {
      nav.append(link(String(number), listAddress({ ...params, page: number, cursor: "" }),
        { "aria-current": number === page.current_page ? "page" : null }));
    }
    if (page.next_page) nav.append(link("Next", listAddress({ ...params, page: page.next_page, cursor: "" })));
    if (page.next_cursor) nav.append(link("Read on (fast)", listAddress({ ...params, page: "", cursor: page.next_cursor })));
  } else {
    if (page.previous_cursor) nav.append(link("Newer", listAddress({ ...params, cursor: page.previous_cursor })));
    if (page.next_cursor) nav.append(link("Older", listAddress({ ...params, cursor: page.next_cursor })));
    nav.append(link("Back to page 1", listAddress({ ...params, cursor: "" })));
  }
  return nav;
}

async function listView(params) {
  const query = {};
  for (const name of [...FILTERS, "page", "cursor"]) if (params[name]) query[name] = params[name];
  let results;
  try {
    const page = await api(LIST, query);
    results = [entriesTable(page.results), pager(page, params)];
  } catch (error) {
    if (error instanceof SignInNeeded) throw error;
    results = [problem(error.message)]; // a bad filter: said, with the filters kept to correct it
  }
  // Open on a wide screen or when filtering; on a phone the entries come first.
  const active = FILTERS.filter((name) => params[name]).length;
  const filters = el("details", { class: "filters",
    open: active > 0 || matchMedia("(min-width: 40rem)").matches },
  el("summary", {}, active ? `Filters (${active} in use)` : "Filters"), filtersForm(params));
  return [el("h1", { text: "Audit log", tabindex: "-1" }), filters, ...results];
}

function stateTable(before, after, changed) {
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])];
  const marked = new Set(changed || []);
  return el("table", { class: "states" },
    el("thead", {}, el("tr", {}, ["Attribute", "Before", "After", ""].map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, keys.map((key) => el("tr", { class: marked.has(key) ? "changed" : null },
      el("th", { scope: "row" }, key),
      el("td", { class: "value", "data-label": "Before" }, before ? value(before, key) : ""),
      el("td", { class: "value", "data-label": "After" }, after ? value(after, key) : ""),
      el("td", { class: "mark" }, marked.has(key) ? "changed" : "")))));
}

function stateAtStep(state) {
  return el("table", { class: "states", tabindex: "-1" },
    el("caption", {}, "State after this step"),
    el("thead", {}, el("tr", {}, ["Attribute", "Value"].map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, Object.keys(state).map((key) => el("tr", {},
      el("th", { scope: "row" }, key),
      el("td", { class: "value" }, value(state, key))))));
}

async function entryView(params) {
  const entry = params.id ? await findEntry(params) : null;
  if (!entry) throw new Error(`No entry ${params.id || ""} is here.`);
  const fact = (name, ...shown) => [el("dt", {}, name), el("dd", {}, ...shown)];
  return [
    el("h1", { tabindex: "-1" },
      `${entry.action_type} of ${entry.model_label || "an object"} ${entry.object_id || ""}`.trim()),
    el("dl", { class: "facts card" },
      fact("When", when(entry.timestamp)),
      fact("Entry", entry.id),
      fact("Model", entry.model || String(entry.content_type || "unknown")),
      fact("Object", objectLink(entry)),
      fact("User", entry.user_id ? link(entry.user_id, listAddress({ user_id: entry.user_id })) : "system"),
      fact("Address", entry.ip_address || ""),
      fact("User agent", entry.user_agent || ""),
      fact("Transaction", entry.transaction_id
        ? link(entry.transaction_id, listAddress({ transaction_id: entry.transaction_id })) : ""),
      fact("Extra", entry.extra ? JSON.stringify(entry.extra) : "")),
    el("h2", { text: "State" }),
    stateTable(entry.before_state, entry.after_state, entry.changed_fields),
  ];
}

function stepState(filters, entry) {
  const holder = el("div", { class: "step-state" });
  const button = el("button", { type: "button", on: { click: async () => {
    button.disabled = true;
    try {
      const found = await api(STATE, { ...filters, at: entry.id });
      const table = found.state ? stateAtStep(found.state)
        : el("p", { class: "muted", tabindex: "-1", text: "The object did not exist after this step." });
      holder.replaceChildren(table);
      button.hidden = true;
      table.focus();
    } catch (error) {
      if (error instanceof SignInNeeded && bearer) { signInForm(error.message); return; }
      holder.replaceChildren(problem(error.message));
      button.disabled = false;
    }
  } } }, "State after this step");
  return [button, holder];
}

async function objectView(params) {
  const filters = { content_type: params.content_type, object_id: params.object_id };
  if (!filters.content_type || !filters.object_id) throw new Error("Which object? Its model and id are needed.");
  const page = await api(LIST, { ...filters, page_size: STEPS, cursor: params.cursor });
  const entries = page.results;
  const label = (entries.length && entries[0].model_label) || "Object";
  const items = entries.map((entry) => el("li", {},
    when(entry.timestamp), " ", el("strong", {}, entry.action_type), " by ",
    entry.user_id || "system",
    entry.changed_fields ? ` (${entry.changed_fields.join(", ")})` : "", " ",
    link("View", entryAddress(entry)), " ", stepState(filters, entry)));
  const nav = el("nav", { class: "pages", "aria-label": "Steps" });
  const here = (extra) => objectAddress(filters.content_type, filters.object_id, extra);
  if (page.previous_cursor) nav.append(link("Newer steps", here({ cursor: page.previous_cursor })));
  if (page.next_cursor) nav.append(link("Older steps", here({ cursor: page.next_cursor })));
  if (params.cursor) nav.append(link("Newest steps", here()));
  return [el("h1", { tabindex: "-1" }, `${label} ${filters.object_id}: timeline`),
    el("p", { class: "muted", text: "Newest step first." }),
    entries.length ? el("ol", { class: "timeline" }, items) : el("p", { class: "muted", text: "No entries." }),
    nav];
}

// --- routing ----------------------------------------------------------------------------------

let shown = 0; // the latest navigation; an earlier one that answers late is dropped

async function route() {
  const navigation = ++shown;
  const hash = location.hash.replace(/^#\/?/, "");
  const cut = hash.indexOf("?");
  const path = cut < 0 ? hash : hash.slice(0, cut);
  const params = Object.fromEntries(new URLSearchParams(cut < 0 ? "" : hash.slice(cut + 1)));
  signOut.hidden = !bearer;
  let nodes;
  try {
    if (path === "entry") nodes = await entryView(params);
    else if (path === "object") nodes = await objectView(params);
    else nodes = await listView(params);
  } catch (error) {
    if (navigation !== shown) return;
    if (error instanceof SignInNeeded && bearer) { signInForm(error.message); return; }
    nodes = [el("h1", { text: "Something went wrong", tabindex: "-1" }), problem(error.message),
      link("Back to the list", "#/")];
  }
  if (navigation === shown) show(...nodes);
}

signOut.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN);
  signInForm("");
});
window.addEventListener("hashchange", route);
route();
