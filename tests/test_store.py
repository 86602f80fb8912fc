"""Identity ids, data layout and atomic writes."""

import json
import os

import pytest

from easyphoto.errors import IdentityNotFound, InvalidIdentityId
from easyphoto.store import (
    IdentityStore,
    Paths,
    atomic_path,
    atomic_write_json,
    read_json,
    suggest_identity_id,
    validate_identity_id,
)


@pytest.fixture
def store(tmp_path):
    return IdentityStore(Paths.standalone(tmp_path))


@pytest.mark.parametrize("good", ["alice", "a", "bob_2024", "x-y", "0" * 64])
def test_valid_ids(good):
    assert validate_identity_id(good) == good


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("", "empty"),
        (None, "empty"),
        ("../etc", "'.', '/'"),
        ("a/b", "'/'"),
        ("a\\b", "'\\\\'"),
        ("Alice", "'A'"),
        ("zoë", "'ë'"),
        ("a b", "' '"),
        ("nul\x00", "'\\x00'"),
        ("_x", "start and end"),
        ("x" * 65, "65 characters"),
        ("con", "reserved"),
        ("lora:x", "':'"),
    ],
)
def test_hostile_ids_are_refused_with_the_reason(bad, says):
    with pytest.raises(InvalidIdentityId) as info:
        validate_identity_id(bad)
    assert says in str(info.value)
    if isinstance(bad, str) and bad:
        suggestion = suggest_identity_id(bad)
        assert validate_identity_id(suggestion) == suggestion  # the hint always offers something valid


def test_suggestions_are_readable():
    assert suggest_identity_id("Zoë Smith") == "zoe_smith"
    assert suggest_identity_id("../../etc/passwd") == "etc_passwd"
    assert suggest_identity_id("!!!") == "person"


def test_layout_follows_the_architecture(store, tmp_path):
    layout = store.create("alice")
    root = tmp_path / "easyphoto" / "identities" / "alice"
    assert layout.root == root and layout.photos.is_dir() and layout.dataset.is_dir()
    assert layout.report == root / "report.json" and layout.identity_json == root / "identity.json"
    assert layout.lora_file == tmp_path / "models" / "Lora" / "alice.safetensors"


def test_create_list_get_delete(store):
    store.create("bob")
    store.create("alice")
    (store.paths.identities_dir / "Not An Id").mkdir()  # junk left by hand is ignored, not listed
    assert store.list() == ["alice", "bob"]
    with pytest.raises(InvalidIdentityId, match="already exists"):
        store.create("bob")
    layout = store.get("bob")
    layout.lora_file.parent.mkdir(parents=True)
    header = b'{"__metadata__":{"easyphoto_version":"0"}}'  # EasyPhoto's own: deleted with the identity
    layout.lora_file.write_bytes(len(header).to_bytes(8, "little") + header)
    (layout.photos / "0.jpg").write_bytes(b"x")
    store.delete("bob")
    assert not layout.root.exists() and not layout.lora_file.exists()
    assert store.list() == ["alice"]
    assert sorted(p.name for p in store.paths.identities_dir.iterdir()) == ["Not An Id", "alice"]  # no trash left
    with pytest.raises(IdentityNotFound, match="Known identities: alice"):
        store.get("bob")


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "data.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert read_json(target) == {"a": 2}
    assert os.listdir(target.parent) == ["data.json"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a fi")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_json_refuses_nan_and_reports_damage(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"score": float("nan")})
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(Exception, match="bad.json is not valid JSON"):
        read_json(bad)
    assert json.loads('{"a": 1}') == {"a": 1}
