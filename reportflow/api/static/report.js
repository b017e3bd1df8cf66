// The report the page works on: generating a new one, following one to its final state, cancelling it.

import { api, FINAL, isAbort, problem, reportPath, SignedOut } from "./api.js";
import { el, setText, show, showError, ui } from "./dom.js";
import { markCurrentInRecent, refreshRecent, updateRecentItem } from "./recent.js";
import { config, exposed, poll, stream } from "./stream.js";
import { inWords, renderOutcome, renderStatus, resetReportView, stopRetryTicker } from "./view.js";

const DEFAULT_DAYS = 90;

const state = {
  posting: false, // a POST /reports is on its way
  run: null, // the report being followed (see follow())
};

// The report being followed, or null.
export function currentRun() {
  return state.run;
}

// --- generating --------------------------------------------------------------

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

export function setDefaultRange() {
  // Days are UTC, as the API's are: a local "today" ahead of UTC would be in the future.
  const end = new Date();
  const start = new Date(end.getTime() - (DEFAULT_DAYS - 1) * 24 * 3600 * 1000);
  ui.end.value = isoDay(end);
  ui.start.value = isoDay(start);
  ui.start.max = ui.end.max = isoDay(end);
}

function running() {
  const run = state.run;
  return Boolean(run && !(run.doc && FINAL.has(run.doc.status)));
}

function updateGenerateButton() {
  const busy = state.posting || running();
  ui.generateButton.disabled = busy;
  ui.generateButton.textContent = busy ? "Generating…" : "Generate report";
}

export async function generate(range) {
  // Guarded before anything else: four clicks make one request.
  if (state.posting || running()) return;
  state.posting = true;
  updateGenerateButton();
  showError(ui.generateError, "");
  try {
    // "Try again" passes the failed report's document: its kind and parameters.
    const body = range.kind && range.kind !== "transactions" ? { kind: range.kind, ...(range.params || {}) } : {};
    if (!range.kind || range.kind === "transactions") {
      if (range.start) body.start = range.start;
      if (range.end) body.end = range.end;
    }
    const response = await api("/reports", { method: "POST", body });
    if (!response.ok) {
      showError(ui.generateError, await problem(response));
      return;
    }
    const doc = await response.json();
    follow(doc.report_id, doc);
    refreshRecent();
  } catch (err) {
    if (!(err instanceof SignedOut)) {
      const why = "Could not reach the server. Check your connection and try again.";
      showError(ui.generateError, why);
    }
  } finally {
    state.posting = false;
    updateGenerateButton();
  }
}

// --- following a report --------------------------------------------------------

export function reportFromUrl() {
  // `?report=<id>`, or `#<id>` for a link written by hand.
  const query = new URLSearchParams(window.location.search).get("report");
  let hash = window.location.hash.slice(1);
  try {
    hash = decodeURIComponent(hash);
  } catch {
    // not percent-encoded: use it as it is
  }
  return query || hash || null;
}

function setUrl(reportId) {
  const url = new URL(window.location.href);
  url.hash = "";
  if (reportId) url.searchParams.set("report", reportId);
  else url.searchParams.delete("report");
  window.history.replaceState(null, "", url);
}

export function stopFollowing() {
  if (state.run) {
    state.run.controller.abort();
    clearTimeout(state.run.deadline);
  }
  state.run = null;
  stopRetryTicker();
}

// `runId`: the run to follow (a POST's run_id); without one, the report's latest
// run as first read, then that run (see update()).
export function follow(reportId, firstDoc, runId = firstDoc ? firstDoc.run_id : null) {
  stopFollowing();
  const run = {
    id: reportId,
    runId,
    controller: new AbortController(),
    doc: null, // the latest status document
    deadline: null, // the timer that gives up without a final state
    cancelling: false,
  };
  state.run = run;
  setUrl(reportId);
  resetReportView(reportId);
  markCurrentInRecent(reportId);
  run.deadline = setTimeout(() => {
    if (state.run !== run) return;
    const stage = run.doc ? ` It was last at “${run.doc.stage}”.` : "";
    const limit = inWords(config.giveUpAfterMs);
    giveUp(run, `No final state after ${limit}.${stage} The report may still finish.`);
  }, config.giveUpAfterMs);
  if (firstDoc) update(run, firstDoc);
  updateGenerateButton();
  (async () => {
    try {
      const on = { update, notFound, giveUp };
      if (await stream(run, on)) return;
      await poll(run, on);
    } catch (err) {
      if (!isAbort(err) && !(err instanceof SignedOut)) {
        giveUp(run, `Following the report stopped: ${err.message || err}`);
      }
    }
  })();
}

// A new status document for the report being followed (from the stream, a poll or a POST).
export function update(run, doc) {
  if (state.run !== run) return;
  if (!run.runId && doc.run_id) run.runId = doc.run_id; // from now on, this run
  const first = run.doc === null;
  const before = run.doc ? run.doc.status : null;
  run.doc = doc;
  exposed.lastStatus = doc;
  const step = `${doc.status}:${doc.stage}:${doc.progress}`;
  if (exposed.seen[exposed.seen.length - 1] !== step) exposed.seen.push(step);
  renderStatus(run, doc);
  updateRecentItem(doc);
  const final = FINAL.has(doc.status);
  if (final && (first || before !== doc.status)) {
    renderOutcome(run, doc, { generate, currentRun });
    finish(run);
  } else if (!final) {
    ui.outcome.replaceChildren();
  }
  updateGenerateButton();
}

function finish(run) {
  // A final state: stop following, keep the page as it is.
  clearTimeout(run.deadline);
  run.controller.abort();
  setText(ui.connection, "");
  updateGenerateButton();
  refreshRecent();
}

export function giveUp(run, message) {
  if (state.run !== run) return;
  run.controller.abort();
  clearTimeout(run.deadline);
  state.run = null;
  stopRetryTicker();
  show(ui.cancel, false);
  setText(ui.connection, "");
  ui.outcome.replaceChildren(
    el(
      "div",
      { class: "problem", role: "alert" },
      el("p", { text: message }),
      el("button", {
        type: "button",
        class: "secondary",
        text: "Check again",
        onclick: () => follow(run.id, null, run.runId),
      }),
    ),
  );
  updateGenerateButton();
}

export function notFound(run) {
  if (state.run !== run) return;
  state.run = null;
  clearTimeout(run.deadline);
  setUrl(null);
  show(ui.report, false);
  showError(ui.generateError, "That report does not exist or is not yours. Generate a new one.");
  updateGenerateButton();
}

// --- cancelling --------------------------------------------------------------

export async function cancelReport() {
  const run = state.run;
  if (!run) return;
  run.cancelling = true;
  ui.cancel.disabled = true;
  ui.cancel.textContent = "Cancelling…";
  try {
    const response = await api(reportPath(run.id, "/cancel"), { method: "POST" });
    if (response.status === 409) {
      // Finished meanwhile, or the email is already being sent: say which.
      run.cancelling = false;
      show(ui.cancel, false);
      showError(ui.generateError, `Not cancelled: ${await problem(response)}.`);
      return;
    }
    if (!response.ok) throw new Error(await problem(response));
    if (run.doc && !FINAL.has(run.doc.status)) setText(ui.statusText, "Cancelling…");
  } catch (err) {
    if (err instanceof SignedOut) return;
    run.cancelling = false;
    ui.cancel.disabled = false;
    ui.cancel.textContent = "Cancel report";
    showError(ui.generateError, `Could not cancel: ${err.message || err}`);
  }
}
