// Turning stored values into display text (always plain strings, never markup).

export function formatNumber(value, decimals = 2, unit = "") {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value !== "number") return String(value);
  const text = value.toLocaleString(undefined, {
    minimumFractionDigits: Number.isInteger(value) ? 0 : Math.min(decimals, 2),
    maximumFractionDigits: decimals,
  });
  return unit ? `${text} ${unit}` : text;
}

// THE clock of the UI: cards, tables, chart axes and tooltips all read times through
// these two formatters, so a page never shows "14:05" beside "2:05 PM". The browser's
// locale decides between the 12- and 24-hour clock, once, for all of them.
const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", second: "2-digit" });
const DATE_AND_CLOCK = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit", second: "2-digit",
});
const DAY_AND_HOUR = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });

/** A time of day (epoch milliseconds), in the one clock style of the UI. */
export function formatClock(ms) {
  return CLOCK.format(new Date(ms));
}

/** A date and time (epoch milliseconds), in the same clock style. */
export function formatDateTime(ms) {
  return DATE_AND_CLOCK.format(new Date(ms));
}

/** A chart's time-axis label: the time of day, with the day when the window spans days. */
export function formatAxisTime(ms, windowSeconds = 0) {
  return windowSeconds > 12 * 3600 ? DAY_AND_HOUR.format(new Date(ms)) : formatClock(ms);
}

// Power BI's streaming form says Text/Number; its REST API and tile editor say
// String/Double. Show both, the first as people know it from the form.
const TYPE_NAMES = { String: "Text", Double: "Number", Int64: "Whole number", Decimal: "Fixed decimal", DateTime: "DateTime", Boolean: "Boolean" };

/** A column type as people know it: "Number (Double)", "Text (String)", "DateTime". */
export function typeLabel(dataType) {
  const name = TYPE_NAMES[dataType];
  return !name || name === dataType ? String(dataType) : `${name} (${dataType})`;
}

/** A value of any column type as text: DateTime in local time, booleans as True/False. */
export function formatValue(value, dataType, decimals = 2, unit = "") {
  if (value === null || value === undefined) return "—";
  if (dataType === "DateTime" && typeof value === "string") {
    const when = new Date(value);
    return Number.isNaN(when.getTime()) ? value : formatDateTime(when.getTime());
  }
  if (typeof value === "number" || typeof value === "boolean") return formatNumber(value, decimals, unit);
  return String(value);
}

export function formatTime(epochSeconds) {
  if (!epochSeconds) return "—";
  return formatClock(epochSeconds * 1000);
}

export function formatWhen(epochSeconds) {
  if (!epochSeconds) return "never";
  const ago = Date.now() / 1000 - epochSeconds;
  if (ago < 5) return "just now";
  if (ago < 60) return `${Math.round(ago)} s ago`;
  if (ago < 3600) return `${Math.round(ago / 60)} min ago`;
  return formatDateTime(epochSeconds * 1000);
}

export function formatCount(n) {
  return typeof n === "number" ? n.toLocaleString() : "—";
}

/** The colour of the highest threshold at or below `value` (thresholds sorted ascending). */
export function thresholdColor(value, thresholds, fallback) {
  let color = fallback;
  if (typeof value !== "number") return color;
  for (const t of thresholds || []) if (value >= t.value) color = t.color;
  return color;
}
