// Opens the built page (scripts/build_web.sh OUTDIR) in headless Chromium with WebGPU, serves it
// from 127.0.0.1, waits for `window.bark`, prints a summary of it as JSON, and checks it.
//
// Usage: node web/test/run_page.mjs OUTDIR "QUERY" [options]
//   --mount /url/path=DIR   also serve DIR under /url/path (a model or voice directory)
//   --shot FILE.png         save a screenshot of the page once it is done
//   --expect-npz FILE       the tokens must equal this voice prompt's (`say --save-prompt`)
//   --expect-wav FILE       the samples must be within --tolerance of this float WAV (`say --out`)
//   --tolerance X           (default 1e-4)
//   --expect-error REGEX    the run must fail with an error matching REGEX, shown on the page
//   --pick-model DIR        pick DIR's config.json, tokenizer.json and model.safetensors in the
//                           page's file input and press Generate (a query without autorun)
//   --pick-voice FILE       pick FILE in the voice's file input first
//   --expect-adapter TEXT   the page's adapter line must contain TEXT
//   --no-webgpu             start Chromium without WebGPU (an unsupported browser)
//   --again                 load the page a second time in the same browser; the second visit
//                           must fetch no file under a mount (they come from the browser's cache)
// Exit status 0 when every check holds. Needs Debian's chromium (CHROMIUM=path to override) and
// puppeteer-core (npm ci in web/).
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import puppeteer from "puppeteer-core";
import { readNpz, readFloatWav } from "./reference.mjs";

const args = process.argv.slice(2);
const [root, query = ""] = args;
const opt = (name) => { const i = args.indexOf(name); return i < 0 ? undefined : args[i + 1]; };
const mounts = args.flatMap((a, i) => (args[i - 1] === "--mount" ? [a.split("=")] : []));
const tolerance = Number(opt("--tolerance") ?? 1e-4);

const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
let mountedFetches = 0;
const server = http.createServer((req, res) => {
  const urlPath = decodeURIComponent(new URL(req.url, "http://x").pathname);
  let [base, dir] = ["/", root];
  for (const [m, d] of mounts) if (urlPath.startsWith(m + "/")) { [base, dir] = [m + "/", d]; mountedFetches++; }
  const file = path.resolve(dir, urlPath.slice(base.length));
  if (urlPath === "/") {
    res.writeHead(200, { "content-type": "text/html" });
    return res.end(fs.readFileSync(path.join(root, "index.html")));
  }
  if (!file.startsWith(path.resolve(dir)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404);
    return res.end();
  }
  res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream", "content-length": fs.statSync(file).size });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/?${query}`;

const webgpu = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-webgpu-adapter=swiftshader"];
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // A page may work for many minutes (the full kernel check); puppeteer's default is 180 s.
  protocolTimeout: 30 * 60 * 1000,
  args: ["--no-sandbox", ...(args.includes("--no-webgpu") ? ["--disable-features=WebGPU"] : webgpu)],
});
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };

async function visit() {
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  const uncaught = [];
  page.on("pageerror", (e) => uncaught.push(String(e)));
  const t0 = Date.now();
  await page.goto(url);
  if (opt("--pick-model")) {
    await page.waitForSelector("#go:not([disabled])", { timeout: 60 * 1000 });
    const dir = opt("--pick-model");
    const model = await page.$("#model-files");
    await model.uploadFile(...["config.json", "tokenizer.json", "model.safetensors"].map((f) => path.resolve(dir, f)));
    if (opt("--pick-voice")) await (await page.$("#voice-file")).uploadFile(path.resolve(opt("--pick-voice")));
    await page.click("#go");
  }
  await page.waitForFunction(() => window.bark !== null && window.bark !== undefined, { timeout: 30 * 60 * 1000, polling: 250 });
  const bark = await page.evaluate(() => ({ ...window.bark, samples: window.bark.samples && Array.from(window.bark.samples) }));
  const shown = await page.evaluate(() => document.getElementById("error").textContent + " " + document.getElementById("adapter").textContent);
  const adapter = await page.evaluate(() => document.getElementById("adapter").textContent);
  return { page, bark, shown, adapter, consoleErrors, uncaught, wallSeconds: (Date.now() - t0) / 1000 };
}

let status = 1;
try {
  const first = await visit();
  const { bark } = first;
  const summary = {
    adapter: first.adapter, error: bark.error, wall_seconds: first.wallSeconds, seconds: bark.seconds,
    semantic: bark.semantic?.length, frames: bark.coarse?.[0]?.length, samples: bark.samples?.length,
    sampleRate: bark.sampleRate, gpu: bark.gpu, check: bark.check, console_errors: first.consoleErrors,
  };
  check(first.uncaught.length === 0, `no uncaught exception on the page: ${first.uncaught.join("; ")}`);
  const expectError = opt("--expect-error");
  if (expectError) {
    check(bark.error && new RegExp(expectError).test(bark.error), `an error matching /${expectError}/, got ${JSON.stringify(bark.error)}`);
    check(bark.error && first.shown.includes(bark.error), "the error is shown on the page");
  } else {
    check(bark.error === null, `no error, got ${JSON.stringify(bark.error)}`);
  }
  if (opt("--expect-adapter")) check(first.adapter.includes(opt("--expect-adapter")), `the adapter line has "${opt("--expect-adapter")}": ${first.adapter}`);
  if (opt("--expect-npz")) {
    const want = readNpz(opt("--expect-npz"));
    for (const key of ["semantic", "coarse", "fine"]) {
      const same = JSON.stringify(bark[key]) === JSON.stringify(want[key]);
      check(same, `${key} tokens equal the native build's`);
      summary[`${key}_equal`] = same;
    }
  }
  if (opt("--expect-wav")) {
    const want = readFloatWav(opt("--expect-wav"));
    check(bark.sampleRate === want.sampleRate, `sample rate ${bark.sampleRate}, native ${want.sampleRate}`);
    check(bark.samples?.length === want.samples.length, `${bark.samples?.length} samples, native ${want.samples.length}`);
    let worst = 0;
    for (let i = 0; i < Math.min(bark.samples?.length ?? 0, want.samples.length); i++) {
      worst = Math.max(worst, Math.abs(bark.samples[i] - want.samples[i]));
    }
    summary.max_abs_diff = worst;
    check(worst <= tolerance, `samples within ${tolerance} of the native build's (worst ${worst})`);
  }
  if (opt("--shot")) {
    await first.page.screenshot({ path: opt("--shot"), fullPage: true });
    summary.screenshot = path.resolve(opt("--shot"));
  }
  if (args.includes("--again")) {
    const before = mountedFetches;
    const second = await visit();
    summary.second_visit = { error: second.bark.error, files_fetched: mountedFetches - before, wall_seconds: second.wallSeconds };
    check(second.bark.error === null, `the second visit works, got ${JSON.stringify(second.bark.error)}`);
    check(mountedFetches === before, `the second visit fetched ${mountedFetches - before} files; the cache should serve them`);
    check(JSON.stringify(second.bark.semantic) === JSON.stringify(bark.semantic), "the second visit makes the same tokens");
  }
  console.log(JSON.stringify(summary, null, 1));
  status = failures.length ? 1 : 0;
} finally {
  await browser.close();
  server.close();
}
for (const f of failures) console.error("FAILED:", f);
process.exit(status);
