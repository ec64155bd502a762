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
  var has = function (k) { return (d[k] || []).some(function (v) { return v != null; }); };
  // [key of p50, key of p95, label, colour]
  var phases = [
    ['c50', 'c95', 'connect', '26,95,180'],
    ['t50', 't95', 'TLS', '145,65,172'],
    ['p50', 'p95', 'protocol', '200,120,20'],
    ['d50', 'd95', 'total', '31,157,85']
  ].filter(function (p) { return has(p[0]); });
  var data = [d.t];
  var series = [{}];
  var bands = [];
  var top = 0;
  phases.forEach(function (p) {
    var i50 = data.length;
    data.push(d[p[0]]);
    series.push({ label: p[2] + ' p50', stroke: 'rgb(' + p[3] + ')', width: 1.5 });
    data.push(d[p[1]]);
    series.push({ label: p[2] + ' p95', stroke: 'rgba(' + p[3] + ',0.35)', width: 1 });
    bands.push({ series: [i50 + 1, i50], fill: 'rgba(' + p[3] + ',0.12)' });
    d[p[1]].forEach(function (v) { if (v != null && v > top) { top = v; } });
  });
  // Failures: a marker at the top of the scale in buckets that had any.
  data.push(d.fail.map(function (f) { return f > 0 ? top : null; }));
  series.push({ label: 'failures', stroke: '#d64545', width: 0,
    points: { show: true, size: 6, fill: '#d64545' } });
  var opts = {
    width: Math.max(320, el.clientWidth - 12),
    height: 300,
    // The whole selected period, however little data there is.
    scales: {
      x: { time: true, range: function () { return [d.from, d.to]; } },
      y: { auto: true, range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } }
    },
    axes: [{}, { label: 'ms', size: 70,
      values: function (u, v) { return v.map(function (x) { return x + ' ms'; }); } }],
    series: series,
    bands: bands
  };
  var plot = new uPlot(opts, data, el);
  window.addEventListener('resize', function () {
    plot.setSize({ width: Math.max(320, el.clientWidth - 12), height: 300 });
  });
})();
