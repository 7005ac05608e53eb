// The live feed: one EventSource per dataset, shared by every tile bound to it.
//
// The server replays stored rows with id > `after` (or > Last-Event-ID, which the
// browser sends by itself when it reconnects), so a dropped connection or a server
// restart never leaves a gap: the missed rows arrive first, then new ones. Tiles
// ignore rows they already hold (by id), so history and live may overlap safely.

const statusEl = () => document.getElementById("live-status");

function setStatus(state, label) {
  const el = statusEl();
  if (!el) return;
  el.dataset.state = state;
  el.querySelector(".label").textContent = label;
}

export class LiveFeeds {
  constructor() {
    this.feeds = new Map(); // datasetId -> { source, listeners:Set }
    this.stats = { events: 0, rows: 0 };
  }

  /** Listen to a dataset's new rows, starting after row id `after`. */
  subscribe(datasetId, after, listener) {
    let feed = this.feeds.get(datasetId);
    if (!feed) {
      feed = { listeners: new Set(), source: null };
      this.feeds.set(datasetId, feed);
      this.#open(datasetId, feed, after);
    }
    feed.listeners.add(listener);
    return () => feed.listeners.delete(listener);
  }

  #open(datasetId, feed, after) {
    const q = after !== null && after !== undefined ? `?after=${encodeURIComponent(after)}` : "";
    const source = new EventSource(`/api/datasets/${encodeURIComponent(datasetId)}/live${q}`);
    feed.source = source;
    source.addEventListener("open", () => { feed.delay = 0; this.#refreshStatus(); });
    source.addEventListener("error", () => {
      // EventSource reconnects by itself (sending Last-Event-ID) unless it gave up.
      // It gives up on an HTTP error (a 404 once the dataset is deleted, a 502 from a
      // proxy): retry ourselves, backing off to one attempt every 30 s.
      if (source.readyState === EventSource.CLOSED) {
        feed.delay = Math.min(30000, (feed.delay || 1000) * 2);
        setTimeout(() => {
          if (this.feeds.get(datasetId) === feed) this.#open(datasetId, feed, feed.lastId ?? after);
        }, feed.delay);
      }
      this.#refreshStatus();
    });
    source.addEventListener("rows", (event) => {
      let batch;
      try { batch = JSON.parse(event.data); } catch { return; }
      if (!batch || !Array.isArray(batch.rows)) return;
      const last = batch.rows.length ? batch.rows[batch.rows.length - 1].id : null;
      if (last !== null) feed.lastId = last;
      this.stats.events += 1;
      this.stats.rows += batch.rows.length;
      for (const listener of feed.listeners) {
        try { listener(batch.table, batch.rows); } catch (err) { console.error("tile update failed", err); }
      }
    });
  }

  #refreshStatus() {
    const sources = [...this.feeds.values()].map((f) => f.source).filter(Boolean);
    if (!sources.length) return setStatus("idle", "Idle");
    if (sources.every((s) => s.readyState === EventSource.OPEN)) return setStatus("live", "Live");
    setStatus("reconnecting", "Reconnecting…");
  }

  /** Close every feed (leaving a dashboard). */
  closeAll() {
    for (const feed of this.feeds.values()) feed.source && feed.source.close();
    this.feeds.clear();
    setStatus("idle", "Idle");
  }
}
