// The operator's page: put a show on sale, watch a date's sales and the line, refund a seat.
"use strict";

const $ = (id) => document.getElementById(id);
let watching = null;

async function logIn() {
  const body = { email: $("email").value, password: $("password").value };
  session.token = (await api("POST", "/auth/login", body)).access_token;
  const me = await api("GET", "/me");
  if (me.role !== "admin") throw new ApiError(403, "forbidden", "not an operator");
  $("who").textContent = me.email;
  $("auth").hidden = true;
  $("work").hidden = false;
}

async function addConcert() {
  const made = await api("POST", "/admin/concerts", { title: $("title").value, venue: $("venue").value });
  $("concert-id").value = made.concert_id;
  $("watch-concert").value = made.concert_id;
  say(`Concert ${made.concert_id} added: now put a date on sale.`);
}

async function addDate() {
  const startsAt = new Date($("starts-at").value).toISOString();
  const sections = JSON.parse($("sections").value);
  const made = await api("POST", `/admin/concerts/${$("concert-id").value}/dates`, { starts_at: startsAt, sections });
  $("watch-date").value = made.date_id;
  say(`Date ${made.date_id} is on sale: ${made.seats_total} seats.`);
  await watch();
}

async function watch() {
  if (watching) clearInterval(watching);
  const path = `/admin/concerts/${$("watch-concert").value}/dates/${$("watch-date").value}/sales`;
  const draw = async () => {
    const sales = await api("GET", path);
    $("sales").replaceChildren(...[...sales.sections, { name: "All", ...sales }].map((s) => el("tr", {},
      ...[s.name, s.seats_total, s.available, s.held, s.sold, won(s.revenue)].map((v) => el("td", { textContent: v })))));
    const metrics = await api("GET", "/metrics", undefined, { text: true });
    const gauge = (name) => Number((metrics.match(new RegExp(`^${name} (\\S+)$`, "m")) || [0, NaN])[1]);
    const waiting = gauge("concert_queue_waiting");
    const perMinute = Math.round(gauge("concert_queue_admissions_per_second") * 60);
    $("line").textContent = `In line: ${waiting.toLocaleString("en")} waiting, ` +
      `${gauge("concert_queue_active").toLocaleString("en")} choosing seats; ` +
      `${perMinute.toLocaleString("en")} let in over the last minute` +
      (waiting ? `; the last in line gets in in about ${duration(gauge("concert_queue_clear_seconds"))}.` : ".");
  };
  await draw();
  watching = setInterval(() => draw().catch((e) => say(e.message, true)), 1000);
}

async function refund() {
  const done = await api("POST", `/admin/reservations/${$("refund-id").value}/refund`);
  say(`${done.label} refunded: on sale again.`);
}

$("auth-form").addEventListener("submit", guarded(logIn));
$("concert-form").addEventListener("submit", guarded(addConcert));
$("date-form").addEventListener("submit", guarded(addDate));
$("watch-form").addEventListener("submit", guarded(watch));
$("refund-form").addEventListener("submit", guarded(refund));
