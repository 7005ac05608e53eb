// "Forward to Power BI" on a dataset's page: the relay's form and its state.
// Credentials go to the server once and are never shown again (the API only says
// which kind is set); everything data or the server sends is set as textContent.

import { api } from "./api.js";
import { h, toast } from "./dom.js";
import { formatCount, formatWhen } from "./format.js";

const path = (id) => `/api/datasets/${encodeURIComponent(id)}/forward`;

function stateLines(forward) {
  const state = forward.state;
  if (!state) return [h("div", { class: "field-help", text: "Starting: the server's forwarder has not reported yet." })];
  const lines = [
    `${state.running ? "Running" : "Stopped"} · ${formatCount(state.pending)} rows pending · ${formatCount(state.delivered)} delivered (last ${formatWhen(state.lastDeliveredAt)})`,
    `${formatCount(state.upstreamPosts)} POSTs upstream · ${formatCount(state.rateLimited)} answered 429`,
  ];
  if (state.deadLettered) lines.push(`${formatCount(state.deadLettered)} rows refused by the target (dead-lettered)`);
  const out = lines.map((text) => h("div", { text }));
  if (state.lastError) out.push(h("div", { class: "form-error", "data-testid": "forward-error", text: `Last error: ${state.lastError} (${formatWhen(state.lastErrorAt)})` }));
  return out;
}

/** The panel for one dataset (`ds` from GET /api/datasets/{id}); `reload` redraws the page. */
export function forwardPanel(ds, reload) {
  const forward = ds.forward || null;
  const error = h("div", { class: "form-error", role: "alert" });
  const target = h("input", { id: "forward-target", name: "target", required: true, style: { width: "100%" }, placeholder: "Push URL or https://api.powerbi.com/v1.0/myorg/groups/…/datasets/…/tables/…/rows", "data-testid": "forward-target" });
  const token = h("input", { id: "forward-token", name: "token", type: "password", autocomplete: "off", style: { width: "100%" }, placeholder: forward && forward.auth === "token" ? "(kept; type a new one to replace it)" : "Bearer token for a REST target (optional)", "data-testid": "forward-token" });
  const entra = ["tenantId", "clientId", "clientSecret"].map((name) => h("input", { name, type: name === "clientSecret" ? "password" : "text", autocomplete: "off", "aria-label": `Entra ID ${name}`, placeholder: name === "clientSecret" ? "client secret" : name === "tenantId" ? "tenant id" : "client id", "data-testid": `forward-${name}`, value: name === "clientSecret" ? "" : (forward && forward[name]) || "" }));
  const scale = h("input", { id: "forward-scale", name: "timeScale", type: "number", min: "0.001", step: "any", value: forward ? String(forward.timeScale) : "1", style: { width: "8em" } });
  const submit = h("button", { class: "primary", type: "submit", text: forward ? "Replace forward" : "Forward", "data-testid": "forward-submit" });
  const stop = forward && h("button", { type: "button", class: "danger", text: "Stop forwarding", "data-testid": "forward-off", on: { click: async () => {
    try { await api("DELETE", path(ds.id)); toast("Forward stopped"); reload(); } catch (err) { error.textContent = err.message; }
  } } });
  const form = h("form", { novalidate: true, "data-testid": "forward-form" },
    h("label", { for: "forward-target", text: "Target" }), target,
    h("label", { for: "forward-token", text: "Token" }), token,
    h("label", { text: "Or Entra ID (a service principal, instead of a token)" }), h("div", { class: "copy-row" }, ...entra),
    h("label", { for: "forward-scale", text: "Time scale" }), scale,
    h("div", { class: "field-help", text: "Rows stored from now on are delivered by this server through its own spool, in the fewest POSTs the target's limits allow. 1 for Power BI; match an upstream pbistream's --time-scale." }),
    error,
    h("div", { class: "actions" }, stop, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!target.value.trim()) { error.textContent = "Give the target URL."; target.focus(); return; }
    const body = { target: target.value.trim(), timeScale: Number(scale.value) || 1 };
    if (token.value) body.token = token.value;
    for (const input of entra) if (input.value.trim()) body[input.name] = input.value.trim();
    submit.disabled = true;
    try { await api("PUT", path(ds.id), body); toast("Forward set"); reload(); } catch (err) { error.textContent = err.message; } finally { submit.disabled = false; }
  });
  const summary = forward
    ? [h("div", { "data-testid": "forward-summary", text: `Forwarding table ${forward.table} to ${forward.target} (auth: ${forward.auth})` }), ...stateLines(forward)]
    : [h("div", { class: "field-help", text: "Not forwarded. Keep your devices pointed at this server and let it relay their rows to Power BI." })];
  return h("div", { class: "panel", "data-testid": "forward-panel" }, h("h3", { text: "Forward to Power BI" }), ...summary, form);
}
