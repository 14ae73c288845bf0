import zipfile
from pathlib import Path

import pytest

from cli import datasets


def test_the_cache_lives_under_crm_cache_dir(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CRM_CACHE_DIR", str(tmp_path))
    assert datasets.cache_dir() == tmp_path / "datasets"


def test_a_wheel_whose_sample_does_not_match_the_pinned_hash_is_refused(tmp_path: Path):
    wheel = tmp_path / "Lifetimes-0.11.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(datasets.CDNOW_MEMBER, " 00004 0001 19970101  2   29.33\n")
    with pytest.raises(datasets.DatasetUnavailable, match="SHA-256"):
        datasets.extract_cdnow(wheel)


def test_a_wheel_without_the_sample_is_refused(tmp_path: Path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("x.txt", "")
    with pytest.raises(datasets.DatasetUnavailable, match="has no"):
        datasets.extract_cdnow(wheel)


def test_a_verified_copy_in_the_checkout_is_used_without_downloading(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CRM_CACHE_DIR", str(tmp_path))
    if not datasets.CHECKOUT_COPY.is_file():
        pytest.skip("no tests/data/CDNOW_sample.txt in this checkout")
    monkeypatch.setattr(datasets.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    assert datasets.cdnow_sample() == datasets.CHECKOUT_COPY
