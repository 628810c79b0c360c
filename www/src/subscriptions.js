// Subscriptions: the dashboard's topic filters, each with its QoS, its state (pending, active or
// refused), the QoS the broker granted and how many messages it matched; and the cache that
// answers "which filters match this topic" once per topic instead of once per message.
//
// The list lives here, not in the MQTT client, because it outlives clients: a new client (the
// connection form's Connect) is sent every filter again (`sendAll`), while a client that
// reconnects by itself restores its own subscriptions and the entries only need to show active
// again (`resendPending`). Sending goes through whichever client is current when it happens.

import { topicMatches } from './model/topic-filter.js';
import { describeError } from './errors.js';

/** Topics whose matching subscriptions are cached (a cache, so bounded by clearing). */
const MATCH_CACHE_LIMIT = 10_000;

/** @typedef {{filter: string, qos: number, granted: number, status: 'pending' | 'active' | 'refused', reason: string, count: number}} Subscription */

export class Subscriptions {
  /**
   * @param {object} hooks
   * @param {() => object | null} hooks.client the connected MQTT client, or null
   * @param {() => void} hooks.onChange an entry was added, removed, acknowledged or refused
   * @param {(filters: string[]) => void} hooks.onFiltersChange the set of filters changed
   * @param {(text: string) => void} hooks.onError an unsubscribe failed
   */
  constructor({ client, onChange, onFiltersChange, onError }) {
    this.currentClient = client;
    this.onChange = onChange;
    this.onFiltersChange = onFiltersChange;
    this.onError = onError;
    /** @type {Subscription[]} */
    this.list = [];
    /** topic -> the subscriptions matching it */
    this.matchCache = new Map();
  }

  /** The filters, in the order they were added. */
  filters() {
    return this.list.map((subscription) => subscription.filter);
  }

  /** Adds `filter` (or sets its QoS again) without sending anything; it waits as pending. */
  add(filter, qos) {
    let subscription = this.list.find((s) => s.filter === filter);
    if (subscription === undefined) {
      subscription = { filter, qos, granted: qos, status: 'pending', reason: '', count: 0 };
      this.list.push(subscription);
      this.matchCache.clear();
    } else {
      subscription.qos = qos;
      subscription.status = 'pending';
    }
    return subscription;
  }

  /** Adds `filter` and subscribes to it now if connected (else on the next connection). */
  subscribe(filter, qos) {
    const subscription = this.add(filter, qos);
    this.onFiltersChange(this.filters());
    this.onChange();
    if (this.currentClient() !== null) this.send(subscription);
  }

  /** Sends one SUBSCRIBE and records the broker's answer on the entry. */
  async send(subscription) {
    const client = this.currentClient();
    if (client === null) return;
    try {
      const { qos, reasonCode } = await client.subscribe(subscription.filter, { qos: subscription.qos });
      if (reasonCode !== undefined && reasonCode >= 0x80) {
        subscription.status = 'refused';
        subscription.reason = `reason 0x${reasonCode.toString(16)}`;
      } else {
        subscription.status = 'active';
        subscription.granted = qos ?? subscription.qos;
      }
    } catch (error) {
      // A client that was replaced meanwhile fails its pending calls; that says nothing about
      // the filter, which the new client sends again.
      if (client !== this.currentClient()) return;
      subscription.status = 'refused';
      subscription.reason = describeError(error);
    }
    this.onChange();
  }

  /** A new client is connected: subscribe to everything. */
  sendAll() {
    for (const subscription of this.list) this.send(subscription);
  }

  /** The client reconnected by itself and restored its subscriptions: mark them active again. */
  resendPending() {
    for (const subscription of this.list) {
      if (subscription.status === 'pending') this.send(subscription);
    }
  }

  /** The client is going away: every entry waits for the next one. */
  markPending() {
    for (const subscription of this.list) subscription.status = 'pending';
  }

  /** Removes `filter`, and unsubscribes from it if the broker had accepted it. */
  async unsubscribe(filter) {
    const subscription = this.list.find((s) => s.filter === filter);
    if (subscription === undefined) return;
    this.list = this.list.filter((s) => s !== subscription);
    this.matchCache.clear();
    this.onFiltersChange(this.filters());
    this.onChange();
    const client = this.currentClient();
    if (client !== null && subscription.status !== 'refused') {
      try {
        await client.unsubscribe(filter);
      } catch (error) {
        this.onError(`unsubscribe ${filter}: ${describeError(error)}`);
      }
    }
  }

  /** The subscriptions whose filters match `topic`, cached per topic. */
  matching(topic) {
    let matching = this.matchCache.get(topic);
    if (matching === undefined) {
      if (this.matchCache.size >= MATCH_CACHE_LIMIT) this.matchCache.clear();
      matching = this.list.filter((s) => topicMatches(s.filter, topic));
      this.matchCache.set(topic, matching);
    }
    return matching;
  }
}
