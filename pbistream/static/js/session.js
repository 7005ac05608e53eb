// Who is signed in (GET /api/me: role, and a link's dashboard) and how the page is shown.
//
// The server enforces every right (a viewer's write is a 403 whatever the page does);
// this only hides controls the caller may not use. Kiosk mode (?kiosk=1, for wall
// screens) hides every control and the navigation, and keeps the screen awake.

import { api } from "./api.js";

const RANK = { viewer: 1, contributor: 2, member: 3, admin: 4 };
export const session = { me: { role: "admin", kind: "token", dashboard: null }, kiosk: false };

export async function loadSession() {
  session.kiosk = new URLSearchParams(window.location.search).get("kiosk") === "1";
  try { session.me = await api("GET", "/api/me"); } catch { /* keep the defaults; calls will say why */ }
  const body = document.body;
  body.dataset.role = session.me.role;
  body.classList.toggle("kiosk", session.kiosk);
  body.classList.toggle("shared-link", session.me.kind === "link");
  if (session.kiosk) keepAwake();
  return session;
}

/** True when the caller's role is at least `role`. */
export function can(role) {
  return (RANK[session.me.role] || 0) >= RANK[role];
}

// Screen Wake Lock API where the browser has it (a secure context: https or localhost).
// The lock is dropped whenever the page is hidden, so take it again when it is shown.
let lock = null;
async function takeLock() {
  if (!("wakeLock" in navigator) || document.visibilityState !== "visible" || lock) return;
  try {
    lock = await navigator.wakeLock.request("screen");
    document.body.dataset.wakeLock = "on";
    lock.addEventListener("release", () => { lock = null; document.body.dataset.wakeLock = "off"; });
  } catch { document.body.dataset.wakeLock = "refused"; }
}
function keepAwake() {
  document.body.dataset.wakeLock = "wakeLock" in navigator ? "off" : "unsupported";
  document.addEventListener("visibilitychange", takeLock);
  takeLock();
}
