# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one way to read a file it may write, and to write a file on the managed host: atomically, with
the mode it must have."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable


def write_atomically(path: str, content: str, mode: int, atomic_move: Callable[[str, str], None]) -> None:
    """Replace ``path`` with ``content`` (UTF-8) in one rename, leaving it with permission bits ``mode``.

    ``atomic_move(src, dest)`` is the module's AnsibleModule.atomic_move (it keeps the file's owner and SELinux
    context). Readers see the old file or the new one, never a part. The content is never readable beyond
    ``mode``: the temporary file is created 0600 (mkstemp), and a file that does not exist yet is created with
    ``mode`` first, because atomic_move gives a new file the umask's default mode (0644 for umask 022) and copies
    an existing file's mode onto the replacement. Raises OSError when the directory cannot be written.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    os.chmod(path, mode)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        atomic_move(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    os.chmod(path, mode)


def read_text(path: str) -> str | None:
    """The UTF-8 text of ``path``, or None when it does not exist (an empty file is ``""``); other OSErrors
    propagate."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
