"""What to do with a run that did not end: finish it, roll it back, or nothing, whichever is safe. Pure."""
from __future__ import annotations

from dataclasses import dataclass

from core.cutover.journal import Journal
from core.cutover.steps import Migrate

NOTHING, FINISH, ROLLBACK, CLEAN_UP = "nothing", "finish", "rollback", "clean-up"


@dataclass(frozen=True)
class Decision:
    action: str  # nothing | finish | rollback | clean-up
    reason: str


def decide(journal: Journal, db_revisions: list[str] | None, target_heads: list[str]) -> Decision:
    """Finish only when the migration is recorded done and the database (read now) is at the target head: then the
    new version needs nothing but its start. Anything else after the writers stopped rolls back. `db_revisions` is
    None when the database cannot be read."""
    if not journal.cutover_started and journal.phase != "rollback":
        return Decision(NOTHING, "the runner stopped before the cutover: nothing had been changed")
    if journal.phase == "rollback" or journal.status == "rollback-failed":
        return Decision(ROLLBACK, "a rollback had begun; it is completed")
    if journal.phase == "finish":
        return Decision(CLEAN_UP, "the upgrade had been verified; only its clean-up was left")
    if journal.kind_done(Migrate, "cutover") and db_revisions is not None \
            and sorted(db_revisions) == sorted(target_heads):
        return Decision(FINISH, f"the migration had completed (database at {', '.join(target_heads)}); the new "
                                f"version is started and verified")
    last = journal.last
    where = f"during {last.id!r}" if last else "early"
    return Decision(ROLLBACK, f"the cutover stopped {where}, before the new version was complete")


def one_offs_note(removed: int, db_revisions: list[str] | None, target_heads: list[str]) -> str:
    """What the report says of the one-off containers a dead runner left running (its migration, still going
    unwatched), which the recovery stops first: how many, and whether the migration had completed, read from the
    database once they are gone. '' when there were none."""
    if not removed:
        return ""
    if db_revisions is None:
        state = "the database could not be read to tell whether its migration had completed"
    elif sorted(db_revisions) == sorted(target_heads):
        state = f"its migration had completed (database at {', '.join(target_heads)})"
    else:
        state = (f"its migration had not completed (database at {', '.join(db_revisions) or 'no revision'}, the "
                 f"target {', '.join(target_heads)})")
    return f"stopped {removed} one-off container(s) the dead runner left running: {state}"
