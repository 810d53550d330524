// Live updates for the dashboard: while <main> carries data-poll, re-fetch this page every
// data-poll milliseconds and swap in its [data-live] regions (matched by id). A page whose new
// <main> has no data-poll is final: polling stops. No inline script, no third-party code.
(function () {
  "use strict";
  var main = document.querySelector("main[data-poll]");
  if (!main || !window.fetch || !window.DOMParser) { return; }
  var every = parseInt(main.getAttribute("data-poll"), 10) || 2000;
  var timer = null;

  function stop() {
    main.removeAttribute("data-poll");
    document.querySelectorAll(".live-dot").forEach(function (dot) { dot.remove(); });
    if (timer) { clearTimeout(timer); timer = null; }
  }

  function swap(fresh) {
    document.querySelectorAll("[data-live]").forEach(function (region) {
      var next = region.id && fresh.getElementById(region.id);
      if (next) { region.replaceWith(document.importNode(next, true)); }
    });
    var freshMain = fresh.querySelector("main");
    return !!(freshMain && freshMain.hasAttribute("data-poll"));
  }

  function schedule() { timer = setTimeout(tick, every); }

  function tick() {
    timer = null;
    if (document.hidden) { return; }  // resumed by visibilitychange
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === "/ui/login") {
          window.location.assign(response.url);  // the session ended
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) { schedule(); return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        if (swap(fresh)) { schedule(); } else { stop(); }
      })
      .catch(function () { schedule(); });  // the server restarts: keep trying
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && main.hasAttribute("data-poll") && !timer) { tick(); }
  });
  schedule();
}());
