"""The fault plan is seeded, spread over the whole run and has the promised counts; the report
prints every fault with its recovery time."""

from __future__ import annotations

from tests.fault.schedule import FULL_COUNTS, WINDOW, counts_for, format_report, make_schedule, summarize


def test_the_full_run_has_every_fault_the_issue_asks_for():
    counts = counts_for(1000)
    assert counts["child_kill"] >= 20 and counts["worker_kill"] >= 3 and counts["redis_restart"] >= 3
    assert counts["postgres_restart"] >= 2 and counts["api_restart"] >= 1 and counts["cancel_other_job"] >= 1
    plan = make_schedule(1000, seed=12)
    assert {kind: sum(f.kind == kind for f in plan) for kind in FULL_COUNTS} == counts


def test_smaller_runs_keep_every_kind():
    for images in (40, 200, 500):
        counts = counts_for(images)
        assert set(counts) == set(FULL_COUNTS) and all(n >= 1 for n in counts.values())
        assert counts["child_kill"] > counts["worker_kill"] or images < 200
    assert counts_for(200)["child_kill"] == 4 and counts_for(5000) == FULL_COUNTS


def test_same_seed_same_plan_other_seed_other_plan():
    assert make_schedule(1000, seed=7) == make_schedule(1000, seed=7)
    assert make_schedule(1000, seed=7) != make_schedule(1000, seed=8)


def test_faults_are_spread_over_the_whole_run():
    for seed in range(20):
        plan = make_schedule(1000, seed=seed)
        assert plan == sorted(plan, key=lambda f: f.at_done)
        low, high = 1000 * WINDOW[0], 1000 * WINDOW[1]
        assert all(low <= f.at_done < high for f in plan)
        # Each kind: one fault per equal slice of the window, so three worker kills are early, middle, late.
        for kind, count in FULL_COUNTS.items():
            points = [f.at_done for f in plan if f.kind == kind]
            width = (high - low) / count
            assert [int((p - low) // width) for p in points] == list(range(count)), (seed, kind, points)
        # And together: no tenth of the window is without a fault.
        tenths = {int((f.at_done - low) * 10 // (high - low)) for f in plan}
        assert tenths == set(range(10)), (seed, sorted(tenths))
        # Not all in the first 176 images, as the old fixed schedule was.
        assert max(f.at_done for f in plan) > 700


def test_targets_name_both_workers():
    plan = make_schedule(1000, seed=3)
    assert {f.target for f in plan if f.kind == "child_kill"} == {0, 1}


def _report() -> dict:
    faults = [
        {"kind": "child_kill", "planned_at": 30, "at_done": 31, "target": "cpu0@h", "recovery_seconds": 6.5},
        {"kind": "child_kill", "planned_at": 80, "at_done": 80, "target": "cpu1@h", "recovery_seconds": 7.5},
        {"kind": "child_kill", "planned_at": 90, "at_done": 95, "target": "cpu0@h", "recovery_seconds": 12.0},
        {"kind": "redis_restart", "planned_at": 120, "at_done": 121, "target": "redis", "recovery_seconds": 26.25},
    ]
    return {
        "images": 200,
        "steps": 30,
        "seed": 12,
        "total_seconds": 400.0,
        "faults": faults,
        "succeeded": 200,
        "lost": 0,
        "duplicated": 0,
        "orphan_files": 0,
        "run_after_cancel": 0,
    }


def test_summary_per_kind():
    summary = summarize(_report()["faults"])
    assert summary == {
        "child_kill": {"count": 3, "min_seconds": 6.5, "median_seconds": 7.5, "max_seconds": 12.0},
        "redis_restart": {"count": 1, "min_seconds": 26.25, "median_seconds": 26.25, "max_seconds": 26.25},
    }


def test_report_prints_each_fault_with_its_recovery_and_the_totals():
    text = format_report(_report())
    lines = text.splitlines()
    fault_lines = [line for line in lines if line.split()[0].isdigit()]
    assert len(fault_lines) == 4
    assert fault_lines[2].split() == ["3", "90", "95", "child_kill", "cpu0@h", "12.00"]
    assert "redis_restart" in fault_lines[3] and fault_lines[3].endswith("26.25")
    assert any(line.split()[:2] == ["child_kill", "3"] and "6.50 / 7.50 / 12.00" in line for line in lines)
    assert lines[-1] == "audit: succeeded 200, lost 0, duplicated 0, orphan_files 0, run_after_cancel 0"
    assert "seed 12" in lines[0] and "200 images" in lines[0]


def test_a_report_without_an_audit_yet_has_no_audit_line():
    report = {key: value for key, value in _report().items() if key not in {"succeeded", "lost", "duplicated"}}
    report = {key: value for key, value in report.items() if key not in {"orphan_files", "run_after_cancel"}}
    text = format_report(report)
    assert "audit" not in text and text.splitlines()[-1].startswith("  redis_restart")
