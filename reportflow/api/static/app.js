// The reportflow page: sign in with a token, generate a report, follow it, download it.
//
// Plain JavaScript, no build step, no dependencies. It uses the same JSON API
// as every other client, sending `Authorization: Bearer <token>` (kept in
// sessionStorage, so it is forgotten when the tab closes).
//
// Following a report: push first, polling as the fallback.
// - Push: GET /reports/{id}/events read with fetch() and a stream reader (the
//   browser's EventSource cannot send the Authorization header, and the token
//   must not go into a URL), one `status` event per change.
// - Polling, where the stream fails: GET /reports/{id} after 2 s, then x1.5
//   each time up to 30 s, never sooner than the server's Retry-After; it stops
//   at a final state, and gives up with a message after too many failed
//   requests in a row or 10 minutes without a final state.
// Each poll's delay is logged (`console.debug("poll", ms)`) and kept in
// `window.reportflow.pollDelays`.
"use strict";

(() => {
  const STAGES = ["queued", "querying", "rendering", "emailing", "done"];
  const FINAL = new Set(["completed", "failed", "cancelled"]);
  const TOKEN_KEY = "reportflow.token";
  const DEFAULT_DAYS = 90;

  const config = {
    pollStartMs: 2000,
    pollFactor: 1.5,
    pollMaxMs: 30000,
    maxConsecutiveFailures: 6,
    giveUpAfterMs: 10 * 60 * 1000,
  };

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

  const $ = (id) => document.getElementById(id);
  const ui = {
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
    scheduleDay: $("schedule-day"),
    scheduleTime: $("schedule-time"),
    scheduleZone: $("schedule-zone"),
    scheduleError: $("schedule-error"),
    scheduleList: $("schedule-list"),
  };

  const state = {
    token: null,
    posting: false, // a POST /reports is on its way
    run: null, // the report being followed (see follow())
    retryTicker: null,
  };

  // For tests and the curious: the polling schedule and how updates arrive.
  const exposed = { config, pollDelays: [], transport: null, lastStatus: null, seen: [] };
  window.reportflow = exposed;

  class SignedOut extends Error {}

  // --- small helpers ---------------------------------------------------------

  function el(tag, props = {}, ...children) {
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

  function show(node, visible) {
    node.hidden = !visible;
  }

  function setText(node, text) {
    // Only on change, so that live regions do not repeat themselves.
    if (node.textContent !== text) node.textContent = text;
  }

  function isAbort(err) {
    return err && err.name === "AbortError";
  }

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          reject(new DOMException("aborted", "AbortError"));
        },
        { once: true },
      );
    });
  }

  function isoDay(date) {
    return date.toISOString().slice(0, 10);
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  function inWords(ms) {
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

  function reportPath(id, suffix = "") {
    return `/reports/${encodeURIComponent(id)}${suffix}`;
  }

  // --- the API ---------------------------------------------------------------

  async function api(path, { method = "GET", body, signal, accept = "application/json" } = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: accept };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
    if (response.status === 401) {
      signOut("That token is no longer accepted. Sign in again.");
      throw new SignedOut();
    }
    return response;
  }

  async function problem(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
    } catch {
      // not JSON: fall through to the status line
    }
    return `the server answered ${response.status} ${response.statusText}`.trim();
  }

  function retryAfterMs(response) {
    const value = response && response.headers.get("Retry-After");
    if (!value) return 0;
    const seconds = Number(value);
    if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
    const at = Date.parse(value);
    return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now());
  }

  // --- signing in and out ----------------------------------------------------

  async function signIn(token) {
    state.token = token;
    const response = await fetch("/reports?page_size=10", {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
    });
    if (response.status === 401) {
      throw new Error("That token was not accepted. Check it and try again.");
    }
    if (response.status === 403) {
      throw new Error("That is an admin token. This page needs a user's token.");
    }
    if (!response.ok) throw new Error(`Could not sign in: ${await problem(response)}`);
    sessionStorage.setItem(TOKEN_KEY, token);
    showSignedIn();
    renderRecent((await response.json()).reports);
  }

  function showSignedIn() {
    show(ui.signInSection, false);
    show(ui.account, true);
    show(ui.generateSection, true);
    show(ui.recent, true);
    show(ui.schedules, true);
    refreshSchedules();
    const wanted = reportFromUrl();
    if (wanted) follow(wanted);
    else ui.start.focus();
  }

  function signOut(message) {
    stopFollowing();
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    for (const section of [ui.account, ui.generateSection, ui.report, ui.recent, ui.schedules]) {
      show(section, false);
    }
    show(ui.signInSection, true);
    ui.token.value = ui.token.defaultValue; // the demo token again, if the server filled one in
    showError(ui.signInError, message || "");
    ui.token.focus();
  }

  function showError(node, message) {
    node.textContent = message;
    show(node, Boolean(message));
  }

  // --- generating ------------------------------------------------------------

  function setDefaultRange() {
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

  async function generate(range) {
    // Guarded before anything else: four clicks make one request.
    if (state.posting || running()) return;
    state.posting = true;
    updateGenerateButton();
    showError(ui.generateError, "");
    try {
      const body = {};
      if (range.start) body.start = range.start;
      if (range.end) body.end = range.end;
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

  // --- following a report ----------------------------------------------------

  function reportFromUrl() {
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

  function stopFollowing() {
    if (state.run) {
      state.run.controller.abort();
      clearTimeout(state.run.deadline);
    }
    state.run = null;
    stopRetryTicker();
  }

  function follow(reportId, firstDoc) {
    stopFollowing();
    const run = {
      id: reportId,
      controller: new AbortController(),
      doc: null, // the latest status document
      deadline: null, // the timer that gives up without a final state
      cancelling: false,
    };
    state.run = run;
    setUrl(reportId);
    resetReportView(reportId);
    run.deadline = setTimeout(() => {
      if (state.run !== run) return;
      const stage = run.doc ? ` It was last at “${run.doc.stage}”.` : "";
      const limit = inWords(config.giveUpAfterMs);
      giveUp(run, `No final state after ${limit}.${stage} The report may still finish.`);
    }, config.giveUpAfterMs);
    if (firstDoc) render(run, firstDoc);
    updateGenerateButton();
    (async () => {
      try {
        if (await stream(run)) return;
        await poll(run);
      } catch (err) {
        if (!isAbort(err) && !(err instanceof SignedOut)) {
          giveUp(run, `Following the report stopped: ${err.message || err}`);
        }
      }
    })();
  }

  function finish(run) {
    // A final state: stop following, keep the page as it is.
    clearTimeout(run.deadline);
    run.controller.abort();
    setText(ui.connection, "");
    updateGenerateButton();
    refreshRecent();
  }

  function giveUp(run, message) {
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
          onclick: () => follow(run.id),
        }),
      ),
    );
    updateGenerateButton();
  }

  function notFound(run) {
    if (state.run !== run) return;
    state.run = null;
    clearTimeout(run.deadline);
    setUrl(null);
    show(ui.report, false);
    showError(ui.generateError, "That report does not exist or is not yours. Generate a new one.");
    updateGenerateButton();
  }

  // Push: the SSE stream, read by hand. True when it delivered a final state.
  async function stream(run) {
    exposed.transport = "events";
    setText(ui.connection, "");
    let response;
    try {
      response = await api(reportPath(run.id, "/events"), {
        signal: run.controller.signal,
        accept: "text/event-stream",
      });
    } catch (err) {
      if (isAbort(err) || err instanceof SignedOut) throw err;
      return false;
    }
    if (response.status === 404) {
      notFound(run);
      return true;
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !response.body || !type.startsWith("text/event-stream")) return false;

    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "message";
    let data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return false; // closed before a final state (a restart, a proxy)
        buffer += value;
        const lines = buffer.split(/\r\n|\n|\r(?!$)/);
        buffer = lines.pop();
        for (const line of lines) {
          if (line === "") {
            if (event === "status" && data.length) {
              const doc = JSON.parse(data.join("\n"));
              render(run, doc);
              if (FINAL.has(doc.status)) return true;
            }
            event = "message";
            data = [];
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = val;
            else if (field === "data") data.push(val);
          }
        }
      }
    } catch (err) {
      if (isAbort(err)) throw err;
      return false;
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // Fallback: polling with a growing interval.
  async function poll(run) {
    exposed.transport = "polling";
    const signal = run.controller.signal;
    let delay = config.pollStartMs;
    let serverWait = 0;
    let failures = 0;
    for (;;) {
      const wait = Math.max(delay, serverWait);
      exposed.pollDelays.push(wait);
      console.debug("poll", wait);
      setText(ui.connection, `Live updates are unavailable; checking again in ${inWords(wait)}.`);
      await sleep(wait, signal);
      delay = Math.min(Math.round(delay * config.pollFactor), config.pollMaxMs);
      let response = null;
      try {
        response = await api(reportPath(run.id), { signal });
      } catch (err) {
        if (isAbort(err) || err instanceof SignedOut) throw err;
      }
      serverWait = retryAfterMs(response);
      if (response && response.status === 404) return notFound(run);
      if (response && response.ok) {
        failures = 0;
        const doc = await response.json();
        render(run, doc);
        if (FINAL.has(doc.status)) return;
        continue;
      }
      failures += 1;
      if (failures >= config.maxConsecutiveFailures) {
        const reason = response ? await problem(response) : "the server could not be reached";
        return giveUp(run, `Lost contact with the server after ${failures} tries (${reason}).`);
      }
    }
  }

  // --- showing a report ------------------------------------------------------

  function resetReportView(reportId) {
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
    markCurrentInRecent(reportId);
  }

  function setProgress(progress, words) {
    ui.barFill.style.width = `${progress}%`;
    ui.bar.setAttribute("aria-valuenow", String(progress));
    ui.bar.setAttribute("aria-valuetext", `${words}, ${progress}%`);
    setText(ui.percent, `${progress}%`);
  }

  function render(run, doc) {
    if (state.run !== run) return;
    const first = run.doc === null;
    const before = run.doc ? run.doc.status : null;
    run.doc = doc;
    exposed.lastStatus = doc;
    const step = `${doc.status}:${doc.stage}:${doc.progress}`;
    if (exposed.seen[exposed.seen.length - 1] !== step) exposed.seen.push(step);
    ui.report.dataset.status = doc.status;
    ui.report.dataset.stage = doc.stage;

    if (ui.reportTitle.textContent !== `Report ${doc.start} to ${doc.end}`) {
      ui.reportTitle.replaceChildren(
        "Report ",
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
    updateRecentItem(doc);
    if (final && (first || before !== doc.status)) {
      renderOutcome(run, doc);
      finish(run);
    } else if (!final) {
      ui.outcome.replaceChildren();
    }
    updateGenerateButton();
  }

  function statusWords(doc) {
    if (doc.status === "completed") return "Done: your report is ready";
    if (doc.status === "failed") return `Failed while ${doc.stage}`;
    if (doc.status === "cancelled") return "Cancelled";
    // Held back on purpose (the user's cap, the email rate): the server says why.
    if (doc.waiting) return `${STAGE_TEXT[doc.stage] || doc.stage}: ${doc.waiting}`;
    return STAGE_TEXT[doc.stage] || doc.stage;
  }

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
    if (doc.retry.next_attempt_at) state.retryTicker = setInterval(update, 1000);
  }

  function stopRetryTicker() {
    clearInterval(state.retryTicker);
    state.retryTicker = null;
  }

  function renderOutcome(run, doc) {
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
      prepareDownload(run, doc, link);
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
            onclick: () => generate(doc),
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
            onclick: () => generate(doc),
          }),
        ),
      );
    }
  }

  async function prepareDownload(run, doc, link) {
    // GET /reports/{id}/pdf redirects to a short-lived signed URL that needs no
    // token; its /link twin hands that URL over as JSON, so the link is a plain
    // link (to the API for a file store, to S3 for an S3 store). An expired link
    // is swapped for a fresh one when clicked.
    let expiresAt = 0;
    const refresh = async () => {
      const response = await api(`${doc.links.pdf}/link`);
      if (!response.ok) {
        const why = await problem(response);
        link.replaceWith(el("span", { class: "error", text: `The PDF is not available: ${why}` }));
        return false;
      }
      const body = await response.json();
      if (state.run !== null && state.run !== run) return false; // another report is shown now
      expiresAt = Date.parse(body.expires_at);
      link.href = body.url;
      return true;
    };
    try {
      if (!(await refresh())) return;
      link.download = `${doc.report_id}.pdf`;
      link.removeAttribute("aria-disabled");
      link.textContent = "Download PDF";
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

  async function cancelReport() {
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

  // --- recent reports --------------------------------------------------------

  async function refreshRecent() {
    if (!state.token) return;
    try {
      const response = await api("/reports?page_size=10");
      if (response.ok) renderRecent((await response.json()).reports);
    } catch {
      // the list is a convenience; the report being followed says what matters
    }
  }

  function renderRecent(runs) {
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
              onclick: () => follow(doc.report_id),
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
    markCurrentInRecent(state.run && state.run.id);
    if (state.run && state.run.doc) updateRecentItem(state.run.doc);
  }

  function recentItemLabel(doc) {
    return `Show report ${doc.start} to ${doc.end}, ${doc.status}`;
  }

  function updateRecentItem(doc) {
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

  function markCurrentInRecent(reportId) {
    for (const item of ui.recentList.children) {
      const button = item.firstElementChild;
      if (item.dataset.report === reportId) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }

  // --- scheduled reports -------------------------------------------------------

  // Visibility (what GET /schedules reads) may lag a moment behind a change, so
  // the list is updated from each answer rather than read back at once.
  let shownSchedules = [];

  async function refreshSchedules() {
    if (!state.token) return;
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

  async function addSchedule() {
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

  // --- wiring ----------------------------------------------------------------

  ui.signInForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = ui.token.value.trim();
    if (!token) {
      showError(ui.signInError, "Enter your access token.");
      ui.token.focus();
      return;
    }
    ui.signInButton.disabled = true;
    showError(ui.signInError, "");
    try {
      await signIn(token);
    } catch (err) {
      state.token = null;
      const offline = err instanceof TypeError; // fetch() could not reach the server
      showError(ui.signInError, offline ? "Could not reach the server. Try again." : err.message);
      ui.token.focus();
    } finally {
      ui.signInButton.disabled = false;
    }
  });

  ui.generateForm.addEventListener("submit", (event) => {
    event.preventDefault();
    generate({ start: ui.start.value, end: ui.end.value });
  });
  ui.cancel.addEventListener("click", cancelReport);
  ui.signOut.addEventListener("click", () => signOut(""));
  ui.recentRefresh.addEventListener("click", refreshRecent);
  ui.scheduleForm.addEventListener("submit", (event) => {
    event.preventDefault();
    addSchedule();
  });
  ui.scheduleEvery.addEventListener("change", () => {
    ui.scheduleDay.value = ui.scheduleEvery.value === "month" ? "1" : "monday";
  });
  try {
    ui.scheduleZone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    // keep UTC
  }

  setDefaultRange();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    state.token = saved;
    showSignedIn();
    refreshRecent();
  }
})();
