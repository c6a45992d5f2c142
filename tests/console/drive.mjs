// Drives the mpdr console in headless Chromium (playwright-core, Debian's /usr/bin/chromium):
// node drive.mjs <console url> <token> <stream count> <faulted stream> <screenshot.png>
// Prints one JSON line of what it saw; exits non-zero on the first expectation that fails.
import { chromium } from "playwright-core";

const [url, token, count, faulted, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(url);
  await page.waitForFunction((n) => document.querySelectorAll(".stream").length === n, Number(count), { timeout: 30000 });
  out.streams = await page.$$eval(".stream", (els) => els.map((e) => e.dataset.name));
  const card = `.stream[data-name="${faulted}"]`;
  // The faulted stream's chart crosses its threshold, and its alarm shows up without a reload.
  await page.waitForSelector(`${card}[data-crossed="true"]`, { timeout: 120000 });
  await page.waitForSelector(`#eventlist li[data-kind="raised"][data-stream="${faulted}"]`, { timeout: 120000 });
  out.crossed = true;
  out.raised_listed = true;
  await page.waitForTimeout(1500);
  await page.screenshot({ path: shot, fullPage: true });
  // Without the token a threshold change is refused.
  await page.fill("#token", "");
  await page.dispatchEvent("#token", "change");
  await page.fill(`${card} .threshold-input`, "123.25");
  await page.click(`${card} .threshold-apply`);
  await page.waitForFunction((c) => /refused \((401|403)\)/.test(document.querySelector(c + " .msg").textContent), card, { timeout: 10000 });
  out.refused = await page.textContent(`${card} .msg`);
  // With it: acknowledge the alarm, then change the threshold.
  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");
  await page.click(`#eventlist li[data-kind="raised"][data-stream="${faulted}"] button.ack`);
  await page.waitForFunction(() => /acknowledged/.test(document.getElementById("eventmsg").textContent), null, { timeout: 10000 });
  out.acknowledged = await page.textContent("#eventmsg");
  await page.fill(`${card} .threshold-input`, "123.25");
  await page.click(`${card} .threshold-apply`);
  await page.waitForFunction((c) => /→/.test(document.querySelector(c + " .msg").textContent), card, { timeout: 10000 });
  out.changed = await page.textContent(`${card} .msg`);
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ ...out, error: String(e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
