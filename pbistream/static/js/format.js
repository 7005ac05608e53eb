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

/** A value of any column type as text: DateTime in local time, booleans as True/False. */
export function formatValue(value, dataType, decimals = 2, unit = "") {
  if (value === null || value === undefined) return "—";
  if (dataType === "DateTime" && typeof value === "string") {
    const when = new Date(value);
    return Number.isNaN(when.getTime()) ? value : when.toLocaleString();
  }
  if (typeof value === "number" || typeof value === "boolean") return formatNumber(value, decimals, unit);
  return String(value);
}

export function formatTime(epochSeconds) {
  if (!epochSeconds) return "—";
  return new Date(epochSeconds * 1000).toLocaleTimeString();
}

export function formatWhen(epochSeconds) {
  if (!epochSeconds) return "never";
  const ago = Date.now() / 1000 - epochSeconds;
  if (ago < 5) return "just now";
  if (ago < 60) return `${Math.round(ago)} s ago`;
  if (ago < 3600) return `${Math.round(ago / 60)} min ago`;
  return new Date(epochSeconds * 1000).toLocaleString();
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
