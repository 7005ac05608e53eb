// One EventSource on /api/live for any number of datasets (the browser allows only six
// connections to a server; one per dataset would run out). Used by the SharedWorker
// (live_worker.js) for every tab at once, or by a page directly without SharedWorker.
//
// It remembers each dataset's position (the newest row id passed on). Adding or
// removing a dataset reopens the connection with every position as its cursor, and the
// server replays what each dataset missed, so changing the set never loses a row.

export class MergedFeed {
  /** `on`: { rows(datasetId, table, rows), status(state), deleted(datasetId) } */
  constructor(on) {
    this.on = on;
    this.positions = new Map(); // datasetId -> newest row id passed on
    this.source = null;
    this.timer = null;
    this.delay = 0;
    this.state = "idle";
  }

  /** Follow a dataset from row id `after`; returns the id from which it is served. */
  add(datasetId, after) {
    if (this.positions.has(datasetId)) return this.positions.get(datasetId);
    this.positions.set(datasetId, after || 0);
    this.#reopenSoon(0);
    return after || 0;
  }

  remove(datasetId) {
    if (this.positions.delete(datasetId)) this.#reopenSoon(0);
  }

  #reopenSoon(ms) {
    // Many adds in a row (a dashboard's datasets) make one connection, not many.
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.#open(), ms);
  }

  #setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.on.status(state);
  }

  #open() {
    if (this.source) this.source.close();
    this.source = null;
    const ids = [...this.positions.keys()];
    if (!ids.length) return this.#setState("idle");
    const q = new URLSearchParams();
    for (const id of ids) q.append("dataset", id);
    q.set("cursor", ids.map((id) => this.positions.get(id)).join("."));
    const source = new EventSource(`/api/live?${q}`);
    this.source = source;
    this.#setState("reconnecting");
    source.addEventListener("open", () => { this.delay = 0; this.#setState("live"); });
    source.addEventListener("error", () => {
      if (this.source !== source) return;
      this.#setState("reconnecting");
      // EventSource reconnects by itself (sending Last-Event-ID, the cursors) unless
      // the server answered an HTTP error (a 401 after a restart with a new token):
      // then reopen ourselves, backing off to one attempt every 30 s.
      if (source.readyState === EventSource.CLOSED) {
        this.delay = Math.min(30000, (this.delay || 1000) * 2);
        this.#reopenSoon(this.delay);
      }
    });
    source.addEventListener("rows", (event) => {
      if (this.source !== source) return;
      let batch;
      try { batch = JSON.parse(event.data); } catch { return; }
      if (!batch || !Array.isArray(batch.rows) || !batch.rows.length) return;
      if (!this.positions.has(batch.dataset)) return;
      const last = batch.rows[batch.rows.length - 1].id;
      this.positions.set(batch.dataset, Math.max(this.positions.get(batch.dataset), last));
      this.on.rows(batch.dataset, batch.table, batch.rows);
    });
    source.addEventListener("deleted", (event) => {
      try { this.on.deleted(JSON.parse(event.data).dataset); } catch { /* ignore */ }
    });
  }

  close() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
    this.positions.clear();
    this.#setState("idle");
  }
}
