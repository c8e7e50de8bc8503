"""``lakechain.chains`` imports its chains on first use, so a run's driver stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lakechain.chains

LIGHT = """
import sys
import lakechain.chains
from lakechain.chains.chat_models import chat_endpoint, chat_server
heavy = ("langchain_core.language_models", "langchain_openai", "langsmith")
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_the_package_and_chat_server_load_no_langchain_model_code():
    out = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves_to_its_submodule():
    for name in lakechain.chains.__all__:
        assert getattr(lakechain.chains, name).__module__.startswith("lakechain.chains."), name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lakechain.chains.nope  # noqa: B018
