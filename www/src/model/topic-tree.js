// TopicTree: every topic seen, as a tree of levels, with per-topic counts and the last message.
//
// Each node is one topic level; a node that received messages itself (not only its children) has
// `count > 0` and keeps its last payload and time. `total` on a node counts messages to it and to
// all its descendants, so collapsed branches still show activity.
//
// `retained` marks topics known to hold a retained message: seen with the retain flag (the broker
// sends stored retained messages so), or listed by the retained browser. The marker sticks across
// live messages, which arrive without the flag even when published retained; it goes when a
// retained message with an empty payload is seen or the page itself deletes the message.
//
// Bounds: at most `maxNodes` nodes; messages to new topics past that are counted in `dropped`
// but not added, so a stream of unique topics cannot exhaust memory. `version` increments on every
// change so views can skip redraws when nothing happened.

export class TopicNode {
  constructor(name, path, parent) {
    this.name = name;
    this.path = path;
    this.parent = parent;
    /** @type {Map<string, TopicNode>} */
    this.children = new Map();
    this.count = 0;
    this.total = 0;
    this.lastPayload = null;
    this.lastTime = 0;
    this.retained = false;
    this.qos = 0;
  }

  /** Children sorted by name, for display. */
  sortedChildren() {
    return [...this.children.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}

export class TopicTree {
  constructor(maxNodes = 50_000) {
    this.root = new TopicNode('', '', null);
    this.maxNodes = maxNodes;
    this.nodes = 0;
    this.topics = 0;
    this.dropped = 0;
    this.version = 0;
  }

  /** Records one message; returns its node, or null when the node bound was reached. */
  add(topic, payload, retained, qos, time) {
    const node = this.nodeFor(topic);
    if (node === null) {
      this.dropped += 1;
      return null;
    }
    if (node.count === 0) this.topics += 1;
    node.count += 1;
    node.lastPayload = payload;
    node.lastTime = time;
    if (retained) node.retained = payload.length > 0;
    node.qos = qos;
    for (let n = node; n !== null; n = n.parent) n.total += 1;
    this.version += 1;
    return node;
  }

  /** Marks a topic as holding a retained message (from the retained browser). */
  markRetained(topic, payload, qos, time) {
    const node = this.nodeFor(topic);
    if (node === null) return;
    if (node.count === 0) {
      this.topics += 1;
      node.count = 1;
      for (let n = node; n !== null; n = n.parent) n.total += 1;
      node.lastPayload = payload;
      node.lastTime = time;
      node.qos = qos;
    }
    node.retained = true;
    this.version += 1;
  }

  /** Removes the retained marker of a topic (its retained message was deleted). */
  unmarkRetained(topic) {
    const node = this.find(topic);
    if (node === undefined || !node.retained) return;
    node.retained = false;
    this.version += 1;
  }

  /** The node of `topic`, creating missing levels; null past the node bound. */
  nodeFor(topic) {
    let node = this.root;
    const levels = topic.split('/');
    for (let i = 0; i < levels.length; i++) {
      let child = node.children.get(levels[i]);
      if (child === undefined) {
        if (this.nodes + (levels.length - i) > this.maxNodes) return null;
        const path = i === 0 ? levels[0] : `${node.path}/${levels[i]}`;
        child = new TopicNode(levels[i], path, node);
        node.children.set(levels[i], child);
        this.nodes += 1;
      }
      node = child;
    }
    return node;
  }

  /** The node of an existing topic, or undefined. */
  find(topic) {
    let node = this.root;
    for (const level of topic.split('/')) {
      node = node.children.get(level);
      if (node === undefined) return undefined;
    }
    return node;
  }

  /** Forgets everything. */
  clear() {
    this.root = new TopicNode('', '', null);
    this.nodes = 0;
    this.topics = 0;
    this.dropped = 0;
    this.version += 1;
  }
}
