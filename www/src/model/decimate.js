// Decimator: the points of one series worth drawing at a given width in pixels, kept up to date
// as points arrive, so that drawing costs follow pixel columns and not the points held.
//
// Invariants:
// - Columns are time buckets of a quantised width (1 ms times a power of two, at least the
//   window's span over the pixel columns), aligned to multiples of that width (bucket number
//   floor(t / width)). So when the window slides, a bucket keeps its points and its summary.
// - Each bucket is drawn as at most 4 raw points: its first, its minimum, its maximum and its
//   last, in time order without repeats. That keeps every column's extent (the vertical stroke
//   uPlot draws for it) and the line's entry and exit, with at most about 4 * columns points.
// - Points are named by their sequence number (the buffer's `total` when they were pushed); the
//   buffer holds the sequence numbers [total - length, total). The decimator has folded exactly
//   the points [windowStart, windowEnd) of the last call's window: a call folds the points that
//   entered the window since (new pushes, or a larger `to`) into the newest bucket (kept as a
//   running summary) or new ones, and drops the buckets that left it (a larger `from`, or points
//   the ring dropped). That is O(new points).
// - Finished buckets are written once into the output arrays and never recomputed; the output
//   is a slice of those arrays (a start offset moves forward, compacted now and then), returned
//   without a copy.
// - The first bucket usually lies partly before the window. Its part in the window is summarised
//   from a suffix minimum and maximum over its points, built once when it becomes the first
//   bucket, so a window sliding a little on every frame costs O(1) there, not a rescan.
// - Anything else (a new width, a window that grew to the left or shrank on the right, a buffer
//   that was cleared) rebuilds from the held points in the window: O(points held), rare.

/** The narrowest column, in seconds. */
const QUANTUM = 0.001;
/** A wider column is kept until the span shrinks to 1/HYSTERESIS of it, so a span that wavers
 * around a power of two (the "all" window of a full ring) does not rebuild on every frame. */
const HYSTERESIS = 2.5;
/** Output slots kept free before the first bucket: room for the first bucket's in-window points. */
const HEADROOM = 4;
/** A column summary is 4 points of (sequence number, time, value): first, minimum, maximum, last. */
const FIRST = 0;
const MIN = 3;
const MAX = 6;
const LAST = 9;

export class Decimator {
  /** @param {import('./ring-buffer.js').SeriesBuffer} buffer the series' points */
  constructor(buffer) {
    this.buffer = buffer;
    /** The column width in seconds (0 before the first call). */
    this.width = 0;
    /** Raw points read from the buffer since construction: a cost measure for tests and benchmarks. */
    this.pointsRead = 0;
    // The buffer as last seen: its total and newest point, to notice a clear().
    this.seenTotal = 0;
    this.seenTime = 0;
    this.seenValue = 0;
    // The sequence numbers folded: [windowStart, windowEnd).
    this.windowStart = 0;
    this.windowEnd = 0;
    // Output points: finished buckets' points in [bucketOut[bucketHead], outEnd), then the open
    // bucket's, rewritten on every call.
    this.outTimes = new Float64Array(256);
    this.outValues = new Float64Array(256);
    this.outEnd = HEADROOM;
    // Finished buckets, oldest first, in [bucketHead, bucketTail): each one's first sequence
    // number and the offset of its points in the output.
    this.bucketSeq = new Float64Array(64);
    this.bucketOut = new Float64Array(64);
    this.bucketHead = 0;
    this.bucketTail = 0;
    // The newest bucket, still growing: its number and its summary.
    this.hasOpen = false;
    this.openNumber = 0;
    this.open = new Float64Array(12);
    // Suffix extremes over the first finished bucket's points from edgeFrom on: entry i is the
    // offset from edgeFrom of the minimum (maximum) of the points edgeFrom + i ... to its end.
    this.edgeSeq = NaN;
    this.edgeFrom = 0;
    this.suffixMin = new Int32Array(64);
    this.suffixMax = new Int32Array(64);
    // Scratch summary for the first bucket's part in the window.
    this.clipped = new Float64Array(12);
    this.last = { times: this.outTimes.subarray(0, 0), values: this.outValues.subarray(0, 0) };
    this.lastRange = null;
  }

  /**
   * The points to draw for the x range [from, to] (Unix seconds; from = -Infinity means from the
   * oldest held point, to = Infinity up to the newest) at `columns` pixel columns: per column at most
   * 4 points (the first, the minimum, the maximum and the last of the raw points in it, in time order,
   * duplicates merged), so at most about 4 * columns points whatever the buffer holds. Returned as
   * {times: Float64Array, values: Float64Array} subarrays owned by the decimator, valid until the next call.
   */
  points(from, to, columns) {
    columns = columns >= 1 ? Math.floor(columns) : 1;
    const buffer = this.buffer;
    const { times, values } = buffer.view();
    const total = buffer.total;
    const base = total - times.length;
    // The newest point of the last call must still be there, unchanged. If it is not, the buffer
    // was cleared (the total went back, or it was refilled with other points), or it dropped
    // points never seen: nothing folded so far can be trusted.
    const seen = this.seenTotal - 1 - base;
    const stale = this.seenTotal > 0 && (seen < 0 || seen >= times.length || times[seen] !== this.seenTime || values[seen] !== this.seenValue);
    this.seenTotal = total;
    if (times.length > 0) {
      this.seenTime = times[times.length - 1];
      this.seenValue = values[values.length - 1];
    }

    const start = base + (from > -Infinity ? lowerBound(times, from) : 0);
    const end = Math.max(start, base + (to < Infinity ? upperBound(times, to) : times.length));
    this.lastRange = null;
    if (start === end) {
      this.reset(start);
      return this.result(0, 0);
    }

    const span = (to < Infinity ? to : times[end - 1 - base]) - (from > -Infinity ? from : times[start - base]);
    const needed = span / columns;
    const width = quantise(needed);
    const keepWidth = this.width === width || (this.width >= needed && this.width < HYSTERESIS * needed);
    if (stale || !keepWidth || start < this.windowStart || end < this.windowEnd) {
      this.width = keepWidth ? this.width : width;
      this.reset(start);
    }

    this.dropBefore(start);
    const foldFrom = Math.max(this.windowEnd, start);
    this.fold(times, values, foldFrom - base, end - base, foldFrom);
    this.windowStart = start;
    this.windowEnd = end;
    return this.assemble(times, values, base);
  }

  /** The smallest and largest value among the points `points` returned last ({min, max}; NaN when none). */
  range() {
    if (this.lastRange === null) {
      const values = this.last.values;
      let min = NaN;
      let max = NaN;
      if (values.length > 0) {
        min = values[0];
        max = values[0];
        for (let i = 1; i < values.length; i++) {
          const value = values[i];
          if (value < min) min = value;
          else if (value > max) max = value;
        }
      }
      this.lastRange = { min, max };
    }
    return this.lastRange;
  }

  /** Forgets every bucket; the next fold starts at sequence number `start`. */
  reset(start) {
    this.bucketHead = 0;
    this.bucketTail = 0;
    this.outEnd = HEADROOM;
    this.hasOpen = false;
    this.edgeSeq = NaN;
    this.windowStart = start;
    this.windowEnd = start;
  }

  /** Drops the buckets whose points all come before sequence number `start`. */
  dropBefore(start) {
    while (this.bucketHead < this.bucketTail) {
      const next = this.bucketHead + 1 < this.bucketTail ? this.bucketSeq[this.bucketHead + 1] : this.hasOpen ? this.open[FIRST] : this.windowEnd;
      if (next > start) break;
      this.bucketHead += 1;
    }
    if (this.bucketHead === this.bucketTail && this.hasOpen && this.windowEnd <= start) this.hasOpen = false;
  }

  /** Folds the points at view indices [from, to) (sequence numbers from `seq` on) into the buckets. */
  fold(times, values, from, to, seq) {
    const width = this.width;
    const open = this.open;
    this.pointsRead += to - from;
    for (let i = from; i < to; i++, seq++) {
      const time = times[i];
      const value = values[i];
      const number = Math.floor(time / width);
      if (this.hasOpen && number === this.openNumber) {
        if (value < open[MIN + 2]) setPoint(open, MIN, seq, time, value);
        else if (value > open[MAX + 2]) setPoint(open, MAX, seq, time, value);
        setPoint(open, LAST, seq, time, value);
        continue;
      }
      if (this.hasOpen) this.finishOpen();
      this.hasOpen = true;
      this.openNumber = number;
      setPoint(open, FIRST, seq, time, value);
      setPoint(open, MIN, seq, time, value);
      setPoint(open, MAX, seq, time, value);
      setPoint(open, LAST, seq, time, value);
    }
  }

  /** Writes the open bucket's points into the output for good and lists it as finished. */
  finishOpen() {
    if (this.outEnd + 4 > this.outTimes.length) this.makeOutputRoom();
    if (this.bucketTail === this.bucketSeq.length) this.makeBucketRoom();
    this.bucketSeq[this.bucketTail] = this.open[FIRST];
    this.bucketOut[this.bucketTail] = this.outEnd;
    this.bucketTail += 1;
    this.outEnd += this.writeColumn(this.outEnd, this.open);
  }

  /** The output for the window: the finished buckets' points, with the first bucket cut to the window, then the open bucket's. */
  assemble(times, values, base) {
    if (this.outEnd + 4 > this.outTimes.length) this.makeOutputRoom();
    const start = this.windowStart;
    let first = this.outEnd;
    if (this.bucketHead < this.bucketTail) {
      first = this.bucketOut[this.bucketHead];
      const bucketStart = this.bucketSeq[this.bucketHead];
      if (bucketStart < start) {
        // Its in-window part ends where the next bucket's points begin; the slots before hold
        // this bucket's own (now stale) points and dropped ones, at least HEADROOM of them.
        const next = this.bucketHead + 1 < this.bucketTail ? this.bucketOut[this.bucketHead + 1] : this.outEnd;
        const end = this.bucketHead + 1 < this.bucketTail ? this.bucketSeq[this.bucketHead + 1] : this.open[FIRST];
        this.clipFinished(times, values, base, start, end);
        const count = columnLength(this.clipped);
        first = next - count;
        this.writeColumn(first, this.clipped);
      }
    }
    let end = this.outEnd;
    if (this.hasOpen) {
      if (this.open[FIRST] < start) {
        this.clipOpen(times, values, base, start);
        end += this.writeColumn(this.outEnd, this.clipped);
      } else {
        end += this.writeColumn(this.outEnd, this.open);
      }
    }
    return this.result(first, end);
  }

  /** Summarises the first finished bucket's points [start, end) into `clipped`, from its suffix extremes. */
  clipFinished(times, values, base, start, end) {
    const bucketStart = this.bucketSeq[this.bucketHead];
    if (this.edgeSeq !== bucketStart) {
      // Built once per bucket from the window's start on: the start only moves forward, and a
      // move back rebuilds everything.
      const length = end - start;
      if (this.suffixMin.length < length) {
        this.suffixMin = new Int32Array(length * 2);
        this.suffixMax = new Int32Array(length * 2);
      }
      const offset = start - base;
      let min = length - 1;
      let max = length - 1;
      for (let i = length - 1; i >= 0; i--) {
        const value = values[offset + i];
        if (value <= values[offset + min]) min = i;
        if (value >= values[offset + max]) max = i;
        this.suffixMin[i] = min;
        this.suffixMax[i] = max;
      }
      this.pointsRead += length;
      this.edgeSeq = bucketStart;
      this.edgeFrom = start;
    }
    const min = this.edgeFrom + this.suffixMin[start - this.edgeFrom];
    const max = this.edgeFrom + this.suffixMax[start - this.edgeFrom];
    const clipped = this.clipped;
    setPoint(clipped, FIRST, start, times[start - base], values[start - base]);
    setPoint(clipped, MIN, min, times[min - base], values[min - base]);
    setPoint(clipped, MAX, max, times[max - base], values[max - base]);
    setPoint(clipped, LAST, end - 1, times[end - 1 - base], values[end - 1 - base]);
  }

  /**
   * Summarises the open bucket's points from `start` on into `clipped` by reading them: only when
   * it is the window's one bucket, which holds few points unless they came in one burst.
   */
  clipOpen(times, values, base, start) {
    const clipped = this.clipped;
    const first = start - base;
    const end = this.windowEnd - base;
    setPoint(clipped, FIRST, start, times[first], values[first]);
    setPoint(clipped, MIN, start, times[first], values[first]);
    setPoint(clipped, MAX, start, times[first], values[first]);
    for (let i = first + 1; i < end; i++) {
      const value = values[i];
      if (value < clipped[MIN + 2]) setPoint(clipped, MIN, base + i, times[i], value);
      else if (value > clipped[MAX + 2]) setPoint(clipped, MAX, base + i, times[i], value);
    }
    setPoint(clipped, LAST, this.windowEnd - 1, times[end - 1], values[end - 1]);
    this.pointsRead += end - first;
  }

  /** Writes a column summary's points at output offset `at`, in time order without repeats; returns how many. */
  writeColumn(at, column) {
    const early = column[MIN] <= column[MAX] ? MIN : MAX;
    const late = early === MIN ? MAX : MIN;
    let end = this.writePoint(at, column, FIRST);
    if (column[early] !== column[FIRST]) end = this.writePoint(end, column, early);
    if (column[late] !== column[early]) end = this.writePoint(end, column, late);
    if (column[LAST] !== column[late]) end = this.writePoint(end, column, LAST);
    return end - at;
  }

  /** Writes one point of a column summary at output offset `at`; returns the next offset. */
  writePoint(at, column, point) {
    this.outTimes[at] = column[point + 1];
    this.outValues[at] = column[point + 2];
    return at + 1;
  }

  /**
   * Makes room for 4 more points after the output: slides the finished buckets' points down to
   * HEADROOM when most of the storage is dead, else doubles it.
   */
  makeOutputRoom() {
    const from = this.bucketHead < this.bucketTail ? this.bucketOut[this.bucketHead] : this.outEnd;
    const live = this.outEnd - from;
    const capacity = (HEADROOM + live + 4) * 2 > this.outTimes.length ? this.outTimes.length * 2 : this.outTimes.length;
    this.outTimes = relocate(this.outTimes, from, this.outEnd, HEADROOM, capacity);
    this.outValues = relocate(this.outValues, from, this.outEnd, HEADROOM, capacity);
    const shift = from - HEADROOM;
    for (let i = this.bucketHead; i < this.bucketTail; i++) this.bucketOut[i] -= shift;
    this.outEnd -= shift;
  }

  /** Makes room for one more finished bucket, like makeOutputRoom. */
  makeBucketRoom() {
    const live = this.bucketTail - this.bucketHead;
    const capacity = (live + 1) * 2 > this.bucketSeq.length ? this.bucketSeq.length * 2 : this.bucketSeq.length;
    this.bucketSeq = relocate(this.bucketSeq, this.bucketHead, this.bucketTail, 0, capacity);
    this.bucketOut = relocate(this.bucketOut, this.bucketHead, this.bucketTail, 0, capacity);
    this.bucketHead = 0;
    this.bucketTail = live;
  }

  /** The output points [first, end), remembered for range(). */
  result(first, end) {
    this.last = { times: this.outTimes.subarray(first, end), values: this.outValues.subarray(first, end) };
    return this.last;
  }
}

/** The column width for `needed` seconds per column: QUANTUM times the smallest power of two that reaches it. */
function quantise(needed) {
  let width = QUANTUM;
  while (width < needed) width *= 2;
  return width;
}

function setPoint(column, point, seq, time, value) {
  column[point] = seq;
  column[point + 1] = time;
  column[point + 2] = value;
}

/** How many points writeColumn writes for `column`. */
function columnLength(column) {
  const early = Math.min(column[MIN], column[MAX]);
  const late = Math.max(column[MIN], column[MAX]);
  return 1 + (early !== column[FIRST]) + (late !== early) + (column[LAST] !== late);
}

/** `array`'s items [from, end) moved to offset `to` of an array of `capacity` (the same one when it has that size). */
function relocate(array, from, end, to, capacity) {
  if (capacity === array.length) {
    array.copyWithin(to, from, end);
    return array;
  }
  const moved = new array.constructor(capacity);
  moved.set(array.subarray(from, end), to);
  return moved;
}

/** First index whose time is >= `time`, in a non-decreasing array. */
function lowerBound(times, time) {
  let low = 0;
  let high = times.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (times[middle] < time) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** First index whose time is > `time`, in a non-decreasing array. */
function upperBound(times, time) {
  let low = 0;
  let high = times.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (times[middle] <= time) low = middle + 1;
    else high = middle;
  }
  return low;
}
