// The Parley playground: one WebRTC call to this server, connected exactly as OpenAI's browser
// sample connects (getUserMedia → RTCPeerConnection → addTrack → createDataChannel("oai-events") →
// createOffer → setLocalDescription → POST offer.sdp to /v1/realtime/calls with an ek_ secret →
// setRemoteDescription(answer)); the reply plays in an <audio autoplay> element.
//
// window.parley is the page's state, for the console and for tests (read it, don't write it):
//   state                 "idle" | "connecting" | "connected" | "ended" | "error"
//   error                 the last failure or `error` event message, or null
//   callId                the call's id (last segment of the answer's Location header), or null
//   events                type of every data-channel event, oldest first (the newest MAX_EVENTS)
//   userTranscripts       one string per user turn: the completed transcript, else the deltas so far
//   assistantTranscripts  one string per assistant item: its audio (or text) transcript so far
//   toolCalls             [{name, callId, arguments}]: function_call items of response.done outputs
//   latenciesMs           per turn, speech_stopped arrival → first reply audio heard, in ms
//   latencySources        per turn, what measured it: "analyser" or "output_audio_buffer.started"
//   inboundAudioPeak      the highest peak (0..1) the analyser saw on the remote stream
//   inboundRtp()          a Promise of the inbound-rtp audio stats {packetsReceived,
//                         totalAudioEnergy}, or null before a call

import { LatencyMeter } from "./meter.js";
import * as view from "./view.js";

const MAX_EVENTS = 2000;
const $ = (id) => document.getElementById(id);

const parley = {
  state: "idle",
  error: null,
  callId: null,
  events: [],
  userTranscripts: [],
  assistantTranscripts: [],
  toolCalls: [],
  latenciesMs: [],
  latencySources: [],
  inboundAudioPeak: 0,
  inboundRtp: async () => inboundRtp(),
};
window.parley = parley;

/** The call in progress: {pc, channel, microphone, meter, startedAt, lines: Map(item_id → line)} */
let call = null;

function setState(state, error = null) {
  parley.state = state;
  if (error !== null) parley.error = error;
  const calling = state === "connecting" || state === "connected";
  view.setStatus(error ? `${state}: ${error}` : state, calling);
}

// ----------------------------------------------------------------------------- connecting

async function mintSecret() {
  const body = { instructions: $("instructions").value.trim(), voice: $("voice").value };
  const reply = await fetch("/playground/client_secret", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!reply.ok) throw new Error(`minting a client secret: ${await failure(reply)}`);
  return (await reply.json()).value;
}

async function failure(reply) {
  const text = await reply.text();
  try {
    return JSON.parse(text).error.message;
  } catch {
    return `HTTP ${reply.status} ${text.slice(0, 200)}`;
  }
}

async function startCall() {
  view.clearAll();
  Object.assign(parley, {
    error: null, callId: null, events: [], userTranscripts: [], assistantTranscripts: [],
    toolCalls: [], latenciesMs: [], latencySources: [],
  });
  const meter = new LatencyMeter(onLatency);
  meter.prepare(); // in the click handler: a user gesture lets the AudioContext run
  call = { pc: null, channel: null, microphone: null, meter, startedAt: performance.now(), lines: new Map() };
  setState("connecting");
  const current = call;
  try {
    const secret = await mintSecret();
    const microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
    current.microphone = microphone;
    const pc = new RTCPeerConnection();
    current.pc = pc;
    pc.ontrack = (event) => {
      const stream = event.streams[0] || new MediaStream([event.track]);
      $("remote").srcObject = stream;
      meter.attach(stream);
    };
    pc.onconnectionstatechange = () => {
      if (call === current && ["failed", "closed"].includes(pc.connectionState)) {
        endCall("ended", `connection ${pc.connectionState}`);
      }
    };
    pc.addTrack(microphone.getTracks()[0]);
    const channel = pc.createDataChannel("oai-events");
    current.channel = channel;
    channel.onopen = () => call === current && setState("connected");
    channel.onmessage = (message) => call === current && onEvent(JSON.parse(message.data));
    channel.onclose = () => call === current && endCall("ended", "the server ended the call");
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const answer = await fetch("/v1/realtime/calls", {
      method: "POST",
      body: offer.sdp,
      headers: { Authorization: `Bearer ${secret}`, "Content-Type": "application/sdp" },
    });
    if (!answer.ok) throw new Error(`POST /v1/realtime/calls: ${await failure(answer)}`);
    parley.callId = (answer.headers.get("Location") || "").split("/").pop() || null;
    await pc.setRemoteDescription({ type: "answer", sdp: await answer.text() });
  } catch (err) {
    if (call === current) endCall("error", String(err.message || err));
  }
}

function endCall(state, reason = null) {
  const ending = call;
  call = null;
  if (ending !== null) {
    parley.inboundAudioPeak = ending.meter.peak;
    ending.channel?.close();
    ending.pc?.close();
    ending.microphone?.getTracks().forEach((track) => track.stop());
    ending.meter.close();
  }
  setState(state, reason);
}

async function inboundRtp() {
  if (call?.pc == null) return null;
  const stats = await call.pc.getStats();
  for (const report of stats.values()) {
    if (report.type === "inbound-rtp" && report.kind === "audio") {
      return { packetsReceived: report.packetsReceived, totalAudioEnergy: report.totalAudioEnergy ?? null };
    }
  }
  return { packetsReceived: 0, totalAudioEnergy: null };
}

// ----------------------------------------------------------------------------- events

function onLatency(ms, source) {
  parley.latenciesMs.push(Math.round(ms));
  parley.latencySources.push(source);
  view.showLatency(parley.latenciesMs.length, ms, source);
}

/** The transcript line of an item, created on first use. */
function line(itemId, role) {
  let entry = call.lines.get(itemId);
  if (entry === undefined) {
    entry = { role, text: "", final: false, update: view.transcriptLine(role) };
    call.lines.set(itemId, entry);
  }
  return entry;
}

function setText(itemId, role, text, final) {
  const entry = line(itemId, role);
  entry.text = text;
  entry.final = final;
  entry.update(text, final);
  const lines = [...call.lines.values()];
  parley.userTranscripts = lines.filter((e) => e.role === "user").map((e) => e.text);
  parley.assistantTranscripts = lines.filter((e) => e.role === "assistant").map((e) => e.text);
}

const appendText = (itemId, role, delta) => setText(itemId, role, line(itemId, role).text + delta, false);

const handlers = {
  "session.created": (e) => view.showTools(e.session.tools || []),
  "session.updated": (e) => view.showTools(e.session.tools || []),
  "input_audio_buffer.speech_started": (e) => line(e.item_id, "user"),
  "input_audio_buffer.speech_stopped": () => call.meter.speechStopped(),
  "output_audio_buffer.started": () => call.meter.outputStarted(),
  "conversation.item.input_audio_transcription.delta": (e) => appendText(e.item_id, "user", e.delta),
  "conversation.item.input_audio_transcription.completed": (e) =>
    setText(e.item_id, "user", e.transcript, true),
  "conversation.item.input_audio_transcription.failed": (e) =>
    setText(e.item_id, "user", `(transcription failed: ${e.error?.message})`, true),
  "response.output_audio_transcript.delta": (e) => appendText(e.item_id, "assistant", e.delta),
  "response.output_audio_transcript.done": (e) => setText(e.item_id, "assistant", e.transcript, true),
  "response.output_text.delta": (e) => appendText(e.item_id, "assistant", e.delta),
  "response.output_text.done": (e) => setText(e.item_id, "assistant", e.text, true),
  "response.done": (e) => {
    for (const item of e.response.output || []) {
      if (item.type !== "function_call") continue;
      const toolCall = { name: item.name, callId: item.call_id, arguments: item.arguments };
      parley.toolCalls.push(toolCall);
      view.showToolCall(toolCall);
    }
  },
  error: (e) => setState(parley.state, e.error?.message || "error"),
};

function onEvent(event) {
  parley.events.push(event.type);
  if (parley.events.length > MAX_EVENTS) parley.events.splice(0, parley.events.length - MAX_EVENTS);
  parley.inboundAudioPeak = call.meter.peak;
  view.logEvent(event, (performance.now() - call.startedAt) / 1000);
  handlers[event.type]?.(event);
}

setInterval(() => {
  if (call !== null) parley.inboundAudioPeak = call.meter.peak;
}, 100);

$("mic").addEventListener("click", () => {
  if (call !== null) endCall("ended");
  else startCall();
});
view.setStatus("idle", false);
