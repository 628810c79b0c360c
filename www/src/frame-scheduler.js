// FrameScheduler: the page's one drawing loop. Whatever changes what is on screen asks for a
// frame (`request()`); requests coalesce into at most one requestAnimationFrame callback, which
// calls `draw(now, tick)`. So a 10k msgs/s stream costs one draw per frame, not one per
// message, and a hidden tab draws nothing.
//
// `tick` is true at most every TICK_MS: that is when the slower parts (texts, counts, the topic
// tree) redraw. An interval asks for a frame every TICK_MS too, so clocks move (rates, the
// reconnect countdown, sliding chart windows) when no message arrives.
//
// It also keeps how long each frame's work took, the last FRAME_SAMPLES of them, for the
// debug hook. uPlot draws in a microtask queued by `setData`, after `draw` returns, so a frame's
// work is timed up to a microtask queued after `draw`'s, which runs once theirs have.

export const TICK_MS = 250;
/** Frame work durations kept for the debug hook. */
export const FRAME_SAMPLES = 1024;

export class FrameScheduler {
  /**
   * @param {(now: number, tick: boolean) => void} draw the frame's work; `now` is performance.now()
   * @param {object} [clock] the browser's by default; tests pass their own
   */
  constructor(
    draw,
    {
      now = () => performance.now(),
      requestAnimationFrame: onAnimationFrame = (callback) => requestAnimationFrame(callback),
      setInterval: every = (callback, ms) => setInterval(callback, ms),
      queueMicrotask: afterDraw = (callback) => queueMicrotask(callback),
    } = {},
  ) {
    this.draw = draw;
    this.now = now;
    this.onAnimationFrame = onAnimationFrame;
    this.every = every;
    this.afterDraw = afterDraw;
    this.pending = false;
    this.lastTick = 0;
    this.durations = new Float64Array(FRAME_SAMPLES);
    this.frames = 0;
  }

  /** Starts the ticking interval. */
  start() {
    this.every(() => this.request(), TICK_MS);
  }

  /** Asks for a frame; several requests before it runs make one frame. */
  request() {
    if (this.pending) return;
    this.pending = true;
    this.onAnimationFrame(() => this.frame());
  }

  frame() {
    this.pending = false;
    const started = this.now();
    const tick = started - this.lastTick >= TICK_MS;
    if (tick) this.lastTick = started;
    this.draw(started, tick);
    this.afterDraw(() => {
      this.durations[this.frames % FRAME_SAMPLES] = this.now() - started;
      this.frames += 1;
    });
  }

  /** Frames drawn so far, and the work durations (ms) kept of them. */
  work() {
    const count = Math.min(this.frames, FRAME_SAMPLES);
    return { frames: this.frames, recent: Array.from(this.durations.subarray(0, count)) };
  }
}
