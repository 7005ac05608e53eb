// The server's JSON API. The session cookie travels with every same-origin request.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.assign("/ui/");
    throw new ApiError(401, "Unauthorized", "Your session ended; open the login link again.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    const detail = (err.details && err.details[0] && err.details[0].message) || "";
    const message = err.message || detail || err.code || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, err.code || String(response.status), message);
  }
  return data;
}

const enc = encodeURIComponent;

export const listDatasets = async () => {
  const data = await api("GET", "/api/datasets");
  return Array.isArray(data) ? data : data.value || data.datasets || [];
};
export const getDataset = (id) => api("GET", `/api/datasets/${enc(id)}`);
export const rotateKey = (id) => api("POST", `/api/datasets/${enc(id)}/rotate-key`);
export const createDataset = (definition) => api("POST", "/v1.0/myorg/datasets", definition);
export const deleteDataset = (ds) => {
  const group = ds.groupId || ds.group_id;
  const base = group ? `/v1.0/myorg/groups/${enc(group)}` : "/v1.0/myorg";
  return api("DELETE", `${base}/datasets/${enc(ds.id)}`);
};

/** Rows of one table, newest first unless `order` says otherwise. */
export async function readRows(datasetId, table, { limit = 1, order = "desc", after, since } = {}) {
  const q = new URLSearchParams({ limit: String(limit), order });
  if (table) q.set("table", table);
  if (after !== undefined && after !== null) q.set("after", String(after));
  if (since !== undefined) q.set("since", String(since));
  const data = await api("GET", `/api/datasets/${enc(datasetId)}/rows?${q}`);
  return (data && data.rows) || [];
}

export function readSeries(datasetId, table, fields, since, points, timeField) {
  const q = new URLSearchParams({ table, since: String(since), points: String(points) });
  for (const f of fields) q.append("field", f);
  if (timeField) q.set("time", timeField);
  return api("GET", `/api/datasets/${enc(datasetId)}/series?${q}`);
}

export const listDashboards = async () => (await api("GET", "/api/dashboards")).value;
export const getDashboard = (id) => api("GET", `/api/dashboards/${enc(id)}`);
export const createDashboard = (doc) => api("POST", "/api/dashboards", doc);
export const saveDashboard = (id, doc) => api("PUT", `/api/dashboards/${enc(id)}`, doc);
export const deleteDashboard = (id) => api("DELETE", `/api/dashboards/${enc(id)}`);
