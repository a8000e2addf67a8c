"""The kinds of step an upgrade is made of, one module per phase. Each knows how to apply itself, how it fails and how
it reads in the plan; `execute` (in `base`) walks one.

| module | steps |
|---|---|
| `base` | `Step`, `CommandStep`, `Together`, `StepContext`, `Outcome`, `Phase`, `execute`, `flat`, the step hooks |
| `backup` | the backup, the old version serving (`DumpDatabase`, `BaseBackup`, `Checkpoint`, …) |
| `cutover` | the downtime (`StopContainers`, `Checkout`, `InstallEnv`, `StartDatabase`, `Migrate`, `StartApp`, …) |
| `rollback_point` | the rollback point of each method (`TakeRollbackPoint`, `TakeRestorePoint`, `TakeSnapshot`) |
| `verify` | `Verify`, `VerifyDigests` |
| `rollback` | putting the previous version back (`RestoreDatabase`, `RestoreBaseBackup`, `PinImages`, …) |
| `cleanup` | `Cleanup` |
| `online` | the online preparation (`PrepareOnline`, the old version serving) and its clean-up (`SettleOnline`) |

Journals record a step's `kind` as its class name: the names stay as they are. Use them from here
(`from core.cutover import steps as st; st.Migrate`).
"""
from core.cutover.steps.backup import (
                                       BackupCommand,
                                       BaseBackup,
                                       Checkpoint,
                                       DumpDatabase,
                                       SaveConfig,
                                       SaveResolvedConfig,
                                       WriteManifest,
                                       WriteState,
)
from core.cutover.steps.base import (
                                       HOOKS,
                                       CommandStep,
                                       CreateAhead,
                                       Outcome,
                                       Phase,
                                       Step,
                                       StepContext,
                                       StepHook,
                                       Together,
                                       add_hook,
                                       execute,
                                       flat,
                                       remove_hook,
                                       start_created_ahead,
)
from core.cutover.steps.cleanup import Cleanup
from core.cutover.steps.online import PrepareOnline, SettleOnline
from core.cutover.steps.cutover import (
                                       MERGED_ENV,
                                       Checkout,
                                       InstallEnv,
                                       Migrate,
                                       RemoveServices,
                                       StartApp,
                                       StartDatabase,
                                       StartServices,
                                       StopContainers,
                                       StopServices,
)
from core.cutover.steps.rollback import (
                                       AwaitRecovery,
                                       PinImages,
                                       RestoreBaseBackup,
                                       RestoreDatabase,
                                       RestoreEnv,
                                       RestoreSnapshot,
                                       StopRunContainers,
)
from core.cutover.steps.rollback_point import (
                                       FLUSH_WAL,
                                       RollbackPoint,
                                       TakeRestorePoint,
                                       TakeRollbackPoint,
                                       TakeSnapshot,
)
from core.cutover.steps.verify import Verify, VerifyDigests

__all__ = [
    "HOOKS", "MERGED_ENV", "FLUSH_WAL", "Phase", "Step", "StepHook", "StepContext", "Outcome", "CommandStep",
    "CreateAhead", "Together", "add_hook", "remove_hook", "execute", "flat", "start_created_ahead",
    "BackupCommand", "SaveResolvedConfig", "BaseBackup", "DumpDatabase", "Checkpoint", "SaveConfig", "WriteState",
    "WriteManifest",
    "StopServices", "StopContainers", "Checkout", "RemoveServices", "StartServices", "StartDatabase", "StartApp",
    "Migrate", "InstallEnv",
    "RollbackPoint", "TakeRollbackPoint", "TakeRestorePoint", "TakeSnapshot",
    "Verify", "VerifyDigests",
    "RestoreEnv", "PinImages", "RestoreDatabase", "RestoreBaseBackup", "AwaitRecovery", "RestoreSnapshot",
    "StopRunContainers",
    "Cleanup", "PrepareOnline", "SettleOnline",
]
