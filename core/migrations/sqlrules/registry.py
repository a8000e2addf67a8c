"""The one registry of MS rules: each rule's code, name, remedy, its own cases, and the check the analysis runs.

A rule module declares a rule with one of the three decorators, by the scope its check looks at:
- `action_rule`: one thing a statement does (a statement, or one ALTER TABLE subcommand) of the kinds it names;
- `statement_rule`: a whole statement where it runs (inside a transaction block, before any lock_timeout);
- `migration_rule`: every statement of the SQL at once (locks held across revisions).

Cases are SQL run offline (no catalog): each `triggers` script must make the rule fire on some statement, each
`passes` script must not; tests/unit/test_sqlrules_registry.py runs them all.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .locks import Kind

if TYPE_CHECKING:
    from .actions import Action
    from .context import Context
    from .findings import Finding


@dataclass(frozen=True)
class Hit:
    """What a rule adds to a statement's finding when it fires (its lock comes from the lock table)."""

    effect: str | None = None   # none | scan | rewrite | unknown (the strongest of a statement's wins)
    work: str | None = None     # what the forecast times: rewrite | scan | index | index2 | reindex | dml
    note: str | None = None
    warning: str | None = None  # also a warning of the whole analysis


@dataclass(frozen=True)
class Rule:
    code: str                   # MS001…
    name: str
    remedy: str                 # what the operator should do instead
    triggers: tuple[str, ...]   # SQL on which the rule fires
    passes: tuple[str, ...]     # SQL on which it does not


@dataclass(frozen=True)
class ActionRule(Rule):
    kinds: frozenset[Kind]
    check: Callable[[Action, Context], Hit | None]


@dataclass(frozen=True)
class StatementRule(Rule):
    check: Callable[[Finding, Sequence[Action], Context], Hit | None]


@dataclass(frozen=True)
class MigrationRule(Rule):
    check: Callable[[list[Finding], set[str]], Iterator[tuple[Finding, Hit]]]


REGISTRY: dict[str, Rule] = {}
_F = TypeVar("_F", bound=Callable)


def _registering(make: Callable[[_F], Rule]) -> Callable[[_F], _F]:
    """A decorator that registers the rule `make` builds around the function it decorates."""
    def register(check: _F) -> _F:
        rule = make(check)
        if rule.code in REGISTRY:
            raise ValueError(f"rule {rule.code} is registered twice")
        REGISTRY[rule.code] = rule
        return check
    return register


def action_rule(code: str, name: str, kinds: Iterable[Kind], *, remedy: str, triggers: Iterable[str],  # noqa: PLR0913 (a rule's declaration, by keyword)
                passes: Iterable[str]) -> Callable[[_F], _F]:
    return _registering(lambda check: ActionRule(code, name, remedy, tuple(triggers), tuple(passes),
                                                 frozenset(kinds), check))


def statement_rule(code: str, name: str, *, remedy: str, triggers: Iterable[str],
                   passes: Iterable[str]) -> Callable[[_F], _F]:
    return _registering(lambda check: StatementRule(code, name, remedy, tuple(triggers), tuple(passes), check))


def migration_rule(code: str, name: str, *, remedy: str, triggers: Iterable[str],
                   passes: Iterable[str]) -> Callable[[_F], _F]:
    return _registering(lambda check: MigrationRule(code, name, remedy, tuple(triggers), tuple(passes), check))


def remedy(code: str) -> str:
    return REGISTRY[code].remedy


def action_rules(kind: Kind) -> list[ActionRule]:
    """The rules that judge one action of this kind, in code order."""
    return [r for _, r in sorted(REGISTRY.items()) if isinstance(r, ActionRule) and kind in r.kinds]


def statement_rules() -> list[StatementRule]:
    return [r for _, r in sorted(REGISTRY.items()) if isinstance(r, StatementRule)]


def migration_rules() -> list[MigrationRule]:
    return [r for _, r in sorted(REGISTRY.items()) if isinstance(r, MigrationRule)]
