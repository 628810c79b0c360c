// MQTT topic filters on the page: matching a topic name against a filter, and checking that a
// filter is well formed before it is sent (MQTT 5.0 section 4.7).
//
// Matching follows the broker: `+` matches one level, `#` the rest (including the parent level,
// so `a/#` matches `a`), and topics starting with `$` are not matched by a wildcard in the first
// level (4.7.2). `$share/group/filter` subscriptions match like `filter`.

/** The filter a shared subscription applies (`$share/g/a/+` applies `a/+`). */
export function effectiveFilter(filter) {
  if (!filter.startsWith('$share/')) return filter;
  const rest = filter.slice('$share/'.length);
  const slash = rest.indexOf('/');
  return slash < 0 ? rest : rest.slice(slash + 1);
}

/** Whether `topic` matches `filter`. */
export function topicMatches(filter, topic) {
  filter = effectiveFilter(filter);
  const filterLevels = filter.split('/');
  const topicLevels = topic.split('/');
  if (topic.startsWith('$') && (filterLevels[0] === '+' || filterLevels[0] === '#')) return false;
  for (let i = 0; i < filterLevels.length; i++) {
    const level = filterLevels[i];
    if (level === '#') return true;
    if (i >= topicLevels.length) return false;
    if (level !== '+' && level !== topicLevels[i]) return false;
  }
  return filterLevels.length === topicLevels.length;
}

/** Why `filter` is not a valid topic filter, or null when it is. */
export function filterProblem(filter) {
  if (filter.length === 0) return 'a topic filter cannot be empty';
  if (filter.includes('\u0000')) return 'a topic filter cannot contain U+0000';
  if (new TextEncoder().encode(filter).length > 65535) return 'a topic filter is at most 65535 bytes';
  const levels = effectiveFilter(filter).split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return '"#" must be a whole level and the last one';
    }
    if (level.includes('+') && level !== '+') return '"+" must be a whole level';
  }
  return null;
}

/** Why `topic` cannot be published to, or null when it can. */
export function topicProblem(topic) {
  if (topic.length === 0) return 'a topic name cannot be empty';
  if (topic.includes('+') || topic.includes('#')) return 'a topic name cannot contain "+" or "#"';
  if (topic.includes('\u0000')) return 'a topic name cannot contain U+0000';
  return null;
}
