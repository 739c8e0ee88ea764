// @ts-check
// Binary arrays from Python (hiddenwidgets/transport.py: encode). index[key] = [dtype, byteOffset, shape];
// the data is one little-endian buffer. anywidget hands each buffer over as a DataView into a larger
// message, so offsets need not be 4-byte aligned: then the bytes are copied once.

const CTORS = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array };

/**
 * @param {Record<string, [string, number, number[]]>} index
 * @param {DataView | ArrayBuffer | Uint8Array} data
 * @returns {Record<string, Float32Array | Int32Array | Uint8Array>}
 */
export function decodeArrays(index, data) {
  const view = toDataView(data);
  /** @type {Record<string, Float32Array | Int32Array | Uint8Array>} */
  const out = {};
  for (const [key, [dtype, offset, shape]] of Object.entries(index)) {
    const Ctor = CTORS[dtype];
    if (!Ctor) throw new Error(`unsupported dtype ${dtype} for ${key}: expected float32, int32 or uint8`);
    const length = shape.reduce((a, b) => a * b, 1);
    const size = Ctor.BYTES_PER_ELEMENT;
    const start = view.byteOffset + offset;
    if (offset + length * size > view.byteLength) {
      throw new Error(`array ${key} (${length} x ${dtype} at ${offset}) overruns a buffer of ${view.byteLength} bytes`);
    }
    out[key] = start % size === 0
      ? new Ctor(view.buffer, start, length)
      : new Ctor(view.buffer.slice(start, start + length * size));
  }
  return out;
}

/** @param {DataView | ArrayBuffer | Uint8Array} data */
export function toDataView(data) {
  if (data instanceof DataView) return data;
  if (data instanceof ArrayBuffer) return new DataView(data);
  if (ArrayBuffer.isView(data)) return new DataView(data.buffer, data.byteOffset, data.byteLength);
  throw new Error(`expected binary data (DataView, ArrayBuffer or typed array), got ${typeof data}`);
}

/** @param {string} b64 */
export function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
