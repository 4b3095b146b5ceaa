// DOM rendering for the playground: transcript, event log, tool calls, latency table.

export const MAX_LOGGED = 300;
const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function scrollToEnd(list) {
  list.scrollTop = list.scrollHeight;
}

export function clearAll() {
  for (const id of ["transcript", "tools", "events"]) $(id).replaceChildren();
  $("latency").tBodies[0].replaceChildren();
  $("tools-note").textContent = "Waiting for the session…";
}

export function setStatus(text, calling) {
  $("status").textContent = text;
  const mic = $("mic");
  mic.setAttribute("aria-pressed", String(calling));
  mic.textContent = calling ? "■ Stop call" : "🎙 Start call";
}

/** One line of the transcript; returns an updater `(text, final) => void`. */
export function transcriptLine(role) {
  const line = element("li", `${role} partial`);
  const who = element("span", "who", role === "user" ? "You" : "Assistant");
  const words = element("span", "words", "…");
  line.append(who, words);
  $("transcript").append(line);
  scrollToEnd($("transcript"));
  return (text, final) => {
    words.textContent = text || (final ? "(nothing recognised)" : "…");
    line.classList.toggle("partial", !final);
    scrollToEnd($("transcript"));
  };
}

function summary(event) {
  const detail =
    event.delta ?? event.transcript ?? event.error?.message ?? event.response?.status ?? event.item_id ?? "";
  const text = typeof detail === "string" ? detail : JSON.stringify(detail);
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

/** Append one event to the log (its JSON is rendered when opened); keeps the newest MAX_LOGGED. */
export function logEvent(event, secondsIntoCall) {
  const list = $("events");
  const row = element("li", event.type === "error" ? "error" : "");
  const details = element("details");
  const head = element("summary");
  head.append(element("span", "at", `+${secondsIntoCall.toFixed(3)} s`), `${event.type}  ${summary(event)}`);
  const body = element("pre");
  details.addEventListener("toggle", () => {
    if (details.open && !body.textContent) body.textContent = JSON.stringify(event, null, 2);
  });
  details.append(head, body);
  row.append(details);
  list.append(row);
  while (list.children.length > MAX_LOGGED) list.firstElementChild.remove();
  scrollToEnd(list);
}

export function showTools(tools) {
  const names = tools.map((tool) => tool.name || tool.server_label || tool.type);
  $("tools-note").textContent = names.length
    ? `This session's tools: ${names.join(", ")}. Calls the model makes appear below.`
    : "This session has no tools.";
}

function prettyArguments(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export function showToolCall(call) {
  const row = element("li");
  row.append(element("strong", "", call.name), element("span", "hint", `  ${call.callId}`));
  row.append(element("pre", "", prettyArguments(call.arguments)));
  $("tools").append(row);
}

export function showLatency(turn, ms, source) {
  const row = $("latency").tBodies[0].insertRow();
  row.insertCell().textContent = String(turn);
  row.insertCell().textContent = ms.toFixed(0);
  row.insertCell().textContent = source;
}
