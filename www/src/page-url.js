// The page's address as part of its state: the `?sub=` filters are subscribed on load and
// mirrored back into the address bar whenever the subscriptions change, so a view can be
// bookmarked or shared. Every other parameter (`url`, `protocol`, anything else) and the hash
// are left as they are. (`url` and `protocol` are read by settings.js.)
//
// `?layout=` carries the charts' layout (model/layout.js). It is read once, on load, and written
// only into the links the "Copy link" control makes, not mirrored: the charts change too often
// for the address to follow them.

import { filterProblem } from './model/topic-filter.js';
import { decodeLayout, encodeLayout } from './model/layout.js';

/** The valid, non-empty `sub` filters of an address's query, in order. */
export function subscriptionFilters(search) {
  return new URLSearchParams(search)
    .getAll('sub')
    .filter((filter) => filter !== '' && filterProblem(filter) === null);
}

/** `search` with its `sub` parameters replaced by `filters`: `?...`, or '' when nothing is left. */
export function searchWithSubscriptions(search, filters) {
  const params = new URLSearchParams(search);
  params.delete('sub');
  for (const filter of filters) params.append('sub', filter);
  const query = params.toString();
  return query ? `?${query}` : '';
}

/**
 * Puts `filters` in the address bar. replaceState, not pushState: each subscription is not a
 * page to go back to, and the page does not reload.
 */
export function mirrorSubscriptions(filters) {
  history.replaceState(null, '', `${location.pathname}${searchWithSubscriptions(location.search, filters)}${location.hash}`);
}

/** The chart layout of an address's `layout` parameter, or null (none, or not a valid one). */
export function layoutFromSearch(search) {
  return decodeLayout(new URLSearchParams(search).get('layout'));
}

/** `search` with its `layout` parameter set to `encoded`, every other parameter kept. */
export function searchWithLayout(search, encoded) {
  const params = new URLSearchParams(search);
  params.set('layout', encoded);
  return `?${params.toString()}`;
}

/**
 * A link to this page that restores its subscriptions (the address's `sub` parameters, which
 * mirror them) and `layout` (see model/layout.js).
 */
export function layoutLink({ origin, pathname, search, hash }, layout) {
  return `${origin}${pathname}${searchWithLayout(search, encodeLayout(layout))}${hash}`;
}
