"""The results store: one SQLite row per finished grid cell, surviving any crash.

A cell is keyed by ``cell_id``, a hash of everything that determines its numbers (suite,
attack and its parameters and surrogates, eps, defense and its members, seed, data, n).
Each cell is written in its own committed transaction, so a run killed at any point loses
at most the cell it was computing, and a re-run skips every recorded cell. Adversarial
sets are recorded in ``adv_sets`` beside the files that hold them.

A finished cell's per-example outcomes (which test points the defense classified correctly
clean, and under the attack) go into ``outcomes`` in the same transaction as the cell, as
bit-packed 0/1 arrays (``numpy.packbits``, 1250 bytes per array for 10 000 points): the
per-example worst case needs them, and a cell is never recorded without them. A failed
cell has none. A cascaded cell (and its set) records in ``attacked`` how many points its
attack ran on. A store written before a column existed gets it, empty, when it is opened.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd

CELL_COLUMNS = {
    "cell_id": "TEXT PRIMARY KEY", "suite": "TEXT", "attack": "TEXT", "eps": "REAL", "defense": "TEXT",
    "seed": "INTEGER", "n": "INTEGER", "clean_acc": "REAL", "robust_acc": "REAL", "success_rate": "REAL",
    "linf_mean": "REAL", "linf_max": "REAL", "l2_mean": "REAL", "l2_max": "REAL",
    "craft_time_s": "REAL", "eval_time_s": "REAL", "status": "TEXT", "error": "TEXT",
    "adv_key": "TEXT", "finished_at": "TEXT", "versions": "TEXT", "attacked": "INTEGER",
}
ADV_COLUMNS = {
    "adv_key": "TEXT PRIMARY KEY", "suite": "TEXT", "attack": "TEXT", "eps": "REAL", "n": "INTEGER",
    "path": "TEXT", "craft_time_s": "REAL", "created_at": "TEXT", "attacked": "INTEGER",
}
OUTCOME_COLUMNS = {"cell_id": "TEXT PRIMARY KEY", "n": "INTEGER", "clean_correct": "BLOB", "adv_correct": "BLOB"}
OUTCOMES = ("clean_correct", "adv_correct")  # a cell record's per-example arrays (bool, one entry per test point)


class ResultStore:
    """``ResultStore(path)``: put/get cells and adversarial-set records in one SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            for table, columns in (("cells", CELL_COLUMNS), ("adv_sets", ADV_COLUMNS), ("outcomes", OUTCOME_COLUMNS)):
                db.execute(_create(table, columns))
                present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column in columns.keys() - present:  # a store written before the column existed: added, empty
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {columns[column]}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA synchronous=FULL")
        return db

    def finished_ids(self) -> set[str]:
        with closing(self._connect()) as db:
            return {row[0] for row in db.execute("SELECT cell_id FROM cells")}

    def discard_failed(self, cell_ids) -> int:
        """Forgets the failed cells among ``cell_ids`` (so that a run computes them again); how many there were."""
        ids = list(cell_ids)
        with closing(self._connect()) as db, db:
            return sum(db.execute("DELETE FROM cells WHERE status != 'ok' AND cell_id = ?", (cell_id,)).rowcount
                       for cell_id in ids)

    def discard(self, cell_ids, adv_keys) -> int:
        """Forgets ``cell_ids`` and the records of the adversarial sets ``adv_keys`` (``--fresh``; their files are the
        caller's to delete); how many of the cells there were."""
        with closing(self._connect()) as db, db:
            for key in adv_keys:
                db.execute("DELETE FROM adv_sets WHERE adv_key = ?", (key,))
            cell_ids = list(cell_ids)
            db.executemany("DELETE FROM outcomes WHERE cell_id = ?", [(cell_id,) for cell_id in cell_ids])
            return sum(db.execute("DELETE FROM cells WHERE cell_id = ?", (cell_id,)).rowcount for cell_id in cell_ids)

    def failed_ids(self, cell_ids) -> list[str]:
        """The ids among ``cell_ids`` recorded as failed."""
        with closing(self._connect()) as db:
            failed = {row[0] for row in db.execute("SELECT cell_id FROM cells WHERE status != 'ok'")}
        return [cell_id for cell_id in cell_ids if cell_id in failed]

    def put_cell(self, cell: dict) -> None:
        """Records a finished cell and, for an ``ok`` one, its per-example outcomes (``clean_correct`` and
        ``adv_correct``: bool arrays over the test points), in one transaction; a cell already recorded is never
        overwritten. An ``ok`` cell without its outcomes is refused (a ValueError): its worst case could not be
        taken per example."""
        row = {key: cell.get(key) for key in CELL_COLUMNS}
        if isinstance(row["versions"], dict):
            row["versions"] = json.dumps(row["versions"], sort_keys=True)
        outcome = _outcome_row(cell) if row["status"] == "ok" else None
        with closing(self._connect()) as db, db:
            inserted = db.execute(f"INSERT OR IGNORE INTO cells ({', '.join(row)}) "
                                  f"VALUES ({', '.join('?' * len(row))})", list(row.values())).rowcount
            if inserted and outcome is not None:
                db.execute("INSERT OR REPLACE INTO outcomes (cell_id, n, clean_correct, adv_correct) "
                           "VALUES (?, ?, ?, ?)", (row["cell_id"], *outcome))

    def outcomes(self, cell_ids=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``cell_id -> (clean_correct, adv_correct)`` (bool arrays, one entry per test point, in test-set order) of
        the cells in ``cell_ids`` (all if None) that have them: every ``ok`` cell written by this version."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT cell_id, n, clean_correct, adv_correct FROM outcomes").fetchall()
        wanted = None if cell_ids is None else set(cell_ids)
        return {cell_id: (_unpack(clean, n), _unpack(adv, n)) for cell_id, n, clean, adv in rows
                if wanted is None or cell_id in wanted}

    def cells(self, cell_ids=None) -> pd.DataFrame:
        """All recorded cells in the order they finished, or those whose id is in ``cell_ids`` in that order.

        Ordering by ``cell_ids`` (the grid's order) makes a grid's table the same whichever
        order its cells finished in: resumed, retried, or run in parallel by an executor.
        """
        with closing(self._connect()) as db:
            frame = pd.read_sql_query("SELECT * FROM cells ORDER BY rowid", db)
        if cell_ids is not None:
            order = {cell_id: i for i, cell_id in enumerate(dict.fromkeys(cell_ids))}
            frame = frame[frame["cell_id"].isin(order)].sort_values("cell_id", key=lambda ids: ids.map(order),
                                                                    kind="stable").reset_index(drop=True)
        return frame

    def put_adv_set(self, record: dict) -> None:
        row = {key: record.get(key) for key in ADV_COLUMNS}
        with closing(self._connect()) as db, db:
            db.execute(f"INSERT OR REPLACE INTO adv_sets ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       list(row.values()))

    def adv_set(self, adv_key: str) -> dict | None:
        with closing(self._connect()) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM adv_sets WHERE adv_key = ?", (adv_key,)).fetchone()
        return dict(row) if row else None

    def saved_adv_set(self, adv_key: str) -> dict | None:
        """The record of a set that can be reloaded: recorded, and its file still there; else None (craft it)."""
        record = self.adv_set(adv_key)
        return record if record and Path(record["path"]).is_file() else None


def _outcome_row(cell: dict) -> tuple[int, bytes, bytes]:
    arrays = [cell.get(key) for key in OUTCOMES]
    if any(array is None for array in arrays):
        raise ValueError(f"cell {cell.get('cell_id')} is ok but lacks its per-example outcomes ({', '.join(OUTCOMES)})")
    clean, adv = (np.asarray(array, dtype=bool).ravel() for array in arrays)
    if len(clean) != len(adv):
        raise ValueError(f"cell {cell.get('cell_id')}: {len(clean)} clean outcomes but {len(adv)} under attack")
    return len(clean), np.packbits(clean).tobytes(), np.packbits(adv).tobytes()


def _unpack(blob: bytes, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=n).astype(bool)


def _create(table: str, columns: dict) -> str:
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{k} {t}' for k, t in columns.items())})"
