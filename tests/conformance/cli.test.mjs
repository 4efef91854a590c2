// The official `phala` CLI (npm phala 1.1.18) against the simulator, and teeform and the CLI
// on the same CVMs: one the CLI creates is imported by teeform, one teeform creates shows in
// the CLI. Each CLI call costs about a second of JS loading, so calls are few.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { API_KEY, TEEFORM, startSim } from "./lib/sim.mjs";

const sim = await startSim();
const dir = mkdtempSync(join(tmpdir(), "teeform-conformance-cli-"));
const PHALA = new URL("./node_modules/.bin/phala", import.meta.url).pathname;
const COMPOSE = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"80:80\"\n";
const COMPOSE2 = COMPOSE.replace("1.27", "1.28");
writeFileSync(join(dir, "v1.yml"), COMPOSE);
writeFileSync(join(dir, "v2.yml"), COMPOSE2);

// A clean environment: a temp HOME (no real credentials), the simulator as the API.
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PHALA_") && !k.startsWith("TEEFORM_")));
const env = {
  ...baseEnv, HOME: join(dir, "home"), NO_COLOR: "1", PHALA_DISABLE_UPDATE_CHECK: "1",
  PHALA_CLOUD_API_KEY: API_KEY, PHALA_CLOUD_API_PREFIX: sim.prefix, SECRET_VALUE: "s3cr3t",
};

function run(bin, args, what) {
  const r = spawnSync(bin, args, { cwd: dir, env, encoding: "utf8", timeout: 60000 });
  const shown = `\n$ ${what} ${args.join(" ")}\nexit ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, shown };
}

/** Runs `phala ARGS --json`; fails loudly unless it exits 0 with JSON on stdout. */
function phala(...args) {
  const r = run(PHALA, [...args, "--json"], "phala");
  assert.equal(r.code, 0, `phala ${args[0]} failed:${r.shown}`);
  try {
    return JSON.parse(r.stdout.slice(r.stdout.indexOf("{")));
  } catch {
    return assert.fail(`phala ${args[0]} did not print JSON:${r.shown}`);
  }
}

function teeform(...args) {
  return run(TEEFORM, args, "teeform");
}

function manifest(cvms) {
  writeFileSync(join(dir, "teeform.yaml"), `provider:\n  phala:\n    endpoint: ${sim.prefix}\ncvms:\n${cvms}`);
}

const requests = async (key) => (await sim.stats()).requests[key] ?? 0;

test("phala deploy creates a CVM; the simulator decrypts the CLI's env", async () => {
  const out = phala("deploy", "--name", "cli-made", "-c", "v1.yml", "-e", "FOO=bar", "-e", "SECRET=s3cr3t");
  assert.equal(out.success, true);
  assert.match(out.app_id, /^[0-9a-f]{40}$/);
  assert.deepEqual((await sim.env("cli-made")).env, { FOO: "bar", SECRET: "s3cr3t" });
  await sim.settle();
});

test("phala cvms list and cvms get read it (GET /apps, POST /status/batch, GET /cvms/{id})", async () => {
  const before = await requests("POST /api/v1/status/batch");
  const list = phala("cvms", "list");
  assert.equal(list.success, true);
  const item = list.items.find((i) => i.cvmName === "cli-made");
  assert.ok(item, `cvms list: cli-made missing from ${JSON.stringify(list.items)}`);
  assert.equal(item.status, "running", "cvms list: status comes from /status/batch");
  assert.equal(await requests("POST /api/v1/status/batch"), before + 1);
  const got = phala("cvms", "get", "cli-made");
  assert.equal(got.name, "cli-made");
  assert.equal(got.status, "running");
  assert.deepEqual(got.compose_file?.allowed_envs, ["FOO", "SECRET"]);
});

test("phala deploy --cvm-id updates compose and env in one PATCH", async () => {
  const before = await requests("PATCH /api/v1/cvms/cli-made");
  phala("deploy", "--cvm-id", "cli-made", "-c", "v2.yml", "-e", "FOO=baz", "-e", "SECRET=s3cr3t");
  assert.equal(await requests("PATCH /api/v1/cvms/cli-made"), before + 1, "one PATCH");
  await sim.settle();
  assert.deepEqual((await sim.env("cli-made")).env, { FOO: "baz", SECRET: "s3cr3t" });
  assert.equal((await sim.stats()).cvms["cli-made"].restarts, 1, "one restart");
});

test("teeform imports the CVM the CLI made and plans sensibly", async () => {
  manifest("  made:\n    name: cli-made\n    compose: v2.yml\n    lint: {ignore: [FOO, SECRET]}\n    env:\n      FOO: baz\n      SECRET: ${secret:env:SECRET_VALUE}\n");
  const imp = teeform("import", "cvm.made", "cli-made");
  assert.equal(imp.code, 0, `import failed:${imp.shown}`);
  const plan = teeform("plan", "--detailed-exitcode", "--no-color");
  // Env values cannot be read back, so an import is followed by one update sending them.
  assert.equal(plan.code, 2, `plan after import:${plan.shown}`);
  assert.match(plan.stdout, /Plan: 0 to add, 1 to change, 0 to destroy/, plan.shown);
  assert.doesNotMatch(plan.stdout, /changed outside|has changed/, `no drift right after import:${plan.shown}`);
  assert.doesNotMatch(plan.stdout, /compose|vcpu|memory|image/i, `only env differs:${plan.shown}`);
  const apply = teeform("apply", "--auto-approve", "--no-color");
  assert.equal(apply.code, 0, `apply:${apply.shown}`);
  const again = teeform("plan", "--detailed-exitcode", "--no-color");
  assert.equal(again.code, 0, `plan after apply must be clean:${again.shown}`);
  assert.deepEqual((await sim.env("cli-made")).env, { FOO: "baz", SECRET: "s3cr3t" });
});

test("a CVM teeform creates shows correctly in the CLI", async () => {
  manifest("  made:\n    name: cli-made\n    compose: v2.yml\n    lint: {ignore: [FOO, SECRET]}\n    env:\n      FOO: baz\n      SECRET: ${secret:env:SECRET_VALUE}\n"
    + "  tf:\n    name: tf-made\n    compose: v1.yml\n    vcpu: 2\n    memory: 4096\n    lint: {ignore: [LOG_LEVEL]}\n    env:\n      LOG_LEVEL: info\n");
  const apply = teeform("apply", "--auto-approve", "--no-color");
  assert.equal(apply.code, 0, `apply:${apply.shown}`);
  assert.match(apply.stdout + apply.stderr, /1 added, 0 changed, 0 destroyed/, apply.shown);
  const list = phala("cvms", "list");
  const item = list.items.find((i) => i.cvmName === "tf-made");
  assert.ok(item, `cvms list: tf-made missing from ${JSON.stringify(list.items)}`);
  assert.equal(item.status, "running");
  const got = phala("cvms", "get", "tf-made");
  assert.equal(got.resource.vcpu, 2);
  assert.equal(got.resource.memory_in_gb, 4);
  assert.equal(got.compose_file.docker_compose_file, COMPOSE);
  assert.deepEqual(got.compose_file.allowed_envs, ["LOG_LEVEL"]);
  assert.equal(got.kms_type, "phala");
  assert.deepEqual((await sim.env("tf-made")).env, { LOG_LEVEL: "info" });
});
