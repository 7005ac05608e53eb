// The six tile types. Each tile: fills itself from history (`load`), then applies live
// rows (`apply`), ignoring any row id it already holds, so history and the live feed
// can overlap without double counting.

import { readRows, readSeries } from "./api.js";
import { baseOption, compactMinMax, makeChart, PALETTE, tooltipElement } from "./charts.js";
import { h, mount } from "./dom.js";
import { formatAxisTime, formatClock, formatNumber, formatTime, formatValue, thresholdColor } from "./format.js";

const TYPE_LABEL = { card: "Card", line: "Line chart", bar: "Clustered bar", column: "Clustered column", gauge: "Gauge", table: "Table" };
export const TILE_TYPES = Object.keys(TYPE_LABEL);
export const tileTypeLabel = (type) => TYPE_LABEL[type] || type;

const asNumber = (v) => (typeof v === "boolean" ? (v ? 1 : 0) : typeof v === "number" && Number.isFinite(v) ? v : null);

class Tile {
  constructor(spec, dataset, tools) {
    this.spec = spec;
    this.dataset = dataset;
    this.lastId = 0;
    this.loaded = false;
    this.pending = [];
    this.frameQueued = false;
    const table = dataset && (dataset.tables || []).find((t) => t.name === spec.table);
    this.columns = new Map(((table && table.columns) || []).map((c) => [c.name, c.dataType]));
    this.body = h("div", { class: "tile-body" });
    const sub = dataset ? `${dataset.name} · ${spec.fields.join(", ")}` : "dataset deleted";
    this.el = h("section", {
      class: `tile tile-${spec.type}`,
      "data-testid": "tile",
      "data-tile-type": spec.type,
      "data-tile-id": spec.id,
      "aria-label": spec.title || tileTypeLabel(spec.type),
    },
      h("header", { class: "tile-head" },
        h("h3", { class: "tile-title", text: spec.title || tileTypeLabel(spec.type) }),
        h("span", { class: "tile-sub", text: sub, title: sub }),
        tools),
      this.body,
      h("div", { class: "tile-resize", "aria-hidden": "true" }));
    this.el.style.gridColumn = `${spec.x + 1} / span ${spec.w}`;
    this.el.style.gridRow = `${spec.y + 1} / span ${spec.h}`;
    this.el.style.setProperty("--h", String(spec.h)); // the narrow layout stacks by height
  }

  /** Fill from history. `cursor` is the newest row id when the page asked for it. */
  async load(cursor) {
    if (!this.dataset) {
      mount(this.body, h("div", { class: "tile-error", text: "This tile's dataset was deleted. Edit or remove the tile." }));
      return;
    }
    try {
      const lastSeen = await this.fill();
      this.lastId = Math.max(cursor || 0, lastSeen || 0);
    } catch (err) {
      mount(this.body, h("div", { class: "tile-error", text: `Could not load history: ${err.message}` }));
      this.lastId = cursor || 0;
    }
    this.loaded = true;
    const queued = this.pending;
    this.pending = [];
    for (const [table, rows] of queued) this.apply(table, rows);
    this.render();
  }

  /** New rows from the live feed (any table of the dataset). */
  apply(table, rows) {
    if (table !== this.spec.table) return;
    if (!this.loaded) { this.pending.push([table, rows]); return; }
    const fresh = rows.filter((r) => r.id > this.lastId);
    if (!fresh.length) return;
    this.lastId = fresh[fresh.length - 1].id;
    this.el.dataset.lastId = String(this.lastId);
    this.update(fresh);
    this.schedule();
  }

  schedule() {
    // Coalesce many rows a second into one draw per frame; a hidden tab has no frames,
    // so fall back to a timer there.
    if (this.frameQueued) return;
    this.frameQueued = true;
    const run = () => { this.frameQueued = false; this.render(); };
    if (document.hidden) setTimeout(run, 250);
    else requestAnimationFrame(run);
  }

  latestValue(rows, field) {
    for (let i = rows.length - 1; i >= 0; i--) {
      const v = rows[i].data ? rows[i].data[field] : undefined;
      if (v !== null && v !== undefined) return { value: v, at: rows[i].received_at };
    }
    return null;
  }

  /** The dataset was deleted while on screen: say so instead of showing stale values. */
  markDeleted() {
    this.dispose();
    this.dataset = null;
    mount(this.body, h("div", { class: "tile-error", text: "This tile's dataset was deleted. Edit or remove the tile." }));
  }

  async fill() { return 0; }
  update() {}
  render() {}
  dispose() {}
}

// Card and gauge show one field's latest value: they fill and update the same way.
class LatestValueTile extends Tile {
  async fill() {
    const rows = await readRows(this.dataset.id, this.spec.table, { limit: 50 });
    this.update(rows.slice().reverse());
    return rows.length ? rows[0].id : 0;
  }

  update(rows) {
    const found = this.latestValue(rows, this.spec.fields[0]);
    if (found) this.current = found;
  }
}

class CardTile extends LatestValueTile {
  constructor(spec, dataset, tools) {
    super(spec, dataset, tools);
    this.valueEl = h("div", { class: "card-value", "data-testid": "tile-value", text: "—" });
    this.timeEl = h("div", { class: "card-time", text: "" });
    mount(this.body, h("div", { class: "card-body" }, this.valueEl, h("div", { class: "card-label", text: spec.fields[0] }), this.timeEl));
    this.current = null;
  }

  render() {
    const s = this.spec;
    if (!this.current) return;
    const type = this.columns.get(s.fields[0]);
    this.valueEl.textContent = formatValue(this.current.value, type, s.decimals ?? 2, s.unit || "");
    this.valueEl.style.color = thresholdColor(this.current.value, s.thresholds, "");
    this.el.dataset.value = String(this.current.value);
    this.timeEl.textContent = `as of ${formatTime(this.current.at)}`;
  }
}

class GaugeTile extends LatestValueTile {
  constructor(spec, dataset, tools) {
    super(spec, dataset, tools);
    this.box = h("div", { class: "chart" });
    this.footer = h("div", { class: "card-time", style: { position: "absolute", left: "14px", right: "14px", bottom: "6px", textAlign: "center" } });
    mount(this.body, this.box, this.footer);
    this.current = null;
    const parts = [`min ${formatNumber(spec.min)}`, ...(spec.target !== undefined ? [`target ${formatNumber(spec.target)}`] : []), `max ${formatNumber(spec.max)}`];
    this.footer.textContent = parts.join("  ·  ");
  }

  async fill() {
    this.view = makeChart(this.box);
    return super.fill();
  }

  render() {
    if (!this.view) return;
    const s = this.spec;
    const value = this.current ? asNumber(this.current.value) : null;
    const color = thresholdColor(value, s.thresholds, PALETTE[0]);
    const ring = { startAngle: 200, endAngle: -20, min: s.min, max: s.max, radius: "92%", center: ["50%", "60%"] };
    const hidden = { axisTick: { show: false }, splitLine: { show: false }, axisLabel: { show: false }, title: { show: false }, anchor: { show: false } };
    const series = [{
      type: "gauge", ...ring, ...hidden,
      progress: { show: true, width: 18, itemStyle: { color } },
      axisLine: { lineStyle: { width: 18, color: [[1, "#edebe9"]] } },
      pointer: { show: false },
      detail: { offsetCenter: [0, "-5%"], fontSize: 26, fontWeight: 600, color: "#252423", formatter: () => (value === null ? "—" : formatNumber(value, s.decimals ?? 2, s.unit || "")) },
      data: [{ value: value ?? s.min }],
    }];
    if (s.target !== undefined) {
      series.push({
        type: "gauge", ...ring, ...hidden, axisLine: { show: false }, detail: { show: false },
        pointer: { show: true, icon: "rect", width: 3, length: "22%", offsetCenter: [0, "-66%"], itemStyle: { color: "#252423" } },
        data: [{ value: s.target }],
      });
    }
    this.view.chart.setOption({ animation: false, series }, { notMerge: true });
    if (value !== null) this.el.dataset.value = String(value);
  }

  dispose() { this.view && this.view.dispose(); }
}

class LineTile extends Tile {
  constructor(spec, dataset, tools) {
    super(spec, dataset, tools);
    this.box = h("div", { class: "chart" });
    mount(this.body, this.box);
    this.points = Object.fromEntries(spec.fields.map((f) => [f, []]));
  }

  width() { return Math.max(100, Math.round(this.box.clientWidth || 400)); }

  async fill() {
    this.view = makeChart(this.box);
    const since = Date.now() / 1000 - this.spec.windowSeconds;
    const data = await readSeries(this.dataset.id, this.spec.table, this.spec.fields, since, this.width(), this.spec.timeField);
    for (const f of this.spec.fields) this.points[f] = (data.series[f] || []).map(([t, v]) => [t * 1000, v]);
    // Slide the time window even when no row arrives (a local redraw, not a request).
    this.ticker = setInterval(() => this.schedule(), 1000);
    return data.lastId || 0;
  }

  /** The x of a row in ms: its arrival time, or its `timeField` (a DateTime). */
  x(row) {
    if (!this.spec.timeField) return row.received_at * 1000;
    const t = Date.parse(row.data[this.spec.timeField]);
    return Number.isNaN(t) ? null : t;
  }

  update(rows) {
    for (const f of this.spec.fields) {
      const list = this.points[f];
      for (const r of rows) {
        const v = asNumber(r.data[f]);
        const x = this.x(r);
        if (v === null || x === null) continue;
        // A device's clock may step back: keep the points in time order.
        if (list.length && x < list[list.length - 1][0]) this.unsorted = true;
        list.push([x, v]);
      }
    }
  }

  render() {
    if (!this.view) return;
    if (this.unsorted) {
      for (const f of this.spec.fields) this.points[f].sort((a, b) => a[0] - b[0]);
      this.unsorted = false;
    }
    // The window ends now, or, on a DateTime axis, at the newest point (so a device
    // whose clock disagrees with ours still shows its last minutes).
    let now = Date.now();
    if (this.spec.timeField) {
      const ends = this.spec.fields.map((f) => this.points[f].at(-1)?.[0]).filter((t) => t !== undefined);
      if (ends.length) now = Math.max(...ends);
    }
    const from = now - this.spec.windowSeconds * 1000;
    const limit = this.width() * 4;
    for (const f of this.spec.fields) {
      let list = this.points[f];
      let drop = 0;
      while (drop < list.length && list[drop][0] < from) drop++;
      if (drop) list = list.slice(drop);
      this.points[f] = compactMinMax(list, limit);
    }
    // Until the window has filled, span the data there is (as Power BI's streaming
    // line does) rather than squeeze it against the right edge.
    const starts = this.spec.fields.map((f) => this.points[f][0]?.[0]).filter((t) => t !== undefined);
    const left = starts.length ? Math.max(from, Math.min(...starts)) : from;
    this.view.chart.setOption({
      ...baseOption(),
      xAxis: {
        type: "time", min: left, max: now, splitLine: { show: false },
        // Our clock, not ECharts' own 24-hour one: the same as the cards and tables.
        axisLabel: { hideOverlap: true, fontSize: 11, formatter: (ms) => formatAxisTime(ms, this.spec.windowSeconds) },
      },
      yAxis: { type: "value", scale: true, axisLabel: { fontSize: 11 }, splitLine: { lineStyle: { color: "#f3f2f1" } } },
      tooltip: { trigger: "axis", confine: true, formatter: tooltipElement(2, (p) => formatClock(p.value[0])) },
      series: this.spec.fields.map((f) => ({ type: "line", name: f, showSymbol: false, data: this.points[f], lineStyle: { width: 2 } })),
    }, { notMerge: true, lazyUpdate: true });
  }

  dispose() { clearInterval(this.ticker); this.view && this.view.dispose(); }
}

class BarTile extends Tile {
  constructor(spec, dataset, tools) {
    super(spec, dataset, tools);
    this.box = h("div", { class: "chart" });
    mount(this.body, this.box);
    this.byCategory = new Map(); // category -> {field: value}
  }

  async fill() {
    this.view = makeChart(this.box);
    const rows = await readRows(this.dataset.id, this.spec.table, { limit: this.spec.axis ? 500 : 50 });
    this.update(rows.slice().reverse());
    return rows.length ? rows[0].id : 0;
  }

  update(rows) {
    const s = this.spec;
    for (const r of rows) {
      if (!s.axis) {
        const entry = this.byCategory.get("") || {};
        for (const f of s.fields) if (asNumber(r.data[f]) !== null) entry[f] = asNumber(r.data[f]);
        this.byCategory.set("", entry);
        continue;
      }
      const raw = r.data[s.axis];
      if (raw === null || raw === undefined) continue;
      const key = String(raw);
      const entry = this.byCategory.get(key) || {};
      for (const f of s.fields) if (asNumber(r.data[f]) !== null) entry[f] = asNumber(r.data[f]);
      this.byCategory.delete(key); // re-insert: newest categories last
      this.byCategory.set(key, entry);
      if (this.byCategory.size > 30) this.byCategory.delete(this.byCategory.keys().next().value);
    }
  }

  render() {
    if (!this.view) return;
    const s = this.spec;
    const horizontal = s.type === "bar";
    let categories, series;
    if (!s.axis) {
      const entry = this.byCategory.get("") || {};
      categories = s.fields;
      series = [{ type: "bar", name: "Latest", data: s.fields.map((f) => ({ value: entry[f] ?? null, itemStyle: { color: PALETTE[s.fields.indexOf(f) % PALETTE.length] } })), barMaxWidth: 48 }];
    } else {
      categories = [...this.byCategory.keys()].sort();
      series = s.fields.map((f) => ({ type: "bar", name: f, data: categories.map((c) => this.byCategory.get(c)[f] ?? null), barMaxWidth: 36 }));
    }
    const catAxis = { type: "category", data: categories, axisLabel: { fontSize: 11, hideOverlap: true }, axisTick: { show: false } };
    const valAxis = { type: "value", axisLabel: { fontSize: 11 }, splitLine: { lineStyle: { color: "#f3f2f1" } } };
    this.view.chart.setOption({
      ...baseOption(),
      legend: { ...baseOption().legend, show: Boolean(s.axis) },
      tooltip: { trigger: "axis", confine: true, axisPointer: { type: "shadow" }, formatter: tooltipElement(2) },
      xAxis: horizontal ? valAxis : catAxis,
      yAxis: horizontal ? { ...catAxis, inverse: true } : valAxis,
      series,
    }, { notMerge: true, lazyUpdate: true });
  }

  dispose() { this.view && this.view.dispose(); }
}

class TableTile extends Tile {
  constructor(spec, dataset, tools) {
    super(spec, dataset, tools);
    this.tbody = h("tbody");
    const head = h("tr", {}, h("th", { text: "Time" }), spec.fields.map((f) => h("th", { text: f, title: f })));
    const table = h("table", {}, h("thead", {}, head), this.tbody);
    mount(this.body, h("div", { class: "rows-table" }, table));
    this.rows = [];
    this.freshIds = new Set();
  }

  async fill() {
    const rows = await readRows(this.dataset.id, this.spec.table, { limit: this.spec.rows });
    this.rows = rows;
    return rows.length ? rows[0].id : 0;
  }

  update(rows) {
    this.freshIds = new Set(rows.map((r) => r.id));
    this.rows = [...rows.slice().reverse(), ...this.rows].slice(0, this.spec.rows);
  }

  render() {
    const s = this.spec;
    mount(this.tbody, this.rows.map((r) => h("tr", { class: this.freshIds.has(r.id) ? "fresh" : "" },
      h("td", { text: formatTime(r.received_at) }),
      s.fields.map((f) => {
        const text = formatValue(r.data[f], this.columns.get(f));
        return h("td", { text, title: text });
      }))));
    this.freshIds = new Set();
  }
}

const KINDS = { card: CardTile, gauge: GaugeTile, line: LineTile, bar: BarTile, column: BarTile, table: TableTile };

/** Build the view of one tile spec; `dataset` is null when it was deleted. */
export function createTile(spec, dataset, tools) {
  const Kind = KINDS[spec.type] || CardTile;
  return new Kind(spec, dataset, tools);
}
