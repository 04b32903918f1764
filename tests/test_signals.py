"""charrnn.signals: the stop flag, and a second signal wherever it lands (real signals, sent
to this process with ``signal.raise_signal`` at the moment each case needs)."""

import signal
import zipfile

import pytest
from conftest import CORPUS

from charrnn import config as C
from charrnn import progress, signals
from charrnn.errors import Interrupted, Terminated
from charrnn.train import train


def test_the_first_signal_sets_the_flag_and_a_second_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with signals.StopFlag() as stop:
        assert not stop.set
        signal.raise_signal(signal.SIGTERM)
        assert stop.set and stop.signum == signal.SIGTERM
        with pytest.raises(signals.StopNow) as e:
            signal.raise_signal(signal.SIGINT)
        assert e.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are put back


def test_stop_in_finds_the_signal_behind_another_error():
    try:
        try:
            raise signals.StopNow(signal.SIGTERM)
        finally:
            raise ValueError("Can't close the ZIP file")  # what numpy's savez does on its way out
    except ValueError as e:
        assert signals.stop_in(e).signum == signal.SIGTERM
    assert signals.stop_in(ValueError("plain")) is None


@pytest.mark.filterwarnings("error")  # a zip file left half-open complains when collected: a failure here
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_second_signal_inside_numpys_savez_is_reported_as_the_stop(tmp_path, monkeypatch, second):
    """The race that made the double Ctrl-C test flaky: the second signal lands while np.savez
    opens a zip member, savez's ``finally`` then fails with ValueError, and the run ended in that
    traceback. The first signal comes at step 3's log line, the second inside the final save's
    zip writer: the run must end with the one-line stop, and leave no checkpoint half-written."""
    with open(CORPUS, encoding="utf-8") as f:
        (tmp_path / "c.txt").write_text(f.read(3000), encoding="utf-8")
    cfg = C.from_dict({"data": {"path": str(tmp_path / "c.txt")}, "model": {"hidden_size": 8},
                       "train": {"seq_length": 8, "batch_size": 2, "steps": 10**6, "log_every": 1,
                                 "sample_every": 0, "checkpoint_every": 0, "eval_every": 0}}, "test")
    log = progress.Progress.log

    def log_then_signal(self, record):
        log(self, record)
        if record.get("step") == 3:
            signal.raise_signal(signal.SIGINT)

    compressor = zipfile._get_compressor

    def signal_inside_savez(*args, **kwargs):
        signal.raise_signal(second)
        return compressor(*args, **kwargs)

    monkeypatch.setattr(progress.Progress, "log", log_then_signal)
    monkeypatch.setattr(zipfile, "_get_compressor", signal_inside_savez)
    with pytest.raises(Interrupted) as e:
        train(cfg, out_dir=str(tmp_path / "run"), quiet=True)
    assert isinstance(e.value, Terminated) == (second == signal.SIGTERM)
    name = "SIGTERM" if second == signal.SIGTERM else "Ctrl-C"
    assert str(e.value).startswith(f"stopped at once by a second {name}; no checkpoint was written yet")
    assert not (tmp_path / "run" / "ckpt.npz").exists()
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")] == []


def test_a_signal_while_the_stop_is_being_reported_still_reports_it(monkeypatch, capsys, tmp_path):
    """The other half of the race: the run has saved and raised Interrupted, its handlers are
    gone, and a second Ctrl-C lands on the way out (here: in a ``finally`` it passes, as the
    run directory's lock release is). Python raises KeyboardInterrupt there; the program must
    still exit 130 with the stop's one line, not silently."""
    import sys

    from charrnn import cli
    from charrnn import runstatus as runstatus

    def stopped_run(*args, **kwargs):
        try:
            raise Interrupted("interrupted at step 7 by Ctrl-C; checkpoint saved to RUN/ckpt.npz")
        finally:
            signal.raise_signal(signal.SIGINT)  # Python's own handler: KeyboardInterrupt, here

    monkeypatch.setattr(runstatus, "train", stopped_run)
    monkeypatch.setattr(sys, "argv", ["charrnn", "train", "--data", str(CORPUS), "--out", str(tmp_path / "r")])
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(SystemExit) as e:
            cli.main()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)  # main() ignores them once the command is over
    assert e.value.code == 130
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["interrupted at step 7 by Ctrl-C; checkpoint saved to RUN/ckpt.npz"]


def test_a_second_signal_as_the_stopped_run_unwinds_still_records_the_stop(tmp_path, monkeypatch):
    """A second Ctrl-C that lands after the stop flag's handlers are gone, just as RUN/status.json
    is about to be written (before the signals are held): Python raises KeyboardInterrupt there;
    the record is written all the same, of the first stop, and the KeyboardInterrupt goes on."""
    import json

    from charrnn import runstatus as runstatus

    with open(CORPUS, encoding="utf-8") as f:
        (tmp_path / "c.txt").write_text(f.read(3000), encoding="utf-8")
    cfg = C.from_dict({"data": {"path": str(tmp_path / "c.txt")}, "model": {"hidden_size": 8},
                       "train": {"seq_length": 8, "batch_size": 2, "steps": 10**6, "log_every": 1,
                                 "sample_every": 0, "checkpoint_every": 0, "eval_every": 0}}, "test")
    log = progress.Progress.log

    def log_then_signal(self, record):
        log(self, record)
        if record.get("step") == 3:
            signal.raise_signal(signal.SIGINT)

    held = runstatus._signals_wait
    calls = []

    def second_signal_first(*args):
        calls.append(1)
        if len(calls) == 2:  # the first call holds signals for the "running" record; the second, the end's
            signal.raise_signal(signal.SIGINT)  # the flag's handlers are gone: KeyboardInterrupt, here
        return held(*args)

    monkeypatch.setattr(progress.Progress, "log", log_then_signal)
    monkeypatch.setattr(runstatus, "_signals_wait", second_signal_first)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt) as e:
            train(cfg, out_dir=str(tmp_path / "run"), quiet=True)
    finally:
        signal.signal(signal.SIGINT, old)
    assert isinstance(e.value.__context__, Interrupted)
    record = json.loads((tmp_path / "run" / "status.json").read_text(encoding="utf-8"))
    assert (record["status"], record["signal"], record["exit_code"], record["step"]) == ("interrupted", "SIGINT",
                                                                                        130, 3)
    assert record["message"] == str(e.value.__context__)
