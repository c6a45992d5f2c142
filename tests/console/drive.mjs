// Drives the mpdr console in headless Chromium (playwright-core, Debian's /usr/bin/chromium):
// node drive.mjs <console url> <token> <stream count> <faulted stream> <screenshot.png> <narrow screenshot.png>
// Prints one JSON line of what it saw; exits non-zero on the first expectation that fails.
import { chromium } from "playwright-core";

const [url, token, count, faulted, shot, narrowShot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = {};
const msgClass = (sel) => (page) => page.$eval(sel, (e) => e.className);
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(url);
  await page.waitForFunction((n) => document.querySelectorAll(".stream").length === n, Number(count), { timeout: 30000 });
  out.streams = await page.$$eval(".stream", (els) => els.map((e) => e.dataset.name));
  const card = `.stream[data-name="${faulted}"]`;
  // The faulted stream's chart crosses its threshold, and its alarm shows up without a reload.
  await page.waitForSelector(`${card}[data-crossed="true"]`, { timeout: 120000 });
  await page.waitForSelector(`#eventlist li[data-kind="raised"][data-stream="${faulted}"][data-active="true"]`, { timeout: 120000 });
  out.crossed = true;
  // The chart has labelled axes: score ticks, local times, the threshold.
  const chart = await page.$eval(`${card} canvas.chart`, (c) => ({ ...c.dataset, label: c.getAttribute("aria-label") }));
  if (chart.axes !== "true" || chart.yTicks.split(" ").length !== 5 || !chart.xTicks.includes(":") || !/threshold/.test(chart.label)) {
    throw new Error(`chart without axes: ${JSON.stringify(chart)}`);
  }
  out.chart = chart;
  // Only the active alarm has an acknowledge button.
  out.ack_buttons = await page.$$eval("#eventlist li button.ack", (bs) => bs.filter((b) => !b.hidden).length);
  await page.waitForTimeout(1500);
  await page.screenshot({ path: shot, fullPage: true });
  // Without the token a threshold change is refused, shown as an error.
  await page.fill("#token", "");
  await page.dispatchEvent("#token", "change");
  await page.fill(`${card} .threshold-input`, "123.25");
  await page.click(`${card} .threshold-apply`);
  await page.waitForFunction((c) => /refused \((401|403)\)/.test(document.querySelector(c + " .msg").textContent), card, { timeout: 10000 });
  out.refused = await page.textContent(`${card} .msg`);
  out.refused_class = await msgClass(`${card} .msg`)(page);
  // With it: acknowledge the alarm, then override the threshold.
  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");
  await page.fill("#user", "Dana");
  await page.dispatchEvent("#user", "change");
  await page.click(`#eventlist li[data-kind="raised"][data-stream="${faulted}"][data-active="true"] button.ack`);
  await page.waitForFunction(() => /acknowledged/.test(document.getElementById("eventmsg").textContent), null, { timeout: 10000 });
  out.acknowledged = await page.textContent("#eventmsg");
  out.acknowledged_class = await msgClass("#eventmsg")(page);
  await page.waitForFunction(() => document.querySelectorAll("#eventlist li button.ack:not([hidden])").length === 0, null, { timeout: 10000 });
  await page.fill(`${card} .threshold-input`, "123.25");
  await page.click(`${card} .threshold-apply`);
  await page.waitForFunction((c) => /→/.test(document.querySelector(c + " .msg").textContent), card, { timeout: 10000 });
  out.changed = await page.textContent(`${card} .msg`);
  // The override's badge, with the model's threshold, who and a revert button.
  await page.waitForFunction((c) => /manual 123\.2500/.test(document.querySelector(c + " .override").textContent), card, { timeout: 10000 });
  out.badge = (await page.textContent(`${card} .override`)).replace(/\s+/g, " ").trim();
  out.revert_button = await page.$$eval(`${card} .override button[data-undo="threshold"]`, (b) => b.length);
  // The delivery strip names the sinks.
  await page.waitForSelector(`#sinks .sink[data-name="webhook"]`, { timeout: 10000 });
  out.sinks = await page.$$eval("#sinks .sink", (els) => els.map((e) => e.dataset.name + ":" + e.dataset.state));
  // A phone: 420 px wide, nothing cut off sideways, the events column below the streams.
  const narrow = await browser.newPage({ viewport: { width: 420, height: 900 } });
  await narrow.goto(url);
  await narrow.waitForFunction((n) => document.querySelectorAll(".stream").length === n, Number(count), { timeout: 30000 });
  await narrow.waitForTimeout(1500);
  out.narrow = await narrow.evaluate(() => {
    const over = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && e.offsetParent !== null)
      .map((e) => e.tagName + "." + e.className).slice(0, 5);
    const ev = document.getElementById("events").getBoundingClientRect(), st = document.getElementById("streams").getBoundingClientRect();
    return { scroll_width: document.documentElement.scrollWidth, inner_width: window.innerWidth, overflowing: over,
             events_below: ev.top >= st.bottom - 1, events_width: Math.round(ev.width) };
  });
  await narrow.screenshot({ path: narrowShot, fullPage: true });
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ ...out, error: String(e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
