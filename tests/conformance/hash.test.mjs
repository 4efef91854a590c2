// Compose hash and env encryption, byte for byte: teeform (through its hidden `debug`
// commands) against @phala/dstack-sdk 0.5.8, the code the official SDK and CLI use.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { encryptEnvVars } from "@phala/dstack-sdk/encrypt-env-vars";
import { getComposeHash } from "@phala/dstack-sdk/get-compose-hash";
import { decryptEnvBytes, newKeyPair } from "./lib/decrypt.mjs";
import { TEEFORM } from "./lib/sim.mjs";

const here = new URL(".", import.meta.url).pathname;
const teeform = (args, input) => execFileSync(TEEFORM, args, { input, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });

/** JSON.stringify of the SDK's sorted copy: the bytes getComposeHash hashes (for messages). */
function sdkCanonical(v) {
  const sort = (o) => (Array.isArray(o) ? o.map(sort)
    : o && typeof o === "object" ? Object.keys(o).sort().reduce((r, k) => { r[k] = sort(o[k]); return r; }, {}) : o);
  return JSON.stringify(sort(v));
}

const fixtures = readdirSync(`${here}fixtures/compose`).filter((f) => f.endsWith(".json")).sort()
  .map((f) => ({ name: f, text: readFileSync(`${here}fixtures/compose/${f}`, "utf8") }));
// The vectors the SDK itself produced (reference vectors/compose-hash-vectors.json).
const vectors = JSON.parse(readFileSync(`${here}../fixtures/compose-hash-vectors.json`, "utf8")).vectors;

test(`compose hash: teeform = @phala/dstack-sdk getComposeHash on ${fixtures.length + vectors.length} app composes`, () => {
  assert.ok(fixtures.length >= 10, "at least 10 fixtures");
  const cases = [
    ...fixtures,
    ...vectors.map((v) => ({ name: `vector ${v.name}`, text: JSON.stringify(v.input), want: v.dstack_sdk_0_5_8.hash_normalize_false })),
  ];
  const failures = [];
  for (const c of cases) {
    // teeform reads the file's own bytes (so `2.0`, `1E2`, `-0` reach it as written).
    const mine = JSON.parse(teeform(["debug", "compose-hash"], c.text));
    const sdk = getComposeHash(JSON.parse(c.text));
    if (c.want) assert.equal(sdk, c.want, `${c.name}: the SDK itself changed`);
    if (mine.compose_hash !== sdk) {
      failures.push(`${c.name}: teeform ${mine.compose_hash} != SDK ${sdk}\n  teeform bytes: ${mine.canonical_json}\n  SDK bytes:     ${sdkCanonical(JSON.parse(c.text))}`);
    }
  }
  assert.deepEqual(failures, [], `compose hashes differ:\n${failures.join("\n")}`);
});

const ENV = {
  API_KEY: "sk-test-123",
  DB_URL: "postgres://u:p@db:5432/x?sslmode=require",
  EMPTY: "",
  MULTI_LINE: "line1\nline2\r\n\tindented",
  QUOTES: "she said \"hi\" \\ back\\slash </script>",
  UNICODE: "ünïcödé 日本語 😀 e\u0301",
  CONTROL: "\u0001\u001f\u007f\u2028\u2029",
};

test("env encryption: the reference decryptor reads what @phala/dstack-sdk wrote", async () => {
  const v = JSON.parse(readFileSync(`${here}../fixtures/encrypt-env-vector.json`, "utf8"));
  assert.equal(decryptEnvBytes(v.encrypted_env_hex, v.recipient_private_key_hex).toString("utf8"), v.expected_plaintext,
    "the SDK's published vector");
  const kp = newKeyPair();
  const env = Object.entries(ENV).map(([key, value]) => ({ key, value }));
  const enc = await encryptEnvVars(env, kp.publicHex);
  assert.equal(decryptEnvBytes(enc, kp.privateHex).toString("utf8"), JSON.stringify({ env }));
});

test("env encryption: what teeform encrypts, the reference decryptor reads byte for byte", () => {
  const kp = newKeyPair();
  const stdin = JSON.stringify(ENV);
  const a = teeform(["debug", "encrypt-env", "--pubkey", kp.publicHex], stdin).trim();
  const b = teeform(["debug", "encrypt-env", "--pubkey", `0x${kp.publicHex}`], stdin).trim();
  assert.match(a, /^[0-9a-f]+$/, "lowercase hex without 0x");
  const plain = decryptEnvBytes(a, kp.privateHex);
  // teeform sends env keys sorted; the plaintext must be exactly what the SDK would write
  // for the same pairs in that order.
  const sorted = Object.keys(ENV).sort().map((key) => ({ key, value: ENV[key] }));
  assert.equal(plain.toString("utf8"), JSON.stringify({ env: sorted }), "plaintext bytes = JSON.stringify({env})");
  assert.equal(Buffer.from(a, "hex").length, 32 + 12 + plain.length + 16, "layout: pubkey || iv || ciphertext || tag");
  assert.notEqual(a.slice(0, 64), b.slice(0, 64), "a fresh ephemeral key per encryption");
  assert.equal(decryptEnvBytes(b, kp.privateHex).toString("utf8"), plain.toString("utf8"), "0x-prefixed pubkey accepted");
  assert.throws(() => decryptEnvBytes(a, newKeyPair().privateHex), /unable to authenticate|Unsupported state/, "another key cannot read it");
});
