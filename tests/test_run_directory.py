"""The run directory under /tmp against a real second user (issue 14, item 3).

When XDG_RUNTIME_DIR is unset the run directory is ``<tmp>/rqa-otel-<uid>``,
a name anyone can take first. Here the user ``nobody`` (setpriv, a real
second uid) plants it before the strategy starts: a 0777 directory with a
quotas.json that refuses workers, a forged agent status that says the
strategy is over its quota, and a ``processes`` symlink into a directory
``nobody`` chooses; or a symlink as the run directory itself. Before: all of
it was trusted (workers refused, /ready 503, <pid>.json written into
nobody's directory). After: the directory is refused with a message naming
path, owner, mode and fix, and the strategy runs on without the registry.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from backends import free_port

REPO = Path(__file__).resolve().parent.parent
SETPRIV = shutil.which("setpriv")


def _can_switch_user() -> bool:
    if SETPRIV is None or os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _can_switch_user(), reason="needs root and setpriv to act as the real second user 'nobody'"
)


def as_nobody(code: str, *args: str) -> None:
    """Run Python ``code`` as the user nobody (a real other uid)."""
    subprocess.run(
        [SETPRIV, "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", sys.executable, "-c", code, *args],
        check=True, timeout=30, env={"PATH": os.environ.get("PATH", "")},
    )


@pytest.fixture
def sticky_tmp():
    """A world-writable sticky directory like /tmp (tmp_path is 0700: nobody could not enter it)."""
    base = Path(tempfile.mkdtemp(prefix="rqa-run-dir-test-", dir="/tmp"))
    base.chmod(0o1777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


STRATEGY = textwrap.dedent(
    """
    import json, sys, urllib.request
    import rqa_otel
    from rqa_otel.resources.quota import ResourceManager
    port, out = int(sys.argv[1]), sys.argv[2]
    telemetry = rqa_otel.setup(strategy="alpha", overrides={"ops.http_port": port, "export.directory": out})
    manager = ResourceManager(telemetry)
    workers = [manager.register_strategy_worker("alpha", f"w{i}") for i in range(3)]
    try:
        ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5).status
    except urllib.error.HTTPError as error:
        ready = error.code
    print(json.dumps({"workers": workers, "ready": ready}), flush=True)
    telemetry.shutdown()
    """
)


def run_strategy(base: Path, tmp_path: Path) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env.update(TMPDIR=str(base), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", STRATEGY, str(free_port()), str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_a_run_directory_planted_by_another_user_is_refused_and_the_strategy_runs_on(sticky_tmp, tmp_path):
    run_dir = sticky_tmp / f"rqa-otel-{os.getuid()}"
    elsewhere = sticky_tmp / "chosen-by-nobody"
    as_nobody(
        textwrap.dedent(
            """
            import json, os, sys, time
            run, elsewhere = sys.argv[1], sys.argv[2]
            os.umask(0)
            os.mkdir(elsewhere, 0o777)
            os.mkdir(run, 0o777)
            os.mkdir(os.path.join(run, "agent"), 0o777)
            os.mkdir(os.path.join(run, "workers"), 0o777)
            os.symlink(elsewhere, os.path.join(run, "processes"))
            with open(os.path.join(run, "quotas.json"), "w") as f:
                json.dump({"alpha": {"max_workers": 1}}, f)
            with open(os.path.join(run, "agent", "status.json"), "w") as f:
                json.dump({"at": time.time() + 3600, "interval_s": 1,
                           "breaches": [{"strategy": "alpha", "resource": "cpu"}]}, f)
            """
        ),
        str(run_dir), str(elsewhere),
    )
    assert run_dir.stat().st_uid == pwd.getpwnam("nobody").pw_uid

    result, stderr = run_strategy(sticky_tmp, tmp_path)

    assert result == {"workers": [1, 2, 3], "ready": 200}, stderr  # nothing planted was believed
    assert list(elsewhere.iterdir()) == []  # no <pid>.json in nobody's directory
    refusal = [line for line in stderr.splitlines() if "refusing the run directory" in line]
    assert refusal, stderr
    line = refusal[0]
    assert str(run_dir) in line and f"uid {pwd.getpwnam('nobody').pw_uid} (nobody)" in line
    assert "mode 0777" in line and "Fix: remove" in line and "registry.dir" in line
    assert len(stderr.splitlines()) <= 4, stderr  # one refusal per place, no traceback
    assert "Traceback" not in stderr


def test_a_symlink_as_run_directory_is_refused_even_to_a_directory_of_the_users_own(sticky_tmp, tmp_path):
    own = tmp_path / "my-own"  # the user's, 0700: a link to it is still a link someone else made
    own.mkdir(mode=0o700)
    run_dir = sticky_tmp / f"rqa-otel-{os.getuid()}"
    as_nobody("import os, sys; os.symlink(sys.argv[1], sys.argv[2])", str(own), str(run_dir))

    result, stderr = run_strategy(sticky_tmp, tmp_path)

    assert result["ready"] == 200 and result["workers"] == [1, 2, 3]
    assert list(own.iterdir()) == []
    assert "refusing the run directory" in stderr and "a symbolic link owned by uid" in stderr, stderr


def test_a_fresh_run_directory_is_created_0700_with_0600_files_and_used(sticky_tmp, tmp_path):
    result, stderr = run_strategy(sticky_tmp, tmp_path)
    run_dir = sticky_tmp / f"rqa-otel-{os.getuid()}"
    assert "refusing" not in stderr
    assert result == {"workers": [1, 2, 3], "ready": 200}
    for directory in (run_dir, run_dir / "processes", run_dir / "workers", run_dir / "agent"):
        assert stat.S_IMODE(directory.lstat().st_mode) == 0o700, directory
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert written and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written), written


def test_a_users_own_run_directory_open_to_others_is_refused_with_chmod_as_the_fix(tmp_path):
    from rqa_otel.resources.registry import Registry, UnsafeRunDirectory

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o755)
    with pytest.raises(UnsafeRunDirectory, match=rf"mode 0755.*Fix: chmod 700 {run_dir}"):
        Registry(run_dir).ensure()
    assert issubclass(UnsafeRunDirectory, OSError)
