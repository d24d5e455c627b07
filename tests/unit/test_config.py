"""Settings: defaults, VOXLINE_* variables, overrides, redaction."""

from __future__ import annotations

import dataclasses

import pytest

from voxline.config import Settings


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.bus == "memory" and s.port == 8001 and s.listen_on_connect is True


def test_env_values_are_parsed_by_field_type() -> None:
    s = Settings.from_env({
        "VOXLINE_PORT": " 9000 ",
        "VOXLINE_LLM_TEMPERATURE": "0.7",
        "VOXLINE_LISTEN_ON_CONNECT": "off",
        "VOXLINE_CORS_ORIGINS": "https://a.example, https://b.example,,",
        "VOXLINE_BUS": "kafka",
        "VOXLINE_MAX_TURN_S": "15",
    })
    assert s.port == 9000
    assert s.llm_temperature == 0.7
    assert s.listen_on_connect is False
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.bus == "kafka"
    assert s.max_turn_s == 15.0 and isinstance(s.max_turn_s, float)


@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("On", True), (" on ", True),
    ("0", False), ("false", False), ("no", False), ("off", False), ("", False),
])
def test_bool_spellings(raw: str, expected: bool) -> None:
    assert Settings.from_env({"VOXLINE_LISTEN_ON_CONNECT": raw}).listen_on_connect is expected


def test_empty_tuple_variable_gives_an_empty_tuple() -> None:
    assert Settings.from_env({"VOXLINE_CORS_ORIGINS": ""}).cors_origins == ()


@pytest.mark.parametrize("name, raw, kind", [
    ("VOXLINE_PORT", "80.5", "int"),
    ("VOXLINE_PORT", "eighty", "int"),
    ("VOXLINE_MAX_SESSIONS", "", "int"),
    ("VOXLINE_TTS_VOLUME", "loud", "float"),
    ("VOXLINE_LISTEN_ON_CONNECT", "maybe", "bool"),
])
def test_bad_values_give_a_clear_error_naming_the_variable(name: str, raw: str, kind: str) -> None:
    with pytest.raises(ValueError) as info:
        Settings.from_env({name: raw})
    message = str(info.value)
    assert name in message
    assert repr(raw) in message
    assert kind in message


def test_other_variables_are_ignored() -> None:
    assert Settings.from_env({"VOXLINE_NOT_A_SETTING": "x", "PORT": "1", "voxline_port": "2"}) == Settings()


def test_keyword_overrides_win_over_env_and_none_means_not_given() -> None:
    env = {"VOXLINE_PORT": "9000", "VOXLINE_HOST": "0.0.0.0"}
    s = Settings.from_env(env, port=9100, host=None)
    assert s.port == 9100
    assert s.host == "0.0.0.0"


def test_replace_applies_flags_and_keeps_the_rest() -> None:
    base = Settings.from_env({"VOXLINE_BUS": "kafka"})
    s = base.replace(port=1234, bus=None)
    assert s.port == 1234 and s.bus == "kafka"
    assert base.port == 8001  # settings are immutable
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXLINE_MAX_SESSIONS", "7")
    assert Settings.from_env().max_sessions == 7


def test_every_field_can_be_set_from_the_environment() -> None:
    samples = {"int": "3", "float": "2.5", "bool": "yes", "str": "text", "tuple[str, ...]": "a,b"}
    env = {f"VOXLINE_{f.name.upper()}": samples[str(f.type)] for f in dataclasses.fields(Settings)}
    s = Settings.from_env(env)
    for f in dataclasses.fields(Settings):
        value = getattr(s, f.name)
        assert type(value).__name__ == str(f.type).split("[")[0], f.name


def test_redacted_hides_secrets_and_keeps_the_rest() -> None:
    s = Settings.from_env({"VOXLINE_AUTH_TOKEN": "hunter2", "VOXLINE_API_KEY": "sk-secret"})
    out = s.redacted()
    assert out["auth_token"] == "***" and out["api_key"] == "***"
    assert "hunter2" not in repr(out) and "sk-secret" not in repr(out)
    assert out["port"] == 8001
    assert s.auth_token == "hunter2"  # the settings themselves are untouched


def test_redacted_shows_that_an_empty_secret_is_unset() -> None:
    out = Settings().redacted()
    assert out["auth_token"] == "" and out["api_key"] == ""
