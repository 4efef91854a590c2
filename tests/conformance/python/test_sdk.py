"""The official Python SDK (`phala-cloud` 0.2.0) against the simulator: every SDK function for
an endpoint the simulator serves, at the SDK's default API version (2026-06-23) and at the one
teeform pins (2026-01-21), the SDK's pydantic models as the judge. Where an SDK method returns
a loose model (`CloudModel` takes anything), the raw answer is also checked against the SDK's
most specific model for it (`judge`). Errors must come out as the SDK's error classes, with
their structured fields."""

from __future__ import annotations

import json

import pydantic
import pytest
from dstack_sdk import EnvVar, encrypt_env_vars_sync
from phala_cloud import (
    AuthError,
    BusinessError,
    ConflictError,
    PhalaCloud,
    ResourceError,
    error_codes,
)
from phala_cloud import ValidationError as SdkValidationError
from phala_cloud.action_responses import (
    AppEnvPubkeyResponse,
    CommitCvmProvisionResponseV20260121,
    CommitCvmProvisionResponseV20260522,
    CvmStateResponse,
    InstanceTypesFamilyResponse,
    ListWorkspacesResponse,
    ProvisionCvmResponse,
    WorkspaceResponse,
)
from phala_cloud.models.apps import (
    DstackAppFullResponseV20260121,
    DstackAppFullResponseV20260522,
    DstackAppListResponseV20260121,
    DstackAppListResponseV20260522,
)
from phala_cloud.models.cvms import CvmInfoDetailV20260121, CvmInfoDetailV20260522
from phala_cloud.models.kms import KmsInfo
from phala_cloud.models.os_images import GetOsImagesResponse

from conftest import Recorder, client

COMPOSE = 'services:\n  web:\n    image: nginx:1.27\n    ports:\n      - "80:80"\n'
SCRIPT = "#!/bin/sh\necho pre-launch\n"
# Values a JSON encoder must escape (quotes, backslashes, control characters, line and
# paragraph separators) and non-ASCII text, which the Python SDK writes as `\\u` escapes.
ENV = [
    EnvVar("API_KEY", "sk-test-123"),
    EnvVar("DB_URL", 'postgres://u:p@db/x?q="a\\b"\n-----BEGIN KEY-----\r\n\tü 日本 😀\x01\x7f\u2028\u00a0\ufeff'),
]

# SDK methods whose model for a version contradicts the SDK's own models of the same CVM
# (and `@phala/cloud` 0.2.9's): at 2026-01-21 `CvmInfoResponseV20260121.id` (what `GET
# /cvms/{id}` and `/state` are checked against) is an integer, while `CvmInfoV20260121.id`
# (the same CVM in a list, and in `@phala/cloud` 0.2.9: "hashed CvmId") is a string. The
# simulator follows the SDKs' CVM models: the referee asserts the rejection is that field
# alone and checks the answer against the consistent model.
KNOWN_SDK_DEFECTS = {
    ("get_cvm_info", "2026-01-21"): CvmInfoDetailV20260121,
    ("get_cvm_state", "2026-01-21"): CvmStateResponse,
}


def tag(version: str) -> str:
    return version.replace("-", "")


def sdk(rec: Recorder, name: str, fn, *args, **kwargs):
    """Runs one SDK function; a model rejecting the answer, or an unexpected HTTP error, fails
    with the function, the field and the exchange."""
    try:
        return fn(*args, **kwargs)
    except (SdkValidationError, pydantic.ValidationError) as e:
        pytest.fail(f"{name}: the SDK's models rejected the simulator's answer:\n{e}\n{rec.last()}")
    except BusinessError as e:  # and every other API error class below
        pytest.fail(f"{name}: HTTP {e.status_code} ({type(e).__name__}): {e}\n{rec.last()}")
    except Exception as e:  # noqa: BLE001 (the SDK's other errors, shown with the exchange)
        if hasattr(e, "status_code"):
            pytest.fail(f"{name}: HTTP {e.status_code} ({type(e).__name__}): {e}\n{rec.last()}")
        raise


def sdk_known(rec: Recorder, name: str, version: str, fn, *args):
    """An SDK call listed in KNOWN_SDK_DEFECTS for this version: the SDK rejects the answer on
    `id` alone, and the answer passes the SDK's consistent model. Other calls: `sdk`."""
    consistent = KNOWN_SDK_DEFECTS.get((name, version))
    if consistent is None:
        return sdk(rec, name, fn, *args)
    with pytest.raises(pydantic.ValidationError) as e:
        fn(*args)
    fields = [(err["loc"], err["type"]) for err in e.value.errors()]
    assert fields == [(("id",), "int_parsing")], f"{name}: rejected for more than `id`: {e.value}\n{rec.last()}"
    return judge(rec, name, consistent)


def judge(rec: Recorder, name: str, model: type[pydantic.BaseModel], body=None):
    """The last raw answer (or `body`) checked against one of the SDK's models."""
    if body is None:
        body = json.loads(rec.exchanges[-1][3])
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as e:
        pytest.fail(f"{name}: {model.__name__} rejected the simulator's answer:\n{e}\n{rec.last()}")


def sdk_error(rec: Recorder, name: str, fn, cls: type, status: int, code: str | None = None):
    """Runs an SDK function that must fail with exactly class `cls`, `status` and `code`."""
    with pytest.raises(Exception) as info:
        fn()
    e = info.value
    where = f"\n{rec.last()}"
    assert type(e) is cls, f"{name}: expected {cls.__name__}, got {type(e).__name__}: {e}{where}"
    assert e.status_code == status, f"{name}: HTTP status{where}"
    if code is not None:
        assert e.error_code == code, f"{name}: error code{where}"
    return e


def create(c: PhalaCloud, rec: Recorder, name: str, *, kms: str = "PHALA", app_id: str | None = None):
    """A CVM made with the SDK's provision and commit; returns (provision, commit answer)."""
    keys = [e.key for e in ENV]
    prov = sdk(rec, "provision_cvm", c.provision_cvm, {
        "name": name,
        "instance_type": "tdx.small",
        "compose_file": {"docker_compose_file": COMPOSE, "pre_launch_script": SCRIPT, "allowed_envs": keys,
                         "public_logs": True, "public_sysinfo": False, "gateway_enabled": True, "kms_enabled": True},
        "kms": kms,
        "env_keys": keys,
    })
    judge(rec, "provision_cvm", ProvisionCvmResponse)
    app = prov.app_id or app_id
    pubkey = prov.app_env_encrypt_pubkey
    key = sdk(rec, "get_app_env_encrypt_pub_key", c.get_app_env_encrypt_pub_key, {"kms": prov.kms_id, "app_id": app})
    judge(rec, "get_app_env_encrypt_pub_key", AppEnvPubkeyResponse)
    assert pubkey is None or key.public_key == pubkey, "the KMS's key is the provision's"
    commit = {"app_id": app, "compose_hash": prov.compose_hash, "env_keys": keys, "kms_id": prov.kms_id,
              "encrypted_env": encrypt_env_vars_sync(ENV, key.public_key)}
    if kms != "PHALA":
        commit.update(contract_address="0x" + app, deployer_address="0x" + "33" * 20)
    vm = sdk(rec, "commit_cvm_provision", c.commit_cvm_provision, commit)
    return prov, vm, commit


def test_account_nodes_and_catalogues_parse(sim, version, recorder):
    c = client(sim, version, recorder)
    me = sdk(recorder, "get_current_user", c.get_current_user)
    assert me.workspace.slug == "sim"
    nodes = sdk(recorder, "get_available_nodes", c.get_available_nodes)
    assert nodes.nodes and nodes.kms_list
    graph = sdk(recorder, "get_cvm_create_resources", c.get_cvm_create_resources)
    assert {n.teepod_id for n in graph.nodes} == {r.teepod_id for r in graph.node_kms_relations}
    assert {t.id for t in graph.instance_types} >= {"tdx.small", "tdx.medium"}

    fams = sdk(recorder, "list_all_instance_type_families", c.list_all_instance_type_families)
    family = fams.result[0].name
    sdk(recorder, "list_family_instance_types", c.list_family_instance_types, {"family": family})
    assert judge(recorder, "list_family_instance_types", InstanceTypesFamilyResponse).family == family

    imgs = sdk(recorder, "get_os_images", c.get_os_images, {"page": 1, "page_size": 50})
    imgs = judge(recorder, "get_os_images", GetOsImagesResponse)
    assert any(i.is_dev for i in imgs.items) and any(not i.is_dev for i in imgs.items)
    sdk(recorder, "get_os_images (is_dev)", c.get_os_images, {"is_dev": True})
    assert all(i.is_dev for i in judge(recorder, "get_os_images (is_dev)", GetOsImagesResponse).items)

    sdk(recorder, "list_workspaces", c.list_workspaces)
    ws = judge(recorder, "list_workspaces", ListWorkspacesResponse)
    assert [w.slug for w in ws.data] == ["sim"]
    sdk(recorder, "get_workspace", c.get_workspace, "sim")
    assert judge(recorder, "get_workspace", WorkspaceResponse).id == ws.data[0].id


def test_kms_nodes_and_contracts_parse(sim, version, recorder):
    c = client(sim, version, recorder)
    # The node-centric calls pin 2026-05-22, the contract-centric ones 2026-06-23, whatever
    # the client's version.
    nodes = sdk(recorder, "get_kms_list", c.get_kms_list)
    assert {k.chain_id for k in nodes.items} == {None, 8453}
    onchain = sdk(recorder, "get_kms_list (is_onchain)", c.get_kms_list, {"is_onchain": True})
    assert [k.chain_id for k in onchain.items] == [8453]
    for k in nodes.items:
        sdk(recorder, "get_kms_info", c.get_kms_info, {"kms_id": k.id})
        assert judge(recorder, "get_kms_info", KmsInfo).id == k.id
    contracts = sdk(recorder, "list_kms_contracts", c.list_kms_contracts)
    assert {(k.contract_address, k.chain_id) for k in contracts.items} == {("phala", 0), ("0x" + "11" * 20, 8453)}
    for k in contracts.items:
        by_slug = sdk(recorder, "get_kms_contract", c.get_kms_contract, k.slug)
        by_id = sdk(recorder, "get_kms_contract (kc_ id)", c.get_kms_contract, k.id)
        assert by_slug == by_id == k
        members = sdk(recorder, "list_kms_contract_nodes", c.list_kms_contract_nodes, k.slug)
        assert members.total == len(members.items) == k.node_count


def test_a_cvm_from_create_to_delete(sim, version, recorder):
    c = client(sim, version, recorder)
    name = f"py-web-{tag(version)}"
    prov, vm, commit = create(c, recorder, name)
    # The commit's id is an integer up to 2026-01-21, a string (hashid) from 2026-05-22 on.
    model = CommitCvmProvisionResponseV20260121 if version == "2026-01-21" else CommitCvmProvisionResponseV20260522
    assert judge(recorder, "commit_cvm_provision", model).name == name
    assert isinstance(vm.id, int if version == "2026-01-21" else str)
    # Idempotent: the same commit again is the same CVM; another hash for the app is 409.
    again = sdk(recorder, "commit_cvm_provision (again)", c.commit_cvm_provision, commit)
    assert again.id == vm.id
    sdk_error(recorder, "commit_cvm_provision (another hash)",
              lambda: c.commit_cvm_provision({**commit, "compose_hash": "ab" * 32}),
              ResourceError, 409, error_codes.CVM_APP_ID_CONFLICT)
    # A taken name is the SDK's deterministic error, not a retryable conflict.
    e = sdk_error(recorder, "provision_cvm (taken name)",
                  lambda: c.provision_cvm({"name": name, "compose_file": {"docker_compose_file": COMPOSE}}),
                  ResourceError, 409, error_codes.DUPLICATE_CVM_NAME)
    assert not isinstance(e, ConflictError)
    sim.settle()
    assert sim.env(name)["env"] == {e.key: e.value for e in ENV}, "the Python SDK's encryption decrypts exactly"

    # Reads, by every kind of id the SDK sends.
    listed = sdk(recorder, "get_cvm_list", c.get_cvm_list, {"page": 1, "page_size": 100})
    mine = next(i for i in listed.items if i.name == name)
    cvm_id = mine.id
    assert (mine.id.startswith("cvm_")) == (version != "2026-01-21"), mine.id
    for how in [{"id": cvm_id}, {"app_id": prov.app_id}, {"instance_id": vm.instance_id}, {"uuid": vm.vm_uuid}]:
        info = sdk_known(recorder, "get_cvm_info", version, c.get_cvm_info, how)
        assert info.name == name, how
    detail = judge(recorder, "get_cvm_info", CvmInfoDetailV20260121 if version == "2026-01-21" else CvmInfoDetailV20260522)
    assert detail.compose_file["docker_compose_file"] == COMPOSE
    assert sdk_known(recorder, "get_cvm_state", version, c.get_cvm_state, {"id": cvm_id}).status == "running"
    assert sdk(recorder, "get_cvm_compose_file", c.get_cvm_compose_file, {"id": cvm_id}).docker_compose_file == COMPOSE
    assert sdk(recorder, "get_cvm_docker_compose", c.get_cvm_docker_compose, {"id": cvm_id}) == COMPOSE
    assert sdk(recorder, "get_cvm_pre_launch_script", c.get_cvm_pre_launch_script, {"id": cvm_id}) == SCRIPT
    images = sdk(recorder, "get_available_os_images", c.get_available_os_images, {"id": cvm_id})
    assert images and all(hasattr(i, "version") for i in images)
    status = sdk(recorder, "get_cvm_status_batch", c.get_cvm_status_batch, {"vm_uuids": [vm.vm_uuid]})
    assert status[vm.vm_uuid].status == "running"
    sdk(recorder, "get_app_list", c.get_app_list, {"search": name})
    apps = judge(recorder, "get_app_list", DstackAppListResponseV20260121 if version == "2026-01-21" else DstackAppListResponseV20260522)
    assert [a.name for a in apps.dstack_apps] == [name]
    sdk(recorder, "get_app_info", c.get_app_info, {"app_id": prov.app_id})
    app = judge(recorder, "get_app_info", DstackAppFullResponseV20260121 if version == "2026-01-21" else DstackAppFullResponseV20260522)
    assert app.current_cvm.id == cvm_id
    assert [x.name for x in sdk(recorder, "get_app_cvms", c.get_app_cvms, {"app_id": prov.app_id})] == [name]
    # Another instance of the app (teeform's replicas), listed beside the first, then removed.
    replica = sdk(recorder, "replicate_cvm", c.replicate_cvm, {"id": cvm_id, "node_id": 2})
    assert replica.name == name and isinstance(replica.id, int if version == "2026-01-21" else str), replica
    sim.settle()
    assert len(sdk(recorder, "get_app_cvms (two instances)", c.get_app_cvms, {"app_id": prov.app_id})) == 2
    assert sdk(recorder, "delete_cvm (replica)", c.delete_cvm, {"id": replica.vm_uuid}) is None

    # Updates, through each endpoint the SDK has.
    env2 = [EnvVar("API_KEY", "sk-rotated"), EnvVar("DB_URL", 'x"y'), EnvVar("NEW", "n")]
    r = sdk(recorder, "update_cvm_envs", c.update_cvm_envs, {
        "id": cvm_id, "encrypted_env": encrypt_env_vars_sync(env2, prov.app_env_encrypt_pubkey),
        "env_keys": [e.key for e in env2]})
    assert r.status == "in_progress" and r.correlation_id
    sim.settle()
    assert sim.env(name)["env"] == {e.key: e.value for e in env2}
    compose2 = COMPOSE + "# v2\n"
    r = sdk(recorder, "update_docker_compose", c.update_docker_compose, {"id": cvm_id, "docker_compose_file": compose2})
    assert r.status == "in_progress"
    sim.settle()
    restarts = sim.get("/_sim/stats")["cvms"][name]["restarts"]
    r = sdk(recorder, "update_docker_compose (same)", c.update_docker_compose, {"id": cvm_id, "docker_compose_file": compose2})
    assert r.status == "no_change", "the same compose again changes nothing"
    assert sim.get("/_sim/stats")["cvms"][name]["restarts"] == restarts, "and restarts nothing"
    r = sdk(recorder, "update_pre_launch_script", c.update_pre_launch_script, {"id": cvm_id, "pre_launch_script": "echo v2\n"})
    assert r.status == "in_progress"
    sim.settle()
    compose3 = {"docker_compose_file": COMPOSE + "# v3\n", "allowed_envs": [e.key for e in env2]}
    p = sdk(recorder, "provision_cvm_compose_file_update", c.provision_cvm_compose_file_update,
            {"id": cvm_id, "app_compose": compose3})
    assert p.compose_hash and not p.compose_hash_registered and p.compose_unchanged is False
    assert sdk(recorder, "commit_cvm_compose_file_update", c.commit_cvm_compose_file_update,
               {"id": cvm_id, "compose_hash": p.compose_hash}) is None
    sim.settle()
    r = sdk(recorder, "update_cvm_resources", c.update_cvm_resources,
            {"id": cvm_id, "instance_type": "tdx.medium", "allow_restart": True})
    assert r.correlation_id and r.status == "in_progress"
    sim.settle()
    resource = next(i for i in sdk(recorder, "get_cvm_list", c.get_cvm_list).items if i.name == name).resource
    assert (resource.instance_type, resource.vcpu) == ("tdx.medium", 2)
    v = sdk(recorder, "update_cvm_visibility", c.update_cvm_visibility,
            {"id": cvm_id, "public_sysinfo": True, "public_logs": False})
    assert v.status
    sim.settle()
    assert sdk(recorder, "update_os_image", c.update_os_image, {"id": cvm_id, "os_image_name": "dstack-0.5.4"}) is None
    sim.settle()
    same = sdk(recorder, "patch_cvm (already so)", c.patch_cvm, {"id": cvm_id, "vcpu": 2, "memory": 4096})
    assert same == {"requires_on_chain_hash": False, "correlation_id": same["correlation_id"]} and same["correlation_id"]
    assert json.loads(recorder.exchanges[-1][3])["status"] == "no_change"
    changed = sdk(recorder, "patch_cvm", c.patch_cvm, {"id": cvm_id, "disk_size": 40, "public_tcbinfo": True})
    assert changed["requires_on_chain_hash"] is False and changed["correlation_id"]
    sim.settle()

    # Power (each answer checked by the SDK's model for the version), watched through the
    # state's event stream.
    for action in ("stop_cvm", "start_cvm", "shutdown_cvm", "restart_cvm"):
        if action == "restart_cvm":
            sdk(recorder, "start_cvm", c.start_cvm, {"id": cvm_id})
            sim.settle()
        out = sdk(recorder, action, getattr(c, action), {"id": cvm_id})
        assert out.name == name and isinstance(out.id, int if version == "2026-01-21" else str), (action, out)
        if action != "restart_cvm":
            sim.settle()
    final = sdk(recorder, "watch_cvm_state", c.watch_cvm_state,
                {"id": cvm_id, "target": "running", "interval": 5, "timeout": 30, "maxRetries": 0})
    assert final.status == "running"

    assert sdk(recorder, "delete_cvm", c.delete_cvm, {"id": cvm_id}) is None
    sdk_error(recorder, "get_cvm_info (deleted)", lambda: c.get_cvm_info({"id": cvm_id}),
              ResourceError, 404, error_codes.CVM_NOT_FOUND)


def test_the_same_path_create_answers_parse_as_the_sdks_provision(sim, version, recorder):
    """`POST /cvms` with a provision body (the newer JS SDK's create; phala-cloud 0.2.0 still
    posts to /cvms/provision): the answer is a `ProvisionCvmResponse` with a one-time
    `token`, which the SDK's commit then carries."""
    c = client(sim, version, recorder)
    name = f"py-same-{tag(version)}"
    out = c.request_full("POST", "/cvms", json={"name": name, "compose_file": {"docker_compose_file": COMPOSE}})
    assert out["status"] == 200, out
    prov = judge(recorder, "POST /cvms (provision)", ProvisionCvmResponse, out["data"])
    token = out["data"]["token"]
    commit = {"app_id": prov.app_id, "compose_hash": prov.compose_hash}
    sdk_error(recorder, "commit_cvm_provision (wrong token)",
              lambda: c.commit_cvm_provision({**commit, "token": "not-it"}),
              ResourceError, 400, error_codes.HASH_INVALID_OR_EXPIRED)
    vm = sdk(recorder, "commit_cvm_provision (token)", c.commit_cvm_provision, {**commit, "token": token})
    assert vm.name == name
    sim.settle()
    sdk(recorder, "delete_cvm", c.delete_cvm, {"uuid": vm.vm_uuid})


def test_errors_come_out_as_the_sdks_classes(sim, version, recorder):
    c = client(sim, version, recorder)
    e = sdk_error(recorder, "get_cvm_info (unknown)", lambda: c.get_cvm_info({"id": "no-such-cvm"}),
                  ResourceError, 404, error_codes.CVM_NOT_FOUND)
    assert str(e) == "CVM not found" and e.request_id and e.request_id.startswith("req_")
    sdk_error(recorder, "list_family_instance_types (unknown)", lambda: c.list_family_instance_types({"family": "nope"}),
              ResourceError, 404, error_codes.INSTANCE_TYPE_NOT_FOUND)
    sdk_error(recorder, "get_kms_info (unknown)", lambda: c.get_kms_info({"kms_id": "nope"}),
              ResourceError, 404, error_codes.KMS_NOT_FOUND)
    sdk_error(recorder, "get_kms_contract (unknown)", lambda: c.get_kms_contract("nope"),
              ResourceError, 404, error_codes.KMS_NOT_FOUND)
    sdk_error(recorder, "get_workspace (unknown)", lambda: c.get_workspace("nope"), BusinessError, 404)
    sdk_error(recorder, "provision_cvm (no compose)",
              lambda: c.provision_cvm({"name": "py-empty", "compose_file": {"docker_compose_file": " "}}),
              ResourceError, 400, error_codes.COMPOSE_FILE_REQUIRED)
    sdk_error(recorder, "a version the API does not serve",
              lambda: c.request("GET", "/auth/me", headers={"X-Phala-Version": "2099-01-01"}),
              ResourceError, 400, error_codes.INVALID_REQUEST)
    wrong = PhalaCloud(api_key="wrong-key", base_url=sim.prefix, version=version)  # type: ignore[arg-type]
    sdk_error(recorder, "get_current_user (wrong key)", wrong.get_current_user, AuthError, 401)
    oidc = PhalaCloud(base_url=sim.prefix, version=version, headers={"Authorization": "Bearer not-configured"})  # type: ignore[arg-type]
    sdk_error(recorder, "get_current_user (a bearer token the API does not take)", oidc.get_current_user, AuthError, 401)


def test_on_chain_updates_give_the_sdk_the_465_fields(sim, version, recorder):
    """An on-chain-KMS CVM's compose change is held (HTTP 465): the SDK reads the hash and app
    id from the structured error (they were lost when only `detail` held them), then confirms."""
    c = client(sim, version, recorder)
    name = f"py-chain-{tag(version)}"
    app = ("c1" if version == "2026-01-21" else "c2") * 20
    prov, vm, _ = create(c, recorder, name, kms="BASE", app_id=app)
    assert prov.app_id is None and vm.app_id == app
    sim.settle()
    r = sdk(recorder, "update_docker_compose (on chain)", c.update_docker_compose,
            {"id": name, "docker_compose_file": COMPOSE + "# chain v2\n"})
    assert r.status == "precondition_required" and r.app_id == app and len(r.compose_hash) == 64, r
    assert r.message == "On-chain compose hash registration required"
    held = sdk(recorder, "patch_cvm (on chain)", c.patch_cvm, {"id": name, "docker_compose_file": COMPOSE + "# chain v3\n"})
    assert held["requires_on_chain_hash"] is True and held["app_id"] == app and held["kms_info"]["chain_id"] == 8453
    done = sdk(recorder, "confirm_cvm_patch", c.confirm_cvm_patch,
               {"id": name, "compose_hash": held["compose_hash"], "transaction_hash": "already-registered"})
    assert done["correlation_id"]
    sim.settle()
    assert sdk(recorder, "get_cvm_compose_file", c.get_cvm_compose_file, {"id": name}).docker_compose_file.endswith("# chain v3\n")
    sdk_error(recorder, "confirm_cvm_patch (nothing held)",
              lambda: c.confirm_cvm_patch({"id": name, "compose_hash": "ab" * 32, "transaction_hash": "0x01"}),
              ResourceError, 466, error_codes.HASH_INVALID_OR_EXPIRED)
    r = sdk(recorder, "update_cvm_envs (on chain, new keys)", c.update_cvm_envs,
            {"id": name, "encrypted_env": "", "env_keys": ["ONLY"]})
    assert r.status == "precondition_required" and r.app_id == app
    sdk(recorder, "delete_cvm", c.delete_cvm, {"id": name})
