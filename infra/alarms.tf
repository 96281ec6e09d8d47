# Every alarm notifies the alerts topic (and any further ARNs in var.alarm_actions).
resource "aws_sns_topic" "alerts" {
  name              = local.physical["alerts"]
  kms_master_key_id = local.topic_kms_key
}

resource "aws_sns_topic_policy" "alerts" {
  arn = aws_sns_topic.alerts.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sns:Publish"
        Resource  = local.alerts_topic_arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "AllowThisAccountsAlarms"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = local.alerts_topic_arn
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
          ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:cloudwatch:${var.aws_region}:${local.account_id}:alarm:*" }
        }
      },
    ]
  })
}

resource "aws_sns_topic_subscription" "alert_email" {
  count = var.alert_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

locals {
  alerts_topic_arn = "${local.sns_arn_prefix}:${local.physical["alerts"]}"
  # Formatted rather than read from the topic, so that the plan shows it; every alarm
  # depends on the topic explicitly instead.
  alarm_actions = concat([local.alerts_topic_arn], var.alarm_actions)
}

# Anything in a dead-letter queue needs a person.
resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each = local.dead_letter_queues

  alarm_name        = "${each.value.name}-not-empty"
  alarm_description = "Messages in dead-letter queue ${each.value.name}: a message its consumer could not process, or (saga-escalations) a compensation that could not complete. See the runbook: sagactl dead-letters."
  namespace         = "AWS/SQS"
  metric_name       = "ApproximateNumberOfMessagesVisible"
  dimensions        = { QueueName = each.value.name }

  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  depends_on    = [aws_sns_topic.alerts]
}

# A consumer that stopped (or cannot keep up) shows as old messages in its queue.
resource "aws_cloudwatch_metric_alarm" "backlog" {
  for_each = local.redriven_queues # the command and reply queues

  alarm_name        = "${aws_sqs_queue.queue[each.key].name}-backlog"
  alarm_description = "Oldest message in ${aws_sqs_queue.queue[each.key].name} is older than 5 minutes: its consumer is down or cannot keep up."
  namespace         = "AWS/SQS"
  metric_name       = "ApproximateAgeOfOldestMessage"
  dimensions        = { QueueName = aws_sqs_queue.queue[each.key].name }

  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 300
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  depends_on    = [aws_sns_topic.alerts]
}

# A saga waits for a person. The gauge is sent by the orchestrator; no data means no
# orchestrator is reporting, which the backlog alarms catch, so it is not a breach here.
resource "aws_cloudwatch_metric_alarm" "sagas_awaiting_intervention" {
  alarm_name        = "${local.physical_prefix}sagas-awaiting-intervention"
  alarm_description = "At least one saga is in needs_intervention: a compensation could not complete. See the runbook: sagactl list --status needs_intervention."
  namespace         = local.metric_namespace
  metric_name       = "SagasAwaitingIntervention"
  dimensions        = { Service = "orchestrator" }

  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  depends_on    = [aws_sns_topic.alerts]
}

# Sagas started on a version no orchestrator runs any more (a release removed it too soon,
# or a rollback went too far): their replies and deadlines wait for a replica that runs it.
# Every replica reports how many such sagas it sees; one that runs the version reports 0, so
# the minimum across replicas is above 0 only when none does.
resource "aws_cloudwatch_metric_alarm" "sagas_of_versions_not_run" {
  alarm_name        = "${local.physical_prefix}sagas-of-versions-not-run"
  alarm_description = "Unfinished sagas started on a saga version no orchestrator runs: deploy a release that runs it (ORCHESTRATOR_RUN_VERSIONS) or resolve them. See the runbook."
  namespace         = local.metric_namespace
  metric_name       = "SagasOfVersionsNotRun"
  dimensions        = { Service = "orchestrator" }

  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  depends_on    = [aws_sns_topic.alerts]
}

# A relay that stopped publishing (broker unreachable, relay stuck) leaves rows in its
# service's outbox: the saga waits although every transaction committed.
resource "aws_cloudwatch_metric_alarm" "outbox_age" {
  for_each = local.services

  alarm_name        = "${local.physical_prefix}${each.key}-outbox-stale"
  alarm_description = "The oldest unpublished outbox row of ${each.key} is older than ${var.outbox_age_alarm_seconds} s: its relay is not publishing."
  namespace         = local.metric_namespace
  metric_name       = "OutboxOldestAgeSeconds"
  dimensions        = { Service = each.key }

  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.outbox_age_alarm_seconds
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  depends_on    = [aws_sns_topic.alerts]
}

# A message refused for who sent it: a sender its queue does not take, a SenderId that is not
# the sender's task role, or a reply that answers no command of its saga. Nothing moved, but
# someone in the account is sending what they should not (docs/design.md#security).
resource "aws_cloudwatch_metric_alarm" "messages_refused" {
  for_each = local.services

  alarm_name        = "${local.physical_prefix}${each.key}-messages-refused"
  alarm_description = "${each.key} refused a message for its sender or its causation: a forged, replayed or misrouted message. Its log line message_refused or reply_refused names the claimed sender; the saga's history shows a refused reply."
  namespace         = local.metric_namespace
  metric_name       = "MessagesRefused"
  dimensions        = { Service = each.key }

  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  depends_on    = [aws_sns_topic.alerts]
}

locals {
  # messaging.cloudwatch.NAMESPACE; tests/infra checks that the names used here exist there.
  metric_namespace = "OrderSaga"
  physical_prefix  = var.name_prefix == "" ? "" : "${var.name_prefix}-"
}
