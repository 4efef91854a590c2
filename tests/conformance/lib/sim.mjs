// Starts `teeform sim serve` on a free loopback port and stops it when the test file ends.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after } from "node:test";

export const TEEFORM = process.env.TEEFORM_BIN || new URL("../../../target/debug/teeform", import.meta.url).pathname;
export const API_KEY = "conformance-key";

/** A running simulator: `prefix` is the API base URL the SDK and CLI use. */
export async function startSim(extraArgs = []) {
  // Port 0: the OS picks a free port; the simulator prints the one it got.
  const args = ["sim", "serve", "--addr", "127.0.0.1:0", "--api-key", API_KEY,
    "--restart-ms", "300", "--boot-ms", "300", ...extraArgs];
  const child = spawn(TEEFORM, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => { err += d; });
  const prefix = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`simulator did not start in 20 s\nstdout: ${out}\nstderr: ${err}`)), 20000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/API prefix: (http:\/\/127\.0\.0\.1:\d+\/api\/v1)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`simulator exited (${code}) before listening\n${err}`)); });
  });
  const base = prefix.replace(/\/api\/v1$/, "");
  const stop = async () => {
    if (child.exitCode === null) { child.kill("SIGTERM"); await once(child, "exit"); }
  };
  after(stop);
  const simGet = async (path) => {
    const r = await fetch(base + path);
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status} ${await r.text()}`);
    return r.json();
  };
  return {
    prefix, base, stop,
    /** What the CVM would see: env decrypted with the simulator's test KMS key. */
    env: (id) => simGet(`/_sim/cvms/${id}/env`),
    stats: () => simGet("/_sim/stats"),
    /** Changes simulator knobs at runtime (POST /_sim/config). */
    async config(knobs) {
      const r = await fetch(`${base}/_sim/config`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(knobs) });
      if (!r.ok) throw new Error(`POST /_sim/config: HTTP ${r.status} ${await r.text()}`);
      return r.json();
    },
    /** Waits until no CVM is mid-transition (restart, boot), so the next update is accepted. */
    async settle(timeoutMs = 15000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const s = await simGet("/_sim/stats");
        if (Object.values(s.cvms).every((c) => c.status === "running" || c.status === "stopped")) return s;
        if (Date.now() > until) throw new Error(`CVMs still busy after ${timeoutMs} ms: ${JSON.stringify(s.cvms)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}
