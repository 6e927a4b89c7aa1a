// G.711 mu-law at 8 kHz (what Twilio Media Streams carry) and the sample-rate conversions the softphone needs.
// Same tables as hanmadi.telephony.audio: bias 0x84, clip 32635, bytes inverted.

export const SAMPLE_RATE = 8000;
export const FRAME_SAMPLES = 160; // 20 ms

const BIAS = 0x84;
const CLIP = 32635;

const DECODE = new Int16Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const sign = u & 0x80;
  const exponent = (u >> 4) & 0x07;
  const mantissa = u & 0x0f;
  const sample = (((mantissa << 3) + BIAS) << exponent) - BIAS;
  DECODE[i] = sign ? -sample : sample;
}

/** One PCM16 sample to its mu-law byte. */
export function encodeSample(sample) {
  let s = sample | 0;
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  s = Math.min(s, CLIP) + BIAS;
  let exponent = 7;
  for (let mask = 0x4000; exponent > 0 && !(s & mask); mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** Float samples in [-1, 1] to mu-law bytes. */
export function encodeFloat(samples) {
  const out = new Uint8Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    out[i] = encodeSample(Math.round(v * 32767));
  }
  return out;
}

/** mu-law bytes to float samples in [-1, 1]. */
export function decodeToFloat(bytes) {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = DECODE[bytes[i]] / 32768;
  return out;
}

export function bytesToBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

export function base64ToBytes(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/**
 * Streaming downsampler from the microphone's rate to 8 kHz. Each output sample is the mean of the input samples
 * it covers (a box filter: cheap anti-aliasing, plenty for telephone speech); the fractional position carries
 * over between blocks so any input rate (44.1 kHz, 48 kHz, …) works.
 */
export class Downsampler {
  constructor(inputRate, outputRate = SAMPLE_RATE) {
    this.ratio = inputRate / outputRate;
    this.pending = new Float32Array(0);
    this.pos = 0;
  }

  /** Feed a block of input samples; returns the output samples it completed. */
  push(block) {
    const buf = new Float32Array(this.pending.length + block.length);
    buf.set(this.pending);
    buf.set(block, this.pending.length);
    if (this.ratio === 1) {
      this.pending = new Float32Array(0);
      return buf;
    }
    const out = [];
    let pos = this.pos;
    while (pos + this.ratio <= buf.length) {
      const a = Math.floor(pos);
      const b = Math.max(a + 1, Math.floor(pos + this.ratio));
      let sum = 0;
      for (let i = a; i < b; i++) sum += buf[i];
      out.push(sum / (b - a));
      pos += this.ratio;
    }
    const keep = Math.floor(pos);
    this.pending = buf.slice(keep);
    this.pos = pos - keep;
    return Float32Array.from(out);
  }
}

/** Collects samples into fixed 20 ms frames. */
export class Framer {
  constructor(size = FRAME_SAMPLES) {
    this.size = size;
    this.buf = new Float32Array(size);
    this.fill = 0;
  }

  /** Returns the complete frames (each a Float32Array of `size`) that `samples` finished. */
  push(samples) {
    const frames = [];
    let i = 0;
    while (i < samples.length) {
      const n = Math.min(this.size - this.fill, samples.length - i);
      this.buf.set(samples.subarray(i, i + n), this.fill);
      this.fill += n;
      i += n;
      if (this.fill === this.size) {
        frames.push(this.buf);
        this.buf = new Float32Array(this.size);
        this.fill = 0;
      }
    }
    return frames;
  }
}
