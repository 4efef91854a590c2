// Referee helpers: run an official SDK call against the simulator and, when the SDK rejects
// what the simulator said, fail with the function, the field and the raw exchange.
import assert from "node:assert/strict";
import { PhalaCloudError } from "@phala/cloud";

// Every exchange the SDK makes (ofetch calls globalThis.fetch at request time), so a
// failure can show the raw response and field checks can see keys the SDK strips.
const exchanges = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init = {}) => {
  const res = await realFetch(input, init);
  const url = typeof input === "string" ? input : input.url;
  const text = await res.clone().text();
  let body = text;
  try { body = JSON.parse(text); } catch { /* not JSON: keep the text */ }
  exchanges.push({ method: init.method || "GET", url, request: init.body, status: res.status, body });
  return res;
};

/** The raw response body of the last exchange with the simulator. */
export const lastBody = () => exchanges.at(-1)?.body;

function describe(list) {
  return list.map((x) => `  ${x.method} ${x.url} -> HTTP ${x.status}\n    request: ${short(x.request)}\n    response: ${short(x.body)}`).join("\n");
}

function short(v) {
  if (v === undefined) return "(none)";
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 1500 ? `${s.slice(0, 1500)}…` : s;
}

function at(obj, path) {
  return path.reduce((o, k) => (o == null ? o : o[k]), obj);
}

function formatIssues(issues, body) {
  return issues.map((i) => {
    const field = i.path.length ? i.path.join(".") : "(the whole response)";
    return `  - field \`${field}\`: ${i.message} [${i.code}]; the simulator sent ${short(at(body, i.path))}`;
  }).join("\n");
}

/**
 * Runs one SDK function; any schema error or unexpected HTTP error becomes a failure that
 * names the function, the field and the exchange.
 */
export async function sdk(name, fn) {
  const mark = exchanges.length;
  try {
    return await fn();
  } catch (e) {
    const seen = exchanges.slice(mark);
    if (e && Array.isArray(e.issues)) {
      assert.fail(`${name}: the SDK's schema rejected the simulator's response:\n${formatIssues(e.issues, seen.at(-1)?.body)}\n${describe(seen)}`);
    }
    if (e instanceof PhalaCloudError) {
      assert.fail(`${name}: HTTP ${e.status} (${e.constructor.name}): ${e.message}\n${describe(seen)}`);
    }
    throw e;
  }
}

/**
 * Runs an SDK function that must fail, and checks the SDK classified the error as the real
 * service's would be: class, status, error code.
 */
export async function sdkError(name, fn, { cls, status, code, message }) {
  const mark = exchanges.length;
  let err;
  try {
    const v = await fn();
    assert.fail(`${name}: expected ${cls.name} (HTTP ${status}) but the call succeeded with ${short(v)}\n${describe(exchanges.slice(mark))}`);
  } catch (e) {
    err = e;
  }
  if (err?.code === "ERR_ASSERTION") throw err;
  const ctx = `\n${describe(exchanges.slice(mark))}`;
  assert.ok(err instanceof cls, `${name}: expected ${cls.name}, got ${err?.constructor?.name}: ${err?.message}${ctx}`);
  assert.equal(err.status, status, `${name}: HTTP status${ctx}`);
  if (code !== undefined) assert.equal(err.errorCode, code, `${name}: error code${ctx}`);
  if (message) assert.match(err.message, message, `${name}: message${ctx}`);
  return err;
}

function typeName(s) {
  return s?._def?.typeName;
}

/**
 * Keys in `value` that `schema` does not know (dotted paths, `[]` for array items). zod
 * drops unknown keys silently, so without this a simulator could invent fields that teeform
 * then relies on.
 */
export function unknownKeys(schema, value, path = "") {
  switch (typeName(schema)) {
    case "ZodEffects":
      return unknownKeys(schema._def.schema, value, path);
    case "ZodOptional":
    case "ZodNullable":
    case "ZodDefault":
      return value == null ? [] : unknownKeys(schema._def.innerType, value, path);
    case "ZodArray":
      return Array.isArray(value) ? value.flatMap((v) => unknownKeys(schema._def.type, v, `${path}[]`)) : [];
    case "ZodRecord":
      return value && typeof value === "object"
        ? Object.values(value).flatMap((v) => unknownKeys(schema._def.valueType, v, `${path}{}`)) : [];
    case "ZodObject": {
      if (!value || typeof value !== "object") return [];
      const shape = schema.shape;
      return Object.keys(value).flatMap((k) => {
        const p = path ? `${path}.${k}` : k;
        return k in shape ? unknownKeys(shape[k], value[k], p) : [p];
      });
    }
    case "ZodUnion":
    case "ZodDiscriminatedUnion": {
      const options = [...schema._def.options];
      const fitting = options.filter((o) => o.safeParse(value).success);
      const results = (fitting.length ? fitting : options).map((o) => unknownKeys(o, value, path));
      return results.sort((a, b) => a.length - b.length)[0] ?? [];
    }
    default:
      return [];
  }
}

/**
 * Fails when `value` has keys the SDK's schema does not model, except those in `allowed`
 * (each documented where it is passed: why the simulator sends it anyway).
 */
export function expectKnownKeys(name, schema, value, allowed = []) {
  const extra = [...new Set(unknownKeys(schema, value))].filter((k) => !allowed.includes(k));
  assert.deepEqual(extra, [], `${name}: fields the SDK's schema does not know: ${extra.join(", ")}\nvalue: ${short(value)}`);
}

/** Checks the last raw response against `schema` for unknown keys. */
export function expectKnownResponseKeys(name, schema, allowed = []) {
  expectKnownKeys(`${name} (response)`, schema, lastBody(), allowed);
}
