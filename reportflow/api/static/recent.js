// The recent-reports list: reading it, drawing it, and keeping the followed report's entry current.

import { api, hasToken } from "./api.js";
import { el, setText, show, ui } from "./dom.js";
// What the list needs from the page, given by app.js at set-up (see connectRecent()).
const page = {
  follow: (_reportId) => {}, // open a report
  currentRun: () => null, // the report being followed, or null
};

// `follow(reportId)` opens a report; `currentRun()` is the report being followed, or null.
export function connectRecent({ follow, currentRun }) {
  page.follow = follow;
  page.currentRun = currentRun;
}

export async function refreshRecent() {
  if (!hasToken()) return;
  try {
    const response = await api("/reports?page_size=10");
    if (response.ok) renderRecent((await response.json()).reports);
  } catch {
    // the list is a convenience; the report being followed says what matters
  }
}

export function renderRecent(runs) {
  // The list has one entry per run: a report tried again appears once, as its newest run.
  const seen = new Set();
  const reports = runs.filter((doc) => !seen.has(doc.report_id) && seen.add(doc.report_id));
  show(ui.recentEmpty, reports.length === 0);
  ui.recentList.replaceChildren(
    ...reports.map((doc) =>
      el(
        "li",
        { "data-report": doc.report_id },
        el(
          "button",
          {
            type: "button",
            class: "recent-item",
            "aria-label": recentItemLabel(doc),
            onclick: () => page.follow(doc.report_id),
          },
          el(
            "span",
            { class: "recent-range" },
            el("span", { class: "date", text: doc.start }),
            " → ",
            el("span", { class: "date", text: doc.end }),
            el("span", { class: "recent-when", text: startedAt(doc.created_at) }),
          ),
          el("span", { class: `badge badge-${doc.status}`, text: doc.status }),
        ),
      ),
    ),
  );
  const run = page.currentRun();
  markCurrentInRecent(run && run.id);
  if (run && run.doc) updateRecentItem(run.doc);
}

function recentItemLabel(doc) {
  return `Show report ${doc.start} to ${doc.end}, ${doc.status}`;
}

export function updateRecentItem(doc) {
  // The list lags behind (it is read from Temporal's visibility store); the report
  // being followed is current, so its entry shows what the page shows.
  for (const item of ui.recentList.children) {
    if (item.dataset.report !== doc.report_id) continue;
    const badge = item.querySelector(".badge");
    setText(badge, doc.status);
    badge.className = `badge badge-${doc.status}`;
    item.firstElementChild.setAttribute("aria-label", recentItemLabel(doc));
  }
}

function startedAt(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  const options = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
  return `started ${when.toLocaleString(undefined, options)}`;
}

export function markCurrentInRecent(reportId) {
  for (const item of ui.recentList.children) {
    const button = item.firstElementChild;
    if (item.dataset.report === reportId) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}
