"""Prints this image's Alembic heads as JSON, without a database (the revision files are parsed by Alembic)."""
import json

from alembic.config import Config
from alembic.script import ScriptDirectory

script = ScriptDirectory.from_config(Config("/app/alembic.ini"))
print(json.dumps({"heads": sorted(script.get_heads())}))
