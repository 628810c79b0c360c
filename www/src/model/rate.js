// RateMeter: events per second over a sliding window, from counts in fixed time buckets.
//
// `add(n, now)` is O(1) and allocation-free, so it can run for every message at 10k/s; `rate(now)`
// sums the buckets inside the window. Time is in milliseconds from any monotonic clock.

export class RateMeter {
  constructor(windowMs = 2000, buckets = 8) {
    this.bucketMs = windowMs / buckets;
    this.counts = new Float64Array(buckets);
    this.stamps = new Float64Array(buckets).fill(-Infinity);
    this.total = 0;
  }

  add(n, now) {
    const tick = Math.floor(now / this.bucketMs);
    const slot = tick % this.counts.length;
    if (this.stamps[slot] !== tick) {
      this.stamps[slot] = tick;
      this.counts[slot] = 0;
    }
    this.counts[slot] += n;
    this.total += n;
  }

  /** Events per second over the last full window before `now`'s bucket plus the current one. */
  rate(now) {
    const tick = Math.floor(now / this.bucketMs);
    const oldest = tick - this.counts.length + 1;
    let sum = 0;
    for (let i = 0; i < this.counts.length; i++) {
      if (this.stamps[i] >= oldest && this.stamps[i] <= tick) sum += this.counts[i];
    }
    // The current bucket is partly elapsed: divide by the time actually covered.
    const covered = (this.counts.length - 1) * this.bucketMs + (now - tick * this.bucketMs);
    return covered > 0 ? (sum * 1000) / covered : 0;
  }
}
