"""No secret value in any output (issue 9, defect 1): the text report, `--json`, the flow's markdown and table
artifacts. Real Dify keys first, then a property test over generated values of every secret form."""
import base64
import json
import random
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import envmerge, envsecrets
from core.report import env_markdown
from tests.unit._env_helpers import NEW, OLD, operator_env, sync, sync_in_process

pytestmark = pytest.mark.tools("docker compose")

SA_KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7planted"


def service_account_json(body: str) -> str:
    return json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "0a1b",
                       "private_key": f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n",
                       "client_email": "sa@p.iam.gserviceaccount.com"})


REAL = {  # the three values the issue saw printed in full, as an operator sets them
    "CELERY_BROKER_URL": "redis://:operator-redis-pw-7Q@redis:6379/1",
    "GOOGLE_STORAGE_SERVICE_ACCOUNT_JSON_BASE64": base64.b64encode(service_account_json(SA_KEY_BODY).encode()).decode(),
    "PLUGIN_AZURE_BLOB_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=difyops;"
                                                   "AccountKey=b3BlcmF0b3ItYXp1cmUta2V5LTlY==;"
                                                   "EndpointSuffix=core.windows.net",
}
# The same values under names that say nothing: only the value rules can catch them.
NEUTRAL = {f"MY_{k.split('_')[0]}_SETTING_{i}": v for i, (k, v) in enumerate(REAL.items())}
PLANTED = ("operator-redis-pw-7Q", SA_KEY_BODY, "b3BlcmF0b3ItYXp1cmUta2V5LTlY", *REAL.values())


def dify_env_with_real_secrets(tmp_path) -> Path:
    text = OLD.read_text().replace("CELERY_BROKER_URL=redis://:difyai123456@redis:6379/1",
                                   f"CELERY_BROKER_URL={REAL['CELERY_BROKER_URL']}")
    sa = "GOOGLE_STORAGE_SERVICE_ACCOUNT_JSON_BASE64"
    text = text.replace(f"{sa}=\n", f"{sa}={REAL[sa]}\n")
    text += f"PLUGIN_AZURE_BLOB_STORAGE_CONNECTION_STRING={REAL['PLUGIN_AZURE_BLOB_STORAGE_CONNECTION_STRING']}\n"
    text += "".join(f"{k}={v}\n" for k, v in NEUTRAL.items())
    return operator_env(tmp_path, text)


def every_output(env: Path, old: Path = OLD, new: Path = NEW, extra: tuple[str, ...] = ()) -> str:
    """The text report, `--json`, the markdown artifact and the table rows of one merge, joined."""
    argv = ["--env-file", str(env), "--old-template", str(old), "--new-template", str(new), "--dry-run", *extra]
    outputs = [sync_in_process(argv), sync_in_process([*argv, "--json"])]
    user, o, n = (envmerge.parse(envmerge.read_env_file(p)) for p in (env, old, new))
    rows = envmerge.masked_changes(envmerge.merge(user, o, n))
    return "\n".join(out + err for _, out, err in outputs) + json.dumps(rows) + env_markdown("prod", rows, {})


def test_the_three_real_dify_values_are_masked_in_every_output(tmp_path):
    env = dify_env_with_real_secrets(tmp_path)
    text = every_output(env)
    for planted in PLANTED:
        assert planted not in text
    rows = {r["key"]: r for r in envmerge.masked_changes(envmerge.merge(
        envmerge.parse(env.read_text()), envmerge.parse(OLD.read_text()), envmerge.parse(NEW.read_text())))}
    assert {rows[k]["category"] for k in REAL} == {"customized"}
    assert all(rows[k]["after"] == "(secret)" for k in [*REAL, *NEUTRAL])
    assert rows["DB_HOST"]["after"] == "db_postgres", "plain values are still shown"


def test_the_command_itself_prints_none_of_them(tmp_path):
    env = dify_env_with_real_secrets(tmp_path)
    for done in (sync(env, "--dry-run"), sync(env, "--json", "--dry-run"), sync(env)):
        assert done.returncode == 0, done.stderr
        assert not any(p in done.stdout + done.stderr for p in PLANTED)


def test_plain_dify_values_are_not_hidden():
    """Hiding errs on the safe side, but the report stays readable: no default of Dify's templates without a secret
    name is hidden except the broker URL, which holds the default password."""
    values = {}
    for release in ("0.15.3", "1.0.0", "1.12.1"):
        values |= envmerge.parse((OLD.parent / f"env.example.{release}").read_text()).values
    hidden = sorted(k for k, v in values.items() if not envsecrets.is_secret_name(k) and envsecrets.is_secret_value(v))
    assert hidden == ["CELERY_BROKER_URL"]
    for key in ("DB_HOST", "COMPOSE_PROFILES", "CODE_EXECUTION_ENDPOINT", "TIDB_REGION", "API_WORKFLOW_RUN_REPOSITORY"):
        assert not envsecrets.is_secret(key, values[key]), key


# The property: over generated values of every secret form, the detector marks each one, and none appears in
# any output, whatever the merge does with its key.

ALPHABETS = (string.hexdigits[:16], string.ascii_letters + string.digits, string.ascii_letters + string.digits + "+/",
             string.ascii_letters + string.digits + "-_")


def token(seed: int, length: int = 24, alphabet: str = string.ascii_letters + string.digits) -> str:
    """A random token that starts with a letter and a digit (the high-entropy rule's documented shape)."""
    r = random.Random(seed)
    letters = "".join(c for c in alphabet if c.isalpha())
    return r.choice(letters) + r.choice(string.digits) + "".join(r.choice(alphabet) for _ in range(length - 2))


def secret_forms(seed: int) -> list[tuple[str, str, str]]:
    """(form, value as written in the env file, the part that must never be shown) for one seed."""
    r = random.Random(seed)
    pw = token(seed, r.randint(12, 40))
    user = r.choice(["", "app", "admin"])
    scheme = r.choice(["redis", "rediss", "postgresql", "amqp", "mongodb+srv", "https"])
    pem = f"-----BEGIN {r.choice(['RSA PRIVATE KEY', 'PRIVATE KEY', 'CERTIFICATE'])}-----\n{pw}\n-----END X-----"
    sa = service_account_json(pw)
    return [
        ("url", f"{scheme}://{user}:{pw}@host-{seed % 97}:6379/1", pw),
        ("url-token", f"https://{pw}@git.example.com/org/repo.git", pw),
        ("azure", f"DefaultEndpointsProtocol=https;AccountName=a{seed % 89};AccountKey={pw}==;EndpointSuffix=core."
                  f"windows.net", pw),
        ("sql-server", f"Server=db;Database=app;User Id=sa;Password={pw};", pw),
        ("odbc", f"host=db;uid=app;pwd={pw}", pw),
        ("service-bus", f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=sr%3A{pw}", pw),
        ("sas-url", f"https://a.blob.core.windows.net/c?sv=2022-11-02&sig={pw}", pw),
        ("pem", '"' + pem + '"', pw),
        ("json", "'" + sa + "'", pw),
        ("base64-json", base64.b64encode(sa.encode()).decode(), pw),
        ("base64-pem", base64.b64encode(pem.encode()).decode(), pw),
        ("high-entropy", token(seed + 1, r.randint(20, 64), r.choice(ALPHABETS)), ""),
    ]


NAMED = ("SMTP_PASSWORD", "STORAGE_JSON", "SA_BASE64", "BUS_CONNECTION_STRING", "OSS_ACCESS_ID", "HOOK_TOKEN",
         "APP_SALT", "MY_DSN", "X_PRIVATE", "Y_SECRET")


def unquoted(written: str) -> str:
    return written[1:-1] if written[:1] in "'\"" else written


@st.composite
def env_files(draw):
    """Three env files where each generated secret lands in a different merge category."""
    seed = draw(st.integers(0, 2**40))
    forms = secret_forms(seed)
    named = [(n, "plain-" + token(seed + 7 + i, 16), "") for i, n in enumerate(draw(
        st.lists(st.sampled_from(NAMED), unique=True, min_size=1, max_size=4)))]
    old, new, user, secrets = ["BASE=1"], ["BASE=1"], ["BASE=1"], []
    entries = [(f"VAR_{i}", written, marker) for i, (_, written, marker) in enumerate(forms)]  # names say nothing
    entries += [(name, written, marker) for name, written, marker in named]
    for key, written, marker in entries:
        secrets.append((key, unquoted(written), marker))
        case = draw(st.sampled_from(["customized", "conflict", "user_only", "removed_kept", "added", "moved"]))
        was, now = f"old-default-{seed}", f"new-default-{seed}"  # distinctive, so a leak of them would show
        if case == "customized":
            old.append(f"{key}={was}"), new.append(f"{key}={was}"), user.append(f"{key}={written}")
        elif case == "conflict":
            old.append(f"{key}={was}"), new.append(f"{key}={now}"), user.append(f"{key}={written}")
        elif case == "user_only":
            user.append(f"{key}={written}")
        elif case == "removed_kept":
            old.append(f"{key}={was}"), user.append(f"{key}={written}")
        elif case == "added":
            new.append(f"{key}={written}")
        else:  # a stale default moves to a secret new default
            old.append(f"{key}={was}"), new.append(f"{key}={written}"), user.append(f"{key}={was}")
    return "\n".join(user) + "\n", "\n".join(old) + "\n", "\n".join(new) + "\n", secrets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env_files())
def test_no_value_the_detector_marks_secret_appears_in_any_output(files):
    user, old, new, secrets = files
    for key, value, _ in secrets:
        assert envsecrets.is_secret(key, value), (key, value)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / name for name in (".env", "old.example", "new.example")]
        for path, text in zip(paths, (user, old, new)):
            path.write_text(text)
        text = every_output(*paths)
        merged_values = envmerge.parse(user).values | envmerge.parse(new).values
    for key, value, marker in secrets:
        assert value not in text, key
        assert not marker or marker not in text, key
    for key, value in merged_values.items():  # and any other value the detector would mark
        if value and len(value) >= 6 and envsecrets.is_secret(key, value):
            assert value not in text, key


def test_the_compose_check_logs_and_prints_no_secret(tmp_path, caplog):
    """With --compose-file, env-sync runs compose through the executor, which logs the command: paths only."""
    import logging

    env = dify_env_with_real_secrets(tmp_path)
    compose = OLD.parent / "docker-compose.1.12.1.yaml"
    with caplog.at_level(logging.DEBUG):
        code, out, err = sync_in_process(["--env-file", str(env), "--old-template", str(OLD), "--new-template",
                                          str(NEW), "--compose-file", str(compose), "--dry-run"])
    assert code == 0, err
    assert "run: docker compose" in caplog.text
    assert not any(p in caplog.text + out + err for p in PLANTED)
