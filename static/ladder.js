// Keyboard moves for reviewers. Everything here also works without JavaScript:
// the keys only click links and buttons that are already on the page.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  function rows() { return Array.from(document.querySelectorAll("tr[data-row]")); }
  function move(delta) {
    const all = rows();
    if (!all.length) return false;
    let i = all.findIndex((r) => r.classList.contains("selected"));
    if (i >= 0) all[i].classList.remove("selected");
    i = Math.max(0, Math.min(all.length - 1, i + delta));
    all[i].classList.add("selected");
    all[i].focus();
    return true;
  }
  function click(selector) {
    const el = document.querySelector(selector);
    if (el) { el.click(); return true; }
    return false;
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (typing(ev.target)) {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    const key = ev.key;
    let done = false;
    if (key === "?") {
      const help = document.getElementById("keys-help");
      if (help && !help.open) help.showModal();
      done = true;
    } else if (key === "j" || key === "k") {
      done = rows().length ? move(key === "j" ? 1 : -1) : click('a[data-key="' + key + '"]');
    } else if (key === "Enter") {
      const sel = document.querySelector("tr[data-row].selected a.open");
      if (sel) { sel.click(); done = true; }
    } else if (key === "a") {
      done = click('button[data-key="a"]');
    } else if (key === "r") {
      const reason = document.querySelector("#run-panel input[name=reason]");
      const box = reason && reason.closest("details");
      if (box) box.open = true;
      if (reason && !reason.value) { reason.focus(); reason.placeholder = "Reason, then r or Enter"; done = true; }
      else done = click('button[data-key="r"]');
    } else if (key === "e") {
      const own = document.querySelector("details[data-edit-open]");
      if (own) own.open = true;
      const field = document.querySelector("[data-edit]");
      if (field) { field.focus(); done = true; }
    }
    if (done) ev.preventDefault();
  });
  // After a decision swaps in the next run, put focus on it for the next keystroke.
  document.addEventListener("htmx:afterSwap", function (ev) {
    const panel = document.getElementById("run-panel");
    if (panel && ev.detail.target && ev.detail.target.id === "run-panel") {
      panel.setAttribute("tabindex", "-1");
      panel.focus({ preventScroll: false });
    }
  });
})();
