// Every connection shows its state in words: connecting, connected, reconnecting (and
// when), server busy (and when to retry), closed with the server's reason.

export class StateLabel {
  constructor(element) {
    this.element = element;
    this.timer = null;
  }

  set(state, text) {
    clearInterval(this.timer);
    this.timer = null;
    this.element.dataset.state = state;
    this.element.textContent = text;
  }

  // "Reconnecting in 3 s…", counting down, then "Reconnecting…".
  countdown(state, prefix, until) {
    const tick = () => {
      const left = Math.ceil((until - performance.now()) / 1000);
      this.element.dataset.state = state;
      this.element.textContent = left > 0 ? `${prefix} in ${left} s…` : `${prefix}…`;
      if (left <= 0) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
    clearInterval(this.timer);
    tick();
    this.timer = setInterval(tick, 250);
  }

  clear() {
    this.set("", "");
  }
}

// Backoff between reconnection attempts: 0.5 s, 1 s, 2 s, 4 s, then 5 s.
export function backoff(attempt) {
  return Math.min(5000, 500 * 2 ** attempt);
}

// A WebSocket of JSON frames that reconnects after a lost connection unless told the
// end is final.  `decide(code, reason)` returns what to do after a close:
// {retry: true} to reconnect (with {state, text} to say why, e.g. "Server busy"), or
// {retry: false, text} to stop and show why.
export class JSONSocket {
  constructor({ url, label, names, onOpen, onMessage, decide }) {
    this.url = url;
    this.label = label;
    this.names = names;  // {connecting, connected} texts
    this.onOpen = onOpen;
    this.onMessage = onMessage;
    this.decide = decide;
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.closedForGood = false;
  }

  open() {
    this.closedForGood = false;
    clearTimeout(this.retryTimer);
    if (this.attempt === 0) this.label.set("connecting", this.names.connecting);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.attempt = 0;
      this.label.set("connected", this.names.connected);
      this.onOpen?.();
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      this.onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket || this.closedForGood) return;
      const verdict = this.decide(event.code, event.reason);
      if (verdict.retry) {
        const delay = backoff(this.attempt++);
        this.label.countdown(verdict.state || "reconnecting", verdict.text || "Reconnecting",
          performance.now() + delay);
        this.retryTimer = setTimeout(() => this.open(), delay);
      } else {
        this.closedForGood = true;
        this.label.set(verdict.state || "closed", verdict.text);
      }
    });
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  get connected() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  // Close without reconnecting.
  close(text) {
    this.closedForGood = true;
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
    if (text !== undefined) this.label.set("closed", text);
  }
}
