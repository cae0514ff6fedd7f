// The report's one script, allowed by its sha256 in the Content-Security-Policy (computed when the
// report is rendered). It only adds: click a column heading of a .sortable table to sort its rows,
// a filter box above every .sortable or .filterable table, and a search box over the outputs
// (findings, disagreements, appendix). Without it the page shows everything, unsorted.
(function () {
  "use strict";
  var each = function (sel, f, root) { Array.prototype.forEach.call((root || document).querySelectorAll(sel), f); };
  var number = function (text) {
    var m = text.replace(/[\u2212\u2013]/g, "-").replace(/[,$\s]/g, "").match(/[-+]?\d*\.?\d+(?:e[-+]?\d+)?/i);
    return m ? parseFloat(m[0]) : NaN;
  };
  var key = function (cell) {
    if (!cell) return "";
    var b = cell.querySelector("b");
    return ((b || cell).textContent || "").trim();
  };
  function sortBy(table, th, i) {
    var body = table.tBodies[0];
    var down = th.getAttribute("aria-sort") === "ascending";
    each("th[aria-sort]", function (h) { h.removeAttribute("aria-sort"); }, table);
    th.setAttribute("aria-sort", down ? "descending" : "ascending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[i]), y = key(b.cells[i]);
      var nx = number(x), ny = number(y);
      if (isNaN(nx) !== isNaN(ny)) return isNaN(nx) ? 1 : -1; // "—" and words after numbers, either way
      var c = isNaN(nx) ? x.localeCompare(y) : nx - ny;
      return down ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function filterBox(table, what) {
    var box = document.createElement("input");
    box.type = "search";
    box.className = "filter";
    box.placeholder = "filter " + what;
    box.setAttribute("aria-label", "filter the rows of the table below");
    box.addEventListener("input", function () {
      var q = box.value.trim().toLowerCase();
      each("tbody tr", function (r) { r.hidden = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0; }, table);
    });
    var at = table.parentNode.classList.contains("tablewrap") ? table.parentNode : table;
    at.parentNode.insertBefore(box, at);
  }
  each("table.sortable, table.filterable", function (table) {
    table.classList.add("js");
    filterBox(table, table.classList.contains("score") ? "checks" : "rows");
    if (!table.classList.contains("sortable") || !table.tHead) return;
    each("th", function (th, i) {
      th.tabIndex = 0;
      th.title = (th.title ? th.title + " · " : "") + "click to sort";
      th.addEventListener("click", function () { sortBy(table, th, i); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, th, i); });
    }, table.tHead.rows[0]);
  });
  var outputs = "details.finding, article.diff, details.ex-entry";
  var nav = document.querySelector("header.top nav");
  if (nav && document.querySelector(outputs)) {
    var box = document.createElement("input");
    var said = document.createElement("span");
    box.type = "search";
    box.className = "search";
    box.placeholder = "search answers and exchanges";
    box.setAttribute("aria-label", "search the findings, disagreements and appendix");
    said.className = "found";
    box.addEventListener("input", function () {
      var q = box.value.trim().toLowerCase(), n = 0, all = 0;
      each(outputs, function (el) {
        var hit = q === "" || el.textContent.toLowerCase().indexOf(q) >= 0;
        el.hidden = !hit;
        all += 1;
        n += hit ? 1 : 0;
        if (el.tagName === "DETAILS" && q !== "" && hit) el.open = true;
      });
      said.textContent = q === "" ? "" : n + " of " + all + " outputs match";
    });
    nav.appendChild(box);
    nav.appendChild(said);
  }
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    if (el && el.tagName === "DETAILS") el.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
