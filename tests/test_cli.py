"""The command line, run as users run it: `python -m easyphoto ...` in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "easyphoto", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def test_help_lists_subcommands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("serve", "info", "models"):
        assert command in out.stdout


def test_serve_smoke_answers_health(tmp_path):
    pytest.importorskip("gradio", reason="the Python 3.10 check runs without gradio")
    out = run("--data-dir", str(tmp_path), "serve", "--port", "0", "--smoke")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("EasyPhoto ") and "serving on http://127.0.0.1:" in lines[0]
    assert any(line.startswith("UI queue: /easyphoto_health answered ") for line in lines)  # via gradio's queue
    health = json.loads(lines[-1])
    assert health["name"] == "EasyPhoto" and health["host"]["flavour"] == "standalone"


def test_serve_smoke_api_only_with_token(tmp_path):
    out = run("--data-dir", str(tmp_path), "--offline", "serve", "--port", "0", "--no-ui", "--token", "t", "--smoke")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["offline"] is True


def test_models_list_json_and_table(tmp_path):
    out = run("--data-dir", str(tmp_path), "models", "list", "--json")
    rows = json.loads(out.stdout)
    assert out.returncode == 0 and {r["state"] for r in rows} <= {"present", "missing"}
    assert rows[0]["id"] == "sd15-base" and all("features" in r and "required" in r for r in rows)
    table = run("--data-dir", str(tmp_path), "models", "list", "--group", "controlnet")
    assert "controlnet-canny" in table.stdout and "put it at" in table.stdout


def test_info_shows_folders(tmp_path):
    out = run("--data-dir", str(tmp_path), "info")
    info = json.loads(out.stdout)
    assert info["paths"]["data_root"] == str(tmp_path / "easyphoto")


def test_unknown_command_fails_with_usage():
    out = run("frobnicate")
    assert out.returncode == 2 and "invalid choice" in out.stderr



# ---------------------------------------------------------------------------------------------- --set KEY=VALUE


@pytest.mark.parametrize("command", [("photos", "check", "{folder}"), ("train", "--id", "zed", "--base", "{folder}"),
                                     ("portrait", "--id", "zed", "{folder}", "--out", "{folder}")])
def test_every_command_with_a_config_takes_set_and_says_a_wrong_one_in_one_line(tmp_path, command):
    args = [part.format(folder=tmp_path) for part in command]
    typo = run("--data-dir", str(tmp_path), *args, "--set", "seeed=3")
    assert typo.returncode == 2 and "did you mean 'seed'?" in typo.stderr, typo.stderr
    bad = run("--data-dir", str(tmp_path), *args, "--set", "seed=-5")
    assert bad.returncode == 2 and bad.stderr.startswith("error: [config] --set seed=-5: seed: ")
    assert "default (seed=" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "Traceback" not in typo.stderr + bad.stderr
