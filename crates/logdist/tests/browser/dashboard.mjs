// Drives Debian's chromium (headless, through playwright-core) over a distributor's
// dashboard, for crates/logdist/tests/dashboard.rs, which owns the processes and tells this
// script, one line on stdin each, what it just did:
//
//   node dashboard.mjs URL SCRATCH_DIR
//   -> stdout "ready"      the page shows three analyzers at targets 0.500/0.300/0.200
//   <- stdin  "load"       a bounded loadgen is running
//   -> stdout "moved"      the rates and counts on the page moved
//   <- stdin  "stopped ID" analyzer ID was sent SIGTERM
//   -> stdout "renormalized MS"  within 5 s ID left the table or turned unhealthy, and the
//                          targets of the others on screen re-normalized
//   -> stdout "done"       screenshots saved in SCRATCH_DIR; no console error all along
//
// Any failure prints "error: ..." and exits 1.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [url, scratch] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function expectLine(prefix) {
  const { value, done } = await lines.next();
  if (done || !value.startsWith(prefix)) throw new Error(`expected "${prefix}" on stdin, got ${value}`);
  return value.slice(prefix.length).trim();
}

async function until(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last === true) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(last)}`);
}

// The analyzer rows as the page shows them.
async function rows(page) {
  return page.$$eval("#analyzers tbody tr", (trs) => trs.map((tr) => ({
    id: tr.dataset.id,
    state: tr.dataset.state,
    target: tr.querySelector("td.target").textContent,
    share: tr.querySelector("td.share").textContent,
    msgs: tr.querySelector("td.msgs").textContent,
  })));
}

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  // The browser's own Accept (text/html first) gets the dashboard at `/`.
  const response = await page.goto(url + "/");
  if (!response.ok()) throw new Error(`GET / answered ${response.status()}`);
  const type = response.headers()["content-type"] || "";
  if (!type.startsWith("text/html")) throw new Error(`GET / answered ${type}, not the dashboard`);

  await until("three analyzers at 0.500/0.300/0.200", 10000, async () => {
    const r = await rows(page);
    const targets = r.filter((a) => a.state === "online").map((a) => `${a.id}=${a.target}`).sort().join(" ");
    return targets === "analyzer_1=0.500 analyzer_2=0.300 analyzer_3=0.200" || r;
  });
  console.log("ready");

  await expectLine("load");
  const before = await rows(page);
  await until("the numbers to move under load", 15000, async () => {
    const now = await rows(page);
    const rate = await page.textContent("#in-rate");
    // The distributor spools (--spool): its tile shows packets, bytes and the oldest age.
    const spool = (await page.isVisible("#spool-tile")) ? await page.textContent("#spool") : "hidden";
    const moved = now.some((a) => parseFloat(a.msgs) > 0) && parseFloat(rate) > 0 &&
      JSON.stringify(now.map((a) => a.share)) !== JSON.stringify(before.map((a) => a.share)) &&
      /^\d+ pkt, [\d.]+ \w+, oldest .+$/.test(spool);
    return moved || { rate, spool, now };
  });
  await page.screenshot({ path: `${scratch}/dashboard-load.png`, fullPage: true });
  console.log("moved");

  const stopped = await expectLine("stopped");
  const t0 = Date.now();
  await until(`${stopped} to leave or turn unhealthy, and the targets to re-normalize`, 5000, async () => {
    const r = await rows(page);
    const gone = r.every((a) => a.id !== stopped || a.state === "unhealthy" || a.state === "draining");
    const targets = r.filter((a) => a.state === "online").map((a) => `${a.id}=${a.target}`).sort().join(" ");
    return (gone && targets === "analyzer_1=0.625 analyzer_2=0.375") || r;
  });
  console.log(`renormalized ${Date.now() - t0}`);
  // Let the chart draw a few seconds after the leave, for the screenshot.
  await new Promise((r) => setTimeout(r, 3000));
  await page.screenshot({ path: `${scratch}/dashboard.png`, fullPage: true });

  // A phone: the same page, rows as cards.
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  phone.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await phone.goto(url + "/dashboard");
  await phone.waitForSelector("#analyzers tbody tr");
  await phone.screenshot({ path: `${scratch}/dashboard-phone.png`, fullPage: true });

  if (errors.length) throw new Error(`console errors: ${errors.join(" | ")}`);
  console.log("done");
} catch (e) {
  console.log(`error: ${e.message.split("\n")[0]}`);
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
  process.exit();
}
