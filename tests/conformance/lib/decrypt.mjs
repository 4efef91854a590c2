// A reference decryptor for encrypted env vars, written from the published layout (node:crypto
// only, no teeform or SDK code): hex( ephemeral X25519 public key (32) || IV (12) ||
// AES-256-GCM ciphertext || tag (16) ), the AES key being the raw X25519 shared secret.
import crypto from "node:crypto";

const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");

/** Returns the plaintext bytes (the SDK writes `{"env":[{"key","value"}]}`). */
export function decryptEnvBytes(encryptedHex, recipientPrivateHex) {
  const blob = Buffer.from(encryptedHex.replace(/^0x/, ""), "hex");
  if (blob.length < 32 + 12 + 16) throw new Error(`encrypted env too short: ${blob.length} bytes`);
  const eph = blob.subarray(0, 32);
  const iv = blob.subarray(32, 44);
  const ct = blob.subarray(44, blob.length - 16);
  const tag = blob.subarray(blob.length - 16);
  const privateKey = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, Buffer.from(recipientPrivateHex, "hex")]), format: "der", type: "pkcs8" });
  const publicKey = crypto.createPublicKey({ key: Buffer.concat([SPKI_X25519, eph]), format: "der", type: "spki" });
  const shared = crypto.diffieHellman({ privateKey, publicKey });
  const decipher = crypto.createDecipheriv("aes-256-gcm", shared, iv);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(ct), decipher.final()]);
}

/** A fresh X25519 key pair as raw hex. */
export function newKeyPair() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("x25519");
  const priv = privateKey.export({ format: "der", type: "pkcs8" }).subarray(-32);
  const pub = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  return { privateHex: priv.toString("hex"), publicHex: pub.toString("hex") };
}
