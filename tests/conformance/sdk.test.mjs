// The official TypeScript SDK (@phala/cloud 0.2.9) against the simulator: every SDK function
// for an endpoint teeform uses must accept the simulator's answers (its zod schemas are the
// referee), and errors must come out as the SDK's error classes.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as phala from "@phala/cloud";
import { encryptEnvVars } from "@phala/dstack-sdk/encrypt-env-vars";
import { getComposeHash } from "@phala/dstack-sdk/get-compose-hash";
import { verifyEnvEncryptPublicKeyLegacy } from "@phala/dstack-sdk/verify-env-encrypt-public-key";
import { API_KEY, startSim } from "./lib/sim.mjs";
import { expectKnownKeys, expectKnownResponseKeys, lastBody, sdk, sdkError } from "./lib/check.mjs";

const { AuthError, BusinessError, ResourceError, ValidationError, createClient } = phala;

// The SDK falls back to these; the tests must not pick up a developer's real account.
delete process.env.PHALA_CLOUD_API_KEY;
delete process.env.PHALA_CLOUD_API_PREFIX;

const sim = await startSim();
const client = createClient({ apiKey: API_KEY, baseURL: sim.prefix });
const legacy = client.withVersion("2025-10-28"); // what `phala deploy` speaks
const HEX40 = /^[0-9a-f]{40}$/;
const HEX64 = /^[0-9a-f]{64}$/;

const COMPOSE = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"80:80\"\n";
const SCRIPT = "#!/bin/sh\necho pre-launch\n";
// DB_URL's value holds what a JSON encoder escapes (quotes, backslashes, newlines, tabs, control
// characters) and non-ASCII text: the simulator must decrypt whatever the SDK encrypts.
const ENV = [
  { key: "API_KEY", value: "sk-test-123" },
  { key: "DB_URL", value: "postgres://u:p@db:5432/x?q=\"a\\b\"\n-----BEGIN KEY-----\r\n\tü 日本 😀\u0001\u007f\u00a0\u200b\ufeff" },
];
const envObject = (env) => Object.fromEntries(env.map(({ key, value }) => [key, value]));

// Keys the simulator sends that @phala/cloud 0.2.9 does not model, and why they stay.
const ALLOWED_EXTRA = {
  legacyDetail: [],
  // `kms_contract_id` replaces the deprecated `kms_id` in newer SDKs (phala-cloud 0.2.0's
  // ProvisionCvmResponse models both); `token` is the same-path create's one-time commit token.
  provision: ["kms_contract_id", "token"],
  // `compose_unchanged`: the compose is the CVM's own (phala-cloud PR #468); passthrough here.
  composePrepared: ["compose_unchanged"],
  // A structured error's fields at the top level, beside `detail`: where phala-cloud 0.2.0 reads
  // them (0.2.9 reads `detail`, and falls back to the top level only when it is absent).
  errorBody: ["error_code", "message", "details", "suggestions", "links", "request_id"],
  // An app compose is checked against @phala/cloud's LooseAppComposeSchema (passthrough) plus
  // the fields of @phala/dstack-sdk 0.5.8's `AppCompose` type (get-compose-hash.d.ts).
  // The KMS's secp256k1 signing key (dstack's `GetMeta` name; phala-cloud 0.2.0 models it on
  // the 2026-06-23 KMS contract as a "verification anchor"): teeform checks the signature on
  // env-encryption keys against it. UNVERIFIED on the 2026-01-21 KmsInfo (a passthrough schema).
  kms: ["k256_pubkey"],
  kmsList: ["items[].k256_pubkey"],
  appCompose: ["runner", "docker_config", "public_tcbinfo", "gateway_enabled", "local_key_provider_enabled",
    "key_provider", "key_provider_id", "no_instance_id", "secure_time", "bash_script"],
};

/** The one CVM most tests work on; filled by the create test. */
const cvm = {};

async function createCvm(name, { env = ENV, kms = "PHALA", appId } = {}) {
  const prov = await sdk("provisionCvm", () => phala.provisionCvm(client, {
    name,
    instance_type: "tdx.small",
    compose_file: {
      docker_compose_file: COMPOSE,
      pre_launch_script: SCRIPT,
      allowed_envs: env.map((e) => e.key),
      public_logs: true,
      public_sysinfo: false,
      gateway_enabled: true,
      kms_enabled: true,
    },
    kms,
    env_keys: env.map((e) => e.key),
  }));
  expectKnownResponseKeys("provisionCvm", phala.ProvisionCvmSchema, ALLOWED_EXTRA.provision);
  const app_id = prov.app_id ?? appId;
  const pubkey = prov.app_env_encrypt_pubkey
    ?? (await sdk("getAppEnvEncryptPubKey", () => phala.getAppEnvEncryptPubKey(client, { kms: prov.kms_id, app_id }))).public_key;
  const encrypted_env = await encryptEnvVars(env, pubkey);
  const vm = await sdk("commitCvmProvision", () => phala.commitCvmProvision(client, {
    app_id, compose_hash: prov.compose_hash, encrypted_env, env_keys: env.map((e) => e.key), kms_id: prov.kms_id,
  }));
  expectKnownResponseKeys("commitCvmProvision", phala.CommitCvmProvisionSchema);
  return { prov, vm, pubkey };
}

test("account, nodes, instance types, KMS and OS image catalogues parse", async () => {
  await sdk("getCurrentUser", () => phala.getCurrentUser(client));
  expectKnownResponseKeys("getCurrentUser", phala.CurrentUserV20260121Schema);
  await sdk("getCurrentUser (2025-10-28)", () => phala.getCurrentUser(legacy));
  expectKnownResponseKeys("getCurrentUser (2025-10-28)", phala.CurrentUserV20251028Schema);

  const nodes = await sdk("getAvailableNodes", () => phala.getAvailableNodes(client));
  expectKnownResponseKeys("getAvailableNodes", phala.AvailableNodesSchema);
  assert.ok(nodes.nodes.length > 0, "getAvailableNodes: no nodes");

  const fams = await sdk("listAllInstanceTypeFamilies", () => phala.listAllInstanceTypeFamilies(client));
  expectKnownResponseKeys("listAllInstanceTypeFamilies", phala.AllFamiliesResponseSchema);
  const family = fams.result[0].name;
  const one = await sdk("listFamilyInstanceTypes", () => phala.listFamilyInstanceTypes(client, { family }));
  assert.deepEqual(one.items.map((i) => i.id), fams.result[0].items.map((i) => i.id));
  await sdkError("listFamilyInstanceTypes (unknown family)", () => phala.listFamilyInstanceTypes(client, { family: "nope" }),
    { cls: ResourceError, status: 404, code: "ERR-02-001" });

  const kms = await sdk("getKmsList", () => phala.getKmsList(client));
  expectKnownResponseKeys("getKmsList", phala.GetKmsListSchema, ALLOWED_EXTRA.kmsList);
  const k = kms.items[0];
  const info = await sdk("getKmsInfo", () => phala.getKmsInfo(client, { kms_id: k.id }));
  expectKnownResponseKeys("getKmsInfo", phala.KmsInfoSchema, ALLOWED_EXTRA.kms);
  // The env-encryption key is signed by that key, as the official verifier reads it.
  const app_id = "ab".repeat(20);
  const signed = await sdk("getAppEnvEncryptPubKey", () => phala.getAppEnvEncryptPubKey(client, { kms: k.id, app_id }));
  const signer = verifyEnvEncryptPublicKeyLegacy(Buffer.from(signed.public_key, "hex"),
    Buffer.from(signed.signature.replace(/^0x/, ""), "hex"), app_id);
  assert.equal(signer, info.k256_pubkey, "the KMS key's signature recovers the KMS info's k256_pubkey");
  assert.equal(info.id, k.id);
  assert.equal((await sdk("getKmsInfo (slug)", () => phala.getKmsInfo(client, { kms_id: k.slug }))).id, k.id);
  await sdkError("getKmsInfo (unknown)", () => phala.getKmsInfo(client, { kms_id: "no-such-kms" }),
    { cls: ResourceError, status: 404, code: "ERR-02-011" });

  const imgs = await sdk("getOsImages", () => phala.getOsImages(client, { page: 1, page_size: 50 }));
  expectKnownResponseKeys("getOsImages", phala.GetOsImagesResponseSchema);
  assert.ok(imgs.items.some((i) => i.is_dev) && imgs.items.some((i) => !i.is_dev), "getOsImages: prod and dev images");
  const dev = await sdk("getOsImages (is_dev)", () => phala.getOsImages(client, { is_dev: true }));
  assert.ok(dev.items.length > 0 && dev.items.every((i) => i.is_dev), "getOsImages: is_dev filters");
  const p2 = await sdk("getOsImages (page 2)", () => phala.getOsImages(client, { page: 2, page_size: 1 }));
  assert.deepEqual([p2.items.length, p2.page, p2.pages], [1, 2, imgs.total], "getOsImages: pages");
  assert.equal(p2.items[0].name, imgs.items[1].name);
  const onchain = await sdk("getKmsList (is_onchain)", () => phala.getKmsList(client, { is_onchain: true }));
  assert.deepEqual(onchain.items, [], "getKmsList: no on-chain KMS without a chain");
});

test("create: provisionCvm + commitCvmProvision with SDK-encrypted env", async () => {
  const { prov, vm, pubkey } = await createCvm("conf-web-1");
  assert.match(prov.app_id, HEX40, "provisionCvm: app_id");
  assert.match(prov.compose_hash, HEX64, "provisionCvm: compose_hash");
  assert.match(pubkey, HEX64, "provisionCvm: app_env_encrypt_pubkey");
  assert.equal(typeof prov.node_id, "number", "provisionCvm: teepod_id (the SDK renames it node_id)");
  assert.equal(vm.app_id, prov.app_id);
  assert.equal(vm.name, "conf-web-1");
  Object.assign(cvm, { appId: prov.app_id, uuid: vm.vm_uuid, instanceId: vm.instance_id, hash: prov.compose_hash, pubkey, kmsId: prov.kms_id });

  // The simulator's test KMS decrypts what the SDK encrypted.
  const seen = await sim.env(vm.vm_uuid);
  assert.deepEqual(seen.env, envObject(ENV), "env encrypted by @phala/dstack-sdk, decrypted by the simulator");
  assert.deepEqual(seen.allowed_envs, ENV.map((e) => e.key));

  const pk = await sdk("getAppEnvEncryptPubKey", () => phala.getAppEnvEncryptPubKey(client, { kms: prov.kms_id, app_id: prov.app_id }));
  assert.equal(pk.public_key, pubkey, "the KMS pubkey endpoint and provision agree");
  await sdkError("provisionCvm (duplicate name)", () => phala.provisionCvm(client, {
    name: "conf-web-1", compose_file: { docker_compose_file: COMPOSE },
  }), { cls: ResourceError, status: 409, code: "ERR-01-004" });
  await sdkError("provisionCvm (invalid YAML)", () => phala.provisionCvm(client, {
    name: "conf-bad-yaml", compose_file: { docker_compose_file: "services: [unclosed" },
  }), { cls: ResourceError, status: 400, code: "ERR-01-003" });
  await sdkError("commitCvmProvision (unknown hash)", () => phala.commitCvmProvision(client, {
    app_id: "ab".repeat(20), compose_hash: "0".repeat(64),
  }), { cls: ResourceError, status: 400, code: "ERR-01-006" });
  // A commit is idempotent for its app id and hash; another hash for an app in use is 409.
  const again = await sdk("commitCvmProvision (again)", () => phala.commitCvmProvision(client, {
    app_id: prov.app_id, compose_hash: prov.compose_hash,
  }));
  assert.equal(again.vm_uuid, vm.vm_uuid, "the same commit again answers the same CVM");
  await sdkError("commitCvmProvision (another hash)", () => phala.commitCvmProvision(client, {
    app_id: prov.app_id, compose_hash: "0".repeat(64),
  }), { cls: ResourceError, status: 409, code: "ERR-03-007" });
  await sim.settle();
});

test("read: getCvmList and getCvmInfo (both API versions, every id form)", async () => {
  const list = await sdk("getCvmList", () => phala.getCvmList(client, { page: 1, page_size: 10 }));
  expectKnownResponseKeys("getCvmList", phala.PaginatedCvmInfosV20260121Schema);
  const item = list.items.find((i) => i.app_id === cvm.appId);
  assert.ok(item, "getCvmList: the new CVM is listed");
  assert.equal(list.page, 1);
  assert.equal(list.page_size, 10);
  cvm.id = item.id;

  const old = await sdk("getCvmList (2025-10-28)", () => phala.getCvmList(legacy, { page: 1, page_size: 10 }));
  expectKnownResponseKeys("getCvmList (2025-10-28)", phala.PaginatedCvmInfosV20251028Schema);
  assert.equal(old.items.find((i) => i.hosted.app_id === cvm.appId)?.name, "conf-web-1", "getCvmList (2025-10-28): hosted.app_id");

  for (const [form, req] of [
    ["id", { id: cvm.id }], ["uuid", { uuid: cvm.uuid }], ["app_id", { app_id: cvm.appId }],
    ["name", { name: "conf-web-1" }], ["instance_<id>", { id: `instance_${cvm.instanceId}` }],
  ]) {
    const d = await sdk(`getCvmInfo by ${form}`, () => phala.getCvmInfo(client, req));
    expectKnownResponseKeys(`getCvmInfo by ${form}`, phala.CvmInfoDetailV20260121Schema);
    assert.equal(d.app_id, cvm.appId, `getCvmInfo by ${form}: app_id`);
  }
  const d = await phala.getCvmInfo(client, { id: cvm.id });
  assert.equal(d.compose_hash, cvm.hash, "getCvmInfo: compose_hash is the provisioned one");
  assert.equal(getComposeHash(d.compose_file), d.compose_hash, "getCvmInfo: compose_hash = dstack-sdk getComposeHash(compose_file)");
  assert.equal(d.kms_info?.encrypted_env_pubkey, cvm.pubkey, "getCvmInfo: kms_info.encrypted_env_pubkey");
  assert.equal(d.kms_type, "phala");
  assert.equal(d.resource.vcpu, 1);
  assert.equal(d.resource.memory_in_gb, 2);
  assert.equal(d.public_sysinfo, false);

  const v = await sdk("getCvmInfo (2025-10-28)", () => phala.getCvmInfo(legacy, { app_id: cvm.appId }));
  expectKnownResponseKeys("getCvmInfo (2025-10-28)", phala.CvmDetailV20251028Schema, ALLOWED_EXTRA.legacyDetail);
  assert.equal(v.encrypted_env_pubkey, cvm.pubkey, "getCvmInfo (2025-10-28): encrypted_env_pubkey");
  assert.equal(v.memory, 2048);

  const cf = await sdk("getCvmComposeFile", () => phala.getCvmComposeFile(client, { app_id: cvm.appId }));
  expectKnownResponseKeys("getCvmComposeFile", phala.LooseAppComposeSchema, ALLOWED_EXTRA.appCompose);
  assert.equal(getComposeHash(lastBody()), cvm.hash, "getCvmComposeFile: dstack-sdk hash of the app compose = compose_hash");
  assert.equal(cf.pre_launch_script, SCRIPT);
  assert.deepEqual(cf.allowed_envs, ["API_KEY", "DB_URL"]);
  assert.equal(await sdk("getCvmDockerCompose", () => phala.getCvmDockerCompose(client, { id: cvm.id })), COMPOSE);
  assert.equal(await sdk("getCvmPreLaunchScript", () => phala.getCvmPreLaunchScript(client, { id: cvm.id })), SCRIPT);

  const st = await sdk("getCvmState", () => phala.getCvmState(client, { id: cvm.id }));
  expectKnownResponseKeys("getCvmState", phala.CvmStateSchema);
  assert.equal(st.status, "running");
  const batch = await sdk("getCvmStatusBatch", () => phala.getCvmStatusBatch(client, { vmUuids: [cvm.uuid] }));
  expectKnownResponseKeys("getCvmStatusBatch", phala.GetCvmStatusBatchResponseSchema);
  assert.equal(batch[cvm.uuid]?.status, "running", "getCvmStatusBatch: keyed by the vm_uuid asked for");
  assert.equal(batch[cvm.uuid].in_progress, false);

  await sdkError("getCvmInfo (unknown)", () => phala.getCvmInfo(client, { name: "no-such-cvm" }),
    { cls: ResourceError, status: 404, code: "ERR-03-001", message: /CVM not found/ });
});

test("read: list pages as asked, list items are details without the app compose, status batches", async () => {
  // Two more CVMs: three in all, listed two a page.
  const more = [];
  for (const name of ["conf-page-2", "conf-page-3"]) more.push((await createCvm(name)).vm);
  await sim.settle();
  const all = [cvm.uuid, ...more.map((vm) => vm.vm_uuid)];
  const pages = [];
  for (const page of [1, 2, 3]) {
    pages.push(await sdk(`getCvmList (page ${page} of 2)`, () => phala.getCvmList(client, { page, page_size: 2 })));
    expectKnownResponseKeys(`getCvmList (page ${page})`, phala.PaginatedCvmInfosV20260121Schema);
    // teeform reads each item as the detail without `compose_file`: the simulator keeps them
    // the same, field by field.
    for (const item of lastBody().items) {
      const detail = await phala.getCvmInfo(client, { uuid: item.vm_uuid });
      const { compose_file: _, ...rest } = lastBody();
      assert.ok(detail.compose_file, "the detail has the app compose");
      assert.deepEqual(item, rest, `list item vs detail of ${item.name}`);
    }
  }
  assert.deepEqual(pages.map((p) => [p.page, p.page_size, p.total, p.pages, p.items.length]),
    [[1, 2, 3, 2, 2], [2, 2, 3, 2, 1], [3, 2, 3, 2, 0]], "page, page_size, total, pages, items");
  assert.deepEqual(pages.flatMap((p) => p.items.map((i) => i.vm_uuid)).sort(), [...all].sort(), "each CVM on one page");

  // Every uuid asked about that exists, keyed as asked; unknown ones left out.
  const unknown = "00000000000000000000000000000000";
  const batch = await sdk("getCvmStatusBatch (three and an unknown)", () =>
    phala.getCvmStatusBatch(client, { vmUuids: [...all, unknown] }));
  expectKnownResponseKeys("getCvmStatusBatch", phala.GetCvmStatusBatchResponseSchema);
  assert.deepEqual(Object.keys(batch).sort(), [...all].sort());
  for (const u of all) assert.deepEqual([batch[u].vm_uuid, batch[u].status, batch[u].in_progress], [u, "running", false]);
  // A restart shows as an operation in progress until it is over.
  await phala.restartCvm(client, { uuid: more[0].vm_uuid, force: false });
  const busy = (await phala.getCvmStatusBatch(client, { vmUuids: [more[0].vm_uuid] }))[more[0].vm_uuid];
  assert.equal(busy.in_progress, true, JSON.stringify(busy));
  await sim.settle();
  // UNVERIFIED limit: the simulator takes at most 100 uuids a request, what the phala CLI sends.
  await sdkError("getCvmStatusBatch (101 uuids)", () =>
    phala.getCvmStatusBatch(client, { vmUuids: Array.from({ length: 101 }, (_, i) => `${i}`.padStart(32, "0")) }),
  { cls: ValidationError, status: 422 });

  for (const vm of more) await phala.deleteCvm(client, { uuid: vm.vm_uuid });
});

test("update: patchCvm (many fields, one restart), bad values, nothing pending", async () => {
  const env2 = [{ key: "API_KEY", value: "rotated-456" }, { key: "NEW_ONE", value: "ünïcode ✓" }];
  const compose2 = COMPOSE.replace("1.27", "1.28");
  const before = (await sim.stats()).cvms["conf-web-1"].restarts;
  const r = await sdk("patchCvm", () => phala.patchCvm(client, {
    id: cvm.id,
    docker_compose_file: compose2,
    allowed_envs: env2.map((e) => e.key),
    vcpu: 2,
    memory: 4096,
    public_logs: false,
  }));
  assert.equal(r.requiresOnChainHash, false);
  assert.match(r.correlationId, /\S/, "patchCvm: correlation_id");
  await sim.settle();
  assert.equal((await sim.stats()).cvms["conf-web-1"].restarts, before + 1, "one PATCH, one restart");

  const enc = await encryptEnvVars(env2, cvm.pubkey);
  await sdk("patchCvm (env only)", () => phala.patchCvm(client, { id: cvm.id, encrypted_env: enc }));
  await sim.settle();
  assert.deepEqual((await sim.env(cvm.uuid)).env, envObject(env2), "patchCvm: SDK-encrypted env decrypts in the simulator");

  const d = await phala.getCvmInfo(client, { id: cvm.id });
  assert.equal(d.resource.vcpu, 2);
  assert.equal(d.resource.memory_in_gb, 4);
  assert.equal(d.public_logs, false);
  assert.deepEqual(d.compose_file.allowed_envs, ["API_KEY", "NEW_ONE"]);
  assert.equal(getComposeHash(d.compose_file), d.compose_hash, "after patchCvm: compose_hash = getComposeHash(compose_file)");
  cvm.hash = d.compose_hash;

  const err = await sdkError("patchCvm (negative vcpu)", () => phala.patchCvm(client, { id: cvm.id, vcpu: -1 }),
    { cls: ValidationError, status: 422 });
  assert.deepEqual(err.validationErrors.map((e) => e.field), ["vcpu"], "ValidationError names the field");
  await sdkError("confirmCvmPatch (nothing pending)", () => phala.confirmCvmPatch(client, {
    id: cvm.id, composeHash: "ab".repeat(32), transactionHash: `0x${"cd".repeat(32)}`,
  }), { cls: BusinessError, status: 466 });
  await sdkError("commitCvmUpdate (unknown token)", () => phala.commitCvmUpdate(client, {
    id: cvm.id, token: "nope", composeHash: "ab".repeat(32), transactionHash: "already-registered",
  }), { cls: BusinessError, status: 466 });
});

test("conflict: an update while the CVM restarts is a 409 the SDK calls a conflict", async () => {
  // A long restart on a throwaway CVM, so the second update surely lands while it runs.
  const { vm } = await createCvm("conf-busy-1", { env: [] });
  await sim.settle();
  await sim.config({ restart_ms: 60000 });
  try {
    await sdk("patchCvm", () => phala.patchCvm(client, { uuid: vm.vm_uuid, vcpu: 2 }));
    const err = await sdkError("patchCvm (while restarting)", () => phala.patchCvm(client, { uuid: vm.vm_uuid, vcpu: 4 }),
      { cls: BusinessError, status: 409 });
    assert.ok(phala.isConflictError(err), "isConflictError");
  } finally {
    await sim.config({ restart_ms: 300 });
    await phala.deleteCvm(client, { uuid: vm.vm_uuid });
  }
});

test("update: envs, docker-compose and pre-launch-script endpoints", async () => {
  const env3 = [{ key: "API_KEY", value: "three \"quoted\" \\ back\\slash\nnew line\ttab é" }];
  const enc = await encryptEnvVars(env3, cvm.pubkey);
  const r = await sdk("updateCvmEnvs", () => phala.updateCvmEnvs(client, {
    id: cvm.id, encrypted_env: enc, env_keys: env3.map((e) => e.key),
  }));
  assert.equal(r.status, "in_progress");
  assert.equal(typeof r.allowed_envs_changed, "boolean");
  await sim.settle();
  assert.deepEqual((await sim.env(cvm.uuid)).env, envObject(env3), "updateCvmEnvs: env decrypts in the simulator");

  const dc = await sdk("updateDockerCompose", () => phala.updateDockerCompose(client, {
    id: cvm.id, docker_compose_file: COMPOSE.replace("1.27", "1.29"),
  }));
  assert.equal(dc.status, "in_progress");
  await sim.settle();
  assert.equal(await phala.getCvmDockerCompose(client, { id: cvm.id }), COMPOSE.replace("1.27", "1.29"));

  const pl = await sdk("updatePreLaunchScript", () => phala.updatePreLaunchScript(client, { id: cvm.id, pre_launch_script: "#!/bin/sh\necho two\n" }));
  assert.equal(pl.status, "in_progress");
  await sim.settle();
  assert.equal(await phala.getCvmPreLaunchScript(client, { id: cvm.id }), "#!/bin/sh\necho two\n");
  const d = await phala.getCvmInfo(client, { id: cvm.id });
  assert.equal(getComposeHash(d.compose_file), d.compose_hash);
});

test("update: compose_file provision + commit (legacy two-step)", async () => {
  const current = await phala.getCvmComposeFile(client, { app_id: cvm.appId });
  const raw = JSON.parse(JSON.stringify(lastBody()));
  const next = { ...raw, docker_compose_file: COMPOSE.replace("1.27", "1.30"), allowed_envs: ["API_KEY", "DB_URL"] };
  assert.ok(current.getHash, "getCvmComposeFile adds getHash");
  const prov = await sdk("provisionCvmComposeFileUpdate", () => phala.provisionCvmComposeFileUpdate(client, {
    app_id: cvm.appId, app_compose: next,
  }));
  expectKnownResponseKeys("provisionCvmComposeFileUpdate", phala.ProvisionCvmComposeFileUpdateResultSchema, ALLOWED_EXTRA.composePrepared);
  assert.equal(prov.compose_hash, getComposeHash(next), "provisionCvmComposeFileUpdate: hash = dstack-sdk getComposeHash(new app compose)");
  assert.equal(prov.app_id, cvm.appId);
  assert.equal(prov.compose_hash_registered, false);
  const enc = await encryptEnvVars(ENV, cvm.pubkey);
  const out = await sdk("commitCvmComposeFileUpdate", () => phala.commitCvmComposeFileUpdate(client, {
    app_id: cvm.appId, compose_hash: prov.compose_hash, encrypted_env: enc, env_keys: ENV.map((e) => e.key),
  }));
  assert.equal(out, undefined);
  await sim.settle();
  const d = await phala.getCvmInfo(client, { id: cvm.id });
  assert.equal(d.compose_hash, prov.compose_hash, "after commitCvmComposeFileUpdate: compose_hash");
  assert.deepEqual((await sim.env(cvm.uuid)).env, envObject(ENV));
  cvm.hash = d.compose_hash;
});

test("update: resources, visibility, OS image", async () => {
  assert.equal(await sdk("updateCvmResources", () => phala.updateCvmResources(client, {
    id: cvm.id, vcpu: 4, memory: 8192, disk_size: 40, allow_restart: true,
  })), undefined);
  await sim.settle();
  let d = await phala.getCvmInfo(client, { id: cvm.id });
  assert.deepEqual([d.resource.vcpu, d.resource.memory_in_gb, d.resource.disk_in_gb], [4, 8, 40]);
  assert.equal(d.resource.instance_type, "tdx.large", "4 vCPU / 8 GB is tdx.large");

  const vis = await sdk("updateCvmVisibility", () => phala.updateCvmVisibility(client, {
    id: cvm.id, public_sysinfo: true, public_logs: true, public_tcbinfo: true,
  }));
  expectKnownResponseKeys("updateCvmVisibility", phala.CvmDetailV20251028Schema, ALLOWED_EXTRA.legacyDetail);
  assert.equal(vis.public_sysinfo, true);
  await sim.settle();
  d = await phala.getCvmInfo(client, { id: cvm.id });
  assert.equal(d.public_tcbinfo, true);

  const imgs = await sdk("getAvailableOsImages", () => phala.getAvailableOsImages(client, { id: cvm.id }));
  // `slug`: required by the API's own OpenAPI (seed 000, OSImageVariant), newer than SDK 0.2.9.
  expectKnownResponseKeys("getAvailableOsImages", phala.GetAvailableOSImagesResponseSchema, ["[].prod.slug", "[].dev.slug"]);
  const current = imgs.flatMap((v) => [v.prod, v.dev]).find((x) => x?.is_current);
  assert.equal(current?.name, d.os.name, "getAvailableOsImages: is_current marks the CVM's image");
  const other = imgs.map((v) => v.prod).find((x) => x && !x.is_current);
  assert.equal(await sdk("updateOsImage", () => phala.updateOsImage(client, { id: cvm.id, os_image_name: other.name })), undefined);
  await sim.settle();
  d = await phala.getCvmInfo(client, { id: cvm.id });
  assert.equal(d.os.name, other.name, "updateOsImage: the CVM runs the new image");
});

test("attestation: getCvmAttestation parses the event log and an app certificate carrying a quote", async () => {
  await sim.settle();
  // The knob serves dcap-qvl's sample TDX quote in app_certificates[0].quote (hex), where
  // teeform reads it; the SDK's schema is the referee of the certificate's shape.
  await sim.config({ sample_quote: ["conf-web-1"] });
  const a = await sdk("getCvmAttestation", () => phala.getCvmAttestation(client, { id: cvm.id }));
  expectKnownResponseKeys("getCvmAttestation", phala.CvmAttestationSchema);
  await sim.config({ sample_quote: [] });
  assert.equal(a.is_online, true);
  assert.equal(a.app_certificates.length, 1);
  assert.match(a.app_certificates[0].quote, /^[0-9a-f]+$/, "the quote as hex");
  assert.ok(a.tcb_info.event_log.some((e) => e.event === "compose-hash"), "the RTMR3 event log");
  assert.equal((await phala.getCvmAttestation(client, { id: cvm.id })).app_certificates, null, "no quote without the knob");
});

test("power: stop, start, restart, shutdown return the VM shape", async () => {
  for (const [name, fn, transient, final] of [
    ["stopCvm", () => phala.stopCvm(client, { id: cvm.id }), "stopping", "stopped"],
    ["startCvm", () => phala.startCvm(client, { id: cvm.id }), "starting", "running"],
    ["restartCvm", () => phala.restartCvm(client, { id: cvm.id, force: false }), "restarting", "running"],
    ["shutdownCvm", () => phala.shutdownCvm(client, { id: cvm.id }), "shutting_down", "stopped"],
  ]) {
    const vm = await sdk(name, fn);
    expectKnownResponseKeys(name, phala.VMSchema);
    assert.equal(vm.status, transient, `${name}: status right after the call`);
    assert.equal(vm.app_id, cvm.appId);
    await sim.settle();
    assert.equal((await phala.getCvmInfo(client, { id: cvm.id })).status, final, `${name}: status once done`);
  }
});

test("apps: getAppList, getAppInfo, getAppCvms (what `phala cvms list` reads)", async () => {
  for (const [label, c, listSchema] of [
    ["", client, phala.DstackAppListResponseV20260121Schema],
    [" (2025-10-28)", legacy, phala.DstackAppListResponseV20251028Schema],
  ]) {
    const apps = await sdk(`getAppList${label}`, () => phala.getAppList(c, { page: 1, page_size: 50 }));
    expectKnownResponseKeys(`getAppList${label}`, listSchema);
    const app = apps.dstack_apps.find((a) => a.app_id === cvm.appId);
    assert.ok(app, `getAppList${label}: the app is listed`);
    assert.equal(app.cvm_count, 1);
    assert.equal(app.current_cvm?.vm_uuid, cvm.uuid);
    const info = await sdk(`getAppInfo${label}`, () => phala.getAppInfo(c, { appId: cvm.appId }));
    expectKnownResponseKeys(`getAppInfo${label}`, c === legacy ? phala.DstackAppWithCvmResponseV20251028Schema : phala.DstackAppWithCvmResponseV20260121Schema);
    assert.equal(info.name, "conf-web-1");
    const cvms = await sdk(`getAppCvms${label}`, () => phala.getAppCvms(c, { appId: cvm.appId }));
    expectKnownResponseKeys(`getAppCvms${label}`, c === legacy ? phala.CvmInfoV20251028Schema.array() : phala.CvmInfoV20260121Schema.array());
    assert.equal(cvms.length, 1);
  }
  await sdkError("getAppInfo (unknown)", () => phala.getAppInfo(client, { appId: "f".repeat(40) }),
    { cls: BusinessError, status: 404 });
});

test("replicas: replicateCvm adds an instance of the app, getAppCvms lists both (what teeform's replicas use)", async () => {
  const vm = await sdk("replicateCvm", () => phala.replicateCvm(client, { id: cvm.id, node_id: 2 }));
  expectKnownResponseKeys("replicateCvm", phala.VMSchema);
  assert.equal(vm.app_id, cvm.appId, "replicateCvm: the same app");
  assert.notEqual(vm.vm_uuid, cvm.uuid, "replicateCvm: its own vm_uuid");
  assert.equal(vm.teepod_id, 2, "replicateCvm: on the node asked for");
  await sim.settle();
  const cvms = await sdk("getAppCvms (two instances)", () => phala.getAppCvms(client, { appId: cvm.appId }));
  expectKnownResponseKeys("getAppCvms (two instances)", phala.CvmInfoV20260121Schema.array());
  assert.deepEqual(cvms.map((x) => x.vm_uuid).sort(), [cvm.uuid, vm.vm_uuid].sort());
  await sdkError("replicateCvm (unknown node)", () => phala.replicateCvm(client, { id: cvm.id, node_id: 99 }),
    { cls: BusinessError, status: 400 });
  await phala.deleteCvm(client, { uuid: vm.vm_uuid });
});

test("auth: a missing or wrong API key is an AuthError", async () => {
  await sdkError("getCvmList (wrong key)", () => phala.getCvmList(createClient({ apiKey: "wrong", baseURL: sim.prefix })),
    { cls: AuthError, status: 401 });
  await sdkError("getCvmList (no key)", () => phala.getCvmList(createClient({ baseURL: sim.prefix })),
    { cls: AuthError, status: 401 });
  await sdkError("getAppEnvEncryptPubKey (app id not hex)", () => phala.getAppEnvEncryptPubKey(client, { kms: cvm.kmsId, app_id: "z".repeat(40) }),
    { cls: ValidationError, status: 422 });
});

test("on-chain KMS: 465 answers parse as the SDK's hash-required results", async () => {
  // A second simulator with an on-chain KMS. Its chain is a stand-in JSON-RPC endpoint whose
  // contracts allow every hash: this test is about the SDK's shapes; the on-chain flow itself
  // runs against a real anvil node in tests/it/chain.rs.
  const rpc = await allowAllChain();
  const chain = await startSim(["--chain-rpc", rpc.url, "--kms-contract", `0x${"11".repeat(20)}`, "--chain-id", "8453"]);
  const c = createClient({ apiKey: API_KEY, baseURL: chain.prefix });
  const prov = await sdk("provisionCvm (BASE)", () => phala.provisionCvm(c, {
    name: "conf-onchain", compose_file: { docker_compose_file: COMPOSE, allowed_envs: ["A"] }, kms: "BASE",
  }));
  assert.equal(prov.app_id ?? null, null, "provisionCvm (BASE): no app_id until the app contract exists");
  assert.equal(prov.kms_info?.chain_id, 8453);
  assert.equal(prov.kms_info?.chain?.id, 8453, "the SDK maps chain_id 8453 to viem's base chain");
  const appId = "22".repeat(20); // stands for the DstackApp contract a real client deploys
  const pk = await sdk("getAppEnvEncryptPubKey (BASE)", () => phala.getAppEnvEncryptPubKey(c, { kms: prov.kms_id, app_id: `0x${appId}` }));
  expectKnownResponseKeys("getAppEnvEncryptPubKey", phala.GetAppEnvEncryptPubKeySchema);
  const encrypted_env = await encryptEnvVars([{ key: "A", value: "1" }], pk.public_key);
  await sdk("commitCvmProvision (BASE)", () => phala.commitCvmProvision(c, {
    app_id: appId, compose_hash: prov.compose_hash, kms_id: prov.kms_id, encrypted_env,
    contract_address: `0x${appId}`, deployer_address: `0x${"33".repeat(20)}`, env_keys: ["A"],
  }));
  await chain.settle();

  const d = await sdk("getCvmInfo (BASE)", () => phala.getCvmInfo(c, { app_id: appId }));
  assert.equal(d.kms_type, "base");
  assert.equal(d.kms_info?.chain_id, 8453);

  const r = await sdk("patchCvm (BASE, compose change)", () => phala.patchCvm(c, { app_id: appId, docker_compose_file: COMPOSE.replace("1.27", "1.28") }));
  assert.equal(r.requiresOnChainHash, true, "patchCvm: 465 means requiresOnChainHash");
  assert.match(r.composeHash, HEX64);
  assert.equal(r.appId, appId);
  assert.ok(r.commitToken && r.apiCommitUrl && r.onchainStatus, "patchCvm: commit token, URL and on-chain status");
  assert.equal(r.kmsInfo.chain?.id, 8453);

  const envs = await sdk("updateCvmEnvs (BASE, new key)", async () => phala.updateCvmEnvs(c, {
    app_id: appId, encrypted_env: await encryptEnvVars([{ key: "B", value: "2" }], pk.public_key), env_keys: ["B"],
  }));
  assert.equal(envs.status, "precondition_required");
  const prep = await sdk("patchCvm (BASE, prepareOnly)", () => phala.patchCvm(c, { app_id: appId, public_logs: false, prepareOnly: true }));
  assert.equal(prep.requiresOnChainHash, true, "prepareOnly: 465 with a commit token, nothing applied");
  assert.match(prep.commitToken ?? "", /\S/);
  assert.equal((await chain.stats()).cvms["conf-onchain"].updates, 0, "prepareOnly applies nothing");
  const dc = await sdk("updateDockerCompose (BASE)", () => phala.updateDockerCompose(c, { app_id: appId, docker_compose_file: COMPOSE.replace("1.27", "1.31") }));
  assert.equal(dc.status, "precondition_required");
  assert.equal(dc.compose_hash.length, 64);
  await chain.stop();
  rpc.server.close();
});

test("delete: deleteCvm, then the CVM is gone", async () => {
  assert.equal(await sdk("deleteCvm", () => phala.deleteCvm(client, { id: cvm.id })), undefined);
  await sdkError("getCvmInfo (deleted)", () => phala.getCvmInfo(client, { id: cvm.id }),
    { cls: ResourceError, status: 404, code: "ERR-03-001" });
  expectKnownKeys("the 404 body", phala.ApiErrorSchema, lastBody(), ALLOWED_EXTRA.errorBody);
});

/** A JSON-RPC endpoint answering `eth_call` with `true` (every hash allowed). */
async function allowAllChain() {
  const http = await import("node:http");
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      const call = JSON.parse(body || "{}");
      const result = call.method === "eth_call" ? `0x${"0".repeat(63)}1` : call.method === "eth_chainId" ? "0x2105" : null;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ jsonrpc: "2.0", id: call.id ?? 1, result }));
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}
