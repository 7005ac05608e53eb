// The single-page app's router: the URL fragment picks the view.
//   #/datasets  #/datasets/new  #/datasets/<id>  #/dashboards  #/dashboards/<id>  #/alerts  #/tokens
// A dashboard link (a read-only grant on one dashboard) only ever shows its dashboard.

import { showAlerts, startAlertBadge } from "./alerts.js";
import { listDatasets } from "./api.js";
import { h, mount } from "./dom.js";
import { showTokens } from "./access.js";
import { leaveDatasets, showDatasetInfo, showDatasets, showNewDataset } from "./datasets.js";
import { leaveDashboard, renderSidebar, showDashboard, showDashboardIndex } from "./dashboards.js";
import { can, loadSession, session } from "./session.js";

const view = document.getElementById("view");
const sidebar = document.getElementById("sidebar");

function markNav(section) {
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === section);
}

async function route() {
  const parts = window.location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let [section, id] = parts;
  if (session.me.dashboard) [section, id] = ["dashboards", session.me.dashboard];
  leaveDatasets(); // the datasets list follows its rows live only while on screen
  try {
    if (section === "alerts") {
      leaveDashboard();
      markNav("alerts");
      renderSidebar(sidebar, "#alerts");
      await showAlerts(view, await listDatasets());
    } else if (section === "datasets") {
      leaveDashboard();
      markNav("datasets");
      renderSidebar(sidebar, "#datasets");
      if (id === "new") showNewDataset(view);
      else if (id) await showDatasetInfo(view, id);
      else await showDatasets(view);
    } else if (section === "tokens" && can("admin")) {
      leaveDashboard();
      markNav("tokens");
      renderSidebar(sidebar, "#tokens");
      await showTokens(view);
    } else {
      markNav("dashboards");
      const dashboards = session.me.dashboard ? [] : await renderSidebar(sidebar, id);
      if (id) await showDashboard(view, id);
      else if (!section && !dashboards.length) { window.location.replace("#/datasets"); }
      else await showDashboardIndex(view);
    }
  } catch (err) {
    // A wall screen has no one to click "retry": try again until the server answers.
    if (session.kiosk) setTimeout(route, 5000);
    mount(view, h("div", { class: "panel empty-state" }, h("h3", { text: "Something went wrong" }), h("p", { text: err.message }),
      h("a", { class: "button", href: "#/datasets", text: "Back to datasets" })));
  }
}

await loadSession();
if (can("admin")) {
  document.querySelector(".topnav").append(h("a", { href: "#/tokens", "data-nav": "tokens", text: "Tokens" }));
}
window.addEventListener("hashchange", route);
route();
// Alert rules hold webhook URLs (secrets of their own): members and admins only.
if (can("member")) startAlertBadge();
