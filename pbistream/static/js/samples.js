// Sample code for a dataset's Push URL: the seed article's Python snippet with the URL
// filled in, curl, PowerShell, and the sample JSON Power BI shows. Plain text only.

// A plausible value for a field, from its name where it says what it holds, so the
// sample row reads like data (and each number differs, so a mixed-up field shows).
const NUMBER_BY_NAME = [
  [/temp/i, 21.7], [/humid/i, 48.2], [/press/i, 1013.2], [/volt/i, 229.8], [/(current|amp)/i, 4.3],
  [/(power|watt)/i, 1250.5], [/(speed|velocity)/i, 12.4], [/(price|cost|amount|total)/i, 19.99],
  [/(percent|pct|ratio|level)/i, 73.5], [/lat/i, 47.61], [/(lon|lng)/i, -122.33],
  [/(count|qty|quantity|visits|orders)/i, 42],
];
const TEXT_BY_NAME = [
  [/(site|location|city|region|zone)/i, "North"], [/(status|state)/i, "OK"],
  [/(device|sensor|machine|host)/i, "sensor-01"], [/(user|name)/i, "Alice"], [/(unit)/i, "°C"],
];
const byName = (table, name) => (table.find(([pattern]) => pattern.test(name)) || [])[1];

function sampleValue(column, index, now) {
  const name = String(column.name);
  switch (column.dataType) {
    case "DateTime": return now;
    case "Boolean": return true;
    case "Int64": return Math.round(byName(NUMBER_BY_NAME, name) ?? 10 * (index + 1));
    case "Double":
    case "Decimal": return byName(NUMBER_BY_NAME, name) ?? Math.round((12.5 + 7.25 * index) * 100) / 100;
    default: return byName(TEXT_BY_NAME, name) ?? `example ${index + 1}`;
  }
}

function sampleRow(columns, now) {
  const row = {};
  columns.forEach((c, i) => { row[c.name] = sampleValue(c, i, now); });
  return row;
}

export function sampleJson(columns) {
  const now = new Date().toISOString();
  return JSON.stringify([sampleRow(columns, now)], null, 2);
}

const py = (v) => (v === true ? "True" : v === false ? "False" : JSON.stringify(v));

export function pythonSnippet(url, columns) {
  const lines = columns.map((c, i) => {
    const value = c.dataType === "DateTime" ? "now" : py(sampleValue(c, i, ""));
    return `    ${JSON.stringify(c.name)}: ${value}${i < columns.length - 1 ? "," : ""}`;
  });
  return `from datetime import datetime
import requests
import json

# this dataset's Push URL (pbistream: Datasets, then API info); keep it secret
url = ${JSON.stringify(url)}

# timestamps should be formatted like this
now = datetime.strftime(
  datetime.now(),
  "%Y-%m-%dT%H:%M:%S"
  )

# data dict must be contained in a list
data = [
  {
${lines.join("\n")}
    }
  ]

# post/push data to the streaming API
headers = {
  "Content-Type": "application/json"
  }
response = requests.request(
    method="POST",
    url=url,
    headers=headers,
    data=json.dumps(data)
)
`;
}

const shellQuote = (text) => `'${text.replace(/'/g, "'\\''")}'`;

export function curlSnippet(url, columns) {
  const body = JSON.stringify([sampleRow(columns, new Date().toISOString())]);
  return `curl -X POST ${shellQuote(url)} \\\n  -H 'Content-Type: application/json' \\\n  -d ${shellQuote(body)}\n`;
}

// PowerShell reads the typographic quotes “ ” „ as a plain " too: a column name holding
// one would end the string and run the rest as code once the snippet is pasted.
const psQuote = (text) => `"${String(text).replace(/[`"$\u201C\u201D\u201E]/g, (m) => "`" + m)}"`;

export function powershellSnippet(url, columns) {
  const now = new Date().toISOString();
  const fields = columns.map((c, i) => {
    const v = sampleValue(c, i, now);
    const text = typeof v === "boolean" ? (v ? "$true" : "$false") : typeof v === "number" ? String(v) : psQuote(v);
    return `${psQuote(c.name)} = ${text}`;
  });
  return `$endpoint = ${psQuote(url)}
$payload = @{
${fields.map((f) => `  ${f}`).join("\n")}
}
Invoke-RestMethod -Method Post -Uri "$endpoint" -ContentType "application/json" -Body (ConvertTo-Json @($payload))
`;
}
