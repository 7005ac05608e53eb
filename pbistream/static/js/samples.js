// Sample code for a dataset's Push URL: the seed article's Python snippet with the URL
// filled in, curl, PowerShell, and the sample JSON Power BI shows. Plain text only.

const SAMPLE = { String: "ABC XYZ", Double: 12345, Int64: 12345, Decimal: 12345, Boolean: true };

function sampleRow(columns, now) {
  const row = {};
  for (const c of columns) row[c.name] = c.dataType === "DateTime" ? now : SAMPLE[c.dataType] ?? "ABC XYZ";
  return row;
}

export function sampleJson(columns) {
  const now = new Date().toISOString();
  return JSON.stringify([sampleRow(columns, now)], null, 2);
}

const py = (v) => (v === true ? "True" : v === false ? "False" : JSON.stringify(v));

export function pythonSnippet(url, columns) {
  const lines = columns.map((c, i) => {
    const value = c.dataType === "DateTime" ? "now" : py(SAMPLE[c.dataType] ?? "ABC XYZ");
    return `    ${JSON.stringify(c.name)}: ${value}${i < columns.length - 1 ? "," : ""}`;
  });
  return `from datetime import datetime
import requests
import json

# copy "Push URL" from "API Info" in Power BI
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
  const fields = columns.map((c) => {
    const v = c.dataType === "DateTime" ? now : SAMPLE[c.dataType] ?? "ABC XYZ";
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
