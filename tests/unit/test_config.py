"""Settings: defaults, secrets files, .env, VOXLINE_* variables, flags; every mistake one clear line."""

from __future__ import annotations

import logging
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest

from voxline.config import ENV_FILE_VAR, SECRETS_DIR_VAR, ConfigError, Settings

# Values for the fields whose text has a format (URLs, lists, paths); the rest are derived.
FORMATTED = {
    "prompt_examples": "Hello? -> Hi there. | Thanks! -> You are welcome.",
    "public_url": "https://voice.example",
    "stt_url": "http://10.0.0.1:9011",
    "llm_url": "http://10.0.0.1:9012",
    "tts_url": "https://tts.example:9013",
    "redis_url": "redis://:pw@redis.example:6379/1",
    "kafka_bootstrap": "k1.example:9092,k2.example:9093",
    "cors_origins": "https://a.example, https://b.example:8443",
    "rtc_host_addresses": "127.0.0.1,::1",
    "log_level": "debug",
    "rtc_port_range": "40000-40999",
    "ice_servers": "stun:stun.example:3478, turn:turn.example:3478",
    "allowed_hosts": "voice.example.com, calls.example.org",
    "page_servers": "https://voice.example.com",
    "trusted_proxies": "10.0.0.0/8, 192.0.2.1",
    "tools_builtin": "time",
    "tools_mcp": "http://127.0.0.1:9000/mcp, python -m my_tools",
}
PARSED = {
    "allowed_hosts": ("voice.example.com", "calls.example.org"),
    "page_servers": ("https://voice.example.com",),
    "trusted_proxies": ("10.0.0.0/8", "192.0.2.1"),
    "ice_servers": ("stun:stun.example:3478", "turn:turn.example:3478"),
    "cors_origins": ("https://a.example", "https://b.example:8443"),
    "rtc_host_addresses": ("127.0.0.1", "::1"),
    "log_level": "DEBUG",
    "tools_builtin": ("time",),
    "tools_mcp": ("http://127.0.0.1:9000/mcp", "python -m my_tools"),
}


@pytest.fixture(autouse=True)
def no_outside_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No .env of the developer's and no secrets directory of the machine's leak into these tests."""
    monkeypatch.chdir(tmp_path)


def env_of(**values: str) -> dict[str, str]:
    return {f"VOXLINE_{k.upper()}": v for k, v in values.items()}


def other_value(name: str, tmp_path: Path) -> tuple[str, Any]:
    """(variable text, parsed value) for `name`, different from its default and valid."""
    field = Settings.model_fields[name]
    default, kind = field.default, field.annotation
    if name == "data_dir":
        return str(tmp_path / "elsewhere"), str(tmp_path / "elsewhere")
    if name in FORMATTED:
        return FORMATTED[name], PARSED.get(name, FORMATTED[name])
    if kind is bool:
        return ("off" if default else "on"), not default
    if typing.get_origin(kind) is typing.Literal:
        choice = next(c for c in typing.get_args(kind) if c != default)
        return str(choice), choice
    if kind is int or kind is float:
        for candidate in (default + 1, default - 1, default + 0.25, default / 2):
            value = kind(candidate)
            try:
                Settings(**{name: value})
            except pydantic.ValidationError:
                continue
            if value != default:
                return str(value), value
    if kind is str:
        return f"changed {name}", f"changed {name}"
    raise AssertionError(f"add a sample value for the new setting {name!r} ({kind}) to FORMATTED")


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.bus == "memory" and s.port == 8001 and s.listen_on_connect is True


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_each_variable_sets_its_field(name: str, tmp_path: Path) -> None:
    raw, expected = other_value(name, tmp_path)
    env = {f"VOXLINE_{name.upper()}": raw}
    if name == "session_store" and expected == "redis":
        env["VOXLINE_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    s = Settings.from_env(env)
    assert getattr(s, name) == expected and getattr(s, name) != getattr(Settings(), name)
    changed = {k for k in Settings.model_fields if getattr(s, k) != getattr(Settings(), k)}
    assert changed <= {name, "redis_url"}, changed  # and no other field


def test_env_values_are_parsed_by_field_type() -> None:
    s = Settings.from_env(env_of(port=" 9000 ", llm_temperature="0.7", listen_on_connect="off",
                                 cors_origins="https://a.example, https://b.example,,", bus="kafka", max_turn_s="15"))
    assert s.port == 9000 and s.llm_temperature == 0.7 and s.listen_on_connect is False
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.bus == "kafka"
    assert s.max_turn_s == 15.0 and isinstance(s.max_turn_s, float)


@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("On", True), (" on ", True),
    ("0", False), ("false", False), ("no", False), ("off", False), ("", False),
])
def test_bool_spellings(raw: str, expected: bool) -> None:
    assert Settings.from_env(env_of(listen_on_connect=raw)).listen_on_connect is expected


def test_empty_list_variable_gives_an_empty_tuple() -> None:
    assert Settings.from_env(env_of(cors_origins="")).cors_origins == ()


# One case per kind of mistake: (variable, value, words the message must hold).
MISTAKES = [
    ("VOXLINE_PORT", "99999", "less than or equal to 65535"),  # out of range
    ("VOXLINE_PORT", "0", "greater than or equal to 1"),
    ("VOXLINE_VAD_THRESHOLD", "1.5", "less than 1"),
    ("VOXLINE_PORT", "80.5", "valid integer"),  # not a number of the field's kind
    ("VOXLINE_MAX_SESSIONS", "", "valid integer"),
    ("VOXLINE_TTS_VOLUME", "loud", "valid number"),
    ("VOXLINE_LISTEN_ON_CONNECT", "maybe", "on or 0/false"),  # not a yes/no
    ("VOXLINE_LLM", "foo", "'llamacpp' or 'openai'"),  # not one of the choices
    ("VOXLINE_LOG_FORMAT", "xml", "'json', 'text' or 'auto'"),
    ("VOXLINE_STT_URL", "ftp://stt.example", "http:// or https://"),  # not a URL of the right kind
    ("VOXLINE_PUBLIC_URL", "voice.example", "http:// or https://"),
    ("VOXLINE_CORS_ORIGINS", "https://a.example/path", "not an origin"),
    ("VOXLINE_KAFKA_BOOTSTRAP", "broker", "host:port"),  # not host:port
]


@pytest.mark.parametrize("name, raw, words", MISTAKES, ids=[f"{n}={r}" for n, r, _ in MISTAKES])
def test_a_bad_value_is_one_line_naming_the_variable_and_value(name: str, raw: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: raw})
    message = str(info.value)
    assert message.startswith(f"{name}={raw!r}: ") and words in message, message
    assert "\n" not in message


def test_a_path_that_is_a_file_is_not_a_data_dir(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match=r"VOXLINE_DATA_DIR=.*taken.*not a directory"):
        Settings.from_env(env_of(data_dir=str(tmp_path / "taken")))
    assert Settings.from_env(env_of(data_dir=str(tmp_path / "new" / "dir"))).data_dir  # can be made: fine


def test_settings_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^session_store=redis needs redis_url"):
        Settings.from_env(env_of(session_store="redis"))
    assert Settings.from_env(env_of(session_store="redis"), redis_url="redis://127.0.0.1:6379/0").redis_url


def test_a_flag_is_named_as_a_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--max-sessions='x': "):
        Settings.from_env({}, max_sessions="x")


def test_a_secret_is_never_echoed_in_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env_of(redis_url="http://user:hunter2@cache"))
    assert "hunter2" not in str(info.value) and "VOXLINE_REDIS_URL='***'" in str(info.value)


def test_a_misspelt_variable_is_reported_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="voxline.config"):
        s = Settings.from_env({"VOXLINE_MAX_SESSION": "5", "PORT": "1", "VOXLINE_PORT": "9000",
                               ENV_FILE_VAR: "none.env", SECRETS_DIR_VAR: "/nowhere"})
    assert s.max_sessions == Settings().max_sessions and s.port == 9000
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["VOXLINE_MAX_SESSION is not a voxline setting; ignored (did you mean VOXLINE_MAX_SESSIONS?)"]


def test_an_unknown_keyword_is_an_error() -> None:
    with pytest.raises(pydantic.ValidationError):
        Settings(max_session=5)  # type: ignore[call-arg]


def test_dotenv_and_secrets_files_are_read_below_the_environment(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / ".env").write_text("VOXLINE_MAX_SESSIONS=7\nVOXLINE_BUS=kafka\nVOXLINE_TOPIK_PREFIX=x.\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "VOXLINE_API_KEY").write_text("sk-from-file\n")
    (secrets / "VOXLINE_AUTH_TOKEN").write_text("file-token")
    with caplog.at_level(logging.WARNING, logger="voxline.config"):
        s = Settings.from_env({SECRETS_DIR_VAR: str(secrets), "VOXLINE_BUS": "memory", "VOXLINE_AUTH_TOKEN": "env"})
    assert s.max_sessions == 7 and s.bus == "memory"  # .env read; a variable wins over it
    assert s.api_key == "sk-from-file" and s.auth_token == "env"  # secrets read; a variable wins over them
    assert any("VOXLINE_TOPIK_PREFIX" in r.getMessage() for r in caplog.records)  # a typo in .env is reported
    other = tmp_path / "prod.env"
    other.write_text("VOXLINE_PORT=99999\n")
    with pytest.raises(ConfigError, match=r"VOXLINE_PORT in .*prod.env='99999'"):
        Settings.from_env({ENV_FILE_VAR: str(other)})


def test_keyword_overrides_win_over_env_and_none_means_not_given() -> None:
    s = Settings.from_env(env_of(port="9000", host="0.0.0.0"), port=9100, host=None)
    assert s.port == 9100 and s.host == "0.0.0.0"


def test_command_defaults_lose_to_env_and_flags() -> None:
    assert Settings.from_env({}, defaults={"port": 8002}).port == 8002
    assert Settings.from_env(env_of(port="9000"), defaults={"port": 8002}).port == 9000
    assert Settings.from_env(env_of(port="9000"), defaults={"port": 8002}, port=9100).port == 9100


def test_replace_applies_flags_checks_them_and_keeps_the_rest() -> None:
    base = Settings.from_env(env_of(bus="kafka"))
    s = base.replace(port=1234, bus=None)
    assert s.port == 1234 and s.bus == "kafka"
    assert base.port == 8001  # settings are immutable
    with pytest.raises(pydantic.ValidationError):
        s.port = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match="port"):
        base.replace(port=70000)


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXLINE_MAX_SESSIONS", "7")
    assert Settings.from_env().max_sessions == 7


def test_redacted_hides_secrets_and_keeps_the_rest() -> None:
    s = Settings.from_env(env_of(auth_token="hunter2", api_key="sk-secret"))
    out = s.redacted()
    assert out["auth_token"] == "***" and out["api_key"] == "***"
    assert "hunter2" not in repr(out) and "sk-secret" not in repr(out)
    assert out["port"] == 8001
    assert s.auth_token == "hunter2"  # the settings themselves are untouched


def test_redacted_shows_that_an_empty_secret_is_unset() -> None:
    out = Settings().redacted()
    assert out["auth_token"] == "" and out["api_key"] == ""


@pytest.mark.parametrize("args, env, shown", [
    (["run", "--llm", "foo"], {}, "voxline: --llm='foo': Input should be 'llamacpp' or 'openai'"),
    (["run"], {"VOXLINE_PORT": "99999"}, "voxline: VOXLINE_PORT='99999': Input should be less than or equal to 65535"),
    (["serve", "stt", "--stt-url", "nope"], {}, "voxline: --stt-url='nope': expected an http:// or https:// URL"),
])
def test_the_cli_refuses_bad_settings_before_it_loads_anything(args: list[str], env: dict[str, str],
                                                               shown: str, tmp_path: Path) -> None:
    """Exit status 2 and one line on stderr, before the server, the models or aiortc are imported."""
    code = ("import sys; from voxline.cli import main; rc = main(sys.argv[1:]); "
            "heavy = [m for m in ('voxline.processes', 'voxline.services.factory', 'faster_whisper', 'llama_cpp', "
            "'aiortc') if m in sys.modules]; print(heavy); sys.exit(rc)")
    src = Path(__file__).resolve().parents[2] / "src"
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [shown] or (len(done.stderr.splitlines()) == 1
                                                   and done.stderr.startswith(shown)), done.stderr
    assert done.stdout.strip() == "[]", done.stdout  # nothing heavy was imported, let alone loaded


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in Settings.model_fields if f"`{name}`" not in table]
    assert not missing, f"settings without a row in README's Configuration table: {missing}"


def deployed_environments() -> list[tuple[str, dict[str, str]]]:
    """(where, VOXLINE_ variables) of every ConfigMap and compose service in deploy/."""
    import re

    import yaml

    out = []
    for path in sorted((Path(__file__).resolve().parents[2] / "deploy").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            found: list[tuple[str, Any]] = []
            if doc.get("kind") == "ConfigMap":
                found.append((doc["metadata"]["name"], doc.get("data") or {}))
            for name, service in (doc.get("services") or {}).items():
                env = service.get("environment") or {}
                found.append((name, dict(e.split("=", 1) for e in env) if isinstance(env, list) else env))
            for name, env in found:
                values = {k: re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(v))  # compose's ${X:-default}
                          for k, v in env.items() if k.startswith("VOXLINE_") and k != "VOXLINE_DATA_DIR"}
                if values:
                    out.append((f"{path.name}:{name}", values))
    return out


@pytest.mark.parametrize("where, env", deployed_environments(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_deployed_settings_are_valid(where: str, env: dict[str, str]) -> None:
    Settings.from_env(env)  # a ConfigError names the variable
