// The page's elements, and the few helpers every part of the page uses to build and show nodes.

const $ = (id) => document.getElementById(id);

export const ui = {
  account: $("account"),
  signOut: $("sign-out"),
  signInSection: $("sign-in"),
  signInForm: $("sign-in-form"),
  signInButton: $("sign-in-button"),
  signInError: $("sign-in-error"),
  token: $("token"),
  generateSection: $("generate"),
  generateForm: $("generate-form"),
  generateButton: $("generate-button"),
  generateError: $("generate-error"),
  kind: $("kind"),
  kindField: $("kind-field"),
  kindHelp: $("kind-help"),
  kindParams: $("kind-params"),
  range: $("range"),
  rangeHelp: $("range-help"),
  start: $("start"),
  end: $("end"),
  report: $("report"),
  reportTitle: $("report-title"),
  badge: $("report-badge"),
  stages: $("stages"),
  bar: $("bar"),
  barFill: $("bar-fill"),
  statusText: $("status-text"),
  percent: $("percent"),
  retry: $("retry"),
  outcome: $("outcome"),
  cancel: $("cancel"),
  connection: $("connection"),
  recent: $("recent"),
  recentList: $("recent-list"),
  recentEmpty: $("recent-empty"),
  recentRefresh: $("recent-refresh"),
  schedules: $("schedules"),
  scheduleForm: $("schedule-form"),
  scheduleEvery: $("schedule-every"),
  scheduleWeekday: $("schedule-weekday"),
  scheduleWeekdayField: $("schedule-weekday-field"),
  scheduleMonthDay: $("schedule-month-day"),
  scheduleMonthDayField: $("schedule-month-day-field"),
  scheduleHelp: $("schedule-help"),
  scheduleTime: $("schedule-time"),
  scheduleZone: $("schedule-zone"),
  scheduleError: $("schedule-error"),
  scheduleList: $("schedule-list"),
};

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function setText(node, text) {
  // Only on change, so that live regions do not repeat themselves.
  if (node.textContent !== text) node.textContent = text;
}

export function showError(node, message) {
  node.textContent = message;
  show(node, Boolean(message));
}
