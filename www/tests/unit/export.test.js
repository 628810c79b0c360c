// A chart's CSV export: merged in time order, quoted, limited to the visible window.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chartCsv, csvField, exportFilename } from '../../src/ui/export.js';
import { SeriesBuffer } from '../../src/model/ring-buffer.js';

function series(topic, field, points) {
  const buffer = new SeriesBuffer(100);
  for (const [time, value] of points) buffer.push(time, value);
  return { topic, field, buffer };
}

const T = Date.UTC(2026, 11, 7, 14, 3, 0) / 1000;

test('the rows of all series merge in time order, equal times in series order', () => {
  const a = series('home/kitchen', 'temp', [
    [T, 21.5],
    [T + 2.5, 21.75],
  ]);
  const b = series('home/hall', 'temp', [
    [T + 0.001, 19],
    [T + 2.5, -0.125],
    [T + 3, 1e21],
  ]);
  assert.equal(
    chartCsv([a, b]),
    [
      'time,topic,field,value',
      '2026-12-07T14:03:00.000Z,home/kitchen,temp,21.5',
      '2026-12-07T14:03:00.001Z,home/hall,temp,19',
      '2026-12-07T14:03:02.500Z,home/kitchen,temp,21.75',
      '2026-12-07T14:03:02.500Z,home/hall,temp,-0.125',
      '2026-12-07T14:03:03.000Z,home/hall,temp,1e+21',
      '',
    ].join('\n'),
  );
});

test('only points in [from, to] are written', () => {
  const a = series('a', '', [
    [T, 1],
    [T + 1, 2],
    [T + 2, 3],
    [T + 3, 4],
  ]);
  const rows = chartCsv([a], T + 1, T + 2).trim().split('\n');
  assert.deepEqual(rows.slice(1).map((row) => row.split(',').at(-1)), ['2', '3']);
  assert.equal(chartCsv([], T, T + 1), 'time,topic,field,value\n');
});

test('topics and fields with commas, quotes or line breaks are quoted', () => {
  assert.equal(csvField('plain/topic'), 'plain/topic');
  assert.equal(csvField('a,b'), '"a,b"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField('two\nlines'), '"two\nlines"');
  const csv = chartCsv([series('rooms/a,"b"', 'env.co2', [[T, 400]])]);
  assert.equal(csv.split('\n')[1], '2026-12-07T14:03:00.000Z,"rooms/a,""b""",env.co2,400');
});

test('file names carry the title, made safe, and the UTC time to the second', () => {
  const date = new Date(Date.UTC(2026, 11, 7, 14, 3, 0, 456));
  assert.equal(exportFilename('temp', 'csv', date), 'chart-temp-2026-12-07T14-03-00Z.csv');
  assert.equal(exportFilename('home/kitchen', 'png', date), 'chart-home_kitchen-2026-12-07T14-03-00Z.png');
  assert.equal(exportFilename('env.co2, temp', 'csv', date), 'chart-env.co2_temp-2026-12-07T14-03-00Z.csv');
  assert.equal(exportFilename('../..', 'csv', date), 'chart-chart-2026-12-07T14-03-00Z.csv');
});
