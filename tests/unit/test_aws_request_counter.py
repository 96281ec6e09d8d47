"""Every HTTP request an aioboto3 client of :func:`messaging.aws.session` sends is counted."""

from messaging import aws, metrics


def count(service: str, operation: str) -> float:
    return metrics.AWS_REQUESTS.labels(service, operation)._value.get()


async def test_each_request_sent_is_counted_by_service_and_operation():
    before = count("sqs", "SendMessageBatch")
    events = aws.session().events  # the emitter its clients copy; aiobotocore's emits are coroutines
    await events.emit("before-send.sqs.SendMessageBatch", request=None)
    await events.emit("before-send.sqs.SendMessageBatch", request=None)
    await events.emit("before-send.sns.Publish", request=None)
    assert count("sqs", "SendMessageBatch") == before + 2
    assert count("sns", "Publish") >= 1
