// ECharts helpers: one place that decides how charts look and how tooltips are built.
//
// Tooltips are built as DOM elements with textContent (ECharts accepts an element
// from a formatter), so a field name or value can never be read as HTML.

import { h } from "./dom.js";
import { formatNumber } from "./format.js";

export const PALETTE = ["#118dff", "#12239e", "#e66c37", "#6b007b", "#e044a7", "#744ec2", "#d9b300", "#d64550"];

export function makeChart(container) {
  // eslint-disable-next-line no-undef
  const chart = echarts.init(container, null, { renderer: "canvas" });
  const observer = new ResizeObserver(() => chart.resize());
  observer.observe(container);
  return {
    chart,
    dispose() {
      observer.disconnect();
      chart.dispose();
    },
  };
}

/** A tooltip formatter returning a DOM element (axis-triggered: `params` is a list). */
export function tooltipElement(decimals = 2, titleOf = (p) => p.axisValueLabel) {
  return (params) => {
    const list = Array.isArray(params) ? params : [params];
    const box = h("div", { class: "chart-tip" });
    if (list.length) box.append(h("div", { style: { fontWeight: "600", marginBottom: "4px" }, text: titleOf(list[0]) ?? "" }));
    for (const p of list) {
      const value = Array.isArray(p.value) ? p.value[p.value.length - 1] : p.value;
      box.append(
        h("div", { style: { display: "flex", gap: "8px", alignItems: "center" } },
          h("span", { style: { width: "8px", height: "8px", borderRadius: "50%", background: String(p.color || "#999") } }),
          h("span", { text: p.seriesName ?? "" }),
          h("span", { style: { marginLeft: "auto", fontWeight: "600" }, text: formatNumber(value, decimals) })));
    }
    return box;
  };
}

export const baseOption = () => ({
  animation: false,
  color: PALETTE,
  textStyle: { fontFamily: "Segoe UI, system-ui, sans-serif" },
  grid: { left: 8, right: 16, top: 30, bottom: 8, containLabel: true },
  tooltip: { trigger: "axis", confine: true, formatter: tooltipElement() },
  legend: { top: 0, left: 0, type: "scroll", icon: "circle", itemWidth: 8, itemHeight: 8, textStyle: { fontSize: 11 } },
});

/** Keep at most `limit` points per series: min and max of each time bucket. */
export function compactMinMax(points, limit) {
  if (points.length <= limit) return points;
  const buckets = Math.max(1, Math.floor(limit / 2));
  const start = points[0][0];
  const span = points[points.length - 1][0] - start || 1;
  const out = [];
  let current = -1, low = null, high = null;
  const flush = () => {
    if (low === null) return;
    if (low === high) out.push(low);
    else if (low[0] <= high[0]) out.push(low, high);
    else out.push(high, low);
  };
  for (const p of points) {
    const index = Math.min(buckets - 1, Math.floor(((p[0] - start) / span) * buckets));
    if (index !== current) { flush(); current = index; low = p; high = p; }
    else if (p[1] < low[1]) low = p;
    else if (p[1] > high[1]) high = p;
  }
  flush();
  return out;
}
