"""The shared flag helpers (echodfkd.commands._flags): one spelling, one meaning, one-line errors."""

from __future__ import annotations

import argparse
import os

import pytest

from echodfkd.commands import _flags as flags
from echodfkd.errors import EchoDFKDError


def _parser(*adders) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="x", exit_on_error=True)
    for add in adders:
        add(p)
    return p


def test_data_positional_or_option(tmp_path):
    d = str(tmp_path)
    p = _parser(flags.add_data)
    assert p.parse_args([d]).data == d
    assert p.parse_args(["--data", d]).data == d
    p2 = _parser(flags.add_data, flags.add_json)
    assert p2.parse_args(["--json", "--data", d]).data == d
    assert p2.parse_args(["--data", d, "--json"]).data == d


def test_data_required_exclusive_and_existing(tmp_path, capsys):
    p = _parser(flags.add_data)
    with pytest.raises(SystemExit):
        p.parse_args([])
    assert "required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args([str(tmp_path), "--data", str(tmp_path)])
    assert "not allowed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args([str(tmp_path / "missing")])
    assert "missing: not found" in capsys.readouterr().err
    optional = argparse.ArgumentParser()
    flags.add_data(optional, required=False)
    assert optional.parse_args([]).data is None


def test_student_and_deprecated_model_alias(tmp_path, capsys):
    r = str(tmp_path)
    p = _parser(flags.add_student)
    assert p.parse_args(["--student", r]).student == r
    assert capsys.readouterr().err == ""
    assert p.parse_args(["--model", r]).student == r
    err = capsys.readouterr().err
    assert "--model is deprecated; use --student" in err and err.count("\n") == 1
    assert "--model" not in p.format_help()
    with pytest.raises(SystemExit):
        p.parse_args([])
    with pytest.raises(SystemExit):
        p.parse_args(["--student", str(tmp_path / "none")])
    assert "none: folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("good", ["cpu", "cuda", "cuda:1", "mps", "auto"])
def test_device_accepts(good):
    assert _parser(flags.add_device).parse_args(["--device", good]).device == good


@pytest.mark.parametrize("bad", ["banana", "cuda:", "cuda:x", "gpu"])
def test_device_refuses(bad, capsys):
    with pytest.raises(SystemExit):
        _parser(flags.add_device).parse_args(["--device", bad])
    assert "unknown device" in capsys.readouterr().err


def test_defaults_and_choices():
    args = _parser(flags.add_device, flags.add_precision, flags.add_workers, flags.add_json,
                   flags.add_max_time, flags.add_teacher, flags.add_teacher_arch).parse_args([])
    assert (args.device, args.precision, args.workers, args.json, args.max_time, args.teacher,
            args.teacher_arch) == ("cpu", "fp32", 1, False, None, None, None)
    with pytest.raises(SystemExit):
        _parser(flags.add_precision).parse_args(["--precision", "bf16-mixed"])
    assert _parser(flags.add_precision).parse_args(["--precision", "auto"]).precision == "auto"


@pytest.mark.parametrize("text,ok", [("1", True), ("3", True), ("0", False), ("-2", False), ("x", False)])
def test_positive_int(text, ok):
    if ok:
        assert flags.positive_int(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            flags.positive_int(text)


def test_nonnegative_int_and_unit_float():
    assert flags.nonnegative_int("0") == 0
    with pytest.raises(argparse.ArgumentTypeError):
        flags.nonnegative_int("-1")
    assert flags.unit_float("0.25") == 0.25
    for bad in ("1.5", "-0.1", "nan", "half"):
        with pytest.raises(argparse.ArgumentTypeError):
            flags.unit_float(bad)


def test_workers_refuses_zero(capsys):
    with pytest.raises(SystemExit):
        _parser(flags.add_workers).parse_args(["--workers", "0"])
    assert ">= 1" in capsys.readouterr().err


def test_max_time_normalised():
    p = _parser(flags.add_max_time)
    assert p.parse_args(["--max-time", "90"]).max_time == "00:00:01:30"
    assert p.parse_args(["--max-time", "01:00:00"]).max_time == "00:01:00:00"
    with pytest.raises(SystemExit):
        p.parse_args(["--max-time", "-5"])


def test_existing_dir_and_path(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert flags.existing_dir(str(tmp_path)) == tmp_path
    assert flags.existing_path(str(f)) == f
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        flags.existing_dir(str(f))
    with pytest.raises(argparse.ArgumentTypeError, match="not found"):
        flags.existing_path(str(tmp_path / "missing"))


def test_check_writable_dir(tmp_path):
    out = flags.check_writable_dir(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []  # the probe file is gone
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(EchoDFKDError, match="exists and is a file"):
        flags.check_writable_dir(f)
    with pytest.raises(EchoDFKDError, match="cannot write here"):
        flags.check_writable_dir(f / "sub")  # a folder under a file: NotADirectoryError


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_check_writable_dir_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(EchoDFKDError, match="cannot write here") as exc:
            flags.check_writable_dir(ro / "out")
        assert "\n" not in str(exc.value)
        with pytest.raises(EchoDFKDError, match="cannot write here"):
            flags.check_writable_dir(ro)
    finally:
        ro.chmod(0o700)


def test_check_writable_dir_os_error_is_one_line(tmp_path, monkeypatch):
    import errno

    def refuse(*_a, **_k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(flags.tempfile, "mkstemp", refuse)
    with pytest.raises(EchoDFKDError, match="Read-only file system") as exc:
        flags.check_writable_dir(tmp_path)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("parse,good,bad", [
    (flags.positive_float, ["0.5", "3"], ["0", "-1", "nan", "inf", "x"]),
    (flags.nonnegative_float, ["0", "2.5"], ["-0.1", "nan", "x"]),
    (flags.float_in(0.0, 2.0), ["0", "2"], ["2.01", "-1", "nan"]),
    (flags.int_in(32, 1024), ["32", "1024"], ["31", "2000", "1.5"]),
    (flags.frame_size, ["1", "112"], ["0", "-8", "7.0"]),
    (flags.teacher_size, ["32", "112"], ["7", "31", "0"]),
])
def test_number_types(parse, good, bad):
    for text in good:
        assert parse(text) == float(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_check_size_names_the_flag():
    flags.check_size(None, 4)
    flags.check_size(56, 4)
    with pytest.raises(EchoDFKDError, match=r"^--frame-size 7: .*multiple of 8 for a 4-block student"):
        flags.check_size(7, 4, "--frame-size")


def test_existing_file_and_targets(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert flags.existing_file(str(f)) == f
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        flags.existing_file(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError, match="file not found"):
        flags.existing_file(str(tmp_path / "none"))
    with pytest.raises(EchoDFKDError, match="is a folder; --csv names the file"):
        flags.check_file_target(tmp_path, "--csv")
    with pytest.raises(EchoDFKDError, match="cannot write here"):
        flags.check_file_target(f / "x.csv", "--csv")
    with pytest.raises(EchoDFKDError, match="exists and is a file"):
        flags.check_out_target(f)
    with pytest.raises(EchoDFKDError, match="cannot write here"):
        flags.check_out_target(f / "a" / "b")
    assert flags.check_out_target(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # a dry-run check creates nothing


def test_check_writable_dir_can_leave_nothing(tmp_path):
    flags.check_writable_dir(tmp_path / "a" / "b", keep=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    flags.check_writable_dir(tmp_path / "kept", keep=False)
    assert (tmp_path / "kept").is_dir()  # a folder that was there stays


def test_deprecated_flag_and_positional(tmp_path, capsys):
    p = argparse.ArgumentParser(prog="echodfkd x")
    flags.add_out(p, required=False)
    flags.add_deprecated_positional(p, "out", "--out", "OUT")
    p.add_argument("--max-time", type=flags.duration, default=None)
    flags.add_deprecated(p, "--max-minutes", "--max-time", "max_time", type=flags.positive_float,
                         convert=lambda m: flags.duration(str(60 * m)))
    flags.add_deprecated(p, "--no-augment", "--augment 0", "augment", flag=True, const=0.0)
    args = p.parse_args(["D", "--max-minutes", "2", "--no-augment"])
    assert (args.out, args.max_time, args.augment) == ("D", "00:00:02:00", 0.0)
    err = capsys.readouterr().err.splitlines()
    assert err == ["echodfkd x: warning: the positional OUT is deprecated; use --out OUT",
                   "echodfkd x: warning: --max-minutes is deprecated; use --max-time",
                   "echodfkd x: warning: --no-augment is deprecated; use --augment 0"]
    assert "--max-minutes" not in p.format_help() and "--no-augment" not in p.format_help()
    assert p.parse_args(["--out", "E"]).out == "E" and capsys.readouterr().err == ""
    with pytest.raises(EchoDFKDError, match="required: --out"):
        flags.require(p.parse_args([]), "out", "--out")


def test_partial_exit(capsys):
    assert flags.partial_exit({}, False, "label") == 0
    assert flags.partial_exit([("a", "unreadable")], False, "label") == 1
    assert capsys.readouterr().err == "echodfkd label: warning: skipped a: unreadable\n"
    assert flags.partial_exit({"a": "unreadable"}, True, "predict") == 0


def test_parse_errors_are_one_line(capsys):
    from echodfkd.cli import main

    assert main(["phantom", "--out", "x", "--videos", "0"]) == 2
    err = capsys.readouterr().err
    assert err == ("echodfkd phantom: error: argument --videos: must be an integer >= 1, got '0' "
                   "(see echodfkd phantom --help)\n")
    assert main(["--version"]) == 0


def test_an_os_error_mid_run_is_one_line(monkeypatch, capsys):
    """The CLI's safety net: an OSError no command foresaw (full disk, vanished folder) is one line, exit 2."""
    import errno

    import echodfkd.commands.info as info
    from echodfkd.cli import main

    def full_disk(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/x.npz")

    monkeypatch.setattr(info, "run", full_disk)
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert err == "echodfkd info: error: /data/out/x.npz: No space left on device\n"


def test_teacher_train_out_is_a_folder_and_the_old_file_spelling_warns(tmp_path, capsys):
    from echodfkd.commands.teacher import CHECKPOINT_NAME, checkpoint_path

    assert checkpoint_path(str(tmp_path / "t")) == tmp_path / "t" / CHECKPOINT_NAME
    assert capsys.readouterr().err == ""
    assert checkpoint_path(str(tmp_path / "old.pt")) == tmp_path / "old.pt"  # one more release
    assert "--out FILE.pt is deprecated; use --out DIR" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    with pytest.raises(EchoDFKDError, match="cannot write here"):
        checkpoint_path(str(tmp_path / "file" / "sub"))
    with pytest.raises(EchoDFKDError, match="cannot write here"):
        checkpoint_path(str(tmp_path / "file" / "old.pt"))
