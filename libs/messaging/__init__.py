"""Shared messaging library: envelope, outbox, relay, inbox, consumer and AWS adapters.

Every service publishes only through :class:`messaging.uow.UnitOfWork` (which writes the
outbox in the caller's transaction) and receives only through
:class:`messaging.consumer.Consumer` + :class:`messaging.bus.MessageBus` (which deduplicate
through the inbox in the handler's transaction).
"""
