# Mirrors contracts.topology.QUEUES (the source of truth for names); the integration
# test tests/integration/test_infra.py checks that the two agree.
locals {
  queues = {
    "order-commands"        = { dead_letter = true, visibility_timeout = 30, fifo = false }
    "inventory-commands"    = { dead_letter = true, visibility_timeout = 30, fifo = false }
    "payment-commands"      = { dead_letter = true, visibility_timeout = 30, fifo = false }
    "fulfillment-commands"  = { dead_letter = true, visibility_timeout = 30, fifo = false }
    "notification-commands" = { dead_letter = true, visibility_timeout = 30, fifo = false }
    "orchestrator-commands" = { dead_letter = true, visibility_timeout = 30, fifo = false }
    # FIFO, grouped by saga: a deadline check is handled behind every reply of its saga.
    "orchestrator-replies" = { dead_letter = true, visibility_timeout = 30, fifo = true }
    # The escalation queue is itself the operator's dead-letter queue: nothing consumes it.
    "saga-escalations" = { dead_letter = false, visibility_timeout = 30, fifo = false }
  }

  # Queues that have a "<name>-dlq" behind them.
  redriven_queues = { for name, q in local.queues : name => q if q.dead_letter }

  # Server-side encryption: SQS-managed keys unless a KMS key is given.
  queue_kms_key = var.queue_kms_key_arn == "" ? null : var.queue_kms_key_arn

  # Queues nothing consumes automatically; mirrors contracts.topology.DEAD_LETTER_QUEUES.
  dead_letter_queue_names = concat(
    [for name in keys(local.redriven_queues) : "${name}-dlq"],
    ["saga-escalations"],
  )

  dlq_retention_seconds = 14 * 24 * 60 * 60 # the SQS maximum

  # FIFO queues and their dead-letter queues (a FIFO queue's DLQ must be FIFO too).
  fifo_queue_names = flatten([for name, q in local.queues : [name, "${name}-dlq"] if q.fifo])

  # Logical name -> physical name ("<prefix>-<logical>", ".fifo" for a FIFO queue, as contracts.topology.Naming).
  physical = {
    for name in distinct(concat(keys(local.queues), local.dead_letter_queue_names, keys(local.topics), ["alerts"])) :
    name => "${var.name_prefix == "" ? name : "${var.name_prefix}-${name}"}${contains(local.fifo_queue_names, name) ? ".fifo" : ""}"
  }
}

resource "aws_sqs_queue" "dlq" {
  for_each = local.redriven_queues

  name                       = local.physical["${each.key}-dlq"]
  visibility_timeout_seconds = each.value.visibility_timeout
  message_retention_seconds  = local.dlq_retention_seconds
  fifo_queue                 = each.value.fifo ? true : null

  sqs_managed_sse_enabled = local.queue_kms_key == null ? true : null
  kms_master_key_id       = local.queue_kms_key
}

resource "aws_sqs_queue" "queue" {
  for_each = local.queues

  name                       = local.physical[each.key]
  visibility_timeout_seconds = each.value.visibility_timeout
  # High-throughput FIFO: deduplication and the throughput limit per group (per saga).
  fifo_queue            = each.value.fifo ? true : null
  deduplication_scope   = each.value.fifo ? "messageGroup" : null
  fifo_throughput_limit = each.value.fifo ? "perMessageGroupId" : null
  # A queue that is itself a dead-letter queue keeps its messages as long as possible.
  message_retention_seconds = contains(local.dead_letter_queue_names, each.key) ? local.dlq_retention_seconds : null

  sqs_managed_sse_enabled = local.queue_kms_key == null ? true : null
  kms_master_key_id       = local.queue_kms_key

  redrive_policy = each.value.dead_letter ? jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = var.max_receive_count
  }) : null
}

# Only the queue a DLQ belongs to may use it as its dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each = var.restrict_dead_letter_sources ? local.redriven_queues : {}

  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queue[each.key].arn]
  })
}

locals {
  # Every queue that counts as a dead-letter queue, by logical name -> resource.
  dead_letter_queues = merge(
    { for name, q in aws_sqs_queue.dlq : "${name}-dlq" => q },
    { "saga-escalations" = aws_sqs_queue.queue["saga-escalations"] },
  )
}

locals {
  # Every queue, dead-letter queues included: logical name -> queue URL and formatted ARN.
  all_queues = merge(
    { for name, q in aws_sqs_queue.queue : name => { url = q.id, arn = "${local.sqs_arn_prefix}:${local.physical[name]}" } },
    { for name, q in aws_sqs_queue.dlq : "${name}-dlq" => { url = q.id, arn = "${local.sqs_arn_prefix}:${local.physical["${name}-dlq"]}" } },
  )
}

# Who may send to each queue: the task roles of the services whose sends_to names it
# (services.tf, checked against contracts.topology.SENDERS). A dead-letter queue takes sends
# from its queue's consumer alone: a message whose handler failed CONSUMER_DEAD_LETTER_AFTER
# times is moved there by the consumer, with its reason (SQS's own redrive, which no queue
# policy governs, remains the net).
locals {
  queue_senders = {
    for name in keys(local.all_queues) : name => [
      for svc, s in local.services : local.task_role_arns[svc]
      if contains(s.sends_to, name) || contains([for q in s.consumes : "${q}-dlq"], name)
    ]
  }
  # The deny applies when every condition holds: not one of the queue's senders, and not a
  # delivery from a topic subscribed to it (aws:SourceArn is absent from a direct call, so
  # that call is denied). A queue without senders (a dead-letter queue) denies every send.
  send_deny_conditions = {
    for name in keys(local.all_queues) : name => merge(
      { for op, arns in { ArnNotEquals = { "aws:PrincipalArn" = local.queue_senders[name] } } : op => arns if length(local.queue_senders[name]) > 0 },
      { for op, arns in { ArnNotLike = { "aws:SourceArn" = [for t in lookup(local.subscribed_queues, name, []) : "${local.sns_arn_prefix}:${local.physical[t]}"] } } : op => arns if contains(keys(local.subscribed_queues), name) },
      # Every IAM principal (user, role, root) has a principal ARN; a service delivering for a
      # topic has none and is let in only by AllowSubscribedTopics. This also gives a
      # dead-letter queue's deny, which has no other condition, one that holds.
      { Null = { "aws:PrincipalArn" = "false" } },
    )
  }
}

# A queue has one policy: it refuses requests made without TLS, lets a topic that fans out
# to it deliver, and, with the services on AWS, refuses sqs:SendMessage from every principal
# but the senders above, whatever their own IAM policies allow (every other principal in
# the account is treated as hostile). Receiving is decided by the task roles (aws_iam.tf).
resource "aws_sqs_queue_policy" "queue" {
  for_each = local.all_queues

  queue_url = each.value.url
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sqs:*"
        Resource  = each.value.arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      }],
      contains(keys(local.subscribed_queues), each.key) ? [{
        Sid       = "AllowSubscribedTopics"
        Effect    = "Allow"
        Principal = { Service = "sns.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = each.value.arn
        Condition = {
          ArnEquals = { "aws:SourceArn" = [for t in local.subscribed_queues[each.key] : "${local.sns_arn_prefix}:${local.physical[t]}"] }
        }
      }] : [],
      [for statement in [{
        Sid       = "DenySendersOtherThanTopology"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sqs:SendMessage"
        Resource  = each.value.arn
        Condition = local.send_deny_conditions[each.key]
      }] : statement if var.deploy_services],
    )
  })
}
