/* CRC32 (IEEE, as zlib and S3 compute it) of a Blob, for the upload widget (static/js/upload.js).
 *
 * One file, two uses: loaded by the page (templates/uploads/_widget.html) it publishes
 * window.ImportCrc32 = { factory, workerUrl }; started as a Web Worker from workerUrl (this
 * very file, so the Content-Security-Policy's worker-src 'self' allows it) it answers
 * {id, blob} messages with {id, crc} or {id, error}.
 *
 * Eight bytes at a time, read as two 32-bit words (about 1.5 GB/s in V8).
 */
(function (scope) {
  'use strict';

  function crc32Factory() {
    var T = [], n, k, c;
    for (k = 0; k < 8; k++) T.push(new Int32Array(256));
    for (n = 0; n < 256; n++) {
      c = n;
      for (k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
      T[0][n] = c;
    }
    for (k = 1; k < 8; k++) {
      for (n = 0; n < 256; n++) T[k][n] = (T[k - 1][n] >>> 8) ^ T[0][T[k - 1][n] & 0xff];
    }
    var T0 = T[0], T1 = T[1], T2 = T[2], T3 = T[3], T4 = T[4], T5 = T[5], T6 = T[6], T7 = T[7];
    var littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
    function update(crc, b) {
      var i = 0, len = b.length, words = 0, w, j, x, y;
      if (littleEndian) {
        while (i < len && ((b.byteOffset + i) & 3)) crc = T0[(crc ^ b[i++]) & 0xff] ^ (crc >>> 8);
        words = Math.floor((len - i) / 8) * 2;
        w = new Int32Array(b.buffer, b.byteOffset + i, words);
        for (j = 0; j < words; j += 2) {
          x = crc ^ w[j];
          y = w[j + 1];
          crc = T7[x & 0xff] ^ T6[(x >>> 8) & 0xff] ^ T5[(x >>> 16) & 0xff] ^ T4[x >>> 24] ^
            T3[y & 0xff] ^ T2[(y >>> 8) & 0xff] ^ T1[(y >>> 16) & 0xff] ^ T0[y >>> 24];
        }
        i += words * 4;
      }
      while (i < len) crc = T0[(crc ^ b[i++]) & 0xff] ^ (crc >>> 8);
      return crc;
    }
    /* The CRC32 of a Blob, read 4 MiB at a time (far faster than its stream's small
     * chunks), as S3 writes it: base64 of its 4 big-endian bytes. */
    return function crc32OfBlob(blob) {
      var piece = 4 * 1024 * 1024, offset = 0, crc = -1;
      function next() {
        if (offset >= blob.size) {
          crc = (crc ^ -1) >>> 0;
          return Promise.resolve(btoa(String.fromCharCode(crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff)));
        }
        var slice = blob.slice(offset, Math.min(offset + piece, blob.size));
        offset += piece;
        return slice.arrayBuffer().then(function (buffer) {
          crc = update(crc, new Uint8Array(buffer));
          return next();
        });
      }
      return next();
    };
  }

  if (typeof document === 'undefined') { // a Web Worker
    var crc32OfBlob = crc32Factory();
    scope.onmessage = function (event) {
      crc32OfBlob(event.data.blob).then(function (crc) {
        scope.postMessage({ id: event.data.id, crc: crc });
      }, function (error) {
        scope.postMessage({ id: event.data.id, error: String(error) });
      });
    };
  } else {
    scope.ImportCrc32 = { factory: crc32Factory, workerUrl: document.currentScript && document.currentScript.src };
  }
})(self);
