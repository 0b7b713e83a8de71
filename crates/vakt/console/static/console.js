// vakt console: live boards, local times, keyboard. Everything also works without it.
"use strict";
(() => {
  const body = document.body;
  const lang = body.dataset.lang || "en";
  const csrf = body.dataset.csrf || "";

  // Times: the server writes UTC; show the viewer's zone (or UTC, remembered) and how long ago.
  const useUtc = () => localStorage.getItem("vakt-tz") === "utc";
  const relative = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
  function ago(date) {
    const s = Math.round((date - Date.now()) / 1000);
    const abs = Math.abs(s);
    if (abs < 60) return relative.format(s, "second");
    if (abs < 3600) return relative.format(Math.round(s / 60), "minute");
    if (abs < 86400) return relative.format(Math.round(s / 3600), "hour");
    return relative.format(Math.round(s / 86400), "day");
  }
  function formatTimes(root) {
    const options = { dateStyle: "short", timeStyle: "medium" };
    if (useUtc()) options.timeZone = "UTC";
    const absolute = new Intl.DateTimeFormat(lang, options);
    for (const el of root.querySelectorAll("time[datetime]")) {
      const date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) continue;
      const text = absolute.format(date) + (useUtc() ? " UTC" : "");
      el.title = text;
      el.textContent = el.closest("tr.alert") ? ago(date) : text + " (" + ago(date) + ")";
    }
  }
  const tz = document.getElementById("tz");
  function labelTz() { if (tz) tz.textContent = useUtc() ? body.dataset.tUtc : body.dataset.tLocal; }
  if (tz) tz.addEventListener("click", () => {
    localStorage.setItem("vakt-tz", useUtc() ? "local" : "utc");
    labelTz();
    formatTimes(document);
  });
  labelTz();
  formatTimes(document);

  // Live board: refresh on every change, unless the operator is in the middle of something.
  let board = document.getElementById("board");
  let pending = 0;
  let banner = null;
  function busy() {
    const active = document.activeElement;
    const selected = board && board.querySelector("input[name=ids]:checked, #bulk-all:checked");
    const focused = active && active !== body && (board?.contains(active) || active.matches("input, textarea, select"));
    return Boolean(selected || focused || document.querySelector("dialog[open]"));
  }
  function showBanner() {
    if (!banner) {
      banner = document.createElement("div");
      banner.className = "banner";
      banner.setAttribute("role", "status");
      banner.innerHTML = "<span></span><button type=button></button>";
      banner.querySelector("button").textContent = body.dataset.tShow;
      banner.querySelector("button").addEventListener("click", () => refresh(true));
      board.before(banner);
    }
    banner.querySelector("span").textContent = body.dataset.tNew.replace("{n}", pending);
  }
  async function refresh(force) {
    if (!board) return;
    if (!force && busy()) { pending += 1; showBanner(); return; }
    const url = new URL(location.href);
    url.searchParams.set("fragment", "board");
    const response = await fetch(url, { headers: { accept: "text/html" }, credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("board");
    if (!fresh) return;
    const cursorId = current()?.dataset.id;
    board.replaceWith(fresh);
    board = fresh;
    formatTimes(board);
    if (collapsed) applyCollapse();
    pending = 0;
    if (banner) { banner.remove(); banner = null; }
    if (cursorId) select(rows().findIndex((r) => r.dataset.id === cursorId));
  }
  if (board && window.EventSource) {
    const events = new EventSource("/console/stream");
    events.addEventListener("change", () => refresh(false));
    events.addEventListener("tick", () => refresh(false));
  }

  // Collapse or expand every group at once; the choice holds across live refreshes.
  const collapse = document.getElementById("collapse");
  let collapsed = false;
  function applyCollapse() {
    for (const group of document.querySelectorAll("#board details.group")) group.open = !collapsed;
    if (collapse) collapse.textContent = collapsed ? collapse.dataset.tExpand : collapse.dataset.tCollapse;
  }
  if (collapse && document.querySelector("#board details.group")) {
    collapse.hidden = false;
    collapse.addEventListener("click", () => { collapsed = !collapsed; applyCollapse(); });
  }

  // Saved views: the board's URL under a name, per user, kept in this browser.
  const views = document.getElementById("saved-views");
  if (views) {
    const key = "vakt-views:" + (views.dataset.user || "");
    const load = () => { try { return JSON.parse(localStorage.getItem(key)) || []; } catch { return []; } };
    const store = (list) => localStorage.setItem(key, JSON.stringify(list));
    const draw = () => {
      views.replaceChildren();
      for (const [index, view] of load().entries()) {
        const link = document.createElement("a");
        link.href = view.url; link.textContent = view.name; link.className = "chip";
        const remove = document.createElement("button");
        remove.type = "button"; remove.className = "link"; remove.textContent = "×";
        remove.setAttribute("aria-label", views.dataset.tRemove + " " + view.name);
        remove.addEventListener("click", () => { const list = load(); list.splice(index, 1); store(list); draw(); });
        views.append(link, remove);
      }
      const save = document.createElement("button");
      save.type = "button"; save.textContent = views.dataset.tSave;
      save.addEventListener("click", () => {
        const name = prompt(views.dataset.tName);
        if (!name) return;
        const url = new URL(location.href);
        url.searchParams.delete("done"); url.searchParams.delete("n");
        store([...load().filter((v) => v.name !== name), { name, url: url.pathname + url.search }]);
        draw();
      });
      views.append(save);
      views.hidden = false;
    };
    draw();
  }

  // Keyboard: j/k move, x select, Enter open, a ack, r resolve, s silence, / filter, ? help.
  let cursor = -1;
  const rows = () => Array.from(document.querySelectorAll("tr.alert"));
  const current = () => rows()[cursor];
  function select(index) {
    const all = rows();
    if (!all.length || index < 0) return;
    cursor = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((r) => r.classList.remove("selected"));
    all[cursor].classList.add("selected");
    all[cursor].focus();
  }
  function act(op) {
    const row = current();
    if (!row) return;
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/alerts/" + encodeURIComponent(row.dataset.id) + "/" + op;
    for (const [name, value] of [["csrf", csrf], ["back", location.pathname + location.search]]) {
      const input = document.createElement("input");
      input.type = "hidden"; input.name = name; input.value = value;
      form.append(input);
    }
    document.body.append(form);
    form.submit();
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.matches && target.matches("input:not([type=checkbox]), textarea, select")) {
      if (event.key === "Escape") target.blur();
      return;
    }
    const detail = document.querySelector("article.detail");
    switch (event.key) {
      case "j": select(cursor + 1); break;
      case "k": select(cursor - 1); break;
      case "x": { const box = current()?.querySelector("input[name=ids]"); if (box) box.checked = !box.checked; break; }
      case "Enter": { const link = current()?.querySelector("a"); if (link && target.tagName !== "A" && target.tagName !== "BUTTON") link.click(); else return; break; }
      case "a": if (detail) document.getElementById("ack")?.click(); else act("ack"); break;
      case "r": if (detail) document.getElementById("resolve")?.click(); else act("resolve"); break;
      case "s": {
        const id = detail ? detail.dataset.id : current()?.dataset.id;
        if (id) location.assign("/silences/new?alert=" + encodeURIComponent(id));
        break;
      }
      case "/": document.getElementById("q")?.focus(); break;
      case "?": { const help = document.getElementById("help"); if (help.open) help.close(); else help.showModal(); break; }
      default: return;
    }
    event.preventDefault();
  });
})();
