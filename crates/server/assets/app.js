// Portwarden UI: small progressive enhancements (the pages work without JavaScript).
(function () {
  'use strict';
  // Overview: filter rows as you type (the form still submits for a server-side search).
  var search = document.getElementById('search');
  var table = document.getElementById('monitors');
  if (search && table) {
    var rows = Array.prototype.slice.call(table.querySelectorAll('tbody tr:not(.group)'));
    search.addEventListener('input', function () {
      var q = search.value.trim().toLowerCase();
      rows.forEach(function (tr) {
        tr.hidden = q !== '' && tr.textContent.toLowerCase().indexOf(q) < 0;
      });
    });
  }
})();
