// The live feed: one EventSource per dataset, shared by every tile bound to it, and,
// through a SharedWorker (live_worker.js), by every tab of the dashboard.
//
// The server replays stored rows with id > `after` (or > Last-Event-ID, which the
// browser sends by itself when it reconnects), so a dropped connection or a server
// restart never leaves a gap: the missed rows arrive first, then new ones. Tiles
// ignore rows they already hold (by id), so history and the live feed may overlap.

function setStatus(state, label) {
  const el = document.getElementById("live-status");
  if (!el) return;
  el.dataset.state = state;
  el.querySelector(".label").textContent = label;
}

let worker = null; // the shared worker's port, opened once per page
const workerListeners = new Set();

function sharedPort() {
  if (worker || typeof SharedWorker === "undefined") return worker;
  try {
    const shared = new SharedWorker("/static/js/live_worker.js", { name: "pbistream-live" });
    worker = shared.port;
    worker.addEventListener("message", (event) => { for (const fn of workerListeners) fn(event.data); });
    worker.start();
    // Closing the tab cannot be seen by the worker: say goodbye so it can drop our feeds.
    window.addEventListener("pagehide", () => worker.postMessage({ type: "bye" }));
  } catch {
    worker = null;
  }
  return worker;
}

export class LiveFeeds {
  constructor() {
    this.feeds = new Map(); // datasetId -> { listeners: Set, state, source? }
    this.onMessage = (msg) => this.#fromWorker(msg);
    this.port = sharedPort();
    if (this.port) workerListeners.add(this.onMessage);
    this.waiting = new Map(); // datasetId -> resolve(position)
  }

  /**
   * Listen to a dataset's new rows after row id `after`. Resolves to the row id from
   * which the listener is served: read history only up to it (it may be newer than
   * `after` when another tab already follows this dataset).
   */
  subscribe(datasetId, after, listener) {
    let feed = this.feeds.get(datasetId);
    if (feed) {
      feed.listeners.add(listener);
      return Promise.resolve(feed.position);
    }
    feed = { listeners: new Set([listener]), state: "reconnecting", position: after || 0 };
    this.feeds.set(datasetId, feed);
    if (!this.port) {
      this.#open(datasetId, feed, after || 0);
      return Promise.resolve(feed.position);
    }
    return new Promise((resolve) => {
      this.waiting.set(datasetId, (position) => { feed.position = position; resolve(position); });
      this.port.postMessage({ type: "subscribe", datasetId, after: after || 0 });
    });
  }

  #dispatch(feed, table, rows) {
    for (const listener of feed.listeners) {
      try { listener(table, rows); } catch (err) { console.error("tile update failed", err); }
    }
  }

  #fromWorker(msg) {
    const feed = this.feeds.get(msg.datasetId);
    if (!feed) return;
    if (msg.type === "subscribed") {
      const resolve = this.waiting.get(msg.datasetId);
      this.waiting.delete(msg.datasetId);
      if (resolve) resolve(msg.position);
    } else if (msg.type === "rows") {
      this.#dispatch(feed, msg.table, msg.rows);
    } else if (msg.type === "status") {
      feed.state = msg.state;
      this.#refreshStatus();
    }
  }

  // Without SharedWorker (some mobile browsers): one EventSource per dataset per tab.
  #open(datasetId, feed, after) {
    const source = new EventSource(`/api/datasets/${encodeURIComponent(datasetId)}/live?after=${encodeURIComponent(after)}`);
    feed.source = source;
    source.addEventListener("open", () => { feed.delay = 0; feed.state = "live"; this.#refreshStatus(); });
    source.addEventListener("error", () => {
      feed.state = "reconnecting";
      // It gives up on an HTTP error (a 404 once the dataset is deleted): retry ourselves,
      // backing off to one attempt every 30 s.
      if (source.readyState === EventSource.CLOSED) {
        feed.delay = Math.min(30000, (feed.delay || 1000) * 2);
        setTimeout(() => { if (this.feeds.get(datasetId) === feed) this.#open(datasetId, feed, feed.lastId ?? after); }, feed.delay);
      }
      this.#refreshStatus();
    });
    source.addEventListener("rows", (event) => {
      let batch;
      try { batch = JSON.parse(event.data); } catch { return; }
      if (!batch || !Array.isArray(batch.rows) || !batch.rows.length) return;
      feed.lastId = batch.rows[batch.rows.length - 1].id;
      this.#dispatch(feed, batch.table, batch.rows);
    });
  }

  #refreshStatus() {
    const states = [...this.feeds.values()].map((f) => f.state);
    if (!states.length) return setStatus("idle", "Idle");
    if (states.every((s) => s === "live")) return setStatus("live", "Live");
    setStatus("reconnecting", "Reconnecting…");
  }

  /** Stop every feed of this page (leaving a dashboard). */
  closeAll() {
    for (const [datasetId, feed] of this.feeds) {
      if (feed.source) feed.source.close();
      else if (this.port) this.port.postMessage({ type: "unsubscribe", datasetId });
    }
    this.feeds.clear();
    this.waiting.clear();
    workerListeners.delete(this.onMessage);
    setStatus("idle", "Idle");
  }
}
