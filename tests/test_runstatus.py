"""RUN/status.json's record (charrnn/runstatus.py). How each ending is recorded through a real run
is in test_train.py, test_faults.py and test_distributed.py; here, the one path a real run hits
only by chance."""

import gc
import json

from charrnn import rundir, runstatus
from charrnn.errors import Interrupted


def test_a_late_signal_that_keeps_the_runs_exception_from_the_record_still_records_it(tmp_path):
    """A second Ctrl-C 3 ms after the first can strike inside contextlib's __exit__ of
    ``recorded``, before the run's exception is thrown into it: the generator is then only closed
    (GeneratorExit), and the record said "failed" with the message "GeneratorExit: " once in a
    full-suite run (test_double_ctrl_c_exits_130_with_the_last_checkpoint_whole[0.003]). What
    ``train._told`` last saw (``record.seen``) is recorded instead. The manager is entered, then
    dropped without its __exit__, as the interrupted with-statement leaves it."""
    files = rundir.RunDir(str(tmp_path))
    record = runstatus.Record(files, created=False, writes=True)
    manager = runstatus.recorded(record)
    manager.__enter__()
    record.begin()
    record.seen = Interrupted("interrupted at step 9 by Ctrl-C; checkpoint saved to RUN/ckpt.npz")
    record.seen.signal = "SIGINT"
    del manager  # the generator is closed: GeneratorExit at its yield
    gc.collect()
    got = json.loads((tmp_path / "status.json").read_text(encoding="utf-8"))
    assert (got["status"], got["signal"], got["exit_code"], got["message"]) == (
        "interrupted", "SIGINT", 130, "interrupted at step 9 by Ctrl-C; checkpoint saved to RUN/ckpt.npz")
