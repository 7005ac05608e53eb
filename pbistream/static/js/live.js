// The live feed of a dashboard page. Tiles register per dataset; rows arrive through
// one connection on /api/live shared by every tab (a SharedWorker, live_worker.js), or,
// where SharedWorker is missing, one connection per page (feed_core.js directly).
//
// The server replays stored rows after each dataset's cursor (and after Last-Event-ID
// when the browser reconnects by itself), so a dropped connection or a server restart
// never leaves a gap. Tiles ignore rows they already hold (by id), so history and the
// live feed may overlap.

import { MergedFeed } from "./feed_core.js";

const LABEL = { idle: "Idle", live: "Live", reconnecting: "Reconnecting…" };

function setStatus(state) {
  const el = document.getElementById("live-status");
  if (!el) return;
  el.dataset.state = state;
  el.querySelector(".label").textContent = LABEL[state] || state;
}

let port = null; // the shared worker's port, opened once per page
let triedWorker = false;
const pages = new Set(); // LiveFeeds instances listening to the worker

function sharedPort() {
  if (triedWorker) return port;
  triedWorker = true;
  if (typeof SharedWorker === "undefined") return null;
  try {
    const worker = new SharedWorker("/static/js/live_worker.js", { type: "module", name: "pbistream-live" });
    port = worker.port;
    port.addEventListener("message", (event) => { for (const feeds of pages) feeds.fromWorker(event.data); });
    port.start();
    // The worker cannot see a tab close: say goodbye so it can drop this tab's datasets.
    window.addEventListener("pagehide", () => port.postMessage({ type: "bye" }));
  } catch {
    port = null;
  }
  return port;
}

export class LiveFeeds {
  constructor() {
    this.listeners = new Map(); // datasetId -> Set of listener(table, rows)
    this.waiting = new Map(); // datasetId -> resolve(position)
    this.onDeleted = () => {}; // set by the dashboard: a dataset went away
    this.port = sharedPort();
    if (this.port) {
      pages.add(this);
    } else {
      this.local = new MergedFeed({
        rows: (datasetId, table, rows) => this.#dispatch(datasetId, table, rows),
        status: setStatus,
        deleted: (datasetId) => this.listeners.has(datasetId) && this.onDeleted(datasetId),
      });
    }
  }

  /**
   * Listen to a dataset's rows after row id `after`. Resolves to the row id from which
   * the listener is served: read history only once it resolves (it may be newer than
   * `after` when another tab already follows this dataset).
   */
  subscribe(datasetId, after, listener) {
    const known = this.listeners.get(datasetId);
    if (known) {
      known.add(listener);
      return Promise.resolve(after || 0);
    }
    this.listeners.set(datasetId, new Set([listener]));
    if (this.local) return Promise.resolve(this.local.add(datasetId, after));
    return new Promise((resolve) => {
      this.waiting.set(datasetId, resolve);
      this.port.postMessage({ type: "subscribe", datasetId, after: after || 0 });
    });
  }

  #dispatch(datasetId, table, rows) {
    for (const listener of this.listeners.get(datasetId) || []) {
      try { listener(table, rows); } catch (err) { console.error("tile update failed", err); }
    }
  }

  fromWorker(msg) {
    if (msg.type === "status") return setStatus(msg.state);
    if (!this.listeners.has(msg.datasetId)) return;
    if (msg.type === "subscribed") {
      const resolve = this.waiting.get(msg.datasetId);
      this.waiting.delete(msg.datasetId);
      if (resolve) resolve(msg.position);
    } else if (msg.type === "rows") {
      this.#dispatch(msg.datasetId, msg.table, msg.rows);
    } else if (msg.type === "deleted") {
      this.onDeleted(msg.datasetId);
    }
  }

  /** Stop following every dataset of this page (leaving a dashboard). */
  closeAll() {
    if (this.local) this.local.close();
    else for (const datasetId of this.listeners.keys()) this.port.postMessage({ type: "unsubscribe", datasetId });
    this.listeners.clear();
    this.waiting.clear();
    pages.delete(this);
    setStatus("idle");
  }
}
