# The default configuration (what LocalStack, moto and a messaging-only AWS stack get),
# planned offline against a mocked provider.
mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

variables {
  name_prefix = "saga"
}

run "messaging_only_by_default" {
  command = plan

  assert {
    condition     = length(aws_ecs_service.service) == 0 && length(aws_db_instance.main) == 0 && length(aws_iam_role.task) == 0 && length(aws_lb.public) == 0 && length(aws_vpc.main) == 0
    error_message = "Without deploy_services nothing but the messaging resources, alarms and dashboard may be planned."
  }
  assert {
    condition     = length(aws_sqs_queue.queue) == 8 && length(aws_sqs_queue.dlq) == 7 && length(aws_sns_topic.topic) == 2
    error_message = "Expected the 8 queues, 7 dead-letter queues and 2 topics of contracts.topology."
  }
}

run "every_queue_is_encrypted_with_sqs_managed_keys" {
  command = plan

  assert {
    condition     = alltrue([for q in concat(values(aws_sqs_queue.queue), values(aws_sqs_queue.dlq)) : q.sqs_managed_sse_enabled && q.kms_master_key_id == null])
    error_message = "Every queue must use SSE-SQS when no KMS key is given."
  }
  assert {
    condition     = alltrue([for t in concat(values(aws_sns_topic.topic), [aws_sns_topic.alerts]) : t.kms_master_key_id == null])
    error_message = "Topics are unencrypted unless a KMS key is given."
  }
}

run "kms_keys_by_variable" {
  command = plan

  variables {
    queue_kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    topic_kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000"
  }

  assert {
    condition     = alltrue([for q in concat(values(aws_sqs_queue.queue), values(aws_sqs_queue.dlq)) : q.kms_master_key_id == var.queue_kms_key_arn])
    error_message = "With queue_kms_key_arn every queue must use that key instead of SSE-SQS."
  }
  assert {
    condition     = alltrue([for t in concat(values(aws_sns_topic.topic), [aws_sns_topic.alerts]) : t.kms_master_key_id == var.topic_kms_key_arn])
    error_message = "With topic_kms_key_arn every topic, the alerts topic included, must use that key."
  }
}

run "queues_and_topics_refuse_requests_without_tls" {
  command = plan

  assert {
    condition     = length(aws_sqs_queue_policy.queue) == 15
    error_message = "Every queue, dead-letter queues included, needs a policy."
  }
  assert {
    condition = alltrue([
      for p in values(aws_sqs_queue_policy.queue) : anytrue([
        for s in jsondecode(p.policy).Statement :
        s.Effect == "Deny" && s.Principal == "*" && s.Action == "sqs:*" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"
      ])
    ])
    error_message = "Every queue policy must deny requests made without TLS."
  }
  assert {
    condition = alltrue([
      for p in concat(values(aws_sns_topic_policy.topic), [aws_sns_topic_policy.alerts]) : anytrue([
        for s in jsondecode(p.policy).Statement :
        s.Effect == "Deny" && s.Principal == "*" && s.Action == "sns:Publish" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"
      ])
    ])
    error_message = "Every topic policy must deny publishing without TLS."
  }
  assert {
    condition = alltrue([
      for p in values(aws_sns_topic_policy.topic) : [
        for s in jsondecode(p.policy).Statement : s.Principal if s.Effect == "Allow"
      ] == [{ AWS = "arn:aws:iam::123456789012:root" }]
    ])
    error_message = "Without the services on AWS, only the account itself may publish to the topics."
  }
  assert {
    condition     = [for s in jsondecode(aws_sns_topic_policy.alerts.policy).Statement : s.Principal if s.Effect == "Allow"] == [{ Service = "cloudwatch.amazonaws.com" }]
    error_message = "Only this account's CloudWatch alarms may publish to the alerts topic."
  }
}

run "every_alarm_notifies_the_alerts_topic" {
  command = plan

  variables {
    alarm_actions = ["arn:aws:sns:us-east-1:123456789012:on-call"]
    alert_email   = "ops@shop.example"
  }

  assert {
    condition = alltrue([
      for a in concat(values(aws_cloudwatch_metric_alarm.dead_letters), values(aws_cloudwatch_metric_alarm.backlog),
        values(aws_cloudwatch_metric_alarm.outbox_age), values(aws_cloudwatch_metric_alarm.messages_refused),
      [aws_cloudwatch_metric_alarm.sagas_awaiting_intervention, aws_cloudwatch_metric_alarm.sagas_of_versions_not_run]) :
      a.alarm_actions == toset(["arn:aws:sns:us-east-1:123456789012:saga-alerts", "arn:aws:sns:us-east-1:123456789012:on-call"])
      && a.ok_actions == a.alarm_actions && a.treat_missing_data == "notBreaching"
    ])
    error_message = "Every alarm must notify the alerts topic and the extra alarm_actions, and treat missing data as not breaching."
  }
  assert {
    condition     = length(aws_sns_topic_subscription.alert_email) == 1 && aws_sns_topic_subscription.alert_email[0].protocol == "email"
    error_message = "alert_email must subscribe that address to the alerts topic."
  }
}

run "saga_alarms" {
  command = plan

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.sagas_awaiting_intervention.namespace == "OrderSaga"
      && aws_cloudwatch_metric_alarm.sagas_awaiting_intervention.metric_name == "SagasAwaitingIntervention"
      && aws_cloudwatch_metric_alarm.sagas_awaiting_intervention.dimensions == tomap({ Service = "orchestrator" })
      && aws_cloudwatch_metric_alarm.sagas_awaiting_intervention.threshold == 0
      && aws_cloudwatch_metric_alarm.sagas_awaiting_intervention.comparison_operator == "GreaterThanThreshold"
    )
    error_message = "Alarm when any saga awaits intervention (SagasAwaitingIntervention > 0, Service=orchestrator)."
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.sagas_of_versions_not_run.metric_name == "SagasOfVersionsNotRun"
      && aws_cloudwatch_metric_alarm.sagas_of_versions_not_run.statistic == "Minimum"
      && aws_cloudwatch_metric_alarm.sagas_of_versions_not_run.threshold == 0
    )
    error_message = "Alarm when no orchestrator runs the version of some unfinished saga (the minimum over replicas of SagasOfVersionsNotRun > 0)."
  }
  assert {
    condition = toset([for a in aws_cloudwatch_metric_alarm.outbox_age : a.dimensions.Service]) == toset(
    ["order_svc", "orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc"])
    error_message = "One outbox alarm per service, with Service=<module name>."
  }
  assert {
    condition     = alltrue([for a in aws_cloudwatch_metric_alarm.outbox_age : a.metric_name == "OutboxOldestAgeSeconds" && a.threshold == 60 && a.namespace == "OrderSaga"])
    error_message = "Outbox alarms fire when the oldest unpublished row is older than 60 s."
  }
  assert {
    condition = toset([for a in aws_cloudwatch_metric_alarm.messages_refused : a.dimensions.Service if a.metric_name == "MessagesRefused" && a.threshold == 0 && a.statistic == "Sum"]) == toset(
    ["order_svc", "orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc"])
    error_message = "Every service alarms on any message it refused (MessagesRefused > 0)."
  }
}

run "no_dashboard_when_switched_off" {
  command = plan

  variables {
    create_dashboard = false
  }

  assert {
    condition     = length(aws_cloudwatch_dashboard.saga) == 0
    error_message = "create_dashboard = false must drop the dashboard."
  }
}
