"""Loaders by name: ``ml-100k``, ``ml-1m``, ``ml-1m-half``, ``amazon-beauty`` and ``csv``.

Each loader reads the official files from ``<data_dir>/<name>/`` and returns raw frames with llmkt's column
names (``interactions``, ``items``, ``users``). MovieLens archives missing locally are downloaded from GroupLens
when ``download=True`` and verified (see ``docs/data.md``); offline, the error says which files to put where.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import io
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from llmkt.data import columns as C
from llmkt.errors import DataError, DatasetNotFoundError

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]


@dataclass
class RawData:
    """Frames as read from disk, before preprocessing."""

    interactions: pd.DataFrame
    items: pd.DataFrame | None
    users: pd.DataFrame | None
    name: str


@dataclass(frozen=True)
class Archive:
    url: str
    md5: str  # published by GroupLens next to the archive
    member_dir: str  # folder inside the zip
    sha256: dict[str, str]  # sha256 of extracted files, checked after extraction


ARCHIVES = {
    "ml-100k": Archive("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                       "0e33842e24a9c977be4e0107933c0723", "ml-100k",
                       {"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
                        "u.item": "6dd287831559152bea892eb27694a492ff14926ac5f7a16e5f8c4968e6fe13c3"}),
    "ml-1m": Archive("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                     "c4d9eecfca2ab87c1945afe126590906", "ml-1m",
                     {"movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"}),
}


def default_data_dir() -> Path:
    """``$LLMKT_DATA`` if set, else ``~/.cache/llmkt/data``."""
    env = os.environ.get("LLMKT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llmkt" / "data"


def _file_hash(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_movielens(name: str, data_dir: Path) -> Path:
    """Download and verify a MovieLens archive into ``data_dir/name``; returns that folder."""
    arch = ARCHIVES[name]
    target = data_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        zpath = Path(tmp) / f"{name}.zip"
        try:
            with urllib.request.urlopen(arch.url, timeout=60) as r, open(zpath, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise DatasetNotFoundError(f"could not download {arch.url} ({e}); {_offline_hint(name, data_dir)}") from e
        md5 = _file_hash(zpath, "md5")
        if md5 != arch.md5:
            raise DataError(f"{arch.url}: md5 {md5} differs from the published {arch.md5}; download corrupted.")
        with zipfile.ZipFile(zpath) as z:
            z.extractall(tmp)
        src = Path(tmp) / arch.member_dir
        for fname, expected in arch.sha256.items():
            got = _file_hash(src / fname, "sha256")
            if got != expected:
                raise DataError(f"{name}/{fname}: sha256 {got} differs from the expected {expected}.")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(src), target)
    return target


_REQUIRED_FILES = {
    "ml-100k": ["u.data", "u.item"],
    "ml-1m": ["ratings.dat (or ratings.dat.gz)", "movies.dat"],
    "ml-1m-half": ["ratings.dat.gz (or ratings.dat)", "movies.dat"],
    "amazon-beauty": ["sequences.txt", "items.tsv"],
    "amazon-book-rlmrec": ["train.tsv", "valid.tsv", "test.tsv", "items.tsv", "item_profiles.csv", "users.tsv"],
    "csv": ["interactions.csv", "items.csv (optional)", "users.csv (optional)"],
}


def _offline_hint(name: str, data_dir: Path) -> str:
    files = ", ".join(_REQUIRED_FILES.get(name, []))
    online = (" or, on a machine with internet, set data.download: true (`llmkt train --download` or "
              "`--set data.download=true`)") if name in ARCHIVES else ""
    return (f"put the official files ({files}) into {data_dir / name}/{online}. The data folder is "
            "--data-dir / data.data_dir, else $LLMKT_DATA, else ~/.cache/llmkt/data.")


def _need(folder: Path, name: str, data_dir: Path, *candidates: str) -> Path:
    for c in candidates:
        p = folder / c
        if p.exists():
            return p
    raise DatasetNotFoundError(f"dataset {name!r}: none of {list(candidates)} found in {folder}; "
                               f"{_offline_hint(name, data_dir)}")


def _read_text(path: Path, encoding: str = "latin-1") -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return f.read().decode(encoding)


def _decode(path: Path, raw: bytes, encoding: str = "utf-8") -> str:
    """``raw`` decoded; a byte that is not valid ``encoding`` is an error naming the line."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        snippet = raw[max(0, e.start - 20): e.end + 20]
        raise DataError(f"{path} line {line}: byte {raw[e.start:e.end]!r} is not {encoding.upper()} (near {snippet!r}); "
                        f"the file mixes text encodings. Re-save it as {encoding.upper()}, e.g. `iconv -f latin1 -t "
                        f"utf-8 {path.name} > fixed.csv` for a Latin-1 file.") from None


def _first_bad_line(path: Path, text: str, sep: str, n_fields: int, int_fields: int) -> str:
    """Where a delimited text file breaks its format: 'line N: ...' (for messages after a parse error)."""
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(sep)
        if len(parts) != n_fields:
            return f"{path} line {i}: expected {n_fields} fields separated by {sep!r}, found {len(parts)} ({line[:80]!r})"
        for j, v in enumerate(parts[:int_fields]):
            try:
                int(v)
            except ValueError:
                return f"{path} line {i}: field {j + 1} is {v!r}, expected an integer ({line[:80]!r})"
    return f"{path}: the file does not have {n_fields} {sep!r}-separated fields on every line"


def read_table(path: Path, what: str, *, required: tuple[str, ...] = (), expected: str = "",
               sep: str = ",") -> pd.DataFrame:
    """A CSV/TSV file as a frame; every problem is a :class:`DataError` naming the file and the line."""
    raw = path.read_bytes()
    hint = f" Expected {expected}." if expected else ""
    if not raw.strip():
        raise DataError(f"{path}: the file is empty.{hint}")
    text = _decode(path, raw)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep)
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a readable {what} file ({str(e).strip()[:200]}).{hint}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(map(repr, missing))} in the header; the header has "
                        f"{list(df.columns)[:12]}.{hint} Rename the columns (first line of the file).")
    if len(df) == 0:
        raise DataError(f"{path}: the file has a header but no rows.{hint}")
    return df


def _numeric_column(df: pd.DataFrame, col: str, path: Path, *, allow_dates: bool = False) -> pd.Series:
    """``df[col]`` as numbers; the first value that is not one is an error naming its line (header = line 1)."""
    values = df[col]
    if pd.api.types.is_numeric_dtype(values):
        return values
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna() & values.notna()
    if bad.any() and allow_dates:
        try:
            dates = pd.to_datetime(values, format="ISO8601", utc=True)
            return (dates.astype("int64") // 10**9).astype(np.int64)
        except (ValueError, TypeError):
            pass
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        what = "a number" + (" (or an ISO date such as 2024-05-01T12:00:00)" if allow_dates else "")
        raise DataError(f"{path} line {row + 2}: {col} is {values.iloc[row]!r}, expected {what}; "
                        f"{int(bad.sum())} row(s) of the column are like that. Fix or drop them.")
    return num


def _split_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    m = titles.str.extract(r"^(.*?)\s*\((\d{4})\)\s*$")
    title = m[0].fillna(titles).str.strip()
    year = pd.to_numeric(m[1], errors="coerce").astype("Int64")
    return title, year


def load_ml_100k(folder: Path, data_dir: Path) -> RawData:
    udata = _need(folder, "ml-100k", data_dir, "u.data")
    try:
        inter = pd.read_csv(udata, sep="\t", header=None, names=[C.USER, C.ITEM, C.RATING, C.TIMESTAMP],
                            dtype={C.USER: np.int64, C.ITEM: np.int64, C.RATING: np.float32, C.TIMESTAMP: np.int64})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise DataError(f"{_first_bad_line(udata, _read_text(udata), chr(9), 4, 4)}; u.data has one rating per "
                        "line: user id, item id, rating, timestamp, tab-separated. The file is damaged or "
                        f"truncated: fetch it again ({_offline_hint('ml-100k', data_dir)})") from None
    inter[C.ORDER] = np.arange(len(inter), dtype=np.int64)
    uitem = _need(folder, "ml-100k", data_dir, "u.item")
    raw = pd.read_csv(io.StringIO(_read_text(uitem)), sep="|", header=None,
                      names=[C.ITEM, "raw_title", "release_date", "video_date", "url", *ML100K_GENRES])
    flags = raw[ML100K_GENRES].to_numpy(dtype=bool)
    genres = ["|".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags]
    title, year = _split_title_year(raw["raw_title"].astype(str))
    items = pd.DataFrame({C.ITEM: raw[C.ITEM].astype(np.int64), "title": title, "year": year, "genres": genres})
    users = None
    if (folder / "u.user").exists():
        users = pd.read_csv(folder / "u.user", sep="|", header=None,
                            names=[C.USER, "age", "gender", "occupation", "zip_code"], dtype={"zip_code": str})
    return RawData(inter, items, users, "ml-100k")


def load_ml_1m(folder: Path, data_dir: Path, name: str = "ml-1m") -> RawData:
    rpath = _need(folder, name, data_dir, "ratings.dat", "ratings.dat.gz")
    try:
        text = _read_text(rpath)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{rpath}: cannot be read ({e}); the file is damaged or truncated, fetch it again.") from None
    try:
        arr = np.array(text.replace("::", "\t").split(), dtype=np.int64).reshape(-1, 4)
    except ValueError:
        raise DataError(f"{_first_bad_line(rpath, text, '::', 4, 4)}; ratings.dat has 'user::item::rating::"
                        "timestamp' per line. The file is damaged or truncated: fetch it again.") from None
    inter = pd.DataFrame({C.USER: arr[:, 0], C.ITEM: arr[:, 1], C.RATING: arr[:, 2].astype(np.float32),
                          C.TIMESTAMP: arr[:, 3], C.ORDER: np.arange(len(arr), dtype=np.int64)})
    mpath = _need(folder, name, data_dir, "movies.dat", "movies.dat.gz")
    rows = [line.split("::") for line in _read_text(mpath).splitlines() if line.strip()]
    raw = pd.DataFrame(rows, columns=[C.ITEM, "raw_title", "genres"])
    title, year = _split_title_year(raw["raw_title"])
    items = pd.DataFrame({C.ITEM: raw[C.ITEM].astype(np.int64), "title": title, "year": year,
                          "genres": raw["genres"].str.strip()})
    users = None
    upath = folder / "users.dat"
    if upath.exists():
        rows = [line.split("::") for line in _read_text(upath).splitlines() if line.strip()]
        users = pd.DataFrame(rows, columns=[C.USER, "gender", "age", "occupation", "zip_code"])
        users[C.USER] = users[C.USER].astype(np.int64)
        users["age"] = users["age"].astype(np.int64)
    return RawData(inter, items, users, name)


def load_amazon_beauty(folder: Path, data_dir: Path) -> RawData:
    spath = _need(folder, "amazon-beauty", data_dir, "sequences.txt")
    users, items_ = [], []
    with open(spath, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            users.extend([parts[0]] * (len(parts) - 1))
            items_.extend(parts[1:])
    try:
        inter = pd.DataFrame({C.USER: np.array(users, dtype=np.int64), C.ITEM: np.array(items_, dtype=np.int64)})
    except ValueError:
        with open(spath, encoding="utf-8") as f:
            text = f.read()
        bad = next((i for i, ln in enumerate(text.splitlines(), 1)
                    if any(not t.lstrip("-").isdigit() for t in ln.split())), "?")
        raise DataError(f"{spath} line {bad}: expected integer ids (user id, then item ids, space-separated).") \
            from None
    # No timestamps: the position in the file is the time order.
    inter[C.ORDER] = np.arange(len(inter), dtype=np.int64)
    inter[C.TIMESTAMP] = inter[C.ORDER]
    items = None
    ipath = folder / "items.tsv"
    if ipath.exists():
        items = pd.read_csv(ipath, sep="\t", dtype={"asin": str, "title": str}, keep_default_na=False,
                            quoting=3)
        items["title"] = items["title"].map(html.unescape)
    upath = folder / "users.tsv"
    users_df = pd.read_csv(upath, sep="\t") if upath.exists() else None
    return RawData(inter, items, users_df, "amazon-beauty")


def load_amazon_book_rlmrec(folder: Path, data_dir: Path) -> RawData:
    """RLMRec's Amazon-book: ``train.tsv``, ``valid.tsv``, ``test.tsv`` (``user_id<TAB>item_id``, no time) as the
    interactions in that order (the file order is the time order), ``items.tsv`` with each item's GPT-3.5 profile
    from ``item_profiles.csv`` as its ``text`` field, ``users.tsv``. Its own split: ``split: {kind: given, train:
    "{data}/train.tsv", valid: "{data}/valid.tsv", test: "{data}/test.tsv"}`` (``{data}`` = this folder)."""
    name = "amazon-book-rlmrec"
    parts = []
    for part in ("train", "valid", "test"):
        path = _need(folder, name, data_dir, f"{part}.tsv")
        df = read_table(path, part, required=(C.USER, C.ITEM), sep="\t",
                        expected="a header user_id<TAB>item_id and one interaction per line")
        parts.append(df[[C.USER, C.ITEM]].astype(np.int64))
    inter = pd.concat(parts, ignore_index=True)
    inter[C.ORDER] = np.arange(len(inter), dtype=np.int64)
    inter[C.TIMESTAMP] = inter[C.ORDER]
    items = None
    if (folder / "items.tsv").exists():
        items = read_table(folder / "items.tsv", "items", required=(C.ITEM,), sep="\t")
        prof = folder / "item_profiles.csv"
        if prof.exists():
            texts = pd.read_csv(prof, dtype={"profile_text": str}, keep_default_na=False)
            texts = texts.rename(columns={"item_id_int": C.ITEM, "profile_text": "text"})[[C.ITEM, "text"]]
            items = items.merge(texts, on=C.ITEM, how="left")
    users = read_table(folder / "users.tsv", "users", required=(C.USER,), sep="\t") \
        if (folder / "users.tsv").exists() else None
    return RawData(inter, items, users, name)


INTERACTIONS_CSV = ("a header line user_id,item_id[,timestamp][,rating] and one interaction per line "
                    "(timestamp: a number or an ISO date; rating: a number)")


def load_csv_folder(folder: Path, data_dir: Path, name: str = "csv") -> RawData:
    """``interactions.csv`` (``user_id, item_id[, timestamp][, rating]``), optional ``items.csv`` (``item_id`` +
    text fields) and ``users.csv`` (``user_id`` + fields), UTF-8. Every problem names the file and the line."""
    ipath = _need(folder, name, data_dir, "interactions.csv")
    inter = read_table(ipath, "interactions", required=(C.USER, C.ITEM), expected=INTERACTIONS_CSV)
    for col in (C.USER, C.ITEM):
        if inter[col].isna().any():
            row = int(np.flatnonzero(inter[col].isna().to_numpy())[0])
            raise DataError(f"{ipath} line {row + 2}: {col} is empty; every interaction needs a user and an item.")
    if C.RATING in inter.columns:
        inter[C.RATING] = _numeric_column(inter, C.RATING, ipath)
    if C.TIMESTAMP in inter.columns:
        inter[C.TIMESTAMP] = _numeric_column(inter, C.TIMESTAMP, ipath, allow_dates=True)
    items = users = None
    if (folder / "items.csv").exists():
        items = read_table(folder / "items.csv", "items", required=(C.ITEM,),
                           expected="a header line item_id,<text fields> (e.g. title,genres) and one item per line")
    if (folder / "users.csv").exists():
        users = read_table(folder / "users.csv", "users", required=(C.USER,),
                           expected="a header line user_id,<fields> and one user per line")
    return RawData(inter, items, users, name)


_LOADERS: dict[str, Callable[[Path, Path], RawData]] = {
    "ml-100k": load_ml_100k,
    "ml-1m": load_ml_1m,
    "ml-1m-half": lambda folder, data_dir: load_ml_1m(folder, data_dir, "ml-1m-half"),
    "amazon-beauty": load_amazon_beauty,
    "amazon-book-rlmrec": load_amazon_book_rlmrec,
    "csv": load_csv_folder,
}


def available_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_raw(name: str, data_dir: str | Path | None = None, *, path: str | Path | None = None,
             download: bool = False) -> RawData:
    """Read dataset ``name`` from ``data_dir/name`` (or from ``path`` for ``csv`` or a custom folder)."""
    if name not in _LOADERS:
        raise DataError(f"data.name: unknown dataset {name!r}; available: {available_datasets()}. "
                        "For your own data use name 'csv' with data.path pointing to a folder with interactions.csv.")
    base = Path(data_dir).expanduser() if data_dir else default_data_dir()
    folder = Path(path).expanduser() if path else base / name
    if name == "csv" and path is None:
        raise DataError("data.path: dataset 'csv' needs the folder holding interactions.csv (and optional "
                        "items.csv, users.csv); set data.path.")
    if not folder.exists():
        if download and name in ARCHIVES:
            folder = download_movielens(name, base)
        else:
            raise DatasetNotFoundError(f"dataset {name!r}: folder {folder} does not exist; {_offline_hint(name, base)}")
    return _LOADERS[name](folder, base)
