// Which y-axis each series of a chart goes on: one axis while the series' magnitudes are alike,
// a second one (on the right) for the larger ones when the magnitudes fall into two groups far
// apart, so a CO2 reading of 400 does not flatten a temperature of 21 into a line.
//
// The rule: each series' magnitude is its largest |value| in view. Sorted by log magnitude, the
// largest gap between neighbours splits the series in two when it exceeds SPLIT_RATIO; those
// above the gap go on the right axis. Series without a magnitude (no points in view, or all 0)
// keep the axis they had, else the left one. A magnitude that is NaN counts as none.
//
// Hysteresis: an assignment that was made stays while it is still fair: two groups stay split
// while the smallest of the right is more than SPLIT_RATIO / HYSTERESIS above the largest of the
// left, and one group stays whole while no gap inside it exceeds SPLIT_RATIO * HYSTERESIS. So a
// series hovering near the threshold does not make the chart switch back and forth.
//
// SPLIT_RATIO is 5, not 10: a typical room sensor's humidity (about 55) and CO2 (about 400) are
// 7x apart, and on one axis the humidity is a flat line; its temperature and humidity (2.5x
// apart) read well together. 5 sits between the two with room for the hysteresis on each side.

export const LEFT = 0;
export const RIGHT = 1;
export const SPLIT_RATIO = 5;
export const HYSTERESIS = 1.25;

const SPLIT = Math.log10(SPLIT_RATIO);
const MARGIN = Math.log10(HYSTERESIS);

/**
 * The axis of each series (LEFT or RIGHT), from each one's magnitude and the axis it had
 * (undefined for a series new to the chart).
 * @param {number[]} magnitudes
 * @param {(number|undefined)[]} previous
 * @returns {number[]}
 */
export function splitAxes(magnitudes, previous) {
  const known = [];
  for (let i = 0; i < magnitudes.length; i++) {
    if (magnitudes[i] > 0 && Number.isFinite(magnitudes[i])) known.push(i);
  }
  const logs = magnitudes.map((m) => Math.log10(m));
  const axes = magnitudes.map((_, i) => (previous[i] === RIGHT ? RIGHT : LEFT));
  const kept = known.every((i) => previous[i] === LEFT || previous[i] === RIGHT) && stillFair(known, logs, previous);
  if (!kept) {
    const sorted = [...known].sort((a, b) => logs[a] - logs[b]);
    let widest = 0;
    let at = -1;
    for (let k = 1; k < sorted.length; k++) {
      const gap = logs[sorted[k]] - logs[sorted[k - 1]];
      if (gap > widest) {
        widest = gap;
        at = k;
      }
    }
    for (const i of known) axes[i] = LEFT;
    if (widest > SPLIT) for (let k = at; k < sorted.length; k++) axes[sorted[k]] = RIGHT;
  }
  // A right axis only for series with points on it: else everything goes on the left.
  if (known.length > 0 && known.every((i) => axes[i] === LEFT)) return axes.map(() => LEFT);
  return axes;
}

/** Whether the previous assignment of the `known` series still reads well (see above). */
function stillFair(known, logs, previous) {
  const left = known.filter((i) => previous[i] === LEFT).map((i) => logs[i]);
  const right = known.filter((i) => previous[i] === RIGHT).map((i) => logs[i]);
  if (widestGap(left) > SPLIT + MARGIN || widestGap(right) > SPLIT + MARGIN) return false;
  if (right.length === 0) return true;
  // A right axis with nothing on the left is pointless.
  if (left.length === 0) return false;
  return Math.min(...right) - Math.max(...left) > SPLIT - MARGIN;
}

function widestGap(logs) {
  const sorted = [...logs].sort((a, b) => a - b);
  let widest = 0;
  for (let k = 1; k < sorted.length; k++) widest = Math.max(widest, sorted[k] - sorted[k - 1]);
  return widest;
}
