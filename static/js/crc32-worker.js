/* The upload widget's part worker (static/js/upload.js): reads one part of the file, computes
 * its CRC32 (IEEE, as zlib and S3 compute it), and later sends those same bytes to S3, all
 * off the page's main thread.
 *
 * {op: 'read', id, blob, keep}  -> {id, crc, engine, held}
 *   blob: the part (a slice of the picked File). crc: base64 of the CRC32's 4 big-endian
 *   bytes (what x-amz-checksum-crc32 holds). With `keep`, the bytes read stay here (held:
 *   true) until the page says 'put' or 'drop': each part is read from the file once, and S3
 *   checks the CRC32 of exactly the bytes it is sent. Without `keep` (parts larger than the
 *   widget holds in memory) the part is read 8 MiB at a time and only its CRC32 comes back.
 * {op: 'put', id, method, url, headers, timeout} -> {id, progress: {loaded, total}}...,
 *   then {id, put: {status, headers, text}} or {id, failed: 'error' | 'timeout' | 'abort'}
 *   The PUT of the held bytes (XMLHttpRequest, for its upload progress); the bytes are let go
 *   once sent. {op: 'abort', id} stops it; {op: 'drop', id} lets held bytes go unsent.
 * engine: "wasm" (hash-wasm's CRC32 in WebAssembly) or "js" (crc-32, pure JavaScript: where
 * the Content-Security-Policy has no 'wasm-unsafe-eval', or there is no WebAssembly).
 *
 * Parts are read into buffers this worker reuses (a BYOB read of the Blob's byte stream), not
 * a new ArrayBuffer each: XMLHttpRequest.send copies the bytes, so a part's buffer takes the
 * next part as soon as the PUT starts. Where a browser has no byte stream for a Blob, each part
 * is read with blob.arrayBuffer(). Spare buffers are let go once the worker is idle.
 */
/* global importScripts, hashwasm, CRC32 */
'use strict';

importScripts('../vendor/hash-wasm/crc32.umd.min.js', '../vendor/crc-32/crc32.js');

var PIECE = 8 * 1024 * 1024;
var PROGRESS_EVERY_MS = 100;

/* The hasher: one per worker, reused; a promise, as WebAssembly compiles asynchronously. */
var engine = (typeof WebAssembly === 'object' ? hashwasm.createCRC32() : Promise.reject(new Error('no WebAssembly')))
  .then(function (wasm) {
    return {
      name: 'wasm',
      start: function () { wasm.init(); return 0; },
      update: function (state, bytes) { wasm.update(bytes); return state; },
      finish: function () { return wasm.digest('binary'); },
    };
  }, function () {
    return {
      name: 'js',
      start: function () { return 0; },
      update: function (state, bytes) { return CRC32.buf(bytes, state); },
      finish: function (state) {
        return new Uint8Array([state >>> 24, (state >>> 16) & 0xff, (state >>> 8) & 0xff, state & 0xff]);
      },
    };
  });

function base64(bytes) {
  return btoa(String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]));
}

var held = new Map(); // id -> the bytes read (a Uint8Array), until sent or dropped
var sending = new Map(); // id -> its XMLHttpRequest

var SPARE_MAX = 8; // buffers kept for the next reads, at most
var SPARE_IDLE_MS = 5000; // spare buffers are let go after this long unused
var spare = [];
var spareTimer = 0;
self.partBuffers = { made: 0, reused: 0 }; // for the tests and benches

function takeBuffer(size) {
  for (var i = 0; i < spare.length; i++) {
    if (spare[i].byteLength >= size) {
      self.partBuffers.reused++;
      return spare.splice(i, 1)[0];
    }
  }
  self.partBuffers.made++;
  return new ArrayBuffer(size);
}

function giveBack(bytes) {
  if (!bytes || !bytes.buffer.byteLength) return;
  if (spare.length < SPARE_MAX) spare.push(bytes.buffer);
  clearTimeout(spareTimer);
  spareTimer = setTimeout(function () { spare = []; }, SPARE_IDLE_MS);
}

/* The blob's bytes, as a Uint8Array of exactly blob.size bytes in a reused buffer. */
function readBytes(blob) {
  var reader = null;
  if (blob.size > 0 && typeof blob.stream === 'function') {
    try { reader = blob.stream().getReader({ mode: 'byob' }); } catch (error) { reader = null; }
  }
  if (!reader) return blob.arrayBuffer().then(function (buffer) { return new Uint8Array(buffer); });
  var buffer = takeBuffer(blob.size), offset = 0;
  function next() {
    if (offset >= blob.size) {
      reader.releaseLock();
      return new Uint8Array(buffer, 0, blob.size);
    }
    return reader.read(new Uint8Array(buffer, offset, blob.size - offset)).then(function (result) {
      if (result.done) throw new Error('the file is shorter than when it was picked');
      buffer = result.value.buffer; // the read hands the buffer back, moved
      offset += result.value.byteLength;
      return next();
    });
  }
  return next();
}

/* Reads run one after the other: the hasher holds one part's state at a time. */
var reads = Promise.resolve();

function crcOf(hasher, blob, keep) {
  var state = hasher.start();
  if (keep || blob.size <= PIECE) {
    return readBytes(blob).then(function (bytes) {
      state = hasher.update(state, bytes);
      if (!keep) giveBack(bytes);
      return { crc: base64(hasher.finish(state)), bytes: keep ? bytes : null };
    });
  }
  var offset = 0;
  function next() {
    if (offset >= blob.size) return { crc: base64(hasher.finish(state)), bytes: null };
    var piece = blob.slice(offset, Math.min(offset + PIECE, blob.size));
    offset += PIECE;
    return readBytes(piece).then(function (bytes) {
      state = hasher.update(state, bytes);
      giveBack(bytes);
      return next();
    });
  }
  return next();
}

function read(job) {
  reads = reads.then(function () {
    return engine.then(function (hasher) {
      return crcOf(hasher, job.blob, job.keep).then(function (result) {
        if (result.bytes) held.set(job.id, result.bytes);
        self.postMessage({ id: job.id, crc: result.crc, engine: hasher.name, held: !!result.bytes });
      });
    }).catch(function (error) {
      self.postMessage({ id: job.id, error: String((error && error.message) || error) });
    });
  });
}

function put(job) {
  var body = held.get(job.id);
  if (!body) { self.postMessage({ id: job.id, failed: 'error' }); return; }
  var xhr = new XMLHttpRequest(), sentAt = 0;
  xhr.open(job.method || 'PUT', job.url, true);
  Object.keys(job.headers || {}).forEach(function (name) { xhr.setRequestHeader(name, job.headers[name]); });
  xhr.responseType = 'text';
  if (job.timeout) xhr.timeout = job.timeout;
  xhr.upload.onprogress = function (event) {
    var now = Date.now();
    if (now - sentAt < PROGRESS_EVERY_MS) return;
    sentAt = now;
    self.postMessage({ id: job.id, progress: { loaded: event.loaded, total: event.total } });
  };
  function end(message) {
    sending.delete(job.id);
    self.postMessage(message);
  }
  xhr.onload = function () {
    end({ id: job.id, put: { status: xhr.status, headers: xhr.getAllResponseHeaders(),
      text: xhr.status >= 200 && xhr.status < 300 ? '' : xhr.responseText } });
  };
  xhr.onerror = function () { end({ id: job.id, failed: 'error' }); };
  xhr.ontimeout = function () { end({ id: job.id, failed: 'timeout' }); };
  xhr.onabort = function () { end({ id: job.id, failed: 'abort' }); };
  sending.set(job.id, xhr);
  xhr.send(body); // copies the bytes: their buffer can take the next part
  held.delete(job.id);
  giveBack(body);
}

self.onmessage = function (event) {
  var job = event.data;
  if (job.op === 'read') read(job);
  else if (job.op === 'put') put(job);
  else if (job.op === 'abort') { if (sending.has(job.id)) sending.get(job.id).abort(); }
  else if (job.op === 'drop') { giveBack(held.get(job.id)); held.delete(job.id); }
};
