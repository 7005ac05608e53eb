// Tile alerts: the rule editor (opened from a card or gauge tile), the Alerts page
// (rules, their state and the notification history) and the badge on the nav link.

import { api } from "./api.js";
import { h, mount, openDialog, toast } from "./dom.js";
import { formatWhen } from "./format.js";

const enc = encodeURIComponent;
const OPS = [[">", "is above"], [">=", "is at or above"], ["<", "is below"], ["<=", "is at or below"], ["=", "equals"], ["!=", "is not"]];
const INTERVALS = [[0, "on every crossing (no repeat)"], [60, "at most once a minute"], [300, "at most every 5 minutes"], [3600, "at most once an hour (Power BI's default)"], [86400, "at most once a day"]];
const FORMATS = [["json", "Plain JSON"], ["teams", "Microsoft Teams"], ["slack", "Slack"]];
const SEEN_KEY = "pbistream.alerts.seen";
const NUMERIC = new Set(["Int64", "Double", "Decimal"]);

export const listRules = async () => (await api("GET", "/api/alerts")).value;
export const listEvents = async (params = {}) => (await api("GET", `/api/alerts/events?${new URLSearchParams(params)}`)).value;

function select(id, options, value) {
  return h("select", { id }, options.map(([v, label]) => h("option", { value: String(v), text: label, selected: String(v) === String(value) })));
}

/**
 * Create or edit a rule. `target` = { dataset, table, field, threshold } (from a tile)
 * or { rule } (editing). Resolves with the saved rule, or null if cancelled.
 */
export function openAlertEditor(target) {
  const rule = target.rule || null;
  const dataset = target.dataset;
  const tableName = rule ? rule.table : target.table;
  const table = dataset && (dataset.tables || []).find((t) => t.name === tableName);
  const columns = (table && table.columns) || [];
  const field = rule ? rule.field : target.field;
  const fieldType = (columns.find((c) => c.name === field) || {}).dataType || "Double";
  return new Promise((resolve) => {
    openDialog((close) => {
      const kind = select("alert-kind", [["threshold", `when ${field}…`], ["silence", `when no ${field} arrives for…`]], rule && rule.kind === "silence" ? "silence" : "threshold");
      const ops = NUMERIC.has(fieldType) ? OPS : OPS.filter(([op]) => op === "=" || op === "!=");
      const op = select("alert-op", ops, rule ? rule.op || ">" : ops[0][0]);
      const threshold = h("input", { id: "alert-threshold", type: NUMERIC.has(fieldType) ? "number" : "text", step: "any", required: true,
        value: rule && rule.threshold !== null && rule.threshold !== undefined ? String(rule.threshold) : target.threshold !== undefined ? String(target.threshold) : "" });
      const silence = h("input", { id: "alert-silence", type: "number", min: "1", step: "any", value: rule && rule.silenceSeconds ? String(rule.silenceSeconds) : "60" });
      const categories = columns.filter((c) => c.name !== field && !NUMERIC.has(c.dataType) && c.dataType !== "DateTime");
      const category = select("alert-category", [["", "— one alert for the whole table —"], ...categories.map((c) => [c.name, `one alert per ${c.name}`])], rule ? rule.category || "" : "");
      const interval = select("alert-interval", intervalOptions(rule), rule ? rule.minIntervalSeconds : 3600);
      const webhook = h("input", { id: "alert-webhook", type: "url", placeholder: "https://… (optional: Teams, Slack or any URL)", value: rule && rule.webhook ? rule.webhook : "" });
      const format = select("alert-format", FORMATS, rule ? rule.format : "json");
      const name = h("input", { id: "alert-name", maxlength: "200", placeholder: "optional", value: rule ? rule.name : "" });
      const error = h("div", { class: "form-error", role: "alert" });
      const thresholdRow = h("div", { class: "alert-cond" }, op, threshold);
      const silenceRow = h("div", { class: "alert-cond" }, silence, h("span", { class: "muted", text: "seconds" }));
      const sync = () => { const quiet = kind.value === "silence"; thresholdRow.hidden = quiet; silenceRow.hidden = !quiet; threshold.required = !quiet; };
      kind.addEventListener("change", sync);
      sync();
      const form = h("form", { method: "dialog", "data-testid": "alert-editor" },
        h("h3", { text: rule ? "Edit alert" : `Alert on ${field}` }),
        h("p", { class: "muted", text: `${dataset ? dataset.name : rule.dataset} · ${tableName}` }),
        h("label", { for: "alert-kind", text: "Notify me" }), kind, thresholdRow, silenceRow,
        h("label", { for: "alert-category", text: "Per" }), category,
        h("label", { for: "alert-interval", text: "While it stays true, notify again" }), interval,
        h("label", { for: "alert-webhook", text: "Webhook" }), webhook,
        h("label", { for: "alert-format", text: "Webhook body" }), format,
        h("label", { for: "alert-name", text: "Name" }), name,
        h("div", { class: "field-help", text: "Notifications also appear under Alerts. Webhook bodies are signed: X-PBIStream-Signature is an HMAC-SHA256 of '<X-PBIStream-Timestamp>.<body>' keyed with the rule's secret." }),
        error,
        h("div", { class: "actions" },
          h("button", { type: "button", text: "Cancel", on: { click: () => { close(); resolve(null); } } }),
          h("button", { class: "primary", type: "submit", text: rule ? "Save" : "Create alert" })));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const body = {
          dataset: dataset ? dataset.id : rule.dataset, table: tableName, field,
          category: category.value || null, minIntervalSeconds: Number(interval.value),
          webhook: webhook.value.trim() || null, format: format.value, name: name.value.trim(),
          enabled: rule ? rule.enabled !== false : true, // PUT replaces: keep a switched-off rule off
        };
        if (kind.value === "silence") Object.assign(body, { silenceSeconds: Number(silence.value), op: null, threshold: null });
        else Object.assign(body, { op: op.value, threshold: NUMERIC.has(fieldType) ? Number(threshold.value) : threshold.value, silenceSeconds: null });
        try {
          const saved = rule ? await api("PUT", `/api/alerts/${enc(rule.id)}`, body) : await api("POST", "/api/alerts", body);
          close();
          toast(rule ? "Alert saved" : `Alert created: ${saved.condition}`);
          if (saved.secret && saved.webhook) showSecret(saved);
          resolve(saved);
        } catch (err) { error.textContent = err.message; }
      });
      return form;
    });
  });
}

/** The presets, plus an edited rule's own interval (set over the API) so saving keeps it. */
function intervalOptions(rule) {
  const own = rule ? Number(rule.minIntervalSeconds) : NaN;
  if (!Number.isFinite(own) || INTERVALS.some(([v]) => v === own)) return INTERVALS;
  const [n, unit] = own % 86400 === 0 ? [own / 86400, "day"] : own % 3600 === 0 ? [own / 3600, "hour"] : own % 60 === 0 ? [own / 60, "minute"] : [own, "second"];
  return [...INTERVALS, [own, `at most every ${n} ${unit}${n === 1 ? "" : "s"}`]].sort((a, b) => a[0] - b[0]);
}

function showSecret(rule) {
  openDialog((close) => h("form", { method: "dialog" },
    h("h3", { text: "Webhook signing secret" }),
    h("p", { text: "Shown once. Your receiver checks X-PBIStream-Signature with it." }),
    h("pre", { class: "code", text: rule.secret, "data-testid": "alert-secret" }),
    h("div", { class: "actions" }, h("button", { class: "primary", type: "button", text: "Done", on: { click: close } }))));
}

/** The Alerts page: rules with their state, and the notification history. */
export async function showAlerts(view, datasets) {
  const [rules, events] = await Promise.all([listRules(), listEvents({ limit: "100" })]);
  const byId = new Map((datasets || []).map((d) => [d.id, d]));
  const rows = rules.map((r) => h("tr", { "data-rule-id": r.id },
    h("td", { text: r.name }),
    h("td", { text: (byId.get(r.dataset) || {}).name || r.dataset }),
    h("td", { text: r.condition }),
    h("td", {}, r.enabled === false
      ? h("span", { class: "pill", "data-testid": "alert-state", text: "Off", title: "Switched off: kept, not checked" })
      : h("span", { class: `pill ${r.firing ? "firing" : "ok"}`, "data-testid": "alert-state", text: r.firing ? "Firing" : "OK" })),
    h("td", { text: r.webhook ? `${(FORMATS.find(([f]) => f === r.format) || [0, "JSON"])[1]} webhook` : "UI only" }),
    h("td", { class: "row-actions" },
      h("button", { text: "Edit", on: { click: async () => { if (await openAlertEditor({ rule: r, dataset: byId.get(r.dataset) })) showAlerts(view, datasets); } } }), " ",
      h("button", { class: "danger", text: "Delete", on: { click: async () => { await api("DELETE", `/api/alerts/${enc(r.id)}`); toast("Alert deleted"); showAlerts(view, datasets); } } }))));
  const fired = events.filter((e) => e.state === "fired");
  const history = fired.map((e) => h("li", { "data-event-id": String(e.event) },
    h("span", { class: "when", text: formatWhen(Date.parse(e.firedAt) / 1000), title: e.firedAt }),
    h("strong", { text: e.name }), " ", h("span", { text: e.message }),
    e.delivery ? h("span", { class: `pill delivery-${e.delivery}`, text: e.delivery === "sent" ? "webhook sent" : `webhook ${e.delivery}${e.lastError ? `: ${e.lastError}` : ""}` }) : null));
  mount(view,
    h("div", { class: "view-head" }, h("h2", { text: "Alerts" }),
      h("div", { class: "sub", text: "Set an alert from a card or gauge tile (its bell). A rule fires on the row that crosses, and again after it clears or after its interval." })),
    h("div", { class: "panel", style: { padding: "0" } }, rules.length
      ? h("table", { class: "grid", "data-testid": "alert-rules" },
        h("thead", {}, h("tr", {}, ["Name", "Dataset", "Condition", "State", "Notify", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, rows))
      : h("div", { class: "empty-state" }, h("h3", { text: "No alerts yet" }), h("p", { text: "Open a dashboard and use the bell on a card or gauge tile." }))),
    h("div", { class: "panel" }, h("h3", { text: "Notifications" }),
      fired.length ? h("ul", { class: "alert-history", "data-testid": "alert-history" }, history) : h("p", { class: "muted", text: "Nothing has fired yet." })));
  if (fired.length) markSeen(fired[0].event);
}

function markSeen(eventId) {
  const seen = Number(localStorage.getItem(SEEN_KEY) || 0);
  if (eventId > seen) localStorage.setItem(SEEN_KEY, String(eventId));
  updateBadge(0);
}

function updateBadge(count) {
  const badge = document.getElementById("alert-badge");
  if (!badge) return;
  badge.textContent = count > 99 ? "99+" : String(count);
  badge.hidden = count === 0;
}

let polling = null;

/** Poll the notification history; the nav badge counts what fired since the last look. */
export function startAlertBadge(intervalMs = 3000) {
  if (polling) return;
  const poll = async () => {
    try {
      const seen = Number(localStorage.getItem(SEEN_KEY) || 0);
      const fresh = (await listEvents({ after: String(seen), limit: "100" })).filter((e) => e.state === "fired");
      const onPage = window.location.hash.startsWith("#/alerts");
      if (onPage && fresh.length) markSeen(fresh[0].event);
      else updateBadge(fresh.length);
      const known = Number(sessionStorage.getItem(SEEN_KEY) || seen);
      for (const e of fresh.filter((x) => x.event > known).slice(0, 3)) toast(`Alert: ${e.message}`, "error");
      if (fresh.length) sessionStorage.setItem(SEEN_KEY, String(fresh[0].event));
    } catch { /* signed out or offline: try again later */ }
  };
  polling = setInterval(poll, intervalMs);
  poll();
}
