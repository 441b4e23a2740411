"""Profile every user's training history once, store each profile as soon as it exists (objects in, report out).

:func:`generate` takes a :class:`ProfileJob` (what identifies the job's profiles: prompt, budget, generation
settings, model id), the users' training histories, a store path and a backend factory. Local backends run in
``workers`` processes, each with its own model (two 1-thread workers beat one 2-thread process on 2 cores,
docs/profiles.md); an HTTP backend runs ``concurrency`` requests in one asyncio loop. Workers write to the store
themselves, so a crash of the parent loses nothing that was finished, and they exit when the parent dies.
``llmkt.experiments.profiles`` builds all of this from a profile-job config.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from llmkt.data.splits import Split
from llmkt.errors import ConfigError
from llmkt.profiles.backends.base import Backend, BackendError, GenerationSettings
from llmkt.profiles.history import UserHistory, detect_domain, history_hash, user_key
from llmkt.profiles.prompts import PromptTemplate
from llmkt.profiles.quality import QualityRules, flags
from llmkt.profiles.store import LeaseKeeper, ProfileRecord, ProfileStore, new_owner, profile_key
from llmkt.profiles.strategies import Budget, ProfileBuilder


@dataclass(frozen=True)
class PromptSpec:
    """Which prompt: a built-in style or a .j2 file, the system message, the item line, the domain."""

    template: str = "structured"
    system: str | None = None
    item_line: str | None = None
    domain: str = "auto"  # auto: detected from the dataset's items

    def load(self, domain: str) -> PromptTemplate:
        return PromptTemplate.load(self.template, domain, self.system, self.item_line)


@dataclass(frozen=True)
class ProfileJob:
    """Everything that identifies a job's profiles and turns a history into a stored record (picklable, so worker
    processes get it as is). Build it with :meth:`of`."""

    dataset: str
    split: str  # JSON description of the split the histories come from
    domain: str
    model_id: str
    prompt: PromptSpec
    budget: Budget
    settings: GenerationSettings
    prompt_hash: str
    settings_hash: str
    quality: QualityRules = field(default_factory=QualityRules)
    uses_prompt: bool = True  # False for backends that describe a history themselves (template)
    empty_retries: int = 2

    @classmethod
    def of(cls, split: Split, model_id: str, prompt: PromptSpec, budget: Budget, settings: GenerationSettings, *,
           quality: QualityRules | None = None, uses_prompt: bool = True, hashed_settings: dict | None = None,
           empty_retries: int = 2, prompt_hash: str | None = None) -> "ProfileJob":
        """The job of ``split``'s training histories; ``hashed_settings`` (default: ``settings``) is what the
        settings part of the store key covers; ``prompt_hash`` replaces the prompt's (imported profiles: the
        file's hash)."""
        domain = prompt.domain if prompt.domain != "auto" else detect_domain(split.dataset.items)
        prompt_hash = prompt_hash or prompt.load(domain).hash({"budget": budget.as_dict(), "domain": domain})
        hashed = hashed_settings if hashed_settings is not None else settings.as_dict()
        settings_hash = hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]
        split_desc = json.dumps({"kind": split.kind, **split.params}, sort_keys=True, default=str)
        return cls(split.dataset.name, split_desc, domain, model_id, prompt, budget, settings, prompt_hash,
                   settings_hash, quality or QualityRules(), uses_prompt, empty_retries)

    def flagger(self) -> Callable[[str], list[str]]:
        """The quality check of this job's outputs (``quality`` rules; ``echo`` against this job's prompt)."""
        instructions = self.prompt.load(self.domain).instructions(self.domain) if self.uses_prompt else ""
        rules = self.quality
        return lambda text: flags(text, rules, instructions)

    def key(self, h: UserHistory) -> str:
        return profile_key(self.dataset, user_key(h.user_id), history_hash(h.keys()), self.prompt_hash,
                           self.model_id, self.settings_hash)


class EmptyAnswer(Exception):
    """A backend answered with empty or whitespace-only text (retried with the next seed by the generator)."""


class Generator:
    """One backend + prompt builder; ``profile(history)`` returns a record ready for the store."""

    def __init__(self, job: ProfileJob, backend: Backend):
        self.job = job
        self.backend = backend
        self.template = job.prompt.load(job.domain)
        self.builder = ProfileBuilder(self.template, job.budget, job.domain, backend.count_tokens)
        self.settings = job.settings

    async def aprofile(self, h: UserHistory, attempt: int = 0) -> ProfileRecord:
        """One user's profile. An empty or whitespace-only answer (from any backend) is a failed attempt: it is
        retried with the next seed up to ``job.empty_retries`` times, then reported as a :class:`BackendError` for
        this user; it is never returned, so it never reaches the store."""
        tries = self.job.empty_retries + 1
        for k in range(tries):
            try:
                return await self._aprofile(h, attempt + k)
            except EmptyAnswer:
                continue
        raise BackendError(f"the LLM answered with empty text {tries} time(s) (seeds "
                           f"{self.settings.seed + attempt}..{self.settings.seed + attempt + tries - 1}); nothing "
                           "stored. Rerun to retry, or check the prompt and backend.model.")

    async def _aprofile(self, h: UserHistory, attempt: int) -> ProfileRecord:
        t0 = time.perf_counter()
        settings = self.settings
        if attempt:
            settings = replace(settings, seed=settings.seed + attempt)
        if self.backend.uses_prompt:
            async def call(messages):
                g = await self.backend.acomplete(messages, settings)
                if not isinstance(g.text, str) or not g.text.strip():
                    raise EmptyAnswer()
                return g

            res = await self.builder.build(h, call)
            text, seen, calls, pt, ct = res.text, res.seen, res.calls, res.prompt_tokens, res.completion_tokens
        else:
            seen, _ = self.builder.select(h)
            g = self.backend.describe(seen)
            text, calls, pt, ct = g.text, 0, 0, 0
        if not text.strip():
            raise EmptyAnswer()
        ts, order = h.cutoff
        return ProfileRecord(
            key=self.job.key(h), dataset=self.job.dataset, user_id=user_key(h.user_id),
            history_hash=history_hash(h.keys()), prompt_hash=self.job.prompt_hash, model_id=self.job.model_id,
            settings_hash=self.job.settings_hash, split=self.job.split, cutoff_timestamp=ts, cutoff_order=order,
            n_items=len(seen), history=json.dumps(seen.keys(), separators=(",", ":")), text=text, calls=calls,
            prompt_tokens=pt, completion_tokens=ct, seconds=time.perf_counter() - t0, attempt=attempt,
            settings=json.dumps(settings.as_dict() if self.backend.uses_prompt else {}, sort_keys=True),
            created=time.time())


@dataclass
class GenerateReport:
    store: Path
    users: int
    cached: int
    generated: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    flagged: int = 0
    in_flight_elsewhere: int = 0  # users skipped because another process holds their lease
    not_in_dataset: int = 0  # imported profiles whose id is no user of the job
    stored_elsewhere: int = 0  # users another process stored while this one was running
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class _Progress:
    """A bar on a terminal; in a log file (overnight jobs) a plain line once a minute instead of bar frames."""

    def __init__(self, total: int, enabled: bool, report: GenerateReport, log_every: float = 60.0):
        self.tty = sys.stderr.isatty()
        self.enabled = enabled
        self.total = total
        self.bar = tqdm(total=total, unit="profile", disable=not (enabled and self.tty), dynamic_ncols=True,
                        file=sys.stderr, mininterval=0.5)
        self.report = report
        self.t0 = self.last_line = time.perf_counter()
        self.done = 0
        self.log_every = log_every

    def update(self, outcome: str, rec: ProfileRecord | None = None, error: str | None = None) -> None:
        """``outcome``: ``inserted``, ``failed``, ``busy`` (another process holds the user), ``elsewhere``
        (another process stored it first)."""
        r = self.report
        if outcome == "inserted" and rec is not None:
            r.generated += 1
            r.prompt_tokens += rec.prompt_tokens
            r.completion_tokens += rec.completion_tokens
        elif outcome == "failed":
            r.failed += 1
            if error and len(r.errors) < 20:
                r.errors.append(error)
        elif outcome == "busy":
            r.in_flight_elsewhere += 1
        elif outcome == "elsewhere":
            r.stored_elsewhere += 1
        r.seconds = time.perf_counter() - self.t0
        self.done += 1
        self.bar.set_postfix(tok_s=f"{r.tokens_per_s:.1f}", tokens=r.prompt_tokens + r.completion_tokens,
                             failed=r.failed, refresh=False)
        self.bar.update(1)
        now = time.perf_counter()
        if self.enabled and not self.tty and (now - self.last_line >= self.log_every or self.done == self.total):
            self.last_line = now
            print(f"profiles: {self.done}/{self.total} done ({r.generated} new, {r.failed} failed, "
                  f"{r.in_flight_elsewhere + r.stored_elsewhere} left to another process), {r.seconds:.0f} s, "
                  f"{r.tokens_per_s:.1f} completion tokens/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


# -- worker processes -----------------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


async def _one_task(gen: Generator, store: ProfileStore, owner: str, h: UserHistory, attempt: int, replace: bool
                    ) -> tuple[str, ProfileRecord | None, str | None]:
    """Claim the user's key (a lease: another process skips it meanwhile), generate, store, release.
    Returns ``(outcome, record, error)``, outcome as in :meth:`_Progress.update`."""
    key = gen.job.key(h)
    state = store.claim(key, owner, redo=replace)
    if state != "claimed":
        return ("elsewhere" if state == "done" else "busy"), None, None
    try:
        rec = await gen.aprofile(h, attempt)
        inserted = store.add(rec, replace=replace)
        return ("inserted" if inserted else "elsewhere"), rec, None
    except BackendError as e:
        return "failed", None, f"user {h.user_id!r}: {e}"
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - one user's failure (a backend bug, a bad reply) never ends the job
        return "failed", None, f"user {h.user_id!r}: {type(e).__name__}: {e}"
    finally:
        store.release(key, owner)


def _worker(job: ProfileJob, make_backend: Callable[[], Backend], store_path: str, tasks: Any, results: Any,
            parent: int) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        backend = make_backend()
        gen = Generator(job, backend)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which stops the job
        results.put(("fatal", None, f"{type(e).__name__}: {e}"))
        return
    owner = new_owner()
    with ProfileStore(store_path) as store, LeaseKeeper(store_path, owner):
        while True:
            try:
                task = tasks.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:
                    return
                continue
            if task is None:
                break
            h, attempt, replace = task
            try:
                results.put(asyncio.run(_one_task(gen, store, owner, h, attempt, replace)))
            except ConfigError as e:
                results.put(("fatal", None, str(e)))
                return
    backend.close()


def _run_workers(job: ProfileJob, make_backend: Callable[[], Backend], store_path: Path,
                 todo: list[tuple[UserHistory, int, bool]], progress: _Progress, n_workers: int) -> None:
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for t in todo:
        tasks.put(t)
    for _ in range(n_workers):
        tasks.put(None)
    procs = [ctx.Process(target=_worker, args=(job, make_backend, str(store_path), tasks, results, os.getpid()),
                         daemon=True) for _ in range(n_workers)]
    for p in procs:
        p.start()
    try:
        done = 0
        while done < len(todo):
            try:
                kind, rec, err = results.get(timeout=2.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise BackendError("all profile workers exited early; see the messages above.") from None
                continue
            if kind == "fatal":
                raise BackendError(f"a profile worker could not go on: {err}")
            progress.update(kind, rec, err)
            done += 1
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)


async def _run_async(gen: Generator, store: ProfileStore, todo: list[tuple[UserHistory, int, bool]],
                     progress: _Progress, concurrency: int, owner: str) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(h: UserHistory, attempt: int, replace: bool) -> None:
        async with sem:
            progress.update(*await _one_task(gen, store, owner, h, attempt, replace))

    try:
        await asyncio.gather(*(one(*t) for t in todo))
    finally:
        client = getattr(gen.backend, "client", None)
        if client is not None:
            await client.aclose()


# -- public API -----------------------------------------------------------------------------------------------------
def generate(job: ProfileJob, histories: list[UserHistory], store_path: str | Path,
             make_backend: Callable[[], Backend], *, workers: int = 1, concurrency: int = 1, progress: bool = True,
             retry_flagged: bool = False) -> GenerateReport:
    """Generate the missing profiles of ``histories`` (or, with ``retry_flagged``, regenerate the flagged ones with
    the next seed) into the store at ``store_path`` and return a report.

    ``make_backend()`` builds one backend; with ``workers > 1`` each worker process calls it (it must be picklable,
    e.g. a ``functools.partial`` of a backend class). ``concurrency`` requests are in flight in the single-process
    path (HTTP backends)."""
    store_path = Path(store_path)
    with ProfileStore(store_path) as store:
        keys = [job.key(h) for h in histories]
        have = store.existing(keys)
        todo: list[tuple[UserHistory, int, bool]]
        check = job.flagger()
        if retry_flagged:
            recs = {r.key: r for r in store.records(keys=[k for k in keys if k in have])}
            todo = [(h, recs[k].attempt + 1, True) for h, k in zip(histories, keys)
                    if k in recs and check(recs[k].text)]
        else:
            todo = [(h, 0, False) for h, k in zip(histories, keys) if k not in have]
        report = GenerateReport(store_path, len(histories), len(have))
        if not todo:
            return report
        bar = _Progress(len(todo), progress, report)
        try:
            if workers > 1:
                _run_workers(job, make_backend, store_path, todo, bar, min(workers, len(todo)))
            else:
                backend = make_backend()
                owner = new_owner()
                try:
                    gen = Generator(job, backend)
                    with LeaseKeeper(store_path, owner):
                        asyncio.run(_run_async(gen, store, todo, bar, concurrency, owner))
                finally:
                    backend.close()
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            bar.close()
        if retry_flagged:
            report.flagged = sum(1 for r in store.records(keys=keys) if check(r.text))
    return report
