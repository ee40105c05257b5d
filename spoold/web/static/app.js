// spoold web: live refresh. The page is fetched again and its <main id="live"> swapped
// in. The next request is asked only once the last one has answered (refreshes never
// pile up behind a slow server), never while the tab is hidden, and not while the
// viewer has paused it or is typing in a form inside the live part.
"use strict";
(function () {
  const live = document.getElementById("live");
  const toggle = document.getElementById("live-toggle");
  if (!live || !live.dataset.refresh) return;
  const every = Math.max(1, parseFloat(live.dataset.refresh)) * 1000;
  let paused = sessionStorage.getItem("spoold-live") === "off";
  let timer = null;
  let inFlight = false;

  function visible() { return document.visibilityState !== "hidden"; }
  function busyTyping() {
    const el = document.activeElement;
    return el && live.contains(el) && /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName);
  }
  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (!paused && visible() && !inFlight) timer = setTimeout(refresh, every);
  }
  async function refresh() {
    timer = null;
    if (paused || !visible()) return;
    if (busyTyping()) { schedule(); return; }
    inFlight = true;
    try {
      const answer = await fetch(location.href, {
        credentials: "same-origin", cache: "no-store", headers: { "X-Spoold-Refresh": "1" },
      });
      if (answer.ok) {
        const page = new DOMParser().parseFromString(await answer.text(), "text/html");
        const fresh = page.getElementById("live");
        if (fresh && !busyTyping()) live.replaceChildren(...fresh.childNodes);
        document.body.classList.remove("stale");
      } else {
        document.body.classList.add("stale");
      }
    } catch (e) {
      document.body.classList.add("stale");
    } finally {
      inFlight = false;
      schedule();
    }
  }
  function show() {
    if (!toggle) return;
    toggle.setAttribute("aria-pressed", paused ? "false" : "true");
    toggle.textContent = paused ? "paused" : "live";
  }
  if (toggle) {
    toggle.addEventListener("click", function () {
      paused = !paused;
      sessionStorage.setItem("spoold-live", paused ? "off" : "on");
      show();
      schedule();
    });
  }
  document.addEventListener("visibilitychange", function () {
    if (visible()) { clearTimeout(timer); timer = null; if (!inFlight) refresh(); }
    else { clearTimeout(timer); timer = null; }
  });
  show();
  schedule();
})();
