// The scheduled-reports section: listing, adding, pausing, resuming and deleting a user's schedules.

import { api, hasToken, problem } from "./api.js";
import { el, showError, ui } from "./dom.js";

// Visibility (what GET /schedules reads) may lag a moment behind a change, so
// the list is updated from each answer rather than read back at once.
let shownSchedules = [];

export async function refreshSchedules() {
  if (!hasToken()) return;
  try {
    const response = await api("/schedules");
    if (response.ok) renderSchedules(await response.json());
  } catch {
    // a convenience like the recent list; the form reports its own errors
  }
}

function scheduleAction(schedule, label, method, path) {
  return el("button", {
    type: "button",
    class: "link",
    text: label,
    "aria-label": `${label} the schedule every ${schedule.every} on ${schedule.day}`,
    onclick: async () => {
      showError(ui.scheduleError, "");
      const url = `/schedules/${encodeURIComponent(schedule.id)}${path}`;
      const response = await api(url, { method });
      if (!response.ok && response.status !== 404) {
        showError(ui.scheduleError, await problem(response));
        return;
      }
      const others = shownSchedules.filter((s) => s.id !== schedule.id);
      renderSchedules(method === "DELETE" || !response.ok ? others : [...others, await response.json()]);
    },
  });
}

function renderSchedules(schedules) {
  shownSchedules = [...schedules].sort((a, b) => a.id.localeCompare(b.id));
  ui.scheduleList.replaceChildren(
    ...shownSchedules.map((s) =>
      el(
        "li",
        { "data-schedule": s.id },
        el("span", {
          text: `Every ${s.every} on ${s.day} at ${s.time} ${s.timezone}` +
            (s.paused ? " (paused)" : ""),
        }),
        " ",
        s.paused
          ? scheduleAction(s, "Resume", "POST", "/unpause")
          : scheduleAction(s, "Pause", "POST", "/pause"),
        " ",
        scheduleAction(s, "Delete", "DELETE", ""),
      ),
    ),
  );
}

export async function addSchedule() {
  showError(ui.scheduleError, "");
  const every = ui.scheduleEvery.value;
  const raw = ui.scheduleDay.value.trim();
  const day = every === "month" && /^\d+$/.test(raw) ? Number(raw) : raw.toLowerCase();
  const body = { every, day, time: ui.scheduleTime.value, timezone: ui.scheduleZone.value.trim() };
  const response = await api("/schedules", { method: "POST", body });
  if (!response.ok) {
    showError(ui.scheduleError, await problem(response));
    return;
  }
  renderSchedules([...shownSchedules, await response.json()]);
}
