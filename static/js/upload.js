/* The upload widget (templates/uploads/_widget.html): disk images from the browser straight
 * to S3 as multipart uploads, several parts in parallel.
 *
 * Uppy 5 (static/vendor/uppy, its AwsS3 plugin with server callbacks) schedules the parts,
 * retries them and reports progress. Our server (wizard/views/uploads.py) creates and
 * completes each multipart upload, presigns every part's URL and lists the parts S3 holds;
 * the browser only PUTs the parts' bytes to S3.
 *
 * Integrity: before a part is sent, a Web Worker (static/js/crc32-worker.js) reads it from
 * the file and computes its CRC32; the part's URL signs it (header x-amz-checksum-crc32),
 * and that worker PUTs the very bytes it read (off the main thread), so S3 takes exactly
 * those bytes and each part is read from the file once. At the end the server checks the object's checksum
 * against the parts' CRC32s.
 *
 * Speed: the next parts are read, checksummed and signed (several in one call) while the
 * ones in flight are sent, so a part's turn starts with its PUT.
 *
 * Resume: each started upload is remembered in localStorage under the request, the file's
 * name, size and modification time. After a reload, picking the same file again asks the
 * server for the parts S3 already holds (ListParts) and sends only the missing ones. After
 * a dropped connection the widget retries by itself the same way.
 *
 * Cancel aborts the multipart upload in S3. When a file is done, the widget dispatches
 * `upload-completed` on document.body (detail: the server's answer, with the container).
 */
(function () {
  'use strict';

  var MiB = 1024 * 1024;
  var MAX_PARTS = 10000;
  var MAX_SIZE = 5 * 1024 * 1024 * MiB; // 5 TiB, S3's largest object
  // Parts in flight: 6, the connections a browser opens to one host over HTTP/1.1 (more would
  // only wait in the browser); `aws s3 cp` is run with the same in bench/upload.
  var PARALLEL = 6;
  var MAX_SIGN_BATCH = 100; // part URLs per signing call (wizard.uploads.MAX_SIGN_BATCH)
  var SIGN_CALLS = 2; // signing calls on their way at once, per file
  var HOLD_PART_BYTES = 32 * MiB; // larger parts (files over 320 GiB) are not held in memory
  var READ_AHEAD_BYTES = 64 * MiB; // parts read and signed ahead of the ones in flight, at most
  var SAVE_EVERY_MS = 2000; // how often the parts' checksums are written down for a resume
  var RETRY_DELAYS = [0, 1000, 3000, 5000, 10000]; // per part, inside Uppy
  var AUTO_RETRY_SECONDS = [3, 10, 20, 30, 60]; // the whole file, after Uppy gave up
  var STORE_PREFIX = 'import-wizard:upload:';

  /* Bytes per part: at least 8 MiB, and 10,000 parts cover the file (wizard.uploads.part_size_for). */
  function partSize(size) {
    return Math.max(8 * MiB, Math.ceil(size / MAX_PARTS / MiB) * MiB);
  }

  function formatBytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
  }

  function formatDuration(seconds) {
    if (!isFinite(seconds)) return '…';
    seconds = Math.max(0, Math.round(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return h + ' h ' + m + ' min';
    if (m) return m + ' min ' + s + ' s';
    return s + ' s';
  }

  function HttpError(message, status) {
    var error = new Error(message);
    error.name = 'HttpError';
    error.status = status;
    error.source = { status: status }; // Uppy's retry logic reads source.status
    return error;
  }

  /* A few part workers (static/js/crc32-worker.js, a same-origin static file). `read(blob)`
   * answers {crc, body}: the part is read once in a worker, which keeps its bytes; body is a
   * handle on them whose put() sends them to S3 from that worker (off the main thread) and
   * drop() lets them go unsent. `crc(blob)` answers only the CRC32 (a part sent before a
   * reload, or one too large to hold). */
  function CrcPool(url, size) {
    this.jobs = new Map();
    this.puts = new Map();
    this.next = 0;
    this.engine = '';
    this.workers = [];
    var self = this;
    for (var i = 0; i < size; i++) {
      var worker = new Worker(url);
      worker.onmessage = this.done.bind(this);
      worker.onerror = function (event) { self.failAll(event.message || 'the checksum worker did not start'); };
      this.workers.push(worker);
    }
  }

  CrcPool.prototype.run = function (blob, keep) {
    var self = this, id = ++this.next, worker = this.workers[id % this.workers.length];
    return new Promise(function (resolve, reject) {
      self.jobs.set(id, { resolve: resolve, reject: reject, worker: worker, size: blob.size });
      worker.postMessage({ op: 'read', id: id, blob: blob, keep: keep });
    });
  };

  CrcPool.prototype.read = function (blob) { return this.run(blob, true); };
  CrcPool.prototype.crc = function (blob) {
    return this.run(blob, false).then(function (answer) { return answer.crc; });
  };

  CrcPool.prototype.done = function (event) {
    var data = event.data;
    var sent = this.puts.get(data.id);
    if (sent) { sent(data); return; }
    var job = this.jobs.get(data.id);
    this.jobs.delete(data.id);
    if (!job) return;
    if (data.error) { job.reject(new Error('The file could not be read: ' + data.error)); return; }
    this.engine = data.engine;
    if (this.onEngine) this.onEngine(this.engine);
    job.resolve({ crc: data.crc, body: data.held ? new HeldPart(this, job.worker, data.id, job.size) : null });
  };

  CrcPool.prototype.failAll = function (message) {
    var jobs = this.jobs;
    this.jobs = new Map();
    jobs.forEach(function (job) { job.reject(new Error('The file could not be read: ' + message)); });
  };

  /* A part's bytes held in the worker that read them. */
  function HeldPart(pool, worker, id, size) {
    this.pool = pool;
    this.worker = worker;
    this.id = id;
    this.size = size;
  }

  HeldPart.prototype.drop = function () { this.worker.postMessage({ op: 'drop', id: this.id }); };

  /* Uppy's uploadPartBytes, the PUT made by the worker: the same answers and errors as
   * Uppy's own (AwsS3.uploadPartBytes), so that its retries work alike. */
  HeldPart.prototype.put = function (opts) {
    var self = this, pool = this.pool, signature = opts.signature, signal = opts.signal;
    return new Promise(function (resolve, reject) {
      function onAbort() { self.worker.postMessage({ op: 'abort', id: self.id }); }
      if (signal) {
        if (signal.aborted) { self.drop(); reject(new DOMException('The operation was aborted', 'AbortError')); return; }
        signal.addEventListener('abort', onAbort);
      }
      pool.puts.set(self.id, function (data) {
        if (data.progress) { if (opts.onProgress) opts.onProgress({ loaded: data.progress.loaded, lengthComputable: true }); return; }
        pool.puts.delete(self.id);
        if (signal) signal.removeEventListener('abort', onAbort);
        var error;
        if (data.failed === 'abort') { reject(new DOMException('The operation was aborted', 'AbortError')); return; }
        if (data.failed === 'timeout') {
          error = new Error('Request has expired');
          error.source = { status: 403 };
          reject(error);
          return;
        }
        if (data.failed) {
          error = new Error('Unknown error');
          error.source = { status: 0 };
          reject(error);
          return;
        }
        var status = data.put.status;
        if (status < 200 || status >= 300) {
          error = new Error(status === 403 && /<Message>Request has expired<\/Message>/.test(data.put.text)
            ? 'Request has expired' : 'Non 2xx');
          error.source = { status: status, responseText: data.put.text };
          reject(error);
          return;
        }
        var headers = { __proto__: null };
        data.put.headers.trim().split(/[\r\n]+/).forEach(function (line) {
          var at = line.indexOf(': ');
          if (at > 0) headers[line.slice(0, at).toLowerCase()] = line.slice(at + 2);
        });
        if (opts.onProgress) opts.onProgress({ loaded: self.size, lengthComputable: true });
        if (!headers.etag) {
          error = new Error('S3 sent no ETag: the bucket\'s CORS must expose it.');
          error.source = { status: 0 };
          reject(error);
          return;
        }
        if (opts.onComplete) opts.onComplete(headers.etag);
        resolve(Object.assign({}, headers, { ETag: headers.etag }));
      });
      self.worker.postMessage({
        op: 'put', id: self.id, method: signature.method || 'PUT', url: signature.url, headers: signature.headers || {},
        timeout: typeof signature.expires === 'number' ? signature.expires * 1000 : 0,
      });
    });
  };

  var crcPool = null;
  function crcWorkers(url) {
    if (!crcPool) {
      crcPool = new CrcPool(url, Math.min(4, Math.max(2, (navigator.hardwareConcurrency || 2) - 1)));
      // Which CRC32 ran ("wasm" or "js"), for the benches and tests.
      crcPool.onEngine = function (engine) {
        document.querySelectorAll('[data-upload-widget]').forEach(function (root) { root.dataset.crcEngine = engine; });
      };
    }
    return crcPool;
  }

  /* Signing calls for one upload, several parts in each (the endpoint takes up to 100):
   * parts whose CRC32 is known wait here while SIGN_CALLS calls are on their way, then go
   * together in the next. */
  function Signer(widget, upload) {
    this.widget = widget;
    this.upload = upload;
    this.waiting = [];
    this.calls = 0;
  }

  Signer.prototype.sign = function (number, crc) {
    var self = this;
    return new Promise(function (resolve, reject) {
      self.waiting.push({ number: number, crc: crc, resolve: resolve, reject: reject });
      self.flush();
    });
  };

  Signer.prototype.flush = function () {
    if (this.calls >= SIGN_CALLS || !this.waiting.length) return;
    var self = this, batch = this.waiting.splice(0, MAX_SIGN_BATCH);
    this.calls += 1;
    this.widget.call('POST', this.upload.urls.sign, {
      parts: batch.map(function (p) { return { PartNumber: p.number, ChecksumCRC32: p.crc }; }),
    }).then(function (answer) {
      var at = performance.now();
      batch.forEach(function (p) {
        var n = String(p.number);
        p.resolve({ method: 'PUT', url: answer.urls[n], headers: answer.headers[n], expires: answer.expires_in,
          signedAt: at });
      });
    }, function (error) {
      batch.forEach(function (p) { p.reject(error); });
    }).then(function () {
      self.calls -= 1;
      self.flush();
    });
  };

  var store = {
    key: function (requestId, file) {
      return STORE_PREFIX + requestId + ':' + [file.name, file.size, file.lastModified].join(':');
    },
    get: function (key) {
      try { return JSON.parse(window.localStorage.getItem(key) || 'null'); } catch (e) { return null; }
    },
    set: function (key, value) {
      try { window.localStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode: no resume */ }
    },
    remove: function (key) {
      try { window.localStorage.removeItem(key); } catch (e) { /* ignore */ }
    },
    forgetUpload: function (uploadPk) {
      try {
        for (var i = window.localStorage.length - 1; i >= 0; i--) {
          var k = window.localStorage.key(i);
          if (k && k.indexOf(STORE_PREFIX) === 0) {
            var v = store.get(k);
            if (v && v.id === uploadPk) window.localStorage.removeItem(k);
          }
        }
      } catch (e) { /* ignore */ }
    },
  };

  function Widget(root) {
    this.root = root;
    this.requestId = root.dataset.request;
    this.createUrl = root.dataset.createUrl;
    this.crcWorkerUrl = root.dataset.crcWorker;
    this.csrf = root.dataset.csrf || '';
    this.list = root.querySelector('[data-files]');
    this.notice = root.querySelector('[data-notice]');
    this.files = new Map(); // Uppy file id -> state
    this.uppy = new window.Uppy.Uppy({
      id: 'import-upload-' + this.requestId,
      autoProceed: false,
      allowMultipleUploadBatches: true,
      restrictions: { maxFileSize: MAX_SIZE, minFileSize: 1 },
    });
    var self = this;
    this.uppy.use(window.Uppy.AwsS3, {
      id: 'AwsS3',
      shouldUseMultipart: true, // always: even a small file is one part, so every file resumes alike
      limit: PARALLEL,
      retryDelays: RETRY_DELAYS,
      getChunkSize: function (file) { return partSize(file.size); },
      createMultipartUpload: function (file) { return self.create(file); },
      signPart: function (file, opts) { return self.signPart(file, opts); },
      uploadPartBytes: uploadPartBytes,
      listParts: function (file, opts) { return self.listParts(file, opts); },
      completeMultipartUpload: function (file, opts) { return self.complete(file, opts); },
      // Uppy aborts an upload when a part fails for good; we keep it to resume, and
      // abort only when the user cancels (see cancel()).
      abortMultipartUpload: function () { return Promise.resolve(); },
    });
    this.uppy.on('upload-progress', function (file, progress) { self.onProgress(file, progress); });
    this.uppy.on('upload-success', function (file, response) { self.onSuccess(file, response); });
    this.uppy.on('upload-error', function (file, error) { self.onError(file, error); });
    this.uppy.on('s3-multipart:part-uploaded', function (file) { self.remember(self.files.get(file.id)); });
    this.uppy.on('restriction-failed', function (file, error) { self.say(error.message); });
    this.bindPicker();
    this.bindHints();
    window.addEventListener('online', function () { self.retryNow(); });
    window.addEventListener('pagehide', function () {
      self.files.forEach(function (st) { if (st.saveTimer) self.remember(st, true); });
    });
    window.addEventListener('beforeunload', function (event) {
      if (self.busy()) { event.preventDefault(); event.returnValue = ''; }
    });
  }

  Widget.prototype.say = function (message) {
    if (!this.notice) return;
    this.notice.textContent = message || '';
    this.notice.hidden = !message;
  };

  Widget.prototype.busy = function () {
    var busy = false;
    this.files.forEach(function (st) { if (st.phase === 'uploading' || st.phase === 'retrying') busy = true; });
    return busy;
  };

  /* --- JSON calls to our server --------------------------------------------------------- */

  Widget.prototype.call = function (method, url, body, signal) {
    var init = {
      method: method,
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-CSRFToken': this.csrf },
      signal: signal,
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) throw HttpError(data.error || 'The server answered ' + response.status + '.', response.status);
        return data;
      });
    }, function (error) {
      if (error && error.name === 'AbortError') throw error;
      throw HttpError('The server cannot be reached.', 0);
    });
  };

  /* --- Uppy's AwsS3 callbacks ----------------------------------------------------------- */

  Widget.prototype.create = function (file) {
    var self = this, st = this.files.get(file.id);
    return this.call('POST', this.createUrl, {
      file_name: file.name, size: file.size, content_type: file.type || '',
    }).then(function (upload) {
      if (st) {
        st.upload = upload;
        self.remember(st, true);
        if (st.phase === 'cancelled') { // cancelled while this call was on its way
          self.abortOnServer(upload);
          throw new DOMException('cancelled', 'AbortError');
        }
      }
      return { key: upload.key, uploadId: upload.upload_id };
    });
  };

  Widget.prototype.uploadOf = function (file) {
    var st = this.files.get(file.id);
    if (!st || !st.upload) throw HttpError('This upload is unknown here: pick the file again.', 409);
    return st.upload;
  };

  /* A part's presigned URL, for its bytes: their CRC32 first (S3 will check it), then the URL.
   * The part is read once: the worker hands back its bytes with the CRC32, and the PUT
   * (uploadPartBytes) sends those. The next parts are read and signed ahead, while
   * this one is on its way, so that a part's turn starts with its PUT (see prepare()). */
  Widget.prototype.signPart = function (file, opts) {
    var st = this.files.get(file.id), n = opts.partNumber;
    this.uploadOf(file);
    if (!st) throw HttpError('This upload is unknown here: pick the file again.', 409);
    var ready = this.prepare(file, st, n, opts.body); // first: the workers take jobs in turn
    st.ahead.delete(n);
    if (n > st.furthest) { // moving on (not a part sent again): read the next ones ahead
      st.furthest = n;
      var last = Math.ceil(file.size / partSize(file.size));
      for (var k = n + 1; k <= Math.min(last, n + this.aheadOf(file)); k++) if (!st.held.has(k)) this.prepare(file, st, k);
    }
    return ready.then(function (prepared) {
      // A URL read ahead and kept past half its life (a pause, an outage) is signed anew.
      if (performance.now() - prepared.signature.signedAt > prepared.signature.expires * 500) {
        return st.signer.sign(n, st.crcs[n]).then(function (signature) {
          return Object.assign(signature, { body: prepared.body });
        });
      }
      if (opts.signal && opts.signal.aborted && prepared.body) prepared.body.drop(); // Uppy will not send it
      return Object.assign({}, prepared.signature, { body: prepared.body });
    });
  };

  /* Part n, read (its bytes kept when small enough) and signed: a promise of {signature,
   * body}, body being the bytes read or null (the PUT then reads the file's slice). Parts whose
   * CRC32 is already known (resumed, sent again) are signed without being read. */
  Widget.prototype.prepare = function (file, st, n, blob) {
    if (st.ahead.has(n)) return st.ahead.get(n);
    var self = this;
    if (!st.signer) st.signer = new Signer(this, st.upload);
    var known = st.crcs[n];
    var read = known ? Promise.resolve({ crc: known, body: null }) : this.readPart(file, n, blob);
    var ready = read.then(function (part) {
      if (!known) { st.crcs[n] = part.crc; self.remember(st); }
      return st.signer.sign(n, part.crc).then(function (signature) {
        return { signature: signature, body: part.body };
      }, function (error) {
        if (part.body) part.body.drop(); // signed again later, its bytes read again then
        throw error;
      });
    });
    ready.catch(function () { if (st.ahead.get(n) === ready) st.ahead.delete(n); });
    st.ahead.set(n, ready);
    return ready;
  };

  Widget.prototype.readPart = function (file, n, blob) {
    var size = file.size, partBytes = partSize(size);
    blob = blob || file.data.slice((n - 1) * partBytes, Math.min(n * partBytes, size));
    var pool = crcWorkers(this.crcWorkerUrl);
    if (partBytes > HOLD_PART_BYTES) { // too large to hold: its CRC32 now, the Blob read again to send it
      return pool.crc(blob).then(function (crc) { return { crc: crc, body: null }; });
    }
    return pool.read(blob);
  };

  /* How many parts are read and signed ahead of the one starting: as many as are in flight,
   * within READ_AHEAD_BYTES of memory. */
  Widget.prototype.aheadOf = function (file) {
    var partBytes = partSize(file.size);
    return partBytes > HOLD_PART_BYTES ? 0 : Math.max(1, Math.min(PARALLEL, Math.floor(READ_AHEAD_BYTES / partBytes)));
  };

  /* The PUT of a part: from the worker holding the bytes signPart read, when it holds them;
   * else Uppy's own XHR of the file's slice (a part sent again, or too large to hold). */
  function uploadPartBytes(opts) {
    var held = opts.signature.body;
    if (!held) return window.Uppy.AwsS3.uploadPartBytes(opts);
    opts.signature.body = null; // sent once; a part sent again reads the file's slice
    return held.put(opts);
  }

  /* Forget the parts read ahead (their memory) once a file is done, failed or cancelled. */
  function dropAhead(st) {
    if (!st) return;
    st.ahead.forEach(function (ready) {
      ready.then(function (prepared) { if (prepared.body) prepared.body.drop(); }, function () { /* nothing held */ });
    });
    st.ahead = new Map();
    st.furthest = 0;
  }

  Widget.prototype.listParts = function (file, opts) {
    var self = this, upload = this.uploadOf(file);
    return this.call('GET', upload.urls.parts, undefined, opts.signal).then(function (answer) {
      var st = self.files.get(file.id);
      if (st) {
        var held = answer.parts.reduce(function (sum, p) { return sum + p.Size; }, 0);
        st.resetSpeed = true; // the parts already in S3 are not this session's speed
        st.resumedParts = answer.parts.length;
        st.held = new Set(answer.parts.map(function (p) { return p.PartNumber; }));
        self.render(st, {
          state: 'Resuming: ' + answer.parts.length + ' of ' + upload.part_count + ' parts (' +
            formatBytes(held) + ') already in S3',
        });
      }
      return answer.parts;
    });
  };

  /* Every part's CRC32, computing again any not written down (sent before a reload). */
  Widget.prototype.partChecksums = function (file, st, numbers) {
    var self = this, crcs = st.crcs, size = file.size, partBytes = partSize(size);
    return Promise.all(numbers.map(function (n) {
      if (crcs[n]) return crcs[n];
      var blob = file.data.slice((n - 1) * partBytes, Math.min(n * partBytes, size));
      return crcWorkers(self.crcWorkerUrl).crc(blob).then(function (crc) {
        crcs[n] = crc;
        return crc;
      });
    }));
  };

  Widget.prototype.complete = function (file, opts) {
    var self = this, upload = this.uploadOf(file);
    var st = this.files.get(file.id) || { crcs: {} };
    this.render(st, { state: 'Checking the object in S3…' });
    var numbers = opts.parts.map(function (p) { return p.PartNumber; });
    return this.partChecksums(file, st, numbers).then(function (crcs) {
      return self.call('POST', upload.urls.complete, {
        parts: opts.parts.map(function (p, i) {
          return { PartNumber: p.PartNumber, ETag: p.ETag, ChecksumCRC32: crcs[i] };
        }),
      }, opts.signal);
    }).then(function (answer) {
      answer.location = answer.key;
      return answer;
    });
  };

  Widget.prototype.abortOnServer = function (upload) {
    store.forgetUpload(upload.id);
    return this.call('POST', upload.urls.abort, {});
  };

  /* Write down the upload and the CRC32s of its parts, so that after a reload the same
   * file resumes (the server needs every part's CRC32 to complete). At most every 2 s. */
  Widget.prototype.remember = function (st, now) {
    if (!st || !st.upload || st.phase === 'cancelled' || st.phase === 'complete') return;
    var save = function () {
      st.saveTimer = null;
      store.set(st.storeKey, Object.assign({}, st.upload, { crcs: st.crcs }));
    };
    if (now) { window.clearTimeout(st.saveTimer); save(); return; }
    if (!st.saveTimer) st.saveTimer = window.setTimeout(save, SAVE_EVERY_MS);
  };

  /* --- adding files ---------------------------------------------------------------------- */

  Widget.prototype.bindPicker = function () {
    var self = this;
    var input = this.root.querySelector('[data-input]');
    var drop = this.root.querySelector('[data-drop]');
    if (input) {
      input.addEventListener('change', function () {
        var files = Array.prototype.slice.call(input.files || []);
        input.value = '';
        self.addFiles(files);
      });
    }
    if (drop) {
      ['dragenter', 'dragover'].forEach(function (type) {
        drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add('is-over'); });
      });
      ['dragleave', 'drop'].forEach(function (type) {
        drop.addEventListener(type, function () { drop.classList.remove('is-over'); });
      });
      drop.addEventListener('drop', function (e) {
        e.preventDefault();
        self.addFiles(Array.prototype.slice.call((e.dataTransfer && e.dataTransfer.files) || []));
      });
    }
  };

  Widget.prototype.bindHints = function () {
    var self = this;
    var hints = this.root.querySelector('[data-hints]');
    if (hints) hints.hidden = !hints.querySelector('[data-unfinished]');
    this.root.querySelectorAll('[data-discard]').forEach(function (button) {
      button.addEventListener('click', function () {
        var item = button.closest('[data-unfinished]');
        button.disabled = true;
        self.call('POST', button.dataset.discard, {}).then(function (answer) {
          store.forgetUpload(answer.id);
          self.dropHint(answer.id);
        }, function (error) {
          button.disabled = false;
          self.say(error.message);
        });
        if (item) item.classList.add('is-discarding');
      });
    });
  };

  Widget.prototype.dropHint = function (uploadPk) {
    var item = this.root.querySelector('[data-unfinished="' + uploadPk + '"]');
    if (item) item.remove();
    var hints = this.root.querySelector('[data-hints]');
    if (hints && !hints.querySelector('[data-unfinished]')) hints.hidden = true;
  };

  Widget.prototype.addFiles = function (files) {
    var self = this;
    this.say('');
    if (files.length) crcWorkers(this.crcWorkerUrl); // they start while the upload is created
    var ready = files.map(function (file) {
      var id;
      try {
        id = self.uppy.addFile({ name: file.name, type: file.type, data: file, source: 'Local', isRemote: false });
      } catch (error) {
        self.say(file.name + ': ' + error.message);
        return Promise.resolve();
      }
      var st = { id: id, name: file.name, size: file.size, storeKey: store.key(self.requestId, file), phase: 'uploading',
        samples: [], retries: 0, crcs: {}, ahead: new Map(), held: new Set(), furthest: 0, signer: null };
      self.files.set(id, st);
      self.addRow(st);
      return self.resumeState(st);
    });
    return Promise.all(ready).then(function () {
      return self.uppy.upload();
    }).catch(function (error) {
      if (error && error.message) self.say(error.message);
    });
  };

  /* Before uploading, find an unfinished upload of the same file to resume. */
  Widget.prototype.resumeState = function (st) {
    var self = this;
    var saved = store.get(st.storeKey);
    if (!saved || !saved.urls) return Promise.resolve();
    return this.call('GET', saved.urls.self).then(function (upload) {
      if (upload.status !== 'uploading' || upload.size !== st.size) {
        store.remove(st.storeKey);
        return;
      }
      st.upload = upload;
      st.crcs = saved.crcs || {};
      self.uppy.setFileState(st.id, { s3Multipart: { key: upload.key, uploadId: upload.upload_id } });
      self.dropHint(upload.id);
      self.render(st, { state: 'Resuming…' });
    }, function (error) {
      if (error.status === 404) store.remove(st.storeKey);
    });
  };

  /* --- a file's row ------------------------------------------------------------------------- */

  Widget.prototype.addRow = function (st) {
    var self = this;
    var li = document.createElement('li');
    li.className = 'upload-file is-uploading';
    li.dataset.fileId = st.id;
    li.innerHTML =
      '<div class="upload-file-head"><strong class="upload-name"></strong> <span class="upload-state"></span></div>' +
      '<progress class="upload-progress" value="0"></progress>' +
      '<div class="upload-stats"><span class="upload-bytes"></span><span class="upload-speed"></span>' +
      '<span class="upload-eta"></span></div>' +
      '<p class="upload-message" hidden></p>' +
      '<div class="upload-actions"><button type="button" class="secondary upload-retry" hidden>Retry now</button>' +
      '<button type="button" class="secondary upload-cancel">Cancel</button></div>';
    li.querySelector('.upload-name').textContent = st.name;
    var bar = li.querySelector('progress');
    bar.max = st.size;
    li.querySelector('.upload-cancel').addEventListener('click', function () { self.cancel(st); });
    li.querySelector('.upload-retry').addEventListener('click', function () { self.retry(st); });
    st.row = li;
    this.list.appendChild(li);
    this.render(st, { state: 'Starting…', bytes: 0 });
  };

  Widget.prototype.render = function (st, what) {
    var row = st.row;
    if (!row) return;
    if (what.state !== undefined) row.querySelector('.upload-state').textContent = what.state;
    if (what.bytes !== undefined) {
      row.querySelector('progress').value = what.bytes;
      row.querySelector('.upload-bytes').textContent = formatBytes(what.bytes) + ' of ' + formatBytes(st.size);
    }
    if (what.speed !== undefined) {
      row.querySelector('.upload-speed').textContent = what.speed ? formatBytes(what.speed) + '/s' : '';
      row.querySelector('.upload-eta').textContent =
        what.left !== undefined ? formatDuration(what.left) + ' left' : '';
    }
    if (what.message !== undefined) {
      var p = row.querySelector('.upload-message');
      p.textContent = what.message;
      p.hidden = !what.message;
    }
    if (what.phase) {
      st.phase = what.phase;
      row.className = 'upload-file is-' + what.phase;
      row.querySelector('.upload-cancel').hidden = what.phase === 'complete' || what.phase === 'cancelled' ||
        what.phase === 'failed';
      row.querySelector('.upload-retry').hidden = what.phase !== 'retrying';
    }
  };

  Widget.prototype.onProgress = function (file, progress) {
    var st = this.files.get(file.id);
    if (!st || st.phase === 'cancelled') return;
    var now = performance.now(), bytes = progress.bytesUploaded;
    if (st.resetSpeed) { st.samples = []; st.resetSpeed = false; }
    st.samples.push([now, bytes]);
    while (st.samples.length > 2 && now - st.samples[0][0] > 10000) st.samples.shift();
    st.bytes = bytes;
    if (now - (st.renderedAt || 0) < 200 && bytes < st.size) return;
    st.renderedAt = now;
    var first = st.samples[0], span = (now - first[0]) / 1000;
    var speed = span >= 1 ? (bytes - first[1]) / span : 0;
    var what = { bytes: bytes, speed: speed };
    if (speed > 0) what.left = (st.size - bytes) / speed;
    if (st.phase === 'uploading' && !/^Resuming/.test(st.row.querySelector('.upload-state').textContent)) {
      what.state = 'Uploading';
    }
    this.render(st, what);
  };

  Widget.prototype.onSuccess = function (file, response) {
    var st = this.files.get(file.id);
    var answer = (response && response.body) || {};
    dropAhead(st);
    if (st) {
      window.clearTimeout(st.saveTimer);
      store.remove(st.storeKey);
      this.render(st, {
        phase: 'complete', bytes: st.size, speed: 0,
        state: 'Uploaded' + (answer.container ? ': disk ' + (answer.container.position + 1) +
          (answer.container.format ? ' (' + answer.container.format + ')' : '') : ''),
        message: '',
      });
    }
    // Done with it in Uppy: the same file may be added again as another disk.
    var self = this;
    window.setTimeout(function () { if (self.uppy.getFile(file.id)) self.uppy.removeFile(file.id); }, 0);
    document.body.dispatchEvent(new CustomEvent('upload-completed', { bubbles: true, detail: answer }));
  };

  /* A final refusal (the server said no) ends the file; anything else is retried. */
  Widget.prototype.onError = function (file, error) {
    var st = this.files.get(file.id);
    if (!st || st.phase === 'cancelled') return;
    dropAhead(st);
    var status = error && (error.status !== undefined ? error.status : error.source && error.source.status);
    var fromServer = error && error.name === 'HttpError'; // else from S3, or the network
    var final = status === 400 || status === 401 || status === 403 || status === 404 || status === 409 ||
      status === 413 || status === 422;
    var message = fromServer ? error.message
      : status === 404 ? 'S3 no longer knows this upload (it was aborted or expired). Upload the file again.'
      : status ? 'S3 refused a part (HTTP ' + status + ').' : 'network error';
    if (final) {
      window.clearTimeout(st.saveTimer);
      store.remove(st.storeKey);
      this.render(st, { phase: 'failed', state: 'Failed', speed: 0, message: message });
      var self = this;
      window.setTimeout(function () { if (self.uppy.getFile(file.id)) self.uppy.removeFile(file.id); }, 0);
      return;
    }
    var wait = AUTO_RETRY_SECONDS[Math.min(st.retries, AUTO_RETRY_SECONDS.length - 1)];
    st.retries += 1;
    this.render(st, {
      phase: 'retrying', state: 'Interrupted', speed: 0,
      message: 'The upload stopped (' + message + '). Trying again in ' + wait +
        ' s; the parts already in S3 are kept.',
    });
    var self2 = this;
    window.clearTimeout(st.retryTimer);
    st.retryTimer = window.setTimeout(function () { self2.retry(st); }, wait * 1000);
  };

  Widget.prototype.retryNow = function () {
    var self = this;
    this.files.forEach(function (st) { if (st.phase === 'retrying') self.retry(st); });
  };

  /* Resume a file whose upload stopped: ListParts, then only the missing parts. */
  Widget.prototype.retry = function (st) {
    window.clearTimeout(st.retryTimer);
    if (st.phase !== 'retrying' || !this.uppy.getFile(st.id)) return;
    if (st.upload) {
      this.uppy.setFileState(st.id, { s3Multipart: { key: st.upload.key, uploadId: st.upload.upload_id } });
    }
    this.render(st, { phase: 'uploading', state: 'Resuming…', message: '' });
    this.uppy.retryUpload(st.id).catch(function () { /* reported through upload-error */ });
  };

  Widget.prototype.cancel = function (st) {
    var self = this;
    window.clearTimeout(st.retryTimer);
    this.render(st, { phase: 'cancelled', state: 'Cancelling…', speed: 0 });
    dropAhead(st);
    if (this.uppy.getFile(st.id)) this.uppy.removeFile(st.id); // stops the parts in flight
    window.clearTimeout(st.saveTimer);
    store.remove(st.storeKey);
    if (!st.upload) { // create() has not answered yet: it aborts when it does
      this.render(st, { state: 'Cancelled' });
      return;
    }
    this.abortOnServer(st.upload).then(function () {
      self.render(st, { state: 'Cancelled', message: 'The upload was aborted; S3 keeps none of its parts.' });
    }, function (error) {
      self.render(st, { state: 'Cancelled', message: error.message });
    });
  };

  /* --- start-up ------------------------------------------------------------------------------ */

  function init(root) {
    if (root.uploadWidget) return;
    root.uploadWidget = new Widget(root);
    root.dataset.ready = 'true';
  }

  function initAll(scope) {
    var roots = [];
    if (scope.matches && scope.matches('[data-upload-widget]')) roots.push(scope);
    if (scope.querySelectorAll) roots.push.apply(roots, scope.querySelectorAll('[data-upload-widget]'));
    if (!roots.length) return;
    whenUppy(function () { roots.forEach(init); });
  }

  /* Uppy's script may arrive after this one (e.g. in content swapped in by htmx). */
  function whenUppy(callback, waited) {
    if (window.Uppy && window.Uppy.AwsS3) { callback(); return; }
    if ((waited || 0) > 20000) return;
    window.setTimeout(function () { whenUppy(callback, (waited || 0) + 50); }, 50);
  }

  window.ImportUploadWidget = { init: initAll, partSize: partSize };
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', function () { initAll(document); });
  } else {
    initAll(document);
  }
  document.addEventListener('htmx:load', function (event) { initAll(event.detail.elt); });
})();
