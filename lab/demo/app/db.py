"""Database settings of the demo app, from Dify-style variables."""
import os
from urllib.parse import quote


def url() -> str:
    e = os.environ
    return "postgresql+psycopg2://{}:{}@{}:{}/{}".format(
        quote(e.get("DB_USERNAME", "app"), safe=""),
        quote(e.get("DB_PASSWORD", ""), safe=""),
        e.get("DB_HOST", "db"),
        e.get("DB_PORT", "5432"),
        e.get("DB_DATABASE", "app"),
    )
