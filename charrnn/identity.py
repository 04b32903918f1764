"""What a run was trained on, compared on ``--resume``: whether a corpus changed, and how.

The identity is a plain dict stored in the checkpoint (as JSON): ``corpus.py``'s record, whose
``bytes`` and ``sha256`` it computes as the corpus is read, so it costs no second read of the
file. Only those two are compared here (the path may differ: a corpus moved is the same corpus).
"""

from __future__ import annotations

from charrnn.errors import CharrnnError


def describe_change(old_identity: dict, new_identity: dict, path: str) -> str | None:
    """One line saying how the corpus at ``path`` differs from the one a run was trained on,
    or None when it is the same (same size and SHA-256; the path itself may differ).

    ``old_identity`` is what the checkpoint recorded, ``new_identity`` what was just read.
    Raises CharrnnError if ``old_identity`` is not an identity record (a damaged checkpoint).
    """
    try:
        old_bytes, old_sha = int(old_identity["bytes"]), str(old_identity["sha256"])
    except (TypeError, KeyError, ValueError):
        raise CharrnnError(
            f"{path}: the checkpoint's record of its corpus is damaged ({old_identity!r:.80})") from None
    new_bytes, new_sha = new_identity["bytes"], new_identity["sha256"]
    if old_bytes != new_bytes:
        return (f"{path}: the corpus changed since the checkpoint was written: "
                f"its size went from {old_bytes:,} to {new_bytes:,} bytes")
    if old_sha != new_sha:
        return (f"{path}: the corpus changed since the checkpoint was written: same size "
                f"({new_bytes:,} bytes), different content "
                f"(SHA-256 {old_sha[:12]}... then, {new_sha[:12]}... now)")
    return None


def check_unchanged(old_identity: dict, new_identity: dict, path: str, moved_from: str | None = None) -> None:
    """Raise CharrnnError (exit 1) if the corpus changed, for ``--resume``: a resumed run on
    other text would not be the run it continues. ``--init-from`` (a new run) skips this.
    ``moved_from``: the path the run was trained at, when ``--data`` says where it is now."""
    reason = describe_change(old_identity, new_identity, path)
    if reason is not None and moved_from is not None:
        reason = reason.replace("the corpus changed since the checkpoint was written",
                                f"not the text the run was trained on ({moved_from})")
        raise CharrnnError(f"{reason}; --resume --data needs the same text at its new place "
                           "(or start a new run from these weights with --init-from)")
    if reason is not None:
        raise CharrnnError(f"{reason}; --resume needs the text the run was trained on "
                           "(restore it, or start a new run from these weights with --init-from)")
