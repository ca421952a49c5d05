// The code view: CodeMirror with a language picker and examples; "Run" sends the code to
// /ws/processor/ and streams its output; with the client engine this page answers the
// program's engine calls, with the arena engine the program is a bot in an arena, with
// the match engine it plays Pong in a seat of a match (or one Matchmake finds); an
// error's line is marked in the editor.

import { api, socketURL } from "./api.js";
import { StateLabel } from "./connection.js";
import { $, appendToLog, h } from "./dom.js";
import { GuessEngine } from "./engine.js";
import { EXAMPLES, PROGRAMS } from "./examples.js";

const STORAGE = "gameproto.code.";
const BUSY_RETRY_S = 5;
const FILES = { python: "main.py", javascript: "main.js", ruby: "main.rb", php: "main.php" };
const INDENT = { python: 4, javascript: 2, ruby: 2, php: 4 };

// The limits' texts that precede an INTERPRETER_ERROR when a limit stopped the run.
const LIMIT_TEXTS = [
  /^time limit exceeded.*/m, /^CPU time limit exceeded.*/m, /^memory limit exceeded.*/m,
  /^output limit exceeded.*/m, /^file size limit exceeded.*/m, /^process limit exceeded.*/m,
  /^session limit exceeded.*/m,
];

function modeFor(language, code) {
  if (language !== "php") return language;
  // PHP code may leave out "<?php": then it is all PHP.
  return /^\s*<\?/.test(code) ? "application/x-httpd-php" : "text/x-php";
}

// The line of the user's own code an error points at, and the message to show there.
export function locateError(language, message) {
  const file = FILES[language].replace(".", "\\.");
  let line = null;
  if (language === "python") {
    // The innermost frame of the user's file is the last one named.
    const matches = [...message.matchAll(new RegExp(`File "${file}", line (\\d+)`, "g"))];
    if (matches.length) line = Number(matches[matches.length - 1][1]);
  } else if (language === "php") {
    const match = message.match(new RegExp(`${file}(?: on line |:)(\\d+)`));
    if (match) line = Number(match[1]);
  } else {
    const match = message.match(new RegExp(`${file}:(\\d+)`));
    if (match) line = Number(match[1]);
  }
  const lines = message.split("\n").map((text) => text.trim()).filter(Boolean);
  const pattern = /(Error|Exception|error)\b/;
  const text = language === "python"
    ? lines[lines.length - 1]
    : lines.find((candidate) => pattern.test(candidate) && !candidate.startsWith("at ")) || lines[0];
  return { line, text: text || message };
}

export class CodeView {
  constructor(session) {
    this.session = session;
    this.runState = new StateLabel($("run-state"));
    this.editor = null;
    this.socket = null;
    this.errorMarks = [];
    this.language = localStorage.getItem(`${STORAGE}language`) || "python";

    const examples = $("code-example");
    examples.replaceChildren(...Object.entries(EXAMPLES).map(([key, example]) =>
      h("option", { value: key }, example.title)));
    $("code-language").value = this.language;
    $("code-language").addEventListener("change", (event) => this.switchLanguage(event.target.value));
    $("code-engine").addEventListener("change", () => {
      this.renderEngine();
      this.offerExample();
    });
    $("code-match").addEventListener("input", () => $("code-match").removeAttribute("aria-invalid"));
    $("code-load-example").addEventListener("click", () => this.loadExample($("code-example").value));
    $("run").addEventListener("click", () => this.run());
    $("stop").addEventListener("click", () => this.stop());
    session.onChange(() => this.renderButtons());
  }

  // CodeMirror is a classic deferred script: it is there once the page has loaded.
  ensureEditor() {
    if (this.editor) return;
    const CodeMirror = window.CodeMirror;
    // Tab indents; Escape then Tab (or Shift+Tab) leaves the editor: no keyboard trap.
    // After Escape this keymap, whose false bindings leave the keys to the browser,
    // comes first until the next key.
    const leaving = { Tab: false, "Shift-Tab": false };
    this.editor = CodeMirror.fromTextArea($("code-editor"), {
      lineNumbers: true,
      matchBrackets: true,
      indentUnit: INDENT[this.language],
      tabSize: 4,
      screenReaderLabel: "Code",
      extraKeys: {
        Esc: (cm) => cm.addKeyMap(leaving),
        Tab: (cm) => {
          if (cm.somethingSelected()) cm.indentSelection("add");
          else cm.replaceSelection(" ".repeat(cm.getOption("indentUnit")), "end");
        },
        "Shift-Tab": (cm) => cm.indentSelection("subtract"),
        "Ctrl-Enter": () => this.run(),
      },
    });
    this.editor.on("keydown", (cm, event) => {
      if (event.key !== "Escape" && event.key !== "Tab") cm.removeKeyMap(leaving);
    });
    this.editor.on("blur", (cm) => cm.removeKeyMap(leaving));
    this.editor.on("changes", () => {
      localStorage.setItem(STORAGE + this.language, this.editor.getValue());
      this.editor.setOption("mode", modeFor(this.language, this.editor.getValue()));
    });
    this.switchLanguage(this.language);
  }

  async show() {
    this.ensureEditor();
    this.editor.refresh();
    this.renderEngine();
    this.renderButtons();
    if (this.session.user) await this.loadArenas();
  }

  hide() {}

  switchLanguage(language) {
    this.language = language;
    localStorage.setItem(`${STORAGE}language`, language);
    $("code-language").value = language;
    const saved = localStorage.getItem(STORAGE + language);
    const code = saved !== null ? saved : PROGRAMS[language].hello;
    this.editor.setOption("indentUnit", INDENT[language]);
    this.editor.setValue(code);
    this.editor.setOption("mode", modeFor(language, code));
    this.clearErrors();
  }

  loadExample(key) {
    this.editor.setValue(PROGRAMS[this.language][key]);
    $("code-engine").value = EXAMPLES[key].engine;
    this.renderEngine();
    this.clearErrors();
    this.editor.focus();
  }

  renderEngine() {
    const engine = $("code-engine").value;
    const arena = engine === "arena";
    $("code-arena").hidden = !arena;
    $("code-arena-label").hidden = !arena;
    $("code-match-fields").hidden = engine !== "match";
    // Only this page's own engine has calls to list.
    $("calls-title").hidden = engine !== "client";
    $("engine-calls").hidden = engine !== "client";
  }

  // An engine was chosen: offer its example (the arena bot, the Pong bot).
  offerExample() {
    const engine = $("code-engine").value;
    const select = $("code-example");
    if (EXAMPLES[select.value]?.engine === engine) return;
    const offered = Object.keys(EXAMPLES).find((key) => EXAMPLES[key].engine === engine);
    if (offered) select.value = offered;
  }

  // The match engine's seat: {match, role}, {} to matchmake, or null (not a match id).
  matchSeat() {
    const input = $("code-match");
    const id = input.value.trim();
    if (id === "") return {};
    if (!/^\d{1,15}$/.test(id)) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
      this.runState.set("error", "The match id is a number (or nothing, to matchmake).");
      return null;
    }
    return { match: Number(id), role: $("code-seat").value };
  }

  async loadArenas() {
    try {
      const arenas = await api("GET", "api/arenas/");
      const select = $("code-arena");
      const current = select.value || "default";
      select.replaceChildren(...arenas.map((arena) => h("option", { value: arena.id }, arena.id)));
      select.value = arenas.some((arena) => arena.id === current) ? current : "default";
    } catch (error) {
      this.runState.set("error", `Cannot list the arenas: ${error.message}`);
    }
  }

  renderButtons() {
    const running = this.socket !== null;
    $("run").disabled = running || !this.session.user;
    $("stop").disabled = !running;
    if (!this.session.user && !running) this.runState.set("", "Log in to run programs.");
    else if (!running && $("run-state").textContent === "Log in to run programs.") this.runState.clear();
  }

  // -- a run --------------------------------------------------------------------------

  run() {
    if (this.socket || !this.session.user) return;
    this.clearErrors();
    const language = this.language;
    const code = this.editor.getValue();
    const engine = $("code-engine").value;
    const context = { type: "context", language, engine };
    if (engine === "arena") context.arena = $("code-arena").value || "default";
    if (engine === "match") {
      const seat = this.matchSeat();
      if (seat === null) return;
      Object.assign(context, seat);
    }
    const output = $("output");
    output.replaceChildren();
    $("engine-calls").replaceChildren();
    const guess = new GuessEngine();
    const run = { language, ended: false, failed: null, interpreterError: null, startedAt: null };
    const socket = new WebSocket(socketURL("ws/processor/"));
    this.socket = socket;
    this.renderButtons();
    this.runState.set("connecting", "Connecting…");

    const send = (message) => socket.readyState === WebSocket.OPEN && socket.send(
      typeof message === "string" ? message : JSON.stringify(message));

    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      switch (message.type) {
        case "ready":
          if (message.message === "send context") send(context);
          else if (message.message === "send code") send(code);
          break;
        case "started":
          run.startedAt = performance.now();
          this.ticking(run);
          break;
        case "output":
          this.print(message.message, message.stream);
          break;
        case "command": {
          const reply = guess.answer(message.message);
          send({ type: "result", id: message.id, message: reply });
          appendToLog($("engine-calls"), h("li", {},
            h("code", {}, JSON.stringify(message.message)), " → ", h("code", {}, JSON.stringify(reply))), 200);
          break;
        }
        case "error":
          if (message.code === "INTERPRETER_ERROR") {
            run.interpreterError = message.message;
            this.markError(language, message.message);
          } else {
            run.failed = message.message;
            this.print(`server: ${message.message}`, "note");
          }
          break;
        case "end":
          run.ended = true;
          this.printEnd(run, message);
          break;
        default:
          break;
      }
    });

    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearInterval(this.tickTimer);
      this.renderButtons();
      if (run.ended) {
        this.runState.set("", "");
        return;
      }
      if (event.code === 4029) {
        this.runState.countdown("busy", `Server busy (${run.failed || "every run slot is taken"}). Try again`,
          performance.now() + BUSY_RETRY_S * 1000);
      } else if (event.code === 4001) {
        this.runState.set("closed", "Log in to run programs.");
      } else {
        const why = run.failed || event.reason || "the connection was lost";
        this.runState.set("closed", `Closed before the end: ${why}`);
      }
    });
  }

  ticking(run) {
    clearInterval(this.tickTimer);
    const update = () => {
      const seconds = (performance.now() - run.startedAt) / 1000;
      this.runState.set("connected", `Running · ${seconds.toFixed(1)} s`);
    };
    update();
    this.tickTimer = setInterval(update, 100);
  }

  stop() {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type: "stop" }));
      this.runState.set("connecting", "Stopping…");
    }
  }

  print(text, stream) {
    appendToLog($("output"), h("div", { class: stream }, text), 5000);
  }

  printEnd(run, end) {
    let limit = null;
    for (const pattern of LIMIT_TEXTS) {
      const match = run.interpreterError && run.interpreterError.match(pattern);
      if (match) limit = match[0];
    }
    const parts = [end.message, `${end.duration_ms} ms`];
    if (limit) parts.push(limit);
    const failed = end.exit_code !== 0;
    appendToLog($("output"), h("div", { class: failed ? "end-line failed" : "end-line" }, parts.join(" · ")), 5000);
  }

  // -- errors in the editor -------------------------------------------------------------

  markError(language, message) {
    const { line, text } = locateError(language, message);
    if (line === null || line < 1 || line > this.editor.lineCount()) return;
    const index = line - 1;
    this.editor.addLineClass(index, "background", "error-line");
    const widget = this.editor.addLineWidget(index, h("div", { class: "error-widget", role: "note" },
      `line ${line}: ${text}`), { coverGutter: false, noHScroll: true });
    this.errorMarks.push({ index, widget });
    this.editor.scrollIntoView({ line: index, ch: 0 }, 60);
  }

  clearErrors() {
    if (!this.editor) return;
    for (const { index, widget } of this.errorMarks) {
      this.editor.removeLineClass(index, "background", "error-line");
      widget.clear();
    }
    this.errorMarks = [];
  }
}
