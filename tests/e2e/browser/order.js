// Places an order through the storefront's web page in headless Chromium, as a person would:
// sign up, add a pet to the cart, order with a card, and watch the status until it is final.
// Usage: node order.js BASE_URL PET_NAME CARD_NUMBER SCREENSHOT_PATH
// Prints the final status; exits non-zero on any failure.
"use strict";
const { chromium } = require("playwright-core");

async function main() {
  const [base, petName, card, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(30000);
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(base + "/");
    const user = "web" + Math.random().toString(36).slice(2, 10);
    await page.fill("#username", user);
    await page.fill("#password", "browser password");
    await page.click("#signup");
    await page.waitForSelector("#whoami:not([hidden])");
    const pet = page.locator(".pet", { hasText: petName });
    await pet.getByRole("button", { name: "Add to cart" }).click();
    await page.waitForSelector("#cart li");
    await page.fill("#card", card);
    await page.click("#order");
    await page.waitForFunction(() => ["COMPLETED", "CANCELLED"].includes(
      document.getElementById("order-status").textContent), null, { timeout: 60000 });
    const status = await page.textContent("#order-status");
    const history = await page.locator("#history li").allTextContents();
    await page.screenshot({ path: shot, fullPage: true });
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
    console.log(JSON.stringify({ status, history }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
