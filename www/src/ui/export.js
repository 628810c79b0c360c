// A chart's export: its series' raw points as CSV, its picture as PNG, each offered as a file
// download. The CSV is built from the series buffers, never from what is drawn (which may be
// decimated), so it holds every point of the chart's visible time window.
//
// Downloads go through a Blob URL clicked on an `<a download>`: no navigation and no data URL,
// which the page's Content-Security-Policy (gateway/src/http/dashboard.rs) does not need to allow.

/** How long a download's Blob URL lives: the click has started reading it long before. */
const REVOKE_MS = 10_000;

/**
 * The points of `series` with times in [from, to], all series merged in time order (points of
 * equal time in the order of `series`), as CSV: `time,topic,field,value`, the time in ISO 8601
 * UTC with milliseconds.
 * @param {{topic: string, field: string, buffer: import('../model/ring-buffer.js').SeriesBuffer}[]} series
 */
export function chartCsv(series, from = -Infinity, to = Infinity) {
  const views = series.map((s) => s.buffer.view(from));
  const topics = series.map((s) => csvField(s.topic));
  const fields = series.map((s) => csvField(s.field));
  const next = series.map(() => 0);
  const rows = ['time,topic,field,value'];
  for (;;) {
    // A linear scan of the series' heads: charts hold a handful of series.
    let pick = -1;
    let time = Infinity;
    for (let k = 0; k < views.length; k++) {
      const times = views[k].times;
      if (next[k] < times.length && times[next[k]] < time) {
        pick = k;
        time = times[next[k]];
      }
    }
    if (pick < 0 || time > to) break;
    rows.push(`${new Date(time * 1000).toISOString()},${topics[pick]},${fields[pick]},${views[pick].values[next[pick]]}`);
    next[pick] += 1;
  }
  return `${rows.join('\n')}\n`;
}

/** A CSV field: quoted when it holds a comma, a quote or a line break, with quotes doubled. */
export function csvField(text) {
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** `chart-<title>-<UTC time to the second>.<extension>`, safe as a file name. */
export function exportFilename(title, extension, date = new Date()) {
  const name = title.replace(/[^\w.-]+/g, '_').replace(/^[_.]+|_+$/g, '') || 'chart';
  const stamp = date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  return `chart-${name}-${stamp}.${extension}`;
}

/** Offers `blob` as a file download named `filename`. */
export function downloadBlob(filename, blob) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), REVOKE_MS);
}

/**
 * The chart as a picture that stands alone: its title, a legend (colour, name, and the axis when
 * the chart has two) and the plot's canvas, on the panel's background, at the canvas' pixel
 * ratio.
 * @param {object} chart
 * @param {string} chart.title
 * @param {{name: string, color: string, axis: string}[]} chart.entries (axis '' when the chart has one)
 * @param {HTMLCanvasElement} chart.canvas the plot, as uPlot drew it
 * @param {number} chart.ratio device pixels per CSS pixel of that canvas
 * @param {{background: string, text: string}} colors
 * @returns {Promise<Blob>}
 */
export function chartPng({ title, entries, canvas, ratio }, colors) {
  const width = canvas.width / ratio;
  const padding = 12;
  const font = 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif';
  const measure = document.createElement('canvas').getContext('2d');
  measure.font = `13px ${font}`;
  // Legend entries flow in lines like the page's legend does.
  const lines = [[]];
  let x = padding;
  for (const entry of entries) {
    const label = entry.axis ? `${entry.name} (${entry.axis} axis)` : entry.name;
    const entryWidth = 18 + measure.measureText(label).width + 16;
    if (x + entryWidth > width - padding && lines.at(-1).length > 0) {
      lines.push([]);
      x = padding;
    }
    lines.at(-1).push({ ...entry, label, x });
    x += entryWidth;
  }
  const titleHeight = 28;
  const lineHeight = 20;
  const legendHeight = lines.length * lineHeight + 6;
  const height = titleHeight + legendHeight + canvas.height / ratio + padding / 2;

  const picture = document.createElement('canvas');
  picture.width = Math.round(width * ratio);
  picture.height = Math.round(height * ratio);
  const context = picture.getContext('2d');
  context.scale(ratio, ratio);
  context.fillStyle = colors.background;
  context.fillRect(0, 0, width, height);
  context.textBaseline = 'middle';
  context.fillStyle = colors.text;
  context.font = `600 15px ${font}`;
  context.fillText(title, padding, titleHeight / 2 + 4);
  context.font = `13px ${font}`;
  lines.forEach((line, index) => {
    const y = titleHeight + index * lineHeight + lineHeight / 2;
    for (const entry of line) {
      context.fillStyle = entry.color;
      context.fillRect(entry.x, y - 2, 13, 4);
      context.fillStyle = colors.text;
      context.fillText(entry.label, entry.x + 18, y);
    }
  });
  context.drawImage(canvas, 0, titleHeight + legendHeight, canvas.width / ratio, canvas.height / ratio);
  return new Promise((resolve, reject) => picture.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('the chart could not be encoded as PNG'))), 'image/png'));
}
