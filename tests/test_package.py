"""The installed distribution (what ``pip install`` put in site-packages): one version from the
Cargo workspace, the metadata PyPI shows, and the licence texts both licences require."""

from __future__ import annotations

import importlib.metadata as metadata
import re
from pathlib import Path

import rsnorm

ROOT = Path(__file__).resolve().parents[1]
DIST = "rsnorm-kernels"


def test_one_version_from_the_cargo_workspace():
    cargo = (ROOT / "Cargo.toml").read_text()
    match = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', cargo, re.M | re.S)
    assert match, "Cargo.toml has no [workspace.package] version"
    assert rsnorm.__version__ == match.group(1) == metadata.version(DIST)


def test_metadata_python_floor_urls_classifiers_and_licences():
    meta = metadata.metadata(DIST)
    assert meta["Requires-Python"] == ">=3.10"
    assert any(r.startswith("numpy>=1.22") for r in meta.get_all("Requires-Dist") or [])
    classifiers = meta.get_all("Classifier") or []
    for minor in range(10, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    # The floor: the extension uses the stable ABI of 3.10 (METH_FASTCALL).
    assert "Programming Language :: Python :: 3.9" not in classifiers
    assert "License :: OSI Approved :: MIT License" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues"} <= set(urls)
    files = {Path(str(f)).name for f in metadata.files(DIST) or []}
    assert {"LICENSE-MIT", "LICENSE-APACHE"} <= files
