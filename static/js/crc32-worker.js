/* The upload widget's CRC32 worker (static/js/upload.js): reads one part of the file and
 * computes its CRC32 (IEEE, as zlib and S3 compute it) off the page's main thread.
 *
 * Message in:  {id, blob, keep}   (blob: the part, a slice of the picked File)
 * Message out: {id, crc, body?, engine} or {id, error}
 *   crc:    base64 of the CRC32's 4 big-endian bytes (what S3's x-amz-checksum-crc32 holds);
 *   body:   with `keep`, the bytes read, as a Blob in memory (not the file's: they were read
 *           from it once), which the page sends as the PUT's body: each part is read from the
 *           file once, and S3 checks the CRC32 of exactly the bytes that were read;
 *   engine: "wasm" (hash-wasm's CRC32 in WebAssembly) or "js" (crc-32, pure JavaScript: where
 *           the page's Content-Security-Policy has no 'wasm-unsafe-eval', or no WebAssembly).
 * Without `keep` (parts larger than the widget holds in memory), the part is read 8 MiB at a
 * time and only its CRC32 comes back.
 */
/* global importScripts, hashwasm, CRC32 */
'use strict';

importScripts('../vendor/hash-wasm/crc32.umd.min.js', '../vendor/crc-32/crc32.js');

var PIECE = 8 * 1024 * 1024;

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

/* Jobs run one after the other: the hasher holds one part's state at a time. */
var queue = Promise.resolve();

function crcOf(hasher, blob, keep) {
  var state = hasher.start();
  if (keep || blob.size <= PIECE) {
    return blob.arrayBuffer().then(function (buffer) {
      state = hasher.update(state, new Uint8Array(buffer));
      return { crc: base64(hasher.finish(state)), buffer: keep ? buffer : null };
    });
  }
  var offset = 0;
  function next() {
    if (offset >= blob.size) return { crc: base64(hasher.finish(state)), buffer: null };
    var piece = blob.slice(offset, Math.min(offset + PIECE, blob.size));
    offset += PIECE;
    return piece.arrayBuffer().then(function (buffer) {
      state = hasher.update(state, new Uint8Array(buffer));
      return next();
    });
  }
  return next();
}

self.onmessage = function (event) {
  var job = event.data;
  queue = queue.then(function () {
    return engine.then(function (hasher) {
      return crcOf(hasher, job.blob, job.keep).then(function (result) {
        var answer = { id: job.id, crc: result.crc, engine: hasher.name };
        // The bytes read, as a Blob held in memory: copied here, off the page's main thread
        // (an ArrayBuffer PUT body costs the main thread a copy of its own in XHR.send).
        if (result.buffer) answer.body = new Blob([result.buffer]);
        self.postMessage(answer);
      });
    }).catch(function (error) {
      self.postMessage({ id: job.id, error: String((error && error.message) || error) });
    });
  });
};
