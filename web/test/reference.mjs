// Reads what the native build writes, for the browser test to compare against: a voice prompt
// (.npz of stored int64 arrays, as `say --save-prompt` writes) and a 32-bit float mono WAV.
import fs from "node:fs";

// One .npy: little-endian int64 values as numbers, reshaped to rows when 2-D.
function readNpy(buf) {
  if (buf.toString("latin1", 0, 6) !== "\x93NUMPY") throw new Error("not an .npy entry");
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  const header = buf.toString("latin1", major === 1 ? 10 : 12, start);
  if (!header.includes("'<i8'")) throw new Error(`unexpected dtype in ${header}`);
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: n }, (_, i) => Number(buf.readBigInt64LE(start + 8 * i)));
  if (shape.length === 1) return values;
  return Array.from({ length: shape[0] }, (_, r) => values.slice(r * shape[1], (r + 1) * shape[1]));
}

// `{semantic, coarse, fine}` from an npz whose entries are stored (not deflated), with sizes in
// their local headers.
export function readNpz(file) {
  const zip = fs.readFileSync(file);
  const out = {};
  for (let at = 0; zip.readUInt32LE(at) === 0x04034b50;) {
    const [method, size, nameLen, extraLen] = [zip.readUInt16LE(at + 8), zip.readUInt32LE(at + 18), zip.readUInt16LE(at + 26), zip.readUInt16LE(at + 28)];
    if (method !== 0) throw new Error(`${file}: a compressed entry; expected np.savez's stored ones`);
    const name = zip.toString("utf8", at + 30, at + 30 + nameLen);
    const data = at + 30 + nameLen + extraLen;
    out[name.replace(/_prompt\.npy$/, "")] = readNpy(zip.subarray(data, data + size));
    at = data + size;
  }
  return out;
}

// `{sampleRate, samples}` of a mono IEEE-float WAV.
export function readFloatWav(file) {
  const b = fs.readFileSync(file);
  let sampleRate = 0;
  for (let at = 12; at + 8 <= b.length;) {
    const id = b.toString("latin1", at, at + 4), size = b.readUInt32LE(at + 4);
    if (id === "fmt ") {
      // IEEE float (3), directly or as WAVE_FORMAT_EXTENSIBLE's subformat (hound writes that).
      const tag = b.readUInt16LE(at + 8) === 0xfffe ? b.readUInt16LE(at + 32) : b.readUInt16LE(at + 8);
      if (tag !== 3 || b.readUInt16LE(at + 10) !== 1) throw new Error(`${file}: not mono float`);
      sampleRate = b.readUInt32LE(at + 12);
    }
    if (id === "data") {
      const samples = Array.from({ length: size / 4 }, (_, i) => b.readFloatLE(at + 8 + 4 * i));
      return { sampleRate, samples };
    }
    at += 8 + size + (size % 2);
  }
  throw new Error(`${file}: no data chunk`);
}
