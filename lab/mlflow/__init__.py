"""The MLflow tracking server stack of the lab: a real application nobody here wrote (see `releases.py`)."""
