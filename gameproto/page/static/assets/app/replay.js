// The replay bar of the match view: the speed, a seek slider over the replay's
// duration and the position.  The server streams frames at their time divided by the
// speed; the position is counted from the last `replay` message (where a stream or a
// seek started) at that speed, and stops with the frames.

import { $, formatClock } from "./dom.js";

export const SPEEDS = [0.5, 1, 2, 4];

function clock(ms) {
  return formatClock(Math.floor(ms / 1000));
}

export class ReplayBar {
  // onSeek(ms) when the user moves the slider; onSpeed(speed) when they pick a speed.
  constructor({ onSeek, onSpeed }) {
    this.slider = $("replay-seek");
    this.readout = $("replay-position");
    this.speedSelect = $("replay-speed");
    this.dragging = false;
    this.reset();
    // Dragging shows where the slider points; letting go (or a key) seeks there.
    this.slider.addEventListener("input", () => {
      this.dragging = true;
      this.render(Number(this.slider.value));
    });
    this.slider.addEventListener("change", () => {
      this.dragging = false;
      const ms = Math.min(this.duration, Number(this.slider.value));
      this.at(ms);
      onSeek(ms);
    });
    this.speedSelect.addEventListener("change", () => onSpeed(this.speed));
  }

  get speed() {
    return Number(this.speedSelect.value);
  }

  reset() {
    this.duration = 0;
    this.base = 0;
    this.baseAt = performance.now();
    this.playingSpeed = 1;
    this.playing = false;
    this.position = 0;
    this.speedSelect.value = "1";
    this.slider.max = "0";
    this.slider.value = "0";
    this.render(0);
  }

  // A `replay` message: the stream (re)starts at position_ms.
  started({ position_ms: position, duration_ms: duration, speed }) {
    this.duration = duration;
    this.playingSpeed = speed;
    // About a hundred steps: arrow keys move by 1 %, Home and End to either end (the
    // slider's end is the first whole step at or after the duration, so End reaches it).
    const step = Math.max(10, Math.round(duration / 100 / 10) * 10);
    this.slider.step = String(step);
    this.slider.max = String(Math.ceil(duration / step) * step);
    this.at(position);
    this.playing = true;
  }

  // A frame arrived: the position moves on with the stream's clock.
  frame() {
    if (!this.playing) return;
    const position = this.base + (performance.now() - this.baseAt) * this.playingSpeed;
    this.position = Math.min(this.duration, position);
    if (!this.dragging) this.render(this.position);
  }

  at(ms) {
    this.base = ms;
    this.baseAt = performance.now();
    this.position = ms;
    if (!this.dragging) this.render(ms);
  }

  ended() {
    this.playing = false;
    this.position = this.duration;
    if (!this.dragging) this.render(this.duration);
  }

  render(ms) {
    const text = `${clock(ms)} / ${clock(this.duration)}`;
    if (this.readout.textContent !== text) this.readout.textContent = text;
    if (!this.dragging) this.slider.value = String(Math.round(ms));
    this.slider.setAttribute("aria-valuetext", `${clock(ms)} of ${clock(this.duration)}`);
  }
}
