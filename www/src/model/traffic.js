// Traffic: the dashboard's own message counts, received and sent, with their rates per second
// for the header. Counted where messages pass (ingest, the publish form, clearing a retained
// message) and read by the frame loop and the debug hook.

import { RateMeter } from './rate.js';

export class Traffic {
  constructor() {
    this.received = 0;
    this.sent = 0;
    this.rateIn = new RateMeter();
    this.rateOut = new RateMeter();
  }

  /** `count` messages (one by default) received at `now` (ms, monotonic). */
  countReceived(now, count = 1) {
    this.received += count;
    this.rateIn.add(count, now);
  }

  /** One message published at `now` (ms, monotonic). */
  countSent(now) {
    this.sent += 1;
    this.rateOut.add(1, now);
  }
}
