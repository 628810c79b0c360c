// MessageLog: the most recent messages, newest first, with a text filter and a pause switch.
//
// Invariants:
// - At most `capacity` entries are held (a ring); older ones are forgotten, so 100k messages and
//   more cost bounded memory. Entries are numbered by `seq`, 1 for the first one ever added.
// - Rows are addressed newest first: row 0 is the newest entry that passes the filter. Views
//   render only the rows on screen, asking `size()` and `row(i)`.
// - The filter is a case-insensitive substring of the topic or of the payload's text (its first
//   `FILTER_BYTES`). With a filter set, the matching seqs are kept in ascending order and updated
//   as messages arrive, so scrolling a filtered log costs the same as an unfiltered one.
// - While paused, messages are not recorded (the log a person is reading stays still); they are
//   counted in `missed` so the page can say how many went by.

import { decodeText } from './payload.js';

/** Bytes of a payload searched by the filter. */
export const FILTER_BYTES = 1024;

export class MessageLog {
  constructor(capacity = 100_000) {
    this.capacity = capacity;
    this.ring = new Array(capacity);
    this.lastSeq = 0;
    this.length = 0;
    this.paused = false;
    this.missed = 0;
    this.filter = '';
    /** Ascending seqs of held entries that match the filter; `matchStart` skips forgotten ones. */
    this.matches = [];
    this.matchStart = 0;
    this.version = 0;
  }

  /** Records a message unless paused. `entry` has topic, payload, qos, retain and time. */
  add(entry) {
    if (this.paused) {
      this.missed += 1;
      return;
    }
    this.lastSeq += 1;
    entry.seq = this.lastSeq;
    entry.searchText = undefined;
    this.ring[(this.lastSeq - 1) % this.capacity] = entry;
    if (this.length < this.capacity) this.length += 1;
    if (this.filter !== '') {
      if (this.matchesFilter(entry)) this.matches.push(entry.seq);
      this.forgetOldMatches();
    }
    this.version += 1;
  }

  /** The entry numbered `seq`, if still held. */
  bySeq(seq) {
    if (seq < 1 || seq > this.lastSeq || seq <= this.lastSeq - this.length) return undefined;
    return this.ring[(seq - 1) % this.capacity];
  }

  /** Rows to show: held entries passing the filter. */
  size() {
    return this.filter === '' ? this.length : this.matches.length - this.matchStart;
  }

  /** The entry shown at `row` (0 is the newest). */
  row(index) {
    if (index < 0 || index >= this.size()) return undefined;
    if (this.filter === '') return this.bySeq(this.lastSeq - index);
    return this.bySeq(this.matches[this.matches.length - 1 - index]);
  }

  /** Sets the filter text and recomputes the matching rows. */
  setFilter(text) {
    const filter = text.trim().toLowerCase();
    if (filter === this.filter) return;
    this.filter = filter;
    this.matches = [];
    this.matchStart = 0;
    if (filter !== '') {
      for (let seq = this.lastSeq - this.length + 1; seq <= this.lastSeq; seq++) {
        if (this.matchesFilter(this.bySeq(seq))) this.matches.push(seq);
      }
    }
    this.version += 1;
  }

  setPaused(paused) {
    this.paused = paused;
    if (!paused) this.missed = 0;
    this.version += 1;
  }

  clear() {
    this.ring = new Array(this.capacity);
    this.length = 0;
    this.matches = [];
    this.matchStart = 0;
    this.missed = 0;
    this.version += 1;
  }

  matchesFilter(entry) {
    if (entry.topic.toLowerCase().includes(this.filter)) return true;
    if (entry.searchText === undefined) {
      const head = entry.payload.length > FILTER_BYTES ? entry.payload.subarray(0, FILTER_BYTES) : entry.payload;
      entry.searchText = decodeText(head).toLowerCase();
    }
    return entry.searchText.includes(this.filter);
  }

  /** Drops matches of entries the ring has forgotten, compacting now and then. */
  forgetOldMatches() {
    const oldest = this.lastSeq - this.length + 1;
    while (this.matchStart < this.matches.length && this.matches[this.matchStart] < oldest) {
      this.matchStart += 1;
    }
    if (this.matchStart > 4096 && this.matchStart * 2 > this.matches.length) {
      this.matches = this.matches.slice(this.matchStart);
      this.matchStart = 0;
    }
  }
}
