"""Threads that share the machine: passive OpenMP waiting and the cores this process may use."""

from __future__ import annotations

import os
import subprocess
import sys

from sepclr_med.cores import available_cores, share_cores_politely


def test_defaults_are_passive_and_sized_to_the_available_cores():
    env: dict[str, str] = {}
    assert share_cores_politely(env) is False
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OMP_NUM_THREADS"] == str(available_cores())
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))


def test_the_users_settings_win():
    env = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    assert share_cores_politely(env) is True
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["OMP_NUM_THREADS"] == "3"
    assert env["SEPCLR_THREADS_FROM_USER"] == "1"


def test_the_command_line_sets_them_before_torch_is_imported():
    code = (
        "import os, sys\n"
        "import sepclr_med.cli.main\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads())"
    )
    unset = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "SEPCLR_THREADS_FROM_USER")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["PASSIVE", str(available_cores())]
