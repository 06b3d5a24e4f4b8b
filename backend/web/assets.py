"""The pages' static files: read once at start-up, served under one versioned prefix.

Every file lives at `/ui/assets/<version>/<path>`, where the version is a hash of the
whole folder: any change to any file gives every URL a new name, so browsers may keep
them for a year, and the ES modules' relative imports stay inside one version.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/ui/assets"

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
# Below this, gzip's header costs more than it saves.
_MIN_GZIP_BYTES = 512


@dataclass(frozen=True, slots=True)
class Asset:
    """One file's bytes, its gzip form (when smaller) and its media type."""

    body: bytes
    gzipped: bytes | None
    media_type: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> Asset:
        """An asset, compressed once here so no request pays for it."""
        packed = None
        if len(body) > _MIN_GZIP_BYTES:
            packed = gzip.compress(body, compresslevel=9, mtime=0)  # mtime=0: same bytes each run
        return cls(body, packed if packed and len(packed) < len(body) else None, media_type)


@dataclass(frozen=True, slots=True)
class AssetBundle:
    """The static folder's files by relative path, and the version in their URLs."""

    version: str
    files: dict[str, Asset]

    @classmethod
    def load(cls, root: Path = STATIC_DIR) -> AssetBundle:
        """Read every file under `root` (only known media types are served)."""
        digest = hashlib.sha256()
        files: dict[str, Asset] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            media_type = MEDIA_TYPES.get(path.suffix)
            if media_type is None:
                continue
            name = path.relative_to(root).as_posix()
            body = path.read_bytes()
            digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
            files[name] = Asset.of(body, media_type)
        return cls(version=digest.hexdigest()[:16], files=files)

    @property
    def base(self) -> str:
        """The URL folder every asset of this version is under (no trailing slash)."""
        return f"{PREFIX}/{self.version}"

    def get(self, version: str, name: str) -> Asset | None:
        """The asset, only when asked for under the current version (an old URL: None)."""
        return self.files.get(name) if version == self.version else None
