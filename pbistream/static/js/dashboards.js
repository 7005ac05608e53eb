// A dashboard: a 12-column grid of live tiles, with an edit mode to add, edit, move,
// resize and remove tiles. Every change is saved to the server at once.

import { openAlertEditor } from "./alerts.js";
import * as API from "./api.js";
import { h, mount, openDialog, toast } from "./dom.js";
import { shareDashboard } from "./access.js";
import { LiveFeeds } from "./live.js";
import { can } from "./session.js";
import { editTile } from "./tile_editor.js";
import { createTile } from "./tiles.js";

const COLUMNS = 12;
let active = null; // the dashboard on screen: { doc, tiles, feeds, editing }

/** Stop the live feeds and charts of the dashboard on screen. */
export function leaveDashboard() {
  if (!active) return;
  active.feeds.closeAll();
  for (const tile of active.tiles) tile.dispose();
  active = null;
}

/** The sidebar: every dashboard, plus a button to make a new one. */
export async function renderSidebar(sidebar, currentId) {
  let dashboards = [];
  try { dashboards = await API.listDashboards(); } catch (err) { toast(err.message, "error"); }
  const list = dashboards.length
    ? h("ul", {}, dashboards.map((d) => h("li", {}, h("a", { href: `#/dashboards/${encodeURIComponent(d.id)}`, class: d.id === currentId ? "active" : "", text: d.name, title: d.name }))))
    : h("div", { class: "empty", text: "No dashboards yet." });
  mount(sidebar,
    h("h3", { text: "Dashboards" }), list,
    can("member") ? h("button", { class: "wide", text: "+ New dashboard", on: { click: () => newDashboard() } }) : null,
    h("h3", { text: "Data", style: { marginTop: "20px" } }),
    h("ul", {}, h("li", {}, h("a", { href: "#/datasets", class: currentId === "#datasets" ? "active" : "", text: "Streaming datasets" }))));
  return dashboards;
}

function askName(title, initial, onSave) {
  openDialog((close) => {
    const input = h("input", { id: "dashboard-name", value: initial, maxlength: "100", required: true, style: { width: "100%" } });
    const error = h("div", { class: "form-error", role: "alert" });
    const form = h("form", { method: "dialog" },
      h("h3", { text: title }), h("label", { for: "dashboard-name", text: "Name" }), input, error,
      h("div", { class: "actions" }, h("button", { type: "button", text: "Cancel", on: { click: close } }), h("button", { class: "primary", type: "submit", text: "Save" })));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try { await onSave(input.value.trim()); close(); } catch (err) { error.textContent = err.message; }
    });
    setTimeout(() => input.focus(), 0);
    return form;
  });
}

export function newDashboard() {
  askName("New dashboard", "", async (name) => {
    const doc = await API.createDashboard({ name, tiles: [] });
    window.location.hash = `#/dashboards/${encodeURIComponent(doc.id)}`;
  });
}

/** Show one dashboard in `view`. */
export async function showDashboard(view, id) {
  leaveDashboard();
  const [doc, datasetList] = await Promise.all([API.getDashboard(id), API.listDatasets()]);
  const datasets = await Promise.all(datasetList.map((d) => API.getDataset(d.id).catch(() => null)));
  const byId = new Map(datasets.filter(Boolean).map((d) => [d.id, d]));
  const state = { doc, tiles: [], feeds: new LiveFeeds(), editing: false, byId, view };
  active = state;
  drawBoard(state);
  await startTiles(state);
}

function header(state) {
  const { doc } = state;
  const editBtn = h("button", { text: state.editing ? "Done editing" : "Edit", class: state.editing ? "primary" : "", on: { click: () => { state.editing = !state.editing; redraw(state); } } });
  const addBtn = h("button", { class: "primary", text: "+ Add tile", "data-testid": "add-tile", on: { click: () => addTile(state) } });
  const rename = h("button", { text: "Rename", on: { click: () => askName("Rename dashboard", doc.name, async (name) => { await persist(state, { name }); redraw(state); }) } });
  const remove = h("button", { class: "danger", text: "Delete", on: { click: () => deleteBoard(state) } });
  const share = h("button", { text: "Share", "data-testid": "share", on: { click: () => shareDashboard(doc) } });
  const count = doc.tiles.length;
  const tools = can("member") ? [addBtn, editBtn, share, state.editing ? [rename, remove] : null] : null;
  return h("div", { class: "view-head" }, h("h2", { text: doc.name }), tools,
    h("div", { class: "sub", text: `${count} tile${count === 1 ? "" : "s"} · updates live` }));
}

function drawBoard(state) {
  const board = h("div", { class: `board${state.editing ? " editing" : ""}`, "data-testid": "board" });
  state.board = board;
  if (!state.doc.tiles.length) {
    mount(state.view, header(state), h("div", { class: "panel empty-state" },
      h("h3", { text: "This dashboard has no tiles yet" }),
      h("p", { text: state.byId.size ? "Add a card, a line chart, bars, a gauge or a table bound to a streaming dataset." : "Create a streaming dataset first, then add tiles bound to its fields." }),
      !can("member") ? null : state.byId.size ? h("button", { class: "primary", text: "+ Add tile", on: { click: () => addTile(state) } }) : h("a", { class: "button primary", href: "#/datasets/new", text: "Create a streaming dataset" })));
    return;
  }
  for (const spec of state.doc.tiles) {
    const tools = !can("member") ? null : h("span", { class: "tile-tools" },
      h("button", { class: "icon", text: "Edit", title: "Edit tile", on: { click: () => changeTile(state, currentSpec(state, spec.id)) } }),
      h("button", { class: "icon danger", text: "✕", title: "Remove tile", "aria-label": "Remove tile", on: { click: () => removeTile(state, currentSpec(state, spec.id)) } }));
    const dataset = state.byId.get(spec.datasetId) || null;
    const tile = createTile(spec, dataset, [alertButton(spec, dataset), tools]);
    state.tiles.push(tile);
    board.append(tile.el);
    enableDrag(state, tile);
  }
  mount(state.view, header(state), board);
}

/** A card or gauge tile's bell: set an alert on its field (tile thresholds suggest one). */
function alertButton(spec, dataset) {
  if (!dataset || !can("member") || (spec.type !== "card" && spec.type !== "gauge")) return null;
  const suggested = (spec.thresholds || []).length ? spec.thresholds[spec.thresholds.length - 1].value : spec.target;
  return h("button", { class: "tile-alert", type: "button", text: "🔔", title: "Set an alert on this tile", "aria-label": "Set an alert on this tile", "data-testid": "tile-alert",
    on: { click: () => openAlertEditor({ dataset, table: spec.table, field: spec.fields[0], threshold: suggested }) } });
}

async function startTiles(state) {
  // The newest row id of each dataset before history is read: the live feed starts
  // after it, and rows up to it come from history.
  const ids = [...new Set(state.tiles.filter((t) => t.dataset).map((t) => t.dataset.id))];
  const cursors = new Map(await Promise.all(ids.map(async (id) => {
    try { const rows = await API.readRows(id, null, { limit: 1 }); return [id, rows.length ? rows[0].id : 0]; } catch { return [id, 0]; }
  })));
  // The feed may already run in another tab, past our cursor: it says from where it
  // serves us, and history is read up to there.
  const feeds = state.feeds;
  feeds.onDeleted = (id) => {
    for (const tile of state.tiles) if (tile.dataset && tile.dataset.id === id) tile.markDeleted();
  };
  await Promise.all(ids.map(async (id) => {
    const from = await feeds.subscribe(id, cursors.get(id), (table, rows) => {
      for (const tile of state.tiles) if (tile.dataset && tile.dataset.id === id) tile.apply(table, rows);
    });
    cursors.set(id, Math.max(cursors.get(id), from));
  }));
  if (state.feeds !== feeds) return; // the dashboard was redrawn meanwhile
  await Promise.all(state.tiles.map((t) => t.load(t.dataset ? cursors.get(t.dataset.id) : 0)));
}

function redraw(state) {
  for (const tile of state.tiles) tile.dispose();
  state.feeds.closeAll();
  state.tiles = [];
  state.feeds = new LiveFeeds();
  drawBoard(state);
  startTiles(state);
  const sidebar = document.getElementById("sidebar");
  renderSidebar(sidebar, state.doc.id);
}

async function persist(state, changes) {
  const doc = { name: state.doc.name, tiles: state.doc.tiles, ...changes };
  state.doc = await API.saveDashboard(state.doc.id, doc);
  // Tiles on screen keep pointing at the saved specs (drags mutate them in place), and
  // take the places the server settled (tiles moved down out of an overlap).
  for (const tile of state.tiles) {
    tile.spec = state.doc.tiles.find((t) => t.id === tile.spec.id) || tile.spec;
    tile.el.style.gridColumn = `${tile.spec.x + 1} / span ${tile.spec.w}`;
    tile.el.style.gridRow = `${tile.spec.y + 1} / span ${tile.spec.h}`;
    tile.el.style.setProperty("--h", String(tile.spec.h));
  }
}

const currentSpec = (state, id) => state.doc.tiles.find((t) => t.id === id);

function freeRow(tiles) {
  return tiles.reduce((bottom, t) => Math.max(bottom, t.y + t.h), 0);
}

function addTile(state) {
  const datasets = [...state.byId.values()];
  if (!datasets.length) { toast("Create a streaming dataset first.", "error"); return; }
  editTile(null, datasets, async (tile) => {
    tile.y = freeRow(state.doc.tiles);
    await persist(state, { tiles: [...state.doc.tiles, tile] });
    redraw(state);
  });
}

function changeTile(state, spec) {
  editTile(spec, [...state.byId.values()], async (tile) => {
    Object.assign(tile, { x: spec.x, y: spec.y, w: spec.w, h: spec.h });
    await persist(state, { tiles: state.doc.tiles.map((t) => (t.id === spec.id ? tile : t)) });
    redraw(state);
  });
}

async function removeTile(state, spec) {
  try {
    await persist(state, { tiles: state.doc.tiles.filter((t) => t.id !== spec.id) });
    redraw(state);
  } catch (err) { toast(err.message, "error"); }
}

function deleteBoard(state) {
  openDialog((close) => {
    const form = h("form", { method: "dialog" },
      h("h3", { text: "Delete this dashboard?" }),
      h("p", { text: `“${state.doc.name}” and its tiles will be deleted. The datasets and their rows stay.` }),
      h("div", { class: "actions" }, h("button", { type: "button", text: "Cancel", on: { click: close } }), h("button", { class: "danger", type: "submit", text: "Delete" })));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      await API.deleteDashboard(state.doc.id);
      close();
      leaveDashboard();
      window.location.hash = "#/dashboards";
    });
    return form;
  });
}

/** Move by dragging the header, resize by dragging the corner; snap to grid cells. */
function enableDrag(state, tile) {
  const start = (event, mode) => {
    if (!state.editing || event.button !== 0 || event.target.closest("button")) return;
    event.preventDefault();
    const rect = state.board.getBoundingClientRect();
    const style = getComputedStyle(state.board);
    const gap = parseFloat(style.columnGap) || 12;
    const cellW = (rect.width + gap) / COLUMNS;
    const cellH = (parseFloat(style.gridAutoRows) || 84) + gap;
    const spec = tile.spec;
    const origin = { x: event.clientX, y: event.clientY, sx: spec.x, sy: spec.y, sw: spec.w, sh: spec.h };
    tile.el.classList.add("dragging");
    const move = (ev) => {
      const dx = Math.round((ev.clientX - origin.x) / cellW);
      const dy = Math.round((ev.clientY - origin.y) / cellH);
      if (mode === "move") {
        spec.x = Math.min(COLUMNS - spec.w, Math.max(0, origin.sx + dx));
        spec.y = Math.max(0, origin.sy + dy);
      } else {
        spec.w = Math.min(COLUMNS - spec.x, Math.max(1, origin.sw + dx));
        spec.h = Math.min(12, Math.max(1, origin.sh + dy));
      }
      tile.el.style.gridColumn = `${spec.x + 1} / span ${spec.w}`;
      tile.el.style.gridRow = `${spec.y + 1} / span ${spec.h}`;
    };
    const up = async () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      tile.el.classList.remove("dragging");
      if (spec.x === origin.sx && spec.y === origin.sy && spec.w === origin.sw && spec.h === origin.sh) return;
      const place = { x: spec.x, y: spec.y, w: spec.w, h: spec.h };
      // The moved tile goes first: it keeps its new place and the others make room.
      const tiles = [{ ...spec, ...place }, ...state.doc.tiles.filter((t) => t.id !== spec.id)];
      try { await persist(state, { tiles }); } catch (err) { toast(err.message, "error"); }
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  };
  const head = tile.el.querySelector(".tile-head");
  head.addEventListener("pointerdown", (e) => start(e, "move"));
  tile.el.querySelector(".tile-resize").addEventListener("pointerdown", (e) => start(e, "resize"));

  // The keyboard does the same: arrows move the focused tile, Shift+arrows resize it.
  if (state.editing) {
    head.tabIndex = 0;
    head.title = "Drag, or use the arrow keys (Shift: resize)";
  }
  let saveTimer = null;
  head.addEventListener("keydown", (event) => {
    const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[event.key];
    if (!state.editing || !step) return;
    event.preventDefault();
    const spec = tile.spec;
    if (event.shiftKey) {
      spec.w = Math.min(COLUMNS - spec.x, Math.max(1, spec.w + step[0]));
      spec.h = Math.min(12, Math.max(1, spec.h + step[1]));
    } else {
      spec.x = Math.min(COLUMNS - spec.w, Math.max(0, spec.x + step[0]));
      spec.y = Math.max(0, spec.y + step[1]);
    }
    tile.el.style.gridColumn = `${spec.x + 1} / span ${spec.w}`;
    tile.el.style.gridRow = `${spec.y + 1} / span ${spec.h}`;
    clearTimeout(saveTimer);
    saveTimer = setTimeout(async () => {
      const tiles = [{ ...spec }, ...state.doc.tiles.filter((t) => t.id !== spec.id)];
      try { await persist(state, { tiles }); } catch (err) { toast(err.message, "error"); }
    }, 400);
  });
}

/** "#/dashboards" without an id: open the first dashboard, or offer to make one. */
export async function showDashboardIndex(view) {
  leaveDashboard();
  const dashboards = await API.listDashboards();
  if (dashboards.length) {
    window.location.replace(`#/dashboards/${encodeURIComponent(dashboards[0].id)}`);
    return;
  }
  mount(view, h("div", { class: "view-head" }, h("h2", { text: "Dashboards" })),
    h("div", { class: "panel empty-state" },
      h("h3", { text: "No dashboards yet" }),
      h("p", { text: "A dashboard holds live tiles: cards, line charts, bars, gauges and tables." }),
      h("button", { class: "primary", text: "+ New dashboard", on: { click: () => newDashboard() } })));
}
