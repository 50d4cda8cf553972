// The admin console in a real browser: Debian's Chromium driven by playwright-core. Run by
// tests/api/console_browser.rs, which starts the gateway and its fake Fxiaoke, then checks
// what the vendor received. Every step that fails exits non-zero with what it expected.
//
// Environment: CONSOLE_BASE (http://127.0.0.1:PORT), ADMIN_TOKEN, GITHUB_SECRET, PUSH_FILE (a
// push payload), DEAD_MESSAGE (the id of a dead message), SHOTS (the screenshot folder),
// CHROMIUM (the browser; default /usr/bin/chromium), NEW_TITLE_PREFIX.
import { createHmac, randomUUID } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("CONSOLE_BASE");
const token = env("ADMIN_TOKEN");
const secret = env("GITHUB_SECRET");
const push = readFileSync(env("PUSH_FILE"));
const deadMessage = env("DEAD_MESSAGE");
const shots = env("SHOTS");
const prefix = env("NEW_TITLE_PREFIX");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

const step = (what) => console.log(`step: ${what}`);
function expect(ok, what) {
  if (!ok) throw new Error(`expected ${what}`);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US" });
const page = await context.newPage();
// A busy machine (the whole test suite runs beside this) slows the browser down.
page.setDefaultTimeout(120_000);
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() === "error") consoleErrors.push(m.text());
});
page.on("pageerror", (e) => consoleErrors.push(String(e)));

// The editor's text replaced, as one edit (an input event, as typing or pasting makes).
async function setEditor(text) {
  await page.$eval(
    "#yaml",
    (el, value) => {
      el.value = value;
      el.dispatchEvent(new Event("input", { bubbles: true }));
    },
    text,
  );
}

// A screenshot of the page as it is, at phone width and at desktop width.
async function shoot(name) {
  for (const width of [390, 1280]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
    await page.screenshot({ path: join(shots, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

try {
  step("a page without a session goes to the sign-in form");
  await page.goto(`${base}/admin/ui/`);
  expect(page.url().endsWith("/admin/ui/sign-in"), `the sign-in form, got ${page.url()}`);
  await shoot("sign-in");

  step("a wrong token is refused");
  await page.fill('input[name="token"]', "not-the-token");
  await page.click('button[type="submit"]');
  await page.waitForSelector('[role="alert"]');
  expect((await page.textContent('[role="alert"]')).includes("Wrong token"), "'Wrong token'");
  expect(page.url().endsWith("/sign-in"), "still on the sign-in form");

  step("the admin token signs in to the overview");
  await page.fill('input[name="token"]', token);
  await Promise.all([page.waitForURL(`${base}/admin/ui/`), page.click('button[type="submit"]')]);
  expect((await page.textContent("main")).includes("github"), "the github source in the overview");
  consoleErrors.length = 0; // the wrong token's 401 was expected; nothing else may fail
  await shoot("overview");

  step("the GitHub mapping opens with the recent push previewed");
  await page.goto(`${base}/admin/ui/sources/github`);
  await page.waitForSelector("#result .fx-card");
  const opened = await page.textContent("#result .fx-head");
  expect(opened.includes("commit(s) to master"), `the push's card, got ${opened}`);
  await shoot("editor");

  step("a broken template shows its error at its line and column");
  const original = await page.inputValue("#yaml");
  // The push-new-branch rule's English title and the next lines (its Chinese title, the first
  // line's key and English text): one place in the file.
  const title = `en: "{$.repository.full_name}: {$.commits | count} commit(s) to {$.ref | trim_prefix('refs/heads/')}"\n        zh-CN: "{$.repository.full_name}：{$.commits | count} 个提交推送到 {$.ref | trim_prefix('refs/heads/')}"\n      first:\n        en: "{$.pusher.name | default($.sender.login)} pushed to {$.ref} (new branch)"`;
  const at = original.indexOf(title);
  expect(at >= 0, "the push-new-branch title in github.yaml");
  const broken = original.slice(0, at) + title.replace("| count}", "| cuont}") + original.slice(at + title.length);
  const lines = broken.split("\n");
  const line = lines.findIndex((l) => l.includes("cuont")) + 1;
  const col = lines[line - 1].indexOf("cuont") + 1;
  await setEditor(broken);
  await page.waitForSelector(`#problems li.error[data-line="${line}"][data-col="${col}"]`);
  const problem = await page.textContent("#problems li.error");
  expect(problem.startsWith(`${line}:${col}`) && problem.includes("unknown filter 'cuont'"), `${line}:${col} unknown filter, got ${problem}`);
  expect(await page.isVisible(`.gutter span.error:nth-child(${line})`), `line ${line} marked in the gutter`);
  await shoot("editor-error");

  step("fixed with a new title, the preview shows it");
  const fixed = original.slice(0, at) + title.replace('en: "{$.repository.full_name}:', `en: "${prefix} {$.repository.full_name}:`) + original.slice(at + title.length);
  await setEditor(fixed);
  await page.waitForFunction(
    (p) => document.querySelector("#result .fx-head")?.textContent.startsWith(p),
    prefix,
  );
  // The example of push.4 still expects the old title: a warning (it does not block a save).
  expect((await page.locator("#problems li.error").count()) === 0, "no errors");
  expect((await page.textContent("#problems")).includes("example"), "the example's mismatch as a warning");
  await shoot("editor-preview");

  step("save shows the diff first, then saves");
  await page.click("#review");
  await page.waitForSelector("#review-panel:not([hidden])");
  const diff = await page.textContent("#diff");
  expect(diff.includes(`+        en: "${prefix}`), `the new title in the diff, got ${diff}`);
  await shoot("editor-diff");
  await page.click("#confirm-save");
  await page.waitForFunction(() => document.querySelector("#save-status")?.className === "ok");
  expect((await page.textContent("#save-status")).includes("Saved"), "'Saved'");

  step("a signed push reaches the gateway and its card carries the new title");
  const signature = "sha256=" + createHmac("sha256", secret).update(push).digest("hex");
  const res = await fetch(`${base}/hooks/github`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-GitHub-Event": "push",
      "X-GitHub-Delivery": randomUUID(),
      "X-Hub-Signature-256": signature,
    },
    body: push,
  });
  expect(res.status === 202, `202 for the signed push, got ${res.status} ${await res.text()}`);
  let delivered = false;
  for (let i = 0; i < 50 && !delivered; i++) {
    await page.goto(`${base}/admin/ui/messages?state=delivered`);
    delivered = (await page.textContent("table.messages")).includes(prefix);
    if (!delivered) await page.waitForTimeout(200);
  }
  expect(delivered, "the new title among the delivered messages");
  await shoot("deliveries");

  step("a dead message is replayed from the Deliveries page and delivered");
  await page.goto(`${base}/admin/ui/messages?state=dead`);
  await Promise.all([page.waitForURL(`**/admin/ui/messages/${deadMessage}`), page.click(`a[href$="/messages/${deadMessage}"] >> nth=0`)]);
  expect((await page.textContent("h1")).includes("dead"), "the message is dead");
  await shoot("message-dead");
  await Promise.all([page.waitForURL(`**/messages/${deadMessage}?note=replayed`), page.click('form[action$="/replay"] button')]);
  let state = "";
  for (let i = 0; i < 50 && state !== "delivered"; i++) {
    await page.goto(`${base}/admin/ui/messages/${deadMessage}`);
    state = (await page.textContent("h1 .badge")).trim();
    if (state !== "delivered") await page.waitForTimeout(200);
  }
  expect(state === "delivered", `the replayed message delivered, got ${state}`);
  const attempts = await page.textContent("table.attempts");
  expect(attempts.includes("20021"), "the refused attempt's errorCode in the attempts");
  await shoot("message-delivered");

  step("the other pages render");
  await page.goto(`${base}/admin/ui/send-test`);
  await shoot("send-test");
  await page.goto(`${base}/admin/ui/replay-all`);
  await shoot("replay-all");

  step("Chinese when the browser asks for it");
  const zh = await browser.newContext({ locale: "zh-CN", extraHTTPHeaders: { "Accept-Language": "zh-CN,zh;q=0.9" } });
  await zh.addCookies(await context.cookies());
  const zhPage = await zh.newPage();
  await zhPage.goto(`${base}/admin/ui/`);
  expect((await zhPage.textContent("main h1")).includes("概览"), "the overview in Chinese");
  await zhPage.screenshot({ path: join(shots, "overview-zh-1280.png"), fullPage: true });

  step("sign-out ends the session");
  await page.goto(`${base}/admin/ui/`);
  await Promise.all([page.waitForURL("**/admin/ui/sign-in"), page.click("form.signout button")]);
  await page.goto(`${base}/admin/ui/messages`);
  expect(page.url().endsWith("/admin/ui/sign-in"), "signed out");

  expect(consoleErrors.length === 0, `no errors in the browser console, got ${consoleErrors.join(" | ")}`);
  console.log("ok");
} catch (e) {
  await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`console e2e failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
