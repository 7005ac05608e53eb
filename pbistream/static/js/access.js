// Access for admins and members: the Tokens page (#/tokens) and a dashboard's "Share" dialog.
// A token or link secret is shown once, right after it is made: the server keeps only its hash.

import { api, listDatasets } from "./api.js";
import { copyText, h, mount, openDialog, toast } from "./dom.js";

const enc = encodeURIComponent;
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "—");

function secretBox(label, value, testid) {
  return h("div", { class: "secret" },
    h("label", { text: label }),
    h("div", { class: "secret-row" },
      h("input", { readonly: true, value, "data-testid": testid, style: { width: "100%" } }),
      h("button", { type: "button", text: "Copy", on: { click: async () => { await copyText(value); toast("Copied"); } } })));
}

/** The Tokens page: list, create (role, datasets, name, expiry), revoke. */
export async function showTokens(view) {
  const [listed, datasets] = await Promise.all([api("GET", "/api/tokens"), listDatasets()]);
  const names = new Map(datasets.map((d) => [d.id, d.name]));
  const rows = listed.value.map((t) => h("tr", { "data-token-id": t.id },
    h("td", { text: t.name || "—" }), h("td", { text: t.kind }), h("td", { text: t.role }),
    h("td", { text: t.dashboard ? `dashboard ${t.dashboard}` : (t.datasets || []).map((d) => names.get(d) || d).join(", ") || "all datasets" }),
    h("td", { text: t.status }), h("td", { text: when(t.expiresAt) }), h("td", { text: when(t.lastUsedAt) }),
    h("td", { class: "row-actions" }, t.id === "server" ? h("span", { class: "muted", text: "rotate: pbistream token rotate" })
      : h("button", { class: "danger", text: "Revoke", "data-testid": "revoke-token", on: { click: async () => {
        const path = t.kind === "link" ? `/api/dashboards/${enc(t.dashboard)}/links/${enc(t.id)}` : `/api/tokens/${enc(t.id)}`;
        try { await api("DELETE", path); toast("Revoked"); showTokens(view); } catch (err) { toast(err.message, "error"); }
      } } }))));
  const table = h("table", { class: "grid", "data-testid": "tokens" },
    h("thead", {}, h("tr", {}, ["Name", "Kind", "Role", "Reaches", "Status", "Expires", "Last used", ""].map((t) => h("th", { text: t })))),
    h("tbody", {}, rows));
  const head = h("div", { class: "view-head" }, h("h2", { text: "Tokens" }),
    h("button", { class: "primary", text: "+ New token", "data-testid": "new-token", on: { click: () => newToken(view, datasets) } }),
    h("div", { class: "sub", text: "Viewers read; contributors also push rows; members also change datasets and dashboards; admins also manage tokens." }));
  mount(view, head, h("div", { class: "panel", style: { padding: "0" } }, table));
}

function newToken(view, datasets) {
  openDialog((close) => {
    const role = h("select", { id: "token-role", "data-testid": "token-role" },
      ["viewer", "contributor", "member", "admin"].map((r) => h("option", { value: r, text: r })));
    const name = h("input", { id: "token-name", maxlength: "200", placeholder: "what it is for" });
    const expires = h("input", { id: "token-expires", placeholder: "e.g. 30d (empty: never)" });
    const picks = datasets.map((d) => h("label", { class: "check" }, h("input", { type: "checkbox", value: d.id }), d.name));
    const error = h("div", { class: "form-error", role: "alert" });
    const form = h("form", { method: "dialog", class: "token-form" },
      h("h3", { text: "New token" }),
      h("label", { for: "token-role", text: "Role" }), role,
      h("label", { for: "token-name", text: "Name" }), name,
      h("label", { for: "token-expires", text: "Expires after" }), expires,
      h("fieldset", {}, h("legend", { text: "Limit to datasets (none ticked: every dataset)" }), picks),
      error,
      h("div", { class: "actions" }, h("button", { type: "button", text: "Cancel", on: { click: close } }), h("button", { class: "primary", type: "submit", text: "Create" })));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { role: role.value };
      if (name.value.trim()) body.name = name.value.trim();
      if (expires.value.trim()) body.expiresIn = expires.value.trim();
      const chosen = picks.map((p) => p.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
      if (chosen.length) body.datasets = chosen;
      try {
        const made = await api("POST", "/api/tokens", body);
        mount(form, h("h3", { text: `New ${made.role} token` }),
          h("p", { text: "Copy it now: it is shown only this once." }),
          secretBox("Token", made.token, "new-token-secret"),
          h("div", { class: "actions" }, h("button", { type: "button", class: "primary", text: "Done", on: { click: () => { close(); showTokens(view); } } })));
      } catch (err) { error.textContent = err.message; }
    });
    return form;
  });
}

/** A dashboard's "Share" dialog: read-only links (new, copy, revoke). */
export function shareDashboard(doc) {
  openDialog((close) => {
    const body = h("div", { class: "share" });
    const error = h("div", { class: "form-error", role: "alert" });
    async function refresh(made) {
      let links = [];
      try { links = (await api("GET", `/api/dashboards/${enc(doc.id)}/links`)).value; } catch (err) { error.textContent = err.message; }
      mount(body,
        made ? [h("p", { text: "Copy the link now: it is shown only this once. Anyone holding it sees this dashboard live, read-only." }),
          secretBox("Link", made.url, "share-url"), secretBox("Wall screen (kiosk) link", made.kioskUrl, "share-kiosk-url")] : null,
        h("h4", { text: links.length ? "Working links" : "No links yet." }),
        h("ul", { class: "links" }, links.map((l) => h("li", {}, `${l.name} · made ${when(l.createdAt)} · expires ${when(l.expiresAt)} `,
          h("button", { class: "danger", text: "Revoke", on: { click: async () => {
            try { await api("DELETE", `/api/dashboards/${enc(doc.id)}/links/${enc(l.id)}`); refresh(null); } catch (err) { error.textContent = err.message; }
          } } })))));
    }
    const create = h("button", { class: "primary", type: "button", text: "+ New read-only link", "data-testid": "new-link", on: { click: async () => {
      try { refresh(await api("POST", `/api/dashboards/${enc(doc.id)}/links`, {})); } catch (err) { error.textContent = err.message; }
    } } });
    refresh(null);
    return h("div", {}, h("h3", { text: `Share “${doc.name}”` }), body, error,
      h("div", { class: "actions" }, h("button", { type: "button", text: "Close", on: { click: close } }), create));
  });
}
