"""bench/train_step.py's rounds: every row run in turn each round, its timed steps pooled, a failing row reported."""

from __future__ import annotations

import pytest

from tests.kit.bench_scripts import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("train_step")


def test_rounds_alternate_the_rows_and_pool_their_steps(bench, capsys):
    calls = []
    seconds = {"defaults": [[2.0, 4.0], [3.0, 3.0]], "slow": [[6.0, 6.0], [9.0, 9.0]]}

    def run(index, label, levers):
        calls.append(label)
        if label == "broken":
            raise RuntimeError("no kernel")
        timed = seconds[label][calls.count(label) - 1]
        return bench.Row(label, sorted(timed)[len(timed) // 2], 100.0 * len(calls), [], None, list(timed))

    rows = bench.run_rows({"defaults": {}, "broken": {}, "slow": {"x": 1}}, 2, run)
    assert calls == ["defaults", "broken", "slow"] * 2
    assert [(r.name, r.seconds_per_step, r.timed) for r in rows] == [
        ("defaults", 3.0, [2.0, 4.0, 3.0, 3.0]), ("slow", 7.5, [6.0, 6.0, 9.0, 9.0])]
    assert rows[1].peak_vram_mib == 600.0  # the larger of its rounds
    printed = capsys.readouterr().out
    assert printed.count("broken: FAILED RuntimeError: no kernel") == 2
    assert "slow: 7.500 s/step, 2.50× the first row" in printed
