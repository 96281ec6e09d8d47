output "queue_urls" {
  description = "Queue URL by logical name (contracts.topology.QUEUES)."
  value       = { for name, q in aws_sqs_queue.queue : name => q.url }
}

output "dead_letter_queue_urls" {
  description = "Dead-letter queue URL by logical name (contracts.topology.DEAD_LETTER_QUEUES)."
  value       = { for name, q in local.dead_letter_queues : name => q.url }
}

output "topic_arns" {
  description = "Topic ARN by logical name (contracts.topology.TOPICS)."
  value       = { for name, t in aws_sns_topic.topic : name => t.arn }
}

output "alerts_topic_arn" {
  description = "SNS topic every alarm notifies; subscribe on-call tooling to it."
  value       = aws_sns_topic.alerts.arn
}

output "alarm_names" {
  description = "Names of every CloudWatch alarm this configuration creates."
  value = concat(
    [for a in aws_cloudwatch_metric_alarm.dead_letters : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.backlog : a.alarm_name],
    [aws_cloudwatch_metric_alarm.sagas_awaiting_intervention.alarm_name],
    [aws_cloudwatch_metric_alarm.sagas_of_versions_not_run.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.outbox_age : a.alarm_name],
  )
}

output "dashboard_name" {
  description = "The CloudWatch dashboard (empty when create_dashboard is false)."
  value       = one(aws_cloudwatch_dashboard.saga[*].dashboard_name)
}
