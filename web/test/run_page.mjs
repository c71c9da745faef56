// Opens the built page (scripts/build_web.sh OUTDIR) in headless Chromium with WebGPU, serves
// it from 127.0.0.1, and prints what the page sets in `window.bark` once set (or fails).
// Usage: node web/test/run_page.mjs OUTDIR "QUERY" [SCREENSHOT.png]
// Needs Debian's chromium (CHROMIUM=path to override) and puppeteer-core (npm).
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import puppeteer from "puppeteer-core";

const [root, query = "", shot] = process.argv.slice(2);
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
const server = http.createServer((req, res) => {
  const file = path.join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
  if (!file.startsWith(path.resolve(root)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    const index = path.join(root, "index.html");
    if (req.url.startsWith("/?") || req.url === "/") {
      res.writeHead(200, { "content-type": "text/html" });
      return res.end(fs.readFileSync(index));
    }
    res.writeHead(404);
    return res.end();
  }
  res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/?${query}`;

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-webgpu-adapter=swiftshader"],
});
let status = 0;
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warn") console.error("page:", m.text()); });
  await page.goto(url);
  await page.waitForFunction(() => window.bark !== null && window.bark !== undefined, { timeout: 20 * 60 * 1000, polling: 500 });
  const result = await page.evaluate(() => JSON.stringify(window.bark));
  console.log(result);
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  if (JSON.parse(result).error) status = 1;
} finally {
  await browser.close();
  server.close();
}
process.exit(status);
