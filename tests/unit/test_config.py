"""Config loading: typed sections, --set overrides, errors that name the key, secrets by reference."""

from __future__ import annotations

import os

import pytest

from lakechain.config import ConfigError, load_settings, parse_override


def test_local_yaml_loads_with_the_keys_users_rely_on(tmp_path):
    s = load_settings("conf/local.yaml")
    assert s.storage.root and s.corpus.path and s.tasks.path
    assert s.embedding.provider == "local" and s.chat.provider == "local"


def test_overrides_are_typed_and_repeatable():
    s = load_settings(
        "conf/local.yaml",
        ["storage.root=/tmp/out", "tasks.max_concurrency=3", "retrieval.mmr=true", "corpus.path=2024"],
    )
    assert s.storage.root == "/tmp/out"
    assert s.tasks.max_concurrency == 3
    assert s.retrieval.mmr is True
    assert s.corpus.path == os.path.abspath("2024")  # paths stay strings, resolved against the CWD


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "storage.rot=/x",
            r"storage\.rot: unknown key; allowed: catalog, lock_timeout_s, root, schema, volume",
        ),
        ("tasks.max_concurrency=many", r"tasks\.max_concurrency: .*integer"),
        ("tasks.max_concurrency=0", r"tasks\.max_concurrency: .*greater than or equal to 1"),
        ("embedding.provider=gemini", r"embedding\.provider: .*'local', 'openai', 'azure_openai'"),
        ("nosection.key=1", r"nosection: unknown key; allowed: chat, chunking, corpus"),
        ("images.size=big", r"images\.size: .*512x512"),
        ("tasks.cache=always", r"tasks\.cache: .*'auto', 'on' or 'off'"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        load_settings("conf/local.yaml", [override])


def test_malformed_override_and_missing_file():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("storage")
    with pytest.raises(ConfigError, match=r"config file not found: /\S*/nope\.yaml"):
        load_settings("nope.yaml")


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("storage: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(p)


def test_secrets_only_by_reference_and_never_shown(monkeypatch, caplog):
    with pytest.raises(ConfigError, match=r"chat\.api_key: write secrets by reference"):
        load_settings("conf/local.yaml", ["chat.api_key=sk-live-123"])
    monkeypatch.setenv("LC_TEST_KEY", "sk-very-secret")
    s = load_settings(
        "conf/local.yaml",
        ["chat.provider=openai", "chat.api_key=${env:LC_TEST_KEY}", "images.api_key=${secret:scope/img}"],
        secret_getter=lambda scope, key: f"from-{scope}-{key}",
    )
    assert s.chat.api_key is not None and s.chat.api_key.get_secret_value() == "sk-very-secret"
    assert s.images.api_key is not None and s.images.api_key.get_secret_value() == "from-scope-img"
    for shown in (repr(s), str(s), str(s.safe_dump()), caplog.text):
        assert "sk-very-secret" not in shown and "from-scope-img" not in shown


def test_missing_env_secret_names_the_key(monkeypatch):
    monkeypatch.delenv("LC_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match=r"embedding\.api_key: environment variable LC_NOT_SET is not set"):
        load_settings("conf/local.yaml", ["embedding.api_key=${env:LC_NOT_SET}"])


def test_remote_provider_requirements():
    s = load_settings("conf/local.yaml", ["chat.provider=azure_openai"])
    want = r"chat\.base_url, chat\.api_version, chat\.deployment, chat\.api_key"
    with pytest.raises(ConfigError, match=want):
        s.chat.check_remote("chat")


def test_safe_dump_shows_references_not_values_anywhere(monkeypatch):
    monkeypatch.setenv("LC_STORAGE_KEY", "account-key-123")
    s = load_settings("conf/local.yaml", ["spark.conf.fs.azure.account.key=${env:LC_STORAGE_KEY}"])
    assert s.spark.conf["fs.azure.account.key"] == "account-key-123"
    dumped = s.safe_dump()
    assert dumped["spark"]["conf"]["fs.azure.account.key"] == "${env:LC_STORAGE_KEY}"
    assert "account-key-123" not in str(dumped)
    assert "account-key-123" not in str(s.model_copy(deep=True).safe_dump())
