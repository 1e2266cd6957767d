"""Test-wide set-up: 8 host CPU devices (before JAX starts) and shared fixtures."""

import os

# Multi-device behaviour is tested on 8 host CPU devices; this must precede JAX's start.
_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import hypothesis  # noqa: E402

hypothesis.settings.register_profile(
    "seqjax", deadline=None, max_examples=25, derandomize=True, print_blob=True
)
hypothesis.settings.load_profile("seqjax")
