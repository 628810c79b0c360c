// Colours for canvas drawing, read from the page's CSS variables so charts follow light and dark
// mode; `onThemeChange` tells when prefers-color-scheme flips (charts are then rebuilt).

/** Series colours, distinguishable on light and dark backgrounds. */
const PALETTE = ['#1a73e8', '#e8710a', '#12b5cb', '#d01884', '#7cb342', '#9334e6', '#f9ab00', '#e52592', '#00a88f', '#a8581c'];

export function seriesColor(seriesId) {
  return PALETTE[(seriesId - 1) % PALETTE.length];
}

export function themeColors() {
  const style = getComputedStyle(document.documentElement);
  const read = (name) => style.getPropertyValue(name).trim();
  return { text: read('--text'), muted: read('--muted'), grid: read('--grid'), border: read('--border') };
}

export function onThemeChange(listener) {
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', listener);
}
