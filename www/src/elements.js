// The page's elements, looked up once by id when the dashboard starts. Modules are handed the
// elements they work on from here, so no frame and no event pays for a document query, and
// index.html's ids are listed in one place.

/** Name used in code -> id in index.html. */
const IDS = {
  // header: connection state and rates
  status: 'status',
  statusText: 'status-text',
  rateIn: 'rate-in',
  rateOut: 'rate-out',
  countIn: 'count-in',
  connectionToggle: 'connection-toggle',
  accountUser: 'account-user',
  signOut: 'signout',
  signInOpen: 'signin-open',
  // sign-in form
  signInForm: 'signin',
  signInMessage: 'signin-message',
  // connection form
  connectionForm: 'connection',
  disconnect: 'disconnect',
  // sidebar
  subscribeForm: 'subscribe-form',
  subscribeError: 'subscribe-error',
  subscriptionList: 'subscription-list',
  topicCount: 'topic-count',
  topicTree: 'topic-tree',
  publishForm: 'publish-form',
  publishResult: 'publish-result',
  retained: 'retained',
  retainedForm: 'retained-form',
  retainedStatus: 'retained-status',
  retainedList: 'retained-list',
  // plots
  plotWindow: 'plot-window',
  plotBudget: 'plot-budget',
  plotPause: 'plot-pause',
  plotAdd: 'plot-add',
  plotGrouping: 'plot-grouping',
  plotCopyLink: 'plot-copy-link',
  plotLinkBox: 'plot-link-box',
  plotLink: 'plot-link',
  plotLinkStatus: 'plot-link-status',
  plotsEmpty: 'plots-empty',
  charts: 'charts',
  seriesList: 'series-list',
  seriesCount: 'series-count',
  // message log
  logCount: 'log-count',
  logFilter: 'log-filter',
  logFormat: 'log-format',
  logPause: 'log-pause',
  logClear: 'log-clear',
  logList: 'log-list',
  logDetail: 'log-detail',
};

/**
 * Every element the dashboard uses, by name. Throws naming the id when index.html lacks one,
 * rather than failing later on a null.
 * @returns {{[name in keyof typeof IDS]: HTMLElement}}
 */
export function findElements(doc = document) {
  const elements = {};
  for (const [name, id] of Object.entries(IDS)) {
    const element = doc.getElementById(id);
    if (element === null) throw new Error(`the page has no element #${id}`);
    elements[name] = element;
  }
  return elements;
}
