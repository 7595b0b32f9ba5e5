// Shared by the customer's app and the operator's page: calls to the API, its error codes in
// words, and server-sent events read over fetch (EventSource cannot send a bearer token).
"use strict";

const MESSAGES = {
  invalid_request: "Please check what you entered.",
  invalid_credentials: "That email and password do not match.",
  email_taken: "An account with that email exists: log in instead.",
  rate_limited: "Too many attempts: wait a minute and try again.",
  unauthorized: "Please log in again.",
  queue_token_required: "Join the line first.",
  queue_token_invalid: "Your place in line has expired: join the line again.",
  queue_token_not_active: "You are still waiting in line.",
  forbidden: "That needs an operator's account.",
  not_found: "That does not exist (any more).",
  seat_unavailable: "Someone else has that seat.",
  seats_not_together: "No row has that many seats side by side.",
  hold_limit_reached: "You hold as many seats as allowed: pay or cancel first.",
  sale_not_open: "The sale has not opened yet.",
  sale_closed: "The sale has closed.",
  reservation_not_held: "That hold is no longer held.",
  reservation_not_paid: "That seat is not paid.",
  hold_expired: "That hold has expired.",
  extension_limit_reached: "A hold can be extended once.",
  insufficient_balance: "Your balance does not cover it: top up first.",
  idempotency_key_reused: "That request was already made differently.",
  idempotency_key_in_use: "That request is still running.",
  unavailable: "The service is busy: try again in a moment.",
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(MESSAGES[code] ? `${MESSAGES[code]} (${message})` : message);
    this.status = status;
    this.code = code;
  }
}

const session = {
  get token() { return sessionStorage.getItem("token"); },
  set token(value) { value ? sessionStorage.setItem("token", value) : sessionStorage.removeItem("token"); },
  get queue() { return sessionStorage.getItem("queue"); },
  set queue(value) { value ? sessionStorage.setItem("queue", value) : sessionStorage.removeItem("queue"); },
};

function headers(queued) {
  const given = { "Content-Type": "application/json" };
  if (session.token) given.Authorization = `Bearer ${session.token}`;
  if (queued && session.queue) given["X-Queue-Token"] = session.queue;
  return given;
}

async function api(method, path, body, { queued = false, text = false } = {}) {
  const answer = await fetch(path, {
    method,
    headers: headers(queued),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!answer.ok) {
    let code = "error", message = `${answer.status}`;
    try { ({ code, message } = (await answer.json()).error); } catch (_) { /* not JSON */ }
    throw new ApiError(answer.status, code, message);
  }
  return text ? answer.text() : answer.json();
}

function say(text, error = false) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = error ? "error" : "";
}

function guarded(action) {
  return async (event) => {
    if (event) event.preventDefault();
    try { await action(event); } catch (e) { say(e.message, true); }
  };
}

// Server-sent events over fetch: calls on(name, data) for each event until stopped.
function listen(path, on, queued = true) {
  const stop = new AbortController();
  (async () => {
    const answer = await fetch(path, { headers: headers(queued), signal: stop.signal });
    if (!answer.ok) return;
    const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) on(name, JSON.parse(data));
      }
    }
  })().catch(() => {});
  return () => stop.abort();
}

function el(tag, props = {}, ...children) {
  const made = Object.assign(document.createElement(tag), props);
  made.append(...children);
  return made;
}

function won(amount) { return `${amount.toLocaleString("en")} won`; }

// a wait for people: "40 s", "12 min", "2 h 5 min"
function duration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 90 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
