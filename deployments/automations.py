"""The automations and the notification block that go with the deployments of `prefect.yaml` (run after
`prefect deploy --all`; idempotent: each automation is replaced by name).

- `stackshift: recover <env> after a crash`: an `upgrade-<env>` run ends Crashed or Cancelled → run `recover-<env>`;
- `stackshift: approval needed`: a `promote` run is about to pause for its approval (the event
  `stackshift.promotion.approval-needed`) → notification with the run's URL (the resume form);
- `stackshift: upgrade failed`: an `upgrade` run ends Failed or Crashed → notification with the reason;
- `stackshift: rolled back`: the event `stackshift.upgrade.rolled-back` (an upgrade put the previous version back).

Notifications go through the `custom-webhook` block `stackshift-notify` (any URL that takes a JSON POST: a chat
webhook, an alerting gateway). A webhook URL usually carries a token, so it is a secret: it comes from
`$STACKSHIFT_WEBHOOK_URL` (never an argument, which the process list shows), and the block keeps it in its `secrets`
(masked in the UI), its `url` field only the placeholder `{{webhook_url}}`. An existing block is kept when the variable
is unset, so a URL set in the UI (Blocks → stackshift-notify → Secrets) survives a re-run.

Run: `PREFECT_API_URL=… [STACKSHIFT_WEBHOOK_URL=…] .venv/bin/python -m deployments.automations staging prod`
"""
from __future__ import annotations

import argparse
import os
from contextlib import suppress

from deployments.serve import ensure_recovery_automation, replace_automation

NOTIFY_BLOCK = "stackshift-notify"
PLACEHOLDER_URL = "http://127.0.0.1:9/stackshift-notify-not-configured"


URL_FIELD = "{{webhook_url}}"  # the block's url: filled from its secrets when a notification is sent


def webhook_url() -> str | None:
    """The URL the notification block posts to (its secret), or None when there is no block."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    try:
        block = CustomWebhookNotificationBlock.load(NOTIFY_BLOCK)
    except ValueError:
        return None
    return block.secrets.get_secret_value().get("webhook_url", block.url)


def ensure_notify_block(url: str | None):
    """The webhook block, its URL a secret (a placeholder URL until one is given); returns its document id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.types import SecretDict

    url = url or webhook_url() or PLACEHOLDER_URL
    try:
        block = CustomWebhookNotificationBlock.load(NOTIFY_BLOCK)
    except ValueError:
        block = None
    if block is None or block.url != URL_FIELD or block.secrets.get_secret_value().get("webhook_url") != url:
        CustomWebhookNotificationBlock(
            name="stackshift", url=URL_FIELD, method="POST", secrets=SecretDict({"webhook_url": url}),
            json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "{{name}}"},
        ).save(NOTIFY_BLOCK, overwrite=True)
    return CustomWebhookNotificationBlock.load(NOTIFY_BLOCK)._block_document_id


def notification_automations(block_id) -> list:
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    def flow(name: str) -> dict:
        return {"prefect.resource.role": "flow", "prefect.resource.name": name}

    return [
        Automation(
            name="stackshift: approval needed",
            description="A promotion waits for a person: the notification links to the run, whose Resume form takes "
                        "the decision.",
            trigger=EventTrigger(expect={"stackshift.promotion.approval-needed"}, posture=Posture.Reactive,
                                 threshold=1),
            actions=[SendNotification(
                block_document_id=block_id,
                subject="stackshift: approval needed for {{ event.resource.name }}",
                body="Promotion {{ event.resource.name }} of {{ event.payload.release }} to "
                     "{{ event.payload.prod }} waits for your approval: {{ event.payload.url }} (open the run, read "
                     "the promotion summary, then ⋮ → Resume).")]),
        Automation(
            name="stackshift: upgrade failed",
            description="An upgrade run ended Failed or Crashed (a failed upgrade has been rolled back when its "
                        "message says so).",
            trigger=EventTrigger(expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                                 match_related=flow("upgrade"), posture=Posture.Reactive, threshold=1),
            actions=[SendNotification(
                block_document_id=block_id, subject="stackshift: upgrade {{ flow_run.state.name }}",
                body="Upgrade {{ flow_run.name }} ({{ flow_run.parameters.environment }} → "
                     "{{ flow_run.parameters.target }}) ended {{ flow_run.state.name }}: "
                     "{{ flow_run.state.message }} {{ flow_run|ui_url }}")]),
        Automation(
            name="stackshift: rolled back",
            description="An upgrade failed after the writers stopped and put the previous version back.",
            trigger=EventTrigger(expect={"stackshift.upgrade.rolled-back"}, posture=Posture.Reactive, threshold=1),
            actions=[SendNotification(
                block_document_id=block_id, subject="stackshift: {{ event.resource.name }} rolled back",
                body="{{ event.resource.name }} was rolled back: {{ event.payload.outcome }}")]),
    ]


def main(environments: list[str], url: str | None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for env in environments:
            ups = [client.read_deployment_by_name(f"upgrade/upgrade-{env}").id]
            with suppress(ObjectNotFound):  # the promotion's upgrades on the host of that name (as lab/setup's)
                ups.append(client.read_deployment_by_name(f"upgrade/promotion-{env}").id)
            rec = client.read_deployment_by_name(f"recover/recover-{env}").id
            ensure_recovery_automation(env, ups, rec)
    block_id = ensure_notify_block(url)
    for automation in notification_automations(block_id):
        replace_automation(automation)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environments", nargs="*", default=["staging", "prod"])
    args = parser.parse_args()
    main(args.environments, os.environ.get("STACKSHIFT_WEBHOOK_URL"))
