// The scheduled-reports section: listing, adding, pausing, resuming and deleting a user's schedules.

import { api, hasToken, problem } from "./api.js";
import { el, show, showError, ui } from "./dom.js";

// Visibility (what GET /schedules reads) may lag a moment behind a change, so
// the list is updated from each answer rather than read back at once.
let shownSchedules = [];

// --- the form ----------------------------------------------------------------

// The browser's own time zone (IANA), or UTC when it does not say.
function ownZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

// The IANA zones the browser knows (UTC first, then by name), and its own.
function zones(own) {
  let known = [];
  try {
    known = Intl.supportedValuesOf("timeZone");
  } catch {
    // an older browser: UTC and its own zone
  }
  const rest = [...new Set([...known, own])].filter((z) => z !== "UTC").sort();
  return ["UTC", ...rest];
}

// A weekday for a week, a day of the month for a month: the one the "Every" choice needs.
function showDayChoice() {
  const monthly = ui.scheduleEvery.value === "month";
  show(ui.scheduleWeekdayField, !monthly);
  show(ui.scheduleMonthDayField, monthly);
  show(ui.scheduleHelp, monthly);
}

export function setUpScheduleForm() {
  const own = ownZone();
  ui.scheduleZone.replaceChildren(...zones(own).map((z) => el("option", { value: z, text: z })));
  ui.scheduleZone.value = own;
  ui.scheduleEvery.addEventListener("change", showDayChoice);
  showDayChoice();
}

// --- the list ----------------------------------------------------------------

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
  const day = every === "month" ? Number(ui.scheduleMonthDay.value) : ui.scheduleWeekday.value;
  const body = { every, day, time: ui.scheduleTime.value, timezone: ui.scheduleZone.value };
  const response = await api("/schedules", { method: "POST", body });
  if (!response.ok) {
    showError(ui.scheduleError, await problem(response));
    return;
  }
  renderSchedules([...shownSchedules, await response.json()]);
}
