// The report card drawn from a status document: stages, progress bar, retry notice, outcome and download link.

import { api, FINAL, problem, SignedOut } from "./api.js";
import { el, setText, show, ui } from "./dom.js";

const STAGES = ["queued", "querying", "rendering", "emailing", "done"];

const STAGE_TEXT = {
  queued: "Queued: waiting for a worker to start it",
  querying: "Querying your transactions",
  rendering: "Rendering the PDF",
  emailing: "Emailing the PDF",
  done: "Done",
};

// What a retrying step means to a person.
const RETRY_TEXT = {
  query: "The database is unavailable",
  render: "The PDF renderer is busy or restarting",
  send_email: "The email server is unavailable",
};

// Failure reasons in words; the API's own message follows as the detail.
const FAILURE_TEXT = {
  NoEmailAddress:
    "Your account has no email address, so the report could not be sent. " +
    "Ask an administrator to add one, then try again.",
  UnknownUser: "Your account was not found in the reporting database.",
  InvalidRange: "The date range is not valid. Pick another range.",
  SmtpRejected: "The email server rejected the message.",
  PdfMissing: "The PDF went missing before it could be emailed.",
  Terminated: "An operator stopped this report.",
  TimedOut: "The report took longer than its time limit.",
};

let retryTicker = null;

// --- numbers and errors in words ---------------------------------------------

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function inWords(ms) {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  if (seconds < 90) return plural(seconds, "second");
  return plural(Math.round(seconds / 60), "minute");
}

function readable(error) {
  // aiosmtplib reports a reply as a Python tuple, "(421, 'text')": show it as "421 text".
  const reply = /^\((\d{3}), ['"](.*)['"]\)$/s.exec(String(error).trim());
  return reply ? `${reply[1]} ${reply[2]}` : String(error);
}

function shorten(text, max = 160) {
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function kilobytes(bytes) {
  return bytes < 1024 * 1024
    ? `${Math.max(1, Math.round(bytes / 1024))} KB`
    : `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// --- the status ----------------------------------------------------------------

export function resetReportView(reportId) {
  show(ui.report, true);
  setText(ui.reportTitle, "Report");
  ui.reportTitle.title = reportId;
  setText(ui.badge, "");
  ui.badge.className = "badge";
  setText(ui.statusText, "Loading…");
  setProgress(0, "Loading");
  for (const item of ui.stages.children) item.className = "";
  show(ui.retry, false);
  stopRetryTicker();
  ui.outcome.replaceChildren();
  show(ui.cancel, false);
  ui.cancel.disabled = false;
  ui.cancel.textContent = "Cancel report";
}

function setProgress(progress, words) {
  ui.barFill.style.width = `${progress}%`;
  ui.bar.setAttribute("aria-valuenow", String(progress));
  ui.bar.setAttribute("aria-valuetext", `${words}, ${progress}%`);
  setText(ui.percent, `${progress}%`);
}

// Everything but the outcome: the page's own bookkeeping is in report.js's update().
export function renderStatus(run, doc) {
  ui.report.dataset.status = doc.status;
  ui.report.dataset.stage = doc.stage;

  // Another kind than the transactions PDF is named by its title (with its range, if any).
  const name = doc.kind && doc.kind !== "transactions" ? `${doc.title}: ` : "";
  const title = doc.start ? `${name || "Report "}${doc.start} to ${doc.end}` : doc.title;
  if (ui.reportTitle.textContent !== title && !doc.start) {
    ui.reportTitle.replaceChildren(title);
  } else if (ui.reportTitle.textContent !== title) {
    ui.reportTitle.replaceChildren(
      name || "Report ",
      el("span", { class: "date", text: doc.start }),
      " to ",
      el("span", { class: "date", text: doc.end }),
    );
  }
  setText(ui.badge, doc.status);
  ui.badge.className = `badge badge-${doc.status}`;

  const current = STAGES.indexOf(doc.stage);
  STAGES.forEach((stage, i) => {
    const item = ui.stages.children[i];
    let mark = i < current ? "done" : i === current ? "current" : "";
    if (doc.status === "completed") mark = "done";
    else if (i === current && doc.status !== "running" && doc.status !== "queued") {
      mark = "stopped";
    }
    item.className = mark;
    if (mark === "current") item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  });

  const final = FINAL.has(doc.status);
  const words = run.cancelling && !final ? "Cancelling" : statusWords(doc);
  setProgress(doc.progress, words);
  if (ui.statusText.textContent !== `${words}, ${doc.progress}%`) {
    const percent = el("span", { class: "sr-only", text: `, ${doc.progress}%` });
    ui.statusText.replaceChildren(words, percent);
  }
  renderRetry(doc);

  // Once the email is being sent it is too late to cancel (the API answers 409).
  show(ui.cancel, !final && doc.stage !== "emailing");
}

function statusWords(doc) {
  if (doc.status === "completed") return "Done: your report is ready";
  if (doc.status === "failed") return `Failed while ${doc.stage}`;
  if (doc.status === "cancelled") return "Cancelled";
  // Held back on purpose (the user's cap, the email rate): the server says why.
  if (doc.waiting) return `${STAGE_TEXT[doc.stage] || doc.stage}: ${doc.waiting}`;
  return STAGE_TEXT[doc.stage] || doc.stage;
}

// --- a step being retried --------------------------------------------------------

function retryText(retry) {
  const what = RETRY_TEXT[retry.activity] || `The ${retry.activity} step failed`;
  const why = retry.last_error ? ` (${shorten(readable(retry.last_error))})` : "";
  let when = "Trying again now";
  if (retry.next_attempt_at) {
    const ms = Date.parse(retry.next_attempt_at) - Date.now();
    if (ms > 500) when = `Trying again in ${inWords(ms)}`;
  }
  const of = retry.maximum_attempts > 0 ? ` of ${retry.maximum_attempts}` : "";
  return `${what}${why}. ${when} (attempt ${retry.attempt}${of}).`;
}

function renderRetry(doc) {
  if (!doc.retry) {
    show(ui.retry, false);
    stopRetryTicker();
    return;
  }
  const update = () => setText(ui.retry, retryText(doc.retry));
  update();
  show(ui.retry, true);
  stopRetryTicker();
  // Only the "in N seconds" wording counts down; progress comes from the server.
  if (doc.retry.next_attempt_at) retryTicker = setInterval(update, 1000);
}

export function stopRetryTicker() {
  clearInterval(retryTicker);
  retryTicker = null;
}

// --- the outcome -----------------------------------------------------------------

// `on`: what the outcome's buttons and link need from the page, `generate(doc)`
// to make the report again and `currentRun()`, the report being followed (or null).
export function renderOutcome(run, doc, on) {
  if (doc.status === "completed") {
    const result = doc.result;
    const link = el("a", {
      class: "button",
      id: "download",
      "aria-disabled": "true",
      text: "Preparing the PDF…",
    });
    const facts = [];
    if (result) facts.push(`${plural(result.pages, "page")}, ${kilobytes(result.bytes)}`);
    const emailed = result && result.emailed_to.length ? result.emailed_to.join(", ") : null;
    ui.outcome.replaceChildren(
      el(
        "div",
        { class: "success" },
        emailed
          ? el("p", {}, "Emailed to ", el("strong", { id: "emailed-to", text: emailed }))
          : el("p", { text: "Not emailed" }),
        facts.length ? el("p", { class: "muted", text: facts.join(" · ") }) : "",
        el("p", {}, link),
      ),
    );
    prepareDownload(run, doc, link, on.currentRun);
  } else if (doc.status === "failed") {
    const error = doc.error || { type: "Unknown", message: doc.last_error || "none recorded" };
    const reason = FAILURE_TEXT[error.type] || "The report could not be generated.";
    ui.outcome.replaceChildren(
      el(
        "div",
        { class: "problem", role: "alert" },
        el("p", { id: "failure-reason", text: reason }),
        el("p", { class: "detail", text: `Details: ${shorten(error.message, 300)}` }),
        el("button", {
          type: "button",
          id: "try-again",
          text: "Try again",
          onclick: () => on.generate(doc),
        }),
      ),
    );
  } else if (doc.status === "cancelled") {
    ui.outcome.replaceChildren(
      el(
        "div",
        { class: "neutral" },
        el("p", { text: "The report was cancelled. No email was sent." }),
        el("button", {
          type: "button",
          id: "try-again",
          text: "Generate again",
          onclick: () => on.generate(doc),
        }),
      ),
    );
  }
}

async function prepareDownload(run, doc, link, currentRun) {
  // GET /reports/{id}/pdf redirects to a short-lived signed URL that needs no
  // token; its /link twin hands that URL over as JSON, so the link is a plain
  // link (to the API for a file store, to S3 for an S3 store). An expired link
  // is swapped for a fresh one when clicked.
  let expiresAt = 0;
  const refresh = async () => {
    const file = doc.format && doc.format !== "pdf";
    const response = await api(`${file ? doc.links.file : doc.links.pdf}/link`);
    if (!response.ok) {
      const why = await problem(response);
      link.replaceWith(el("span", { class: "error", text: `The PDF is not available: ${why}` }));
      return false;
    }
    const body = await response.json();
    const shown = currentRun();
    if (shown !== null && shown !== run) return false; // another report is shown now
    expiresAt = Date.parse(body.expires_at);
    link.href = body.url;
    return true;
  };
  try {
    if (!(await refresh())) return;
    const format = doc.format || "pdf";
    link.download = `${doc.report_id}.${format}`;
    link.removeAttribute("aria-disabled");
    link.textContent = `Download ${format.toUpperCase()}`;
    link.addEventListener("click", async (event) => {
      if (Date.now() < expiresAt - 5000) return;
      event.preventDefault();
      if (await refresh()) link.click();
    });
  } catch (err) {
    if (!(err instanceof SignedOut)) {
      const why = "The PDF could not be downloaded. Reload the page to try again.";
      link.replaceWith(el("span", { class: "error", text: why }));
    }
  }
}
