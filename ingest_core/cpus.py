"""How many CPUs this process may really use: affinity and the cgroup CPU quota, not the host's core count.

``os.cpu_count()`` is the host's: a container started with ``--cpus 1`` on a 16-core host sees 16, and a
prefork pool sized from it forks 16 children that share one CPU (and 16 times the memory). The quota is
read from cgroup v2 (``cpu.max``, every level from this process's cgroup up to the root) or v1
(``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); a fractional quota rounds up (1.5 CPUs: 2 processes).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cpus(root: str | os.PathLike[str] = "/") -> int:
    """CPUs this process can use: the smaller of its affinity set and its cgroup quota, at least 1.

    ``root`` prefixes every path read (``/proc``, the cgroup mounts), for tests.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(root: str | os.PathLike[str] = "/") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (1.5 = one and a half), or None when unlimited."""
    base = Path(root)
    try:
        cgroups = (base / "proc/self/cgroup").read_text().splitlines()
        mounts = (base / "proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in cgroups:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            limits += _v2_limits(base, mounts, path)
        elif "cpu" in controllers.split(","):
            limits += _v1_limits(base, mounts, path)
    return min(limits) if limits else None


def _mount_dirs(base: Path, mounts: list[str], fstype: str, option: str | None, path: str) -> list[Path]:
    """Directories of cgroup ``path`` under each matching mount, from that cgroup up to the mount's root.

    mountinfo: ``id parent major:minor root mountpoint options ... - fstype source superoptions``. In a
    container with its own cgroup namespace the mount root is ``/`` and ``path`` is ``/``; on the host
    (or without a namespace) ``path`` is the full path and the mount root tells what to strip.
    """
    dirs = []
    for line in mounts:
        fields, sep, tail = line.partition(" - ")
        parts, tail_parts = fields.split(), tail.split()
        if not sep or len(parts) < 5 or len(tail_parts) < 3 or tail_parts[0] != fstype:
            continue
        if option is not None and option not in tail_parts[2].split(","):
            continue
        mount_root, mount_point = parts[3], parts[4]
        rel = path
        if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
            rel = path[len(mount_root) :]
        directory = base / mount_point.lstrip("/") / rel.strip("/")
        top = base / mount_point.lstrip("/")
        while True:
            dirs.append(directory)
            if directory == top or top not in directory.parents:
                break
            directory = directory.parent
    return dirs


def _v2_limits(base: Path, mounts: list[str], path: str) -> list[float]:
    limits = []
    for directory in _mount_dirs(base, mounts, "cgroup2", None, path):
        try:
            quota, _, period = (directory / "cpu.max").read_text().strip().partition(" ")
        except OSError:
            continue
        if quota != "max" and period and int(period) > 0 and int(quota) > 0:
            limits.append(int(quota) / int(period))
    return limits


def _v1_limits(base: Path, mounts: list[str], path: str) -> list[float]:
    limits = []
    for directory in _mount_dirs(base, mounts, "cgroup", "cpu", path):
        try:
            quota = int((directory / "cpu.cfs_quota_us").read_text())
            period = int((directory / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:  # -1: unlimited
            limits.append(quota / period)
    return limits
