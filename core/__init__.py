"""stackshift's domain logic: plain functions and data, no Prefect. Tasks in `tasks/` call these."""
