// The page's entry point: signing in and out, and wiring the page's controls to the modules that do the work.
//
// The reportflow page: sign in with a token, generate a report, follow it,
// download it. Plain JavaScript ES modules, no build step, no dependencies; it
// uses the same JSON API as every other client.
//   dom.js        the page's elements and node helpers
//   api.js        the HTTP API: token, requests, the server's answers in words
//   report.js     generating a report, following it, cancelling it
//   stream.js     how status documents arrive: the SSE stream, polling as the fallback
//   view.js       the report card drawn from a status document
//   recent.js     the recent-reports list
//   schedules.js  the scheduled-reports section
//   kinds.js      the kind picker and the chosen kind's form (from its JSON Schema)
// No import circle: app.js is the top and report.js the only module below it that
// knows the others (recent.js, stream.js, view.js); those take what they call back
// as callbacks (a recent entry opens a report through `follow`, given below; a
// status document reaches the report through `update`, given per call). Nothing
// but element lookups runs while they load. tests/test_page_modules.py checks it.

import { kindRequest, loadKinds, showKindForm } from "./kinds.js";
import { acceptToken, forgetToken, onTokenRefused, savedToken, useToken } from "./api.js";
import { show, showError, ui } from "./dom.js";
import { connectRecent, refreshRecent, renderRecent } from "./recent.js";
import {
  cancelReport,
  currentRun,
  follow,
  generate,
  reportFromUrl,
  setDefaultRange,
  stopFollowing,
} from "./report.js";
import { addSchedule, refreshSchedules, setUpScheduleForm } from "./schedules.js";

// --- signing in and out --------------------------------------------------------

async function signIn(token) {
  const response = await acceptToken(token);
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
  loadKinds();
  const wanted = reportFromUrl();
  if (wanted) follow(wanted);
  else ui.start.focus();
}

function signOut(message) {
  stopFollowing();
  forgetToken();
  for (const section of [ui.account, ui.generateSection, ui.report, ui.recent, ui.schedules]) {
    show(section, false);
  }
  show(ui.signInSection, true);
  ui.token.value = ui.token.defaultValue; // the demo token again, if the server filled one in
  showError(ui.signInError, message || "");
  ui.token.focus();
}

onTokenRefused(signOut);
connectRecent({ follow, currentRun });

// --- wiring --------------------------------------------------------------------

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
    useToken(null);
    const offline = err instanceof TypeError; // fetch() could not reach the server
    showError(ui.signInError, offline ? "Could not reach the server. Try again." : err.message);
    ui.token.focus();
  } finally {
    ui.signInButton.disabled = false;
  }
});

ui.generateForm.addEventListener("submit", (event) => {
  event.preventDefault();
  generate(kindRequest({ start: ui.start.value, end: ui.end.value }));
});
ui.cancel.addEventListener("click", cancelReport);
ui.kind.addEventListener("change", showKindForm);
ui.signOut.addEventListener("click", () => signOut(""));
ui.recentRefresh.addEventListener("click", refreshRecent);
ui.scheduleForm.addEventListener("submit", (event) => {
  event.preventDefault();
  addSchedule();
});
setUpScheduleForm();

setDefaultRange();
const saved = savedToken();
if (saved) {
  useToken(saved);
  showSignedIn();
  refreshRecent();
}
