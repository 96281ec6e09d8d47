"""The saga engine: definitions as data, saga state, pure transitions, and a registry.

It knows sagas, not the system that runs them: a transition returns what to send to which
participant, what to escalate and what to settle (:mod:`.transitions`), and the orchestrator
turns those into its own messages and queue addresses (``orchestrator/handlers.py``). Nothing
here imports the system's contracts.

* :mod:`.definition`: :class:`SagaDefinition`, :class:`Step`, :class:`Invoke`, :class:`Local`,
  :class:`Notify`.
* :mod:`.state`: :class:`SagaState`, :class:`StepState`, their statuses, :class:`HistoryEvent`.
* :mod:`.transitions`: :class:`SagaEngine` and its :class:`Transition` (:class:`Send`,
  :class:`Escalate`, :class:`Settle`).
* :mod:`.registry`: :class:`SagaRegistry`.
"""

from .definition import Data, Invoke, Local, Notify, SagaDefinition, Step
from .registry import SagaRegistry, UnknownVersion
from .state import (
    FINAL_STATUSES,
    HistoryEntry,
    HistoryEvent,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)
from .transitions import (
    ACCEPTS,
    MAX_RESEND_INTERVAL,
    MAX_SENDS,
    Escalate,
    Escalation,
    Outgoing,
    ReplyKind,
    SagaEngine,
    Send,
    Settle,
    Transition,
)

__all__ = [
    "ACCEPTS",
    "FINAL_STATUSES",
    "MAX_RESEND_INTERVAL",
    "MAX_SENDS",
    "Data",
    "Escalate",
    "Escalation",
    "HistoryEntry",
    "HistoryEvent",
    "Invoke",
    "Local",
    "Notify",
    "Outgoing",
    "ReplyKind",
    "SagaDefinition",
    "SagaEngine",
    "SagaRegistry",
    "UnknownVersion",
    "SagaState",
    "SagaStatus",
    "Send",
    "Settle",
    "Step",
    "StepState",
    "StepStatus",
    "Transition",
]
