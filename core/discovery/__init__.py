"""What `stackshift init` reads from a compose stack to propose its environment block, with nothing run here.

`discover` takes the stack as read (`compose config --format json`, the running services) and two injected probes
(an HTTP GET, a look inside an image), and returns a `Proposal`: the block's groups without any secret, one `Guess`
per value with the reason a person can check, and the `Gap`s it could not fill (init refuses to save while there is
one). What the app is (Dify, MLflow, an Alembic app with a migration switch) is a strategy object
(`core.discovery.apps`); the HTTP checks come from the services' healthchecks and published ports
(`core.discovery.checks`).
"""
from core.discovery.proposal import Gap, Guess, Probes, Proposal, ReadStack
from core.discovery.stack import discover

__all__ = ["Gap", "Guess", "Probes", "Proposal", "ReadStack", "discover"]
