// When charts redraw under a stream. Drawing a chart (uPlot building its paths, the canvas
// rasterising them on the page's thread) is most of a busy frame's cost, so:
// - a chart redraws at most every `REDRAW_MS`: 30 redraws a second move a line smoothly (a 60 s
//   window over 900 px moves one pixel every 67 ms), where 60 would double the cost for nothing
//   anyone sees;
// - at most half the charts (at least one) draw in one frame, those waiting longest first, so
//   charts that all change every frame take turns instead of piling into the same frames.
// Measured with 40 series on two charts at 10,000 msg/s (bench/browser/dashboard.mjs): drawing
// both every frame kept the page's thread busy 90 % of the time and half the frames late;
// with turns, 66 % and none.

export const REDRAW_MS = 30;

/**
 * The charts to draw in the frame at `nowMs`: of `charts` (each with `lastDraw`, the
 * performance.now() of its last draw), those that `needsDraw(chart)` and whose last draw is at
 * least REDRAW_MS old, longest waiting first, at most half of all charts.
 */
export function chartsToDraw(charts, nowMs, needsDraw) {
  const due = charts.filter((chart) => nowMs - chart.lastDraw >= REDRAW_MS && needsDraw(chart));
  due.sort((a, b) => a.lastDraw - b.lastDraw);
  return due.slice(0, Math.max(1, Math.ceil(charts.length / 2)));
}
