// The latency of each turn, measured in the browser: from the arrival of
// input_audio_buffer.speech_stopped (t0) to the first moment a WebAudio AnalyserNode on the remote
// stream hears the reply (t1), i.e. audio that has crossed the network and the jitter buffer and is
// about to be played. Without a running AudioContext it falls back to the arrival of
// output_audio_buffer.started, and says so.

/** Peak amplitude (0..1, about -34 dBFS) that counts as sound; the server sends digital silence. */
export const THRESHOLD = 0.02;
const POLL_MS = 5;
export const BY_ANALYSER = "analyser";
export const BY_EVENT = "output_audio_buffer.started";

export class LatencyMeter {
  /** @param {(ms: number, source: string) => void} onLatency called once per measured turn */
  constructor(onLatency) {
    this.onLatency = onLatency;
    /** @type {AudioContext | null} */
    this.context = null;
    /** @type {AnalyserNode | null} */
    this.analyser = null;
    this.samples = new Float32Array(0);
    this.timer = 0;
    /** Highest peak seen on the remote stream since attach. */
    this.peak = 0;
    /** performance.now() when speech stopped, while the turn's reply is not yet heard. */
    this.t0 = null;
    this.quietSinceT0 = false;
  }

  /** Create the AudioContext; call it from the click that starts the call (a user gesture). */
  prepare() {
    try {
      this.context = new AudioContext();
    } catch (err) {
      console.warn("no WebAudio, latency falls back to output_audio_buffer.started", err);
      this.context = null;
    }
  }

  /** Watch the remote stream (the <audio> element plays it; the analyser only listens). */
  attach(stream) {
    if (this.context === null || this.analyser !== null) return;
    try {
      const source = this.context.createMediaStreamSource(stream);
      this.analyser = this.context.createAnalyser();
      this.analyser.fftSize = 1024;
      this.samples = new Float32Array(this.analyser.fftSize);
      source.connect(this.analyser);
      this.context.resume().catch(() => {});
      this.timer = setInterval(() => this.poll(), POLL_MS);
    } catch (err) {
      console.warn("the analyser could not attach; latency falls back to events", err);
      this.analyser = null;
    }
  }

  /** Whether the analyser is really listening (else the event fallback measures). */
  get live() {
    return this.analyser !== null && this.context !== null && this.context.state === "running";
  }

  speechStopped() {
    this.t0 = performance.now();
    this.quietSinceT0 = false;
  }

  outputStarted() {
    if (this.t0 !== null && !this.live) this.record(BY_EVENT);
  }

  poll() {
    if (this.analyser === null) return;
    this.analyser.getFloatTimeDomainData(this.samples);
    let peak = 0;
    for (const value of this.samples) peak = Math.max(peak, Math.abs(value));
    this.peak = Math.max(this.peak, peak);
    if (this.t0 === null) return;
    // A reply still playing when the user stops talking is not this turn's: wait for quiet first.
    if (peak < THRESHOLD) this.quietSinceT0 = true;
    else if (this.quietSinceT0) this.record(BY_ANALYSER);
  }

  record(source) {
    const ms = performance.now() - this.t0;
    this.t0 = null;
    this.onLatency(ms, source);
  }

  close() {
    clearInterval(this.timer);
    this.t0 = null;
    this.analyser = null;
    if (this.context !== null) this.context.close().catch(() => {});
    this.context = null;
  }
}
