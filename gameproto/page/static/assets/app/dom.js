// Small DOM helpers: the page builds its dynamic parts with these, never with innerHTML,
// so a username, a chat message or a program's output is always text.

export const $ = (id) => document.getElementById(id);

// h("li", {class: "mine", dataset: {id: 3}}, "text", childNode, ...)
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

export function replaceChildren(element, children) {
  element.replaceChildren(...children);
}

// Keep a scrolled log at its end, unless the reader scrolled up to read.
export function appendToLog(log, line, limit = 1000) {
  const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  log.append(line);
  while (log.childElementCount > limit) log.firstElementChild.remove();
  if (atEnd) log.scrollTop = log.scrollHeight;
}

// A stable colour per name: the same user always reads the same in the chat.
export function nameColour(name) {
  let hash = 0;
  for (const char of name.toLowerCase()) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  const dark = matchMedia("(prefers-color-scheme: dark)").matches;
  return `hsl(${hash % 360} 65% ${dark ? 68 : 36}%)`;
}

export function formatClock(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${String(seconds % 60).padStart(2, "0")}`;
}

// The size of a canvas in device pixels follows its CSS size, so lines stay crisp.
export function fitCanvas(canvas, cssWidth, cssHeight) {
  const ratio = window.devicePixelRatio || 1;
  canvas.style.width = `${cssWidth}px`;
  canvas.style.height = `${cssHeight}px`;
  const width = Math.round(cssWidth * ratio);
  const height = Math.round(cssHeight * ratio);
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  return ratio;
}
