// A SharedWorker that holds ONE EventSource per dataset for every tab of this origin.
//
// Why: over HTTP/1.1 a browser opens at most six connections to a host, and each
// EventSource keeps one open for good. Without sharing, a seventh dashboard tab
// would hang. Tabs talk to this worker through MessagePorts:
//   tab -> worker  {type: "subscribe", datasetId, after}   after = newest id the tab holds
//                  {type: "unsubscribe", datasetId}  {type: "bye"}
//   worker -> tab  {type: "subscribed", datasetId, position}
//                  {type: "rows", datasetId, table, rows}  {type: "status", datasetId, state}
// `position` is the newest row id the feed has passed on (or the tab's own `after` for
// a new feed): the tab reads history only after it, so history covers every row up to
// `position` and the feed every row after it. Nothing falls between the two.

const feeds = new Map(); // datasetId -> { source, ports: Set, position, delay }

function post(port, message) {
  try { port.postMessage(message); } catch { /* the tab is gone */ }
}

function broadcast(feed, message) {
  for (const port of feed.ports) post(port, message);
}

function status(datasetId, feed) {
  const state = feed.source && feed.source.readyState === EventSource.OPEN ? "live" : "reconnecting";
  broadcast(feed, { type: "status", datasetId, state });
}

function open(datasetId, feed) {
  const url = `/api/datasets/${encodeURIComponent(datasetId)}/live?after=${encodeURIComponent(feed.position)}`;
  const source = new EventSource(url);
  feed.source = source;
  source.addEventListener("open", () => { feed.delay = 0; status(datasetId, feed); });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself (with Last-Event-ID) unless the server answered
    // an HTTP error (404 once the dataset is deleted): then retry, backing off to 30 s.
    if (source.readyState === EventSource.CLOSED && feeds.get(datasetId) === feed) {
      feed.delay = Math.min(30000, (feed.delay || 1000) * 2);
      setTimeout(() => { if (feeds.get(datasetId) === feed && feed.ports.size) open(datasetId, feed); }, feed.delay);
    }
    status(datasetId, feed);
  });
  source.addEventListener("rows", (event) => {
    let batch;
    try { batch = JSON.parse(event.data); } catch { return; }
    if (!batch || !Array.isArray(batch.rows) || !batch.rows.length) return;
    feed.position = Math.max(feed.position, batch.rows[batch.rows.length - 1].id);
    broadcast(feed, { type: "rows", datasetId, table: batch.table, rows: batch.rows });
  });
}

function subscribe(port, datasetId, after) {
  let feed = feeds.get(datasetId);
  if (!feed) {
    feed = { source: null, ports: new Set([port]), position: after || 0, delay: 0 };
    feeds.set(datasetId, feed);
    post(port, { type: "subscribed", datasetId, position: feed.position });
    open(datasetId, feed);
    return;
  }
  feed.ports.add(port);
  post(port, { type: "subscribed", datasetId, position: feed.position });
  status(datasetId, feed);
}

function unsubscribe(port, datasetId) {
  const feed = feeds.get(datasetId);
  if (!feed) return;
  feed.ports.delete(port);
  if (!feed.ports.size) {
    if (feed.source) feed.source.close();
    feeds.delete(datasetId);
  }
}

self.addEventListener("connect", (event) => {
  const port = event.ports[0];
  port.addEventListener("message", (message) => {
    const msg = message.data || {};
    if (msg.type === "subscribe") subscribe(port, msg.datasetId, msg.after);
    else if (msg.type === "unsubscribe") unsubscribe(port, msg.datasetId);
    else if (msg.type === "bye") for (const id of [...feeds.keys()]) unsubscribe(port, id);
  });
  port.start();
});
