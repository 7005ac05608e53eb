// The "add / edit tile" dialog: pick a type, a dataset, its table and fields, and the
// options of that type. The server checks the result again when the dashboard is saved.

import { h, openDialog } from "./dom.js";
import { typeLabel } from "./format.js";
import { TILE_TYPES, tileTypeLabel } from "./tiles.js";

const NUMERIC = new Set(["Int64", "Double", "Decimal"]);
const WINDOWS = [[10, "10 seconds"], [60, "1 minute"], [300, "5 minutes"], [900, "15 minutes"], [3600, "1 hour"], [21600, "6 hours"], [86400, "1 day"]];
const DEFAULT_SIZE = { card: [3, 2], gauge: [3, 3], line: [6, 3], bar: [4, 3], column: [4, 3], table: [6, 3] };

function select(name, options, value) {
  return h("select", { name, id: `tile-${name}` }, options.map(([v, label]) => h("option", { value: v, text: label, selected: String(v) === String(value) })));
}

/**
 * Open the dialog. `spec` is the tile to edit, or null for a new one.
 * `onSave(tile)` receives the new spec and may throw to show an error in the dialog.
 */
export function editTile(spec, datasets, onSave) {
  const draft = spec ? structuredClone(spec) : { type: "card", title: "", fields: [], thresholds: [] };
  if (!draft.datasetId && datasets.length) draft.datasetId = datasets[0].id;
  openDialog((close) => {
    const form = h("form", { method: "dialog", novalidate: true });
    const body = h("div");
    const error = h("div", { class: "form-error", role: "alert" });

    const render = () => {
      const dataset = datasets.find((d) => d.id === draft.datasetId);
      const tables = (dataset && dataset.tables) || [];
      if (!tables.find((t) => t.name === draft.table)) draft.table = tables.length ? tables[0].name : "";
      const table = tables.find((t) => t.name === draft.table);
      const columns = (table && table.columns) || [];
      const numericOnly = ["line", "bar", "column", "gauge"].includes(draft.type);
      const usable = columns.filter((c) => !numericOnly || NUMERIC.has(c.dataType));
      const single = draft.type === "card" || draft.type === "gauge";
      draft.fields = draft.fields.filter((f) => usable.find((c) => c.name === f));
      if (single) draft.fields = draft.fields.slice(0, 1);
      if (!draft.fields.length && usable.length) draft.fields = [usable[0].name];

      const typeSel = select("type", TILE_TYPES.map((t) => [t, tileTypeLabel(t)]), draft.type);
      typeSel.addEventListener("change", () => { draft.type = typeSel.value; render(); });
      const dsSel = select("dataset", datasets.map((d) => [d.id, d.name]), draft.datasetId);
      dsSel.addEventListener("change", () => { draft.datasetId = dsSel.value; draft.fields = []; render(); });
      const tableSel = select("table", tables.map((t) => [t.name, t.name]), draft.table);
      tableSel.addEventListener("change", () => { draft.table = tableSel.value; draft.fields = []; render(); });
      const title = h("input", { id: "tile-title", name: "title", value: draft.title || "", maxlength: "200", placeholder: "Optional" });
      title.addEventListener("input", () => { draft.title = title.value; });

      let fieldPicker;
      if (single) {
        fieldPicker = select("field", usable.map((c) => [c.name, `${c.name} · ${typeLabel(c.dataType)}`]), draft.fields[0]);
        // Redraw: a card's options depend on its field's type (no unit for Text).
        fieldPicker.addEventListener("change", () => { draft.fields = [fieldPicker.value]; render(); });
      } else {
        fieldPicker = h("div", { class: "checks", id: "tile-fields" }, usable.map((c) => {
          const box = h("input", { type: "checkbox", value: c.name, checked: draft.fields.includes(c.name) });
          box.addEventListener("change", () => {
            draft.fields = usable.map((u) => u.name).filter((n) => (n === c.name ? box.checked : draft.fields.includes(n)));
          });
          return h("label", { title: typeLabel(c.dataType) }, box, c.name, h("span", { class: "muted", text: ` · ${typeLabel(c.dataType)}` }));
        }));
      }
      const parts = [
        h("div", { class: "two-col" },
          h("div", {}, h("label", { for: "tile-type", text: "Visualization type" }), typeSel),
          h("div", {}, h("label", { for: "tile-title", text: "Title" }), title)),
        h("div", { class: "two-col" },
          h("div", {}, h("label", { for: "tile-dataset", text: "Dataset" }), dsSel),
          h("div", {}, h("label", { for: "tile-table", text: "Table" }), tableSel)),
        h("label", { text: single ? "Field" : "Values" }), fieldPicker,
        usable.length ? null : h("div", { class: "field-help", text: numericOnly ? "This table has no number fields to plot." : "This table has no fields." }),
        ...typeOptions(draft, columns),
      ];
      body.replaceChildren(...parts.flat().filter(Boolean));
    };

    render();
    const save = h("button", { class: "primary", type: "submit", text: spec ? "Save tile" : "Add tile" });
    form.append(
      h("h3", { text: spec ? "Edit tile" : "Add a tile" }),
      h("div", { class: "field-help", text: "Tiles update live from the dataset's stream." }),
      body, error,
      h("div", { class: "actions" }, h("button", { type: "button", text: "Cancel", on: { click: close } }), save));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const tile = finish(draft, columnsOf(datasets, draft));
      if (!tile.fields.length) { error.textContent = "Pick at least one field."; return; }
      save.disabled = true;
      try {
        await onSave(tile);
        close();
      } catch (err) {
        error.textContent = err.message;
      } finally {
        save.disabled = false;
      }
    });
    return form;
  });
}

function columnsOf(datasets, draft) {
  const dataset = datasets.find((d) => d.id === draft.datasetId);
  const table = ((dataset && dataset.tables) || []).find((t) => t.name === draft.table);
  return (table && table.columns) || [];
}

function numberInput(draft, key, label, placeholder = "") {
  const input = h("input", { id: `tile-${key}`, type: "number", step: "any", value: draft[key] ?? "", placeholder });
  input.addEventListener("input", () => { draft[key] = input.value === "" ? undefined : Number(input.value); });
  return h("div", {}, h("label", { for: `tile-${key}`, text: label }), input);
}

function typeOptions(draft, columns) {
  const out = [];
  if (draft.type === "line") {
    const sel = select("window", WINDOWS, draft.windowSeconds ?? 300);
    sel.addEventListener("change", () => { draft.windowSeconds = Number(sel.value); });
    draft.windowSeconds = Number(sel.value);
    out.push(h("label", { for: "tile-window", text: "Time window to display" }), sel);
    const times = columns.filter((c) => c.dataType === "DateTime");
    const axis = select("time", [["", "(arrival time)"], ...times.map((c) => [c.name, c.name])], draft.timeField ?? "");
    axis.addEventListener("change", () => { draft.timeField = axis.value || undefined; });
    out.push(h("label", { for: "tile-time", text: "Axis (time)" }), axis,
      h("div", { class: "field-help", text: "Plot by a DateTime field of the rows, or by when each row arrived." }));
  }
  if (draft.type === "bar" || draft.type === "column") {
    const sel = select("axis", [["", "(none: one bar per value)"], ...columns.map((c) => [c.name, c.name])], draft.axis ?? "");
    sel.addEventListener("change", () => { draft.axis = sel.value || undefined; });
    out.push(h("label", { for: "tile-axis", text: "Axis (category)" }), sel);
  }
  if (draft.type === "gauge") {
    draft.min ??= 0; draft.max ??= 100;
    out.push(h("div", { class: "three-col" }, numberInput(draft, "min", "Minimum"), numberInput(draft, "max", "Maximum"), numberInput(draft, "target", "Target", "Optional")));
  }
  if (draft.type === "table") {
    draft.rows ??= 10;
    out.push(h("div", { class: "two-col" }, numberInput(draft, "rows", "Rows to show"), h("div")));
  }
  if (draft.type === "gauge" || (draft.type === "card" && isNumericField(draft, columns))) {
    const unit = h("input", { id: "tile-unit", value: draft.unit || "", maxlength: "20", placeholder: "e.g. °C" });
    unit.addEventListener("input", () => { draft.unit = unit.value; });
    out.push(h("div", { class: "two-col" },
      h("div", {}, h("label", { for: "tile-unit", text: "Unit" }), unit),
      numberInput(draft, "decimals", "Decimal places", "2")));
    draft.thresholds ??= [];
    const list = h("div");
    const redraw = () => list.replaceChildren(...draft.thresholds.map((t, i) => {
      const value = h("input", { type: "number", step: "any", value: t.value, "aria-label": "From value" });
      value.addEventListener("input", () => { t.value = Number(value.value); });
      const color = h("input", { type: "color", value: t.color, "aria-label": "Colour" });
      color.addEventListener("input", () => { t.color = color.value; });
      return h("div", { class: "threshold-row" }, value, color,
        h("button", { type: "button", class: "icon", text: "✕", title: "Remove", on: { click: () => { draft.thresholds.splice(i, 1); redraw(); } } }));
    }));
    redraw();
    out.push(
      h("label", { text: "Thresholds" }),
      h("div", { class: "field-help", text: "From this value up, colour the value." }),
      list,
      h("button", { type: "button", class: "link", text: "+ Add threshold", on: { click: () => { draft.thresholds.push({ value: 0, color: "#d13438" }); redraw(); } } }));
  }
  return out;
}

/** True when the draft's (first) field holds numbers: units and thresholds apply. */
function isNumericField(draft, columns) {
  const column = columns.find((c) => c.name === draft.fields[0]);
  return Boolean(column) && NUMERIC.has(column.dataType);
}

/** Keep only the properties the tile type has (the server refuses unknown ones). */
function finish(draft, columns) {
  const [w, hgt] = DEFAULT_SIZE[draft.type];
  const tile = {
    id: draft.id || `t${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`,
    type: draft.type, title: draft.title || "", datasetId: draft.datasetId, table: draft.table,
    fields: draft.fields, x: draft.x ?? 0, y: draft.y ?? 0, w: draft.w ?? w, h: draft.h ?? hgt,
  };
  if (draft.type === "line") {
    tile.windowSeconds = draft.windowSeconds ?? 300;
    if (draft.timeField) tile.timeField = draft.timeField;
  }
  if ((draft.type === "bar" || draft.type === "column") && draft.axis) tile.axis = draft.axis;
  if (draft.type === "gauge") Object.assign(tile, { min: draft.min ?? 0, max: draft.max ?? 100 }, draft.target !== undefined ? { target: draft.target } : {});
  if (draft.type === "table") tile.rows = draft.rows ?? 10;
  if (draft.type === "gauge" || (draft.type === "card" && isNumericField(draft, columns))) {
    tile.thresholds = (draft.thresholds || []).filter((t) => Number.isFinite(t.value));
    if (Number.isInteger(draft.decimals) && draft.decimals >= 0 && draft.decimals <= 10) tile.decimals = draft.decimals;
    if (draft.unit) tile.unit = draft.unit;
  }
  return tile;
}
