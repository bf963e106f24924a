"""Application threads writing while a relay runs: random rollbacks, some long transactions."""

from __future__ import annotations

import itertools
import random
import threading
import time

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import auditlog

from ..models import Customer


class Writers:
    """``count`` threads committing (or rolling back) one to five customers per transaction;
    ``long`` is how long a slow transaction stays open before it commits."""

    def __init__(self, maker: sessionmaker[Session], count: int = 3, long: float = 1.0) -> None:
        auditlog.register(Customer)
        self.maker, self.long = maker, long
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.rolled_back: set[str] = set()
        self.committed = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(n,)) for n in range(count)]
        with maker.begin() as session:  # the model's content type, committed before the race
            session.add(Customer(id=next(self.ids), name="first"))
        self.committed = 1

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        assert not self.errors, self.errors

    def _write(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            with self.lock:
                ids = [next(self.ids) for _ in range(rng.randint(1, 5))]
            rollback = rng.random() < 0.25
            try:
                with auditlog.audit_context(tenant_id=f"t{seed}"), self.maker() as session:
                    session.add_all(Customer(id=i, name=f"c{i}") for i in ids)
                    session.flush()
                    if rng.random() < 0.15:
                        time.sleep(rng.uniform(0.2, self.long))  # a long transaction
                    if rollback:
                        session.rollback()
                        with self.lock:
                            self.rolled_back.update(str(i) for i in ids)
                    else:
                        session.commit()
                        with self.lock:
                            self.committed += len(ids)
            except OperationalError as exc:
                if "locked" not in str(exc):  # SQLite refused a writer (busy): rolled back
                    self.errors.append(exc)
                    return
                with self.lock:
                    self.rolled_back.update(str(i) for i in ids)
            except Exception as exc:  # reported when the writers stop
                self.errors.append(exc)
                return
            time.sleep(rng.uniform(0, 0.01))
