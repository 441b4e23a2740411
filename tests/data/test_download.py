"""The download path, exercised against a local archive (file:// URL): checksum accepted and rejected."""

import hashlib
import zipfile

import pytest

from llmkt.data import loaders
from llmkt.data.loaders import Archive, load_raw
from llmkt.errors import DataError

U_DATA = "1\t10\t5\t100\n1\t11\t3\t200\n2\t10\t4\t150\n"
U_ITEM = "10|Movie A (1995)|01-Jan-1995||url|" + "|".join(["0"] * 18 + ["1"]) + "\n" + \
         "11|Movie B (1996)|01-Jan-1996||url|" + "|".join(["0"] * 8 + ["1"] + ["0"] * 10) + "\n"


def _archive(tmp_path):
    z = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("ml-100k/u.data", U_DATA)
        f.writestr("ml-100k/u.item", U_ITEM.encode("latin-1"))
    md5 = hashlib.md5(z.read_bytes()).hexdigest()
    sha = {"u.data": hashlib.sha256(U_DATA.encode()).hexdigest()}
    return z, md5, sha


def test_download_verifies_and_extracts(tmp_path, monkeypatch):
    z, md5, sha = _archive(tmp_path)
    monkeypatch.setitem(loaders.ARCHIVES, "ml-100k", Archive(z.as_uri(), md5, "ml-100k", sha))
    home = tmp_path / "home"
    raw = load_raw("ml-100k", home, download=True)
    assert len(raw.interactions) == 3 and (home / "ml-100k" / "u.data").exists()
    assert raw.items.set_index("item_id").loc[10, "genres"] == "Western"


def test_download_rejects_bad_checksum(tmp_path, monkeypatch):
    z, md5, sha = _archive(tmp_path)
    monkeypatch.setitem(loaders.ARCHIVES, "ml-100k", Archive(z.as_uri(), "0" * 32, "ml-100k", sha))
    with pytest.raises(DataError, match="md5 .* differs from the published"):
        load_raw("ml-100k", tmp_path / "home", download=True)
    assert not (tmp_path / "home" / "ml-100k").exists()  # nothing half-extracted is left behind
    monkeypatch.setitem(loaders.ARCHIVES, "ml-100k", Archive(z.as_uri(), md5, "ml-100k", {"u.data": "f" * 64}))
    with pytest.raises(DataError, match="sha256"):
        load_raw("ml-100k", tmp_path / "home", download=True)
