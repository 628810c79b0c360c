// SeriesBuffer: the points of one plotted series, (time, value) pairs in typed arrays.
//
// Invariants:
// - Memory is bounded: at most `budget` points are kept; pushing more drops the oldest.
// - The newest `length` points are always readable as one contiguous pair of subarrays
//   (`view()`), with no copy, so a chart can take them as they are on every frame. This is the
//   "doubled ring" layout: each point is written at slot `i` and at slot `i + capacity`, so any
//   run of up to `capacity` consecutive points sits contiguously somewhere in the double array.
// - Storage starts small and doubles up to the budget, so the many series that only ever get a
//   few points do not each hold the full budget's memory.
// - Times are pushed in non-decreasing order (arrival times from a monotonic clock), which lets
//   `view(since)` find a time window by binary search.

const INITIAL_CAPACITY = 256;

export class SeriesBuffer {
  /** @param {number} budget most points kept (at least 1) */
  constructor(budget) {
    this.budget = Math.max(1, Math.floor(budget));
    this.capacity = Math.min(INITIAL_CAPACITY, this.budget);
    this.times = new Float64Array(this.capacity * 2);
    this.values = new Float64Array(this.capacity * 2);
    /** Points currently held. */
    this.length = 0;
    /** Points ever pushed (held or dropped); charts use it to notice new data. */
    this.total = 0;
    /** Next slot to write, in [0, capacity). */
    this.next = 0;
  }

  /** Appends a point, dropping the oldest when the budget is full. */
  push(time, value) {
    if (this.length === this.capacity && this.capacity < this.budget) {
      this.grow(Math.min(this.capacity * 2, this.budget));
    }
    const slot = this.next;
    const mirror = slot + this.capacity;
    this.times[slot] = time;
    this.times[mirror] = time;
    this.values[slot] = value;
    this.values[mirror] = value;
    this.next = slot + 1 === this.capacity ? 0 : slot + 1;
    if (this.length < this.capacity) this.length += 1;
    this.total += 1;
  }

  /** Moves the held points into storage for `capacity` points (oldest first, from slot 0). */
  grow(capacity) {
    const { times, values } = this.view();
    const newTimes = new Float64Array(capacity * 2);
    const newValues = new Float64Array(capacity * 2);
    newTimes.set(times, 0);
    newTimes.set(times, capacity);
    newValues.set(values, 0);
    newValues.set(values, capacity);
    this.times = newTimes;
    this.values = newValues;
    this.capacity = capacity;
    this.next = this.length % capacity;
  }

  /** Changes the budget; shrinking keeps the newest points. */
  setBudget(budget) {
    budget = Math.max(1, Math.floor(budget));
    if (budget === this.budget) return;
    const { times, values } = this.view();
    const keep = Math.min(this.length, budget);
    const capacity = Math.max(Math.min(INITIAL_CAPACITY, budget), keep);
    this.budget = budget;
    this.capacity = capacity;
    this.times = new Float64Array(capacity * 2);
    this.values = new Float64Array(capacity * 2);
    this.length = 0;
    this.next = 0;
    const total = this.total;
    for (let i = times.length - keep; i < times.length; i++) this.push(times[i], values[i]);
    this.total = total;
  }

  /** Forgets every point (the total count too). */
  clear() {
    this.length = 0;
    this.next = 0;
    this.total = 0;
  }

  /**
   * The held points with a time of at least `since` (all of them by default), oldest first, as
   * subarrays that share this buffer's storage: valid until the next push.
   * @returns {{times: Float64Array, values: Float64Array}}
   */
  view(since = -Infinity) {
    // The newest point is at slot next-1; its mirror ends the contiguous run.
    const end = (this.next === 0 ? this.capacity : this.next) + this.capacity;
    let start = end - this.length;
    if (since > -Infinity && this.length > 0) start = lowerBound(this.times, start, end, since);
    return {
      times: this.times.subarray(start, end),
      values: this.values.subarray(start, end),
    };
  }
}

/** First index in [low, high) whose value is >= target, in an ascending array. */
function lowerBound(array, low, high, target) {
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (array[middle] < target) low = middle + 1;
    else high = middle;
  }
  return low;
}
