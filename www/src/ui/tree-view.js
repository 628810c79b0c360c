// TreeView: the topic tree on screen. Branches open and close on click; each topic shows its
// message count, a marker when its last message was retained, and a preview of its last value.
// Clicking a topic name filters the message log to it.
//
// Re-rendering rebuilds the visible part of the tree, so the caller throttles `update()` (a few
// times a second) and it skips work when the tree's version has not moved. At most `MAX_ROWS`
// nodes and `MAX_CHILDREN` children per node are drawn, so a broker with a million topics
// cannot freeze the page; the rest are summarised as "… N more".

import { h, formatCount } from './dom.js';
import { previewPayload } from '../model/payload.js';

const MAX_ROWS = 1500;
const MAX_CHILDREN = 200;
const VALUE_CHARS = 40;

export class TreeView {
  /**
   * @param {HTMLElement} container
   * @param {import('../model/topic-tree.js').TopicTree} tree
   * @param {(topic: string) => void} onPick called with a topic whose name was clicked
   */
  constructor(container, tree, onPick) {
    this.container = container;
    this.tree = tree;
    this.onPick = onPick;
    /** Paths of open branches; levels near the root open by themselves until closed. */
    this.open = new Set();
    this.closed = new Set();
    this.renderedVersion = -1;
    container.addEventListener('click', (event) => {
      const toggle = event.target.closest('.toggle');
      const name = event.target.closest('.name');
      const node = event.target.closest('[data-path]');
      if (node === null) return;
      const path = node.dataset.path;
      if (toggle !== null) {
        if (this.isOpen(path, Number(node.dataset.depth))) {
          this.open.delete(path);
          this.closed.add(path);
        } else {
          this.closed.delete(path);
          this.open.add(path);
        }
        this.update(true);
      } else if (name !== null && node.dataset.topic === 'true') {
        this.onPick(path);
      }
    });
  }

  isOpen(path, depth) {
    if (this.open.has(path)) return true;
    if (this.closed.has(path)) return false;
    return depth < 2;
  }

  update(force = false) {
    if (!force && this.tree.version === this.renderedVersion) return;
    this.renderedVersion = this.tree.version;
    const budget = { rows: MAX_ROWS };
    const list = this.renderChildren(this.tree.root, 0, budget);
    if (this.tree.root.children.size === 0) {
      this.container.replaceChildren(h('p', { className: 'hint', textContent: 'Topics appear here as messages arrive.' }));
    } else {
      this.container.replaceChildren(list);
    }
  }

  renderChildren(node, depth, budget) {
    const list = h('ul', { role: depth === 0 ? 'tree' : 'group' });
    const children = node.sortedChildren();
    const shown = Math.min(children.length, MAX_CHILDREN);
    for (let i = 0; i < shown; i++) {
      if (budget.rows <= 0) {
        list.append(h('li', { className: 'hint', textContent: `… ${children.length - i} more` }));
        return list;
      }
      budget.rows -= 1;
      list.append(this.renderNode(children[i], depth, budget));
    }
    if (children.length > shown) list.append(h('li', { className: 'hint', textContent: `… ${children.length - shown} more` }));
    return list;
  }

  renderNode(node, depth, budget) {
    const hasChildren = node.children.size > 0;
    const open = hasChildren && this.isOpen(node.path, depth);
    const line = h('div', { className: 'node' }, [
      hasChildren
        ? h('button', { type: 'button', className: 'toggle', textContent: open ? '▾' : '▸', 'aria-label': `${open ? 'close' : 'open'} ${node.path}` })
        : h('span', { className: 'toggle' }),
      h('span', { className: 'name', textContent: node.name === '' ? '(empty)' : node.name, title: node.path }),
      h('span', { className: 'badge', textContent: formatCount(node.total), title: `${node.count} to this topic, ${node.total} in all` }),
      node.retained ? h('span', { className: 'retained', textContent: 'R', title: 'retained message' }) : null,
      node.count > 0 && node.lastPayload !== null
        ? h('span', { className: 'value', textContent: previewPayload(node.lastPayload, 'text').slice(0, VALUE_CHARS) })
        : null,
    ]);
    const item = h('li', {
      role: 'treeitem',
      'data-path': node.path,
      'data-depth': depth,
      'data-topic': node.count > 0,
      'aria-expanded': hasChildren ? String(open) : undefined,
    }, [line]);
    if (open) item.append(this.renderChildren(node, depth + 1, budget));
    return item;
  }
}
