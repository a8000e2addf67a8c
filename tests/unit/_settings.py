"""Settings for unit tests: the required fields filled in, anything else given by its old flat name or grouped."""
from __future__ import annotations

from typing import Any

from core.settings import Settings, nest_flat_fields

REQUIRED = {"compose_dir": "/srv/stack", "project_name": "stack", "db_name": "app", "db_user": "app",
            "db_password": "pw-unit", "backup_dir": "/var/backups/stack"}


def settings(**fields: Any) -> Settings:
    """`Settings` with REQUIRED's values unless given (`settings(compose_dir=tmp, writer_services=["api"])`)."""
    return Settings.model_validate(nest_flat_fields({**REQUIRED, **fields}))
