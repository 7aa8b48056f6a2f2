"""Per-strategy quotas: the design's ResourceManager, with its flaws fixed.

- A quota is compared with the strategy's OWN usage: the sum over its
  registered processes (``sampling.aggregate_by_strategy``), never the
  machine's total.
- CPU is in percent of ONE core (``250`` = two and a half cores busy), so a
  quota means the same on every machine; at most 100 x the host's cores.
- Memory is RSS and GPU memory the driver's per-process figure, both in MiB.
- Readings are smoothed by an exponential moving average (as QuantConnect
  Lean's Isolator smooths memory before it enforces its cap), starting from
  0, so one spike does not flap: ``ema += smoothing * (reading - ema)``.
  A step to k x the quota is caught after n collections where
  ``(1 - smoothing)**n < 1 - 1/k``; with the default 0.5 that is the first
  collection for k >= 2 and the second for k >= 4/3.
- Levels by smoothed usage / quota: ``warning`` from 0.8 (``agent.warn_ratio``),
  ``breach`` from 1.0; a breach ends when it falls below 0.9 (hysteresis).
- A breach episode is ONE alert-tagged span ``quota_breach`` (critical)
  when it starts and ONE ``rqa.quota.recovered`` event when it ends; the
  counters ``rqa.quota.breaches`` and ``rqa.quota.recoveries`` count exactly
  those. Entering ``warning`` logs one ``rqa.quota.warning`` event; it is
  not an alert.
- ``max_workers`` is enforced when a worker registers: the check and the
  write happen under the run directory's lock (``registry.Registry``), so
  threads and processes racing for the last slot never let one too many in.

``Quota`` (the limits, as settings give them) lives in rqa_otel.config.quotas
and is re-exported here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from opentelemetry.metrics import Observation

from rqa_otel import names
from rqa_otel._util.weak import subscribe_while_alive
from rqa_otel.config.quotas import Quota
from rqa_otel.resources.registry import Registry, UnsafeRunDirectory

if TYPE_CHECKING:
    from rqa_otel.resources.sampling import StrategyUsage
    from rqa_otel.telemetry import Telemetry

_log = logging.getLogger("rqa_otel.quota")

MIB = 1 << 20
RESOURCES = ("cpu", "memory", "gpu_memory")
"""The smoothed resources, as the ``rqa.quota.resource`` attribute; ``workers``
is the fourth value of that attribute (a count, not smoothed)."""
RECOVER_BELOW = 0.9
LEVELS = ("ok", "warning", "breach")


class QuotaExceeded(RuntimeError):
    """A worker registration that would exceed the strategy's max_workers."""

    def __init__(self, strategy: str, resource: str, limit: float, current: float, message: str) -> None:
        super().__init__(message)
        self.strategy = strategy
        self.resource = resource
        self.limit = limit
        self.current = current


@dataclass
class _Track:
    """Smoothed usage of one (strategy, resource) and its open episode."""

    ema: float = 0.0
    level: str = "ok"
    episode_id: str | None = None
    episode_started: float | None = None
    peak: float = 0.0


@dataclass(frozen=True)
class QuotaCheck:
    """``check_quota(strategy)``: true while no resource is in breach."""

    strategy: str
    quota: Quota
    levels: Mapping[str, str]
    """Resource -> ok | warning | breach."""
    usage: Mapping[str, float]
    """Resource -> smoothed usage (percent of a core, MiB), or workers."""
    workers: int

    @property
    def ok(self) -> bool:
        return "breach" not in self.levels.values()

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class Transition:
    """What one ``observe`` changed: for logs, tests and the agent's status."""

    strategy: str
    resource: str
    level: str
    previous: str
    value: float
    limit: float
    episode_id: str | None = None
    at: float = field(default_factory=time.time)


class ResourceManager:
    """Quotas, worker registration and breach episodes of the strategies.

    Quotas come from settings (``quotas.<strategy>.*``), overlaid by those set
    at run time with ``set_strategy_quota`` (kept in the run directory's
    quotas.json, so every process and the agent see them). ``apply_quotas``
    swaps the settings layer at once: all validated first, nothing
    half-applied. A manager built from a telemetry handle (and no explicit
    ``quotas``) calls it itself whenever ``telemetry.live_settings`` reloads with
    changed quotas (hot reload).

    ``observe(usage)`` is the agent's per-collection step; with a telemetry
    handle, breaches become alert spans, events and counters there.
    """

    def __init__(
        self,
        telemetry: "Telemetry | None" = None,
        *,
        registry: Registry | None = None,
        quotas: Mapping[str, Quota | Mapping[str, Any]] | None = None,
        smoothing: float | None = None,
        warn_ratio: float | None = None,
        cpu_count: int | None = None,
    ) -> None:
        settings = telemetry.settings if telemetry is not None else None
        self._telemetry = telemetry
        self.registry = registry or Registry(settings.registry.dir if settings else None)
        self.cpu_count = cpu_count or os.cpu_count() or 1
        self.smoothing = smoothing if smoothing is not None else (settings.agent.smoothing if settings else 0.5)
        self.warn_ratio = warn_ratio if warn_ratio is not None else (settings.agent.warn_ratio if settings else 0.8)
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"smoothing = {self.smoothing!r}: expected a number in (0, 1]")
        if not 0 < self.warn_ratio < 1:
            raise ValueError(f"warn_ratio = {self.warn_ratio!r}: expected a number in (0, 1)")
        self._lock = threading.RLock()
        self._configured: dict[str, Quota] = {}
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._runtime_cache: tuple[tuple[int, int, int], dict[str, Quota]] | None = None
        # When the run directory is refused (registry.UnsafeRunDirectory):
        # quotas and workers of this process only, so the strategy goes on.
        self._unpersisted: dict[str, Quota] = {}
        self._local_workers: dict[str, dict[str, dict]] = {}
        self._warned_unsafe = False
        self.apply_quotas(quotas if quotas is not None else (settings.quotas if settings else {}))
        self._instruments = _Instruments(self, telemetry) if telemetry is not None else None
        config = getattr(telemetry, "live_settings", None)
        if quotas is None and config is not None:
            # Hot reload: a reload that changed ``quotas`` applies them here,
            # all at once; a failed reload changes nothing (and alerts).
            subscribe_while_alive(self, lambda callback: config.on_change("quotas", callback), self._settings_changed)

    # --- quotas --------------------------------------------------------------

    def apply_quotas(self, quotas: Mapping[str, Quota | Mapping[str, Any]]) -> None:
        """Replace the configured (settings) quotas as a whole: every one is
        validated before any takes effect. Run-time quotas still win."""
        validated = {
            str(strategy): (q if isinstance(q, Quota) else Quota.from_mapping(str(strategy), q, self.cpu_count)).validated(
                str(strategy), self.cpu_count
            )
            for strategy, q in quotas.items()
        }
        with self._lock:
            self._configured = validated

    def _settings_changed(self, key: str, old: Mapping[str, Quota], new: Mapping[str, Quota]) -> None:
        self.apply_quotas(new)
        _log.info("quotas applied from the reloaded settings: %s", ", ".join(sorted(new)) or "none")

    def set_strategy_quota(
        self,
        strategy: str,
        cpu: float | None = None,
        gpu_memory: float | None = None,
        max_workers: int | None = None,
        memory: float | None = None,
    ) -> Quota:
        """The design's call: ``cpu`` in percent of one core, ``gpu_memory``
        and ``memory`` (RSS) in MiB, None for no limit. Persisted in the run
        directory (every process and the agent see it); raises ValueError for
        a bad value, and then nothing changes."""
        if not isinstance(strategy, str) or not strategy:
            raise ValueError(f"strategy must be a non-empty string, got {strategy!r}")
        quota = Quota(cpu, memory, gpu_memory, max_workers).validated(strategy, self.cpu_count)

        def change(stored: dict) -> dict:
            stored[strategy] = quota.as_dict()
            return stored

        try:
            self.registry.update_quotas(change)
        except UnsafeRunDirectory as exc:
            self._unsafe(exc, f"the quota of {strategy} applies in this process only")
            with self._lock:
                self._unpersisted[strategy] = quota
        with self._lock:
            self._runtime_cache = None
        return quota

    def clear_strategy_quota(self, strategy: str) -> bool:
        """Remove the run-time quota ``set_strategy_quota`` stored (it is kept
        in the run directory, so it outlives the process that set it): the
        settings' quota, if any, applies again. True if there was one."""
        removed = []

        def change(stored: dict) -> dict:
            if stored.pop(strategy, None) is not None:
                removed.append(strategy)
            return stored

        try:
            self.registry.update_quotas(change)
        except UnsafeRunDirectory as exc:
            self._unsafe(exc, f"the run-time quota of {strategy} is removed in this process only")
        with self._lock:
            if self._unpersisted.pop(strategy, None) is not None:
                removed.append(strategy)
            self._runtime_cache = None
        return bool(removed)

    def _unsafe(self, exc: UnsafeRunDirectory, consequence: str) -> None:
        with self._lock:
            first, self._warned_unsafe = not self._warned_unsafe, True
        (_log.warning if first else _log.debug)("%s; %s", exc, consequence)

    def quota(self, strategy: str) -> Quota:
        """The quota in effect: run-time (set_strategy_quota) over settings; no limits if neither."""
        runtime = self._runtime_quotas()
        with self._lock:
            return self._unpersisted.get(strategy) or runtime.get(strategy) or self._configured.get(strategy) or Quota()

    def quotas(self) -> dict[str, Quota]:
        runtime = self._runtime_quotas()
        with self._lock:
            return {**self._configured, **runtime, **self._unpersisted}

    def _runtime_quotas(self) -> dict[str, Quota]:
        path = self.registry.quotas_path
        try:
            stat = path.stat()
        except OSError:
            return {}
        # Every write renames a new file into place: a new inode, even when
        # two writes fall in one tick of a coarse file-system clock.
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._runtime_cache is not None and self._runtime_cache[0] == version:
                return self._runtime_cache[1]
        quotas = {}
        for strategy, data in (self.registry.read_json(path, {}) or {}).items():
            try:
                quotas[strategy] = Quota.from_mapping(strategy, data, self.cpu_count)
            except ValueError as exc:  # a hand-edited file: skip that entry, say so
                _log.warning("ignoring run-time quota in %s: %s", path, exc)
        with self._lock:
            self._runtime_cache = (version, quotas)
        return quotas

    # --- workers ---------------------------------------------------------------

    def register_strategy_worker(self, strategy: str, worker_id: str, pid: int | None = None) -> int:
        """Register a worker of ``strategy`` (process ``pid``, default this
        one); returns the number of workers now registered. Raises
        QuotaExceeded when max_workers are registered already; workers of
        processes that died are not counted."""
        if not isinstance(worker_id, str) or not worker_id:
            raise ValueError(f"worker_id must be a non-empty string, got {worker_id!r}")
        limit = self.quota(strategy).max_workers

        def admit(live: dict[str, dict]) -> None:
            if limit is not None and len(live) >= limit:
                if self._instruments is not None:
                    self._instruments.refused(strategy)
                raise QuotaExceeded(
                    strategy, "workers", limit, len(live),
                    f"strategy {strategy!r} already has {len(live)} of max_workers={limit} workers registered "
                    f"({', '.join(sorted(live)) or 'none'}); worker {worker_id!r} refused",
                )

        try:
            return len(self.registry.add_worker(strategy, worker_id, pid, admit))
        except UnsafeRunDirectory as exc:
            self._unsafe(exc, "max_workers is enforced within this process only")
        with self._lock:
            local = self._local_workers.setdefault(strategy, {})
            if worker_id not in local:
                admit(local)
                local[worker_id] = {"pid": pid}
            return len(local)

    def unregister_strategy_worker(self, strategy: str, worker_id: str) -> bool:
        """True if the worker was registered. An unknown strategy or worker
        is a documented no-op (False): unregistering in a ``finally`` after a
        failed registration must not raise."""
        with self._lock:
            if self._local_workers.get(strategy, {}).pop(worker_id, None) is not None:
                return True
        return self.registry.remove_worker(strategy, worker_id)

    @contextlib.contextmanager
    def worker(self, strategy: str, worker_id: str | None = None) -> Iterator[str]:
        """``with manager.worker("mean_rev", "w1"):`` registered for the
        block, unregistered after it (also on error); QuotaExceeded when
        max_workers would be exceeded. Yields the worker id (a random one
        when none is given)."""
        worker_id = worker_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.register_strategy_worker(strategy, worker_id)
        try:
            yield worker_id
        finally:
            self.unregister_strategy_worker(strategy, worker_id)

    # --- enforcement ------------------------------------------------------------

    def observe(self, usage: Mapping[str, "StrategyUsage"], now: float | None = None) -> list[Transition]:
        """One collection: smooth each quota'd strategy's usage (a strategy
        with no live process reads 0), move levels, and raise breach alerts
        and recovery events. Returns the level changes."""
        now = time.time() if now is None else now
        transitions: list[Transition] = []
        quotas = self.quotas()
        with self._lock:
            for strategy, quota in quotas.items():
                current = usage.get(strategy)
                for resource in RESOURCES:
                    limit = quota.limit(resource)
                    if limit is None:
                        self._tracks.pop((strategy, resource), None)
                        continue
                    reading = _reading(current, resource)
                    if reading is None:
                        continue  # no GPU figure: neither usage nor recovery
                    track = self._tracks.setdefault((strategy, resource), _Track())
                    track.ema += self.smoothing * (reading - track.ema)
                    change = self._move(strategy, resource, track, limit, now)
                    if change is not None:
                        transitions.append(change)
            for key in [key for key in self._tracks if key[0] not in quotas]:
                del self._tracks[key]  # quota removed: its episode ends silently
        for change in transitions:
            self._announce(change)
        return transitions

    def _move(self, strategy: str, resource: str, track: _Track, limit: float, now: float) -> Transition | None:
        ratio = track.ema / limit
        previous = track.level
        if ratio >= 1.0:
            level = "breach"
        elif previous == "breach" and ratio >= RECOVER_BELOW:
            level = "breach"
        elif ratio >= self.warn_ratio:
            level = "warning"
        else:
            level = "ok"
        if level == "breach":
            track.peak = max(track.peak, track.ema)
        if level == previous:
            return None
        track.level = level
        change = Transition(strategy, resource, level, previous, track.ema, limit, track.episode_id, now)
        if level == "breach":
            track.episode_id = change.episode_id = uuid.uuid4().hex[:16]
            track.episode_started = now
            track.peak = track.ema
        elif previous == "breach":
            track.episode_id = None
            track.episode_started = None
        return change

    def _announce(self, change: Transition) -> None:
        unit = _UNITS[change.resource]
        if change.level == "breach":
            _log.warning("quota breach: strategy %s %s %.1f%s > quota %g%s", change.strategy, change.resource,
                         change.value, unit, change.limit, unit)
        if self._instruments is not None:
            self._instruments.announce(change)

    def check_quota(self, strategy: str) -> QuotaCheck:
        """The strategy's levels as of the last collection, and its workers."""
        quota = self.quota(strategy)
        with self._lock:
            levels = {r: t.level for (s, r), t in self._tracks.items() if s == strategy}
            usage = {r: t.ema for (s, r), t in self._tracks.items() if s == strategy}
        workers = len(self.registry.workers(strategy))
        if quota.max_workers is not None:
            levels["workers"] = "breach" if workers > quota.max_workers else "ok"
        usage["workers"] = workers
        return QuotaCheck(strategy, quota, levels, usage, workers)

    def open_episodes(self) -> dict[tuple[str, str], dict]:
        with self._lock:
            return {
                key: {"episode_id": t.episode_id, "started": t.episode_started, "peak": t.peak, "ema": t.ema}
                for key, t in self._tracks.items()
                if t.level == "breach"
            }

    def tracks(self) -> dict[tuple[str, str], tuple[float, str]]:
        """(strategy, resource) -> (smoothed usage, level)."""
        with self._lock:
            return {key: (t.ema, t.level) for key, t in self._tracks.items()}

    # --- persistence (the agent's restart) -----------------------------------------

    def state(self) -> dict:
        """Smoothed usage, levels and open episodes, as JSON-able data."""
        with self._lock:
            return {f"{s}\t{r}": asdict(t) for (s, r), t in self._tracks.items()}

    def restore(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Continue from ``state()`` of an earlier run: an episode open then
        stays open, so a restarted agent raises no second alert for it."""
        tracks = {}
        for key, data in (state or {}).items():
            strategy, _, resource = str(key).partition("\t")
            if resource not in RESOURCES:
                continue
            try:
                track = _Track(**data)
            except TypeError:
                continue
            if track.level not in LEVELS:
                continue
            tracks[(strategy, resource)] = track
        with self._lock:
            self._tracks = tracks


_UNITS = {"cpu": "% of a core", "memory": " MiB", "gpu_memory": " MiB", "workers": " workers"}


def _reading(usage: "StrategyUsage | None", resource: str) -> float | None:
    if usage is None:
        return 0.0
    if resource == "cpu":
        return usage.cpu_percent
    if resource == "memory":
        return usage.rss_bytes / MIB
    gpu = usage.gpu_memory_bytes
    return None if gpu is None else gpu / MIB


class _Instruments:
    """The manager's counters, gauges, alert spans and events in one handle's pipeline."""

    def __init__(self, manager: ResourceManager, telemetry: "Telemetry") -> None:
        self._manager = manager
        self._telemetry = telemetry
        meter = telemetry.meter
        self._breaches = meter.create_counter(
            names.QUOTA_BREACHES_COUNTER, unit="{episode}",
            description="Quota breach episodes started (one quota_breach alert each), by strategy and resource.",
        )
        self._recoveries = meter.create_counter(
            names.QUOTA_RECOVERIES_COUNTER, unit="{episode}",
            description="Quota breach episodes ended (one rqa.quota.recovered event each), by strategy and resource.",
        )
        self._refusals = meter.create_counter(
            names.QUOTA_WORKERS_REFUSED_COUNTER, unit="{worker}",
            description="Worker registrations refused because max_workers were registered, by strategy.",
        )
        # Unit "1" only where the value is a ratio: limits and usage are in
        # each resource's own unit, and a state is a code, so Prometheus
        # names (which give unit-1 gauges `_ratio`) say what they hold.
        gauges = (
            (names.QUOTA_LIMIT_GAUGE, self._limits, "",
             "Quota per strategy and resource (cpu: percent of one core; memory, gpu_memory: MiB; workers)."),
            (names.QUOTA_USAGE_GAUGE, self._usage, "",
             "Smoothed (EMA) usage compared with the quota, in the quota's unit; workers: registered now."),
            (names.QUOTA_UTILIZATION_GAUGE, self._utilization, "1",
             "Smoothed usage / quota: 0.8 warns, 1.0 is a breach."),
            (names.QUOTA_STATE_GAUGE, self._state, "{state}",
             "Quota level per strategy and resource: 0 ok, 1 warning, 2 breach."),
        )
        for name, callback, unit, description in gauges:
            meter.create_observable_gauge(name, [callback], unit=unit, description=description)

    @staticmethod
    def _attributes(strategy: str, resource: str) -> dict[str, str]:
        return {names.STRATEGY: strategy, names.QUOTA_RESOURCE: resource}

    # Limits and usage are always floats: InfluxDB keeps one type per field
    # of a measurement and refuses the whole write ("field type conflict")
    # when an int (workers, a whole-number quota) meets a float.
    def _limits(self, options) -> list[Observation]:
        observations = []
        for strategy, quota in self._manager.quotas().items():
            for resource in (*RESOURCES, "workers"):
                limit = quota.limit(resource)
                if limit is not None:
                    observations.append(Observation(float(limit), self._attributes(strategy, resource)))
        return observations

    def _usage(self, options) -> list[Observation]:
        observations = [
            Observation(float(ema), self._attributes(strategy, resource))
            for (strategy, resource), (ema, _) in self._manager.tracks().items()
        ]
        for strategy, workers in self._manager.registry.all_workers().items():
            observations.append(Observation(float(len(workers)), self._attributes(strategy, "workers")))
        return observations

    def _utilization(self, options) -> list[Observation]:
        quotas = self._manager.quotas()
        observations = []
        for (strategy, resource), (ema, _) in self._manager.tracks().items():
            limit = quotas.get(strategy, Quota()).limit(resource)
            if limit:
                observations.append(Observation(ema / limit, self._attributes(strategy, resource)))
        return observations

    def _state(self, options) -> list[Observation]:
        return [
            Observation(LEVELS.index(level), self._attributes(strategy, resource))
            for (strategy, resource), (_, level) in self._manager.tracks().items()
        ]

    def refused(self, strategy: str) -> None:
        self._refusals.add(1, {names.STRATEGY: strategy})

    def announce(self, change: Transition) -> None:
        attributes = {
            **self._attributes(change.strategy, change.resource),
            names.QUOTA_LIMIT: float(change.limit),
            names.QUOTA_VALUE: round(float(change.value), 3),
        }
        unit = _UNITS[change.resource]
        if change.level == "breach":
            attributes[names.QUOTA_EPISODE_ID] = change.episode_id or ""
            self._telemetry.alert(
                names.QUOTA_BREACH_ALERT, "critical", strategy=change.strategy, attributes=attributes,
                message=(f"strategy {change.strategy}: {change.resource} {change.value:.1f}{unit} (smoothed) "
                         f"exceeds its quota of {change.limit:g}{unit}"),
            )
            self._breaches.add(1, self._attributes(change.strategy, change.resource))
        elif change.previous == "breach":
            attributes[names.QUOTA_EPISODE_ID] = change.episode_id or ""
            self._telemetry.log_event(
                names.QUOTA_RECOVERED_EVENT,
                f"strategy {change.strategy}: {change.resource} back to {change.value:.1f}{unit}, under its quota "
                f"of {change.limit:g}{unit}",
                attributes,
            )
            self._recoveries.add(1, self._attributes(change.strategy, change.resource))
        elif change.level == "warning" and change.previous == "ok":
            self._telemetry.log_event(
                names.QUOTA_WARNING_EVENT,
                f"strategy {change.strategy}: {change.resource} at {change.value:.1f}{unit}, "
                f"{change.value / change.limit:.0%} of its quota of {change.limit:g}{unit}",
                attributes,
                level=logging.WARNING,
            )
