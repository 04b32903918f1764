"""The two kinds of failure the command line reports without a traceback.

Library code raises these with a one-line message that names the file, key or
value at fault and says what would be right; ``cli.py`` turns them into exit codes.
"""


class CharrnnError(Exception):
    """Something is wrong with a file or a run (corpus, checkpoint, divergence): exit 1."""

    exit_code = 1


class UsageError(CharrnnError):
    """Something is wrong with what the user asked for (config key or value, option): exit 2."""

    exit_code = 2


class NothingToDo(CharrnnError):
    """A resumed run that has nothing left to do (finished, or out of its time budget): not a
    failure (a requeue loop that resumes until the run is done ends cleanly), so exit 0; the
    message says which option would train it further."""

    exit_code = 0


class Interrupted(CharrnnError):
    """Stopped by Ctrl-C (SIGINT): exit 130, as a shell reports it (128 + 2)."""

    exit_code = 130


class Terminated(Interrupted):
    """Stopped by SIGTERM (``kill``, ``timeout``, a batch scheduler): exit 143 (128 + 15)."""

    exit_code = 143


class Hangup(Interrupted):
    """Stopped by SIGHUP (the terminal or ssh session closed): exit 129 (128 + 1)."""

    exit_code = 129
