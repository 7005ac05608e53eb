// A SharedWorker (a module) holding ONE live connection for every tab of this origin.
//
// Why: over HTTP/1.1 a browser opens at most six connections to a server, and an
// EventSource keeps one open for good: one per tab would hang the seventh tab. Tabs
// talk to this worker through MessagePorts:
//   tab -> worker  {type: "subscribe", datasetId, after}   after = the tab's cursor
//                  {type: "unsubscribe", datasetId}  {type: "bye"}
//   worker -> tab  {type: "subscribed", datasetId, position}
//                  {type: "rows", datasetId, table, rows}  {type: "status", state}
//                  {type: "deleted", datasetId}
// `position` is the newest row id the feed has passed on for that dataset (or the tab's
// own `after` when the dataset is new): the tab reads history only after it answers,
// so history covers every row up to `position` and the feed every row after it.

import { MergedFeed } from "./feed_core.js";

const ports = new Map(); // datasetId -> Set of ports
const everyone = new Set();

function post(port, message) {
  try { port.postMessage(message); } catch { /* the tab is gone */ }
}

const feed = new MergedFeed({
  rows: (datasetId, table, rows) => {
    for (const port of ports.get(datasetId) || []) post(port, { type: "rows", datasetId, table, rows });
  },
  status: (state) => { for (const port of everyone) post(port, { type: "status", state }); },
  deleted: (datasetId) => {
    for (const port of ports.get(datasetId) || []) post(port, { type: "deleted", datasetId });
  },
});

function unsubscribe(port, datasetId) {
  const set = ports.get(datasetId);
  if (!set) return;
  set.delete(port);
  if (!set.size) {
    ports.delete(datasetId);
    feed.remove(datasetId);
  }
}

self.addEventListener("connect", (event) => {
  const port = event.ports[0];
  everyone.add(port);
  port.addEventListener("message", (message) => {
    const msg = message.data || {};
    if (msg.type === "subscribe") {
      if (!ports.has(msg.datasetId)) ports.set(msg.datasetId, new Set());
      ports.get(msg.datasetId).add(port);
      const position = feed.add(msg.datasetId, msg.after);
      post(port, { type: "subscribed", datasetId: msg.datasetId, position });
      post(port, { type: "status", state: feed.state });
    } else if (msg.type === "unsubscribe") {
      unsubscribe(port, msg.datasetId);
    } else if (msg.type === "bye") {
      everyone.delete(port);
      for (const id of [...ports.keys()]) unsubscribe(port, id);
    }
  });
  port.start();
});
