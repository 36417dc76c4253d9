// Drives relayd's dashboard in headless Chromium for tests/test_dashboard.py.
//
//   node dashboard.js BASE_URL CHROMIUM SCREENSHOT PREFIXED_URL
//
// BASE_URL is the insecure API entrypoint ("http://127.0.0.1:PORT/"); PREFIXED_URL
// is the dashboard behind a user router to api@internal under a prefix. The script
// prints "STEP change" when it wants the test to add a router and a broken one
// to the file provider, waits for a line on stdin saying it is done, checks the
// page follows without a reload, takes a screenshot to SCREENSHOT and prints
// "OK". Every wait is bounded; any failure exits 1 with the reason on stderr.
"use strict";

const readline = require("readline");
const { chromium } = require("playwright-core");

const [baseURL, executablePath, screenshotPath, prefixedURL] = process.argv.slice(2);
const WAIT = 30000;

function fail(message) {
  throw new Error(message);
}

function check(condition, message) {
  if (!condition) fail(message);
}

function step(name) {
  process.stdout.write("STEP " + name + "\n");
}

function firstStdinLine(timeout) {
  return new Promise(function (resolve, reject) {
    const lines = readline.createInterface({ input: process.stdin });
    const timer = setTimeout(function () {
      lines.close();
      reject(new Error("no answer on stdin within " + timeout + " ms"));
    }, timeout);
    lines.once("line", function (line) {
      clearTimeout(timer);
      lines.close();
      resolve(line);
    });
  });
}

async function rows(page) {
  return page.$$eval("table.objects tr.object", function (trs) {
    return trs.map(function (tr) { return tr.getAttribute("data-name"); });
  });
}

async function refreshes(page) {
  return Number(await page.evaluate(function () { return document.body.getAttribute("data-refreshes") || "0"; }));
}

// Wait until the page has read the API `count` more times.
async function morePolls(page, count) {
  const start = await refreshes(page);
  await page.waitForFunction(function (target) {
    return Number(document.body.getAttribute("data-refreshes") || "0") >= target;
  }, start + count, { timeout: WAIT });
}

async function main() {
  check(baseURL && executablePath && screenshotPath && prefixedURL,
    "usage: dashboard.js BASE_URL CHROMIUM SCREENSHOT PREFIXED_URL");
  const origins = [new URL(baseURL).origin, new URL(prefixedURL).origin];
  const browser = await chromium.launch({
    executablePath: executablePath,
    headless: true,
    // Tests run as root, where Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    timeout: WAIT,
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.setDefaultTimeout(WAIT);
    const problems = [];
    page.on("pageerror", function (error) { problems.push("page error: " + error.message); });
    page.on("console", function (message) {
      if (message.type() === "error") problems.push("console error: " + message.text());
    });
    // Offline: the page asks its own origin for everything.
    page.on("request", function (request) {
      const url = request.url();
      const own = origins.some(function (origin) { return url.startsWith(origin + "/"); });
      if (!own && !url.startsWith("data:")) problems.push("request elsewhere: " + url);
    });

    // The root redirects to the dashboard, whose overview counts render.
    await page.goto(baseURL, { waitUntil: "load" });
    check(new URL(page.url()).pathname === "/dashboard/", "not redirected to /dashboard/: " + page.url());
    await page.waitForSelector('[data-section="http-routers"] .card-total');
    await page.waitForFunction(function () {
      const total = document.querySelector('[data-section="http-routers"] .card-total');
      return total && Number(total.textContent) >= 1;
    });
    await page.waitForSelector('[data-entrypoint="web"]');
    await page.waitForSelector('[data-entrypoint="traefik"]');
    await page.waitForFunction(function () {
      const version = document.getElementById("version").textContent;
      return version && version !== "?";
    });
    check((await page.textContent("#live")).indexOf("live") >= 0, "the live indicator does not say live");
    console.log("overview rendered");

    // The routers page, reached through the menu, lists the file router.
    await page.click('#nav a[data-nav="http/routers"]');
    await page.waitForSelector('tr.object[data-name="app@file"] [data-status="enabled"]');
    check(page.url().endsWith("#/http/routers"), "unexpected address " + page.url());
    const rule = await page.textContent('tr.object[data-name="app@file"]');
    check(rule.indexOf("Host(`app.example`)") >= 0, "the router's rule is not shown: " + rule);
    console.log("routers rendered");

    // The configuration changes under the page: no reload, yet it follows,
    // and the reader's scroll position stays.
    await page.evaluate(function () { window.relaydSamePage = true; });
    await page.setViewportSize({ width: 1280, height: 300 });
    await page.evaluate(function () { window.scrollTo(0, 150); });
    await page.waitForFunction(function () { return window.scrollY === 150; });
    const generationBefore = await page.getAttribute("body", "data-generation");
    step("change");
    const answer = await firstStdinLine(WAIT * 2);
    check(answer.trim() === "changed", "unexpected answer on stdin: " + answer);
    await page.waitForSelector('tr.object[data-name="added@file"] [data-status="enabled"]');
    await page.waitForSelector('tr.object[data-name="broken@file"] [data-status="disabled"]');
    const errorText = await page.textContent('tr[data-errors-for="broken@file"] .error');
    check(/missing/.test(errorText), "the broken router's error does not name its service: " + errorText);
    const errorColor = await page.$eval('tr[data-errors-for="broken@file"] .error', function (e) {
      return getComputedStyle(e).color;
    });
    check(errorColor === "rgb(179, 38, 30)", "the error is not red: " + errorColor);
    check(await page.evaluate(function () { return window.relaydSamePage === true; }), "the page was reloaded");
    const scrolled = await page.evaluate(function () { return window.scrollY; });
    check(scrolled === 150, "the redraw moved the page to " + scrolled);
    await page.setViewportSize({ width: 1280, height: 720 });
    const generationAfter = await page.getAttribute("body", "data-generation");
    if (generationBefore) {
      check(Number(generationAfter) > Number(generationBefore),
        "X-Relayd-Generation did not grow: " + generationBefore + " -> " + generationAfter);
    }
    console.log("change followed without a reload");

    // Search narrows the list and survives the redraws.
    await page.fill("#search", "broken");
    await page.waitForFunction(function () {
      const names = Array.from(document.querySelectorAll("table.objects tr.object")).map(function (tr) {
        return tr.getAttribute("data-name");
      });
      return names.length === 1 && names[0] === "broken@file";
    });
    await morePolls(page, 2);
    check(await page.inputValue("#search") === "broken", "the search box lost its text");
    check(JSON.stringify(await rows(page)) === '["broken@file"]', "the search did not hold: " + (await rows(page)));
    check(page.url().indexOf("search=broken") >= 0, "the search is not in the address: " + page.url());
    await page.fill("#search", "");

    // The status filter shows disabled routers only.
    await page.selectOption("#status-filter", "disabled");
    await page.waitForFunction(function () {
      return document.querySelectorAll("table.objects tr.object").length === 1;
    });
    check(JSON.stringify(await rows(page)) === '["broken@file"]', "the status filter shows " + (await rows(page)));
    await page.selectOption("#status-filter", "enabled");
    await page.waitForFunction(function () {
      return !document.querySelector('tr.object[data-name="broken@file"]') &&
        !!document.querySelector('tr.object[data-name="added@file"]');
    });
    await morePolls(page, 1);
    check(await page.inputValue("#status-filter") === "enabled", "the status filter lost its value");
    await page.selectOption("#status-filter", "");
    await page.waitForSelector('tr.object[data-name="broken@file"]');
    console.log("search and filter work");

    // The router's own page shows its error in red.
    await page.click('tr.object[data-name="broken@file"] td.name a');
    await page.waitForSelector(".errors-box .error");
    check(/missing/.test(await page.textContent(".errors-box .error")), "the router page lacks the error");
    check(decodeURIComponent(page.url()).endsWith("#/http/routers/broken@file"), "unexpected address " + page.url());

    // Services: the health-checked pool has one server UP and one DOWN.
    await page.click('#nav a[data-nav="http/services"]');
    await page.waitForSelector('tr.object[data-name="pool@file"] .server-up');
    await page.waitForSelector('tr.object[data-name="pool@file"] .server-down');
    await page.click('tr.object[data-name="pool@file"] td.name a');
    await page.waitForSelector('[data-server-status="UP"]');
    await page.waitForSelector('[data-server-status="DOWN"]');
    console.log("services show UP and DOWN servers");

    // The middlewares and entrypoints pages render too.
    await page.click('#nav a[data-nav="http/middlewares"]');
    await page.waitForSelector("table.objects, p.empty");
    await page.click('#nav a[data-nav="entrypoints"]');
    await page.waitForSelector('table.objects tr[data-name="web"]');

    // The screenshot for the docs: the routers, the broken one included.
    await page.click('#nav a[data-nav="http/routers"]');
    await page.waitForSelector('tr[data-errors-for="broken@file"]');
    await page.screenshot({ path: screenshotPath, fullPage: false });

    // Behind a user router to api@internal under /ops: the relative API URLs
    // go through the same router.
    const apiCalls = [];
    page.on("request", function (request) {
      if (request.url().indexOf("/api/") >= 0) apiCalls.push(new URL(request.url()).pathname);
    });
    await page.goto(prefixedURL + "#/http/routers", { waitUntil: "load" });
    await page.waitForSelector('tr.object[data-name="ops@file"] [data-status="enabled"]');
    await page.waitForSelector('tr.object[data-name="broken@file"] [data-status="disabled"]');
    check(apiCalls.length > 0 && apiCalls.every(function (p) { return p.startsWith("/ops/api/"); }),
      "API calls behind the prefix: " + apiCalls.join(", "));
    console.log("works behind a user router under a prefix");

    check(problems.length === 0, problems.join("\n"));
    console.log("OK");
  } finally {
    await browser.close();
  }
}

const deadline = setTimeout(function () {
  process.stderr.write("dashboard.js: gave up after 200 s\n");
  process.exit(2);
}, 200000);

main().then(function () {
  clearTimeout(deadline);
  process.exit(0);
}, function (error) {
  process.stderr.write((error && error.stack) || String(error));
  process.stderr.write("\n");
  process.exit(1);
});
