"""Compose hashes and env encryption, teeform (its hidden `debug` commands) against
`dstack-sdk` 0.5.4 for Python, byte for byte.

teeform hashes app compose as `@phala/dstack-sdk` (JavaScript) does, which the platform and the
`phala` CLI use; the Node referee checks that byte for byte. The Python dstack-sdk writes some
app composes differently: each fixture either hashes the same, or is listed in `DIVERGES` with
the kind of difference, which is checked to be exactly that (so a fixed SDK shows up here).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from dstack_sdk import EnvVar, encrypt_env_vars_sync, get_compose_hash
from dstack_sdk.get_compose_hash import AppCompose, to_deterministic_json

from conftest import ROOT, TEEFORM

FIXTURES = ROOT / "tests/conformance/fixtures/compose"
VECTORS = json.loads((ROOT / "tests/fixtures/compose-hash-vectors.json").read_text())["vectors"]


def teeform(args: list[str], stdin: str) -> str:
    out = subprocess.run([TEEFORM, *args], input=stdin, capture_output=True, text=True, env={"NO_COLOR": "1"})
    assert out.returncode == 0, out.stderr
    return out.stdout


def without(v, drop):
    """`v` without the object keys `drop(key, value)` selects, at every level."""
    if isinstance(v, dict):
        return {k: without(x, drop) for k, x in v.items() if not drop(k, x)}
    if isinstance(v, list):
        return [without(x, drop) for x in v]
    return v


def same_numbers(a, b) -> bool:
    """Equal, numbers compared as JavaScript's doubles."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_numbers(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_numbers(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


# How the Python dstack-sdk writes these app composes unlike JSON.stringify (and so unlike the
# JavaScript SDK and teeform): name -> (why, check(teeform's canonical JSON, Python's)).
DIVERGES = {
    "03-key-order.json": (
        "AppCompose.to_dict skips attributes whose name starts with `_`, so a key `_under` is dropped",
        lambda t, p: without(json.loads(t), lambda k, _: k.startswith("_")) == json.loads(p),
    ),
    "04-unicode.json": (
        "keys sorted by code point, not by UTF-16 code unit (an astral key sorts after U+FF46)",
        lambda t, p: json.loads(t) == json.loads(p) and list(json.loads(t)) != list(json.loads(p)),
    ),
    "06-empty-strings.json": (
        "AppCompose.to_dict drops keys whose value is null",
        lambda t, p: without(json.loads(t), lambda _, x: x is None) == json.loads(p),
    ),
    "08-nested.json": (
        "no integer-like keys first (JavaScript objects list array-index keys first)",
        lambda t, p: json.loads(t) == json.loads(p) and t != p,
    ),
    "09-numbers.json": (
        "Python's number text (2.0, 1.5e-07, integers past 2^53 exactly) instead of JavaScript's",
        lambda t, p: same_numbers(json.loads(t), json.loads(p)) and t != p,
    ),
}


def cases():
    out = [(f.name, f.read_text()) for f in sorted(FIXTURES.glob("*.json"))]
    out += [(f"vector {v['name']}", json.dumps(v["input"])) for v in VECTORS]
    return out


@pytest.mark.parametrize("name,text", cases(), ids=[c[0] for c in cases()])
def test_compose_hash_matches_dstack_sdk(name, text):
    mine = json.loads(teeform(["debug", "compose-hash"], text))
    theirs = get_compose_hash(json.loads(text))
    if name not in DIVERGES:
        assert mine["compose_hash"] == theirs, f"{name}: teeform {mine['canonical_json']}"
        return
    why, check = DIVERGES[name]
    python_json = to_deterministic_json(AppCompose.from_dict(json.loads(text)))
    assert mine["compose_hash"] != theirs, f"{name}: the Python SDK no longer diverges ({why}): drop it from DIVERGES"
    assert check(mine["canonical_json"], python_json), f"{name}: not only {why}:\n  teeform {mine['canonical_json']}\n  python  {python_json}"


ENV = {
    "API_KEY": "sk-test-123",
    "EMPTY": "",
    "MULTI_LINE": "line1\nline2\r\n\tindented",
    "QUOTES": 'she said "hi" \\ back\\slash </script>',
    "UNICODE": "ünïcödé 日本語 😀 e\u0301",
    "CONTROL": "\u0001\u001f\u007f\u2028\u2029",
}


def keypair() -> tuple[X25519PrivateKey, str]:
    k = X25519PrivateKey.generate()
    return k, k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def decrypt(hex_blob: str, key: X25519PrivateKey) -> bytes:
    """The dstack layout: ephemeral public key (32) || IV (12) || AES-256-GCM ciphertext+tag."""
    blob = bytes.fromhex(hex_blob.removeprefix("0x"))
    shared = key.exchange(X25519PublicKey.from_public_bytes(blob[:32]))
    return AESGCM(shared).decrypt(blob[32:44], blob[44:], None)


def test_teeforms_encryption_is_what_json_stringify_writes_byte_for_byte():
    key, pub = keypair()
    enc = teeform(["debug", "encrypt-env", "--pubkey", pub], json.dumps(ENV)).strip()
    plain = decrypt(enc, key)
    # teeform sends keys sorted; JSON.stringify's bytes are Python's compact, non-ASCII-kept
    # json.dumps (both escape `"`, `\\` and C0 controls alike, and leave DEL and U+2028 raw).
    want = json.dumps({"env": [{"key": k, "value": ENV[k]} for k in sorted(ENV)]},
                      separators=(",", ":"), ensure_ascii=False).encode()
    assert plain == want
    assert len(bytes.fromhex(enc)) == 32 + 12 + len(plain) + 16


def test_the_python_sdk_encrypts_json_dumps_bytes():
    """dstack-sdk for Python writes `json.dumps` bytes (`", "` separators, `\\u` escapes),
    unlike JSON.stringify. That the simulator (teeform's decryption) reads them to the same
    values, escapes included, the create flow in test_sdk.py checks through the API."""
    key, pub = keypair()
    envs = [EnvVar(k, v) for k, v in ENV.items()]
    plain = decrypt(encrypt_env_vars_sync(envs, pub), key)
    assert plain == json.dumps({"env": [{"key": k, "value": v} for k, v in ENV.items()]}).encode()
    assert b"\\u00fc" in plain and b", " in plain, "Python's encoder, as documented in the report"
    assert json.loads(plain)["env"] == [{"key": k, "value": v} for k, v in ENV.items()]
