import os

import pytest

from ingest_core.cpus import available_cpus, cgroup_cpu_quota

V2_MOUNT = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"
V1_MOUNTS = [
    "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct",
    "32 25 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory",
]


def _tree(tmp_path, cgroup: str, mounts: list[str], files: dict[str, str]):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    (tmp_path / "proc/self/mountinfo").write_text("\n".join(mounts) + "\n")
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _affinity():
    return len(os.sched_getaffinity(0))


def test_v2_quota_in_a_container_namespace(tmp_path):
    """cgroup v2 in its own namespace: cpu.max '150000 100000' is 1.5 CPUs, rounded up to 2 processes."""
    root = _tree(tmp_path, "0::/\n", [V2_MOUNT], {"sys/fs/cgroup/cpu.max": "150000 100000\n"})
    assert cgroup_cpu_quota(root) == 1.5
    assert available_cpus(root) == min(2, _affinity())


def test_v2_unlimited_is_the_affinity(tmp_path):
    """cpu.max 'max 100000' sets no limit: the affinity set decides."""
    root = _tree(tmp_path, "0::/\n", [V2_MOUNT], {"sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root) is None
    assert available_cpus(root) == _affinity()


def test_v2_nested_cgroup_takes_the_tightest_ancestor(tmp_path):
    """Without a cgroup namespace the process sits deep in the tree; a parent's smaller quota wins."""
    root = _tree(
        tmp_path,
        "0::/machine.slice/ctr/inner\n",
        [V2_MOUNT],
        {
            "sys/fs/cgroup/machine.slice/ctr/inner/cpu.max": "max 100000\n",
            "sys/fs/cgroup/machine.slice/ctr/cpu.max": "100000 100000\n",
            "sys/fs/cgroup/machine.slice/cpu.max": "400000 100000\n",
        },
    )
    assert cgroup_cpu_quota(root) == 1.0
    assert available_cpus(root) == 1


def test_v1_cfs_quota(tmp_path):
    """cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us, on a mount shared with cpuacct."""
    root = _tree(
        tmp_path,
        "4:memory:/\n3:cpu,cpuacct:/\n",
        V1_MOUNTS,
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "100000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_quota(root) == 1.0
    assert available_cpus(root) == 1


def test_v1_mount_root_is_stripped_from_the_path(tmp_path):
    """A v1 mount whose root is the container's cgroup: /proc/self/cgroup's path is relative to it."""
    mount = "31 25 0:27 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu"
    root = _tree(
        tmp_path,
        "3:cpu:/docker/abc\n",
        [mount],
        {"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_cpu_quota(root) == 0.5
    assert available_cpus(root) == 1


def test_v1_unlimited_quota(tmp_path):
    """cfs_quota_us -1 is no limit."""
    root = _tree(
        tmp_path,
        "3:cpu,cpuacct:/\n",
        V1_MOUNTS,
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_quota(root) is None


def test_no_proc_means_no_quota(tmp_path):
    """Where /proc is missing (not Linux) the answer is the affinity or the core count."""
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) >= 1


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_real_machine_answer_is_within_the_affinity():
    """On this machine the answer is between 1 and the affinity set."""
    assert 1 <= available_cpus() <= _affinity()
