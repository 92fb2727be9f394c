/* The pages' small behaviours, as event listeners on the document (no inline handlers: the
 * Content-Security-Policy allows only this site's script files). They work on content htmx
 * swaps in as well.
 *
 * - button.copy[data-copy=ID]: copies the text of element ID (the AWS CLI export).
 * - button[data-add-tag] / button[data-remove-tag]: add a row of tag fields (a blank copy of
 *   the last), or empty and remove the row (the only row is emptied); the step form autosaves.
 * - button[data-kms-arn]: puts that key's ARN in the KMS key field and ticks Encrypted.
 * - [data-announce][data-announce-to=ID]: a region htmx polls (the progress partial, the batch
 *   dashboard) says in one line where it stands; after each swap that line goes to the live
 *   region ID, outside the swapped element, when it changed: a screen reader hears each new
 *   stage once, not every poll (a live region inside the swapped element would be replaced whole).
 * - [data-batch-uploads=NAME]: an image uploaded loose (for a batch, no container) becomes a
 *   ticked checkbox NAME=<upload id> in it, at the top of the images to choose.
 * - [data-elapsed=SECONDS]: a running import's elapsed time as of the render, moved on every
 *   10 s to the minute as the server writes it (wizard.imports.progress.rough_duration); with
 *   [data-progress=P], the time left at the pace so far (progress.time_left, views.imports._about).
 *   The partial then does not change with the clock, and its poll stays a 304.
 */
(function () {
  'use strict';

  function changed(element) {
    element.dispatchEvent(new Event('change', { bubbles: true }));
  }

  function copy(button) {
    var source = document.getElementById(button.dataset.copy);
    if (!source) return;
    (navigator.clipboard ? navigator.clipboard.writeText(source.textContent) : Promise.reject()).then(
      function () { button.textContent = 'Copied'; },
      function () { button.textContent = 'Select and copy'; });
  }

  function clear(row) {
    row.querySelectorAll('input').forEach(function (input) { input.value = ''; });
  }

  function addTag(button) {
    var rows = document.getElementById(button.dataset.addTag);
    var last = rows && rows.querySelector('.tag-row:last-child');
    if (!last) return;
    var row = last.cloneNode(true);
    clear(row);
    rows.appendChild(row);
  }

  function removeTag(button) {
    var row = button.closest('.tag-row');
    var form = button.closest('form');
    if (!row) return;
    clear(row);
    if (row.parentNode.querySelectorAll('.tag-row').length > 1) row.remove();
    if (form) changed(form);
  }

  function useKey(button) {
    var field = document.getElementById(button.dataset.kmsField || 'id_kms_key_id');
    var encrypted = document.getElementById('id_encrypted');
    if (!field) return;
    field.value = button.dataset.kmsArn;
    if (encrypted) encrypted.checked = true;
    changed(field);
  }

  var announced = {};

  function announce() {
    document.querySelectorAll('[data-announce][data-announce-to]').forEach(function (element) {
      var to = element.dataset.announceTo;
      var line = element.dataset.announce;
      var region = document.getElementById(to);
      if (announced[to] === undefined) {
        announced[to] = line;  // what the page said when it loaded: nothing new to read out
      } else if (announced[to] !== line && region) {
        announced[to] = line;
        region.textContent = line;
      }
    });
  }

  function chooseUploaded(event) {
    var upload = event.detail || {};
    var list = document.querySelector('[data-batch-uploads]');
    if (!list || upload.container !== null || !upload.id) return;
    var input = list.querySelector('input[value="' + String(upload.id).replace(/\D/g, '') + '"]');
    if (!input) {
      var label = document.createElement('label');
      input = document.createElement('input');
      input.type = 'checkbox';
      input.name = list.dataset.batchUploads;
      input.value = upload.id;
      label.appendChild(input);
      label.appendChild(document.createTextNode(' ' + upload.file_name + ' (' + upload.size.toLocaleString('en') + ' bytes, just now)'));
      var row = document.createElement('div');
      row.appendChild(label);
      list.insertBefore(row, list.firstChild);
    }
    input.checked = true;
  }

  document.addEventListener('upload-completed', chooseUploaded);
  document.addEventListener('DOMContentLoaded', announce);
  document.addEventListener('htmx:afterSettle', announce);

  // The same words as progress.rough_duration: "under a minute", "3 min", "1 h 02 min".
  function roughDuration(seconds) {
    var minutes = Math.floor(Math.max(0, seconds) / 60);
    var hours = Math.floor(minutes / 60);
    minutes %= 60;
    if (hours) return hours + ' h ' + (minutes < 10 ? '0' : '') + minutes + ' min';
    return minutes ? minutes + ' min' : 'under a minute';
  }

  // Seconds since the element came (a swap brings a new one, with the server's new figure).
  var seen = new WeakMap();

  function tick() {
    var now = performance.now();
    document.querySelectorAll('[data-elapsed]').forEach(function (element) {
      if (!seen.has(element)) seen.set(element, now);
      var elapsed = Number(element.dataset.elapsed) + (now - seen.get(element)) / 1000;
      if (!isFinite(elapsed)) return;
      var text = roughDuration(elapsed);
      if (element.dataset.progress) {
        var progress = Number(element.dataset.progress);
        if (!(progress > 0 && progress < 100)) return;
        var left = elapsed * (100 - progress) / progress;
        text = left < 60 ? roughDuration(left) : 'about ' + roughDuration(left);
      }
      if (element.textContent !== text) element.textContent = text;
    });
  }

  document.addEventListener('DOMContentLoaded', tick);
  document.addEventListener('htmx:afterSettle', tick);
  setInterval(tick, 10000);

  document.addEventListener('click', function (event) {
    var button = event.target.closest && event.target.closest('button');
    if (!button) return;
    if (button.matches('button.copy[data-copy]')) copy(button);
    else if (button.matches('[data-add-tag]')) addTag(button);
    else if (button.matches('[data-remove-tag]')) removeTag(button);
    else if (button.matches('[data-kms-arn]')) useKey(button);
  });
})();
