"""`python -m bench.load` in a short form so it cannot rot: a few sessions, then the flood past the
queue's limit. It asserts outcomes (no failures, the excess refused with "queue is full", nothing
hung), never timings: those are the benchmark's to print."""

from __future__ import annotations

import json

import pytest

from bench.load import RSS_MIN_REQUESTS, format_result, judge, main


@pytest.mark.slow
def test_bench_load_short_form_answers_everything_and_refuses_the_flood_cleanly(tmp_path, capsys):
    from app.ui import QUEUE_MAX

    out = tmp_path / "load.json"
    # Fewer LIME samples keep the 17 answered flood calls short on 2 busy cores; the time limit
    # stops the run (and the server) if something hangs.
    argv = [
        "--sessions",
        "4",
        "--requests",
        "2",
        "--lime-samples",
        "16",
        "--time-limit",
        "150",
        "--skip-memory",
    ]
    code = main([*argv, "--json", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["aborted"] is None, printed

    load = result["load"]
    assert (load["planned"], load["done"], load["ok"], load["failed"]) == (8, 8, 8, 0), printed
    assert 0 < load["latency_s"]["p50"] <= load["latency_s"]["p95"] <= load["latency_s"]["max"]
    # Pressed as the page presses: the first maps come before the whole result.
    assert 0 < load["first_maps_s"]["p50"] < load["latency_s"]["p50"]

    flood = result["flood"]
    assert flood["capacity"] == QUEUE_MAX + 1 and flood["flooded"] == 2 * flood["capacity"]
    assert flood["hung"] == flood["failed"] == flood["cut"] == 0, printed
    assert flood["answered"] + flood["refused"] == flood["flooded"]
    assert flood["answered"] >= flood["capacity"]  # the queue takes what it holds
    assert flood["refused"] >= 1, printed
    assert flood["refusal_messages"] and all("queue is full" in m.lower() for m in flood["refusal_messages"])
    assert flood["refused_within_s"] <= flood["refuse_bound_s"]

    rss = result["rss_mb"]
    assert rss["after_warmup"] > 0 and rss["end"] > 0 and rss["growth_pct"] is not None
    assert result["requests_after_warmup"] == 8 + flood["answered"]
    assert result["model_images_per_s"] > 0 and result["wall_s"] > 0
    # 8 + ~17 requests are too few to judge memory growth, and --skip-memory said not to.
    assert result["targets"] == {"no_failures": True, "refused_cleanly": True, "rss_growth": None}
    assert code == 0
    for text in ("4 sessions × 2 requests", "first maps", "fe)", "refused", "server RSS", "--skip-memory"):
        assert text in printed


def _result(**changes) -> dict:
    result = {
        "sessions": 2,
        "requests": 1,
        "time_limit_s": 60.0,
        "aborted": None,
        "model": "m",
        "load": {
            "planned": 2,
            "done": 2,
            "ok": 2,
            "failed": 0,
            "errors": {},
            "latency_s": {"p50": 1.0, "p95": 2.0, "mean": 1.5, "max": 2.0},
        },
        "flood": {
            "flooded": 4,
            "capacity": 3,
            "answered": 3,
            "refused": 1,
            "failed": 0,
            "hung": 0,
            "cut": 0,
            "errors": {},
            "refusal_messages": ["Queue is full! Please try again."],
            "refused_within_s": 0.5,
            "answered_within_s": 3.0,
            "hang_bound_s": 40.0,
            "refuse_bound_s": 10.0,
        },
        "rss_mb": {"after_warmup": 1000.0, "end": 1150.0, "growth_pct": 15.0},
        "requests_after_warmup": RSS_MIN_REQUESTS,
        "wall_s": 10.0,
    }
    result.update(changes)
    return result


def test_bench_load_refuses_a_run_too_short_to_judge_memory_unless_told(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--sessions", "4", "--requests", "2"])
    assert stop.value.code == 2
    assert "too few to judge memory" in capsys.readouterr().err


def test_bench_load_judges_each_target_and_says_which_were_not_judged():
    assert judge(_result()) == {"no_failures": True, "refused_cleanly": True, "rss_growth": False}
    # Asked to judge memory (the default) and too few requests to: a failure, said why.
    few = _result(requests_after_warmup=RSS_MIN_REQUESTS - 1)
    assert judge(few)["rss_growth"] is False
    few["targets"] = judge(few)
    assert f"only {RSS_MIN_REQUESTS - 1} requests: too few" in format_result(few)
    skipped = _result(requests_after_warmup=RSS_MIN_REQUESTS - 1, judge_memory=False)
    skipped["targets"] = judge(skipped)
    assert skipped["targets"]["rss_growth"] is None
    assert "not judged (--skip-memory)" in format_result(skipped)

    hung = _result()
    hung["flood"] = {**hung["flood"], "refused": 0, "hung": 1}
    assert judge(hung)["refused_cleanly"] is False
    failed = _result()
    failed["load"] = {**failed["load"], "ok": 1, "failed": 1, "errors": {"AppError: boom": 1}}
    failed["targets"] = judge(failed)
    assert failed["targets"]["no_failures"] is False
    assert "1× AppError: boom" in format_result(failed) and "MISSED" in format_result(failed)

    short = _result(aborted="time limit of 60 s reached during the load", flood=None)
    short["load"] = {**short["load"], "done": 1, "ok": 1}
    short["targets"] = judge(short)
    assert short["targets"]["no_failures"] is None  # cut short: no verdict on what was not done
    assert "1 of 2 done" in format_result(short) and "not judged (cut short)" in format_result(short)

    cut = _result(aborted="time limit of 60 s reached during the load", load=None, flood=None)
    cut["targets"] = judge(cut)
    assert cut["targets"]["no_failures"] is None and cut["targets"]["refused_cleanly"] is None
    assert "ABORTED: time limit" in format_result(cut)
