// How a followed report's status documents arrive: the SSE event stream first, polling as the fallback.
//
// - Push: GET /reports/{id}/events read with fetch() and a stream reader (the
//   browser's EventSource cannot send the Authorization header, and the token
//   must not go into a URL), one `status` event per change.
// - Polling, where the stream fails: GET /reports/{id} after 2 s, then x1.5
//   each time up to 30 s, never sooner than the server's Retry-After; it stops
//   at a final state, and gives up with a message after too many failed
//   requests in a row (the report gives up after 10 minutes without a final state).
// Each poll's delay is logged (`console.debug("poll", ms)`) and kept in
// `window.reportflow.pollDelays`.

import { api, FINAL, isAbort, problem, reportPath, retryAfterMs, SignedOut } from "./api.js";
import { setText, ui } from "./dom.js";
import { inWords } from "./view.js";

export const config = {
  pollStartMs: 2000,
  pollFactor: 1.5,
  pollMaxMs: 30000,
  maxConsecutiveFailures: 6,
  giveUpAfterMs: 10 * 60 * 1000,
};

// For tests and the curious: the polling schedule and how updates arrive.
export const exposed = { config, pollDelays: [], transport: null, lastStatus: null, seen: [] };
window.reportflow = exposed;

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

// Push: the SSE stream, read by hand. True when it delivered a final state.
// `on`: what the report does with what arrives, `update(run, doc)` for a status
// document and `notFound(run)` for a report that does not exist (or is not yours).
export async function stream(run, on) {
  exposed.transport = "events";
  setText(ui.connection, "");
  let response;
  try {
    response = await api(reportPath(run.id, "/events", run.runId), {
      signal: run.controller.signal,
      accept: "text/event-stream",
    });
  } catch (err) {
    if (isAbort(err) || err instanceof SignedOut) throw err;
    return false;
  }
  if (response.status === 404) {
    on.notFound(run);
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
            on.update(run, doc);
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
// `on`: as for stream(), and `giveUp(run, message)` after too many failed requests.
export async function poll(run, on) {
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
      response = await api(reportPath(run.id, "", run.runId), { signal });
    } catch (err) {
      if (isAbort(err) || err instanceof SignedOut) throw err;
    }
    serverWait = retryAfterMs(response);
    if (response && response.status === 404) return on.notFound(run);
    if (response && response.ok) {
      failures = 0;
      const doc = await response.json();
      on.update(run, doc);
      if (FINAL.has(doc.status)) return;
      continue;
    }
    failures += 1;
    if (failures >= config.maxConsecutiveFailures) {
      const reason = response ? await problem(response) : "the server could not be reached";
      return on.giveUp(run, `Lost contact with the server after ${failures} tries (${reason}).`);
    }
  }
}
