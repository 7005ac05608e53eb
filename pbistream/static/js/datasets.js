// Streaming datasets: the list, Power BI's "New streaming dataset (API)" form, and
// "API info" (Push URL, sample code, sample JSON, rotate key, delete).

import * as API from "./api.js";
import { copyText, h, mount, openDialog, toast } from "./dom.js";
import { formatCount, formatDateTime, formatWhen, typeLabel } from "./format.js";
import { LiveFeeds } from "./live.js";
import { curlSnippet, powershellSnippet, pythonSnippet, sampleJson } from "./samples.js";
import { forwardPanel } from "./forward.js";

const UI_TYPES = [["Text", "String"], ["Number", "Double"], ["DateTime", "DateTime"], ["Boolean", "Boolean"]];
// The list follows this many datasets live (one merged feed; more would only cost).
const FOLLOW_AT_MOST = 20;
let following = null; // the LiveFeeds of the datasets list on screen

/** Stop following the datasets list's rows (leaving the page). */
export function leaveDatasets() {
  if (following) following.closeAll();
  following = null;
}
const MODE_LABEL = { Streaming: "Streaming", PushStreaming: "Streaming + historic", Push: "Push" };

export async function showDatasets(view) {
  leaveDatasets();
  const datasets = await API.listDatasets();
  const head = h("div", { class: "view-head" }, h("h2", { text: "Streaming datasets" }),
    h("a", { class: "button primary needs-member", href: "#/datasets/new", "data-testid": "new-dataset", text: "+ New streaming dataset" }),
    h("div", { class: "sub", text: "Push rows to a dataset's Push URL; pin its fields to dashboard tiles." }));
  if (!datasets.length) {
    mount(view, head, h("div", { class: "panel empty-state" },
      h("h3", { text: "No datasets yet" }),
      h("p", { text: "Create a streaming dataset, copy its Push URL, and send rows from any script or device." }),
      h("a", { class: "button primary", href: "#/datasets/new", text: "Create a streaming dataset" })));
    return;
  }
  const rows = datasets.map((d) => h("tr", { "data-dataset-id": d.id },
    h("td", {}, h("a", { href: `#/datasets/${encodeURIComponent(d.id)}`, text: d.name })),
    h("td", {}, h("span", { class: `pill ${String(d.defaultMode).toLowerCase()}`, text: MODE_LABEL[d.defaultMode] || d.defaultMode })),
    h("td", { text: d.defaultRetentionPolicy || "None" }),
    h("td", { class: "num", text: formatCount(d.rowCount), "data-testid": "row-count" }),
    h("td", { text: formatWhen(d.lastRowAt), title: d.lastRowAt ? formatDateTime(d.lastRowAt * 1000) : "", "data-testid": "last-row" }),
    h("td", { class: "row-actions" },
      h("a", { class: "button", href: `#/datasets/${encodeURIComponent(d.id)}`, text: "API info" }), " ",
      h("button", { class: "danger needs-member", text: "Delete", on: { click: () => confirmDelete(d, () => showDatasets(view)) } }))));
  mount(view, head, h("div", { class: "panel", style: { padding: "0" } },
    h("table", { class: "grid", "data-testid": "datasets" },
      h("thead", {}, h("tr", {}, ["Name", "Mode", "Retention", "Rows", "Last row", ""].map((t) => h("th", { text: t, class: t === "Rows" ? "num" : "" })))),
      h("tbody", {}, rows))));
  followDatasets(view, datasets);
}

/**
 * Keep the list's row counts and "last row" current while rows arrive, through the
 * same live feed the dashboards use (so the status pill says Live, not Idle).
 */
async function followDatasets(view, datasets) {
  const feeds = new LiveFeeds();
  following = feeds;
  for (const d of datasets.slice(0, FOLLOW_AT_MOST)) {
    let latest = [];
    try { latest = await API.readRows(d.id, undefined, { limit: 1 }); } catch { continue; }
    if (following !== feeds) return; // the page was left meanwhile
    const row = view.querySelector(`tr[data-dataset-id="${CSS.escape(d.id)}"]`);
    if (!row) continue;
    let count = typeof d.rowCount === "number" ? d.rowCount : 0;
    feeds.subscribe(d.id, latest.length ? latest[0].id : 0, (table, rows) => {
      if (!rows.length) return;
      count += rows.length;
      row.querySelector("[data-testid=row-count]").textContent = formatCount(count);
      const at = rows[rows.length - 1].received_at;
      const cell = row.querySelector("[data-testid=last-row]");
      cell.textContent = formatWhen(at);
      cell.title = formatDateTime(at * 1000);
    });
  }
}

function confirmDelete(dataset, after) {
  openDialog((close) => {
    const error = h("div", { class: "form-error", role: "alert" });
    const form = h("form", { method: "dialog" },
      h("h3", { text: "Delete this dataset?" }),
      h("p", { text: `“${dataset.name}” and all its rows will be deleted, and its Push URL stops working. Tiles bound to it will show that it was deleted.` }),
      error,
      h("div", { class: "actions" }, h("button", { type: "button", text: "Cancel", on: { click: close } }), h("button", { class: "danger", type: "submit", text: "Delete" })));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try { await API.deleteDataset(dataset); close(); toast("Dataset deleted"); after(); } catch (err) { error.textContent = err.message; }
    });
    return form;
  });
}

export function showNewDataset(view) {
  const values = [{ name: "", type: "Text" }];
  const list = h("div", { "data-testid": "values" });
  const name = h("input", { id: "dataset-name", name: "name", maxlength: "100", required: true, style: { width: "100%" }, placeholder: "e.g. Sensors" });
  const historic = h("input", { type: "checkbox", id: "historic", name: "historic" });
  const preview = h("pre", { class: "code", "data-testid": "sample-json" });
  const error = h("div", { class: "form-error", role: "alert" });
  const columns = () => values.filter((v) => v.name.trim()).map((v) => ({ name: v.name.trim(), dataType: Object.fromEntries(UI_TYPES)[v.type] }));
  const refresh = () => { preview.textContent = sampleJson(columns()); };
  const redraw = () => {
    list.replaceChildren(...values.map((v, i) => {
      const input = h("input", { value: v.name, placeholder: "Value name", "aria-label": `Value ${i + 1} name`, "data-testid": "value-name" });
      input.addEventListener("input", () => { v.name = input.value; refresh(); });
      const type = h("select", { "aria-label": `Value ${i + 1} type`, "data-testid": "value-type" }, UI_TYPES.map(([label, dataType]) => h("option", { value: label, text: typeLabel(dataType), selected: label === v.type })));
      type.addEventListener("change", () => { v.type = type.value; refresh(); });
      const remove = h("button", { type: "button", class: "icon", text: "✕", title: "Remove value", disabled: values.length === 1, on: { click: () => { values.splice(i, 1); redraw(); } } });
      return h("div", { class: "value-row" }, input, type, remove);
    }));
    refresh();
  };
  redraw();
  const submit = h("button", { class: "primary", type: "submit", text: "Create" });
  const form = h("form", { class: "panel form-narrow", novalidate: true },
    h("label", { for: "dataset-name", text: "Dataset name" }), name,
    h("label", { text: "Values from stream" }), list,
    h("button", { type: "button", class: "link", "data-testid": "add-value", text: "+ Add value", on: { click: () => { values.push({ name: "", type: "Number" }); redraw(); list.querySelector(".value-row:last-child input").focus(); } } }),
    h("label", { text: "Sample JSON" }), preview,
    h("label", { class: "switch" }, historic, "Historic data analysis"),
    h("div", { class: "field-help", text: "Off: rows feed live tiles from a 60-minute cache. On: rows are also kept (a push dataset with one table, RealTimeData)." }),
    error,
    h("div", { class: "actions" }, h("a", { class: "button", href: "#/datasets", text: "Cancel" }), submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!name.value.trim()) { error.textContent = "Give the dataset a name."; name.focus(); return; }
    if (!columns().length) { error.textContent = "Add at least one value with a name."; return; }
    submit.disabled = true;
    try {
      const created = await API.createDataset({
        name: name.value.trim(),
        defaultMode: historic.checked ? "PushStreaming" : "Streaming",
        tables: [{ name: "RealTimeData", columns: columns() }],
      });
      toast("Dataset created");
      window.location.hash = `#/datasets/${encodeURIComponent(created.id)}`;
    } catch (err) {
      error.textContent = err.message;
    } finally {
      submit.disabled = false;
    }
  });
  mount(view, h("div", { class: "view-head" }, h("h2", { text: "New streaming dataset" }),
    h("div", { class: "sub", text: "Source: API. Define the values your script or device will send." })), form);
  name.focus();
}

export async function showDatasetInfo(view, id) {
  const ds = await API.getDataset(id);
  const table = (ds.tables || [])[0] || { columns: [] };
  const columns = table.columns || [];
  const url = ds.pushUrl || "";
  const urlInput = h("input", { readonly: true, value: url || "(a Push dataset has no Push URL: use the REST API)", "data-testid": "push-url", "aria-label": "Push URL" });
  const code = h("pre", { class: "code", "data-testid": "sample-code" });
  const tabs = [["Python", () => pythonSnippet(url, columns)], ["cURL", () => curlSnippet(url, columns)], ["PowerShell", () => powershellSnippet(url, columns)], ["Raw JSON", () => sampleJson(columns)]];
  const tabBar = h("div", { class: "tabs", role: "tablist" });
  const select = (i) => {
    code.textContent = tabs[i][1]();
    [...tabBar.children].forEach((b, j) => b.classList.toggle("active", i === j));
  };
  tabs.forEach(([label], i) => tabBar.append(h("button", { type: "button", role: "tab", text: label, on: { click: () => select(i) } })));
  select(0);
  const rotate = h("button", { text: "Rotate key", on: { click: () => confirmRotate(ds, () => showDatasetInfo(view, id)) } });
  const remove = h("button", { class: "danger", text: "Delete dataset", on: { click: () => confirmDelete(ds, () => { window.location.hash = "#/datasets"; }) } });
  mount(view,
    h("div", { class: "view-head" }, h("h2", { text: ds.name }), rotate, remove,
      h("div", { class: "sub", text: `${MODE_LABEL[ds.defaultMode] || ds.defaultMode} · retention ${ds.defaultRetentionPolicy} · ${formatCount(ds.rowCount)} rows · last row ${formatWhen(ds.lastRowAt)}` })),
    h("div", { class: "panel" },
      h("h3", { text: "Push URL" }),
      h("div", { class: "copy-row" }, urlInput, h("button", { class: "primary", text: "Copy", disabled: !url, "data-testid": "copy-push-url", on: { click: () => copyText(url) } })),
      h("div", { class: "field-help", text: "Anyone with this URL can push rows: keep it secret, and rotate the key if it leaks." })),
    h("div", { class: "panel" },
      h("h3", { text: "Sample code" }), tabBar,
      h("div", { class: "code-wrap" }, code, h("button", { class: "copy icon", text: "Copy", on: { click: () => copyText(code.textContent) } }))),
    h("div", { class: "panel" },
      h("h3", { text: `Table ${table.name || ""}` }),
      h("div", { class: "schema-list" }, columns.map((c) => h("span", { class: "pill", text: `${c.name} · ${typeLabel(c.dataType)}` })))),
    forwardPanel(ds, () => showDatasetInfo(view, id)));
}

function confirmRotate(ds, after) {
  openDialog((close) => {
    const error = h("div", { class: "form-error", role: "alert" });
    const form = h("form", { method: "dialog" },
      h("h3", { text: "Rotate the push key?" }),
      h("p", { text: "The current Push URL stops working at once. Scripts must switch to the new URL." }),
      error,
      h("div", { class: "actions" }, h("button", { type: "button", text: "Cancel", on: { click: close } }), h("button", { class: "primary", type: "submit", text: "Rotate key" })));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try { await API.rotateKey(ds.id); close(); toast("New key in force"); after(); } catch (err) { error.textContent = err.message; }
    });
    return form;
  });
}
