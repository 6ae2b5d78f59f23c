"""A job's ``cwd`` as a Ray ``working_dir`` package (a zip stored in the cluster).

Ray never sees the client's paths: the directory is zipped here, named by the hash
of the zip (``gcs://_ray_pkg_<sha1>.zip``, Ray's own content-addressed naming)
and uploaded once through the packages API (``GET`` says whether the cluster has
it already, ``PUT`` stores it). The zip is deterministic (sorted entries, fixed
timestamps), so the same directory is uploaded once however many jobs use it.
Unlike Ray's own packaging it does not read ``.gitignore``/``.rayignore``; it skips
``__pycache__`` and ``.git`` directories only.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile

__all__ = ["MAX_PACKAGE_BYTES", "PackageTooLarge", "zip_directory"]

#: the Ray dashboard reads request bodies of at most this size
#: (ray_constants.DASHBOARD_CLIENT_MAX_SIZE, 100 MiB in Ray 2.60); the GCS would take 512 MiB
MAX_PACKAGE_BYTES = 100 * 1024 * 1024
_SKIP_DIRS = frozenset({"__pycache__", ".git"})
_STAMP = (1980, 1, 1, 0, 0, 0)


class PackageTooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(size)


def zip_directory(path: str, limit: int = MAX_PACKAGE_BYTES) -> tuple[str, bytes]:
    """(package name ``_ray_pkg_<sha1>.zip``, zip bytes) of the directory ``path``.
    Raises PackageTooLarge once the files or the zip pass ``limit`` bytes, and
    OSError for an unreadable directory."""
    if not os.path.isdir(path):
        raise NotADirectoryError(path)
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            rel_root = os.path.relpath(root, path)
            if not files and not dirs and rel_root != ".":
                zf.writestr(zipfile.ZipInfo(rel_root.replace(os.sep, "/") + "/", _STAMP), b"")
            for name in sorted(files):
                full = os.path.join(root, name)
                st = os.stat(full)
                if not stat.S_ISREG(st.st_mode):
                    continue
                total += st.st_size
                if total > limit:
                    raise PackageTooLarge(total)
                rel = os.path.normpath(os.path.join(rel_root, name)).replace(os.sep, "/")
                info = zipfile.ZipInfo(rel, _STAMP)
                info.external_attr = (st.st_mode & 0o777 | stat.S_IFREG) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(full, "rb") as f:
                    zf.writestr(info, f.read())
    data = buf.getvalue()
    if len(data) > limit:
        raise PackageTooLarge(len(data))
    return f"_ray_pkg_{hashlib.sha1(data).hexdigest()}.zip", data
