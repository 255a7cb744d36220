"""Step runner: finished steps are skipped on rerun unless their outputs vanished."""

from __future__ import annotations

import pytest

from echodfkd.pipeline import Step, StepRunner


def test_steps_resume_and_rerun_when_outputs_missing(tmp_path):
    calls = []

    def make():
        calls.append(1)
        (tmp_path / "a.txt").write_text("x")
        return {"n": 3}

    step = Step("a", "make a", outputs=(tmp_path / "a.txt",), fn=make)
    runner = StepRunner(tmp_path, echo=lambda m: None)
    assert runner.run_all([step]) == {"a": {"n": 3}}
    again = StepRunner(tmp_path, echo=lambda m: None)
    assert again.run_all([step]) == {"a": {"n": 3}}
    assert len(calls) == 1 and "a" in again.timings()
    (tmp_path / "a.txt").unlink()
    StepRunner(tmp_path, echo=lambda m: None).run_all([step])
    assert len(calls) == 2


def test_failed_step_is_not_recorded(tmp_path):
    runner = StepRunner(tmp_path, echo=lambda m: None)

    def boom():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError, match="x"):  # the step's own error reaches the caller
        runner.run_all([Step("b", "fails", fn=boom)])
    assert "b" not in StepRunner(tmp_path, echo=lambda m: None).timings()


def test_corrupt_steps_file_is_ignored(tmp_path):
    (tmp_path / "steps.json").write_text("{not json")
    seen = []
    runner = StepRunner(tmp_path, echo=seen.append)
    assert runner.timings() == {} and any("unreadable" in m for m in seen)


def test_a_rerun_step_forces_later_steps_and_cleans_their_folders(tmp_path):
    calls = []
    later = tmp_path / "later"

    def first():
        calls.append("first")
        (tmp_path / "a.txt").write_text("x")

    def second():
        calls.append("second")
        later.mkdir(exist_ok=True)
        (later / "stale.txt").exists() and calls.append("saw stale")
        (later / "stale.txt").write_text("x")

    def both():
        StepRunner(tmp_path, echo=lambda m: None).run_all([
            Step("a", "first", outputs=(tmp_path / "a.txt",), fn=first),
            Step("b", "second", depends_on=("a",), outputs=(later / "stale.txt",), folders=(later,), fn=second)])

    both()
    both()
    assert calls == ["first", "second"]  # everything reused
    (tmp_path / "a.txt").unlink()
    both()
    assert calls == ["first", "second", "first", "second"]  # b re-ran with a clean folder
