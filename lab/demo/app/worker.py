"""The demo worker: holds a database connection and checks it, like a queue consumer would."""
import os
import signal
import sys
import time

import sqlalchemy as sa

from db import url

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
engine = sa.create_engine(url(), pool_pre_ping=True, pool_size=1)
print(f"worker {os.environ.get('APP_VERSION')} started", flush=True)
while True:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        print(f"worker: database unavailable ({type(exc).__name__})", flush=True)
    time.sleep(2)
