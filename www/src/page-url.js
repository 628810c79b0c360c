// The page's address as part of its state: the `?sub=` filters are subscribed on load and
// mirrored back into the address bar whenever the subscriptions change, so a view can be
// bookmarked or shared. Every other parameter (`url`, `protocol`, anything else) and the hash
// are left as they are. (`url` and `protocol` are read by settings.js.)

import { filterProblem } from './model/topic-filter.js';

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
