// Monitor page: latency chart from rollups, drawn with the vendored uPlot.
// Data comes from the `data-series` attribute (JSON, HTML-escaped by the server) and is only
// ever used as numbers.
(function () {
  'use strict';
  var el = document.getElementById('latency');
  if (!el || typeof uPlot === 'undefined') { return; }
  var d;
  try { d = JSON.parse(el.getAttribute('data-series') || '{}'); } catch (e) { return; }
  if (!d.t || d.t.length === 0) {
    el.textContent = 'No rollup data for this period yet.';
    return;
  }
  // Failures are drawn as a marker at the top of the p95 scale.
  var top = 0;
  ['c95', 'd95'].forEach(function (k) {
    d[k].forEach(function (v) { if (v != null && v > top) { top = v; } });
  });
  var fail = d.fail.map(function (f) { return f > 0 ? top : null; });
  var data = [d.t, d.c50, d.c95, d.d50, d.d95, fail];
  var opts = {
    width: Math.max(320, el.clientWidth - 12),
    height: 300,
    // The whole selected period, however little data there is.
    scales: {
      x: { time: true, range: function () { return [d.from, d.to]; } },
      y: { auto: true, range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } }
    },
    axes: [{}, { label: 'ms', values: function (u, v) { return v.map(function (x) { return x + ' ms'; }); }, size: 70 }],
    series: [
      {},
      { label: 'connect p50', stroke: '#1a5fb4', width: 1.5, spanGaps: false },
      { label: 'connect p95', stroke: 'rgba(26,95,180,0.35)', width: 1 },
      { label: 'duration p50', stroke: '#1f9d55', width: 1.5 },
      { label: 'duration p95', stroke: 'rgba(31,157,85,0.35)', width: 1 },
      { label: 'failures', stroke: '#d64545', width: 0, points: { show: true, size: 6, fill: '#d64545' } }
    ],
    bands: [
      { series: [2, 1], fill: 'rgba(26,95,180,0.12)' },
      { series: [4, 3], fill: 'rgba(31,157,85,0.12)' }
    ]
  };
  var plot = new uPlot(opts, data, el);
  window.addEventListener('resize', function () {
    plot.setSize({ width: Math.max(320, el.clientWidth - 12), height: 300 });
  });
})();
