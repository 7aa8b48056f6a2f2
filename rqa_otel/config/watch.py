"""Reload settings when their files change, whatever way they are saved.

Editors and Kubernetes often produce no ``modified`` event for the file
itself: vim renames a temporary file over it, a ConfigMap volume swaps its
``..data`` symlink. So the watcher watches the parent directories (watchdog,
inotify on Linux) and reacts to created, moved, deleted and
closed-after-write events of the settings files and of ``..*`` entries.
Writes, opens, reads and attribute changes raise no event at all (the
kernel does not report them): the directory may hold files written all the
time (a journal, telemetry files), and each event costs watchdog's threads
Python work while the program runs; an in-place save ends with its
closed-after-write event, and the content hash decides anyway.
Events are debounced (``config.debounce_s`` of quiet), and a reload happens
only when the files' content hash differs from the last load's: one save,
one reload. A slow poll (``config.poll_interval_s``) compares the hash too,
for file systems without events (NFS, some container mounts).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

_log = logging.getLogger("rqa_otel.config")
# Our own reads raise these; reacting to them would make a loop (the
# inotify mask below asks for none of them; a custom observer might).
_IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})
_TEARDOWN_DELAY_S = 0.5
# The events asked of the kernel (watchdog builds the inotify mask from them).
_EVENTS = [
    FileCreatedEvent, DirCreatedEvent, FileMovedEvent, DirMovedEvent, FileDeletedEvent, DirDeletedEvent,
    FileClosedEvent,
]


class SettingsWatcher(FileSystemEventHandler):
    def __init__(self, live, debounce_s: float, poll_interval_s: float) -> None:
        self._live = live
        self._debounce_s = debounce_s
        self._poll_interval_s = poll_interval_s
        self._wake = threading.Condition()
        self._last_event = 0.0
        self._pending = False
        self._forced: str | None = None
        self._stopped = False
        self._observer = Observer()
        self._observer.daemon = True
        self._directories: set[str] = set()
        self._names: frozenset[str] = frozenset()
        self._any_yaml_in: frozenset[str] = frozenset()
        self._thread = threading.Thread(target=self._run, name="rqa-config-watch", daemon=True)

    def start(self) -> None:
        self._follow(self._live.watched_files, getattr(self._live, "watched_directories", ()))
        self._observer.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; returns without waiting for a thread. Our thread,
        woken, stops watchdog's observer on its way out (stopping it joins
        watchdog's three threads: at a short program's exit the waits were
        most of this call). No reload is applied once ``LiveSettings.close()``
        returns: that is its lock's job, not a join's."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        # No event from here on: the files a program creates and closes while
        # it exits (its telemetry files, often beside the settings file)
        # would keep watchdog's threads busy beside the last flush. Stopping
        # an emitter removes its inotify watch and waits for nothing.
        try:
            for emitter in list(self._observer.emitters):
                emitter.stop()
        except Exception:
            _log.debug("settings watcher: stopping watchdog's emitters failed", exc_info=True)
        if not self._thread.is_alive():  # never started, or ended: nobody else will
            self._stop_observer()

    def _stop_observer(self) -> None:
        try:
            self._observer.stop()
        except Exception:  # watchdog's teardown failing changes nothing for the program
            _log.debug("settings watcher: stopping watchdog failed", exc_info=True)

    def poke(self, force: str | None = None) -> None:
        """Note a change; ``force`` (a trigger name) reloads even if the hash
        is the same (SIGHUP: the environment may have changed)."""
        with self._wake:
            self._pending = True
            self._last_event = time.monotonic()
            if force:
                self._forced = force
            self._wake.notify_all()

    def _follow(self, files, directories=()) -> None:
        self._names = frozenset(os.path.basename(os.fspath(path)) for path in files)
        # A config_dir: any .yaml/.yml there counts, including one created later.
        self._any_yaml_in = frozenset(os.path.abspath(os.fspath(d)) for d in directories)
        for path in files:
            directory = os.path.dirname(os.path.abspath(os.fspath(path)))
            if directory not in self._directories and os.path.isdir(directory):
                self._observer.schedule(self, directory, recursive=False, event_filter=_EVENTS)
                self._directories.add(directory)

    # watchdog's thread
    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED_EVENTS:
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            name = os.path.basename(os.fsdecode(path)) if path else ""
            if name in self._names or name.startswith(".."):
                self.poke()
                return
            if (name.lower().endswith((".yaml", ".yml")) and self._any_yaml_in
                    and os.path.dirname(os.path.abspath(os.fsdecode(path))) in self._any_yaml_in):
                self.poke()
                return

    # our thread
    def _run(self) -> None:
        try:
            self._watch()
        finally:
            # watchdog's teardown (its three threads woken and joined, the
            # inotify descriptor closed) waits a moment: close() is most
            # often part of a program's exit, whose last flush it would
            # otherwise compete with for the GIL. The observer is idle by
            # now (no reload can follow), and a program that goes on gets
            # its threads back a moment later.
            time.sleep(_TEARDOWN_DELAY_S)
            self._stop_observer()

    def _watch(self) -> None:
        while True:
            with self._wake:
                if not self._pending and not self._stopped:
                    self._wake.wait(self._poll_interval_s)
                if self._stopped:
                    return
                # Debounce: wait until events have been quiet for debounce_s.
                while self._pending and not self._stopped:
                    quiet_for = time.monotonic() - self._last_event
                    if quiet_for >= self._debounce_s:
                        break
                    self._wake.wait(self._debounce_s - quiet_for)
                if self._stopped:
                    return
                trigger = "file" if self._pending else "poll"
                forced, self._forced, self._pending = self._forced, None, False
            try:
                self._live.reload_watched(forced or trigger, if_changed=not forced)
                self._follow(self._live.watched_files, getattr(self._live, "watched_directories", ()))
            except Exception:  # the watcher outlives any one reload
                _log.warning("settings watcher: reload failed unexpectedly", exc_info=True)
