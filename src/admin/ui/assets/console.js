// fxhook console: the mapping editor's behaviour (check as you type, preview, review and save).
// No framework, nothing inline (the CSP allows only this file), nothing fetched from elsewhere.
"use strict";

(function () {
  const grid = document.querySelector(".editor-grid");
  if (!grid) return;

  const yaml = document.getElementById("yaml");
  const gutter = grid.querySelector(".gutter");
  const problemsList = document.getElementById("problems");
  const result = document.getElementById("result");
  const eventPicker = document.getElementById("event");
  const payload = document.getElementById("payload");
  const headers = document.getElementById("headers");
  const tryButton = document.getElementById("try");
  const review = document.getElementById("review");
  const reviewPanel = document.getElementById("review-panel");
  const diff = document.getElementById("diff");
  const confirmSave = document.getElementById("confirm-save");
  const cancelSave = document.getElementById("cancel-save");
  const status = document.getElementById("save-status");
  const downloadForm = document.getElementById("download-form");
  const csrfField = document.querySelector('input[name="csrf"]');
  const csrf = csrfField ? csrfField.value : "";
  const text = (key) => grid.dataset["t" + key] || "";
  let etag = grid.dataset.etag;
  let problems = JSON.parse(grid.dataset.problems || "[]");
  let checkSeq = 0;
  let timer = null;
  // The text whose diff was shown: Save writes exactly that one.
  let reviewed = null;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    }).then((res) => res.json().catch(() => ({})).then((json) => ({ status: res.status, json })));
  }

  // Line numbers, the lines with problems marked (their messages as tooltips).
  function drawGutter() {
    const lines = yaml.value.split("\n").length;
    const byLine = new Map();
    for (const p of problems) {
      const had = byLine.get(p.line);
      if (!had || p.severity === "error") byLine.set(p.line, p);
    }
    const frag = document.createDocumentFragment();
    for (let n = 1; n <= lines; n++) {
      const span = document.createElement("span");
      span.textContent = String(n);
      const p = byLine.get(n);
      if (p) {
        span.className = p.severity;
        span.title = p.line + ":" + p.col + " " + p.message;
      }
      frag.appendChild(span);
    }
    gutter.replaceChildren(frag);
    gutter.scrollTop = yaml.scrollTop;
  }

  function offsetOf(line, col) {
    const lines = yaml.value.split("\n");
    let offset = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
    return offset + Math.max(0, col - 1);
  }

  function drawProblems() {
    const frag = document.createDocumentFragment();
    if (problems.length === 0) {
      const li = document.createElement("li");
      li.className = "ok";
      li.textContent = text("NoProblems");
      frag.appendChild(li);
    }
    for (const p of problems) {
      const li = document.createElement("li");
      li.className = p.severity;
      li.dataset.line = p.line;
      li.dataset.col = p.col;
      const at = document.createElement("code");
      at.textContent = p.line + ":" + p.col;
      li.appendChild(at);
      li.appendChild(document.createTextNode(" " + p.message));
      frag.appendChild(li);
    }
    problemsList.replaceChildren(frag);
    drawGutter();
  }

  problemsList.addEventListener("click", (e) => {
    const li = e.target.closest("li[data-line]");
    if (!li) return;
    const at = offsetOf(Number(li.dataset.line), Number(li.dataset.col));
    yaml.focus();
    yaml.setSelectionRange(at, at);
  });

  function tryWith() {
    const body = { text: yaml.value };
    if (payload.value.trim() !== "") {
      body.payload = payload.value;
      body.headers = headers.value;
    } else if (eventPicker && eventPicker.value) {
      body.event = eventPicker.value;
    }
    return body;
  }

  function check() {
    const seq = ++checkSeq;
    grid.classList.add("checking");
    post(grid.dataset.check, tryWith())
      .then(({ status: code, json }) => {
        if (seq !== checkSeq) return; // a newer check is on its way
        if (code !== 200) {
          status.textContent = json.error || "HTTP " + code;
          return;
        }
        problems = json.problems || [];
        drawProblems();
        // The server's own rendering (escaped by its templates).
        result.innerHTML = json.result || "";
      })
      .catch((e) => {
        status.textContent = String(e);
      })
      .finally(() => {
        if (seq === checkSeq) grid.classList.remove("checking");
      });
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  }

  yaml.addEventListener("input", () => {
    drawGutter();
    soon();
  });
  yaml.addEventListener("scroll", () => {
    gutter.scrollTop = yaml.scrollTop;
  });
  yaml.addEventListener("keydown", (e) => {
    // Tab indents with two spaces (YAML has no tabs).
    if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      const { selectionStart: s, selectionEnd: end } = yaml;
      yaml.setRangeText("  ", s, end, "end");
      drawGutter();
      soon();
    }
  });
  if (eventPicker) eventPicker.addEventListener("change", check);
  if (tryButton) tryButton.addEventListener("click", check);

  function showDiff(textDiff) {
    const frag = document.createDocumentFragment();
    for (const line of textDiff.split("\n")) {
      const span = document.createElement("span");
      if (line.startsWith("@@")) span.className = "hunk";
      else if (line.startsWith("+") && !line.startsWith("+++")) span.className = "add";
      else if (line.startsWith("-") && !line.startsWith("---")) span.className = "del";
      span.textContent = line || " ";
      frag.appendChild(span);
    }
    diff.replaceChildren(frag);
  }

  function offerDownload() {
    downloadForm.querySelector("textarea").value = yaml.value;
    downloadForm.hidden = false;
  }

  function refused(code, json) {
    status.textContent = json.error || "HTTP " + code;
    status.className = "err";
    if (json.problems) {
      problems = json.problems;
      drawProblems();
    }
    if (json.read_only) offerDownload();
  }

  review.addEventListener("click", () => {
    status.textContent = text("Checking");
    status.className = "";
    const text_under_review = yaml.value;
    post(grid.dataset.save, { text: text_under_review, etag, confirm: false }).then(({ status: code, json }) => {
      if (code !== 200) return refused(code, json);
      if (json.unchanged) {
        status.textContent = text("Unchanged");
        reviewPanel.hidden = true;
        return;
      }
      status.textContent = "";
      reviewed = text_under_review;
      showDiff(json.diff || "");
      reviewPanel.hidden = false;
      confirmSave.focus();
    });
  });

  cancelSave.addEventListener("click", () => {
    reviewPanel.hidden = true;
    reviewed = null;
  });

  // An edit after the review hides the diff: what is saved is always what was reviewed.
  yaml.addEventListener("input", () => {
    if (reviewed !== null && yaml.value !== reviewed) {
      reviewPanel.hidden = true;
      reviewed = null;
    }
  });

  confirmSave.addEventListener("click", () => {
    if (reviewed === null) return;
    confirmSave.disabled = true;
    status.textContent = text("Saving");
    status.className = "";
    post(grid.dataset.save, { text: reviewed, etag, confirm: true })
      .then(({ status: code, json }) => {
        if (code !== 200) return refused(code, json);
        etag = json.etag;
        reviewPanel.hidden = true;
        reviewed = null;
        status.textContent = json.message;
        status.className = "ok";
        if (json.reload_errors && json.reload_errors.length > 0) {
          status.textContent += " " + json.reload_errors.join("; ");
        }
      })
      .finally(() => {
        confirmSave.disabled = false;
      });
  });

  drawProblems();
})();
