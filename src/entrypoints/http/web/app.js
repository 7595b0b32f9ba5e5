// The customer's web app: sign up and log in, wait in line, pick a date, watch the seat map
// live, hold seats (one, or the best side by side), extend a hold once, top up, pay for every
// hold at once, and see one's bookings.
"use strict";

const state = { concertId: null, dateId: null, seats: new Map(), mine: new Set(), stop: null };
const $ = (id) => document.getElementById(id);
const show = (id, visible = true) => { $(id).hidden = !visible; };

async function signIn(create) {
  const body = { email: $("email").value, password: $("password").value };
  if (create) await api("POST", "/auth/signup", body);
  session.token = (await api("POST", "/auth/login", body)).access_token;
  await enter();
}

async function enter() {
  const me = await api("GET", "/me");
  $("who").textContent = `${me.email}`;
  show("auth", false);
  ["line", "wallet", "bookings"].forEach((id) => show(id));
  session.queue = me.queue ? me.queue.token : null;
  await Promise.all([refreshWallet(), refreshBookings()]);
  if (me.queue) await waitInLine(me.queue);
  else await join();  // straight into the line: the waiting room shows where one stands
}

async function join() {
  const status = await api("POST", "/queue/tokens");
  session.queue = status.token;
  await waitInLine(status);
}

// ask again sooner as one's turn nears: a tenth of the wait estimated, from 1 s to 60 s, so
// that a line of a million asks about 18,000 times a second, not a million (docs/scaling.md)
function nextLook(estimatedWaitSeconds) {
  return Math.min(60, Math.max(1, (estimatedWaitSeconds || 0) / 10)) * 1000;
}

async function waitInLine(status) {
  while (status && status.status === "waiting") {
    $("line-status").textContent =
      `You are number ${status.position} in line, about ${duration(status.estimated_wait_seconds)} to go.`;
    await new Promise((done) => setTimeout(done, nextLook(status.estimated_wait_seconds)));
    status = await api("GET", "/queue/status", undefined, { queued: true });
  }
  if (!status || status.status !== "active") {
    $("line-status").textContent = "Join the line to choose seats.";
    show("join");
    return;
  }
  $("line-status").textContent = "You are in: choose your seats.";
  show("join", false);
  await listDates();
}

async function listDates() {
  const concerts = (await api("GET", "/concerts")).concerts;
  const list = $("dates");
  list.replaceChildren();
  for (const concert of concerts) {
    const found = await api("GET", `/concerts/${concert.concert_id}/dates`, undefined, { queued: true });
    for (const date of found.dates) {
      const open = el("button", { type: "button", textContent: `${concert.title}: ${date.date} (${date.available_seats} seats)` });
      open.disabled = !date.on_sale;
      open.addEventListener("click", guarded(() => openDate(concert.concert_id, date.date_id)));
      list.append(el("li", {}, open));
    }
  }
  show("shows");
}

async function openDate(concertId, dateId) {
  Object.assign(state, { concertId, dateId });
  if (state.stop) state.stop();
  const path = `/concerts/${concertId}/dates/${dateId}/seats`;
  const seats = (await api("GET", path, undefined, { queued: true })).seats;
  state.seats = new Map(seats.map((seat) => [seat.seat_id, seat]));
  const sections = [...new Set(seats.map((seat) => seat.section))];
  $("section").replaceChildren(...sections.map((name) => el("option", { value: name, textContent: name })));
  drawSection();
  show("map");
  state.stop = listen(`${path}/events`, (name, data) => {
    if (name === "snapshot") data.seats.forEach((seat) => state.seats.set(seat.seat_id, seat));
    else data.forEach((change) => Object.assign(state.seats.get(change.seat_id) || {}, { status: change.status }));
    drawSection();
  });
  await refreshHolds();
}

function drawSection() {
  const section = $("section").value;
  const rows = new Map();
  for (const seat of state.seats.values()) {
    if (seat.section !== section) continue;
    if (!rows.has(seat.row)) rows.set(seat.row, []);
    rows.get(seat.row).push(seat);
  }
  const drawn = [];
  for (const [row, seats] of rows) {
    const line = el("div", { className: "row" }, el("span", { className: "row-label", textContent: row }));
    for (const seat of seats) {
      const mine = state.mine.has(seat.seat_id);
      const button = el("button", {
        type: "button",
        className: `seat ${mine ? "mine" : seat.status}`,
        textContent: seat.number,
        title: `${seat.label}, ${won(seat.price)}, ${mine ? "yours" : seat.status}`,
      });
      button.setAttribute("aria-label", button.title);
      button.dataset.seat = seat.seat_id;
      button.disabled = seat.status !== "available";
      button.addEventListener("click", guarded(() => hold({ seat_id: seat.seat_id })));
      line.append(button);
    }
    drawn.push(line);
  }
  $("seats").replaceChildren(...drawn);
}

async function hold(body) {
  const held = await api("POST", "/reservations", body, { queued: true });
  const made = held.reservations || [held];
  say(`Held ${made.map((r) => r.label).join(", ")} for you.`);
  await refreshHolds();
}

async function refreshHolds() {
  const me = await api("GET", "/me");
  state.mine = new Set(me.holds.map((h) => h.seat_id));
  const list = $("hold-list");
  list.replaceChildren(...me.holds.map((h) => {
    const left = el("span", { className: "left", textContent: `${h.seconds_left} s left` });
    left.dataset.until = Date.now() + h.seconds_left * 1000;
    const extend = el("button", { type: "button", textContent: "Extend" });
    extend.addEventListener("click", guarded(async () => {
      await api("POST", `/reservations/${h.reservation_id}/extension`, undefined, { queued: true });
      say(`${h.label} extended.`);
      await refreshHolds();
    }));
    const item = el("li", {}, `${h.label} (${won(h.price)}) `, left, " ", extend);
    item.dataset.reservation = h.reservation_id;
    return item;
  }));
  show("holds", me.holds.length > 0);
  drawSection();
}

async function payAll() {
  const ids = [...$("hold-list").children].map((item) => Number(item.dataset.reservation));
  const paid = await api("POST", "/payments", { reservation_ids: ids }, { queued: true });
  say(`Paid ${won(paid.amount)} for ${paid.reservation_ids.length} seats. Enjoy the show!`);
  session.queue = null;
  if (state.stop) state.stop();
  show("map", false); show("shows", false); show("holds", false); show("join");
  $("line-status").textContent = "Your place in line was used by the payment: join again to buy more.";
  await Promise.all([refreshWallet(), refreshBookings()]);
}

async function refreshWallet() { $("balance").textContent = (await api("GET", "/wallet")).balance.toLocaleString("en"); }

async function refreshBookings() {
  const found = (await api("GET", "/reservations?limit=20")).reservations;
  $("booking-list").replaceChildren(...found.map((r) => el("tr", {},
    el("td", { textContent: r.label }), el("td", { textContent: won(r.price) }), el("td", { textContent: r.status }))));
}

setInterval(() => {
  for (const left of document.querySelectorAll("#hold-list .left")) {
    const seconds = Math.max(0, Math.round((Number(left.dataset.until) - Date.now()) / 1000));
    left.textContent = seconds ? `${seconds} s left` : "expired";
  }
}, 1000);

$("auth-form").addEventListener("submit", guarded(() => signIn(false)));
$("signup").addEventListener("click", guarded(() => signIn(true)));
$("join").addEventListener("click", guarded(join));
$("section").addEventListener("change", drawSection);
$("best-form").addEventListener("submit", guarded(() => hold({
  date_id: state.dateId, quantity: Number($("quantity").value), section: $("section").value,
})));
$("pay").addEventListener("click", guarded(payAll));
$("charge-form").addEventListener("submit", guarded(async () => {
  const amount = Number($("amount").value);
  const balance = (await api("POST", "/wallet/charges", { amount })).balance;
  $("balance").textContent = balance.toLocaleString("en");
  say(`Your balance is ${won(balance)}.`);
}));
if (session.token) guarded(enter)();
