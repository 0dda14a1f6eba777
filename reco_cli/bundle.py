"""The model bundle on disk: what `reco train` writes and `reco recommend` reads.

A bundle is a directory of plain arrays (`.npy`, loaded memory-mapped with allow_pickle=False),
the Annoy index, and `manifest.json` (config snapshot, data fingerprint, library versions, index
metric and dimension, measured recall, sizes, checksums). This module imports only numpy and the
standard library, so answering a user never imports polars, scikit-learn or LightFM.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelBundleError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX_FILE = "index.ann"
# Arrays every bundle has; optional ones (item titles, categories) are listed in the manifest.
REQUIRED_ARRAYS = (
    "user_ids",
    "item_ids",
    "user_vectors",
    "item_vectors",
    "item_popularity",
    "popular_order",
    "exclude_indptr",
    "exclude_indices",
    "exclude_last_seen",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_array(directory: Path, name: str, array: np.ndarray) -> str:
    if array.dtype == object:
        raise TypeError(f"{name}: object arrays would need pickle; convert to str or numbers")
    filename = f"{name}.npy"
    np.save(directory / filename, array, allow_pickle=False)
    return filename


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Checksum every file in the bundle, then write the manifest last."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            rel = str(path.relative_to(directory))
            files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = dict(manifest, format_version=FORMAT_VERSION, files=files)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def config_drift(trained: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Settings that differ between the bundle's config snapshot and the current config."""
    drift = []
    for key in sorted(set(trained) | set(current)):
        a, b = trained.get(key), current.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            drift.extend(config_drift(a, b, f"{path}."))
        elif a != b:
            drift.append(f"{path}={a!r} (config now: {b!r})")
    return drift


def model_pointer(workdir: Path) -> Path:
    return workdir / "model"


@dataclass
class Bundle:
    """A loaded, verified bundle. Arrays are memory-mapped; nothing is unpickled."""

    path: Path
    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def has(self, name: str) -> bool:
        return name in self.arrays

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", self.path.name))

    @property
    def index_info(self) -> dict[str, Any]:
        return dict(self.manifest["index"])


def load_bundle(workdir: Path, verify: bool = True, location: Path | None = None) -> Bundle:
    """Open the bundle `<workdir>/model` points at (or `location`), refusing anything suspect."""
    pointer = location or model_pointer(workdir)
    hint = "run `reco train -c <config>` to build one"
    if not pointer.exists():
        raise ModelBundleError(f"no model bundle at {pointer}; {hint}")
    path = pointer.resolve()
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ModelBundleError(f"{path} has no {MANIFEST} (incomplete or not a bundle); {hint}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelBundleError(f"{manifest_path} is not valid JSON; {hint}") from None
    if not isinstance(manifest, dict):
        raise ModelBundleError(f"{manifest_path} is not a reco manifest; {hint}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelBundleError(
            f"{path} is bundle format {version!r}, this reco reads format {FORMAT_VERSION}; "
            f"{hint} again"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ModelBundleError(f"{manifest_path} lists no files; {hint}")
    if verify:
        for rel, meta in files.items():
            file = path / rel
            if not file.is_file():
                raise ModelBundleError(f"{path}: {rel} is missing; the bundle is damaged; {hint}")
            if file.stat().st_size != meta.get("bytes") or sha256_file(file) != meta.get("sha256"):
                raise ModelBundleError(
                    f"{path}: {rel} does not match its checksum in {MANIFEST}; the bundle is "
                    f"damaged or was edited; {hint}"
                )
    arrays: dict[str, np.ndarray] = {}
    for name in (*REQUIRED_ARRAYS, *manifest.get("optional_arrays", [])):
        file = path / f"{name}.npy"
        if f"{name}.npy" not in files or not file.is_file():
            raise ModelBundleError(f"{path}: {name}.npy is missing; {hint}")
        try:
            arrays[name] = np.load(file, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise ModelBundleError(f"{path}: cannot read {name}.npy ({exc}); {hint}") from None
    return Bundle(path, manifest, arrays)
