# One screen for the saga: queues (depth, age, dead letters), saga outcomes, step latency
# and each service's outbox. The OrderSaga metrics are those of messaging.cloudwatch;
# tests/infra checks every name used here against messaging.cloudwatch.METRIC_NAMES.
locals {
  # Steps of both sagas (orchestrator/order_saga.py, cancellation_saga.py) that send a command (create_order is done by the
  # API itself, so it has no command-to-reply latency).
  saga_steps = [
    "reserve_inventory", "process_payment", "fulfill_order", "send_confirmation",                    # order
    "cancel_scheduled_shipment", "refund_charge", "return_reserved_stock", "cancel_confirmed_order", # order_cancellation
    "send_cancellation_notice",
  ]

  working_queues = [for name in keys(local.queues) : name if name != "saga-escalations"]

  saga_outcomes = ["SagasStarted", "SagasCompleted", "SagasCompensated", "SagasNeedingIntervention"]

  dashboard_widgets = [
    {
      title   = "Messages waiting, per queue"
      stat    = "Maximum"
      metrics = [for q in local.working_queues : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.physical[q]]]
    },
    {
      title   = "Age of oldest message (s), per queue"
      stat    = "Maximum"
      metrics = [for q in local.working_queues : ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", local.physical[q]]]
    },
    {
      title   = "Dead-letter queues and escalations (any message needs a person)"
      stat    = "Maximum"
      metrics = [for q in local.dead_letter_queue_names : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.physical[q]]]
    },
    {
      title   = "Saga outcomes per minute"
      stat    = "Sum"
      metrics = [for m in local.saga_outcomes : [local.metric_namespace, m, "Service", "orchestrator"]]
    },
    {
      title   = "Step latency p50 (ms)"
      stat    = "p50"
      metrics = [for s in local.saga_steps : [local.metric_namespace, "StepLatency", "Service", "orchestrator", "Step", s]]
    },
    {
      title   = "Step latency p99 (ms)"
      stat    = "p99"
      metrics = [for s in local.saga_steps : [local.metric_namespace, "StepLatency", "Service", "orchestrator", "Step", s]]
    },
    {
      title   = "Outbox backlog (unpublished rows), per service"
      stat    = "Maximum"
      metrics = [for svc in keys(local.services) : [local.metric_namespace, "OutboxBacklog", "Service", svc]]
    },
    {
      title   = "Oldest unpublished outbox row (s), per service"
      stat    = "Maximum"
      metrics = [for svc in keys(local.services) : [local.metric_namespace, "OutboxOldestAgeSeconds", "Service", svc]]
    },
    {
      title   = "Sagas awaiting intervention (each needs a person)"
      stat    = "Maximum"
      metrics = [[local.metric_namespace, "SagasAwaitingIntervention", "Service", "orchestrator"]]
    },
  ]

  dashboard_body = {
    widgets = [
      for i, w in local.dashboard_widgets : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = floor(i / 2) * 6
        width  = 12
        height = 6
        properties = {
          title   = w.title
          region  = var.aws_region
          view    = "timeSeries"
          stacked = false
          period  = 60
          stat    = w.stat
          metrics = w.metrics
        }
      }
    ]
  }
}

resource "aws_cloudwatch_dashboard" "saga" {
  count = var.create_dashboard ? 1 : 0

  dashboard_name = "${local.physical_prefix}order-saga"
  dashboard_body = jsonencode(local.dashboard_body)
}
